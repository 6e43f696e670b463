"""Workspaces and their API keys."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select, update

from junction.errors import Conflict, FieldError, InvalidInput, NotFound
from junction.keys import generate_api_key, key_prefix, keyed_hash
from junction.store.tables import api_keys, workspaces


@dataclass(frozen=True, slots=True)
class Workspace:
    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A new key. ``key`` is shown once and never stored."""

    workspace: Workspace
    key: str
    prefix: str


def create_workspace(conn: Connection, name: str, now: datetime, secret: str) -> IssuedKey:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidInput(FieldError("name", "give the workspace a name of 1 to 200 characters"))
    if conn.execute(select(workspaces.c.id).where(workspaces.c.name == name)).first():
        raise Conflict(f"a workspace named {name!r} already exists; pick another name")
    workspace_id = conn.execute(
        workspaces.insert().values(name=name, created_at=now).returning(workspaces.c.id)
    ).scalar_one()
    return issue_key(conn, Workspace(workspace_id, name, now), now, secret, label="default")


def find_workspace(conn: Connection, name_or_id: str) -> Workspace:
    query = select(workspaces)
    query = (
        query.where(workspaces.c.id == int(name_or_id))
        if name_or_id.isdigit()
        else query.where(workspaces.c.name == name_or_id)
    )
    row = conn.execute(query).first()
    if row is None:
        raise NotFound(f"no workspace {name_or_id!r}; `junction workspace list` shows them")
    return Workspace(row.id, row.name, row.created_at)


def list_workspaces(conn: Connection) -> list[Workspace]:
    rows = conn.execute(select(workspaces).order_by(workspaces.c.id))
    return [Workspace(row.id, row.name, row.created_at) for row in rows]


def issue_key(
    conn: Connection, workspace: Workspace, now: datetime, secret: str, label: str
) -> IssuedKey:
    key = generate_api_key()
    conn.execute(
        api_keys.insert().values(
            workspace_id=workspace.id,
            prefix=key_prefix(key),
            key_hash=keyed_hash(secret, key),
            label=label,
            created_at=now,
        )
    )
    return IssuedKey(workspace, key, key_prefix(key))


def revoke_keys(conn: Connection, workspace_id: int, now: datetime, *, label: str) -> int:
    result = conn.execute(
        update(api_keys)
        .where(
            api_keys.c.workspace_id == workspace_id,
            api_keys.c.label == label,
            api_keys.c.revoked_at.is_(None),
        )
        .values(revoked_at=now)
    )
    return result.rowcount


def revoke_key(conn: Connection, prefix: str, now: datetime) -> None:
    result = conn.execute(
        update(api_keys)
        .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    if result.rowcount == 0:
        raise NotFound(f"no active key with prefix {prefix!r}")


def workspace_for_key(conn: Connection, key: str, secret: str) -> int | None:
    """The workspace a key belongs to, or None when it is unknown or revoked."""
    return conn.execute(
        select(api_keys.c.workspace_id).where(
            api_keys.c.key_hash == keyed_hash(secret, key), api_keys.c.revoked_at.is_(None)
        )
    ).scalar_one_or_none()
