"""Ingestion throughput: track events through ``POST /v1/batch`` into SQLite.

Starts ``junction serve`` on a fresh SQLite file in a temp dir, sends ``--n`` track events
in batches of 500 over a few keep-alive connections, and measures events/s from the first
request to the last response. The baseline, measured in the same run: the very rows the
server stored, read back and inserted into a fresh database with the same schema and
pragmas by raw ``sqlite3`` ``executemany``, one transaction per 500 rows.

Progress goes to stderr; the last line of stdout is the RESULT line.

    .venv/bin/python bench/ingest.py             # default size (about a minute)
    .venv/bin/python bench/ingest.py --n 1000000 # the issue's figure
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from junction.store.database import SQLITE_PRAGMAS
from junction.store.ingest import EVENT_COLUMNS

TARGET_EVENTS_PER_S = 75_000
TARGET_RATIO = 0.35
ISSUE_N = 1_000_000  # the issue's figure: --n 1000000 (several minutes on a 2-core box)
DEFAULT_N = 200_000  # about a minute in all on a shared 2-core machine
MAX_BATCH_BYTES = 500 * 1024  # the server's limit

err = Console(stderr=True)


class BenchError(Exception):
    pass


class _Progress(Progress):
    """Rich bars on a terminal; a plain line every few seconds when stderr is a file or pipe."""

    every = 5.0

    def __init__(self, *columns: Any, **options: Any) -> None:
        super().__init__(*columns, **options)
        self._said: dict[TaskID, float] = {}

    def update(self, task_id: TaskID, **changes: Any) -> None:
        super().update(task_id, **changes)
        self._plain(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._plain(task_id)

    def _plain(self, task_id: TaskID) -> None:
        if self.console.is_terminal:
            return
        now = time.monotonic()
        task = next(task for task in self.tasks if task.id == task_id)
        if now - self._said.get(task_id, 0.0) < self.every and not task.finished:
            return
        self._said[task_id] = now
        rate = task.fields.get("rate", "")
        self.console.print(
            f"{task.description}: {task.completed:,.0f}/{task.total or 0:,.0f} {rate}",
            highlight=False,
        )


def _progress() -> Progress:
    return _Progress(
        TextColumn("[bold]{task.description:<12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,  # then _Progress prints plain lines instead
    )


# --- the events -------------------------------------------------------------------------

EVENT_NAMES = ("Order Completed", "Product Viewed", "Product Added", "Checkout Started")
CATEGORIES = ("shoes", "shirts", "books", "garden", "kitchen", "toys")
LIBRARIES = (
    {"name": "analytics-python", "version": "2.3.3"},
    {"name": "analytics.js", "version": "4.1.0"},
    {"name": "analytics-ios", "version": "4.1.8"},
)
DEVICES = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
)


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"


def _event(rng: random.Random, users: int, at: datetime) -> dict[str, object]:
    user = rng.randrange(users)
    name = EVENT_NAMES[rng.randrange(len(EVENT_NAMES))]
    if name == "Order Completed":
        properties: dict[str, object] = {
            "orderId": f"o-{rng.randrange(10**9)}",
            "revenue": round(rng.uniform(5, 500), 2),
            "currency": "USD",
            "products": rng.randrange(1, 6),
        }
    else:
        properties = {
            "productId": f"p-{rng.randrange(5000)}",
            "price": round(rng.uniform(2, 200), 2),
            "category": CATEGORIES[user % len(CATEGORIES)],
        }
    return {
        "type": "track",
        "event": name,
        "userId": f"user-{user:05d}",
        "messageId": _uuid(rng),
        "timestamp": at.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "properties": properties,
        "context": {
            "library": LIBRARIES[user % len(LIBRARIES)],
            "ip": f"203.0.{user % 256}.{(user * 7) % 256}",
            "userAgent": DEVICES[user % len(DEVICES)],
            "locale": "en-US",
        },
    }


def make_bodies(
    n: int, batch: int, users: int, seed: int, progress: Progress
) -> list[tuple[bytes, int]]:
    """Every request body and its event count, built before the clock starts so the
    client's CPU stays out of the measurement."""
    rng = random.Random(seed)
    start = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
    step = timedelta(milliseconds=3)
    task = progress.add_task("generating", total=n, rate="")
    bodies: list[tuple[bytes, int]] = []
    for first in range(0, n, batch):
        size = min(batch, n - first)
        items = [_event(rng, users, start + step * (first + i)) for i in range(size)]
        sent_at = (start + step * (first + size)).isoformat(timespec="milliseconds")
        body = orjson.dumps({"batch": items, "sentAt": sent_at.replace("+00:00", "Z")})
        if len(body) > MAX_BATCH_BYTES:
            raise BenchError(f"a batch body is {len(body)} bytes, over the server's limit")
        bodies.append((body, size))
        progress.advance(task, size)
    return bodies


