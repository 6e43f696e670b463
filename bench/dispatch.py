"""Dispatch throughput: personalised emails through outbox → dispatcher → SMTP.

Runs a minimal SMTP sink in its own process (bench/smtp_sink.py) and, in the same run:

1. the baseline: plain ``smtplib`` over one reused connection sending pre-built messages;
2. Junction: ``--n`` personalised emails enqueued in the outbox of a fresh SQLite database,
   then sent by the dispatcher through the SMTP adapter (a pool of connections);
3. the same through the capture provider (no network);
4. the same through SMTP to a sink that answers each DATA 10 ms late (a remote server).

Ends with ``RESULT dispatch value=<msg/s> … ratio=<junction/baseline>``; target >= 0.8.

    .venv/bin/python bench/dispatch.py            # 5,000 messages, about a minute
    .venv/bin/python bench/dispatch.py --n 20000  # the issue's figure
"""

from __future__ import annotations

import argparse
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path

from junction.clock import SystemClock
from junction.engine import loop
from junction.engine.dispatcher import Dispatcher
from junction.store import migrate, outbox
from junction.store.database import Database
from junction.store.providers import set_channel_provider
from junction.store.workspaces import create_workspace

HERE = Path(__file__).parent
TARGET_RATIO = 0.8


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def sink(delay_ms: int = 0) -> Iterator[int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "smtp_sink.py"), str(port), str(delay_ms)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "READY":
        raise SystemExit("the SMTP sink did not start")
    try:
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def personalised(index: int) -> dict[str, str]:
    name = f"Customer {index}"
    return {
        "subject": f"Your receipt, {name}",
        "text": f"Hello {name},\n\nThanks for order #{100000 + index}.\n",
        "html": f"<p>Hello <b>{name}</b>,</p><p>Thanks for order #{100000 + index}.</p>",
    }


def baseline(port: int, n: int) -> float:
    built = []
    for index in range(n):
        content = personalised(index)
        message = EmailMessage()
        message["From"] = "shop@example.com"
        message["To"] = f"c{index}@example.net"
        message["Subject"] = content["subject"]
        message.set_content(content["text"])
        message.add_alternative(content["html"], subtype="html")
        built.append((f"c{index}@example.net", message.as_bytes()))
    with smtplib.SMTP("127.0.0.1", port) as client:
        started = time.perf_counter()
        for to, raw in built:
            client.sendmail("shop@example.com", [to], raw)
        return n / (time.perf_counter() - started)


def junction_rate(workdir: Path, n: int, provider: str, port: int | None) -> float:
    """Enqueue n emails and dispatch them all; messages per second over both steps."""
    path = workdir / f"{provider}-{port}.db"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    clock = SystemClock()
    with database.write() as conn:
        workspace = create_workspace(conn, "bench", clock.now(), "bench-secret").workspace
        if provider == "smtp":
            config = {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "from_address": "shop@example.com",
                "pool_size": 20,
            }
            set_channel_provider(conn, workspace.id, "email", "smtp", config, clock.now())
    started = time.perf_counter()
    for first in range(0, n, 1000):
        intents = [
            outbox.Intent(
                workspace_id=workspace.id,
                idempotency_key=f"bench:{index}",
                channel="email",
                provider=provider,
                to_address=f"c{index}@example.net",
                content=personalised(index),
            )
            for index in range(first, min(n, first + 1000))
        ]
        with database.write() as conn:
            outbox.enqueue(conn, intents, clock.now())

    sent = loop.run(Dispatcher(database, clock).drain())
    elapsed = time.perf_counter() - started
    if sent != n:
        raise SystemExit(f"dispatched {sent} of {n}")
    database.dispose()
    return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000, help="emails per run (default 5000)")
    args = parser.parse_args()
    n = args.n
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        with sink() as port:
            print(f"baseline: smtplib, one connection, {n} pre-built messages…", file=sys.stderr)
            base = baseline(port, n)
            print(f"junction: outbox → dispatcher → SMTP, {n} messages…", file=sys.stderr)
            smtp = junction_rate(workdir, n, "smtp", port)
        print("junction: outbox → dispatcher → capture…", file=sys.stderr)
        capture = junction_rate(workdir, n, "capture", None)
        with sink(delay_ms=10) as slow_port:
            print("junction: SMTP server answering 10 ms late…", file=sys.stderr)
            slow = junction_rate(workdir, n, "smtp", slow_port)
    ratio = smtp / base
    print(f"smtplib baseline        {base:9,.0f} msg/s")
    print(
        f"junction → SMTP         {smtp:9,.0f} msg/s   ratio {ratio:.2f} (target >= {TARGET_RATIO})"
    )
    print(f"junction → capture      {capture:9,.0f} msg/s")
    print(f"junction → SMTP +10 ms  {slow:9,.0f} msg/s")
    print(
        f"RESULT dispatch value={smtp:.0f} unit=msg/s baseline={base:.0f} ratio={ratio:.3f} "
        f"target=ratio>={TARGET_RATIO}"
    )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JUNCTION_LOG_LEVEL", "warning")
    sys.exit(main())
