"""A workspace's reachability rules over the API: frequency caps, quiet hours, the country
table and channel costs that rank channels, and the brand and help text keyword replies use."""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from junction.api.deps import Services, ServicesDep, WorkspaceDep
from junction.api.responses import JSONAnswer
from junction.domain.caps import check_rules
from junction.domain.reachability import CHANNELS
from junction.errors import FieldError, InvalidInput
from junction.store import preferences as store
from junction.store.routing import cap_rule
from junction.store.tables import topics
from junction.threads import in_thread

router = APIRouter(prefix="/v1/policies", tags=["reachability"])
_WALL_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Period(_Strict):
    amount: int = Field(ge=1)
    unit: Literal["minutes", "hours", "days", "weeks"]


class Cap(_Strict):
    """At most ``limit`` sends per period, on a channel (or any), of a topic (or any)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    limit: int = Field(ge=1, le=10_000)
    per: Period
    channel: Literal[CHANNELS] | None = None  # type: ignore[valid-type]
    topic: str | None = None


class Quiet(_Strict):
    """No sends between ``start`` and ``end``, contact-local (may cross midnight)."""

    start: str = Field(description="HH:MM, the contact's local time")
    end: str = Field(description="HH:MM")
    channels: list[Literal[CHANNELS]] = Field(default_factory=list)  # type: ignore[valid-type]

    @field_validator("start", "end")
    @classmethod
    def _wall_time(cls, value: str) -> str:
        if not _WALL_TIME.match(value):
            raise ValueError("a time of day as HH:MM, e.g. 21:00")
        return value


class Policies(_Strict):
    caps: list[Cap] = Field(default_factory=list, max_length=10)
    quiet_hours: list[Quiet] = Field(default_factory=list, alias="quietHours", max_length=20)
    country_apps: dict[str, list[Literal[CHANNELS]]] = Field(  # type: ignore[valid-type]
        default_factory=dict,
        alias="countryApps",
        description="overrides per ISO country: the usual apps, most used first",
    )
    costs: dict[Literal[CHANNELS], float] = Field(  # type: ignore[valid-type]
        default_factory=dict, description="relative cost per message, overriding the defaults"
    )
    brand: str | None = Field(default=None, max_length=60, description="named in keyword replies")
    keywords: dict[str, Any] = Field(
        default_factory=dict, description="extra keywords and help texts for SMS and WhatsApp"
    )

    @field_validator("country_apps")
    @classmethod
    def _countries(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for country in value:
            if not re.fullmatch(r"[A-Z]{2}", country):
                raise ValueError(f"{country!r} is not an ISO 3166 country code such as 'BR'")
        return value


def _save(svc: Services, workspace_id: int, policies: Policies) -> dict[str, Any]:
    stored = policies.model_dump(by_alias=True, exclude_none=True)
    problems = [
        FieldError("caps", problem)
        for problem in check_rules([cap_rule(cap) for cap in stored["caps"]], CHANNELS)
    ]
    with svc.database.write() as conn:
        known = {
            row.key
            for row in conn.execute(topics.select().where(topics.c.workspace_id == workspace_id))
        }
        problems += [
            FieldError(f"caps.{index}.topic", f"no topic {cap['topic']!r}; create it first")
            for index, cap in enumerate(stored["caps"])
            if cap.get("topic") not in (None, *known)
        ]
        if problems:
            raise InvalidInput(problems)
        store.set_rules(conn, workspace_id, stored, svc.clock.now())
    return stored


@router.get("", response_class=JSONAnswer)
async def get_policies(svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    def read(svc: Services) -> dict[str, Any]:
        with svc.database.read() as conn:
            return Policies.model_validate(store.rules_of(conn, workspace_id)).model_dump(
                by_alias=True, exclude_none=True
            )

    return JSONAnswer(await in_thread(read, svc))


@router.put("", response_class=JSONAnswer)
async def put_policies(
    policies: Policies, svc: ServicesDep, workspace_id: WorkspaceDep
) -> JSONAnswer:
    """Replace the workspace's rules (all of them: send the whole set)."""
    return JSONAnswer(await in_thread(_save, svc, workspace_id, policies))
