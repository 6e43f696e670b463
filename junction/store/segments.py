"""Segments in the database (being built): the audience a campaign sends to."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, select

from junction.errors import NotFound
from junction.store.tables import contacts, segment_members, segments


def audience(conn: Connection, workspace_id: int, key: str | None, now: datetime) -> list[int]:
    """The contact ids in segment ``key`` now, ascending (everyone in the workspace when
    ``key`` is None); ``NotFound`` names an unknown segment."""
    if key is None:
        query = select(contacts.c.id).where(contacts.c.workspace_id == workspace_id)
        return list(conn.scalars(query.order_by(contacts.c.id)))
    segment_id = conn.scalar(
        select(segments.c.id).where(
            segments.c.workspace_id == workspace_id,
            segments.c.key == key,
            segments.c.status == "active",
        )
    )
    if segment_id is None:
        raise NotFound(f"no segment {key!r} in this workspace")
    query = select(segment_members.c.contact_id).where(
        segment_members.c.segment_id == segment_id, segment_members.c.member
    )
    return list(conn.scalars(query.order_by(segment_members.c.contact_id)))
