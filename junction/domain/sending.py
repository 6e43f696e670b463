"""What a send request must hold, per channel: checked before anything is stored.

Rules kept here:
- a channel reaches a person through one kind of address: email through an email address,
  SMS and voice through a phone number, push and web push through every active device (one
  message each), Telegram through a chat id, in-app messages and content cards through the
  contact itself, a webhook through the URL given with the request;
- content is literal (templates come later) and must fit its channel: an email needs a
  subject and a text or HTML body; an SMS at most 1,600 characters (10 segments, Twilio's
  limit); a voice call some text to say; a webhook a JSON object;
- the category is ``transactional`` (exempt from marketing opt-outs and caps) or a topic key.
"""

from __future__ import annotations

import re
from typing import Any

from junction.domain.addresses import AddressKind
from junction.errors import FieldError

CHANNEL_ADDRESS: dict[str, AddressKind | None] = {
    "email": AddressKind.EMAIL,
    "sms": AddressKind.PHONE,
    "voice": AddressKind.PHONE,
    "push": AddressKind.PUSH,
    "web_push": AddressKind.WEB_PUSH,
    "telegram": AddressKind.TELEGRAM,
    "whatsapp": AddressKind.PHONE,
    "messenger": AddressKind.MESSENGER,
    "in_app": None,
    "content_card": None,
    "webhook": None,
}
SENDABLE_CHANNELS = tuple(CHANNEL_ADDRESS)
# Channels that reach every active device of the contact, one message each.
DEVICE_CHANNELS = frozenset({"push", "web_push"})
MAX_SMS_CHARACTERS = 1600
MAX_VOICE_CHARACTERS = 3900  # Twilio takes 4,000 characters of TwiML, markup included
MAX_SUBJECT = 998  # RFC 5322 line limit
# Messenger's message tags: what may go outside the 24-hour window.
MESSENGER_TAGS = frozenset(
    {"CONFIRMED_EVENT_UPDATE", "POST_PURCHASE_UPDATE", "ACCOUNT_UPDATE", "HUMAN_AGENT"}
)
_CATEGORY = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")


def _text(content: dict[str, Any], name: str, limit: int, errors: list[FieldError]) -> str | None:
    value = content.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        errors.append(FieldError(f"content.{name}", "must be a string"))
        return None
    if len(value) > limit:
        errors.append(
            FieldError(f"content.{name}", f"is {len(value)} characters; the limit is {limit}")
        )
    return value


def check_content(channel: str, content: dict[str, Any]) -> list[FieldError]:
    errors: list[FieldError] = []
    if channel == "email":
        subject = _text(content, "subject", MAX_SUBJECT, errors)
        if not subject:
            errors.append(FieldError("content.subject", "an email needs a subject"))
        elif "\r" in subject or "\n" in subject:
            errors.append(FieldError("content.subject", "must be one line"))
        text = _text(content, "text", 10_000_000, errors)
        html = _text(content, "html", 10_000_000, errors)
        if not text and not html:
            errors.append(FieldError("content.text", "an email needs a text or an html body"))
    elif channel == "sms":
        if not _text(content, "text", MAX_SMS_CHARACTERS, errors):
            errors.append(FieldError("content.text", "an SMS needs its text"))
    elif channel == "voice":
        if not _text(content, "text", MAX_VOICE_CHARACTERS, errors):
            errors.append(FieldError("content.text", "a call needs the text to say"))
    elif channel in DEVICE_CHANNELS:
        _text(content, "title", 200, errors)
        _text(content, "url", 2048, errors)
        _text(content, "image", 2048, errors)
        if not _text(content, "body", 4000, errors):
            errors.append(FieldError("content.body", "a push notification needs a body"))
        data = content.get("data")
        if data is not None and not (
            isinstance(data, dict) and all(isinstance(v, str) for v in data.values())
        ):
            errors.append(FieldError("content.data", "must be an object of string values"))
    elif channel == "telegram":
        photo = _text(content, "photo", 2048, errors)
        # A photo's caption (its text, when no caption is given) holds 1,024 characters.
        limit = 1024 if photo else 4096
        text = _text(content, "caption" if "caption" in content else "text", limit, errors)
        if not text and not photo:
            errors.append(FieldError("content.text", "a Telegram message needs text or a photo"))
    elif channel == "whatsapp":
        _check_whatsapp_content(content, errors)
    elif channel == "messenger":
        if not _text(content, "text", 2000, errors):
            errors.append(FieldError("content.text", "a Messenger message needs its text"))
        tag = content.get("tag")
        if tag is not None and tag not in MESSENGER_TAGS:
            allowed = ", ".join(sorted(MESSENGER_TAGS))
            errors.append(FieldError("content.tag", f"must be one of: {allowed}"))
    elif channel in ("in_app", "content_card"):
        _check_inbox_content(channel, content, errors)
    elif channel == "webhook" and not isinstance(content.get("data"), dict):
        errors.append(FieldError("content.data", "a webhook sends a JSON object in data"))
    return errors


def _check_whatsapp_content(content: dict[str, Any], errors: list[FieldError]) -> None:
    template = content.get("template")
    if template is None:
        if not _text(content, "text", 4096, errors):
            errors.append(FieldError("content.text", "a WhatsApp message needs text or a template"))
        return
    if not isinstance(template, dict) or not all(
        isinstance(template.get(key), str) and template.get(key) for key in ("name", "language")
    ):
        errors.append(
            FieldError("content.template", "give the approved template's name and language")
        )
    elif not all(isinstance(p, str) for p in template.get("parameters", [])):
        errors.append(FieldError("content.template.parameters", "must be a list of strings"))


def _check_inbox_content(channel: str, content: dict[str, Any], errors: list[FieldError]) -> None:
    _text(content, "title", 200, errors)
    _text(content, "imageUrl", 2048, errors)
    _text(content, "url", 2048, errors)
    if not _text(content, "body", 5000, errors):
        errors.append(FieldError("content.body", f"an {channel} message needs a body"))
    buttons = content.get("buttons", [])
    if (
        not isinstance(buttons, list)
        or len(buttons) > 2
        or not all(
            isinstance(b, dict) and isinstance(b.get("label"), str) and 0 < len(b["label"]) <= 30
            for b in buttons
        )
    ):
        errors.append(
            FieldError("content.buttons", "at most 2 buttons, each with a label of 1-30 characters")
        )
    hours = content.get("expiresInHours")
    if hours is not None and (
        not isinstance(hours, int | float) or isinstance(hours, bool) or not 0 < hours <= 24 * 365
    ):
        errors.append(
            FieldError("content.expiresInHours", "must be a number of hours up to a year")
        )
    pinned = content.get("pinned")
    if pinned is not None and (not isinstance(pinned, bool) or channel != "content_card"):
        errors.append(FieldError("content.pinned", "true or false, on content cards only"))


def check_category(category: str) -> list[FieldError]:
    if _CATEGORY.match(category):
        return []
    return [FieldError("category", "use 'transactional' or a topic key such as 'product-news'")]
