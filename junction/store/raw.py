"""Statements handed straight to the DB-API cursor, for the few hot paths that run them
thousands of times a second (the journey runtime).

SQLAlchemy Core costs about a quarter of a millisecond of Python per statement (coercion,
cache keys, result set-up), ten times what SQLite takes to run a small one. Here a statement
is plain SQL written with ``?`` placeholders (rewritten to ``%s`` for psycopg) and runs in
the connection's own transaction; values go in and come out in the driver's form, which
``Raw`` converts the way the column types (``UtcDateTime``, ``Json``) would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection

from junction.store.sql import driver_json, sqlite_time

# SQLite's default limit on bound parameters is 999 in old builds: stay under it.
CHUNK = 900


@lru_cache(maxsize=256)
def _for_psycopg(statement: str) -> str:
    return statement.replace("?", "%s")


class Raw:
    """A cursor on ``conn``'s transaction, with the conversions its dialect needs."""

    def __init__(self, conn: Connection) -> None:
        self.sqlite = conn.dialect.name == "sqlite"
        self.postgres = conn.dialect.name == "postgresql"
        self._cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]

    def _sql(self, statement: str) -> str:
        return statement if self.sqlite else _for_psycopg(statement)

    def rows(self, statement: str, params: Sequence[Any] = ()) -> list[Any]:
        self._cursor.execute(self._sql(statement), params)
        return list(self._cursor.fetchall())

    def one(self, statement: str, params: Sequence[Any] = ()) -> Any:
        """The first row, or None."""
        self._cursor.execute(self._sql(statement), params)
        return self._cursor.fetchone()

    def run(self, statement: str, params: Sequence[Any] = ()) -> int:
        """Run a statement that returns no rows; how many rows it changed."""
        self._cursor.execute(self._sql(statement), params)
        return int(self._cursor.rowcount)

    def many(self, statement: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._cursor.executemany(self._sql(statement), rows)

    def rows_in(
        self, statement: str, values: Iterable[Any], before: Sequence[Any] = ()
    ) -> list[Any]:
        """``statement`` holds one ``IN ({})``: run it over ``values`` in chunks."""
        wanted = list(values)
        found: list[Any] = []
        for start in range(0, len(wanted), CHUNK):
            chunk = wanted[start : start + CHUNK]
            marks = ", ".join("?" * len(chunk))
            found.extend(self.rows(statement.format(marks), [*before, *chunk]))
        return found

    def time(self, value: datetime | None) -> Any:
        """An aware datetime as the driver takes it (SQLite: naive UTC text)."""
        if value is None or not self.sqlite:
            return value
        return sqlite_time(value)

    def read_time(self, value: Any) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):
            return datetime.fromisoformat(value).replace(tzinfo=UTC)
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)

    json = staticmethod(driver_json)  # JSON text for a JSON column; None stays SQL NULL

    def read_json(self, value: Any) -> Any:
        """A JSON column's value: text on SQLite, already decoded by psycopg."""
        if value is None or not self.sqlite:
            return value
        return orjson.loads(value)
