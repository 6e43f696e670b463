"""Adapters by name. Provider modules are imported only when first used, so a deployment
never loads (or needs the dependencies of) a provider it does not use."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from junction.channels.base import Adapter, ProviderConfig
from junction.errors import FieldError, InvalidInput

# name → "module:Class". Adding a provider adds one line here and one module.
PROVIDERS: Mapping[str, str] = {
    "apns": "junction.channels.apns:ApnsAdapter",
    "capture": "junction.channels.capture:CaptureAdapter",
    "fcm": "junction.channels.fcm:FcmAdapter",
    "messenger": "junction.channels.messenger:MessengerAdapter",
    "smtp": "junction.channels.smtp:SmtpAdapter",
    "telegram": "junction.channels.telegram:TelegramAdapter",
    "twilio_sms": "junction.channels.twilio:TwilioSmsAdapter",
    "twilio_voice": "junction.channels.twilio:TwilioVoiceAdapter",
    "webhook": "junction.channels.webhook:WebhookAdapter",
    "whatsapp": "junction.channels.whatsapp:WhatsAppAdapter",
    "webpush": "junction.channels.webpush:WebPushAdapter",
}


def adapter_class(name: str) -> type[Adapter]:
    try:
        module_name, _, class_name = PROVIDERS[name].partition(":")
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise InvalidInput(
            FieldError("provider", f"unknown provider {name!r}; known: {known}")
        ) from None
    cls: type[Adapter] = getattr(importlib.import_module(module_name), class_name)
    return cls


def validate_config(name: str, config: Mapping[str, Any] | None) -> ProviderConfig:
    """The provider's configuration, checked by its own schema; errors name ``config.<field>``."""
    cls = adapter_class(name)
    try:
        parsed: ProviderConfig = cls.Config.model_validate(config or {})
    except ValidationError as error:
        raise InvalidInput(
            [
                FieldError("config." + ".".join(str(p) for p in item["loc"]), item["msg"])
                for item in error.errors()
            ]
        ) from None
    return parsed


def build(name: str, config: Mapping[str, Any] | None = None) -> Adapter:
    """An adapter with its configuration validated by its own schema."""
    return adapter_class(name)(validate_config(name, config))  # type: ignore[call-arg]


def _hide(value: Any) -> Any:
    if isinstance(value, dict):  # e.g. extra headers: hide each value, keep the names
        return {key: _hide(inner) for key, inner in value.items()}
    return "********" + str(value)[-4:] if value else value


def masked(name: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration as the API shows it: secret fields never in clear."""
    secret = adapter_class(name).Config.secret_fields
    return {key: _hide(value) if key in secret else value for key, value in config.items()}


def unmasked(name: str, given: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A configuration sent back as it was shown (secrets masked) keeps the stored secrets:
    editing one field of a provider must not overwrite its key with asterisks."""
    secret = adapter_class(name).Config.secret_fields
    return {
        key: stored[key]
        if key in secret and key in stored and value == _hide(stored[key])
        else value
        for key, value in given.items()
    }
