"""Campaign throughput: one campaign to ``--n`` contacts on SQLite, through the whole path.

In the same run:

1. Junction: a fresh SQLite database with ``--n`` contacts (an email address each; a third
   with a phone too), a template, a topic and a workspace frequency cap. The campaign asks
   for the best of SMS and email on the topic. Timed, in one process: ``send`` (the audience
   read and frozen: a recipient row each, variant and due time), then the dispatcher until
   nothing is due, as a worker runs it: each round the campaign engine queues a batch of
   recipients (outbox rows written in bulk, while fewer than 4,000 wait there) and the
   dispatcher claims a batch: channel policy (preferences, caps, quiet hours, the best
   channel), render, the capture provider, the outcome recorded on the message (the message
   log) with its ``message.sent`` event. The value is messages per second over both phases.
2. The baseline: the same number of message rows (same table, same values, an outbox row
   each) inserted by raw ``sqlite3`` ``executemany`` into a fresh database, 1,000 rows a
   transaction: what the disk allows for the write alone.
3. Memory: this process's peak RSS over the run.

Ends with ``RESULT campaign value=<msgs/s> unit=messages/s baseline=<rows/s> ratio=<x>
target=>=10000/s``.

    .venv/bin/python bench/campaign.py                 # about a minute
    .venv/bin/python bench/campaign.py --n 1000000     # the issue's figure (long: see
                                                       # docs/performance.md)
    .venv/bin/python bench/campaign.py --profile       # cProfile of the two phases
    .venv/bin/python bench/campaign.py --n 1000000 --queue-only   # the campaign's own part:
                                                       # audience → recipients → outbox
    .venv/bin/python bench/campaign.py --pull          # push and pull: an in-app message
                                                       # beside each (2 messages a person)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
import pstats
import resource
import sqlite3
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import func, select

from junction.clock import VirtualClock
from junction.engine import loop
from junction.engine.campaigns import CampaignEngine
from junction.engine.dispatcher import Dispatcher
from junction.store import campaigns, migrate, templates
from junction.store.database import Database
from junction.store.preferences import save_topic, set_rules
from junction.store.sql import driver_time, sqlite_time
from junction.store.tables import messages
from junction.store.workspaces import create_workspace

SECRET = "bench-secret"
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
TARGET = 10_000
TEMPLATE = {
    "key": "sale",
    "channels": {
        "email": {"subject": "Sale, {{ contact.first_name }}", "text": "30% off everything."},
        "sms": {"text": "Sale: 30% off everything."},
    },
}
CAMPAIGN = {
    "key": "sale",
    "audience": "everyone",
    "message": {"template": "sale", "channels": ["sms", "email"], "category": "offers"},
}
# --pull: each person also gets an in-app message, stored in Junction's own inbox.
IN_APP = {"title": "Sale", "body": "30% off everything, {{ contact.first_name }}."}
PULL = {"channel": "in_app", "template": "sale"}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def fresh_database(path: Path) -> Database:
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    return database


def set_up(database: Database, n: int, pull: bool) -> int:
    """Contacts and addresses written directly (this is not what is measured)."""
    with database.write() as conn:
        workspace = create_workspace(conn, "bench", START, SECRET).workspace.id
        template = {**TEMPLATE, "channels": {**TEMPLATE["channels"], "in_app": IN_APP}}
        templates.save(conn, workspace, template if pull else TEMPLATE, START)
        save_topic(conn, workspace, "offers", name="Offers", now=START)
        caps = {"caps": [{"id": "weekly", "limit": 3, "per": {"amount": 7, "unit": "days"}}]}
        set_rules(conn, workspace, caps, START)
    at = sqlite_time(START)
    for first in range(0, n, 50_000):
        people = range(first, min(n, first + 50_000))
        with database.write() as conn:
            conn.exec_driver_sql(
                "INSERT INTO contacts (id, workspace_id, user_id, traits, timezone, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (i + 1, workspace, f"u{i:07d}", json.dumps({"first_name": "Ada"}), None, at, at)
                    for i in people
                ],
            )
            rows = [
                (workspace, i + 1, "email", f"u{i:07d}@example.net", "active", "{}", at, at)
                for i in people
            ]
            rows += [
                (workspace, i + 1, "phone", f"+336{i:08d}", "active", "{}", at, at)
                for i in people
                if i % 3 == 0
            ]
            conn.exec_driver_sql(
                "INSERT INTO addresses (workspace_id, contact_id, kind, value, status, details, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
    return workspace


def _inline_threads() -> None:
    """Run the dispatcher's blocking calls on the event loop's thread, for the profile."""
    import junction.engine.dispatcher as dispatcher

    async def inline(fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    dispatcher.in_thread = inline  # type: ignore[assignment]


def junction(
    workdir: Path, n: int, profile: bool, queue_only: bool, pull: bool
) -> dict[str, float]:
    database = fresh_database(workdir / "campaign.db")
    say(f"setting up {n:,} contacts…")
    workspace = set_up(database, n, pull)
    clock = VirtualClock(START)
    profiler = cProfile.Profile() if profile else None
    with database.write() as conn:
        campaigns.save(conn, workspace, {**CAMPAIGN, "pull": PULL} if pull else CAMPAIGN, START)
    say("send: freezing the audience…")
    started = time.perf_counter()
    if profiler:
        _inline_threads()  # cProfile sees only the thread it runs in
        profiler.enable()
    with database.write() as conn:
        campaigns.send(conn, workspace, "sale", clock.now())
    frozen = time.perf_counter()
    if queue_only:  # the campaign's own part: recipients into the outbox, no bound
        say(f"  {frozen - started:.1f} s; queueing…")
        engine = CampaignEngine(database, clock, outbox_bound=None)
        while engine.run_once():
            pass
    else:  # as a worker runs it: the dispatcher's rounds queue and send, interleaved
        say(f"  {frozen - started:.1f} s; queueing and dispatching…")
        loop.run(Dispatcher(database, clock).drain())  # as `junction worker` runs it
    done = time.perf_counter()
    if profiler:
        profiler.disable()
        if os.environ.get("BENCH_PROFILE_FILE"):  # for pstats or snakeviz afterwards
            profiler.dump_stats(os.environ["BENCH_PROFILE_FILE"])
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("cumulative").print_stats(70)
    with database.read() as conn:
        by_status = dict(
            conn.execute(select(messages.c.status, func.count()).group_by("status")).all()
        )
        status = campaigns.status(conn, workspace, "sale", False)["status"]
    if sum(by_status.values()) != n * (2 if pull else 1) or status not in (
        "completed",
        "sending",
    ):
        raise SystemExit(f"expected {n} messages and a completed campaign: {by_status}, {status}")
    say(f"  {done - frozen:.1f} s; messages by status: {by_status}")
    database.dispose()
    return {"freeze": frozen - started, "send": done - frozen, "total": done - started}


def baseline(workdir: Path, n: int) -> float:
    """The same message rows, inserted by raw executemany."""
    path = workdir / "baseline.db"
    database = fresh_database(path)
    with database.write() as conn:
        workspace = create_workspace(conn, "bench", START, SECRET).workspace.id
        at = driver_time(conn)(START)
    database.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "cache_size=-65536"):
        db.execute(f"PRAGMA {pragma}")
    content = json.dumps({"templateKey": "sale", "templateVersion": 1})
    policy = json.dumps({"channels": ["sms", "email"]})
    statement = (
        "INSERT INTO messages (workspace_id, contact_id, idempotency_key, channel, provider, "
        "to_address, category, content, status, attempts, due_at, created_at, updated_at, "
        "policy, counts) VALUES (?, NULL, ?, 'email', 'capture', ?, 'offers', ?, 'sent', 1, ?, "
        "?, ?, ?, 1)"
    )
    started = time.perf_counter()
    for first in range(0, n, 1000):
        db.execute("BEGIN")
        db.executemany(
            statement,
            [
                (workspace, f"campaign:1:{i}", f"u{i:07d}@example.net", content, at, at, at, policy)
                for i in range(first, min(n, first + 1000))
            ],
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="contacts (default 20,000)")
    parser.add_argument("--profile", action="store_true", help="cProfile the Junction phases")
    parser.add_argument(
        "--queue-only", action="store_true", help="stop at the outbox: no dispatcher"
    )
    parser.add_argument(
        "--pull", action="store_true", help="push and pull: an in-app message beside each"
    )
    args = parser.parse_args()
    n = args.n * (2 if args.pull else 1)  # messages
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        say(f"baseline: {n:,} message rows by raw executemany…")
        base = baseline(workdir, n)
        times = junction(workdir, args.n, args.profile, args.queue_only, args.pull)
    rate = n / times["total"]
    ratio = rate / base
    print(f"raw executemany baseline   {base:9,.0f} rows/s")
    print(
        f"junction, whole path       {rate:9,.0f} messages/s   ratio {ratio:.2f} "
        f"(target >= {TARGET:,}/s)"
    )
    for phase, count in (("freeze", args.n), ("send", n)):  # recipients, then messages
        label = "queue" if phase == "send" and args.queue_only else phase
        print(f"  {label:9} {times[phase]:8.1f} s   {count / times[phase]:9,.0f} /s")
    print(f"peak RSS                   {peak_rss_mb():9,.0f} MB")
    name = "campaign-queue" if args.queue_only else "campaign"
    name += "-pull" if args.pull else ""
    print(
        f"RESULT {name} value={rate:.0f} unit=messages/s baseline={base:.0f} "
        f"ratio={ratio:.3f} target=>={TARGET}/s"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JUNCTION_LOG_LEVEL", "warning")
    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    sys.exit(main())
