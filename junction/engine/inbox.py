"""Junction as the provider of in-app messages and content cards: delivering one means
storing it in the contact's inbox, where the app fetches it (or hears of it on the live
stream). Storing is keyed by the message, so a resend after a crash changes nothing."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

from junction.channels.base import (
    Capabilities,
    Channel,
    OutboundMessage,
    PermanentFailure,
    ProviderConfig,
    SendResult,
)
from junction.clock import Clock
from junction.store.database import Database
from junction.store.sql import insert_ignoring_conflicts
from junction.store.tables import inbox_items
from junction.threads import in_thread


class InboxConfig(ProviderConfig):
    pass


class InboxAdapter:
    name: ClassVar[str] = "inbox"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.IN_APP, Channel.CONTENT_CARD})
    capabilities: ClassVar[Capabilities] = Capabilities(
        rich_media=True, buttons=True, idempotent=True
    )
    Config: ClassVar[type[ProviderConfig]] = InboxConfig

    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    async def send(self, message: OutboundMessage) -> SendResult:
        if message.contact_id is None:
            raise PermanentFailure("in-app messages and cards go to a contact, not an address")
        await in_thread(self._store, message)
        return SendResult(provider_message_id=f"inbox-{message.id}")

    def _store(self, message: OutboundMessage) -> None:
        now = self.clock.now()
        content = dict(message.content)
        hours = content.pop("expiresInHours", None)
        pinned = bool(content.pop("pinned", False))
        with self.database.write() as conn:
            insert_ignoring_conflicts(
                conn,
                inbox_items,
                [
                    {
                        "workspace_id": message.workspace_id,
                        "contact_id": message.contact_id,
                        "message_id": message.id,
                        "kind": message.channel.value,
                        "content": content,
                        "pinned": pinned,
                        "expires_at": now + timedelta(hours=hours) if hours else None,
                        "created_at": now,
                    }
                ],
                on=("message_id",),
            )

    async def aclose(self) -> None:
        return None
