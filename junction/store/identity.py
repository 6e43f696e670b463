"""Who a call is about: from the ids in a call to one contact row, in bulk.

Rules kept here:
- a ``userId`` names one contact per workspace, created on first sight;
- an ``anonymousId`` alone names a contact with no user id yet, created on first sight;
- ``identify`` with both ids links them; if the anonymous contact has no user id of its own
  it is merged into the known one (its events, addresses and traits move; known traits
  win); if it already belongs to another user, the anonymous id now points at the newer
  user (a shared device) and history stays where it was;
- ``alias`` merges whatever contact ``previousId`` names into the ``userId`` contact, and
  keeps ``previousId`` as an alias so late calls with it still land.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from junction.store.sql import insert_ignoring_conflicts
from junction.store.tables import addresses, contact_aliases, contacts, events

ANONYMOUS = "anonymous"
USER = "user"


def _new_contact(workspace_id: int, user_id: str | None, now: datetime) -> dict[str, Any]:
    return {
        "workspace_id": workspace_id,
        "user_id": user_id,
        "traits": {},
        "created_at": now,
        "updated_at": now,
    }


def _by_user_id(conn: Connection, workspace_id: int, user_ids: Iterable[str]) -> dict[str, int]:
    rows = conn.execute(
        select(contacts.c.user_id, contacts.c.id).where(
            contacts.c.workspace_id == workspace_id, contacts.c.user_id.in_(list(user_ids))
        )
    )
    return {row.user_id: row.id for row in rows}


def _by_alias(
    conn: Connection, workspace_id: int, kind: str, aliases: Iterable[str]
) -> dict[str, int]:
    rows = conn.execute(
        select(contact_aliases.c.alias, contact_aliases.c.contact_id).where(
            contact_aliases.c.workspace_id == workspace_id,
            contact_aliases.c.kind == kind,
            contact_aliases.c.alias.in_(list(aliases)),
        )
    )
    return {row.alias: row.contact_id for row in rows}


def contacts_for_user_ids(
    conn: Connection, workspace_id: int, user_ids: set[str], now: datetime
) -> dict[str, int]:
    """The contact id of each user id, creating contacts for the ones never seen."""
    if not user_ids:
        return {}
    found = _by_user_id(conn, workspace_id, user_ids)
    missing = user_ids - found.keys()
    if missing:
        found |= _by_alias(conn, workspace_id, USER, missing)
        missing = user_ids - found.keys()
    if missing:
        rows = [_new_contact(workspace_id, user_id, now) for user_id in sorted(missing)]
        insert_ignoring_conflicts(conn, contacts, rows, on=("workspace_id", "user_id"))
        found |= _by_user_id(conn, workspace_id, missing)
    return found


def contacts_for_anonymous_ids(
    conn: Connection, workspace_id: int, anonymous_ids: set[str], now: datetime
) -> dict[str, int]:
    """The contact id of each anonymous id, creating anonymous contacts for new ones."""
    if not anonymous_ids:
        return {}
    found = _by_alias(conn, workspace_id, ANONYMOUS, anonymous_ids)
    missing = sorted(anonymous_ids - found.keys())
    if missing:
        created = (
            conn.execute(
                contacts.insert().returning(contacts.c.id, sort_by_parameter_order=True),
                [_new_contact(workspace_id, None, now) for _ in missing],
            )
            .scalars()
            .all()
        )
        alias_rows = [
            {
                "workspace_id": workspace_id,
                "contact_id": contact_id,
                "kind": ANONYMOUS,
                "alias": alias,
            }
            for alias, contact_id in zip(missing, created, strict=True)
        ]
        insert_ignoring_conflicts(
            conn, contact_aliases, alias_rows, on=("workspace_id", "kind", "alias")
        )
        settled = _by_alias(conn, workspace_id, ANONYMOUS, missing)
        # Another writer created some of these first: drop our duplicates of theirs.
        lost = [cid for alias, cid in zip(missing, created, strict=True) if settled[alias] != cid]
        if lost:
            conn.execute(delete(contacts).where(contacts.c.id.in_(lost)))
        found |= settled
    return found


def find_contact_id(conn: Connection, workspace_id: int, user_id: str) -> int | None:
    """The contact a customer's user id names (directly or through an alias), if any."""
    found = _by_user_id(conn, workspace_id, [user_id]) or _by_alias(
        conn, workspace_id, USER, [user_id]
    )
    return found.get(user_id)


