"""Junction as the provider of in-app messages and content cards: delivering one means
storing it in the contact's inbox, where the app fetches it (or hears of it on the live
stream). Storing is keyed by the message, so a resend after a crash changes nothing. Sends
that arrive together are stored together, in one transaction."""

from __future__ import annotations

import asyncio
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
        # Sends waiting to be stored, and the task storing them: a campaign with a paired
        # card sends hundreds at once, and a transaction each was most of their cost.
        self._waiting: list[tuple[OutboundMessage, asyncio.Future[None]]] = []
        self._storing: asyncio.Task[None] | None = None

    async def send(self, message: OutboundMessage) -> SendResult:
        if message.contact_id is None:
            raise PermanentFailure("in-app messages and cards go to a contact, not an address")
        stored = asyncio.get_running_loop().create_future()
        self._waiting.append((message, stored))
        if self._storing is None or self._storing.done():
            self._storing = asyncio.create_task(self._store_waiting())
        await stored
        return SendResult(provider_message_id=f"inbox-{message.id}")

    async def _store_waiting(self) -> None:
        """Store what waits, one transaction at a time: each takes every send that came in
        while the one before it ran (group commit)."""
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                await self._store_batch(batch)
            finally:  # cancelled (shutdown): no sender is left waiting on this batch
                for _, stored in batch:
                    if not stored.done():
                        stored.cancel()

    async def _store_batch(self, batch: list[tuple[OutboundMessage, asyncio.Future[None]]]) -> None:
        try:
            await in_thread(self._store, [message for message, _ in batch])
        except Exception as error:
            if len(batch) == 1:  # the database away, or this one message: it is retried
                _settle(batch[0][1], error)
                return
            # One message may be what failed: each alone, so the others still go.
            for message, stored in batch:
                try:
                    await in_thread(self._store, [message])
                except Exception as alone:
                    _settle(stored, alone)
                else:
                    _settle(stored, None)
        else:
            for _, stored in batch:
                _settle(stored, None)

    def _store(self, batch: list[OutboundMessage]) -> None:
        now = self.clock.now()
        rows = []
        for message in batch:
            content = dict(message.content)
            hours = content.pop("expiresInHours", None)
            pinned = bool(content.pop("pinned", False))
            rows.append(
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
            )
        with self.database.write() as conn:
            insert_ignoring_conflicts(conn, inbox_items, rows, on=("message_id",))

    async def aclose(self) -> None:
        """Stop storing: sends still waiting fail (and are retried), none is left hanging."""
        if self._storing is not None and not self._storing.done():
            self._storing.cancel()
        for _, stored in self._waiting:
            if not stored.done():
                stored.cancel()
        self._waiting.clear()
        self._storing = None


def _settle(stored: asyncio.Future[None], error: Exception | None) -> None:
    if stored.done():  # its sender timed out, or shut down, meanwhile
        return
    if error is None:
        stored.set_result(None)
    else:
        stored.set_exception(error)
