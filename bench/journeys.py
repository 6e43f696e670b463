"""Journey throughput: the canonical journey run end to end on SQLite, on a virtual clock.

In the same run:

1. Junction: ``--n`` contacts (email, phone, an Android device) send "Signed Up" and enter the
   canonical journey (email; wait 24 h for an open; push; wait 48 h for a purchase; SMS; the
   goal: a purchase within 7 days). A fifth buy two hours in, a tenth more after the push; the
   virtual clock jumps to each moment and the dispatcher (journey engine + capture provider)
   runs until nothing is due. Every call of the step function the runtime makes is an advance
   (entries, timers, events; a message queued or sent reaches no run: the engine skips it).
   The rate is advances per second of journey-engine time; the dispatcher's sending is
   reported on its own.
2. The baseline: the pure step function, ``advance()``, alone over the very same inputs
   (recorded during 1), no database.
3. Memory: ``--parked`` runs parked in a wait (rows written directly, in a child process),
   then engine rounds in this process: idle rounds, 1,000 events and 1,000 due timers among
   them. Reports this process's peak RSS; the target is that it does not grow with the number
   of parked runs (1,000,000 parked: under 500 MB).

Ends with ``RESULT journeys value=<advances/s> … baseline=<advance() alone/s>``.

    .venv/bin/python bench/journeys.py                     # about a minute
    .venv/bin/python bench/journeys.py --n 100000          # the issue's figure (slow, see
                                                           # docs/performance.md)
    .venv/bin/python bench/journeys.py --n 0 --parked 1000000   # memory only
    .venv/bin/python bench/journeys.py --profile           # cProfile of the engine phase
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import multiprocessing
import os
import pstats
import resource
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
import yaml  # type: ignore[import-untyped, unused-ignore]
from sqlalchemy import func, select

from junction.clock import VirtualClock
from junction.domain import journeys as domain
from junction.domain.tracking import Identify, Track
from junction.engine import loop
from junction.engine.dispatcher import Dispatcher
from junction.engine.journeys import JourneyEngine
from junction.store import journey_runs, migrate
from junction.store import journeys as definitions
from junction.store import templates as template_store
from junction.store.contacts import register_device
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.sql import driver_json, driver_time
from junction.store.tables import contacts
from junction.store.tables import journey_runs as runs_table
from junction.store.workspaces import create_workspace

SECRET = "bench-secret"
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TARGET_RATE = 20_000
TARGET_RSS_MB = 500
# The canonical journey and its templates, as shipped in examples/journeys/.
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "journeys"
TEMPLATES = list(yaml.safe_load_all((EXAMPLES / "templates.yaml").read_text()))
LAUNCH = yaml.safe_load((EXAMPLES / "launch.yaml").read_text())


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def user(index: int) -> str:
    return f"u{index:07d}"


def fresh_database(path: Path) -> Database:
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    return database


def set_up(database: Database, n: int, now: datetime) -> int:
    """A workspace with the templates, the active journey and n identified contacts."""
    with database.write() as conn:
        workspace = create_workspace(conn, "bench", now, SECRET).workspace.id
        for template in TEMPLATES:
            template_store.save(conn, workspace, template, now)
        definitions.save(conn, workspace, LAUNCH, now)
        definitions.move(conn, workspace, "launch", "activate", now)
    for first in range(0, n, 5000):
        people = range(first, min(n, first + 5000))
        calls = [
            Identify(
                user_id=user(i),
                traits={"email": f"{user(i)}@x.io", "phone": f"+336{i:08d}", "first_name": "A"},
            )
            for i in people
        ]
        with database.write() as conn:
            ingest(conn, workspace, Batch(messages=calls, received_at=now), SECRET)
            for i in people:
                register_device(conn, workspace, user(i), "push", f"token-{i}", {}, now)  # type: ignore[arg-type]
    return workspace


def track(database: Database, workspace: int, people: range, event: str, now: datetime) -> None:
    for first in range(people.start, people.stop, 5000):
        calls = [
            Track(user_id=user(i), event=event)
            for i in range(first, min(people.stop, first + 5000))
        ]
        with database.write() as conn:
            ingest(conn, workspace, Batch(messages=calls, received_at=now), SECRET)


class Timed:
    """Stands in for the dispatcher's journey engine and adds up the time it takes."""

    def __init__(self, engine: JourneyEngine, profiler: cProfile.Profile | None) -> None:
        self.engine = engine
        self.profiler = profiler  # enabled in the thread the engine runs in
        self.seconds = 0.0
        self.rounds = 0

    def run_once(self) -> int:
        started = time.perf_counter()
        if self.profiler:
            self.profiler.enable()
        try:
            return self.engine.run_once()
        finally:
            if self.profiler:
                self.profiler.disable()
            self.seconds += time.perf_counter() - started
            self.rounds += 1


