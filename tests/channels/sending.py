"""Driving one adapter directly in a test."""

from __future__ import annotations

import asyncio

from junction.channels.base import Adapter, DeliveryError, OutboundMessage, SendResult


def send(adapter: Adapter, *messages: OutboundMessage) -> list[SendResult | DeliveryError]:
    """Each message's outcome, sent in turn by one adapter (one client, one event loop)."""

    async def scenario() -> list[SendResult | DeliveryError]:
        outcomes: list[SendResult | DeliveryError] = []
        try:
            for message in messages:
                try:
                    outcomes.append(await adapter.send(message))
                except DeliveryError as error:
                    outcomes.append(error)
        finally:
            await adapter.aclose()
        return outcomes

    return asyncio.run(scenario())
