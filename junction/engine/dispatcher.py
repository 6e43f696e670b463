"""The dispatcher: claims due messages in batches, sends them with many in flight, and
records every outcome.

Rules kept here:
- a claim, the sends of its batch, and the record of their outcomes are three steps; the
  claim and the record are transactions, the sends happen between them, outside any
  transaction;
- a passing failure (``RetryLater``, a timeout, an unexpected error) is retried with the
  backoff of ``junction.domain.retry``, never sooner than the provider's Retry-After; after
  the last attempt the message is ``dead`` and can be replayed;
- ``PermanentFailure`` and ``AddressInvalid`` are not retried; the latter also marks the
  address (invalid, bounced or unsubscribed), so later sends skip it;
- every outcome is also an event on the contact (``message.sent``, ``message.failed``…).

A worker killed mid-batch leaves its claimed rows ``sending``; once their lease runs out
another worker claims them again. Those it had already handed to the provider go again
with the same idempotency key (the provider, or for email the Message-ID, deduplicates
where it can): delivery is at-least-once for that narrow window, exactly-once otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog

from junction.channels import registry
from junction.channels.base import (
    Adapter,
    AddressInvalid,
    Channel,
    OutboundMessage,
    PermanentFailure,
    RetryLater,
)
from junction.clock import Clock
from junction.domain.ratelimit import Pace
from junction.domain.retry import RetryPolicy
from junction.engine.campaigns import CampaignEngine
from junction.engine.inbox import InboxAdapter
from junction.engine.journeys import JourneyEngine
from junction.engine.personalising import Personaliser
from junction.engine.segments import SegmentEngine
from junction.render.personalise import Links
from junction.settings import Settings
from junction.store import outbox
from junction.store.database import Database
from junction.store.lifecycle import Change, record_changes
from junction.store.providers import config_of, mark_address
from junction.threads import in_thread

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DispatcherSettings:
    batch_size: int = 1000
    concurrency: int = 100  # sends in flight at once
    lease: timedelta = timedelta(seconds=60)
    idle_wait: float = 0.25  # seconds between polls when nothing is due
    send_timeout: float = 30.0
    record_most: int = 1000  # outcomes per recording transaction, at most
    policy: RetryPolicy = field(default_factory=RetryPolicy)


def settings_from(settings: Settings) -> DispatcherSettings:
    return DispatcherSettings(
        batch_size=settings.dispatch_batch_size,
        concurrency=settings.dispatch_concurrency,
        lease=timedelta(seconds=settings.dispatch_lease_seconds),
    )


@dataclass(frozen=True, slots=True)
class _Sent:
    claimed: outbox.Claimed
    outcome: outbox.Outcome
    invalid_status: str | None = None


class Dispatcher:
    def __init__(
        self,
        database: Database,
        clock: Clock,
        settings: DispatcherSettings | None = None,
        draw: Callable[[], float] = random.random,
        adapters: Mapping[str, Adapter] | None = None,
        links: Links | None = None,
        journey_grace: timedelta | None = None,
    ) -> None:
        self.database = database
        self._links = links
        self._personaliser = Personaliser(database, links)
        self._journeys = JourneyEngine(database, clock, grace=journey_grace)
        self._segments = SegmentEngine(database, clock, grace=journey_grace)
        self.journey_work = 0
        self._campaigns = CampaignEngine(database, clock)
        self.clock = clock
        self.settings = settings or DispatcherSettings()
        self._draw = draw
        # Junction's own inbox is the provider of in-app messages and content cards; tests
        # and the demo may hand in more adapters by name.
        self._given: dict[str, Adapter] = {"inbox": InboxAdapter(database, clock)}
        self._given.update(adapters or {})
        # Built adapters, with the configuration they were built from: a changed
        # configuration builds a new one at the next batch.
        self._built: dict[tuple[int, str], tuple[dict[str, Any], Adapter]] = {}
        self._paces: dict[tuple[int, str], Pace] = {}  # providers with a rate limit

    async def run(self, stop: asyncio.Event) -> None:
        """Dispatch until ``stop`` is set."""
        with self.database.checkpointing():
            while not stop.is_set():
                try:
                    handled = await self.run_once()
                except Exception:  # the database away for a moment: log it, keep dispatching
                    log.exception("dispatch round failed; trying again")
                    handled = 0
                if handled == 0 and not self.journey_work:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=self.settings.idle_wait)
        await self.aclose()

    async def run_once(self) -> int:
        """Advance journeys and campaigns, then claim one batch, send it, record it; returns
        how many messages it handled (journey and campaign work is in ``journey_work``)."""
        self.journey_work = await in_thread(self._segments.run_once)
        self.journey_work += await in_thread(self._journeys.run_once)
        self.journey_work += await in_thread(self._campaigns.run_once)
        rerouted = await in_thread(self._reroute)
        claimed, held = await in_thread(self._claim)
        if not claimed:
            return rerouted + held
        ready, suppressed = await in_thread(self._personaliser.prepare, claimed)
        if suppressed:
            await in_thread(self._record, [self._suppressed(c, why) for c, why in suppressed])
        if not ready:
            return len(claimed) + held
        await self._refresh_adapters({(c.workspace_id, c.provider) for c in ready})
        await self._send_and_record(ready)
        return len(claimed) + held

    async def _send_and_record(self, ready: list[outbox.Claimed]) -> None:
        """Send a batch, recording outcomes as sends finish: each recording transaction
        takes every outcome that finished while the one before it ran (group commit). What a
        crash leaves unrecorded (and so sends again) is only what finished in the last
        moments before it; a fast provider's batch is recorded in a few transactions, a slow
        one's a few outcomes at a time."""
        finished: list[_Sent] = []
        some_finished = asyncio.Event()
        waiting = iter(ready)

        async def sender() -> None:  # at most ``concurrency`` of these: the sends in flight
            for message in waiting:
                finished.append(await self._send(message))
                some_finished.set()

        senders = min(self.settings.concurrency, len(ready))
        tasks = [asyncio.create_task(sender()) for _ in range(senders)]
        try:
            unrecorded = len(ready)
            while unrecorded:
                await some_finished.wait()
                some_finished.clear()
                batch = finished[: self.settings.record_most]
                del finished[: len(batch)]
                if finished:
                    some_finished.set()
                unrecorded -= len(batch)
                await in_thread(self._record, batch)
        finally:
            for task in tasks:  # cancelled (shutdown): nothing left running behind us
                task.cancel()

    async def drain(self) -> int:
        """Run until nothing is due now, then close the adapters it built (tests, one-shot
        runs: the next ``asyncio.run`` is another event loop, which connections cannot cross)."""
        total = 0
        try:
            with self.database.checkpointing():
                while (handled := await self.run_once()) or self.journey_work:
                    total += handled
        finally:
            await self.aclose()
        return total

    async def aclose(self) -> None:
        for _, adapter in self._built.values():
            await adapter.aclose()
        self._built.clear()

    def _reroute(self) -> int:
        now = self.clock.now()
        with self.database.read() as conn:  # most rounds have nothing to reroute: no write
            if not outbox.undelivered_due(conn, now):
                return 0
        with self.database.write() as conn:
            return outbox.reroute_undelivered(conn, now)

    def _claim(self) -> tuple[list[outbox.Claimed], int]:
        with self.database.write() as conn:
            return outbox.claim_batch(
                conn, self.clock.now(), self.settings.batch_size, self.settings.lease
            )

    async def _refresh_adapters(self, pairs: set[tuple[int, str]]) -> None:
        """Build (or rebuild, when its configuration changed) each provider of the batch,
        and pace those whose configuration sets a rate limit."""
        configs = await in_thread(self._configs, pairs)
        for pair, config in configs.items():
            rate = config.get("rate_per_second")
            if rate:
                pace = self._paces.get(pair)
                if pace is None or pace.rate != rate:
                    self._paces[pair] = Pace(rate=float(rate), burst=int(config.get("burst", 1)))
            else:
                self._paces.pop(pair, None)
            if pair[1] in self._given:
                continue
            cached = self._built.get(pair)
            if cached is not None and cached[0] == config:
                continue
            if cached is not None:
                await cached[1].aclose()
            try:
                self._built[pair] = (config, registry.build(pair[1], config))
            except Exception:  # a bad stored config: its sends are retried, and logged
                log.exception("cannot build provider", workspace_id=pair[0], provider=pair[1])
                self._built.pop(pair, None)

    def _configs(self, pairs: set[tuple[int, str]]) -> dict[tuple[int, str], dict[str, Any]]:
        with self.database.read() as conn:
            return {pair: config_of(conn, *pair) for pair in pairs}

    def _adapter(self, workspace_id: int, provider: str) -> Adapter:
        if provider in self._given:
            return self._given[provider]
        built = self._built.get((workspace_id, provider))
        if built is None:
            raise RetryLater(f"provider {provider!r} could not be built from its configuration")
        return built[1]

    async def _send(self, claimed: outbox.Claimed) -> _Sent:
        started = self.clock.now()
        outcome: dict[str, Any] = {}
        invalid_status = None
        try:
            adapter = self._adapter(claimed.workspace_id, claimed.provider)
            message = OutboundMessage(
                id=claimed.id,
                idempotency_key=claimed.idempotency_key,
                workspace_id=claimed.workspace_id,
                channel=Channel(claimed.channel),
                to=claimed.to_address,
                content=claimed.content,
                transactional=claimed.category == "transactional",
                contact_id=claimed.contact_id,
                locale=claimed.locale,
                headers=self._headers(claimed),
            )
            pace = self._paces.get((claimed.workspace_id, claimed.provider))
            if pace is not None:
                wait = pace.reserve(asyncio.get_running_loop().time())
                if wait > 0:
                    await asyncio.sleep(wait)  # the provider's rate limit, not a poll
            # A timeout scope, not wait_for: no extra task per send.
            async with asyncio.timeout(self.settings.send_timeout):
                result = await adapter.send(message)
            details = dict(result.details)
            if claimed.links:  # where each tracked link leads, for the redirect
                details["links"] = list(claimed.links)
            if claimed.rendered and claimed.provider == "capture":
                details["rendered"] = dict(claimed.content)  # what the dev inbox shows
            outcome = {
                "status": outbox.SENT,
                "provider_message_id": result.provider_message_id,
                "details": details or None,
                "fallback_at": self._fallback_at(claimed),
            }
        except AddressInvalid as error:
            outcome = self._failed(claimed, error.reason)
            invalid_status = error.status
        except PermanentFailure as error:
            outcome = self._failed(claimed, error.reason)
        except RetryLater as error:
            outcome = self._retry(claimed, error.reason, error.retry_after)
        except TimeoutError:
            outcome = self._retry(claimed, "the provider did not answer in time", None)
        except Exception as error:  # a bug or an unmapped error: retry, and say so
            log.exception("send failed unexpectedly", message_id=claimed.id)
            outcome = self._retry(claimed, f"{type(error).__name__}: {error}", None)
        finished = self.clock.now()
        return _Sent(
            claimed,
            outbox.Outcome(
                message_id=claimed.id,
                attempt=claimed.attempts,
                started_at=started,
                finished_at=finished,
                **outcome,
            ),
            invalid_status,
        )

    def _fallback_at(self, claimed: outbox.Claimed) -> datetime | None:
        """When to try the next channel if this one's delivery is not confirmed by then."""
        seconds = (claimed.policy or {}).get("fallbackAfterSeconds")
        if not seconds or not outbox.has_next_channel(claimed.policy, claimed.channel):
            return None
        return self.clock.now() + timedelta(seconds=seconds)

    def _headers(self, claimed: outbox.Claimed) -> dict[str, str]:
        """Marketing email carries Junction's RFC 8058 one-click unsubscribe link."""
        if claimed.channel != "email" or claimed.category == "transactional" or not self._links:
            return {}
        return {
            "List-Unsubscribe": f"<{self._links.unsubscribe_url(claimed.id)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def _suppressed(self, claimed: outbox.Claimed, reason: str) -> _Sent:
        now = self.clock.now()
        return _Sent(
            claimed,
            outbox.Outcome(
                message_id=claimed.id,
                attempt=claimed.attempts,
                started_at=now,
                finished_at=now,
                status=outbox.SUPPRESSED,
                error=reason,
            ),
        )

    def _failed(self, claimed: outbox.Claimed, reason: str) -> dict[str, Any]:
        """A permanent failure: final, unless the message's policy has another channel to try
        (it is then decided again at once, without the channels already tried)."""
        if outbox.has_next_channel(claimed.policy, claimed.channel):
            return {
                "status": outbox.FALLBACK,
                "error": f"{claimed.channel}: {reason}",
                "channel": claimed.channel,
            }
        return {"status": outbox.FAILED, "error": reason}

    def _retry(
        self, claimed: outbox.Claimed, reason: str, retry_after: float | None
    ) -> dict[str, Any]:
        due = self.settings.policy.next_attempt(
            claimed.attempts, self.clock.now(), self._draw(), retry_after
        )
        if due is None:
            return {
                "status": outbox.DEAD,
                "error": f"gave up after {claimed.attempts} attempts: {reason}",
            }
        return {"status": outbox.RETRYING, "error": reason, "due_at": due}

    def _record(self, results: list[_Sent]) -> None:
        now = self.clock.now()
        with self.database.write() as conn:
            outbox.record(conn, [r.outcome for r in results], now)
            for r in results:
                if r.invalid_status is not None and r.claimed.contact_id is not None:
                    mark_address(
                        conn, r.claimed.contact_id, r.claimed.to_address, r.invalid_status, now
                    )
            record_changes(
                conn,
                [
                    Change(
                        r.claimed.workspace_id,
                        r.claimed.contact_id,
                        r.claimed.id,
                        r.claimed.channel,
                        outbox.REROUTED
                        if r.outcome.status == outbox.FALLBACK
                        else r.outcome.status,
                        r.outcome.finished_at,
                        r.outcome.error,
                    )
                    for r in results
                    if r.outcome.status != outbox.RETRYING
                ],
                now,
            )
