"""The few statements whose spelling differs between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite


def insert_ignoring_conflicts(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], on: Sequence[str]
) -> None:
    """Insert many rows at once; a row that clashes on the unique columns ``on`` is skipped."""
    if not rows:
        return
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = dialect.insert(table).on_conflict_do_nothing(index_elements=list(on))
    conn.execute(statement, list(rows))


def update_or_insert(
    conn: Connection, table: Table, key: dict[str, Any], values: dict[str, Any]
) -> None:
    """Set ``values`` on the row found by ``key``, creating it when there is none."""
    updated = conn.execute(
        table.update()
        .where(*(table.c[name] == value for name, value in key.items()))
        .values(**values)
    )
    if updated.rowcount == 0:
        conn.execute(table.insert().values(**key, **values))


def insert_rows_fast(
    conn: Connection,
    table: Table,
    columns: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    on: Sequence[str] = (),
) -> None:
    """Like :func:`insert_ignoring_conflicts`, for the hot path: ``rows`` are tuples already in
    driver form (see :func:`driver_time`, :func:`driver_json`) handed straight to the DB-API
    ``executemany``, skipping SQLAlchemy's per-value processing (measured: 1.6x faster).
    Without ``on``, a clash is an error, as with a plain insert."""
    if not rows:
        return
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    statement = (
        f"INSERT INTO {table.name} ({', '.join(columns)}) "
        f"VALUES ({', '.join([mark] * len(columns))})"
    )
    if on:
        statement += f" ON CONFLICT ({', '.join(on)}) DO NOTHING"
    conn.exec_driver_sql(statement, list(rows))


# A batch writes the same few instants many times (its now, a lease's end): a message costs
# half a dozen conversions, each slower than a look-up.
@lru_cache(maxsize=4096)
def sqlite_time(value: datetime) -> str:
    """An aware datetime as ``UtcDateTime`` stores it on SQLite: naive UTC text."""
    if value.tzinfo is not UTC:  # most instants are UTC already: no conversion
        value = value.astimezone(UTC)
    return value.isoformat(" ", "microseconds")[:26]  # without the "+00:00"


def driver_time(conn: Connection) -> Callable[[datetime | None], Any]:
    """How to hand an aware datetime to the driver, as ``UtcDateTime`` would store it."""
    if conn.dialect.name != "sqlite":
        return lambda value: value
    return lambda value: None if value is None else sqlite_time(value)


def driver_json(value: Any) -> str | None:
    """JSON text for a JSON column; ``None`` stays SQL NULL."""
    return None if value is None else orjson.dumps(value).decode()
