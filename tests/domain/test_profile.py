"""Reserved traits become addresses and profile fields."""

from __future__ import annotations

import pytest

from junction.domain.addresses import check_web_push_subscription, normalize_phone
from junction.domain.profile import read_profile_fields


def test_reserved_traits_are_normalised() -> None:
    fields, errors = read_profile_fields(
        {
            "email": " Ada@Example.COM ",
            "phone": "06 12 34 56 78",
            "country": "fr",
            "timezone": "Europe/Paris",
            "locale": "fr_ca",
            "plan": "pro",
        }
    )
    assert errors == []
    assert fields.email == "Ada@example.com"
    assert fields.phone is not None and fields.phone.e164 == "+33612345678"
    assert fields.phone.country == "FR"
    assert (fields.timezone, fields.locale, fields.country) == ("Europe/Paris", "fr-CA", "FR")


def test_a_phone_in_international_form_needs_no_country() -> None:
    phone = normalize_phone("+1 (415) 555-2671")
    assert (phone.e164, phone.country) == ("+14155552671", "US")


@pytest.mark.parametrize(
    ("traits", "field"),
    [
        ({"email": "ada@"}, "traits.email"),
        ({"phone": "0612"}, "traits.phone"),
        ({"phone": "06 12 34 56 78"}, "traits.phone"),  # no country to read it in
        ({"phone": ["+33612345678"]}, "traits.phone"),
        ({"timezone": "Europe/Pariss"}, "traits.timezone"),
        ({"locale": "french please"}, "traits.locale"),
        ({"country": "France"}, "traits.country"),
        ({"email": 5}, "traits.email"),
    ],
)
def test_each_bad_reserved_trait_is_named(traits: dict, field: str) -> None:
    fields, errors = read_profile_fields(traits)
    assert [e.field for e in errors] == [field]
    assert fields.email is None and fields.phone is None


def test_empty_reserved_traits_are_ignored() -> None:
    fields, errors = read_profile_fields({"email": "", "phone": None})
    assert errors == [] and fields.email is None and fields.phone is None


def test_a_browser_push_subscription_is_checked() -> None:
    p256dh = (
        "BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM"
    )
    auth = "tBHItJI5svbpez7KI4CCXg"
    assert check_web_push_subscription("https://fcm.googleapis.com/fcm/send/x", p256dh, auth) == []
    problems = dict(check_web_push_subscription("http://push.example/x", "AAAA", "short"))
    assert set(problems) == {
        "subscription.endpoint",
        "subscription.keys.p256dh",
        "subscription.keys.auth",
    }