def link_anonymous_id(
    conn: Connection, workspace_id: int, user_id: str, anonymous_id: str, now: datetime
) -> int:
    """Tie an anonymous id to a user (identify with both ids); returns the user's contact."""
    target = contacts_for_user_ids(conn, workspace_id, {user_id}, now)[user_id]
    current = _by_alias(conn, workspace_id, ANONYMOUS, [anonymous_id]).get(anonymous_id)
    if current is None:
        _add_alias(conn, workspace_id, target, ANONYMOUS, anonymous_id)
    elif current != target:
        owner = conn.execute(
            select(contacts.c.user_id).where(contacts.c.id == current)
        ).scalar_one()
        if owner is None:
            merge_contacts(conn, source=current, target=target, now=now)
        else:
            conn.execute(
                update(contact_aliases)
                .where(
                    contact_aliases.c.workspace_id == workspace_id,
                    contact_aliases.c.kind == ANONYMOUS,
                    contact_aliases.c.alias == anonymous_id,
                )
                .values(contact_id=target)
            )
    return target


def alias_user(
    conn: Connection, workspace_id: int, user_id: str, previous_id: str, now: datetime
) -> int:
    """Merge the contact ``previous_id`` names into ``user_id``'s; returns the survivor."""
    target = contacts_for_user_ids(conn, workspace_id, {user_id}, now)[user_id]
    source = (
        _by_user_id(conn, workspace_id, [previous_id])
        or _by_alias(conn, workspace_id, USER, [previous_id])
        or _by_alias(conn, workspace_id, ANONYMOUS, [previous_id])
    ).get(previous_id)
    if source is None:
        # Not seen yet: whichever kind of id it turns out to be, it leads here.
        _add_alias(conn, workspace_id, target, ANONYMOUS, previous_id)
        _add_alias(conn, workspace_id, target, USER, previous_id)
    elif source != target:
        merge_contacts(conn, source=source, target=target, now=now)
    return target


def _add_alias(conn: Connection, workspace_id: int, contact_id: int, kind: str, alias: str) -> None:
    insert_ignoring_conflicts(
        conn,
        contact_aliases,
        [{"workspace_id": workspace_id, "contact_id": contact_id, "kind": kind, "alias": alias}],
        on=("workspace_id", "kind", "alias"),
    )


def merge_contacts(conn: Connection, *, source: int, target: int, now: datetime) -> None:
    """Move everything of ``source`` onto ``target`` and delete ``source``."""
    src = conn.execute(select(contacts).where(contacts.c.id == source)).one()
    dst = conn.execute(select(contacts).where(contacts.c.id == target)).one()
    conn.execute(
        update(contacts)
        .where(contacts.c.id == target)
        .values(
            traits={**src.traits, **dst.traits},
            timezone=dst.timezone or src.timezone,
            locale=dst.locale or src.locale,
            country=dst.country or src.country,
            updated_at=now,
        )
    )
    conn.execute(update(events).where(events.c.contact_id == source).values(contact_id=target))
    conn.execute(
        update(contact_aliases)
        .where(contact_aliases.c.contact_id == source)
        .values(contact_id=target)
    )
    target_values = {
        (row.kind, row.value)
        for row in conn.execute(
            select(addresses.c.kind, addresses.c.value).where(addresses.c.contact_id == target)
        )
    }
    movable = [
        row.id
        for row in conn.execute(
            select(addresses.c.id, addresses.c.kind, addresses.c.value).where(
                addresses.c.contact_id == source
            )
        )
        if (row.kind, row.value) not in target_values
    ]
    if movable:
        conn.execute(update(addresses).where(addresses.c.id.in_(movable)).values(contact_id=target))
    if src.user_id is not None:
        _add_alias(conn, src.workspace_id, target, USER, src.user_id)
    conn.execute(delete(contacts).where(contacts.c.id == source))
