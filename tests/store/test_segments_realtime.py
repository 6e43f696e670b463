"""Real time and batch mean the same: people moved in and out of segments event by event and
as time passes (aggregates folded by the engine, rechecks when windows pass) are exactly the
people a batch evaluation straight from the stored events finds — for random histories, on
SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from junction.engine.dispatcher import Dispatcher
from junction.store import segments
from junction.store.tables import segment_members
from junction.store.tables import segments as segment_table
from tests.conftest import make_tenant

HOUR = {"amount": 1, "unit": "hours"}
DAY = {"amount": 1, "unit": "days"}
PEOPLE = ("ann", "bob", "cat")
DEFINITIONS: list[dict[str, Any]] = [
    {"performed": "A", "atLeast": 2, "within": DAY},
    {"performed": "A", "where": {"x": {"op": "gte", "value": 1}}, "atMost": 1},
    {"performed": "A", "notFollowedBy": {"event": "B", "within": HOUR}, "within": DAY},
    {"performed": "A", "notFollowedBy": {"event": "B"}},
    {"lastPerformed": "B", "moreThan": HOUR, "orNever": True},
    {"any": [{"trait": "plan", "value": "pro"}, {"performed": "B", "within": HOUR}]},
    {"all": [{"not": {"trait": "plan", "value": "pro"}}, {"performed": "A"}]},
    {
        "any": [
            {"performed": "B", "within": HOUR},
            {"not": {"lastPerformed": "A", "moreThan": HOUR}},
        ]
    },
]
_workspaces = itertools.count()

actions = st.one_of(
    st.tuples(
        st.just("event"),
        st.sampled_from(PEOPLE),
        st.sampled_from(["A", "B"]),
        st.integers(min_value=0, max_value=2),
    ),
    st.tuples(st.just("trait"), st.sampled_from(PEOPLE), st.sampled_from(["pro", "free"])),
)
histories = st.lists(
    st.tuples(st.integers(min_value=0, max_value=36 * 60), actions), min_size=1, max_size=12
)


def real_time_members(database: Any, workspace_id: int) -> dict[str, set[int]]:
    with database.read() as conn:
        rows = conn.execute(
            select(segment_table.c.key, segment_members.c.contact_id)
            .join(segment_members, segment_members.c.segment_id == segment_table.c.id)
            .where(segment_table.c.workspace_id == workspace_id, segment_members.c.member)
        )
        found: dict[str, set[int]] = {f"s{i}": set() for i in range(len(DEFINITIONS))}
        for row in rows:
            found[row.key].add(row.contact_id)
        return found


def batch_members(database: Any, workspace_id: int, now: Any) -> dict[str, set[int]]:
    """From the stored events (``preview``), checked against ``audience`` — the batch answer
    from the kept aggregates, in one SQL query where the rule allows."""
    found = {}
    with database.read() as conn:
        for i, where in enumerate(DEFINITIONS):
            key = f"s{i}"
            raw = segments.preview(conn, workspace_id, {"key": key, "where": where}, now)
            found[key] = set(raw["ids"])
            assert set(segments.audience(conn, workspace_id, key, now)) == found[key], key
    return found


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=histories)
def test_real_time_membership_equals_batch_evaluation(client, database, clock, history) -> None:
    tenant = make_tenant(database, clock, f"realtime-{next(_workspaces)}")
    auth = {"Authorization": f"Bearer {tenant.key}"}
    for person in PEOPLE:
        client.post("/v1/identify", json={"userId": person, "traits": {}}, headers=auth)
    for i, where in enumerate(DEFINITIONS):
        answer = client.post("/v1/segments", json={"key": f"s{i}", "where": where}, headers=auth)
        assert answer.status_code == 201, answer.text
    dispatcher = Dispatcher(database, clock, journey_grace=timedelta(0))

    async def drain() -> None:
        while (await dispatcher.run_once()) or dispatcher.journey_work:
            pass

    for minutes, action in history:
        clock.advance(timedelta(minutes=minutes))
        if action[0] == "event":
            _, person, name, x = action
            body = {"userId": person, "event": name, "properties": {"x": x}}
            assert client.post("/v1/track", json=body, headers=auth).status_code == 200
        else:
            _, person, plan = action
            body = {"userId": person, "traits": {"plan": plan}}
            assert client.post("/v1/identify", json=body, headers=auth).status_code == 200
        asyncio.run(drain())
        assert real_time_members(database, tenant.id) == batch_members(
            database, tenant.id, clock.now()
        )
    # Time alone: windows close and waits end with no new event.
    for _ in range(3):
        clock.advance(timedelta(hours=5))
        asyncio.run(drain())
        assert real_time_members(database, tenant.id) == batch_members(
            database, tenant.id, clock.now()
        )
