"""What Meta's platforms (WhatsApp Cloud API, Messenger) share: the X-Hub-Signature-256 over
a webhook's raw body, and the GET handshake that subscribes a webhook URL."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from junction.errors import InvalidSignature

SIGNATURE_HEADER = "x-hub-signature-256"


def signature(app_secret: str, body: bytes) -> str:
    """The ``X-Hub-Signature-256`` value Meta sends with ``body``."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def check_signature(
    app_secret: str | None, headers: Mapping[str, str], body: bytes, product: str
) -> None:
    """Raise ``InvalidSignature`` unless ``body`` carries Meta's signature for ``app_secret``."""
    if not app_secret:
        raise InvalidSignature(f"configure app_secret to accept {product} webhooks")
    given = next((v for k, v in headers.items() if k.lower() == SIGNATURE_HEADER), None)
    if given is None:
        raise InvalidSignature()
    expected = signature(app_secret, body).encode()
    if not hmac.compare_digest(given.strip().encode("utf-8", "replace"), expected):
        raise InvalidSignature()


def verify_subscription(verify_token: str | None, params: Mapping[str, str], product: str) -> str:
    """Meta's GET handshake: ``hub.challenge`` when the mode is ``subscribe`` and
    ``hub.verify_token`` is the configured one, else ``InvalidSignature``."""
    if not verify_token:
        raise InvalidSignature(f"configure verify_token to subscribe {product} webhooks")
    given = params.get("hub.verify_token")
    if params.get("hub.mode") != "subscribe" or not isinstance(given, str):
        raise InvalidSignature()
    if not hmac.compare_digest(given.encode("utf-8", "replace"), verify_token.encode("utf-8")):
        raise InvalidSignature()
    challenge = params.get("hub.challenge")
    if not isinstance(challenge, str):
        raise InvalidSignature("the handshake carries no hub.challenge")
    return challenge
