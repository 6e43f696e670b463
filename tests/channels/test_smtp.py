"""The SMTP adapter against a real SMTP server (aiosmtpd on a loopback port): what arrives,
how the server's refusals come back as delivery errors, the connection pool, TLS, DKIM, and
one message all the way through the dispatcher on both databases."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import gc
import socket
import ssl
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SmtpServer
from aiosmtpd.smtp import AuthResult, LoginPassword
from sqlalchemy import select

from junction.channels import registry
from junction.channels.base import (
    AddressInvalid,
    Channel,
    OutboundMessage,
    PermanentFailure,
    RetryLater,
)
from junction.channels.smtp import SmtpAdapter, SmtpConfig
from junction.engine.dispatcher import Dispatcher
from junction.errors import InvalidInput
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.providers import set_channel_provider
from junction.store.sends import SendRequest, accept, get_message
from junction.store.tables import addresses
from tests.conftest import SECRET

# Recipients the sink refuses, by local part, with the reply it gives to RCPT.
REFUSALS = {
    "bounce": "550 5.1.1 <bounce@x.io>: Recipient address rejected: User unknown",
    "gone": "551 User not local",
    "later": "451 4.3.0 Temporary lookup failure, try again later",
    "blocked": "550 5.7.1 Message rejected by policy",
    "full": "552 5.2.2 Mailbox full",
}


@pytest.fixture(autouse=True)
def collect_leaks() -> Iterator[None]:
    """A connection left open is reported (ResourceWarning) against the test that left it."""
    yield
    gc.collect()


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    mail_options: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        parsed: EmailMessage = email.message_from_bytes(self.raw, policy=email.policy.default)
        return parsed


@dataclass
class Sink:
    """What the server received, and what it is told to do to the next MAIL commands."""

    received: list[Received] = field(default_factory=list)
    sessions: int = 0  # connections accepted
    open: int = 0  # connections open now
    most_open: int = 0
    quits: int = 0
    on_mail: list[str] = field(default_factory=list)  # "drop" or a reply, for the next MAILs
    live: set[SmtpServer] = field(default_factory=set)
    lock: threading.Condition = field(default_factory=threading.Condition)

    # aiosmtpd handler hooks (they run in the server's own thread and event loop).

    async def handle_MAIL(self, server, session, envelope, address, options) -> str:  # type: ignore[no-untyped-def]
        with self.lock:
            action = self.on_mail.pop(0) if self.on_mail else None
        if action == "drop":
            server.transport.close()  # the connection dies just as it is used
            return "250 OK"
        if action is not None:
            return action
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:  # type: ignore[no-untyped-def]
        refusal = REFUSALS.get(address.split("@")[0])
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        with self.lock:
            self.received.append(
                Received(
                    envelope.mail_from,
                    list(envelope.rcpt_tos),
                    list(envelope.mail_options),
                    envelope.original_content,
                )
            )
            self.lock.notify_all()
        return "250 2.0.0 Ok: queued as Q" + str(len(self.received))

    async def handle_QUIT(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        with self.lock:
            self.quits += 1
        return "221 Bye"

    # Connection counting, called by the server protocol below.

    def opened(self, server: SmtpServer) -> None:
        with self.lock:
            if server in self.live:  # aiosmtpd calls connection_made again after STARTTLS
                return
            self.sessions += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
            self.live.add(server)

    def closed(self, server: SmtpServer) -> None:
        with self.lock:
            if server not in self.live:
                return
            self.open -= 1
            self.live.discard(server)
            self.lock.notify_all()

    def wait_all_closed(self) -> bool:
        """Wait (up to 10 s) until the server has seen every connection closed."""
        with self.lock:
            return self.lock.wait_for(lambda: self.open == 0, timeout=10)

    def reset_counts(self) -> None:
        with self.lock:
            self.sessions, self.most_open = 0, self.open

    def only(self) -> Received:
        assert len(self.received) == 1, self.received
        return self.received[0]


class _CountingServer(SmtpServer):  # type: ignore[misc]
    def __init__(self, sink: Sink, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sink = sink

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.sink.opened(self)

    def connection_lost(self, error: Exception | None) -> None:
        self.sink.closed(self)
        super().connection_lost(error)


class SinkController(Controller):  # type: ignore[misc]
    def factory(self) -> SmtpServer:
        return _CountingServer(self.handler, self.handler, **self.SMTP_kwargs)

    def close_all_connections(self) -> None:
        """Close every open connection from the server's side, as an idle timeout does,
        and wait until the server has seen them closed."""
        sink: Sink = self.handler
        with sink.lock:
            live = list(sink.live)
        for server in live:
            self.loop.call_soon_threadsafe(server.transport.close)
        assert sink.wait_all_closed()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_sink(**server_options: Any) -> SinkController:
    controller = SinkController(Sink(), hostname="127.0.0.1", port=free_port(), **server_options)
    controller.start()
    controller.handler.reset_counts()  # start() opens one connection to check it is up
    return controller


@pytest.fixture
def server() -> Iterator[SinkController]:
    controller = start_sink()
    yield controller
    controller.stop()


@pytest.fixture
def sink(server: SinkController) -> Sink:
    handler: Sink = server.handler
    return handler


def config(server: SinkController, **overrides: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": server.port,
        "security": "none",
        "from_address": "news@acme.example",
        "from_name": "Acme",
        **overrides,
    }


def adapter(server: SinkController, **overrides: Any) -> SmtpAdapter:
    built = registry.build("smtp", config(server, **overrides))
    assert isinstance(built, SmtpAdapter)
    return built


def outbound(
    to: str = "ada@x.io",
    id: int = 1,
    key: str | None = None,
    transactional: bool = True,
    headers: dict[str, str] | None = None,
    **content: str,
) -> OutboundMessage:
    return OutboundMessage(
        id=id,
        idempotency_key=key or f"api:{id}",
        workspace_id=1,
        channel=Channel.EMAIL,
        to=to,
        content=content or {"subject": "Hello", "text": "Hi Ada"},
        transactional=transactional,
        headers=headers or {},
    )


def send(smtp: SmtpAdapter, *messages: OutboundMessage) -> list[Any]:
    """Send concurrently in one event loop, then close the pool; results or errors."""

    async def run() -> list[Any]:
        try:
            return await asyncio.gather(*(smtp.send(m) for m in messages), return_exceptions=True)
        finally:
            await smtp.aclose()

    return asyncio.run(run())


def body(message: EmailMessage, kind: str) -> str:
    """A part's text, with the line ends a mail reader shows."""
    text: str = message.get_body((kind,)).get_content()
    return text.replace("\r\n", "\n")


