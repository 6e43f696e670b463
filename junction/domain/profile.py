"""Reserved traits: the few traits Junction reads as well as stores.

A contact's traits are kept exactly as the customer sent them. These ones are also read:

    email     → an email address (validated, normalised)
    phone     → a phone address in E.164, with its country
    timezone  → an IANA zone name, used for quiet hours and local send times
    locale    → a BCP 47 tag such as ``fr-CA``, normalised to ``ll-CC``
    country   → an ISO 3166-1 alpha-2 code, upper-case

A null or empty reserved trait is stored as a trait and otherwise ignored: it never
removes an address (erasure is its own, explicit, call).
"""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from functools import cache
from typing import Any

import phonenumbers

from junction.domain.addresses import InvalidAddress, Phone, normalize_email, normalize_phone
from junction.errors import FieldError

_LOCALE = re.compile(r"^([a-zA-Z]{2,3})(?:[-_]([a-zA-Z]{4}))?(?:[-_]([a-zA-Z]{2}|[0-9]{3}))?$")


@dataclass(frozen=True, slots=True)
class ProfileFields:
    """The reserved traits of one identify call, validated. ``None`` means "not given"."""

    email: str | None = None
    phone: Phone | None = None
    timezone: str | None = None
    locale: str | None = None
    country: str | None = None


@cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def normalize_locale(raw: str) -> str:
    match = _LOCALE.match(raw)
    if not match:
        raise ValueError("not a locale; use a BCP 47 tag such as 'fr' or 'fr-CA'")
    language, script, region = match.groups()
    parts = [language.lower()]
    if script:
        parts.append(script.title())
    if region:
        parts.append(region.upper())
    return "-".join(parts)


def normalize_country(raw: str) -> str:
    code = raw.strip().upper()
    if code not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError("not a country code; use ISO 3166-1 alpha-2, such as 'FR' or 'US'")
    return code


def read_profile_fields(
    traits: dict[str, Any], at: str = "traits"
) -> tuple[ProfileFields, list[FieldError]]:
    """Validate the reserved traits; every problem is returned, each naming its field."""
    errors: list[FieldError] = []

    def text(name: str) -> str | None:
        value = traits.get(name)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            errors.append(
                FieldError(f"{at}.{name}", f"must be a string, got {type(value).__name__}")
            )
            return None
        return value.strip()

    country = text("country")
    if country is not None:
        try:
            country = normalize_country(country)
        except ValueError as error:
            errors.append(FieldError(f"{at}.country", str(error)))
            country = None

    email = text("email")
    if email is not None:
        try:
            email = normalize_email(email)
        except InvalidAddress as error:
            errors.append(FieldError(f"{at}.email", str(error)))

    phone: Phone | None = None
    raw_phone = traits.get("phone")
    if isinstance(raw_phone, int) and not isinstance(raw_phone, bool):
        raw_phone = f"+{raw_phone}"
    if raw_phone not in (None, ""):
        if not isinstance(raw_phone, str):
            errors.append(FieldError(f"{at}.phone", "must be a string such as '+33612345678'"))
        else:
            try:
                phone = normalize_phone(raw_phone, country)
            except InvalidAddress as error:
                errors.append(FieldError(f"{at}.phone", str(error)))

    timezone = text("timezone")
    if timezone is not None and timezone not in _timezones():
        errors.append(
            FieldError(f"{at}.timezone", "not an IANA time zone; use a name such as 'Europe/Paris'")
        )

    locale = text("locale")
    if locale is not None:
        try:
            locale = normalize_locale(locale)
        except ValueError as error:
            errors.append(FieldError(f"{at}.locale", str(error)))

    if errors:
        return ProfileFields(), errors
    return ProfileFields(email, phone, timezone, locale, country), []
