"""Applying and checking migrations from code (the CLI, the server at start, the tests)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config

from junction.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"
# Alembic narrates every step at INFO; Junction says once that the database is ready.
logging.getLogger("alembic").setLevel(logging.WARNING)


def alembic_config(database: Database) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database.url.render_as_string(hide_password=False))
    return config


def upgrade(database: Database, revision: str = "head") -> None:
    config = alembic_config(database)
    with database.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()


def check(database: Database) -> None:
    """Raise if the tables in code and the migrated database differ."""
    config = alembic_config(database)
    with database.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.check(config)
