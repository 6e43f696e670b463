"""Channel addresses: what a contact can be reached at, normalised once on the way in.

Rules kept here:
- an email is validated for syntax only (no DNS look-up: ingestion must not wait on the
  network) and stored in its normalised form;
- a phone number is stored in E.164 with its country; a number written without a country
  code is read in the contact's own country when one is known;
- an address carries a status, and only an ``active`` one is sent to.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from email_validator import EmailNotValidError, validate_email


class AddressKind(StrEnum):
    EMAIL = "email"
    PHONE = "phone"
    PUSH = "push"  # an iOS or Android device token
    WEB_PUSH = "web_push"  # an RFC 8030 push subscription
    TELEGRAM = "telegram"  # a Telegram chat id
    MESSENGER = "messenger"  # a page-scoped id (PSID) on Facebook Messenger


class AddressStatus(StrEnum):
    ACTIVE = "active"
    UNVERIFIED = "unverified"
    BOUNCED = "bounced"
    INVALID = "invalid"
    UNSUBSCRIBED = "unsubscribed"


class InvalidAddress(ValueError):
    """The address cannot be used; the message says why and what a valid one looks like."""


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    country: str | None


def normalize_email(raw: str) -> str:
    try:
        return validate_email(raw, check_deliverability=False).normalized
    except EmailNotValidError as error:
        raise InvalidAddress(f"not a valid email address: {error}") from None


def normalize_phone(raw: str, default_country: str | None = None) -> Phone:
    try:
        number = phonenumbers.parse(raw, default_country)
    except phonenumbers.NumberParseException:
        raise InvalidAddress(
            "not a phone number; write it in international form, e.g. +33612345678"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidAddress(
            "not a valid phone number for its country; write it in international form, "
            "e.g. +33612345678"
        )
    return Phone(
        e164=phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        country=phonenumbers.region_code_for_number(number),
    )


def _b64url(value: str) -> bytes:
    import base64  # local: only web-push registration needs it

    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def check_web_push_subscription(endpoint: str, p256dh: str, auth: str) -> list[tuple[str, str]]:
    """Problems with a browser's PushSubscription (RFC 8030 endpoint, RFC 8291 keys), as
    (field, reason) pairs; empty when it is usable."""
    problems: list[tuple[str, str]] = []
    if not endpoint.startswith("https://"):
        problems.append(("subscription.endpoint", "must be the https:// URL the browser gave"))
    try:
        key = _b64url(p256dh)
        if len(key) != 65 or key[0] != 4:
            raise ValueError
    except ValueError:
        problems.append(
            (
                "subscription.keys.p256dh",
                "must be the base64url uncompressed P-256 public key (65 bytes)",
            )
        )
    try:
        if len(_b64url(auth)) != 16:
            raise ValueError
    except ValueError:
        problems.append(("subscription.keys.auth", "must be the base64url 16-byte auth secret"))
    return problems
