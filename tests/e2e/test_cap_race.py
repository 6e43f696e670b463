"""The cap race: 4 worker processes send promo emails to the same 50 contacts at once, on
PostgreSQL; every contact gets exactly what its frequency caps allow, and no more.

Each contact has 12 promo emails queued, all due at the same moment, in one block of ids, and
the workers claim 5 at a time: a contact's messages fall into three consecutive batches,
which the workers take side by side (``SKIP LOCKED``), so several workers decide for the same
person at the same moment. Routing locks the contacts it decides for, so they take turns, and
each sees the sends the others have claimed but not yet made. Two rules apply: at most 2
emails per hour, and at most 3 promo sends per 24 hours on any channel; half the contacts had
2 promo SMS three hours ago, so the 24-hour rule leaves them 1. Both windows are rolling: the
run cannot straddle a day boundary.

Which worker decided what is recorded by a trigger the test installs for the run (each worker
connects with its own ``application_name``), so the test can show the race did happen: more
than one worker decided for the same contacts.

SQLite has one writer, so there is no race to test there: the test runs on PostgreSQL only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from junction.domain.tracking import Identify
from junction.store import outbox
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.preferences import save_topic, set_rules
from junction.store.tables import contacts, message_attempts, messages
from tests.conftest import SECRET, Tenant

CONTACTS = 50
PER_CONTACT = 12
WORKERS = 4
BATCH_SIZE = 5
DEADLINE = 60  # seconds for the workers to settle every message
HOURLY = "email-2-per-hour"
DAILY = "promo-3-per-24h"
RULES = {
    "caps": [
        {"id": HOURLY, "limit": 2, "per": {"amount": 1, "unit": "hours"}, "channel": "email"},
        {"id": DAILY, "limit": 3, "per": {"amount": 24, "unit": "hours"}, "topic": "promo"},
    ]
}
EARLIER_SENDS = 2  # promo SMS, 3 hours ago, to every other contact
LOG = "cap_race_log"
UNSETTLED = (outbox.QUEUED, outbox.RETRYING, outbox.SENDING)


def user(index: int) -> str:
    return f"racer{index:02d}"


def allowance(index: int) -> tuple[int, str]:
    """(how many of its emails a contact may get, the rule that stops the rest)."""
    if index % 2 == 0:  # had EARLIER_SENDS promo SMS: the 24-hour rule leaves room for 1
        return 3 - EARLIER_SENDS, DAILY
    return 2, HOURLY


def install_log(database: Database) -> None:
    """Record, for every change of a message's status, the worker (connection) that made it."""
    with database.write() as conn:
        conn.execute(
            text(
                f"CREATE TABLE {LOG} (message_id bigint, contact_id bigint, status text, "
                "worker text, xid bigint, at timestamptz DEFAULT clock_timestamp())"
            )
        )
        conn.execute(
            text(
                f"CREATE FUNCTION {LOG}_record() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                f"INSERT INTO {LOG} (message_id, contact_id, status, worker, xid) VALUES "
                "(NEW.id, NEW.contact_id, NEW.status, current_setting('application_name'), "
                "txid_current()); RETURN NULL; END $$"
            )
        )
        conn.execute(
            text(
                f"CREATE TRIGGER {LOG}_trigger AFTER UPDATE OF status ON messages FOR EACH ROW "
                f"WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION {LOG}_record()"
            )
        )


def remove_log(database: Database) -> None:
    with database.write() as conn:
        conn.execute(text(f"DROP TRIGGER IF EXISTS {LOG}_trigger ON messages"))
        conn.execute(text(f"DROP FUNCTION IF EXISTS {LOG}_record()"))
        conn.execute(text(f"DROP TABLE IF EXISTS {LOG}"))


def worker_name(number: int) -> str:
    return f"cap-race-worker-{number}"