def send_one(smtp: SmtpAdapter, message: OutboundMessage) -> Any:
    (result,) = send(smtp, message)
    return result


# --- what arrives --------------------------------------------------------------------------


def test_text_and_html_arrive_as_alternatives_with_the_headers(server, sink) -> None:
    smtp = adapter(server, reply_to="help@acme.example")
    result = send_one(
        smtp,
        outbound(subject="Your receipt", text="Total: 12 EUR", html="<p>Total: <b>12 EUR</b></p>"),
    )

    got = sink.only()
    assert (got.mail_from, got.rcpt_tos) == ("news@acme.example", ["ada@x.io"])
    message = got.message
    assert message["From"] == "Acme <news@acme.example>"
    assert message["To"] == "ada@x.io"
    assert message["Reply-To"] == "help@acme.example"
    assert message["Subject"] == "Your receipt"
    assert message["Date"].datetime is not None
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert body(message, "plain").strip() == "Total: 12 EUR"
    assert body(message, "html").strip() == "<p>Total: <b>12 EUR</b></p>"
    # The Message-ID is what the message row records as the provider's id.
    assert result.provider_message_id == message["Message-ID"]
    assert result.details["reply"].startswith("250 2.0.0 Ok: queued as")
    # Transactional mail carries no unsubscribe headers.
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message
    assert all(line.endswith(b"\r") or not line for line in got.raw.split(b"\n")[:-1])


