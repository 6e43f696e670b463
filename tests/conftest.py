"""Shared fixtures. Every test that takes ``database`` runs on SQLite and on PostgreSQL.

PostgreSQL is the real server at ``JUNCTION_TEST_POSTGRES_URL`` (default: 127.0.0.1:5432,
trust auth, database ``test``); each test run gets a database of its own, created there and
dropped at the end. Without a server the PostgreSQL cases skip on a laptop, and fail in CI
(where ``CI`` is set), so a green CI always means both databases ran.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from junction.api.app import create_app
from junction.clock import VirtualClock
from junction.settings import Settings
from junction.store import migrate
from junction.store.database import Database
from junction.store.tables import metadata
from junction.store.workspaces import create_workspace

POSTGRES_URL = os.environ.get(
    "JUNCTION_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SECRET = "test-secret-key"
START = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (faster than migrating each time)."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    database = Database(f"sqlite:///{path}")
    migrate.upgrade(database)
    database.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    admin_url = make_url(POSTGRES_URL)
    name = f"junction_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required in CI and unreachable: {error}")
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {error}")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    migrate.upgrade(database)
    database.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "junction.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        db = Database(f"sqlite:///{path}")
    else:
        db = Database(request.getfixturevalue("postgres_url"))
        names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
        with db.write() as conn:
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    yield db
    db.dispose()


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock(START)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url="sqlite:///unused.db", secret_key=SECRET, _env_file=None)  # type: ignore[call-arg]


@dataclass
class Tenant:
    id: int
    key: str


def make_tenant(database: Database, clock: VirtualClock, name: str) -> Tenant:
    with database.write() as conn:
        issued = create_workspace(conn, name, clock.now(), SECRET)
    return Tenant(issued.workspace.id, issued.key)


@pytest.fixture
def tenant(database: Database, clock: VirtualClock) -> Tenant:
    return make_tenant(database, clock, "acme")


@pytest.fixture
def client(
    settings: Settings, database: Database, clock: VirtualClock, tenant: Tenant
) -> Iterator[TestClient]:
    app = create_app(settings, database, clock)
    with TestClient(app, headers={"Authorization": f"Bearer {tenant.key}"}) as test_client:
        yield test_client
