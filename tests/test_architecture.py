"""The direction of imports: the pure core depends on nothing that does I/O."""

from __future__ import annotations

import ast
from pathlib import Path

import junction

PACKAGE = Path(junction.__file__).parent
FORBIDDEN_IN_DOMAIN = {
    "sqlalchemy",
    "alembic",
    "psycopg",
    "fastapi",
    "starlette",
    "uvicorn",
    "httpx",
    "requests",
    "aiosmtplib",
    "socket",
    "sqlite3",
    "typer",
    "rich",
    "structlog",
    "junction.store",
    "junction.api",
    "junction.engine",
    "junction.channels",
    "junction.web",
    "junction.cli",
    "junction.clock",
    "junction.settings",
}


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_domain_imports_no_io() -> None:
    offenders = {}
    for path in (PACKAGE / "domain").rglob("*.py"):
        bad = {
            name
            for name in imports_of(path)
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN_IN_DOMAIN)
        }
        if bad:
            offenders[path.name] = sorted(bad)
    assert offenders == {}


def test_the_store_does_not_reach_up_into_the_api() -> None:
    for path in (PACKAGE / "store").rglob("*.py"):
        assert not any(
            name.startswith(("junction.api", "junction.cli")) for name in imports_of(path)
        ), path