def test_html_alone_gets_a_plain_text_part(server, sink) -> None:
    html = (
        "<html><head><style>p {color: red}</style></head><body><h1>Spring sale</h1>"
        "<p>Everything at&nbsp;-20%, <a href='https://acme.example/sale'>see the sale</a>.</p>"
        "<ul><li>Shoes</li><li>Hats</li></ul></body></html>"
    )
    send_one(adapter(server), outbound(subject="Sale", html=html))

    message = sink.only().message
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert body(message, "plain") == (
        "Spring sale\n\nEverything at -20%, see the sale (https://acme.example/sale).\n\n"
        "- Shoes\n- Hats\n"
    )
    assert body(message, "html").strip() == html


def test_non_ascii_subject_from_name_and_body_round_trip(server, sink) -> None:
    smtp = adapter(server, from_name="Zoë Ünicode, Inc.")
    send_one(smtp, outbound(subject="Grüße aus Köln — 🎉", text="Ça va? Ελληνικά\n"))

    got = sink.only()
    assert got.raw.isascii()  # encoded for any server: no 8BITMIME needed
    message = got.message
    assert message["Subject"] == "Grüße aus Köln — 🎉"
    assert message["From"].addresses[0].display_name == "Zoë Ünicode, Inc."
    assert message["From"].addresses[0].addr_spec == "news@acme.example"
    assert body(message, "plain") == "Ça va? Ελληνικά\n"


def test_an_internationalised_domain_is_sent_in_its_ascii_form(server, sink) -> None:
    send_one(adapter(server), outbound(to="jörg@bücher.example"))

    got = sink.only()
    assert got.rcpt_tos == ["jörg@xn--bcher-kva.example"]
    assert "SMTPUTF8" in [o.upper() for o in got.mail_options]
    assert got.message["To"] == "jörg@xn--bcher-kva.example"


def test_the_message_id_is_the_same_for_the_same_idempotency_key(server, sink) -> None:
    first = send_one(adapter(server), outbound(id=7, key="api:order-42"))
    again = send_one(adapter(server), outbound(id=7, key="api:order-42"))
    other = send_one(adapter(server), outbound(id=8, key="api:order-43"))

    ids = [r.message["Message-ID"] for r in sink.received]
    assert ids[0] == ids[1] != ids[2]
    assert ids[0] == first.provider_message_id == again.provider_message_id
    assert other.provider_message_id == ids[2]
    assert ids[0].endswith("@acme.example>") and len(ids[0]) == len("<@acme.example>") + 32


def test_marketing_mail_carries_one_click_unsubscribe(server, sink) -> None:
    smtp = adapter(server, unsubscribe_url="https://acme.example/u/{message_id}?k={key}")
    result = send_one(smtp, outbound(id=5, key="api:k5", transactional=False))

    message = sink.only().message
    digest = result.provider_message_id[1:33]
    assert message["List-Unsubscribe"] == f"<https://acme.example/u/5?k={digest}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_a_list_unsubscribe_header_of_the_message_wins_over_the_configured_url(
    server, sink
) -> None:
    smtp = adapter(server, unsubscribe_url="https://acme.example/u/{message_id}")
    header = "<mailto:unsub@acme.example>, <https://lists.acme.example/u/abc>"
    send_one(smtp, outbound(transactional=False, headers={"List-Unsubscribe": header}))

    message = sink.only().message
    assert message["List-Unsubscribe"] == header
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_marketing_mail_without_an_unsubscribe_link_is_refused(server, sink) -> None:
    error = send_one(adapter(server), outbound(transactional=False))

    assert isinstance(error, PermanentFailure)
    assert "unsubscribe_url" in error.reason
    assert sink.received == []


