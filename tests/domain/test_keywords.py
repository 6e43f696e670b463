"""STOP, START and HELP: what counts as one, and the reply each gets."""

from __future__ import annotations

import pytest

from junction.domain.keywords import (
    Keyword,
    classify,
    help_text_in,
    language_of,
    normalise,
    reply_text,
)
from junction.domain.sms import segment

STOP, START, HELP = Keyword.STOP, Keyword.START, Keyword.HELP
SPANISH = {"BAJA": "stop", "ALTO": "stop", "PARAR": "stop"}


@pytest.mark.parametrize(
    ("word", "keyword"),
    [
        ("STOP", STOP),
        ("STOPALL", STOP),
        ("UNSUBSCRIBE", STOP),
        ("CANCEL", STOP),
        ("END", STOP),
        ("QUIT", STOP),
        ("ARRET", STOP),
        ("START", START),
        ("UNSTOP", START),
        ("YES", START),
        ("HELP", HELP),
        ("INFO", HELP),
        ("AIDE", HELP),
    ],
)
def test_every_standard_word_is_its_keyword(word: str, keyword: Keyword) -> None:
    assert classify(word) is keyword
    assert classify(word.lower()) is keyword
    assert classify(word.capitalize()) is keyword


@pytest.mark.parametrize(
    "text",
    [
        "stop",
        "Stop",
        "sToP",
        "  STOP  ",
        "\tstop\n",
        "Stop.",
        "stop!",
        "STOP!!!",
        "stop?",
        '"STOP"',
        "(stop)",
        "stop…",
        "ARRÊT",
        "arrêt",
        "Arrêt !",
        "\uff33\uff34\uff2f\uff30",  # full-width STOP, as some phone keyboards type it
    ],
)
def test_case_spaces_accents_and_punctuation_at_the_ends_do_not_matter(text: str) -> None:
    assert classify(text) is STOP


@pytest.mark.parametrize(
    "text",
    [
        "please stop texting me",
        "stop texting me",
        "STOP ALL",
        "don't stop",
        "stopp",
        "st op",
        "s.t.o.p",
        "unsubscribe me please",
        "help me with my order",
        "yes please",
        "YES!! I want it",
        "",
        "   ",
        "!!!",
        "🛑",
        "STOP 🛑",
    ],
)
def test_a_message_that_merely_contains_a_keyword_is_not_one(text: str) -> None:
    assert classify(text) is None


def test_a_workspace_adds_words_of_its_own() -> None:
    assert classify("Baja", SPANISH) is STOP
    assert classify("¡ALTO!", SPANISH) is STOP
    assert classify("parar", SPANISH) is STOP
    assert classify("baja", None) is None
    assert classify("Ayuda", {"AYUDA": "help", "Sí": "START"}) is HELP
    assert classify("SI", {"AYUDA": "help", "Sí": "START"}) is START  # accents fold both ways


def test_extra_words_never_redefine_a_standard_one_and_bad_ones_are_ignored() -> None:
    assert classify("YES", {"YES": "stop"}) is START
    assert classify("STOP", {"stop": "help"}) is STOP
    assert classify("NEIN", {"NEIN": "maybe"}) is None
    assert classify("please baja", SPANISH) is None


def test_normalise_is_what_is_compared() -> None:
    assert normalise("  Arrêt ! ") == "ARRET"
    assert normalise("¡Baja!") == "BAJA"
    assert normalise("please stop") == "PLEASE STOP"


@pytest.mark.parametrize(
    ("text", "locale", "language"),
    [
        ("ARRÊT", None, "fr"),
        ("aide", "en-US", "fr"),  # the keyword's language wins
        ("STOP", "fr-FR", "fr"),
        ("STOP", "fr_CA", "fr"),
        ("STOP", "FR", "fr"),
        ("STOP", "en-GB", "en"),
        ("STOP", "de-DE", "en"),  # a language we have no reply in
        ("STOP", None, "en"),
        ("STOP", "", "en"),
    ],
)
def test_the_reply_language_comes_from_the_keyword_then_the_contact(
    text: str, locale: str | None, language: str
) -> None:
    assert language_of(text, locale) == language


def test_the_stop_reply_confirms_and_says_how_to_come_back() -> None:
    assert reply_text(STOP, "sms", "Acme", None, "en") == (
        "You're unsubscribed from Acme messages on SMS and will get no more. "
        "Reply START to subscribe again."
    )
    assert reply_text(STOP, "whatsapp", "Acme", None, "en").startswith(
        "You're unsubscribed from Acme messages on WhatsApp"
    )
    french = reply_text(STOP, "sms", "Acme", None, "fr")
    assert french.startswith("Vous êtes désabonné(e) des messages Acme par SMS")
    assert "START" in french


def test_the_start_reply_confirms_and_says_how_to_leave() -> None:
    assert reply_text(START, "sms", "Acme", None, "en") == (
        "You're subscribed again to Acme messages on SMS. Reply STOP to unsubscribe."
    )
    assert reply_text(START, "sms", "Acme", None, "fr") == (
        "Vous êtes de nouveau abonné(e) aux messages Acme par SMS. "
        "Répondez ARRET pour vous désabonner."
    )


def test_help_is_the_workspaces_text_else_a_default() -> None:
    assert reply_text(HELP, "sms", "Acme", "Acme: call 0800 123 456.", "en") == (
        "Acme: call 0800 123 456."
    )
    assert reply_text(HELP, "sms", "Acme", None, "en") == (
        "Acme: reply STOP to unsubscribe. Msg&data rates may apply."
    )
    assert reply_text(HELP, "sms", "Acme", "  ", "en").startswith("Acme: reply STOP")
    assert reply_text(HELP, "sms", "Acme", None, "fr") == (
        "Acme : répondez ARRET pour vous désabonner. "
        "Des frais de messages et de données peuvent s'appliquer."
    )


def test_the_help_text_is_the_workspaces_in_the_language_else_english_else_any() -> None:
    texts = {"en": "Call us.", "fr": "Appelez-nous."}
    assert help_text_in(texts, "fr") == "Appelez-nous."
    assert help_text_in(texts, "en") == "Call us."
    assert help_text_in({"en": "Call us."}, "fr") == "Call us."
    assert help_text_in({"de": "Rufen Sie an."}, "en") == "Rufen Sie an."
    assert help_text_in("Call us.", "fr") == "Call us."
    assert help_text_in({"en": "  "}, "en") is None
    assert help_text_in({}, "en") is None
    assert help_text_in(None, "en") is None


@pytest.mark.parametrize("keyword", list(Keyword))
@pytest.mark.parametrize("language", ["en", "fr"])
def test_every_reply_reads_well_without_a_brand(keyword: Keyword, language: str) -> None:
    text = reply_text(keyword, "sms", None, None, language)
    assert "None" not in text and "{" not in text and not text.startswith((":", " "))
    assert reply_text(keyword, "sms", "  ", None, language) == text


@pytest.mark.parametrize("keyword", list(Keyword))
def test_a_language_we_have_no_reply_in_gets_english(keyword: Keyword) -> None:
    assert reply_text(keyword, "sms", "Acme", None, "de") == reply_text(
        keyword, "sms", "Acme", None, "en"
    )


@pytest.mark.parametrize("keyword", list(Keyword))
def test_replies_are_short_sms(keyword: Keyword) -> None:
    """One segment in English; French accents (ê) take UCS-2, and two segments at most."""
    assert segment(reply_text(keyword, "sms", "Acme Store", None, "en")).segments == 1
    assert segment(reply_text(keyword, "sms", "Acme Store", None, "fr")).segments <= 2
