"""The database handle's SQLite tuning: the write-ahead log copied on a thread of its own."""

from __future__ import annotations

import shutil
import sqlite3
import threading
import time
from pathlib import Path

from junction.store.database import Database


def _rows_in_file_alone(path: Path, copy: Path) -> int:
    """Rows of ``t`` in the database file itself, without its write-ahead log: what a
    checkpoint has copied there."""
    shutil.copy(path, copy)
    connection = sqlite3.connect(copy)
    try:
        tables = connection.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'")
        if tables.fetchone()[0] == 0:
            return 0
        return int(connection.execute("SELECT count(*) FROM t").fetchone()[0])
    except sqlite3.DatabaseError:  # copied in the middle of a checkpoint: not there yet
        return 0
    finally:
        connection.close()
        copy.unlink()


def _write_rows(database: Database, n: int) -> None:
    with database.write() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
    for i in range(n):
        with database.write() as conn:
            conn.exec_driver_sql("INSERT INTO t VALUES (?)", (i,))


def test_checkpointing_copies_committed_writes_into_the_database_file(tmp_path: Path) -> None:
    path = tmp_path / "junction.db"
    database = Database(f"sqlite:///{path}")
    try:
        with database.checkpointing(every=0.01):
            _write_rows(database, 20)
            deadline = time.monotonic() + 10
            while _rows_in_file_alone(path, tmp_path / "copy.db") < 20:
                assert time.monotonic() < deadline, "the log was never copied into the file"
                time.sleep(0.01)
        assert not [t for t in threading.enumerate() if t.name == "junction-checkpoint"]
    finally:
        database.dispose()


def test_without_checkpointing_small_writes_stay_in_the_log(tmp_path: Path) -> None:
    """The control for the test above: the writers' own checkpoint waits for ~40 MB of log,
    so these rows reach the file only through the checkpointing thread."""
    path = tmp_path / "junction.db"
    database = Database(f"sqlite:///{path}")
    try:
        _write_rows(database, 20)
        assert _rows_in_file_alone(path, tmp_path / "copy.db") == 0
    finally:
        database.dispose()


def test_checkpointing_is_nothing_for_a_database_in_memory() -> None:
    database = Database("sqlite://")
    try:
        with database.checkpointing(every=0.01):
            assert not [t for t in threading.enumerate() if t.name == "junction-checkpoint"]
    finally:
        database.dispose()
