"""What every route needs: the services, and the workspace its API key opens."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from junction.clock import Clock
from junction.errors import Unauthenticated
from junction.settings import Settings
from junction.store.database import Database
from junction.store.workspaces import workspace_for_key


@dataclass(frozen=True)
class Services:
    settings: Settings
    database: Database
    clock: Clock
    secret: str


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def _key_from(authorization: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return credentials.strip() or None
    if scheme == "basic":
        # Segment's SDKs send the write key as the Basic username with an empty password.
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[0] or None
    return None


def workspace_id(request: Request, svc: Annotated[Services, Depends(services)]) -> int:
    key = _key_from(request.headers.get("authorization", ""))
    if key is None:
        raise Unauthenticated()
    with svc.database.read() as conn:
        found = workspace_for_key(conn, key, svc.secret)
    if found is None:
        raise Unauthenticated("this API key is unknown or revoked")
    return found


ServicesDep = Annotated[Services, Depends(services)]
WorkspaceDep = Annotated[int, Depends(workspace_id)]


def in_read(svc: Services, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(conn, *args)`` in a read transaction (run it through ``in_thread``)."""
    with svc.database.read() as conn:
        return fn(conn, *args)


def in_write(svc: Services, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(conn, *args)`` in a write transaction (run it through ``in_thread``)."""
    with svc.database.write() as conn:
        return fn(conn, *args)
