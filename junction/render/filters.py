"""Liquid filters for money and dates, shown in each recipient's own locale and timezone.

Rules kept here:
- ``register(env)`` adds ``money``, ``format_date`` and ``format_datetime`` to a
  ``liquid.Environment``; templates use them as ``{{ total | money: 'EUR' }}``,
  ``{{ order.shipped_at | format_date: 'long' }}``, ``{{ x | format_datetime: 'd MMM y' }}``;
- locale and timezone come from the ``contact`` mapping passed to ``render`` (``locale``: BCP 47,
  ``-`` or ``_``; ``timezone``: IANA name). They are read from the render globals, not the
  template's own variables, so a ``{% for contact in ... %}`` loop cannot change whose locale is
  used. A locale Babel does not know falls back to its language (``fr-XX`` -> ``fr``), then to
  ``en``; an unknown timezone falls back to UTC. A contact's bad profile field must not stop
  their message, so these fall back quietly instead of raising;
- parsed locales and timezones are cached (filters run once per recipient, so the same few
  values are parsed over and over); the caches are bounded because the values are user data;
- money is formatted from a ``Decimal`` (floats go through ``str`` first) so 0.1 + 0.2 style
  binary noise never shows; the currency is the argument, else ``workspace.currency``, else USD,
  and must be an ISO 4217 code Babel knows: a typo would otherwise print as e.g. "EUT12.50";
- a datetime without an offset (naive, or an ISO string without ``Z``/offset) is UTC, because
  that is what Junction stores; epoch numbers are seconds. A value with no time part (a ``date``
  or ``"2026-03-29"``) is a calendar day: ``format_date`` shows it unshifted (a birthday stays on
  its day in every timezone) and ``format_datetime`` shows midnight of that day for the contact;
- an absent value (nil, undefined, blank string) renders as nothing, as Liquid's own filters do;
  anything else that cannot be read raises ``FilterValueError`` (bad input) or
  ``FilterArgumentError`` (bad currency or format) naming the filter and the value, so a
  marketer's preview shows the fix instead of a message going out with a wrong amount or date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo

import liquid
from babel import Locale, UnknownLocaleError
from babel.dates import format_date as babel_format_date
from babel.dates import format_datetime as babel_format_datetime
from babel.numbers import format_currency, normalize_currency
from liquid.exceptions import FilterArgumentError, FilterValueError
from liquid.filter import with_context
from liquid.undefined import is_undefined

__all__ = ["format_date", "format_datetime", "money", "register"]

DEFAULT_LOCALE: Final = "en"
DEFAULT_CURRENCY: Final = "USD"
DEFAULT_FORMAT: Final = "medium"
# Babel's named formats; anything else is taken as a CLDR pattern such as 'd MMM y'.
NAMED_FORMATS: Final = frozenset({"short", "medium", "long", "full"})
# Enough distinct values for a large audience's locales and timezones, small enough that a
# flood of junk profile values cannot grow memory without bound.
CACHE_SIZE: Final = 1024

# "1e999999999" is a valid Decimal whose formatting would write a billion digits; no real
# amount of money has more than 18.
MAX_AMOUNT_DIGITS: Final = 18

UTC_ZONE: Final[tzinfo] = UTC


def register(env: liquid.Environment) -> None:
    """Add Junction's ``money``, ``format_date`` and ``format_datetime`` filters to ``env``."""
    env.add_filter("money", money)
    env.add_filter("format_date", format_date)
    env.add_filter("format_datetime", format_datetime)


@with_context
def money(value: object, currency: object = None, *, context: liquid.RenderContext) -> str:
    """``{{ amount | money }}`` / ``{{ amount | money: 'EUR' }}``: the amount in the contact's
    locale, in the given currency (default ``workspace.currency``, else USD)."""
    if _absent(value):
        return ""
    amount = _to_decimal(value)
    code = _currency(currency, context)
    return format_currency(amount, code, locale=_contact_locale(context))


@with_context
def format_date(value: object, fmt: object = None, *, context: liquid.RenderContext) -> str:
    """``{{ when | format_date: 'long' }}``: the day, as the contact's calendar shows it."""
    if _absent(value):
        return ""
    pattern = _format(fmt, "format_date")
    when = _to_datetime(value, "format_date")
    day = when.astimezone(_contact_zone(context)).date() if isinstance(when, datetime) else when
    try:
        return babel_format_date(day, pattern, locale=_contact_locale(context))
    except (ValueError, KeyError, AttributeError) as err:
        # AttributeError: a time field ('HH', 'a') in a date pattern.
        raise _bad_pattern("format_date", pattern, err) from err


@with_context
def format_datetime(value: object, fmt: object = None, *, context: liquid.RenderContext) -> str:
    """``{{ when | format_datetime: 'short' }}``: date and time on the contact's clock."""
    if _absent(value):
        return ""
    pattern = _format(fmt, "format_datetime")
    zone = _contact_zone(context)
    when = _to_datetime(value, "format_datetime")
    if isinstance(when, datetime):
        moment = when.astimezone(zone)
    else:
        moment = datetime(when.year, when.month, when.day, tzinfo=zone)
    try:
        return babel_format_datetime(moment, pattern, tzinfo=zone, locale=_contact_locale(context))
    except (ValueError, KeyError) as err:
        raise _bad_pattern("format_datetime", pattern, err) from err


