"""The migrations and the tables in code agree, on both databases."""

from __future__ import annotations

from sqlalchemy import inspect

from junction.store import migrate
from junction.store.database import Database
from junction.store.tables import metadata


def test_alembic_check_is_clean(database: Database) -> None:
    migrate.check(database)  # raises alembic.util.CommandError on any difference


def test_every_table_exists(database: Database) -> None:
    with database.read() as conn:
        present = set(inspect(conn).get_table_names())
    assert {table.name for table in metadata.sorted_tables} <= present


def test_sqlite_is_tuned_for_one_busy_process(tmp_path) -> None:  # type: ignore[no-untyped-def]
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    with database.read() as conn:
        settings = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "synchronous", "foreign_keys", "busy_timeout")
        }
    assert settings == {
        "journal_mode": "wal",
        "synchronous": 1,
        "foreign_keys": 1,
        "busy_timeout": 10000,
    }
