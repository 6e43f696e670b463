"""Applying identify calls to contacts, in bulk: traits, profile fields, email and phone.

A contact has at most one email and one phone address, the last one identified: a new
value replaces the old row (and its status); the same value keeps its row and status, so a
bounced or unsubscribed address is not revived by the next identify.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, select, update

from junction.domain.addresses import AddressKind, AddressStatus
from junction.domain.profile import ProfileFields
from junction.store.tables import addresses, contacts


@dataclass(frozen=True, slots=True)
class ProfileChange:
    contact_id: int
    traits: dict[str, Any]
    fields: ProfileFields


def apply_profile_changes(
    conn: Connection, workspace_id: int, changes: Sequence[ProfileChange], now: datetime
) -> None:
    if not changes:
        return
    ids = sorted({change.contact_id for change in changes})
    state = {
        row.id: {
            "traits": dict(row.traits),
            "timezone": row.timezone,
            "locale": row.locale,
            "country": row.country,
        }
        for row in conn.execute(
            select(
                contacts.c.id,
                contacts.c.traits,
                contacts.c.timezone,
                contacts.c.locale,
                contacts.c.country,
            ).where(contacts.c.id.in_(ids))
        )
    }
    wanted: dict[tuple[int, str], tuple[str, dict[str, Any]]] = {}
    for change in changes:
        current = state[change.contact_id]
        current["traits"].update(change.traits)
        fields = change.fields
        for name in ("timezone", "locale", "country"):
            if getattr(fields, name) is not None:
                current[name] = getattr(fields, name)
        if fields.email is not None:
            wanted[(change.contact_id, AddressKind.EMAIL)] = (fields.email, {})
        if fields.phone is not None:
            details = {"country": fields.phone.country}
            wanted[(change.contact_id, AddressKind.PHONE)] = (fields.phone.e164, details)

    conn.execute(
        update(contacts)
        .where(contacts.c.id == bindparam("contact_id"))
        .values(
            traits=bindparam("traits"),
            timezone=bindparam("timezone"),
            locale=bindparam("locale"),
            country=bindparam("country"),
            updated_at=now,
        ),
        [{"contact_id": contact_id, **values} for contact_id, values in state.items()],
    )
    _replace_addresses(conn, workspace_id, wanted, now)


def _replace_addresses(
    conn: Connection,
    workspace_id: int,
    wanted: dict[tuple[int, str], tuple[str, dict[str, Any]]],
    now: datetime,
) -> None:
    if not wanted:
        return
    existing = {
        (row.contact_id, row.kind): row.value
        for row in conn.execute(
            select(addresses.c.contact_id, addresses.c.kind, addresses.c.value).where(
                addresses.c.contact_id.in_({contact_id for contact_id, _ in wanted}),
                addresses.c.kind.in_([AddressKind.EMAIL, AddressKind.PHONE]),
            )
        )
    }
    changed = {key: value for key, value in wanted.items() if existing.get(key) != value[0]}
    if not changed:
        return
    conn.execute(
        delete(addresses).where(
            and_(addresses.c.contact_id == bindparam("c"), addresses.c.kind == bindparam("k"))
        ),
        [{"c": contact_id, "k": kind} for contact_id, kind in changed],
    )
    conn.execute(
        addresses.insert(),
        [
            {
                "workspace_id": workspace_id,
                "contact_id": contact_id,
                "kind": str(kind),
                "value": value,
                "status": AddressStatus.ACTIVE.value,
                "details": details,
                "created_at": now,
                "updated_at": now,
            }
            for (contact_id, kind), (value, details) in changed.items()
        ],
    )
