"""Journey definitions stored: saved as versions, activated, paused, archived; and the counts
each step has reached.

Saving checks the whole definition first (``junction.domain.journeys``: unknown steps, steps
nobody reaches, loops without a wait…) and writes nothing when anything is wrong. Saving the
same definition again writes nothing; a changed one becomes the next version, which new
entries take; runs already in stay on theirs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from cronsim import CronSim
from sqlalchemy import Connection, func, select

from junction.domain.journeys import JourneyDefinition
from junction.errors import Conflict, NotFound
from junction.store.definitions import validated
from junction.store.raw import Raw
from junction.store.tables import journey_counts, journey_runs, journey_versions, journeys

DRAFT, ACTIVE, PAUSED, ARCHIVED = "draft", "active", "paused", "archived"
# Which status each action leads to, from which.
_MOVES = {
    "activate": ({DRAFT, PAUSED}, ACTIVE),
    "pause": ({ACTIVE}, PAUSED),
    "resume": ({PAUSED}, ACTIVE),
    "archive": ({DRAFT, ACTIVE, PAUSED}, ARCHIVED),
}


def next_fire(definition: JourneyDefinition, after: datetime) -> datetime | None:
    """When a scheduled journey next enters its audience (cron in UTC), strictly after."""
    schedule = definition.trigger.schedule
    if schedule is None:
        return None
    fire: datetime = next(CronSim(schedule.cron, after.astimezone(UTC)))
    return fire


def parse(raw: Any) -> JourneyDefinition:
    return validated(JourneyDefinition, raw, "journey", lambda location: _where(raw, location))


def _where(raw: dict[str, Any], location: Sequence[Any]) -> str:
    """The field's path, with a step named by its id: ``steps.wait-paid.where`` rather than
    pydantic's ``steps.0.wait_for.where``."""
    parts = [str(p) for p in location]
    if len(parts) >= 2 and parts[0] == "steps" and parts[1].isdigit():
        steps = raw.get("steps")
        index = int(parts[1])
        step = steps[index] if isinstance(steps, list) and index < len(steps) else None
        if isinstance(step, dict) and isinstance(step.get("id"), str):
            rest = parts[2:]
            if rest and rest[0] == step.get("type"):  # pydantic names the union's member
                rest = rest[1:]
            return ".".join(["steps", step["id"], *rest])
    return ".".join(parts)