# --- the recipient, read from the render context ---------------------------------------------


def _global_mapping(context: liquid.RenderContext, name: str) -> Mapping[str, object]:
    value = context.globals.get(name)
    return value if isinstance(value, Mapping) else {}


def _contact_locale(context: liquid.RenderContext) -> Locale:
    value = _global_mapping(context, "contact").get("locale")
    return _locale(value if isinstance(value, str) else DEFAULT_LOCALE)


def _contact_zone(context: liquid.RenderContext) -> tzinfo:
    value = _global_mapping(context, "contact").get("timezone")
    return _zone(value) if isinstance(value, str) else UTC_ZONE


@lru_cache(maxsize=CACHE_SIZE)
def _locale(tag: str) -> Locale:
    tag = tag.strip().replace("_", "-")
    language = tag.split("-", 1)[0]
    for candidate in (tag, language):
        try:
            return Locale.parse(candidate, sep="-")
        except (ValueError, TypeError, UnknownLocaleError):
            continue
    return Locale.parse(DEFAULT_LOCALE)


@lru_cache(maxsize=CACHE_SIZE)
def _zone(name: str) -> tzinfo:
    try:
        return ZoneInfo(name.strip())
    # ZoneInfoNotFoundError is a KeyError; a directory name ("America") is an OSError; a path
    # outside the zone database ("../x", "") is a ValueError.
    except (KeyError, OSError, ValueError):
        return UTC_ZONE


# --- reading values and arguments -------------------------------------------------------------


def _absent(value: object) -> bool:
    return value is None or is_undefined(value) or (isinstance(value, str) and not value.strip())


def _show(value: object) -> str:
    # Values can be long (or personal); enough to find the culprit in the template.
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _to_decimal(value: object) -> Decimal:
    amount: Decimal | None = None
    if isinstance(value, bool):  # bool is an int, but True is not an amount
        amount = None
    elif isinstance(value, Decimal | int):
        amount = Decimal(value)
    elif isinstance(value, float):
        amount = Decimal(str(value)) if math.isfinite(value) else None
    elif isinstance(value, str):
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            amount = None
    if amount is None or not amount.is_finite():
        raise FilterValueError(
            f"money: expected a number, got {_show(value)} ({type(value).__name__})",
            token=None,
        )
    if amount.adjusted() >= MAX_AMOUNT_DIGITS:
        raise FilterValueError(
            f"money: {_show(value)} is too large to be an amount of money", token=None
        )
    return amount


def _currency(currency: object, context: liquid.RenderContext) -> str:
    source = "argument"
    if _absent(currency):
        currency = _global_mapping(context, "workspace").get("currency")
        source = "workspace.currency"
        if _absent(currency):
            return DEFAULT_CURRENCY
    code = _known_currency(currency.strip()) if isinstance(currency, str) else None
    if code is None:
        raise FilterArgumentError(
            f"money: unknown currency code {_show(currency)} ({source}); "
            "expected an ISO 4217 code such as 'EUR'",
            token=None,
        )
    return code


@lru_cache(maxsize=CACHE_SIZE)
def _known_currency(code: str) -> str | None:
    return normalize_currency(code)


def _format(fmt: object, name: str) -> str:
    if _absent(fmt):
        return DEFAULT_FORMAT
    if not isinstance(fmt, str):
        raise FilterArgumentError(
            f"{name}: expected a format such as 'long' or 'd MMM y', got {_show(fmt)}",
            token=None,
        )
    named = fmt.strip().lower()
    return named if named in NAMED_FORMATS else fmt


def _bad_pattern(name: str, pattern: str, err: Exception) -> FilterArgumentError:
    # Babel reports a time field in a date-only pattern as a bare AttributeError ("'date' object
    # has no attribute 'hour'"), which says nothing to whoever wrote the template.
    reason = "it has time fields: use format_datetime" if isinstance(err, AttributeError) else err
    return FilterArgumentError(
        f"{name}: cannot format with {_show(pattern)} ({reason}); use short, medium, long, full "
        "or a CLDR date pattern such as 'd MMM y'",
        token=None,
    )


def _to_datetime(value: object, name: str) -> datetime | date:
    """An aware datetime (naive ones are UTC), or a plain date for a value with no time part."""
    when: datetime | date | None = None
    hint = ""
    if isinstance(value, date):  # datetime included
        when = value
    elif isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        try:
            when = datetime.fromtimestamp(float(value), tz=UTC)
        except (OverflowError, OSError, ValueError):
            hint = " (epoch out of range: it must be seconds, not milliseconds)"
    elif isinstance(value, str):
        when = _parse_iso(value.strip())
    if when is None:
        raise FilterValueError(
            f"{name}: cannot read {_show(value)} as a date{hint}; expected an ISO 8601 string "
            "such as '2026-03-29T14:30:00Z', a date or datetime, or epoch seconds",
            token=None,
        )
    if isinstance(when, datetime) and when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when


def _parse_iso(text: str) -> datetime | date | None:
    # date.fromisoformat takes only a day ("2026-03-29"), never a time, so it tells the two apart.
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    return None