def start_worker(database: Database, number: int, tmp_path: Path) -> subprocess.Popen[bytes]:
    url = database.url.update_query_dict({"application_name": worker_name(number)})
    env = {
        **os.environ,
        "JUNCTION_DATABASE_URL": url.render_as_string(hide_password=False),
        "JUNCTION_SECRET_KEY": SECRET,
        "JUNCTION_DISPATCH_BATCH_SIZE": str(BATCH_SIZE),
        "JUNCTION_LOG_LEVEL": "warning",
    }
    with (tmp_path / f"worker-{number}.log").open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "-m", "junction", "worker"],
            env=env,
            cwd=tmp_path,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


def connected_workers(database: Database) -> set[str]:
    with database.read() as conn:
        names = conn.execute(
            text(
                "SELECT DISTINCT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name LIKE 'cap-race-worker-%'"
            )
        ).scalars()
        return set(names)


def unsettled(database: Database) -> int:
    with database.read() as conn:
        return conn.execute(
            select(func.count())
            .select_from(messages)
            .where(messages.c.idempotency_key.like("race:%"), messages.c.status.in_(UNSETTLED))
        ).scalar_one()


def wait_for(
    condition: Callable[[], bool],
    what: str,
    workers: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    """Poll the database until ``condition()`` holds; fail at the deadline or if a worker died."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        dead = [n for n, w in enumerate(workers) if w.poll() is not None]
        if dead:
            logs = "\n".join((tmp_path / f"worker-{n}.log").read_text() for n in dead)
            pytest.fail(f"worker(s) {dead} exited while waiting for {what}:\n{logs}")
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting for {what} after {DEADLINE} s")
        time.sleep(0.1)  # polling the database for the condition


def stop(workers: list[subprocess.Popen[bytes]]) -> list[int | None]:
    """SIGTERM every worker still running; their exit codes (None: it had to be killed)."""
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    codes: list[int | None] = []
    for worker in workers:
        try:
            codes.append(worker.wait(timeout=30))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
            codes.append(None)
    return codes


def prepare(database: Database, tenant: Tenant) -> dict[int, int]:
    """The promo topic, the cap rules, the contacts and their earlier sends; returns the
    index of each contact by its id."""
    now = datetime.now(UTC)
    with database.write() as conn:
        save_topic(conn, tenant.id, "promo", name="Promotions", now=now)
        set_rules(conn, tenant.id, RULES, now)
        ingest(
            conn,
            tenant.id,
            Batch(
                [
                    Identify(user_id=user(i), traits={"email": f"{user(i)}@example.net"})
                    for i in range(CONTACTS)
                ],
                now,
            ),
            SECRET,
        )
        ids = dict(
            conn.execute(
                select(contacts.c.user_id, contacts.c.id).where(
                    contacts.c.workspace_id == tenant.id
                )
            ).all()
        )
        index = {ids[user(i)]: i for i in range(CONTACTS)}
        earlier = outbox.enqueue(
            conn,
            [
                outbox.Intent(
                    workspace_id=tenant.id,
                    idempotency_key=f"earlier:{i}:{k}",
                    channel="sms",
                    provider="capture",
                    to_address=f"+1555000{i:04d}",
                    content={"text": "Earlier deal"},
                    contact_id=ids[user(i)],
                    category="promo",
                )
                for i in range(0, CONTACTS, 2)
                for k in range(EARLIER_SENDS)
            ],
            now,
        )
        conn.execute(
            update(messages)
            .where(messages.c.id.in_(list(earlier.values())))
            .values(status=outbox.SENT, due_at=now - timedelta(hours=3))
        )
    return index


def queue_the_race(
    database: Database, tenant: Tenant, index: dict[int, int], overdue: timedelta
) -> None:
    """Every contact's 12 emails, due ``overdue`` ago (a backlog when it is longer than a cap's
    window), one contact's after another's (consecutive ids)."""
    now = datetime.now(UTC) - overdue
    with database.write() as conn:
        outbox.enqueue(
            conn,
            [
                outbox.Intent(
                    workspace_id=tenant.id,
                    idempotency_key=f"race:{i}:{k}",
                    channel="email",
                    provider="capture",
                    to_address=f"{user(i)}@example.net",
                    content={"subject": f"Deal {k}", "text": "Today only"},
                    contact_id=contact_id,
                    category="promo",
                )
                for contact_id, i in sorted(index.items(), key=lambda item: item[1])
                for k in range(PER_CONTACT)
            ],
            now,
        )


# PostgreSQL only: SQLite has one writer, so workers cannot race there.
@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
@pytest.mark.parametrize("overdue", [timedelta(0), timedelta(hours=2)], ids=["due", "backlog"])
def test_four_workers_never_exceed_a_cap(
    database: Database, tenant: Tenant, tmp_path: Path, overdue: timedelta
) -> None:
    index = prepare(database, tenant)
    remove_log(database)  # what an interrupted earlier run may have left
    install_log(database)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        workers = [start_worker(database, n, tmp_path) for n in range(WORKERS)]
        # all four polling before anything is due, so they all take part from the start
        names = {worker_name(n) for n in range(WORKERS)}
        wait_for(lambda: connected_workers(database) >= names, "the workers", workers, tmp_path)
        queue_the_race(database, tenant, index, overdue)
        wait_for(lambda: unsettled(database) == 0, "every message settled", workers, tmp_path)
        alive = [worker.poll() is None for worker in workers]
        codes = stop(workers)
        with database.read() as conn:
            race = conn.execute(
                select(
                    messages.c.id,
                    messages.c.contact_id,
                    messages.c.status,
                    messages.c.last_error,
                    messages.c.attempts,
                ).where(messages.c.idempotency_key.like("race:%"))
            ).all()
            attempts = conn.execute(
                select(message_attempts.c.message_id, message_attempts.c.outcome).where(
                    message_attempts.c.message_id.in_([m.id for m in race])
                )
            ).all()
            log = conn.execute(
                text(f"SELECT message_id, contact_id, status, worker, xid FROM {LOG}")
            ).all()
    finally:
        stop(workers)
        remove_log(database)

    assert alive == [True] * WORKERS, "a worker exited before it was told to stop"
    assert codes == [0] * WORKERS, codes
    assert len(race) == CONTACTS * PER_CONTACT

    # every contact got exactly what its caps allow: never more, and not fewer either
    sent = Counter(m.contact_id for m in race if m.status in (outbox.SENT, outbox.DELIVERED))
    wrong = {
        user(i): (sent[contact_id], allowance(i)[0])
        for contact_id, i in index.items()
        if sent[contact_id] != allowance(i)[0]
    }
    assert not wrong, f"(sent, allowed) per contact where they differ: {wrong}"
    # and every other email was suppressed by the rule that was full
    for m in race:
        if m.status in (outbox.SENT, outbox.DELIVERED):
            continue
        blocking = allowance(index[m.contact_id])[1]
        assert m.status == outbox.SUPPRESSED, (m.id, m.status, m.last_error)
        assert m.last_error and blocking in m.last_error, (m.id, m.last_error)

    # nothing was sent twice, nor claimed twice
    sent_attempts = Counter(a.message_id for a in attempts if a.outcome == outbox.SENT)
    assert max(sent_attempts.values()) == 1
    assert sum(sent_attempts.values()) == sum(sent.values())
    assert all(m.attempts == (1 if m.id in sent_attempts else 0) for m in race)
    claims = Counter(row.message_id for row in log if row.status == outbox.SENDING)
    assert set(claims) == set(sent_attempts) and max(claims.values()) == 1

    # the race happened: several workers decided, several of them for the same contacts
    decided = [row for row in log if row.status in (outbox.SENDING, outbox.SUPPRESSED)]
    assert len(decided) == CONTACTS * PER_CONTACT  # each email decided once, by one worker
    assert {row.worker for row in decided} <= names
    assert len({row.worker for row in decided}) >= 2, Counter(row.worker for row in decided)
    deciders: dict[int, set[str]] = defaultdict(set)
    for row in decided:
        deciders[row.contact_id].add(row.worker)
    shared = [c for c, who in deciders.items() if len(who) >= 2]
    assert shared, "no contact was decided for by two workers: the race was not exercised"