# --- the server -------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _junction() -> str:
    beside = Path(sys.executable).with_name("junction")
    return str(beside) if beside.exists() else (shutil.which("junction") or "junction")


def _env(database: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        JUNCTION_DATABASE_URL=f"sqlite:///{database}",
        JUNCTION_SECRET_KEY=secrets.token_urlsafe(32),
        JUNCTION_LOG_LEVEL="warning",
    )
    return env


def create_workspace(env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [_junction(), "workspace", "create", "bench"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines or not lines[-1].startswith("jk_"):
        raise BenchError(f"`junction workspace create` failed:\n{done.stdout}\n{done.stderr}")
    return lines[-1].strip()


@contextmanager
def server(env: dict[str, str], cwd: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = (cwd / "server.log").open("wb")
    proc = subprocess.Popen(
        [_junction(), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_healthy(proc, port, cwd / "server.log")
        yield proc
    finally:
        stop(proc)
        log.close()


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    raise BenchError(f"the server did not answer /healthz within 60 s:\n{log.read_text()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- the client -------------------------------------------------------------------------


def send_all(
    bodies: list[tuple[bytes, int]],
    port: int,
    key: str,
    connections: int,
    n: int,
    progress: Progress,
) -> float:
    """Send every body; returns the seconds from the first request to the last response."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    lock = threading.Lock()
    next_index = 0
    sent = 0
    failures: list[str] = []

    def worker() -> None:
        nonlocal next_index, sent
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        try:
            while not failures:
                with lock:
                    index = next_index
                    next_index += 1
                if index >= len(bodies):
                    return
                body, count = bodies[index]
                conn.request("POST", "/v1/batch", body=body, headers=headers)
                response = conn.getresponse()
                payload = response.read()
                if response.status != 200:
                    failures.append(f"batch {index}: HTTP {response.status}: {payload[:500]!r}")
                    return
                answer = orjson.loads(payload)
                if answer.get("accepted") != count or not answer.get("success"):
                    failures.append(f"batch {index}: unexpected answer {answer}")
                    return
                with lock:
                    sent += count
        except Exception as error:  # surfaced below, loudly
            failures.append(f"{type(error).__name__}: {error}")
        finally:
            conn.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(connections)]
    task = progress.add_task("sending", total=n, rate="")
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        time.sleep(0.2)
        elapsed = time.perf_counter() - started
        progress.update(task, completed=sent, rate=f"{sent / elapsed:,.0f} ev/s")
    elapsed = time.perf_counter() - started
    progress.update(task, completed=sent, rate=f"{sent / elapsed:,.0f} ev/s")
    if failures:
        raise BenchError("requests failed:\n" + "\n".join(failures[:10]))
    if sent != n:
        raise BenchError(f"{sent} events acknowledged, expected {n}")
    return elapsed


# --- the baseline -----------------------------------------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for pragma in SQLITE_PRAGMAS:
        conn.execute(f"PRAGMA {pragma}")
    return conn


def count_events(database: Path) -> int:
    conn = sqlite3.connect(database)
    try:
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    finally:
        conn.close()


def baseline(
    source: Path, target: Path, env: dict[str, str], cwd: Path, batch: int, progress: Progress
) -> tuple[float, int]:
    """Insert the rows the server stored into a fresh, migrated database by raw executemany.
    Returns (seconds spent in the inserts and commits, rows inserted)."""
    done = subprocess.run(
        [_junction(), "db", "upgrade"],
        env=env | {"JUNCTION_DATABASE_URL": f"sqlite:///{target}"},
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"`junction db upgrade` failed:\n{done.stdout}\n{done.stderr}")

    conn = _connect(target)
    # The rows the events point at, so the foreign keys hold (not timed).
    conn.execute("ATTACH DATABASE ? AS src", (str(source),))
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT INTO main.workspaces SELECT * FROM src.workspaces")
    conn.execute("INSERT INTO main.contacts SELECT * FROM src.contacts")
    conn.execute("COMMIT")
    conn.execute("DETACH DATABASE src")

    columns = ", ".join(EVENT_COLUMNS)
    reader = sqlite3.connect(source)
    rows = reader.execute(f"SELECT {columns} FROM events ORDER BY id").fetchall()
    reader.close()

    insert = f"INSERT INTO events ({columns}) VALUES ({', '.join('?' * len(EVENT_COLUMNS))})"
    task = progress.add_task("baseline", total=len(rows), rate="")
    elapsed = 0.0
    for first in range(0, len(rows), batch):
        chunk = rows[first : first + batch]
        started = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(insert, chunk)
        conn.execute("COMMIT")
        elapsed += time.perf_counter() - started
        if first // batch % 20 == 0 or first + batch >= len(rows):
            done_rows = first + len(chunk)
            progress.update(task, completed=done_rows, rate=f"{done_rows / elapsed:,.0f} ev/s")
    conn.close()
    return elapsed, len(rows)


# --- main -------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--n",
        type=int,
        default=DEFAULT_N,
        help=f"track events to send. The default is smaller than the issue's figure so a run "
        f"takes about a minute; pass --n {ISSUE_N} for the issue's figure (takes several "
        f"minutes on a 2-core machine)",
    )
    parser.add_argument("--batch", type=int, default=500, help="events per request")
    parser.add_argument("--connections", type=int, default=4, help="concurrent connections")
    parser.add_argument("--users", type=int, default=10_000, help="distinct userIds")
    parser.add_argument("--seed", type=int, default=7, help="seed of the generated events")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (databases, server.log)"
    )
    args = parser.parse_args()
    if args.n < 1 or args.batch < 1 or args.connections < 1 or args.users < 1:
        parser.error("--n, --batch, --connections and --users must be positive")

    workdir = Path(tempfile.mkdtemp(prefix="junction-bench-ingest-"))
    total_started = time.perf_counter()
    try:
        server_db = workdir / "junction.db"
        env = _env(server_db)
        port = _free_port()
        with _progress() as progress:
            key = create_workspace(env, workdir)
            with server(env, workdir, port) as proc:
                # Generated while nothing else runs; not timed.
                bodies = make_bodies(args.n, args.batch, args.users, args.seed, progress)
                err.print(f"server pid {proc.pid} on port {port}")
                seconds = send_all(bodies, port, key, args.connections, args.n, progress)
                del bodies
            stored = count_events(server_db)
            if stored != args.n:
                raise BenchError(f"the events table holds {stored} rows; expected {args.n}")
            base_seconds, base_rows = baseline(
                server_db, workdir / "baseline.db", env, workdir, args.batch, progress
            )
        if base_rows != args.n:
            raise BenchError(f"the baseline inserted {base_rows} rows; expected {args.n}")
    except BenchError as error:
        err.print(f"[red]bench failed:[/red] {error}")
        return 1
    finally:
        if args.keep:
            err.print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    value = args.n / seconds
    base = base_rows / base_seconds
    ratio = value / base
    ok = value >= TARGET_EVENTS_PER_S and ratio >= TARGET_RATIO
    print(
        f"HTTP /v1/batch: {args.n:,} events in {seconds:.2f} s = {value:,.0f} events/s "
        f"({args.connections} connections, {args.batch} per batch)"
    )
    print(
        f"raw sqlite3 executemany: {base_rows:,} rows in {base_seconds:.2f} s = {base:,.0f} rows/s"
    )
    print(
        f"ratio {ratio:.3f}; target >= {TARGET_EVENTS_PER_S:,} events/s and ratio >= "
        f"{TARGET_RATIO}: {'met' if ok else 'NOT met'} "
        f"(whole run {time.perf_counter() - total_started:.0f} s)"
    )
    print(
        f"RESULT ingest value={value:.0f} unit=events/s baseline={base:.0f} ratio={ratio:.3f} "
        f"target={TARGET_EVENTS_PER_S}events/s,ratio>={TARGET_RATIO}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