@pytest.mark.parametrize(
    ("headers", "content"),
    [
        ({}, {"subject": "Hi\r\nBcc: everyone@x.io", "text": "x"}),
        ({}, {"subject": "Hi\nBcc: everyone@x.io", "text": "x"}),
        ({"X-Campaign": "spring\r\nBcc: everyone@x.io"}, {"subject": "Hi", "text": "x"}),
        ({"X-Campaign\r\nBcc": "everyone@x.io"}, {"subject": "Hi", "text": "x"}),
        ({"From": "ceo@bank.test"}, {"subject": "Hi", "text": "x"}),
    ],
)
def test_header_injection_is_refused(server, sink, headers, content) -> None:
    error = send_one(adapter(server), outbound(headers=headers, **content))

    assert isinstance(error, PermanentFailure)
    assert sink.received == []


def test_a_from_name_with_a_line_break_is_refused_in_the_configuration(server) -> None:
    with pytest.raises(InvalidInput) as refused:
        adapter(server, from_name="Acme\r\nBcc: everyone@x.io")
    assert [e.field for e in refused.value.errors] == ["config.from_name"]


# --- DKIM ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dkim_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, bytes]:
    """(private key PEM, DNS TXT record), made with the openssl command line."""
    path = tmp_path_factory.mktemp("dkim") / "key.pem"
    subprocess.run(
        ["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(path), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    return path.read_text(), b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def test_dkim_signature_verifies_and_covers_the_unsubscribe_headers(
    server, sink, dkim_keys
) -> None:
    private_key, txt = dkim_keys
    smtp = adapter(
        server,
        dkim_domain="acme.example",
        dkim_selector="jx1",
        dkim_private_key=private_key,
        unsubscribe_url="https://acme.example/u/{message_id}/{key}",
    )
    send_one(smtp, outbound(transactional=False, subject="Nouveautés", html="<p>Bonjour</p>"))

    looked_up: list[bytes] = []

    def dns(name: bytes, timeout: int = 5) -> bytes:
        looked_up.append(name)
        return txt if name == b"jx1._domainkey.acme.example." else b""

    raw = sink.only().raw
    assert dkim.verify(raw, dnsfunc=dns)
    assert looked_up == [b"jx1._domainkey.acme.example."]
    signature = sink.only().message["DKIM-Signature"]
    tags = dict(t.strip().split("=", 1) for t in signature.split(";") if t.strip())
    assert tags["a"] == "rsa-sha256" and tags["c"] == "relaxed/relaxed"
    signed = {h.strip() for h in tags["h"].split(":")}
    assert {"from", "to", "subject", "date", "message-id"} <= signed
    assert {"list-unsubscribe", "list-unsubscribe-post"} <= signed
    # A changed signed header no longer verifies: the signature does cover it.
    assert not dkim.verify(raw.replace(b"\r\nTo: ada@x.io", b"\r\nTo: eve@x.io"), dnsfunc=dns)


def test_dkim_settings_go_together_and_the_key_must_parse(server) -> None:
    with pytest.raises(InvalidInput):
        adapter(server, dkim_domain="acme.example")
    with pytest.raises(InvalidInput):
        adapter(server, dkim_domain="acme.example", dkim_selector="s", dkim_private_key="nope")


# --- refusals and failures -----------------------------------------------------------------


def test_an_unknown_mailbox_is_a_bounced_address(server, sink) -> None:
    smtp = adapter(server, pool_size=1)  # one connection carries them all, in turn
    bounced, gone, policy, full, ok = send(
        smtp,
        outbound("bounce@x.io", id=1),
        outbound("gone@x.io", id=2),
        outbound("blocked@x.io", id=3),
        outbound("full@x.io", id=4),
        outbound("ada@x.io", id=5),
    )

    assert isinstance(bounced, AddressInvalid) and bounced.status == "bounced"
    assert "550 5.1.1" in bounced.reason and "User unknown" in bounced.reason
    assert isinstance(gone, AddressInvalid) and gone.status == "bounced"
    # A policy block or a full mailbox is not the address's fault: no bounce mark.
    assert type(policy) is PermanentFailure and "5.7.1" in policy.reason
    assert type(full) is PermanentFailure and "552 5.2.2 Mailbox full" in full.reason
    # Each refused transaction was reset, and the one connection went on sending.
    assert ok.provider_message_id and [r.rcpt_tos for r in sink.received] == [["ada@x.io"]]
    assert sink.sessions == 1


def test_a_temporary_refusal_is_retried_later(server, sink) -> None:
    error = send_one(adapter(server), outbound("later@x.io"))

    assert isinstance(error, RetryLater)
    assert "451 4.3.0 Temporary lookup failure" in error.reason
    assert sink.received == []


def test_a_server_that_is_down_means_retry_later() -> None:
    controller = start_sink()
    smtp = adapter(controller)
    controller.stop()

    error = send_one(smtp, outbound())

    assert isinstance(error, RetryLater)
    assert "on connecting" in error.reason or "connect" in error.reason.lower()


def test_a_server_that_goes_away_between_messages_means_retry_later() -> None:
    controller = start_sink()
    smtp = adapter(controller)

    async def run() -> tuple[Any, Any]:
        first = await smtp.send(outbound(id=1))
        controller.stop()  # the pooled connection is cut, and nothing listens any more
        try:
            second = await smtp.send(outbound(id=2))
        except RetryLater as error:
            second = error
        await smtp.aclose()
        return first, second

    first, second = asyncio.run(run())
    assert first.provider_message_id
    assert isinstance(second, RetryLater)


# --- the connection pool -------------------------------------------------------------------


def test_many_messages_share_a_few_connections(server, sink) -> None:
    smtp = adapter(server, pool_size=5)
    messages = [outbound(f"user{i}@x.io", id=i) for i in range(300)]

    results = send(smtp, *messages)

    assert not [r for r in results if isinstance(r, BaseException)]
    arrived = Counter(r.rcpt_tos[0] for r in sink.received)
    assert arrived == Counter(f"user{i}@x.io" for i in range(300))  # each exactly once
    assert sink.most_open == 5  # all five used at once, never more
    assert sink.sessions == 5  # and kept open: no connection per message
    assert len({r.message["Message-ID"] for r in sink.received}) == 300


def test_connections_closed_by_the_server_are_opened_again(server, sink) -> None:
    smtp = adapter(server, pool_size=3)

    async def run() -> list[Any]:
        await asyncio.gather(*(smtp.send(outbound(f"a{i}@x.io", id=i)) for i in range(6)))
        server.close_all_connections()  # e.g. the server's idle timeout
        try:
            return await asyncio.gather(
                *(smtp.send(outbound(f"b{i}@x.io", id=10 + i)) for i in range(6))
            )
        finally:
            await smtp.aclose()

    results = asyncio.run(run())

    assert all(r.provider_message_id for r in results)
    assert sorted(r.rcpt_tos[0] for r in sink.received) == sorted(
        [f"a{i}@x.io" for i in range(6)] + [f"b{i}@x.io" for i in range(6)]
    )
    assert sink.sessions == 6  # three connections, then three new ones


@pytest.mark.parametrize("what_the_server_does", ["drop", "421 4.4.2 Idle too long, closing"])
def test_a_pooled_connection_that_dies_as_it_is_used_is_replaced_without_a_duplicate(
    server, sink, what_the_server_does
) -> None:
    smtp = adapter(server, pool_size=1)

    async def run() -> tuple[Any, Any]:
        first = await smtp.send(outbound("a@x.io", id=1))
        sink.on_mail.append(what_the_server_does)
        second = await smtp.send(outbound("b@x.io", id=2))
        await smtp.aclose()
        return first, second

    first, second = asyncio.run(run())

    assert first.provider_message_id and second.provider_message_id
    assert [r.rcpt_tos for r in sink.received] == [["a@x.io"], ["b@x.io"]]
    assert sink.sessions == 2


def test_a_new_connection_that_dies_is_not_tried_again(server, sink) -> None:
    sink.on_mail.append("drop")

    error = send_one(adapter(server), outbound())

    assert isinstance(error, RetryLater)
    assert sink.received == [] and sink.sessions == 1


# Leaving a loop without aclose() leaks its connections' sockets (nothing can close them
# once their loop is closed): Python warns when they are collected, here, on purpose.
@pytest.mark.filterwarnings("ignore:unclosed:ResourceWarning")
def test_the_pool_works_again_in_a_new_event_loop(server, sink) -> None:
    smtp = adapter(server)
    asyncio.run(smtp.send(outbound("a@x.io", id=1)))  # its loop ends with the pool open
    assert send_one(smtp, outbound("b@x.io", id=2)).provider_message_id
    assert [r.rcpt_tos for r in sink.received] == [["a@x.io"], ["b@x.io"]]
    gc.collect()


def test_aclose_says_quit_on_every_connection(server, sink) -> None:
    smtp = adapter(server, pool_size=4)
    send(smtp, *(outbound(f"u{i}@x.io", id=i) for i in range(8)))

    assert sink.wait_all_closed()
    assert sink.sessions == sink.quits == 4


# --- TLS and login -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command line."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def login(server, session, envelope, mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == b"s3cret"
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def trusted(certificate, monkeypatch) -> ssl.SSLContext:  # type: ignore[no-untyped-def]
    """The server's TLS context; the client trusts its certificate as a CA would."""
    cert, key = certificate
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


def test_starttls_with_login(trusted) -> None:
    controller = start_sink(
        tls_context=trusted, require_starttls=True, authenticator=login, auth_required=True
    )
    sink: Sink = controller.handler
    good = adapter(controller, security="starttls", username="acme", password="s3cret")
    bad = adapter(controller, security="starttls", username="acme", password="wrong")

    async def run() -> tuple[Any, Any]:
        sent = await good.send(outbound())
        try:
            refused = await bad.send(outbound(id=2))
        except RetryLater as error:
            refused = error
        await good.aclose()
        await bad.aclose()
        # The refused login's connection is closed by the SMTP client itself, with a TLS
        # goodbye; stay in this loop until the server has seen it through.
        assert await asyncio.to_thread(sink.wait_all_closed)
        return sent, refused

    try:
        sent, refused = asyncio.run(run())
    finally:
        controller.stop()

    assert sent.provider_message_id
    assert isinstance(refused, RetryLater) and "535" in refused.reason
    # The server would not have taken a password, nor a message, in clear.
    assert [r.rcpt_tos for r in sink.received] == [["ada@x.io"]]


def test_implicit_tls(trusted) -> None:
    controller = start_sink(ssl_context=trusted)
    try:
        assert send_one(adapter(controller, security="tls"), outbound()).provider_message_id
        assert len(controller.handler.received) == 1
    finally:
        controller.stop()


def test_starttls_is_required_when_configured(server, sink) -> None:
    # The sink offers no STARTTLS: rather than sending in clear, the message waits.
    error = send_one(adapter(server, security="starttls"), outbound())

    assert isinstance(error, RetryLater) and "STARTTLS" in error.reason
    assert sink.received == []


# --- configuration -------------------------------------------------------------------------


def test_the_configuration_is_checked_and_its_secrets_masked() -> None:
    parsed = SmtpConfig.model_validate(
        {"host": "smtp.acme.example", "from_address": "a@acme.example"}
    )
    assert (parsed.port, parsed.security, parsed.pool_size, parsed.timeout) == (
        587,
        "starttls",
        10,
        30,
    )
    for bad in [
        {"from_address": "not an address"},
        {"pool_size": 0},
        {"pool_size": 101},
        {"security": "ssl"},
        {"unsubscribe_url": "http://acme.example/u/{message_id}"},
        {"unsubscribe_url": "https://acme.example/u/{user}"},
        {"username": "acme"},
        {"surprise": 1},
    ]:
        with pytest.raises(InvalidInput):
            registry.validate_config("smtp", {"host": "h", "from_address": "a@acme.example", **bad})
    shown = registry.masked("smtp", {"host": "h", "password": "hunter22", "dkim_private_key": "K"})
    assert shown["host"] == "h" and "hunter2" not in shown["password"]


def test_a_configuration_as_the_api_stores_it_builds_the_adapter(dkim_keys) -> None:
    given = {
        "host": "smtp.acme.example",
        "from_address": "News@Bücher.example",
        "dkim_domain": "acme.example",
        "dkim_selector": "jx1",
        "dkim_private_key": dkim_keys[0].replace("\n", "\r\n"),  # as pasted from Windows
    }
    stored = registry.validate_config("smtp", given).model_dump(mode="json")
    assert stored["from_address"] == "news@xn--bcher-kva.example"  # normalised
    assert stored["port"] == 587 and "\r" not in stored["dkim_private_key"]
    assert isinstance(registry.build("smtp", stored), SmtpAdapter)


# --- through the dispatcher, on both databases ---------------------------------------------


def queue(database: Database, tenant, clock, user: str, category: str = "transactional") -> int:  # type: ignore[no-untyped-def]
    from junction.domain.tracking import Identify

    with database.write() as conn:
        ingest(
            conn,
            tenant.id,
            Batch([Identify(user_id=user, traits={"email": f"{user}@x.io"})], clock.now()),
            SECRET,
        )
        answer = accept(
            conn,
            tenant.id,
            SendRequest(
                channel="email",
                to={"userId": user},
                content={"subject": f"Hello {user}", "text": "Welcome aboard"},
                category=category,
            ),
            clock.now(),
        )
    return int(answer.body["id"])


def test_a_message_goes_out_through_the_dispatcher(database, clock, tenant, server, sink) -> None:
    with database.write() as conn:
        set_channel_provider(conn, tenant.id, "email", "smtp", config(server), clock.now())
    sent_id = queue(database, tenant, clock, "ada")
    bounced_id = queue(database, tenant, clock, "bounce")

    assert asyncio.run(Dispatcher(database, clock).drain()) == 2

    got = sink.only()
    assert got.rcpt_tos == ["ada@x.io"] and got.message["Subject"] == "Hello ada"
    with database.read() as conn:
        sent = get_message(conn, tenant.id, sent_id)
        bounced = get_message(conn, tenant.id, bounced_id)
        address_status = conn.execute(
            select(addresses.c.status).where(addresses.c.value == "bounce@x.io")
        ).scalar_one()
    assert sent["status"] == "sent"
    assert sent["providerMessageId"] == got.message["Message-ID"]
    assert bounced["status"] == "failed" and "550 5.1.1" in bounced["lastError"]
    assert address_status == "bounced"


def test_a_trait_cannot_add_a_header_through_a_templated_subject(
    database, clock, tenant, server, sink
) -> None:
    from junction.domain.tracking import Identify
    from junction.render.personalise import Links
    from junction.store import templates

    hostile = "Ada\r\nBcc: victim@evil.example\r\nX-Injected: yes"
    with database.write() as conn:
        set_channel_provider(conn, tenant.id, "email", "smtp", config(server), clock.now())
        traits = {"email": "ada@x.io", "first_name": hostile}
        ingest(
            conn, tenant.id, Batch([Identify(user_id="ada", traits=traits)], clock.now()), SECRET
        )
        templates.save(
            conn,
            tenant.id,
            {
                "key": "hello",
                "channels": {
                    "email": {
                        "subject": "Hello {{ contact.first_name }}",
                        "html": "<p>Hi {{ contact.first_name }}</p>"
                        '<a href="https://shop.example/">Shop</a>',
                    }
                },
            },
            clock.now(),
        )
        accept(
            conn,
            tenant.id,
            SendRequest(channel="email", to={"userId": "ada"}, content=None, template="hello"),
            clock.now(),
        )
    links = Links(b"k", "https://j.example")
    assert asyncio.run(Dispatcher(database, clock, links=links).drain()) == 1

    got = sink.only()
    assert got.rcpt_tos == ["ada@x.io"]  # the Bcc reached no envelope
    assert got.message["Subject"] == "Hello Ada Bcc: victim@evil.example X-Injected: yes"
    assert got.message["Bcc"] is None and got.message["X-Injected"] is None
    html = got.message.get_body(("html",)).get_content()
    # In the body the trait is only text, inside the paragraph it was put in.
    assert html.startswith("<p>Hi Ada") and "X-Injected: yes</p>" in html
    assert 'href="https://j.example/l/' in html
