"""SMS and WhatsApp keywords: STOP, START and HELP, recognised in what a person writes, and
the one reply each requires.

Rules kept here:
- a message is a keyword only when it is the keyword and nothing else (carriers' rule, and
  Twilio's): "please stop texting me" is a message for a person to read, not a STOP;
- before comparing, the text is trimmed, case-folded and its accents folded (ARRÊT is
  ARRET), and punctuation at either end is dropped ("Stop." "stop!" "¡Baja!" count);
- STOP words: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT, ARRET; START words: START,
  UNSTOP, YES; HELP words: HELP, INFO, AIDE;
- a workspace may add words of its own (``{"BAJA": "stop"}``), normalised the same way;
  they extend the list and never redefine a standard word (carriers require those to work
  everywhere); an extra word whose meaning is not stop, start or help is ignored;
- the reply is in French when the keyword is French (ARRET, AIDE), else in the contact's
  language when we have it (en, fr), else in English; a workspace's own help text replaces
  the default HELP reply.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from enum import StrEnum


class Keyword(StrEnum):
    STOP = "stop"
    START = "start"
    HELP = "help"


STANDARD: Mapping[str, Keyword] = {
    **dict.fromkeys(
        ("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "ARRET"), Keyword.STOP
    ),
    **dict.fromkeys(("START", "UNSTOP", "YES"), Keyword.START),
    **dict.fromkeys(("HELP", "INFO", "AIDE"), Keyword.HELP),
}
FRENCH = frozenset({"ARRET", "AIDE"})
LANGUAGES = ("en", "fr")
DEFAULT_LANGUAGE = "en"

CHANNEL_NAMES: Mapping[str, str] = {"sms": "SMS", "whatsapp": "WhatsApp"}

# {brand} is the workspace's brand; {channel} the channel's name as people know it.
REPLIES: Mapping[tuple[Keyword, str], str] = {
    (Keyword.STOP, "en"): (
        "You're unsubscribed from {brand} messages on {channel} and will get no more. "
        "Reply START to subscribe again."
    ),
    (Keyword.STOP, "fr"): (
        "Vous êtes désabonné(e) des messages {brand} par {channel} et n'en recevrez plus. "
        "Répondez START pour vous réabonner."
    ),
    (Keyword.START, "en"): (
        "You're subscribed again to {brand} messages on {channel}. Reply STOP to unsubscribe."
    ),
    (Keyword.START, "fr"): (
        "Vous êtes de nouveau abonné(e) aux messages {brand} par {channel}. "
        "Répondez ARRET pour vous désabonner."
    ),
    (Keyword.HELP, "en"): "{brand}: reply STOP to unsubscribe. Msg&data rates may apply.",
    (Keyword.HELP, "fr"): (
        "{brand} : répondez ARRET pour vous désabonner. "
        "Des frais de messages et de données peuvent s'appliquer."
    ),
}
# The same replies when the workspace has no brand.
UNBRANDED: Mapping[tuple[Keyword, str], str] = {
    (Keyword.STOP, "en"): (
        "You're unsubscribed from our messages on {channel} and will get no more. "
        "Reply START to subscribe again."
    ),
    (Keyword.STOP, "fr"): (
        "Vous êtes désabonné(e) de nos messages par {channel} et n'en recevrez plus. "
        "Répondez START pour vous réabonner."
    ),
    (Keyword.START, "en"): (
        "You're subscribed again to our messages on {channel}. Reply STOP to unsubscribe."
    ),
    (Keyword.START, "fr"): (
        "Vous êtes de nouveau abonné(e) à nos messages par {channel}. "
        "Répondez ARRET pour vous désabonner."
    ),
    (Keyword.HELP, "en"): "Reply STOP to unsubscribe. Msg&data rates may apply.",
    (Keyword.HELP, "fr"): (
        "Répondez ARRET pour vous désabonner. "
        "Des frais de messages et de données peuvent s'appliquer."
    ),
}


def normalise(text: str) -> str:
    """The text as keywords are compared: upper case, accents folded, trimmed of spaces and
    of punctuation at either end."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(c for c in decomposed if not unicodedata.combining(c))
    start, end = 0, len(folded)
    while start < end and _ignorable(folded[start]):
        start += 1
    while end > start and _ignorable(folded[end - 1]):
        end -= 1
    return folded[start:end].upper()


def _ignorable(character: str) -> bool:
    return character.isspace() or unicodedata.category(character).startswith("P")


def classify(text: str, extra: Mapping[str, str] | None = None) -> Keyword | None:
    """The keyword this message is, or None when it is anything else."""
    word = normalise(text)
    if word in STANDARD:
        return STANDARD[word]
    for extra_word, meaning in (extra or {}).items():
        if normalise(extra_word) == word:
            try:
                return Keyword(meaning.strip().casefold())
            except ValueError:
                return None  # a misconfigured word: a message like any other
    return None


def language_of(text: str, locale: str | None) -> str:
    """The language to answer a keyword in: the keyword's own when it is French, else the
    contact's when we speak it, else English."""
    if normalise(text) in FRENCH:
        return "fr"
    spoken = (locale or "").replace("_", "-").split("-")[0].casefold()
    return spoken if spoken in LANGUAGES else DEFAULT_LANGUAGE


def help_text_in(texts: Mapping[str, str] | str | None, language: str) -> str | None:
    """The workspace's help text for a language: in that language, else in English, else in
    any language it was given; None when it gave none."""
    if isinstance(texts, str):
        return texts or None
    texts = {k: v for k, v in (texts or {}).items() if isinstance(v, str) and v.strip()}
    if not texts:
        return None
    return texts.get(language) or texts.get(DEFAULT_LANGUAGE) or next(iter(texts.values()))


def reply_text(
    keyword: Keyword, channel: str, brand: str | None, help_text: str | None, language: str
) -> str:
    """The one reply a keyword requires, in ``language`` (English when not one we have)."""
    if keyword is Keyword.HELP and help_text and help_text.strip():
        return help_text.strip()
    language = language if language in LANGUAGES else DEFAULT_LANGUAGE
    brand = brand.strip() if brand else None
    replies = REPLIES if brand else UNBRANDED
    return replies[keyword, language].format(
        brand=brand, channel=CHANNEL_NAMES.get(channel, channel)
    )
