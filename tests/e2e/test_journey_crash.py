"""The journey crash test: real ``junction worker`` processes are SIGKILLed while thousands of
runs are mid-journey; restarted, every run ends where it should, and no step sends twice.

The journey: "Crash Start" enters a person; send an email; wait for "Go" (a week at most);
send an SMS; end. The real clock drives the workers and a journey's smallest period is a
minute, so the journey moves on events, not on time.

1. PEOPLE (10,000, the issue's figure) are identified and send "Crash Start" (one ingest batch);
2. a worker starts; once some runs have entered and some emails went out, it is killed
   (mid-entry: events read, runs entered, messages queued and sent, all interrupted);
3. everyone sends "Go" (one ingest batch);
4. a worker starts; once some SMS exist, it is killed (mid-event: the cursor, the advances
   and the SMS they queue); again a worker starts and is killed once more SMS are sent;
5. a last worker runs until every run is final and every message is sent.

Then: every run completed; one email and one SMS per person, under the keys
``journey:{run}:{step}:1``; no message has two ``sent`` attempts (the capture provider, which
the workspace uses, records each send as the message's attempt); the journey's counts say
PEOPLE entered, PEOPLE sent on each send step.

Kills land at moments the test observes in the database (polled, with deadlines), not after
sleeps; each one is checked to have interrupted unfinished work.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, func, select

from junction.domain.tracking import Identify, Track
from junction.store import journeys as definitions
from junction.store import outbox
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.tables import journey_counts, journey_runs, message_attempts, messages
from tests.conftest import SECRET, Tenant

# The figure: 10,000 runs mid-journey (about 80 seconds per database here);
# JUNCTION_TEST_JOURNEY_CRASH_PEOPLE sets another.
PEOPLE = int(os.environ.get("JUNCTION_TEST_JOURNEY_CRASH_PEOPLE", "10000"))
LEASE_SECONDS = 1.5  # a killed worker's claimed messages are claimed again this soon
DEADLINE = 60 + PEOPLE * 0.05  # seconds for any one phase
POLL = 0.05  # seconds between looks at the database
JOURNEY = {
    "key": "crash",
    "name": "Crash",
    "trigger": {"event": "Crash Start"},
    "steps": [
        {
            "id": "email",
            "type": "send",
            "channel": "email",
            "content": {"subject": "Welcome", "text": "Hello there"},
            "next": "wait-go",
        },
        {
            "id": "wait-go",
            "type": "wait_for",
            "event": "Go",
            "timeout": {"amount": 7, "unit": "days"},
            "onEvent": "sms",
            "onTimeout": "too-late",
        },
        {"id": "sms", "type": "send", "channel": "sms", "content": {"text": "Go!"}, "next": None},
        {"id": "too-late", "type": "exit"},
    ],
}


def user(index: int) -> str:
    return f"crash{index:05d}"


def track_all(database: Database, tenant: Tenant, event: str, identify: bool = False) -> None:
    """One ingest batch: (identify and) track ``event`` for everyone, at the real time (the
    workers' clock)."""
    calls: list[Identify | Track] = []
    for index in range(PEOPLE):
        if identify:
            traits = {"email": f"{user(index)}@example.net", "phone": f"+336{index:08d}"}
            calls.append(Identify(user_id=user(index), traits=traits))
        calls.append(Track(user_id=user(index), event=event))
    with database.write() as conn:
        ingest(conn, tenant.id, Batch(messages=calls, received_at=datetime.now(UTC)), SECRET)


@contextmanager
def worker(database: Database, tmp_path: Path, log: str) -> Iterator[subprocess.Popen[bytes]]:
    """A ``junction worker`` process, SIGKILLed on the way out unless it has already ended."""
    env = {
        **os.environ,
        "JUNCTION_DATABASE_URL": database.url.render_as_string(hide_password=False),
        "JUNCTION_SECRET_KEY": SECRET,
        "JUNCTION_DISPATCH_LEASE_SECONDS": str(LEASE_SECONDS),
        "JUNCTION_LOG_LEVEL": "warning",
    }
    with (tmp_path / f"{log}.log").open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "junction", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)


def kill(process: subprocess.Popen[bytes]) -> None:
    assert process.poll() is None, "the worker ended on its own"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)


def wait_until(
    database: Database, process: subprocess.Popen[bytes], what: str, done: Callable[..., bool]
) -> None:
    """Poll the database until ``done(conn)``; fail after DEADLINE or if the worker dies."""
    deadline = time.monotonic() + DEADLINE
    while True:
        with database.read() as conn:
            if done(conn):
                return
        assert process.poll() is None, f"the worker exited ({process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE} s"
        time.sleep(POLL)  # polling the database for the outcome


