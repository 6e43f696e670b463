"""API keys and keyed hashes.

A key looks like ``jk_7fQ2xW9a_<43 random characters>``: ``jk_`` says what it is, the next
eight characters are its public prefix (shown in listings, safe to log), the rest is secret.
Only an HMAC-SHA256 of the whole key, keyed with the installation's secret, is stored.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

KEY_MARK = "jk_"
_ALPHABET = string.ascii_letters + string.digits


def generate_api_key() -> str:
    public = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    return f"{KEY_MARK}{public}_{secrets.token_urlsafe(32)}"


def key_prefix(key: str) -> str:
    """The part of a key that may be shown: ``jk_7fQ2xW9a``."""
    return key[: len(KEY_MARK) + 8]


def keyed_hash(secret: str, value: str) -> str:
    return hmac.new(secret.encode(), value.encode(), hashlib.sha256).hexdigest()


def identity_hash(secret: str, workspace_id: int, kind: str, value: str) -> str:
    """The hash a suppression keeps of an erased person's id (kind: "user" or "anonymous")."""
    return keyed_hash(secret, f"{workspace_id}:{kind}:{value}")
