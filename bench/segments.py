"""Segment evaluation: "added to cart in the last 7 days with no purchase after it".

In the same run, over the same generated data (``--n`` contacts, each with an email address,
and 10 x n events over the 60 days before now: Viewed Product, Session Started, Added to Cart,
Order Completed, people and times drawn at random):

1. Junction, on a migrated SQLite database the rows are written into in bulk. Saving the
   segment builds the per-contact aggregates of its two signals from the raw events once
   (reported on its own: "aggregates built from raw events"). The measured value is
   ``junction.store.segments.audience()``: the batch evaluation a campaign calls, from those
   aggregates (candidates from the index, then each candidate's facts and verdict).
2. The baseline: DuckDB (in memory, the same events loaded before timing) running the
   equivalent SQL over the raw events; only the query is timed.

Both answers must be the same set of contact ids. Each side runs ``--repeat`` times; the
best time of each counts. Also prints this process's peak RSS.

Ends with ``RESULT segments value=<s> unit=s baseline=<duckdb s> ratio=<ours/duckdb> …``;
the target is at most 3x DuckDB's time.

    .venv/bin/python bench/segments.py               # 100,000 contacts, about a minute
    .venv/bin/python bench/segments.py --n 1000000   # the issue's figure (10,000,000 events)
    .venv/bin/python bench/segments.py --profile     # cProfile of one audience() call
"""

from __future__ import annotations

import argparse
import cProfile
import csv
import pstats
import random
import resource
import sqlite3
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import orjson

from junction.store import migrate
from junction.store import segments as store
from junction.store.database import Database
from junction.store.workspaces import create_workspace

NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DAYS = 60
TARGET_RATIO = 3.0
SEGMENT = {
    "key": "cart-abandoners",
    "name": "Added to cart in the last 7 days, no purchase after it",
    "where": {
        "performed": "Added to Cart",
        "notFollowedBy": {"event": "Order Completed"},
        "within": {"amount": 7, "unit": "days"},
    },
}
# Event names and their shares; each name has a few property payloads.
NAMES = ("Viewed Product", "Session Started", "Added to Cart", "Order Completed")
WEIGHTS = (40, 30, 20, 10)
PAYLOADS: dict[str, list[dict[str, Any]]] = {
    "Viewed Product": [{"sku": f"sku-{i}"} for i in range(20)],
    "Session Started": [{"platform": p} for p in ("ios", "android", "web")],
    "Added to Cart": [{"sku": f"sku-{i}", "price": 5 + i} for i in range(20)],
    "Order Completed": [{"total": 10 * i, "currency": "EUR"} for i in range(1, 30)],
}
DUCKDB_QUERY = """
WITH carts AS (
    SELECT contact_id, max(ts) AS last_cart FROM events
    WHERE name = 'Added to Cart' GROUP BY contact_id
), orders AS (
    SELECT contact_id, max(ts) AS last_order FROM events
    WHERE name = 'Order Completed' GROUP BY contact_id
)
SELECT carts.contact_id FROM carts LEFT JOIN orders USING (contact_id)
WHERE carts.last_cart >= $since
  AND (orders.last_order IS NULL OR orders.last_order < carts.last_cart)
"""


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Events:
    """The generated events, column by column: person (0..n-1), name index, seconds before
    now, payload index."""

    def __init__(self, n: int, seed: int) -> None:
        rng = random.Random(seed)
        count = 10 * n
        self.person = array("i", rng.choices(range(n), k=count))
        self.name = array("b", rng.choices(range(len(NAMES)), weights=WEIGHTS, k=count))
        self.ago = array("i", rng.choices(range(DAYS * 86400), k=count))
        self.payload = array("b", rng.choices(range(20), k=count))

    def __len__(self) -> int:
        return len(self.person)


