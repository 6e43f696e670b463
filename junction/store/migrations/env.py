"""Alembic environment: migrations run against the URL Junction is configured with."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from junction.settings import Settings
from junction.store.database import Database
from junction.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.get_main_option("sqlalchemy.url") or Settings().database_url
    database = Database(url)
    try:
        with database.engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        database.dispose()


run_migrations_online()
