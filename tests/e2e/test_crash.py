"""The crash test: a worker process is SIGKILLed several times while it sends 2,000 emails
to a real SMTP server; restarted each time, it ends with every email delivered.

SMTP has no idempotency key, so no sender can promise exactly-once delivery across a crash:
an email the server accepted in the last moments before the kill, whose outcome the worker
had not yet recorded, is sent again (with the same Message-ID, which mail clients use to
show it once). What Junction promises, and what this test holds it to: nothing is ever lost,
and a crash resends at most what was in flight at that instant — never a whole batch.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import func, select

from junction.store import outbox
from junction.store.database import Database
from junction.store.providers import set_channel_provider
from junction.store.tables import messages
from tests.channels.test_smtp import free_port
from tests.conftest import Tenant

EMAILS = 2000
KILLS = 4
POOL = 10
LEASE_SECONDS = 1.5


class Recorder:
    def __init__(self) -> None:
        self.ids: list[str] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.content, policy=default_policy)
        with self.lock:
            self.ids.append(str(parsed["Message-ID"]))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Recorder, int]]:
    recorder = Recorder()
    port = free_port()
    controller = Controller(recorder, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield recorder, port
    finally:
        controller.stop()


def start_worker(database: Database, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "JUNCTION_DATABASE_URL": database.url.render_as_string(hide_password=False),
        "JUNCTION_SECRET_KEY": "crash-test",
        "JUNCTION_DISPATCH_LEASE_SECONDS": str(LEASE_SECONDS),
        "JUNCTION_DISPATCH_BATCH_SIZE": "100",
        "JUNCTION_LOG_LEVEL": "warning",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "junction", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def unfinished(database: Database) -> int:
    with database.read() as conn:
        return conn.execute(
            select(func.count()).select_from(messages).where(messages.c.status != outbox.SENT)
        ).scalar_one()


def test_sigkill_loses_nothing(
    database: Database, clock, tenant: Tenant, smtp_server, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    recorder, port = smtp_server
    with database.write() as conn:
        set_channel_provider(
            conn,
            tenant.id,
            "email",
            "smtp",
            {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "from_address": "shop@example.com",
                "pool_size": POOL,
            },
            clock.now(),
        )
        outbox.enqueue(
            conn,
            [
                outbox.Intent(
                    workspace_id=tenant.id,
                    idempotency_key=f"crash:{i}",
                    channel="email",
                    provider="smtp",
                    to_address=f"c{i}@example.net",
                    content={"subject": f"Receipt {i}", "text": f"Thanks for order {i}"},
                )
                for i in range(EMAILS)
            ],
            clock.now(),
        )
    # the worker runs on the real clock: make the messages due now
    with database.write() as conn:
        conn.execute(messages.update().values(due_at=clock.now().replace(year=2000)))

    chance = random.Random(20261123)
    kills_in_flight = 0
    for _ in range(KILLS):
        worker = start_worker(database, tmp_path)
        time.sleep(chance.uniform(0.5, 2.5))  # a random moment to kill at, not a wait for it
        if worker.poll() is None:
            kills_in_flight += 1
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    worker = start_worker(database, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while unfinished(database) and time.monotonic() < deadline:
            time.sleep(0.2)  # polling the database for the outcome
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)

    with database.read() as conn:
        expected = set(conn.execute(select(messages.c.provider_message_id)).scalars())
    received = Counter(recorder.ids)
    assert unfinished(database) == 0
    assert len(expected) == EMAILS
    assert set(received) == expected  # every email arrived; nothing foreign did
    duplicates = sum(count - 1 for count in received.values())
    # at most what was in flight at each kill: one per pooled connection, plus the outcomes
    # waiting to be recorded (the dispatcher records them 20 at a time)
    assert duplicates <= kills_in_flight * (POOL + 20), duplicates