def save(conn: Connection, workspace_id: int, raw: Any, now: datetime) -> dict[str, Any]:
    definition = parse(raw)
    stored = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    digest = hashlib.sha256(orjson.dumps(stored, option=orjson.OPT_SORT_KEYS)).hexdigest()
    row = conn.execute(
        select(journeys).where(
            journeys.c.workspace_id == workspace_id, journeys.c.key == definition.key
        )
    ).first()
    trigger = definition.trigger.event_name
    if row is None:
        journey_id = conn.execute(
            journeys.insert().values(
                workspace_id=workspace_id,
                key=definition.key,
                name=definition.name,
                status=DRAFT,
                current_version=1,
                trigger_event=trigger,
                next_fire_at=None,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
        version, created, status = 1, True, DRAFT
    else:
        current = conn.execute(
            select(journey_versions.c.digest).where(
                journey_versions.c.journey_id == row.id,
                journey_versions.c.version == row.current_version,
            )
        ).scalar_one()
        if current == digest:
            return _summary(definition, row.current_version, row.status, created=False)
        if row.status == ARCHIVED:
            raise Conflict(f"journey {definition.key!r} is archived; use a new key")
        journey_id, version, created, status = row.id, row.current_version + 1, True, row.status
        conn.execute(
            journeys.update()
            .where(journeys.c.id == row.id)
            .values(
                current_version=version,
                name=definition.name,
                trigger_event=trigger,
                next_fire_at=next_fire(definition, now) if row.status == ACTIVE else None,
                updated_at=now,
            )
        )
    conn.execute(
        journey_versions.insert().values(
            journey_id=journey_id, version=version, definition=stored, digest=digest, created_at=now
        )
    )
    return _summary(definition, version, status, created=created)


def _summary(
    definition: JourneyDefinition, version: int, status: str, created: bool
) -> dict[str, Any]:
    return {
        "key": definition.key,
        "version": version,
        "status": status,
        "created": created,
        "steps": [step.id for step in definition.steps],
    }


def row_of(conn: Connection, workspace_id: int, key: str) -> Any:
    row = conn.execute(
        select(journeys).where(journeys.c.workspace_id == workspace_id, journeys.c.key == key)
    ).first()
    if row is None:
        raise NotFound(f"no journey {key!r} in this workspace")
    return row


def move(
    conn: Connection, workspace_id: int, key: str, action: str, now: datetime
) -> dict[str, Any]:
    """activate, pause, resume or archive; 409 when the journey's status does not allow it."""
    row = row_of(conn, workspace_id, key)
    allowed, status = _MOVES[action]
    if row.status not in allowed:
        raise Conflict(f"journey {key!r} is {row.status}; it cannot be told to {action}")
    fire = None
    if status == ACTIVE:
        fire = next_fire(load(conn, row.id, row.current_version), now)
    conn.execute(
        journeys.update()
        .where(journeys.c.id == row.id)
        .values(status=status, next_fire_at=fire, updated_at=now)
    )
    if status == ARCHIVED:  # its runs end where they are, and are counted as exited there
        ended = conn.execute(
            select(journey_runs.c.step).where(
                journey_runs.c.journey_id == row.id,
                journey_runs.c.status.in_(["active", "waiting"]),
            )
        ).all()
        conn.execute(
            journey_runs.update()
            .where(
                journey_runs.c.journey_id == row.id,
                journey_runs.c.status.in_(["active", "waiting"]),
            )
            .values(status="exited", wake_at=None, updated_at=now)
        )
        count(
            conn,
            row.id,
            [("", "exited")] * len(ended) + [(r.step, "exited") for r in ended if r.step],
        )
    return {"key": key, "status": status}


def load(conn: Connection, journey_id: int, version: int) -> JourneyDefinition:
    found = conn.execute(
        select(journey_versions.c.definition).where(
            journey_versions.c.journey_id == journey_id, journey_versions.c.version == version
        )
    ).scalar_one()
    return _parsed(journey_id, version, orjson.dumps(found))


@lru_cache(maxsize=256)
def _parsed(journey_id: int, version: int, definition: bytes) -> JourneyDefinition:
    return JourneyDefinition.model_validate(orjson.loads(definition))


# Parsed definitions by (journey, version, digest). A version never changes, but a
# database recreated under the same ids (tests) may hold another one: the digest tells.
_BY_DIGEST: dict[tuple[int, int, str], JourneyDefinition] = {}


def load_fast(raw: Raw, journey_id: int, version: int) -> JourneyDefinition:
    """``load`` for the runtime: one indexed read of the version's digest, the definition
    parsed once per process."""
    found = raw.one(
        "SELECT digest FROM journey_versions WHERE journey_id = ? AND version = ?",
        (journey_id, version),
    )
    if found is None:
        raise NotFound(f"journey {journey_id} has no version {version}")
    key = (journey_id, version, str(found[0]))
    definition = _BY_DIGEST.get(key)
    if definition is None:
        stored = raw.one(
            "SELECT definition FROM journey_versions WHERE journey_id = ? AND version = ?",
            (journey_id, version),
        )
        if len(_BY_DIGEST) > 1024:  # a bound, not a policy: definitions are few
            _BY_DIGEST.clear()
        definition = _BY_DIGEST[key] = JourneyDefinition.model_validate(raw.read_json(stored[0]))
    return definition


def add_counts(raw: Raw, totals: dict[tuple[int, str, str], int]) -> None:
    """Add to (journey, step, metric) counters, one upsert for them all."""
    raw.many(
        "INSERT INTO journey_counts (journey_id, step, metric, count) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (journey_id, step, metric) "
        "DO UPDATE SET count = journey_counts.count + excluded.count",
        [(journey, step, metric, amount) for (journey, step, metric), amount in totals.items()],
    )


def count(conn: Connection, journey_id: int, increments: Iterable[tuple[str, str]]) -> None:
    """Add one to each (step, metric) counter of a journey."""
    totals: dict[tuple[str, str], int] = {}
    for step, metric in increments:
        totals[(step, metric)] = totals.get((step, metric), 0) + 1
    for (step, metric), amount in totals.items():
        updated = conn.execute(
            journey_counts.update()
            .where(
                journey_counts.c.journey_id == journey_id,
                journey_counts.c.step == step,
                journey_counts.c.metric == metric,
            )
            .values(count=journey_counts.c.count + amount)
        )
        if updated.rowcount == 0:
            conn.execute(
                journey_counts.insert().values(
                    journey_id=journey_id, step=step, metric=metric, count=amount
                )
            )


def get(conn: Connection, workspace_id: int, key: str) -> dict[str, Any]:
    """The journey, its current definition, and per-step counts."""
    row = row_of(conn, workspace_id, key)
    definition = conn.execute(
        select(journey_versions.c.definition).where(
            journey_versions.c.journey_id == row.id,
            journey_versions.c.version == row.current_version,
        )
    ).scalar_one()
    steps: dict[str, dict[str, int]] = {}
    for step_name, metric, amount in conn.execute(
        select(journey_counts.c.step, journey_counts.c.metric, journey_counts.c.count).where(
            journey_counts.c.journey_id == row.id
        )
    ):
        steps.setdefault(step_name, {})[metric] = int(amount)
    waiting = conn.execute(
        select(journey_runs.c.step, func.count())
        .where(journey_runs.c.journey_id == row.id, journey_runs.c.status == "waiting")
        .group_by(journey_runs.c.step)
    ).all()
    for step, number in waiting:
        steps.setdefault(step or "", {})["waiting"] = number
    statuses: dict[str, int] = dict(
        conn.execute(
            select(journey_runs.c.status, func.count())
            .where(journey_runs.c.journey_id == row.id)
            .group_by(journey_runs.c.status)
        ).all()
    )
    return {
        "key": row.key,
        "name": row.name,
        "status": row.status,
        "currentVersion": row.current_version,
        "definition": definition,
        "runs": statuses,
        "steps": {step: counts for step, counts in steps.items() if step},
        "totals": steps.get("", {}),
    }


def list_journeys(conn: Connection, workspace_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(journeys).where(journeys.c.workspace_id == workspace_id).order_by(journeys.c.key)
    )
    return [
        {
            "key": r.key,
            "name": r.name,
            "status": r.status,
            "currentVersion": r.current_version,
            "updatedAt": r.updated_at.isoformat(),
        }
        for r in rows
    ]
