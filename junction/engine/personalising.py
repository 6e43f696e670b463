"""Turning claimed template messages into the content each person gets, a batch at a time.

Rules kept here:
- rendering happens when a message is sent, not when it is queued, so a person gets the
  traits they have then (a journey's message three days later greets them by their new name);
- a batch reads each template version, each workspace's constants once, and binds each
  distinct (version, channel, locale, data) once: a campaign's shared parts are rendered once
  per batch, only the personal parts per person;
- a message whose render fails is suppressed with the reason (a strict template's missing
  trait, a limit hit), never retried: rendering again gives the same answer;
- a message with literal content passes through untouched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
import structlog

from junction.domain.sending import check_content
from junction.errors import NotFound
from junction.render.liquid import RenderFailed
from junction.render.personalise import BoundBlock, Links, bind, shared_namespace
from junction.settings import Settings
from junction.store import templates
from junction.store.database import Database
from junction.store.outbox import Claimed

log = structlog.get_logger(__name__)
TEMPLATE_KEY = "templateKey"


def links_from(settings: Settings) -> Links:
    public = settings.public_url or f"http://{settings.host}:{settings.port}"
    return Links(settings.resolved_secret_key().encode(), public.rstrip("/"))


def is_templated(content: dict[str, Any]) -> bool:
    return TEMPLATE_KEY in content


class Personaliser:
    def __init__(self, database: Database, links: Links | None) -> None:
        self.database = database
        self.links = links

    def prepare(
        self, claimed: Sequence[Claimed]
    ) -> tuple[list[Claimed], list[tuple[Claimed, str]]]:
        """(messages ready to send, messages suppressed with the reason)."""
        if not any(is_templated(c.content) for c in claimed):
            return list(claimed), []
        ready: list[Claimed] = []
        suppressed: list[tuple[Claimed, str]] = []
        bound: dict[bytes, BoundBlock | str] = {}  # by what decides it; str: why not
        constants: dict[int, dict[str, Any]] = {}
        with self.database.read() as conn:
            for message in claimed:
                if not is_templated(message.content):
                    ready.append(message)
                    continue
                content = message.content
                locale = content.get("locale") or message.locale
                key = orjson.dumps(
                    [message.workspace_id, message.channel, locale, content],
                    option=orjson.OPT_SORT_KEYS,
                )
                block = bound.get(key)
                if block is None:
                    if message.workspace_id not in constants:
                        constants[message.workspace_id] = templates.constants(
                            conn, message.workspace_id
                        )
                    block = self._bind(conn, message, locale, constants[message.workspace_id])
                    bound[key] = block
                if isinstance(block, str):
                    suppressed.append((message, block))
                    continue
                try:
                    rendered = block.render(message.contact or {}, message.id, self.links)
                except RenderFailed as error:
                    suppressed.append((message, f"template {content[TEMPLATE_KEY]!r}: {error}"))
                    continue
                misfits = check_content(message.channel, rendered.content)
                if misfits:
                    reasons = "; ".join(f"{e.field}: {e.message}" for e in misfits)
                    suppressed.append((message, f"rendered content does not fit: {reasons}"))
                    continue
                ready.append(
                    message.rendered_as(
                        _with_address_details(message.content, rendered.content),
                        tuple(rendered.links),
                    )
                )
        return ready, suppressed

    def _bind(
        self, conn: Any, message: Claimed, locale: str | None, workspace: dict[str, Any]
    ) -> BoundBlock | str:
        content = message.content
        key, version = content[TEMPLATE_KEY], int(content.get("templateVersion", 0))
        try:
            compiled = templates.load(conn, message.workspace_id, key, version)
        except NotFound as error:
            return error.message
        block = compiled.block(message.channel, locale)
        if block is None:
            return f"template {key!r} version {version} has no {message.channel} content"
        shared = shared_namespace(content.get("event"), content.get("data"), workspace)
        try:
            return bind(block, shared, compiled.definition.tracking.utm)
        except RenderFailed as error:
            return f"template {key!r}: {error}"


# What the send request put beside the template reference for the provider (a web-push
# subscription's keys), carried into the rendered content.
_BESIDE = ("subscription_keys",)


def _with_address_details(stored: dict[str, Any], rendered: dict[str, Any]) -> dict[str, Any]:
    extra = {name: stored[name] for name in _BESIDE if name in stored}
    return {**rendered, **extra} if extra else rendered
