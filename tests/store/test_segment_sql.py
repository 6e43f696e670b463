"""The audience query SQLite runs for cart abandonment: its plan reads the kept aggregates
from indexes alone, and the statistics that plan needs are gathered when aggregates are
built."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from junction.clock import VirtualClock
from junction.domain.tracking import Track
from junction.store import segments as store
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.segment_sql import members_query
from tests.conftest import SECRET, START, make_tenant

# The index covering a person's signals with their last time (the migrations name it).
SIGNALS_BY_PERSON = "ix_segment_signals_contact_id_signal_last_at"
WEEK = {"amount": 7, "unit": "days"}
ABANDONED = {
    "key": "abandoned",
    "where": {
        "performed": "Added to Cart",
        "notFollowedBy": {"event": "Order Completed"},
        "within": WEEK,
    },
}


def _track(database: Database, workspace: int, user: str, event: str, days_ago: float) -> None:
    when = START - timedelta(days=days_ago)
    with database.write() as conn:
        ingest(
            conn, workspace, Batch([Track(user_id=user, event=event, timestamp=when)], when), SECRET
        )


def _plan(database: Database, query: Any) -> str:
    with database.read() as conn:
        sql = str(query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
        return " | ".join(row[3] for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))


@pytest.fixture
def sqlite_database(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "junction.db"
    shutil.copy(sqlite_template, path)
    database = Database(f"sqlite:///{path}")
    yield database
    database.dispose()


def test_cart_abandonment_reads_indexes_alone(sqlite_database: Database) -> None:
    """Even before any statistics: the order signal's probe is bounded by the week, which
    only the covering index can use."""
    definition = store.parse_definition(ABANDONED)
    plan = _plan(sqlite_database, members_query(definition, 1, START))
    assert "SEARCH signal_0 USING COVERING INDEX" in plan, plan
    assert f"SEARCH signal_1 USING COVERING INDEX {SIGNALS_BY_PERSON}" in plan, plan


def test_building_aggregates_gathers_statistics(sqlite_database: Database) -> None:
    database = sqlite_database
    workspace = make_tenant(database, VirtualClock(START), "acme").id
    # ann: cart, no order; bob: ordered after his cart; cat: ordered before it; dan: an old
    # cart; eve: ordered long ago, then a cart this week.
    for user, event, days_ago in [
        ("ann", "Added to Cart", 2),
        ("bob", "Added to Cart", 3),
        ("bob", "Order Completed", 2),
        ("cat", "Order Completed", 4),
        ("cat", "Added to Cart", 1),
        ("dan", "Added to Cart", 20),
        ("eve", "Order Completed", 30),
        ("eve", "Added to Cart", 1),
    ]:
        _track(database, workspace, user, event, days_ago)
    with database.read() as conn:
        assert not _statistics(conn)
    with database.write() as conn:
        store.save(conn, workspace, ABANDONED, START)
    with database.read() as conn:
        # With them, SQLite also sees the covering index where no window bounds the probe.
        assert {index for index, stat in _statistics(conn) if stat} >= {SIGNALS_BY_PERSON}
        ids = dict(conn.execute(text("SELECT user_id, id FROM contacts")).all())
        members = store.audience(conn, workspace, "abandoned", START)
    assert members == sorted(ids[u] for u in ("ann", "cat", "eve"))


def _statistics(conn: Connection) -> list[tuple[str, str]]:
    """SQLite's statistics of segment_signals' indexes (none before the first ANALYZE)."""
    if not conn.execute(text("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'")).first():
        return []
    found = conn.execute(
        text("SELECT idx, stat FROM sqlite_stat1 WHERE tbl = 'segment_signals'")
    ).all()
    return [(row[0], row[1]) for row in found]