def load_sqlite(path: Path, n: int, data: Events) -> tuple[int, list[int]]:
    """A migrated Junction database with the workspace, contacts, addresses and events;
    returns the workspace id and the contact id of each person."""
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    with database.write() as conn:
        workspace = create_workspace(conn, "bench", NOW, "bench-secret").workspace.id
    database.dispose()
    stamp = NOW.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA synchronous=OFF")
    raw.execute("PRAGMA cache_size=-1000000")  # 1 GB: the indexes are built in memory
    raw.execute("BEGIN")
    raw.executemany(
        "INSERT INTO contacts (workspace_id, user_id, traits, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (
            (workspace, f"u{i}", '{"plan": "%s"}' % ("pro" if i % 5 == 0 else "free"), stamp, stamp)
            for i in range(n)
        ),
    )
    ids = [row[0] for row in raw.execute("SELECT id FROM contacts ORDER BY id")]
    raw.executemany(
        "INSERT INTO addresses (workspace_id, contact_id, kind, value, status, details, "
        "created_at, updated_at) VALUES (?, ?, 'email', ?, 'active', '{}', ?, ?)",
        ((workspace, ids[i], f"u{i}@example.com", stamp, stamp) for i in range(n)),
    )
    # Timestamps as UtcDateTime stores them on SQLite, without a datetime per row.
    earliest = NOW - timedelta(days=DAYS)
    start = datetime(earliest.year, earliest.month, earliest.day, tzinfo=UTC)  # its midnight
    days = [(start + timedelta(days=d)).strftime("%Y-%m-%d") for d in range(DAYS + 2)]
    clock = [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}.000000" for s in range(86400)]
    offset = int((NOW - start).total_seconds())
    payloads = [[orjson.dumps(p).decode() for p in PAYLOADS[name]] for name in NAMES]

    def rows(first: int, last: int) -> Iterator[tuple[Any, ...]]:
        for i in range(first, last):
            since_start = offset - data.ago[i]
            moment = f"{days[since_start // 86400]} {clock[since_start % 86400]}"
            kind = data.name[i]
            texts = payloads[kind]
            yield (
                workspace,
                ids[data.person[i]],
                f"e{i:09d}",
                NAMES[kind],
                texts[data.payload[i] % len(texts)],
                moment,
                moment,
            )

    for first in range(0, len(data), 500_000):
        raw.executemany(
            "INSERT INTO events (workspace_id, contact_id, message_id, type, name, properties, "
            "timestamp, received_at) VALUES (?, ?, ?, 'track', ?, ?, ?, ?)",
            rows(first, min(len(data), first + 500_000)),
        )
    raw.execute("COMMIT")
    raw.execute("ANALYZE")
    raw.close()
    return workspace, ids


def load_duckdb(workdir: Path, data: Events, ids: list[int]) -> duckdb.DuckDBPyConnection:
    """The same events in DuckDB (in memory): contact id, name, timestamp."""
    path = workdir / "events.csv"
    base = int(NOW.timestamp())
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        for i in range(len(data)):
            writer.writerow((ids[data.person[i]], NAMES[data.name[i]], base - data.ago[i]))
    duck = duckdb.connect()
    duck.execute(
        "CREATE TABLE events AS SELECT contact_id, name, make_timestamp(epoch * 1000000) AS ts "
        "FROM read_csv($path, header = false, "
        "columns = {'contact_id': 'BIGINT', 'name': 'VARCHAR', 'epoch': 'BIGINT'})",
        {"path": str(path)},
    )
    path.unlink()
    return duck


def ours(database: Database, workspace: int) -> list[int]:
    with database.read() as conn:
        return store.audience(conn, workspace, SEGMENT["key"], NOW)  # type: ignore[arg-type]


def theirs(duck: duckdb.DuckDBPyConnection) -> list[int]:
    since = (NOW - timedelta(days=7)).replace(tzinfo=None)
    return [row[0] for row in duck.execute(DUCKDB_QUERY, {"since": since}).fetchall()]


def best(run: Callable[[], list[int]], repeat: int) -> tuple[float, list[int]]:
    times: list[float] = []
    answer: list[int] = []
    for _ in range(repeat):
        started = time.perf_counter()
        answer = run()
        times.append(time.perf_counter() - started)
    return min(times), answer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="contacts (events: 10 x n)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each side")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", action="store_true", help="cProfile one audience() call")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        say(f"generating {args.n:,} contacts and {10 * args.n:,} events…")
        started = time.perf_counter()
        data = Events(args.n, args.seed)
        say(f"  {time.perf_counter() - started:.1f} s; writing them into SQLite…")
        started = time.perf_counter()
        workspace, ids = load_sqlite(workdir / "junction.db", args.n, data)
        say(f"  {time.perf_counter() - started:.1f} s; loading the same events into DuckDB…")
        started = time.perf_counter()
        duck = load_duckdb(workdir, data, ids)
        say(f"  {time.perf_counter() - started:.1f} s")
        del data

        database = Database(f"sqlite:///{workdir / 'junction.db'}")
        started = time.perf_counter()
        with database.write() as conn:
            saved = store.save(conn, workspace, SEGMENT, NOW)
        built = time.perf_counter() - started
        say(
            f"save(): aggregates built from raw events, then evaluated and members written: "
            f"{built:.1f} s ({saved['members']:,} members)"
        )
        if args.profile:
            profiler = cProfile.Profile()
            profiler.runcall(ours, database, workspace)
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(30)
            return 0

        base, expected = best(lambda: theirs(duck), args.repeat)
        say(f"DuckDB, the SQL over {10 * args.n:,} raw events: {base:.3f} s")
        value, found = best(lambda: ours(database, workspace), args.repeat)
        say(f"Junction audience() from the aggregates: {value:.3f} s")
        if len(found) != len(expected) or set(found) != set(expected):
            raise SystemExit(
                f"different answers: Junction {len(found):,} members, DuckDB {len(expected):,}"
            )
        say(f"both: {len(found):,} members; peak RSS {peak_mb():.0f} MB")
        database.dispose()
        duck.close()
    ratio = value / base
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    say(f"target <= {TARGET_RATIO:g}x DuckDB: {verdict} ({ratio:.1f}x)")
    print(
        f"RESULT segments value={value:.3f} unit=s baseline={base:.3f} ratio={ratio:.2f} "
        f"target=<=3x duckdb"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