def sent(conn: Connection, channel: str) -> int:
    return conn.execute(
        select(func.count())
        .select_from(messages)
        .where(messages.c.channel == channel, messages.c.status == outbox.SENT)
    ).scalar_one()


def queued(conn: Connection, channel: str) -> int:
    return conn.execute(
        select(func.count()).select_from(messages).where(messages.c.channel == channel)
    ).scalar_one()


def runs(conn: Connection, status: str | None = None) -> int:
    query = select(func.count()).select_from(journey_runs)
    if status is not None:
        query = query.where(journey_runs.c.status == status)
    return conn.execute(query).scalar_one()


def all_settled(conn: Connection) -> bool:
    unsent = conn.execute(
        select(func.count()).select_from(messages).where(messages.c.status != outbox.SENT)
    ).scalar_one()
    return unsent == 0 and runs(conn, "completed") == PEOPLE and sent(conn, "sms") == PEOPLE


def test_sigkill_mid_journey(database: Database, tenant: Tenant, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with database.write() as conn:
        definitions.save(conn, tenant.id, JOURNEY, now)
        definitions.move(conn, tenant.id, "crash", "activate", now)
    track_all(database, tenant, "Crash Start", identify=True)
    started = time.monotonic()
    timings: dict[str, float] = {}

    # Killed while entering people: some runs entered and emails sent, not all.
    with worker(database, tmp_path, "worker-1") as process:
        wait_until(
            database,
            process,
            "entries and sent emails",
            lambda conn: runs(conn) >= PEOPLE // 5 and sent(conn, "email") >= 1,
        )
        kill(process)
    with database.read() as conn:
        assert runs(conn) < PEOPLE or sent(conn, "email") < PEOPLE, "killed too late"
    timings["entering"] = time.monotonic() - started

    track_all(database, tenant, "Go")

    # Killed twice while the Go events move runs on and their SMS go out.
    with worker(database, tmp_path, "worker-2") as process:
        wait_until(database, process, "SMS", lambda conn: queued(conn, "sms") >= PEOPLE // 10)
        kill(process)
    with database.read() as conn:
        assert runs(conn, "completed") < PEOPLE, "killed too late"
        seen = queued(conn, "sms")
    with worker(database, tmp_path, "worker-3") as process:
        wait_until(
            database,
            process,
            "more SMS",
            lambda conn: queued(conn, "sms") >= seen + PEOPLE // 5 and sent(conn, "sms") >= 1,
        )
        kill(process)
    with database.read() as conn:
        assert not all_settled(conn), "killed too late"
    timings["going"] = time.monotonic() - started - timings["entering"]

    with worker(database, tmp_path, "worker-4") as process:
        wait_until(database, process, "every run final", all_settled)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    timings["total"] = time.monotonic() - started
    print(f"\n{database.url.get_backend_name()}: {PEOPLE} runs, seconds {timings}")

    with database.read() as conn:
        assert dict(
            conn.execute(select(journey_runs.c.status, func.count()).group_by("status")).all()
        ) == {"completed": PEOPLE}
        # One email and one SMS per person, each under its step's key.
        per_contact = conn.execute(
            select(messages.c.contact_id, messages.c.channel, func.count())
            .group_by(messages.c.contact_id, messages.c.channel)
            .having(func.count() != 1)
        ).all()
        assert per_contact == []
        by_channel: dict[str, int] = dict(
            conn.execute(select(messages.c.channel, func.count()).group_by("channel")).all()
        )
        assert by_channel == {"email": PEOPLE, "sms": PEOPLE}
        expected_keys = {
            f"journey:{run}:{step}:1"
            for run in conn.execute(select(journey_runs.c.id)).scalars()
            for step in ("email", "sms")
        }
        keys = list(conn.execute(select(messages.c.idempotency_key)).scalars())
        assert len(keys) == len(set(keys)) and set(keys) == expected_keys
        # Each message was sent once: at most one successful attempt each (none missing).
        attempts: dict[int, int] = dict(
            conn.execute(
                select(message_attempts.c.message_id, func.count())
                .where(message_attempts.c.outcome == outbox.SENT)
                .group_by(message_attempts.c.message_id)
            ).all()
        )
        assert len(attempts) == 2 * PEOPLE and set(attempts.values()) == {1}
        counts = {
            (step, metric): amount
            for step, metric, amount in conn.execute(
                select(journey_counts.c.step, journey_counts.c.metric, journey_counts.c.count)
            )
        }
    assert counts[("", "entered")] == PEOPLE
    assert counts[("email", "sent")] == PEOPLE and counts[("sms", "sent")] == PEOPLE
    assert counts[("", "completed")] == PEOPLE
    assert counts.get(("email", "failed"), 0) == counts.get(("sms", "failed"), 0) == 0
