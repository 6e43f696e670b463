"""Frequency caps: whether a contact's recent sends leave room for one more.

Rules kept here (as in Braze):
- a workspace has at most ``MAX_CAP_RULES`` rules, each "at most ``limit`` sends per
  ``amount`` ``unit``", on one channel or every channel, on one topic or every topic, over at
  most ``MAX_CAP_DAYS`` days;
- every rule whose channel is unset or the candidate and whose topic is unset or the
  message's topic applies; a send is capped when the rule's window already holds ``limit``
  matching counted sends; the blocking rule first by id is named;
- minutes and hours are rolling windows; "N days" is today and the N-1 previous calendar days
  in the contact's timezone (UTC when unknown), "N weeks" is 7N such days;
- a rule without a topic counts every counted send, transactional ones included; the caller
  passes only sends that count, newest first, and a window is read from the newest send back
  to its start.

Which messages are capped at all (not transactional ones, nor exempt channels, nor asks that
ignore caps) is the policy's call: ``junction.domain.reachability``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from operator import attrgetter, ge
from typing import Literal, TypeVar

from junction.domain.localtime import local_to_utc, zone

MAX_CAP_RULES = 10
MAX_CAP_DAYS = 30

Unit = Literal["minutes", "hours", "days", "weeks"]
_ROLLING = {"minutes": 60, "hours": 3600}
_CALENDAR = {"days": 1, "weeks": 7}


@dataclass(frozen=True, slots=True)
class CapRule:
    id: str
    limit: int
    amount: int
    unit: Unit
    channel: str | None = None  # None: every channel
    topic: str | None = None  # None: every topic, transactional included


@dataclass(frozen=True, slots=True)
class PastSend:
    at: datetime
    channel: str
    topic: str | None  # None: transactional


def check_rules(caps: Sequence[CapRule], channels: Collection[str]) -> list[str]:
    """The problems with a workspace's cap rules (``channels``: those a rule may name); empty
    when they may be saved."""
    problems = []
    if len(caps) > MAX_CAP_RULES:
        problems.append(f"{len(caps)} cap rules; at most {MAX_CAP_RULES}")
    seen: set[str] = set()
    for rule in caps:
        if rule.id in seen:
            problems.append(f"cap rule {rule.id}: the id is used twice")
        seen.add(rule.id)
        if rule.limit < 1:
            problems.append(f"cap rule {rule.id}: the limit must be at least 1")
        if rule.amount < 1:
            problems.append(f"cap rule {rule.id}: the amount must be at least 1")
        if rule.unit in _ROLLING:
            days = rule.amount * _ROLLING[rule.unit] / 86400
        elif rule.unit in _CALENDAR:
            days = rule.amount * _CALENDAR[rule.unit]
        else:
            problems.append(f"cap rule {rule.id}: unknown unit {rule.unit!r}")
            continue
        if days > MAX_CAP_DAYS:
            problems.append(f"cap rule {rule.id}: the window is over {MAX_CAP_DAYS} days")
        if rule.channel is not None and rule.channel not in channels:
            problems.append(f"cap rule {rule.id}: unknown channel {rule.channel!r}")
    return problems


@dataclass(frozen=True, slots=True)
class Limits:
    """A category's cap rules, each at its index, as the check reads them."""

    deepest: int  # the largest limit: how many of the newest sends can matter
    reaching: tuple[int, ...]  # each rule's limit - 1: the send whose time tells
    scopes: tuple[tuple[int, str | None, str | None], ...]  # each rule's limit, channel, topic
    spans: tuple[timedelta | int, ...]  # each rule's rolling window, or its calendar days


def limits(caps: tuple[CapRule, ...]) -> Limits:
    return Limits(
        max(rule.limit for rule in caps),
        tuple(rule.limit - 1 for rule in caps),
        tuple((rule.limit, rule.channel, rule.topic) for rule in caps),
        tuple(
            timedelta(seconds=rule.amount * _ROLLING[rule.unit])
            if rule.unit in _ROLLING
            else rule.amount * _CALENDAR[rule.unit]
            for rule in caps
        ),
    )


def window_starts(
    limits: Limits, tz_name: str | None, today: date, now: datetime
) -> tuple[datetime, ...]:
    """Where each rule's window starts at ``now``, which is ``today`` in the contact's zone."""
    return tuple(
        now - span if isinstance(span, timedelta) else _days_start(tz_name, today, span)
        for span in limits.spans
    )


@lru_cache(maxsize=65536)
def _days_start(tz_name: str | None, today: date, days: int) -> datetime:
    return local_to_utc(today - timedelta(days=days - 1), time(0), zone(tz_name))


_AT = attrgetter("at")


# What the check found for one contact: (which rules their history may reach, the history,
# the rules, where their windows start).
Reach = tuple[list[bool], Sequence[PastSend], Limits, tuple[datetime, ...]]


def may_reach(
    history: Sequence[PastSend], limits: Limits, since: tuple[datetime, ...]
) -> Reach | None:
    """Which cap rules the history (newest first) may reach; None when it reaches none.

    A rule's window holds ``limit`` sends of any kind exactly when the limit-th newest send
    falls in it: that settles the rules that count every send, and the others count only when
    it holds (``capped``). One comparison per rule, in C when the history is deep enough; the
    sends read are only those that tell, as a contact's history is rarely in the CPU's cache.
    """
    if len(history) >= limits.deepest:
        held = [*map(ge, map(_AT, map(history.__getitem__, limits.reaching)), since)]
    else:
        sends = len(history)
        held = [
            reaching < sends and history[reaching].at >= start
            for reaching, start in zip(limits.reaching, since, strict=True)
        ]
    return (held, history, limits, since) if True in held else None


Rejection = TypeVar("Rejection")


def capped(
    caps: tuple[tuple[int, Rejection], ...],
    may_reach: list[bool],
    history: Sequence[PastSend],
    limits: Limits,
    since: tuple[datetime, ...],
) -> Rejection | None:
    """The rejection by the first of ``caps`` (rule index and rejection, in id order) the
    history reaches, if any."""
    for index, rejection in caps:
        if may_reach[index]:
            limit, channel, topic = limits.scopes[index]
            if channel is None and topic is None:
                return rejection
            if _count(history, since[index], channel, topic, limit) >= limit:
                return rejection
    return None


def _count(
    history: Sequence[PastSend], since: datetime, channel: str | None, topic: str | None, limit: int
) -> int:
    """The sends of ``history`` (newest first) since ``since`` on ``channel`` and ``topic``,
    up to ``limit``: the count stops at the window's start or at the limit."""
    count = 0
    for sent in history:
        if sent.at < since:
            break
        if (channel is None or sent.channel == channel) and (topic is None or sent.topic == topic):
            count += 1
            if count >= limit:
                break
    return count
