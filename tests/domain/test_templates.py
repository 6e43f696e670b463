"""Template definitions: their shape, locale tags and the fallback from one locale to the next."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from junction.domain.templates import (
    TemplateDefinition,
    fallback_chain,
    liquid_fields,
    normalize_locale,
)

EMAIL = {"subject": "Hi", "text": "Hello"}


def definition(**fields: object) -> TemplateDefinition:
    return TemplateDefinition.model_validate({"key": "welcome", **fields})


def test_locale_tags_are_normalised() -> None:
    assert normalize_locale("fr_ca") == "fr-CA"
    assert normalize_locale("zh-hant-tw") == "zh-Hant-TW"
    assert normalize_locale("PT-br") == "pt-BR"


def test_fallback_goes_from_most_to_least_specific_then_default() -> None:
    assert list(fallback_chain("fr-CA")) == ["fr-CA", "fr", None]
    assert list(fallback_chain(None)) == [None]
    assert list(fallback_chain("not a tag!")) == [None]


def test_the_locale_is_chosen_per_channel() -> None:
    template = definition(
        channels={"email": EMAIL, "sms": {"text": "Hello"}},
        locales={"fr": {"channels": {"email": {"subject": "Salut", "text": "Bonjour"}}}},
    )
    assert template.block("email", "fr-CA")[0] == "fr"
    assert template.block("email", "de")[0] is None
    # The French variant has no SMS: a French contact gets the default one.
    assert template.block("sms", "fr-CA") == (None, template.channels.sms)
    assert template.block("voice", "fr") == (None, None)


def test_locale_keys_are_stored_normalised() -> None:
    template = definition(channels={"email": EMAIL}, locales={"fr_ca": {"channels": {}}})
    assert list(template.locales) == ["fr-CA"]


@pytest.mark.parametrize(
    ("fields", "complaint"),
    [
        ({}, "at least one channel"),
        ({"channels": {"email": {"subject": "Hi"}}}, "an email needs html or text"),
        ({"channels": {"whatsapp": {}}}, "text or an approved template"),
        ({"channels": {"fax": {"text": "x"}}}, "Extra inputs are not permitted"),
        ({"kind": "landing", "channels": {"email": EMAIL}}, "needs a page"),
        (
            {"kind": "landing", "page": {"title": "t", "html": "h"}, "channels": {"email": EMAIL}},
            "a page, not channels",
        ),
        ({"channels": {"email": EMAIL}, "page": {"title": "t", "html": "h"}}, "only landing"),
        ({"channels": {"email": EMAIL}, "locales": {"french!": {}}}, "not a locale tag"),
        ({"channels": {"email": EMAIL}, "tracking": {"utm": {"sauce": "x"}}}, "unknown UTM"),
        ({"key": "Has Spaces", "channels": {"email": EMAIL}}, "String should match pattern"),
        ({"channels": {"sms": {"text": "x", "landingPage": "../etc"}}}, "should match pattern"),
    ],
)
def test_bad_definitions_say_what_is_wrong(fields: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        definition(**fields)


def test_every_liquid_string_is_listed_with_its_path() -> None:
    template = definition(
        channels={
            "in_app": {"body": "Hi {{ contact.name }}", "buttons": [{"label": "Go", "url": "u"}]}
        }
    )
    assert template.channels.in_app is not None
    assert dict(liquid_fields(template.channels.in_app, "in_app")) == {
        "in_app.body": "Hi {{ contact.name }}",
        "in_app.buttons[0].label": "Go",
        "in_app.buttons[0].url": "u",
    }


def test_the_schema_comes_from_the_model() -> None:
    schema = TemplateDefinition.model_json_schema(by_alias=True)
    assert schema["required"] == ["key"]
    assert "landingPage" in schema["$defs"]["SmsBlock"]["properties"]