def end_to_end(workdir: Path, n: int, profile: bool) -> dict[str, Any]:
    database = fresh_database(workdir / "journeys.db")
    clock = VirtualClock(START)
    say(f"set-up: {n:,} contacts with email, phone and a device…")
    workspace = set_up(database, n, clock.now())

    recorded: list[tuple[Any, ...]] = []
    original: Callable[..., Any] = getattr(journey_runs, "advance")  # noqa: B009

    def recording(*args: Any) -> Any:
        recorded.append(args)
        return original(*args)

    setattr(journey_runs, "advance", recording)  # noqa: B010
    dispatcher = Dispatcher(database, clock, journey_grace=timedelta(0))
    profiler = cProfile.Profile() if profile else None
    timed = Timed(dispatcher._journeys, profiler)
    dispatcher._journeys = timed  # type: ignore[assignment]
    wall = 0.0

    def drain() -> None:
        nonlocal wall
        started = time.perf_counter()
        loop.run(dispatcher.drain())  # as `junction worker` runs it
        wall += time.perf_counter() - started

    try:
        say("entering everyone (Signed Up), sending the emails…")
        track(database, workspace, range(n), "Signed Up", clock.now())
        drain()
        say("a fifth buy two hours in…")
        clock.advance(timedelta(hours=2))
        track(database, workspace, range(0, n // 5), "Order Completed", clock.now())
        drain()
        say("a day later: the push…")
        clock.advance(timedelta(hours=23))
        drain()
        say("a tenth more buy…")
        clock.advance(timedelta(hours=10))
        track(database, workspace, range(n // 5, n // 5 + n // 10), "Order Completed", clock.now())
        drain()
        say("48 hours after the push: the SMS…")
        clock.advance(timedelta(hours=40))
        drain()
        clock.advance(timedelta(days=5))
        drain()
    finally:
        setattr(journey_runs, "advance", original)  # noqa: B010
    with database.read() as conn:
        by_status: dict[str, int] = dict(
            conn.execute(
                select(runs_table.c.status, func.count()).group_by(runs_table.c.status)
            ).all()
        )
    unfinished = {k: v for k, v in by_status.items() if k not in domain.FINAL}
    if unfinished or sum(by_status.values()) != n:
        raise SystemExit(f"runs not all final: {by_status}")
    database.dispose()
    if profiler:
        stats = pstats.Stats(profiler, stream=sys.stderr)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(25)
    return {
        "recorded": recorded,
        "engine_seconds": timed.seconds,
        "wall": wall,
        "rounds": timed.rounds,
        "statuses": by_status,
    }


def baseline(recorded: list[tuple[Any, ...]]) -> tuple[float, int]:
    """advance() alone over the recorded inputs: (advances/s, how many changed their run)."""
    advance = domain.advance
    changed = 0
    started = time.perf_counter()
    for definition, run_id, state, trigger, now, contact in recorded:
        new, effects = advance(definition, run_id, state, trigger, now, contact)
        if effects or new != state:
            changed += 1
    elapsed = time.perf_counter() - started
    return len(recorded) / elapsed, changed


def park(path: str, count: int) -> None:
    """Write ``count`` contacts and runs parked in wait-buy (a child process: its memory is
    not the measured one). Their timers are one second apart from START + 48 h."""
    database = fresh_database(Path(path))
    now = START
    with database.write() as conn:
        workspace = create_workspace(conn, "parked", now, SECRET).workspace.id
        for template in TEMPLATES:
            template_store.save(conn, workspace, template, now)
        definitions.save(conn, workspace, LAUNCH, now)
        definitions.move(conn, workspace, "launch", "activate", now)
        journey = definitions.row_of(conn, workspace, "launch")
        definition = definitions.load(conn, journey.id, journey.current_version)
    # The state of a run that got the email, had it opened and now waits for a purchase.
    state, _ = domain.advance(definition, 1, None, domain.Entered(context={}, event=None), now, {})
    entered: dict[str, Any] = state.to_dict()
    to_time = driver_time(database.engine.connect())
    for first in range(0, count, 50_000):
        ids = range(first + 1, min(count, first + 50_000) + 1)
        people = [
            (
                i,
                workspace,
                user(i),
                driver_json({"email": f"{user(i)}@x.io"}),
                to_time(now),
                to_time(now),
            )
            for i in ids
        ]
        parked = []
        for i in ids:
            wake = now + timedelta(hours=48, seconds=i)
            row = dict(entered)
            row["step"] = "wait-buy"
            row["sent"] = {"email": f"journey:{i}:email:1"}
            row["visits"] = {"email": 1, "wait-open": 1, "wait-buy": 1}
            row["waiting"] = {
                **(entered["waiting"] or {}),
                "step": "wait-buy",
                "until": wake.isoformat(),
                "event": "Order Completed",
                "message_of": None,
                "engagement": None,
            }
            parked.append(
                (
                    i,
                    workspace,
                    journey.id,
                    journey.current_version,
                    i,
                    "waiting",
                    "wait-buy",
                    json.dumps(row),
                    to_time(wake),
                    to_time(now),
                    to_time(now),
                )
            )
        with database.write() as conn:
            conn.exec_driver_sql(
                "INSERT INTO contacts (id, workspace_id, user_id, traits, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                people,
            )
            conn.exec_driver_sql(
                "INSERT INTO journey_runs (id, workspace_id, journey_id, version, contact_id, "
                "status, step, state, wake_at, entered_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                parked,
            )
    database.dispose()


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def parked_memory(workdir: Path, count: int) -> dict[str, float]:
    """Engine rounds among ``count`` parked runs; this process's memory."""
    path = workdir / f"parked-{count}.db"
    say(f"parking {count:,} runs in a wait (child process)…")
    started = time.perf_counter()
    child = multiprocessing.get_context("fork").Process(target=park, args=(str(path), count))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise SystemExit("parking failed")
    say(f"  parked in {time.perf_counter() - started:.0f} s; engine rounds among them…")
    database = Database(f"sqlite:///{path}")
    clock = VirtualClock(START + timedelta(hours=1))
    engine = JourneyEngine(database, clock, grace=timedelta(0))
    before = rss_mb()
    tracemalloc.start()
    for _ in range(10):
        engine.run_once()  # nothing due: the idle rounds of a worker
    with database.read() as conn:
        workspace = conn.execute(contacts.select().limit(1)).first().workspace_id  # type: ignore[union-attr]
    touched = min(1000, count // 2)
    track(database, workspace, range(1, touched + 1), "Order Completed", clock.now())
    handled = 0
    while engine.run_once():
        handled += 1
    clock.set(START + timedelta(hours=48, seconds=2 * touched))  # 1,000 more timers due
    while engine.run_once():
        handled += 1
    _, traced = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    with database.read() as conn:
        ended = conn.execute(
            select(func.count())
            .select_from(runs_table)
            .where(runs_table.c.status.in_(sorted(domain.FINAL)))
        ).scalar_one()
    if ended != 2 * touched:
        raise SystemExit(f"{ended} parked runs ended; expected {2 * touched}")
    database.dispose()
    return {
        "parked": count,
        "rss_before": before,
        "rss_after": rss_mb(),
        "peak": peak_mb(),
        "traced_peak": traced / 2**20,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="contacts entering (default 2000)")
    parser.add_argument("--parked", type=int, default=100_000, help="runs parked (default 100,000)")
    parser.add_argument("--profile", action="store_true", help="cProfile the engine phase")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        memory = parked_memory(workdir, args.parked) if args.parked else None
        if args.n:
            run = end_to_end(workdir, args.n, args.profile)
            recorded = run["recorded"]
            say("baseline: advance() alone over the same inputs…")
            base, changed = baseline(recorded)
    if memory:
        print(
            f"parked {memory['parked']:>9,.0f} runs: RSS {memory['rss_before']:.0f} MB before the "
            f"rounds, {memory['rss_after']:.0f} MB after, peak {memory['peak']:.0f} MB "
            f"(target < {TARGET_RSS_MB}); traced Python peak {memory['traced_peak']:.1f} MB"
        )
    if not args.n:
        return 0
    advances = len(recorded)
    rate = advances / run["engine_seconds"]
    sending = run["wall"] - run["engine_seconds"]
    print(f"runs               {args.n:>9,}   ended {run['statuses']}")
    print(f"advances           {advances:>9,}   ({changed:,} changed their run)")
    print(f"journey engine     {run['engine_seconds']:9.1f} s in {run['rounds']} rounds")
    print(f"dispatcher sending {sending:9.1f} s")
    print(f"junction           {rate:9,.0f} advances/s (target >= {TARGET_RATE:,})")
    print(f"advance() alone    {base:9,.0f} advances/s")
    if memory:
        print(f"peak RSS with {memory['parked']:,} parked: {memory['peak']:.0f} MB")
    print(
        f"RESULT journeys value={rate:.0f} unit=advances/s baseline={base:.0f} "
        f"ratio={rate / base:.4f} target=>={TARGET_RATE}/s,parked_rss<{TARGET_RSS_MB}MB"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JUNCTION_LOG_LEVEL", "warning")
    # the parked runs have no phone: their SMS step logs (info) that it cannot send
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.exit(main())
