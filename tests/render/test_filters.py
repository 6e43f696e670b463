"""Liquid money and date filters: real templates rendered for contacts in different places."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import liquid
import pytest
from liquid.exceptions import FilterArgumentError, FilterValueError

from junction.render.filters import register

NNBSP = "\u202f"  # narrow no-break space: CLDR puts it before AM/PM and in French thousands
NBSP = "\xa0"  # no-break space: between amount and currency sign in fr/de


@pytest.fixture(scope="module")
def env() -> liquid.Environment:
    env = liquid.Environment()
    register(env)
    return env


def render(env: liquid.Environment, source: str, **data: Any) -> str:
    return env.from_string(source).render(**data)


# --- money -------------------------------------------------------------------------------------


def test_money_follows_contact_locale(env: liquid.Environment) -> None:
    src = "{{ 12.5 | money: 'EUR' }}"
    assert render(env, src, contact={"locale": "en"}) == "€12.50"
    assert render(env, src, contact={"locale": "fr"}) == f"12,50{NBSP}€"
    assert render(env, src, contact={"locale": "de"}) == f"12,50{NBSP}€"


def test_money_grouping_differs_by_locale(env: liquid.Environment) -> None:
    src = "{{ 1234.5 | money: 'EUR' }}"
    assert render(env, src, contact={"locale": "en"}) == "€1,234.50"
    assert render(env, src, contact={"locale": "fr"}) == f"1{NNBSP}234,50{NBSP}€"
    assert render(env, src, contact={"locale": "de-DE"}) == f"1.234,50{NBSP}€"


def test_locale_accepts_either_separator(env: liquid.Environment) -> None:
    src = "{{ 19.99 | money: 'BRL' }}"
    assert render(env, src, contact={"locale": "pt-BR"}) == f"R${NBSP}19,99"
    assert render(env, src, contact={"locale": "pt_BR"}) == f"R${NBSP}19,99"


def test_currency_defaults_to_workspace_then_usd(env: liquid.Environment) -> None:
    src = "{{ 5 | money }}"
    assert render(env, src, contact={"locale": "en"}, workspace={"currency": "GBP"}) == "£5.00"
    assert render(env, src, contact={"locale": "en"}) == "$5.00"
    assert render(env, src) == "$5.00"
    # An explicit argument wins over the workspace's currency.
    assert render(env, "{{ 5 | money: 'EUR' }}", workspace={"currency": "GBP"}) == "€5.00"


def test_money_accepts_numeric_inputs(env: liquid.Environment) -> None:
    src = "{{ x | money }}"
    assert render(env, src, x=7) == "$7.00"
    assert render(env, src, x=Decimal("1234.567")) == "$1,234.57"
    assert render(env, src, x=" 42.10 ") == "$42.10"
    assert render(env, src, x=0.1 + 0.2) == "$0.30"
    assert render(env, src, x=-3) == "-$3.00"


def test_money_uses_currency_digits(env: liquid.Environment) -> None:
    assert render(env, "{{ 1500 | money: 'JPY' }}", contact={"locale": "en"}) == "¥1,500"


def test_money_absent_value_renders_nothing(env: liquid.Environment) -> None:
    assert render(env, "[{{ missing | money }}]") == "[]"
    assert render(env, "[{{ x | money }}]", x=None) == "[]"


def test_money_non_numeric_raises(env: liquid.Environment) -> None:
    with pytest.raises(FilterValueError, match="money: expected a number, got 'abc'"):
        render(env, "{{ 'abc' | money }}")
    with pytest.raises(FilterValueError, match="expected a number"):
        render(env, "{{ x | money }}", x=True)
    with pytest.raises(FilterValueError, match="expected a number"):
        render(env, "{{ x | money }}", x=float("nan"))


def test_money_refuses_absurd_amount(env: liquid.Environment) -> None:
    with pytest.raises(FilterValueError, match="too large"):
        render(env, "{{ '1e999999999' | money }}")


def test_money_unknown_currency_raises(env: liquid.Environment) -> None:
    with pytest.raises(FilterArgumentError, match="unknown currency code 'EUT'"):
        render(env, "{{ 1 | money: 'EUT' }}")
    with pytest.raises(FilterArgumentError, match=r"'nope' \(workspace.currency\)"):
        render(env, "{{ 1 | money }}", workspace={"currency": "nope"})


def test_money_lowercase_currency_is_normalised(env: liquid.Environment) -> None:
    assert render(env, "{{ 1 | money: 'eur' }}") == "€1.00"


# --- locale and timezone fallbacks -------------------------------------------------------------


def test_invalid_locale_falls_back_to_en(env: liquid.Environment) -> None:
    src = "{{ 12.5 | money: 'EUR' }}"
    for bad in ("xx-YY", "", "123", "not a locale", 42):
        assert render(env, src, contact={"locale": bad}) == "€12.50"


def test_unknown_region_keeps_language(env: liquid.Environment) -> None:
    assert render(env, "{{ 12.5 | money: 'EUR' }}", contact={"locale": "fr-XX"}) == f"12,50{NBSP}€"


def test_invalid_timezone_falls_back_to_utc(env: liquid.Environment) -> None:
    src = "{{ t | format_datetime: 'long' }}"
    t = "2026-03-29T01:30:00Z"
    expected = f"March 29, 2026, 1:30:00{NNBSP}AM UTC"
    for bad in ("Mars/Base", "America", "../etc/passwd", "", 5):
        assert render(env, src, t=t, contact={"timezone": bad}) == expected


def test_loop_variable_named_contact_does_not_change_locale(env: liquid.Environment) -> None:
    src = "{% for contact in others %}{{ 1 | money: 'EUR' }}{% endfor %}"
    assert render(env, src, others=[{"locale": "fr"}], contact={"locale": "en"}) == "€1.00"


# --- dates and times ---------------------------------------------------------------------------


def test_utc_time_shown_in_contact_timezone(env: liquid.Environment) -> None:
    src = "{{ t | format_datetime }}"
    t = "2026-03-29T01:30:00Z"
    ny = render(env, src, t=t, contact={"timezone": "America/New_York"})
    assert ny == f"Mar 28, 2026, 9:30:00{NNBSP}PM"
    paris = render(env, src, t=t, contact={"timezone": "Europe/Paris", "locale": "fr"})
    assert paris == "29 mars 2026, 03:30:00"


def test_dst_jump_in_paris(env: liquid.Environment) -> None:
    # Paris moves from +01:00 to +02:00 at 01:00 UTC on 2026-03-29.
    src = "{{ t | format_datetime: 'HH:mm' }}"
    paris = {"timezone": "Europe/Paris"}
    assert render(env, src, t="2026-03-29T00:30:00Z", contact=paris) == "01:30"
    assert render(env, src, t="2026-03-29T01:30:00Z", contact=paris) == "03:30"
    long = "{{ t | format_datetime: 'long' }}"
    assert render(env, long, t="2026-03-29T00:30:00Z", contact=paris) == (
        f"March 29, 2026, 1:30:00{NNBSP}AM +0100"
    )
    assert render(env, long, t="2026-03-29T01:30:00Z", contact=paris) == (
        f"March 29, 2026, 3:30:00{NNBSP}AM +0200"
    )


def test_date_formats(env: liquid.Environment) -> None:
    t = "2026-03-29T12:00:00Z"
    en = {"locale": "en"}
    fr = {"locale": "fr"}
    assert render(env, "{{ t | format_date: 'short' }}", t=t, contact=en) == "3/29/26"
    assert render(env, "{{ t | format_date: 'long' }}", t=t, contact=en) == "March 29, 2026"
    assert render(env, "{{ t | format_date }}", t=t, contact=en) == "Mar 29, 2026"
    assert render(env, "{{ t | format_date: 'full' }}", t=t, contact=fr) == "dimanche 29 mars 2026"
    assert render(env, "{{ t | format_date: 'd MMM y' }}", t=t, contact=fr) == "29 mars 2026"
    assert render(env, "{{ t | format_date: 'Long' }}", t=t, contact=en) == "March 29, 2026"


def test_datetime_short_format(env: liquid.Environment) -> None:
    src = "{{ t | format_datetime: 'short' }}"
    assert render(env, src, t="2026-03-29T14:05:00Z") == f"3/29/26, 2:05{NNBSP}PM"
    assert render(env, src, t="2026-03-29T14:05:00Z", contact={"locale": "fr"}) == (
        "29/03/2026 14:05"
    )


def test_date_crosses_midnight_into_contact_day(env: liquid.Environment) -> None:
    src = "{{ t | format_date: 'short' }}"
    t = "2026-03-29T02:00:00Z"
    assert render(env, src, t=t, contact={"timezone": "America/New_York"}) == "3/28/26"
    assert render(env, src, t=t, contact={"timezone": "Asia/Tokyo"}) == "3/29/26"


def test_offset_in_input_is_respected(env: liquid.Environment) -> None:
    src = "{{ t | format_datetime: 'HH:mm' }}"
    assert render(env, src, t="2026-03-29T09:30:00+05:30") == "04:00"


def test_naive_input_is_utc(env: liquid.Environment) -> None:
    src = "{{ t | format_datetime: 'HH:mm' }}"
    ny = {"timezone": "America/New_York"}
    assert render(env, src, t="2026-07-01T12:00:00", contact=ny) == "08:00"
    assert render(env, src, t=datetime(2026, 7, 1, 12, 0), contact=ny) == "08:00"
    assert render(env, src, t=datetime(2026, 7, 1, 12, 0, tzinfo=UTC), contact=ny) == "08:00"


def test_epoch_seconds(env: liquid.Environment) -> None:
    src = "{{ t | format_datetime: 'y-MM-dd HH:mm' }}"
    assert render(env, src, t=1774747800) == "2026-03-29 01:30"
    assert render(env, src, t=1774747800.0, contact={"timezone": "Europe/Paris"}) == (
        "2026-03-29 03:30"
    )


def test_calendar_date_is_not_shifted(env: liquid.Environment) -> None:
    ny = {"timezone": "America/New_York"}
    src = "{{ t | format_date: 'long' }}"
    assert render(env, src, t="2026-03-29", contact=ny) == "March 29, 2026"
    assert render(env, src, t=date(2026, 3, 29), contact=ny) == "March 29, 2026"
    assert render(env, "{{ t | format_datetime }}", t="2026-03-29", contact=ny) == (
        f"Mar 29, 2026, 12:00:00{NNBSP}AM"
    )


def test_absent_date_renders_nothing(env: liquid.Environment) -> None:
    assert render(env, "[{{ missing | format_date }}|{{ '' | format_datetime }}]") == "[|]"


def test_unparsable_date_raises(env: liquid.Environment) -> None:
    with pytest.raises(FilterValueError, match="format_date: cannot read 'soon' as a date"):
        render(env, "{{ 'soon' | format_date }}")
    with pytest.raises(FilterValueError, match="format_datetime: cannot read '2026-13-45'"):
        render(env, "{{ '2026-13-45' | format_datetime }}")
    with pytest.raises(FilterValueError, match="seconds, not milliseconds"):
        render(env, "{{ t | format_datetime }}", t=1774747800000)
    with pytest.raises(FilterValueError, match="cannot read"):
        render(env, "{{ t | format_date }}", t=[2026, 3, 29])


def test_bad_format_argument_raises(env: liquid.Environment) -> None:
    with pytest.raises(FilterArgumentError, match="has time fields: use format_datetime"):
        render(env, "{{ '2026-03-29' | format_date: 'HH:mm' }}")
    with pytest.raises(FilterArgumentError, match="cannot format with 'EEEEEEE'"):
        render(env, "{{ '2026-03-29' | format_datetime: 'EEEEEEE' }}")
    with pytest.raises(FilterArgumentError, match="expected a format"):
        render(env, "{{ '2026-03-29' | format_date: 5 }}")
