"""The contract every channel adapter keeps, the same tests over each, against its real or
fake provider: it describes itself, a send either returns a result or raises exactly one of
the three outcomes (retry later, permanent failure, address invalid), and closing is safe.

Each adapter joins by adding a harness: how to build it against its fake, and how to make
its provider answer each outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from junction.channels import registry
from junction.channels.base import (
    Adapter,
    AddressInvalid,
    Channel,
    OutboundMessage,
    PermanentFailure,
    ProviderConfig,
    RetryLater,
    SendResult,
)
from tests.channels import (
    test_apns,
    test_fcm,
    test_messenger,
    test_smtp,
    test_telegram,
    test_twilio,
    test_webhook,
    test_webpush,
    test_whatsapp,
)
from tests.channels.sending import send
from tests.channels.test_apns import apns, apns_served  # noqa: F401 - fixtures
from tests.channels.test_fcm import fcm, fcm_served  # noqa: F401 - fixtures
from tests.channels.test_smtp import server  # noqa: F401 - fixtures
from tests.channels.test_twilio import served, twilio  # noqa: F401 - fixtures
from tests.channels.test_webhook import receiver  # noqa: F401 - fixtures
from tests.channels.test_webpush import push  # noqa: F401 - fixtures
from tests.fakes.messenger import FakeMessenger
from tests.fakes.telegram import FakeTelegram
from tests.fakes.whatsapp import FakeWhatsApp

OUTCOMES = ("ok", "retry", "permanent", "invalid")


@dataclass
class Harness:
    name: str
    config: dict[str, Any]
    # Script the provider for an outcome; returns the message that meets it.
    prepare: Callable[[str], OutboundMessage]

    def adapter(self) -> Adapter:
        return registry.build(self.name, self.config)


def smtp_harness(request: pytest.FixtureRequest) -> Harness:
    controller = request.getfixturevalue("server")
    recipient = {"ok": "ada", "retry": "later", "permanent": "full", "invalid": "bounce"}
    return Harness(
        "smtp",
        test_smtp.config(controller),
        lambda outcome: test_smtp.outbound(to=f"{recipient[outcome]}@x.io"),
    )


def twilio_harness(name: str, make: Callable[[str], OutboundMessage]) -> Callable[..., Harness]:
    def build(request: pytest.FixtureRequest) -> Harness:
        fake = request.getfixturevalue("twilio")

        def prepare(outcome: str) -> OutboundMessage:
            number = {
                "ok": "+33612345678",
                "retry": "+33612345679",
                "permanent": "+33612345670",
                "invalid": "+33612345671",
            }[outcome]
            if outcome == "retry":
                fake.fail_next(1, status=503)
            elif outcome == "permanent":
                fake.reject(number, 21408)  # permission to send to that region not enabled
            elif outcome == "invalid":
                fake.reject(number, 21211)  # invalid 'To' number
            return make(number)

        return Harness(name, test_twilio.config(fake), prepare)

    return build


def webhook_harness(request: pytest.FixtureRequest) -> Harness:
    receiver = request.getfixturevalue("receiver")  # noqa: F811

    def prepare(outcome: str) -> OutboundMessage:
        status = {"ok": 200, "retry": 503, "permanent": 400, "invalid": 410}[outcome]
        receiver.script.append(receiver.answer(status))
        return test_webhook.message(receiver.url)

    return Harness("webhook", {"secret": receiver.secret}, prepare)


def webpush_harness(request: pytest.FixtureRequest) -> Harness:
    service = request.getfixturevalue("push")

    def prepare(outcome: str) -> OutboundMessage:
        subscription = service.subscribe()
        if outcome == "retry":
            service.fail_next(1, 503)
        elif outcome == "permanent":
            service.fail_next(1, 413)
        elif outcome == "invalid":
            service.unsubscribe(subscription)
        return test_webpush.message(subscription)

    config = {
        "vapid_private_key": test_webpush.PRIVATE_PEM,
        "vapid_subject": "mailto:ops@example.com",
        "allow_http": True,
    }
    return Harness("webpush", config, prepare)


def apns_harness(request: pytest.FixtureRequest) -> Harness:
    fake = request.getfixturevalue("apns")

    def prepare(outcome: str) -> OutboundMessage:
        token = {"ok": "0a", "retry": "0b", "permanent": "0c", "invalid": "0d"}[outcome] * 32
        if outcome == "retry":
            fake.fail_next(1, status=503)
        elif outcome == "permanent":
            fake.reject(token, "TopicDisallowed")
        elif outcome == "invalid":
            fake.reject(token, "Unregistered")
        return test_apns.push_message(token)

    return Harness("apns", test_apns.config(fake), prepare)


def fcm_harness(request: pytest.FixtureRequest) -> Harness:
    fake = request.getfixturevalue("fcm")

    def prepare(outcome: str) -> OutboundMessage:
        token = f"device-{outcome}"
        if outcome == "retry":
            fake.fail_next(1, status=503)
        elif outcome == "permanent":
            fake.reject(token, "BAD_PAYLOAD")  # INVALID_ARGUMENT, not about the token
        elif outcome == "invalid":
            fake.reject(token, "UNREGISTERED")
        return test_fcm.push_message(token)

    return Harness("fcm", test_fcm.config(fake), prepare)


@pytest.fixture(scope="module")
def telegram_fake() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()  # its own: the name "served" is Twilio's here
    with fake.serve():
        yield fake


def telegram_harness(request: pytest.FixtureRequest) -> Harness:
    fake = request.getfixturevalue("telegram_fake")
    fake.reset()

    def prepare(outcome: str) -> OutboundMessage:
        chat = {"ok": 1001, "retry": 1002, "permanent": 1003, "invalid": 1004}[outcome]
        if outcome == "retry":
            fake.fail_next(1, 429, retry_after=3)
        elif outcome == "permanent":
            fake.reject(chat, 400, "Bad Request: message text is empty")
        elif outcome == "invalid":
            fake.block(chat)
        return test_telegram.message(chat)

    config = {
        "bot_token": test_telegram.BOT_TOKEN,
        "base_url": fake.base_url,
        "webhook_secret": test_telegram.SECRET,
    }
    return Harness("telegram", config, prepare)


@pytest.fixture(scope="module")
def whatsapp_fake() -> Iterator[FakeWhatsApp]:
    fake = FakeWhatsApp()
    with fake.serve():
        yield fake


def whatsapp_harness(request: pytest.FixtureRequest) -> Harness:
    fake = request.getfixturevalue("whatsapp_fake")
    fake.reset()

    def prepare(outcome: str) -> OutboundMessage:
        number = {
            "ok": "+14155550101",
            "retry": "+14155550102",
            "permanent": "+14155550103",
            "invalid": "+14155550104",
        }[outcome]
        if outcome == "retry":
            fake.fail_next(1, code=131000)
        elif outcome == "permanent":
            fake.reject(number, 131047)  # outside the 24-hour window
        elif outcome == "invalid":
            fake.reject(number, 131026)  # not a WhatsApp user
        return test_whatsapp.message(number)

    config = {
        "access_token": test_whatsapp.ACCESS_TOKEN,
        "phone_number_id": test_whatsapp.PHONE_NUMBER_ID,
        "app_secret": test_whatsapp.APP_SECRET,
        "verify_token": test_whatsapp.VERIFY_TOKEN,
        "base_url": fake.base_url,
    }
    return Harness("whatsapp", config, prepare)


@pytest.fixture(scope="module")
def messenger_fake() -> Iterator[FakeMessenger]:
    fake = FakeMessenger()
    with fake.serve():
        yield fake


def messenger_harness(request: pytest.FixtureRequest) -> Harness:
    fake = request.getfixturevalue("messenger_fake")
    fake.reset()

    def prepare(outcome: str) -> OutboundMessage:
        psid = {
            "ok": "1254459154682911",
            "retry": "1254459154682912",
            "permanent": "1254459154682913",
            "invalid": "1254459154682914",
        }[outcome]
        if outcome == "retry":
            fake.fail_next(1, code=1200)
        elif outcome == "permanent":
            fake.reject(psid, 10, 2018278)  # outside the 24-hour window
        elif outcome == "invalid":
            fake.reject(psid, 551)  # this person isn't available
        return test_messenger.message(psid)

    config = {
        "page_access_token": test_messenger.PAGE_ACCESS_TOKEN,
        "app_secret": test_messenger.APP_SECRET,
        "verify_token": test_messenger.VERIFY_TOKEN,
        "base_url": fake.base_url,
    }
    return Harness("messenger", config, prepare)


HARNESSES: dict[str, Callable[[pytest.FixtureRequest], Harness]] = {
    "apns": apns_harness,
    "fcm": fcm_harness,
    "messenger": messenger_harness,
    "smtp": smtp_harness,
    "twilio_sms": twilio_harness("twilio_sms", lambda to: test_twilio.sms(to=to)),
    "twilio_voice": twilio_harness("twilio_voice", lambda to: test_twilio.call(to=to)),
    "telegram": telegram_harness,
    "webhook": webhook_harness,
    "webpush": webpush_harness,
    "whatsapp": whatsapp_harness,
}


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest) -> Harness:
    return HARNESSES[request.param](request)


def test_every_real_provider_has_a_harness() -> None:
    assert set(registry.PROVIDERS) - {"capture"} <= set(HARNESSES)


def test_it_describes_itself(harness: Harness) -> None:
    cls = registry.adapter_class(harness.name)
    assert cls.name == harness.name
    assert cls.channels and all(isinstance(channel, Channel) for channel in cls.channels)
    assert issubclass(cls.Config, ProviderConfig)
    assert cls.Config.model_config.get("extra") == "forbid"
    assert cls.Config.secret_fields <= set(cls.Config.model_fields)
    masked = registry.masked(harness.name, harness.config)
    for field in cls.Config.secret_fields & set(harness.config):
        assert masked[field] != harness.config[field]


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_a_send_ends_in_exactly_one_outcome(harness: Harness, outcome: str) -> None:
    [result] = send(harness.adapter(), harness.prepare(outcome))
    expected = {
        "ok": SendResult,
        "retry": RetryLater,
        "permanent": PermanentFailure,
        "invalid": AddressInvalid,
    }[outcome]
    assert type(result) is expected, result
    if isinstance(result, SendResult):
        assert result.provider_message_id
    if isinstance(result, AddressInvalid):
        assert result.status in ("invalid", "bounced", "unsubscribed")
    if not isinstance(result, SendResult):
        assert result.reason  # every failure says why


def test_closing_twice_is_safe(harness: Harness) -> None:
    import asyncio

    adapter = harness.adapter()

    async def close_twice() -> None:
        await adapter.aclose()
        await adapter.aclose()

    asyncio.run(close_twice())
