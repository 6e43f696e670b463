"""The words and the page shell of the hosted pages (preference center, unsubscribe), per
language. A page speaks the contact's language when we have it (``fr-FR`` → ``fr``), else
the browser's first one we have, else English. Topic names are the workspace's own words and
are shown as written."""

from __future__ import annotations

import html

LANGUAGES = ("en", "fr")
DEFAULT = "en"

TEXT: dict[str, dict[str, str]] = {
    "en": {
        "center.title": "Your communication preferences",
        "center.intro": "Choose what we may send you, and where.",
        "center.none": "There is nothing to choose yet.",
        "center.topics": "Topics",
        "center.global": "Unsubscribe from all marketing",
        "center.global_on": "Unsubscribe from all marketing on {channel}",
        "center.save": "Save my preferences",
        "center.saved": "Saved. Your preferences are up to date.",
        "invalid.title": "This link is invalid or has expired",
        "invalid.body": "Please use the latest link from one of our messages.",
        "cross_site.title": "This form was sent from another site",
        "cross_site.body": "Open the link from your message and save your choices there.",
        "unsubscribe.title": "Unsubscribe",
        "unsubscribe.ask": "Unsubscribe from {topic} {messages}?",
        "unsubscribe.ask_all": "Unsubscribe from all marketing {messages}?",
        "unsubscribe.button": "Unsubscribe",
        "unsubscribe.done": "You are unsubscribed from {topic} {messages}.",
        "unsubscribe.done_all": "You are unsubscribed from all marketing {messages}.",
        "unsubscribe.manage": "Manage all your preferences",
    },
    "fr": {
        "center.title": "Vos préférences de communication",
        "center.intro": "Choisissez ce que nous pouvons vous envoyer, et par quel canal.",
        "center.none": "Il n'y a encore rien à choisir.",
        "center.topics": "Sujets",
        "center.global": "Se désabonner de tout le marketing",
        "center.global_on": "Se désabonner de tout le marketing par {channel}",
        "center.save": "Enregistrer mes préférences",
        "center.saved": "Enregistré. Vos préférences sont à jour.",
        "invalid.title": "Ce lien n'est pas valide ou a expiré",
        "invalid.body": "Utilisez le lien le plus récent reçu dans l'un de nos messages.",
        "cross_site.title": "Ce formulaire a été envoyé depuis un autre site",
        "cross_site.body": "Ouvrez le lien reçu dans votre message et enregistrez vos choix là.",
        "unsubscribe.title": "Se désabonner",
        "unsubscribe.ask": "Se désabonner des {messages} « {topic} » ?",
        "unsubscribe.ask_all": "Se désabonner de tous les {messages} marketing ?",
        "unsubscribe.button": "Me désabonner",
        "unsubscribe.done": "Vous êtes désabonné(e) des {messages} « {topic} ».",
        "unsubscribe.done_all": "Vous êtes désabonné(e) de tous les {messages} marketing.",
        "unsubscribe.manage": "Gérer toutes vos préférences",
    },
}

CHANNELS: dict[str, dict[str, str]] = {
    "en": {
        "email": "Email",
        "sms": "SMS",
        "voice": "Voice calls",
        "push": "Push notifications",
        "web_push": "Browser notifications",
        "telegram": "Telegram",
        "whatsapp": "WhatsApp",
        "messenger": "Messenger",
        "in_app": "In-app messages",
        "content_card": "Content cards",
        "webhook": "Webhook",
    },
    "fr": {
        "email": "E-mail",
        "sms": "SMS",
        "voice": "Appels vocaux",
        "push": "Notifications push",
        "web_push": "Notifications du navigateur",
        "telegram": "Telegram",
        "whatsapp": "WhatsApp",
        "messenger": "Messenger",
        "in_app": "Messages dans l'application",
        "content_card": "Cartes de contenu",
        "webhook": "Webhook",
    },
}

# What one receives on a channel, in the plural: "Newsletter emails".
MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "email": "emails",
        "sms": "text messages",
        "voice": "calls",
        "push": "push notifications",
        "web_push": "browser notifications",
        "in_app": "in-app messages",
    },
    "fr": {
        "email": "e-mails",
        "sms": "SMS",
        "voice": "appels",
        "push": "notifications push",
        "web_push": "notifications du navigateur",
        "in_app": "messages dans l'application",
    },
}
_OTHER_MESSAGES = {"en": "{channel} messages", "fr": "messages {channel}"}


def language(locale: str | None, accept_language: str | None = None) -> str:
    """The language to speak: the contact's, else the browser's first we have, else English."""
    wanted = [locale or ""] + [
        part.split(";")[0].strip() for part in (accept_language or "").split(",")
    ]
    for tag in wanted:
        primary = tag.replace("_", "-").split("-")[0].lower()
        if primary in LANGUAGES:
            return primary
    return DEFAULT


def text(lang: str, key: str, **values: str) -> str:
    """The text, HTML-escaped, with ``values`` (escaped too) put in."""
    template = TEXT.get(lang, TEXT[DEFAULT]).get(key) or TEXT[DEFAULT][key]
    return html.escape(template).format(**{k: html.escape(v) for k, v in values.items()})


def channel_name(lang: str, channel: str) -> str:
    return CHANNELS.get(lang, CHANNELS[DEFAULT]).get(channel, channel)


def messages_on(lang: str, channel: str) -> str:
    found = MESSAGES.get(lang, MESSAGES[DEFAULT]).get(channel)
    return found or _OTHER_MESSAGES.get(lang, _OTHER_MESSAGES[DEFAULT]).format(
        channel=channel_name(lang, channel)
    )


# Hosted pages run no script at all: the policy forbids it whatever a topic name holds, and
# forms may only post back to Junction itself.
PAGE_HEADERS = {
    "Cache-Control": "no-store, private",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    # The token is in the URL: never hand it to another site as a Referer.
    "Referrer-Policy": "same-origin",
}
SHELL = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>body{{font-family:system-ui,-apple-system,sans-serif;margin:0 auto;max-width:40rem;
padding:1rem 1.25rem;line-height:1.5;color:#1b1b1b;overflow-wrap:anywhere}}
fieldset{{border:1px solid #d5d9e0;border-radius:.5rem;margin:0 0 1rem;padding:.5rem 1rem}}
legend{{font-weight:600;padding:0 .25rem}}
label{{display:flex;gap:.6rem;align-items:center;padding:.45rem 0;min-height:2rem}}
input[type=checkbox]{{width:1.25rem;height:1.25rem}}
.description{{color:#4a5160;margin:.25rem 0}}
.notice{{background:#e5f5e8;border-radius:.5rem;padding:.75rem 1rem}}
a.button,button{{display:inline-block;padding:.75rem 1.25rem;border-radius:.5rem;border:0;
font:inherit;background:#1f4fd1;color:#fff;text-decoration:none}}</style>
</head><body>
{body}
</body></html>
"""


def shell(lang: str, title: str, body: str) -> str:
    """A whole page; ``title`` is escaped already (see :func:`text`), ``body`` is HTML."""
    return SHELL.format(lang=html.escape(lang), title=title, body=body)
