"""Which provider carries each channel of a workspace, and what sends learn about addresses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from junction.store.tables import addresses, provider_configs

DEFAULT_PROVIDER = "capture"
INBOX_CHANNELS = ("in_app", "content_card")  # always Junction's own inbox


def provider_for(conn: Connection, workspace_id: int, channel: str) -> str:
    """The provider configured for a channel, or the capture provider when none is."""
    if channel in INBOX_CHANNELS:
        return "inbox"
    found = conn.execute(
        select(provider_configs.c.provider).where(
            provider_configs.c.workspace_id == workspace_id, provider_configs.c.channel == channel
        )
    ).scalar_one_or_none()
    return found or DEFAULT_PROVIDER


def config_of(conn: Connection, workspace_id: int, provider: str) -> dict[str, Any]:
    found = conn.execute(
        select(provider_configs.c.config).where(
            provider_configs.c.workspace_id == workspace_id,
            provider_configs.c.provider == provider,
        )
    ).first()
    return dict(found.config) if found else {}


def mark_address(conn: Connection, contact_id: int, value: str, status: str, now: datetime) -> None:
    """Record what a provider said of an address (invalid, bounced, unsubscribed)."""
    conn.execute(
        update(addresses)
        .where(addresses.c.contact_id == contact_id, addresses.c.value == value)
        .values(status=status, updated_at=now)
    )


def set_channel_provider(
    conn: Connection,
    workspace_id: int,
    channel: str,
    provider: str,
    config: dict[str, Any],
    now: datetime,
) -> None:
    """Choose the provider of a channel; its configuration must already be validated."""
    conn.execute(
        delete(provider_configs).where(
            provider_configs.c.workspace_id == workspace_id, provider_configs.c.channel == channel
        )
    )
    conn.execute(
        provider_configs.insert().values(
            workspace_id=workspace_id,
            channel=channel,
            provider=provider,
            config=config,
            created_at=now,
            updated_at=now,
        )
    )


def remove_channel_provider(conn: Connection, workspace_id: int, channel: str) -> None:
    conn.execute(
        delete(provider_configs).where(
            provider_configs.c.workspace_id == workspace_id, provider_configs.c.channel == channel
        )
    )


def channel_providers(conn: Connection, workspace_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    rows = conn.execute(
        select(provider_configs.c.channel, provider_configs.c.provider, provider_configs.c.config)
        .where(provider_configs.c.workspace_id == workspace_id)
        .order_by(provider_configs.c.channel)
    )
    return [(row.channel, row.provider, dict(row.config)) for row in rows]
