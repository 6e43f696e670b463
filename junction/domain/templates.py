"""Templates as data: a key, versions, and a content block per channel and per locale.

Rules kept here:
- a template is one message with a variant per channel (email, SMS, voice, push, web push,
  WhatsApp, Telegram, Messenger, in-app message, content card) and per locale; a ``landing``
  template is instead one mobile web page (``page``), shown at an SMS's short link;
- every string of a block is Liquid (rendered with ``junction.render``); the shape of the
  blocks is checked here, the Liquid in them where it is compiled;
- a locale falls back from the most to the least specific tag, then to the default content:
  ``fr-CA`` → ``fr`` → default; the choice is made per channel, so a French variant that only
  rewrites the email still sends the default SMS;
- ``undefined`` is the policy for a variable a contact lacks: ``lenient`` renders it empty
  (use ``| default: '…'``), ``strict`` suppresses the send and records which one was missing;
- the definition is a pydantic model, so its JSON Schema is published from the same source
  that validates it (``junction schema template``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

KEY_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{2,8})*$")


class _Block(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class EmailBlock(_Block):
    subject: str = Field(min_length=1, max_length=998)
    preheader: str | None = Field(
        default=None, max_length=500, description="the inbox preview line, hidden in the body"
    )
    html: str | None = Field(
        default=None, description="CSS in <style> is inlined when the version is saved"
    )
    text: str | None = Field(default=None, description="generated from the HTML when absent")

    @model_validator(mode="after")
    def _needs_a_body(self) -> EmailBlock:
        if not self.html and not self.text:
            raise ValueError("an email needs html or text")
        return self


class SmsBlock(_Block):
    text: str = Field(min_length=1)
    landing_page: str | None = Field(
        default=None,
        alias="landingPage",
        pattern=KEY_PATTERN,
        description="key of a landing template; {{ landing_url }} in the text links to it",
    )


class VoiceBlock(_Block):
    text: str = Field(min_length=1, description="what the call says")


class PushBlock(_Block):
    title: str | None = None
    body: str = Field(min_length=1)
    image: str | None = None
    url: str | None = Field(default=None, description="deep link or web address to open")
    data: dict[str, str] | None = None


class WhatsAppTemplate(_Block):
    name: str = Field(min_length=1, description="the approved WhatsApp template's name")
    language: str = Field(min_length=2, description="its language code, e.g. en_US")
    parameters: list[str] = Field(default_factory=list, description="Liquid, one per {{n}}")


class WhatsAppBlock(_Block):
    text: str | None = Field(default=None, description="session text (inside the 24 h window)")
    template: WhatsAppTemplate | None = None

    @model_validator(mode="after")
    def _needs_content(self) -> WhatsAppBlock:
        if not self.text and self.template is None:
            raise ValueError("a WhatsApp block needs text or an approved template")
        return self


class TelegramBlock(_Block):
    text: str | None = None
    photo: str | None = None

    @model_validator(mode="after")
    def _needs_content(self) -> TelegramBlock:
        if not self.text and not self.photo:
            raise ValueError("a Telegram block needs text or a photo")
        return self


class MessengerBlock(_Block):
    text: str = Field(min_length=1)
    tag: str | None = None


class Button(_Block):
    label: str = Field(min_length=1, max_length=30)
    url: str | None = None


class InboxBlock(_Block):
    title: str | None = None
    body: str = Field(min_length=1)
    image_url: str | None = Field(default=None, alias="imageUrl")
    url: str | None = None
    buttons: list[Button] = Field(default_factory=list, max_length=2)
    expires_in_hours: float | None = Field(default=None, alias="expiresInHours", gt=0)
    pinned: bool | None = Field(default=None, description="content cards only")


class PageBlock(_Block):
    title: str = Field(min_length=1)
    html: str = Field(min_length=1, description="the page's body; Junction wraps it for mobile")


class Channels(_Block):
    email: EmailBlock | None = None
    sms: SmsBlock | None = None
    voice: VoiceBlock | None = None
    push: PushBlock | None = None
    web_push: PushBlock | None = None
    whatsapp: WhatsAppBlock | None = None
    telegram: TelegramBlock | None = None
    messenger: MessengerBlock | None = None
    in_app: InboxBlock | None = None
    content_card: InboxBlock | None = None

    def present(self) -> list[str]:
        return [name for name in type(self).model_fields if getattr(self, name) is not None]


class Variant(_Block):
    channels: Channels = Field(default_factory=Channels)
    page: PageBlock | None = None


class Tracking(_Block):
    clicks: bool = Field(default=True, description="rewrite links to signed redirects")
    opens: bool = Field(default=True, description="add an open pixel to email")
    utm: dict[str, str] = Field(
        default_factory=dict,
        description="UTM parameters added to tracked links, e.g. {source: junction}",
    )

    @field_validator("utm")
    @classmethod
    def _utm_names(cls, value: dict[str, str]) -> dict[str, str]:
        allowed = {"source", "medium", "campaign", "term", "content"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown UTM parameter {unknown[0]!r}; use {sorted(allowed)}")
        return value


class TemplateDefinition(Variant):
    """What ``junction apply`` reads and ``POST /v1/templates`` takes."""

    key: str = Field(pattern=KEY_PATTERN, description="stable name used to send it")
    name: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    kind: Literal["message", "landing"] = "message"
    undefined: Literal["lenient", "strict"] = "lenient"
    tracking: Tracking = Field(default_factory=Tracking)
    sms_max_segments: int = Field(
        default=10, ge=1, le=10, alias="smsMaxSegments", description="longer SMS are flagged"
    )
    locales: dict[str, Variant] = Field(default_factory=dict)

    @field_validator("locales")
    @classmethod
    def _locale_tags(cls, value: dict[str, Variant]) -> dict[str, Variant]:
        for tag in value:
            if not _LOCALE.match(tag):
                raise ValueError(f"{tag!r} is not a locale tag such as 'fr' or 'fr-CA'")
        return {normalize_locale(tag): variant for tag, variant in value.items()}

    @model_validator(mode="after")
    def _content_for_kind(self) -> TemplateDefinition:
        variants = [self, *self.locales.values()]
        if self.kind == "landing":
            if self.page is None:
                raise ValueError("a landing template needs a page (title and html)")
            if any(v.channels.present() for v in variants):
                raise ValueError("a landing template has a page, not channels")
        else:
            if not self.channels.present():
                raise ValueError("a message template needs content for at least one channel")
            if any(v.page is not None for v in variants):
                raise ValueError("only landing templates have a page")
        return self

    def block(self, channel: str, locale: str | None) -> tuple[str | None, BaseModel | None]:
        """(the locale whose block is used — None for the default — and the block) for a
        channel, or ``page`` for a landing template."""
        for tag in fallback_chain(locale):
            variant = self.locales.get(tag) if tag is not None else self
            if variant is None:
                continue
            found = variant.page if channel == "page" else getattr(variant.channels, channel)
            if found is not None:
                return tag, found
        return None, None

    def channel_names(self) -> list[str]:
        return ["page"] if self.kind == "landing" else self.channels.present()


def normalize_locale(tag: str) -> str:
    """``fr_ca`` → ``fr-CA``: language lower case, region upper case, scripts title case."""
    parts = tag.replace("_", "-").split("-")
    out = [parts[0].lower()]
    for part in parts[1:]:
        if len(part) == 2 or part.isdigit():
            out.append(part.upper())
        elif len(part) == 4:
            out.append(part.title())
        else:
            out.append(part.lower())
    return "-".join(out)


def fallback_chain(locale: str | None) -> Iterator[str | None]:
    """``fr-CA`` → ``fr-CA``, ``fr``, then None (the default content)."""
    if locale and _LOCALE.match(locale):
        parts = normalize_locale(locale).split("-")
        for end in range(len(parts), 0, -1):
            yield "-".join(parts[:end])
    yield None


def liquid_fields(block: BaseModel, prefix: str) -> Iterator[tuple[str, str]]:
    """Every Liquid string of a block as (field path, source), e.g. ``email.subject``."""
    data: Any = block.model_dump(by_alias=True, exclude_none=True)
    yield from _strings(data, prefix)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for name, item in value.items():
            yield from _strings(item, f"{path}.{name}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
