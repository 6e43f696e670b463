"""Campaigns (broadcasts) as data, and the pure decisions that send them.

A campaign sends one message (a template, on a channel or the best of several) to an
audience (a segment, or everyone) — now, at a time, or at a wall time in each contact's own
timezone — at most ``throttle.perMinute`` a minute, split into A/B variants, with an
optional test period after which the winning variant goes to everyone else, and an
optional control group that receives nothing and is counted for conversion.

Rules kept here (no database, no clock):
- a contact's variant and group come from a stable hash of (campaign key, contact id): the
  same person always lands in the same place, whatever the order or the batch;
- the control group and the A/B test group are drawn with independent hashes, so the
  holdout is the same share of every variant;
- a local-time schedule is a wall time without offset, placed in the contact's timezone
  (UTC when it has none or an unknown one); a wall time that does not exist (the hour
  skipped when clocks go forward) moves on by the gap, an ambiguous one (clocks going
  back) is its first occurrence;
- the throttle is a sliding minute: at most ``perMinute`` recipients queued in any 60 s;
- the winner of a test has the highest rate of its metric over the messages it sent; a tie
  goes to the variant listed first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from junction.domain.journey_model import STEP_ID_PATTERN, Period
from junction.domain.sending import CHANNEL_ADDRESS, check_category
from junction.domain.templates import KEY_PATTERN

Metric = Literal["opened", "clicked", "converted"]
# Channels a campaign's main message can go on: not a webhook (a call, not a person) and
# not a pull channel (those go in ``pull``, paired with a push).
MESSAGE_CHANNELS = tuple(
    c for c in CHANNEL_ADDRESS if c not in ("webhook", "in_app", "content_card")
)
MAIN = "main"  # the one variant of a campaign that defines none


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class SegmentAudience(_Model):
    segment: str = Field(pattern=KEY_PATTERN, description="a segment's key")


class Message(_Model):
    template: str = Field(pattern=KEY_PATTERN, description="the template's key")
    channel: str | None = Field(default=None, description="one channel")
    channels: list[str] | None = Field(
        default=None,
        min_length=1,
        description="candidates: each person gets the best of them, decided when it is sent",
    )
    category: str = Field(description="'transactional' or a topic key (marketing)")
    ignore_caps: bool = Field(default=False, alias="ignoreCaps")
    quiet_hours: Literal["defer", "drop"] = Field(default="defer", alias="quietHours")
    data: dict[str, Any] = Field(default_factory=dict, description="{{ data.* }} in the template")

    @field_validator("category")
    @classmethod
    def _category(cls, value: str) -> str:
        errors = check_category(value)
        if errors:
            raise ValueError(errors[0].message)
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and value not in MESSAGE_CHANNELS:
            raise ValueError(f"{value!r} is not a channel a campaign sends on: {MESSAGE_CHANNELS}")
        return value

    @field_validator("channels")
    @classmethod
    def _channels(cls, value: list[str] | None) -> list[str] | None:
        for channel in value or ():
            if channel not in MESSAGE_CHANNELS:
                raise ValueError(f"{channel!r} is not a channel a campaign sends on")
        if value is not None and len(set(value)) != len(value):
            raise ValueError("a channel is listed twice")
        return value

    @model_validator(mode="after")
    def _one_of(self) -> Message:
        if (self.channel is None) == (self.channels is None):
            raise ValueError("give exactly one of channel or channels")
        return self

    def candidates(self) -> list[str]:
        return list(self.channels) if self.channels else [str(self.channel)]


class Pull(_Model):
    """The in-app message or content card that continues a push inside the app."""

    channel: Literal["in_app", "content_card"]
    template: str = Field(pattern=KEY_PATTERN)
    data: dict[str, Any] = Field(default_factory=dict)


class Schedule(_Model):
    at: datetime = Field(
        description="with an offset (2026-12-01T09:00:00Z); without one when localTime is set"
    )
    local_time: bool = Field(
        default=False,
        alias="localTime",
        description="send at this wall time in each contact's own timezone",
    )

    @model_validator(mode="after")
    def _offset(self) -> Schedule:
        if self.local_time and self.at.tzinfo is not None:
            raise ValueError("a local-time schedule is a wall time: give `at` without an offset")
        if not self.local_time and self.at.tzinfo is None:
            raise ValueError("give `at` an offset (Z or +02:00), or set localTime")
        return self


class Throttle(_Model):
    per_minute: int = Field(ge=1, alias="perMinute", description="at most this many a minute")


class Variant(_Model):
    key: str = Field(pattern=STEP_ID_PATTERN)
    template: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="instead of the message's template"
    )
    data: dict[str, Any] | None = Field(default=None, description="merged over message.data")
    weight: int = Field(default=1, ge=0, description="its share of the split")


class ABTest(_Model):
    test_percent: int = Field(
        ge=1, le=99, alias="testPercent", description="the share of the audience in the test"
    )
    metric: Metric
    after: Period = Field(description="how long the test runs before the winner goes out")


class Control(_Model):
    percent: float = Field(gt=0, lt=100, description="the holdout: receives nothing")


class Goal(_Model):
    event: str = Field(min_length=1, description="the event that counts as a conversion")
    within: Period = Field(description="after the recipient's send time")


class CampaignDefinition(_Model):
    key: str = Field(pattern=KEY_PATTERN)
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    audience: Literal["everyone"] | SegmentAudience = Field(
        description='"everyone", or {"segment": KEY}'
    )
    message: Message
    pull: Pull | None = None
    schedule: Schedule | None = Field(default=None, description="none: sent when told to")
    throttle: Throttle | None = None
    variants: list[Variant] = Field(default_factory=list)
    ab_test: ABTest | None = Field(default=None, alias="abTest")
    control: Control | None = None
    goal: Goal | None = None

    @model_validator(mode="after")
    def _coherent(self) -> CampaignDefinition:
        keys = [v.key for v in self.variants]
        if len(set(keys)) != len(keys):
            raise ValueError("two variants share a key")
        if self.variants and not any(v.weight for v in self.variants):
            raise ValueError("every variant has weight 0: nobody would get one")
        if self.ab_test is not None and len(self.variants) < 2:
            raise ValueError("abTest needs at least two variants")
        if self.ab_test is not None and self.ab_test.metric == "converted" and not self.goal:
            raise ValueError("an abTest on 'converted' needs a goal")
        return self

    @property
    def segment(self) -> str | None:
        return None if self.audience == "everyone" else self.audience.segment

    def variant_keys(self) -> list[str]:
        return [v.key for v in self.variants] or [MAIN]

    def variant(self, key: str) -> Variant | None:
        return next((v for v in self.variants if v.key == key), None)

    def template_of(self, variant: str) -> str:
        found = self.variant(variant)
        return (found.template if found else None) or self.message.template

    def data_of(self, variant: str) -> dict[str, Any]:
        found = self.variant(variant)
        return {**self.message.data, **((found.data if found else None) or {})}

    def templates(self) -> list[tuple[str, str]]:
        """(field, template key) of every template it uses, for checking they exist."""
        used = [("message.template", self.message.template)]
        used += [(f"variants.{v.key}.template", v.template) for v in self.variants if v.template]
        if self.pull is not None:
            used.append(("pull.template", self.pull.template))
        return used


def unit(campaign: str, contact_id: int, salt: str) -> float:
    """A stable number in [0, 1) for this contact in this campaign."""
    digest = hashlib.blake2b(f"{campaign}:{salt}:{contact_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True, slots=True)
class Assignment:
    group: Literal["control", "send", "held"]  # held: waits for the test's winner
    variant: str | None  # None for control and held


def assign(definition: CampaignDefinition, contact_id: int) -> Assignment:
    key = definition.key
    if definition.control and unit(key, contact_id, "control") * 100 < definition.control.percent:
        return Assignment("control", None)
    test = definition.ab_test
    if test is not None and unit(key, contact_id, "test") * 100 >= test.test_percent:
        return Assignment("held", None)
    if not definition.variants:
        return Assignment("send", MAIN)
    return Assignment("send", pick(definition.variants, unit(key, contact_id, "variant")))


def pick(variants: Sequence[Variant], draw: float) -> str:
    """The variant a draw in [0, 1) lands on, by weight."""
    total = sum(v.weight for v in variants)
    point = draw * total
    for variant in variants:
        if point < variant.weight:
            return variant.key
        point -= variant.weight
    return next(v.key for v in reversed(variants) if v.weight)


def zone(name: str | None) -> ZoneInfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def local_due(wall: datetime, timezone: str | None) -> datetime:
    """When the wall time ``wall`` (no offset) comes in ``timezone``, in UTC."""
    # fold=0: an ambiguous wall time is its first occurrence; one in a gap takes the offset
    # from before the gap, which lands it the gap's length later on the clock.
    return wall.replace(tzinfo=zone(timezone), fold=0).astimezone(UTC)


def due_at(definition: CampaignDefinition, timezone: str | None, started: datetime) -> datetime:
    """When a recipient's message is due, given when sending started: at once without a
    schedule; the scheduled instant; or the local wall time, at once when it has passed."""
    schedule = definition.schedule
    if schedule is None:
        return started
    at = local_due(schedule.at, timezone) if schedule.local_time else schedule.at.astimezone(UTC)
    return max(at, started)


def first_due(definition: CampaignDefinition) -> datetime | None:
    """When a scheduled campaign starts sending: its instant, or for a local-time schedule
    the moment the wall time first comes anywhere (UTC+14)."""
    schedule = definition.schedule
    if schedule is None:
        return None
    if schedule.local_time:
        return local_due(schedule.at, "Pacific/Kiritimati")
    return schedule.at.astimezone(UTC)


def last_due(definition: CampaignDefinition) -> datetime | None:
    """When the scheduled time has come everywhere (UTC-12 for a local-time schedule)."""
    schedule = definition.schedule
    if schedule is None:
        return None
    if schedule.local_time:
        return local_due(schedule.at, "Etc/GMT+12")
    return schedule.at.astimezone(UTC)


def allowance(per_minute: int | None, queued_last_minute: int) -> int | None:
    """How many more may be queued now (None: no throttle)."""
    if per_minute is None:
        return None
    return max(0, per_minute - queued_last_minute)


@dataclass(frozen=True, slots=True)
class VariantScore:
    sent: int
    hits: int  # opened, clicked or converted, by the test's metric

    @property
    def rate(self) -> float:
        return self.hits / self.sent if self.sent else 0.0


def winner(order: Sequence[str], scores: Mapping[str, VariantScore]) -> str:
    """The variant with the best rate; a tie goes to the one listed first."""
    best = order[0]
    for key in order[1:]:
        if scores.get(key, VariantScore(0, 0)).rate > scores.get(best, VariantScore(0, 0)).rate:
            best = key
    return best
