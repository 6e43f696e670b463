"""Email over SMTP: a pool of connections kept open, one message at a time on each.

Rules kept here:
- up to ``pool_size`` connections are open at once and reused; a connection the server has
  closed (idle timeout, a 421) is opened again without the message noticing, but only while
  the server has accepted nothing of the message, so that this can never send it twice;
- a connection whose last transaction ended in an unknown state (cancelled, timed out, cut
  off) is closed, never reused; after a refusal it is reset (RSET) and reused;
- SMTP replies and network failures become delivery errors in one place,
  ``_delivery_error``: a 4xx reply, a network failure or a timeout is ``RetryLater``; a
  recipient refused with 550/551/553 or an enhanced status 5.1.x is
  ``AddressInvalid("bounced")`` (an enhanced status outside 5.1.x, such as 5.7.1 for a
  policy block, says the address is not at fault); any other 5xx is ``PermanentFailure``.
  The server's reply is in every reason;
- failing to open a connection (refused, TLS, login) is about the server or this
  configuration, never about the message: it is ``RetryLater``, so messages wait for a fix
  instead of failing for good;
- the pool belongs to one event loop; used from another (a new ``asyncio.run``) it starts
  over, since connections cannot cross loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import re
import socket
import ssl
from collections.abc import Awaitable, Mapping, Sequence
from datetime import UTC, datetime
from typing import ClassVar, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

from aiosmtplib import (
    SMTP,
    SMTPException,
    SMTPHeloError,
    SMTPRecipientRefused,
    SMTPResponseException,
    SMTPSenderRefused,
    SMTPServerDisconnected,
)
from pydantic import Field, field_validator, model_validator

from junction.channels.base import (
    AddressInvalid,
    Capabilities,
    Channel,
    DeliveryError,
    DeliveryUpdate,
    OutboundMessage,
    PermanentFailure,
    ProviderConfig,
    RetryLater,
    SendResult,
)
from junction.channels.dsn import parse_dsn
from junction.errors import InvalidSignature
from junction.render import email as render
from junction.render.email import BadRecipient, DkimKey, RenderError

_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,}")
_ENHANCED_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
_BOUNCED_CODES = frozenset({550, 551, 553})
_SMTPUTF8 = (b"SMTPUTF8",)
T = TypeVar("T")


class SmtpConfig(ProviderConfig):
    secret_fields: ClassVar[frozenset[str]] = frozenset(
        {"password", "dkim_private_key", "bounce_token"}
    )

    host: str = Field(min_length=1)
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: str | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    from_address: str
    from_name: str | None = None
    reply_to: str | None = None
    pool_size: int = Field(default=10, ge=1, le=100)
    timeout: float = Field(default=30, gt=0, le=600)  # seconds, for each SMTP command
    unsubscribe_url: str | None = None
    dkim_domain: str | None = None
    dkim_selector: str | None = None
    dkim_private_key: str | None = None
    # Bounces (RFC 3464 DSNs) are accepted at /hooks/{workspace}/smtp?token=<bounce_token>.
    bounce_token: str | None = Field(default=None, min_length=16)

    @field_validator("from_address", "reply_to")
    @classmethod
    def _ascii_mailbox(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return render.ascii_mailbox(value, "it")
        except RenderError as error:
            raise ValueError(str(error)) from None

    @field_validator("from_name")
    @classmethod
    def _one_line(cls, value: str | None) -> str | None:
        if value is not None and re.search(r"[\r\n\0]", value):
            raise ValueError("must be one line")
        return value

    @field_validator("unsubscribe_url")
    @classmethod
    def _unsubscribe_template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("https://"):
            raise ValueError("must be an https:// URL (RFC 8058 one-click unsubscribe)")
        if not value.isascii() or re.search(r"[\s<>\"]", value):
            raise ValueError("must be an ASCII URL without spaces, quotes or angle brackets")
        try:
            value.format(message_id=1, key="0" * 32)
        except (KeyError, IndexError, ValueError):
            raise ValueError(
                "the only placeholders are {message_id} and {key}; write a literal brace as "
                "{{ or }}"
            ) from None
        return value

    @field_validator("dkim_selector")
    @classmethod
    def _selector(cls, value: str | None) -> str | None:
        if value is not None and not _SELECTOR.fullmatch(value):
            raise ValueError("letters, digits, '.', '-' and '_' only, e.g. 'junction2026'")
        return value

    @field_validator("dkim_domain")
    @classmethod
    def _domain(cls, value: str | None) -> str | None:
        if value is not None and not _DOMAIN.fullmatch(value):
            raise ValueError("must be a domain name in ASCII, e.g. 'example.com'")
        return value

    @field_validator("dkim_private_key")
    @classmethod
    def _private_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from dkim.crypto import parse_pem_private_key  # only configurations with DKIM

        # dkimpy reads PEM with \n line ends; keys pasted into JSON often carry \r\n.
        pem = value.replace("\r\n", "\n").strip() + "\n"
        try:
            bits = int(parse_pem_private_key(pem.encode("ascii"))["modulus"]).bit_length()
        except Exception:
            raise ValueError("must be an RSA private key in PEM (PKCS#1 or PKCS#8)") from None
        if bits < 1024:
            raise ValueError(f"is a {bits}-bit key; receivers ignore keys under 1024 bits")
        return pem

    @model_validator(mode="after")
    def _together(self) -> SmtpConfig:
        dkim = (self.dkim_domain, self.dkim_selector, self.dkim_private_key)
        if any(v is not None for v in dkim) and any(v is None for v in dkim):
            raise ValueError("dkim_domain, dkim_selector and dkim_private_key go together")
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self


class SmtpAdapter:
    name: ClassVar[str] = "smtp"
    channels: ClassVar[frozenset[Channel]] = frozenset({Channel.EMAIL})
    capabilities: ClassVar[Capabilities] = Capabilities(
        subject=True, rich_media=True, idempotent=False
    )
    Config: ClassVar[type[ProviderConfig]] = SmtpConfig

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        dkim_key = None
        if config.dkim_private_key and config.dkim_domain and config.dkim_selector:
            dkim_key = DkimKey(
                config.dkim_domain, config.dkim_selector, config.dkim_private_key.encode("ascii")
            )
        self._sender = render.make_sender(
            config.from_address,
            config.from_name,
            config.reply_to,
            config.unsubscribe_url,
            dkim_key,
        )
        # Loading the CA store takes milliseconds: once, not per connection.
        self._tls = ssl.create_default_context() if config.security != "none" else None
        self._mail_from = b"<" + self._sender.address.encode("ascii") + b">"
        self._helo_name: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots = asyncio.Semaphore(config.pool_size)
        self._idle: list[SMTP] = []  # connections not carrying a message; maybe closed
        self._busy: set[SMTP] = set()

    def parse_webhook(
        self, headers: Mapping[str, str], body: bytes, url: str
    ) -> Sequence[DeliveryUpdate]:
        """A bounce forwarded by the mail system (an RFC 3464 DSN as the raw request body).
        SMTP signs nothing, so the hook URL carries a secret token instead."""
        given = parse_qs(urlsplit(url).query).get("token", [""])[0]
        expected = self.config.bounce_token
        if not expected or not hmac.compare_digest(given.encode(), expected.encode()):
            raise InvalidSignature("a bounce needs ?token= with the smtp provider's bounce_token")
        return parse_dsn(body)

    async def send(self, message: OutboundMessage) -> SendResult:
        try:
            mail = render.render(
                self._sender,
                to=message.to,
                content=message.content,
                idempotency_key=message.idempotency_key,
                message_number=message.id,
                transactional=message.transactional,
                headers=message.headers,
                now=datetime.now(UTC),
            )
        except BadRecipient as error:
            raise AddressInvalid(str(error), status="invalid") from None
        except RenderError as error:
            raise PermanentFailure(str(error)) from None
        reply = await self._deliver(mail)
        return SendResult(
            provider_message_id=mail.message_id,
            details={"reply": reply, "bytes": len(mail.data)},
        )

    async def aclose(self) -> None:
        """Say QUIT on every idle connection; close any still busy."""
        if self._loop is not asyncio.get_running_loop():
            self._abandon()
            return
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(conn, self.config.timeout) for conn in idle))
        for conn in self._busy:
            conn.close()
        self._busy.clear()

    # --- the pool ----------------------------------------------------------------------

    async def _deliver(self, mail: render.Email) -> str:
        """Carry one message over a pooled connection; returns the server's reply to DATA."""
        if self._loop is not asyncio.get_running_loop():
            self._abandon()
            self._loop = asyncio.get_running_loop()
        async with self._slots:
            # LIFO: the most recently used connection is the least likely to have timed out.
            conn = self._idle.pop() if self._idle else self._new_connection()
            self._busy.add(conn)
            try:
                reused = conn.is_connected
                if not reused:
                    await self._open(conn)
                try:
                    return await self._timed(self._transaction(conn, mail, reused))
                except _Stale:  # the server had closed it while idle: once more, anew
                    await self._open(conn)
                    return await self._timed(self._transaction(conn, mail, False))
            finally:
                self._busy.discard(conn)
                self._idle.append(conn)

    async def _timed(self, step: Awaitable[T]) -> T:
        # One deadline for a whole step (opening, or one message's transaction) rather than
        # one per command: a timer per SMTP command costs more than the rest of the client.
        try:
            async with asyncio.timeout(self.config.timeout):
                return await step
        except TimeoutError:
            raise RetryLater(
                f"smtp: {self.config.host} did not answer within {self.config.timeout:g} s"
            ) from None

    def _new_connection(self) -> SMTP:
        config = self.config
        return SMTP(
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            tls_context=self._tls,
            timeout=None,  # see _timed
        )

    async def _open(self, conn: SMTP) -> None:
        if self._helo_name is None:
            # getfqdn may wait on DNS: once per adapter, off the event loop.
            self._helo_name = await asyncio.to_thread(socket.getfqdn)
        conn.local_hostname = self._helo_name
        try:
            await self._timed(conn.connect())
        except (SMTPException, OSError) as error:
            conn.close()
            raise _delivery_error(error, connecting=True) from None
        except RetryLater:
            conn.close()
            raise

    async def _transaction(self, conn: SMTP, mail: render.Email, reused: bool) -> str:
        """MAIL, RCPT, DATA. Raises ``_Stale`` when a connection reused from the pool turns
        out closed before the server took anything of the message; a DeliveryError otherwise.
        """
        clean = False
        try:
            try:
                if conn.is_ehlo_or_helo_needed:
                    await _greet(conn)
                if mail.smtputf8 and not conn.supports_extension("smtputf8"):
                    clean = True
                    raise PermanentFailure(
                        f"smtp: {mail.recipient} needs SMTPUTF8 (a non-ASCII address), "
                        f"which {self.config.host} does not offer"
                    )
                # execute_command rather than mail() and rcpt(): those parse each address
                # again with email.utils, which render has already checked.
                reply = await conn.execute_command(
                    b"MAIL", b"FROM:" + self._mail_from, *(_SMTPUTF8 if mail.smtputf8 else ())
                )
                if reply.code != 250:
                    raise SMTPSenderRefused(reply.code, reply.message, self._sender.address)
            except SMTPServerDisconnected:
                if reused:
                    raise _Stale from None
                raise
            except SMTPResponseException as error:
                if error.code == 421 and reused:  # "closing the channel", e.g. idle too long
                    raise _Stale from None
                raise
            reply = await conn.execute_command(
                b"RCPT", b"TO:<" + mail.recipient.encode("utf-8") + b">"
            )
            if reply.code not in (250, 251):
                raise SMTPRecipientRefused(reply.code, reply.message, mail.recipient)
            response = await conn.data(mail.data)
            clean = True
            return f"{response.code} {response.message}"
        except SMTPResponseException as error:
            clean = await _reset(conn)
            raise _delivery_error(error) from None
        except (SMTPException, OSError) as error:
            raise _delivery_error(error) from None
        finally:
            if not clean:
                conn.close()

    def _abandon(self) -> None:
        """Forget connections of an event loop that has ended (they cannot be used from
        this one), and the semaphore bound to it."""
        for conn in [*self._idle, *self._busy]:
            with contextlib.suppress(Exception):  # its loop may be closed already
                conn.close()
        self._idle, self._busy = [], set()
        self._slots = asyncio.Semaphore(self.config.pool_size)
        self._loop = None


async def _greet(conn: SMTP) -> None:
    """EHLO, or HELO for a server that does not speak ESMTP."""
    try:
        await conn.ehlo()
    except SMTPHeloError:
        if not conn.is_connected:
            raise
        await conn.helo()


class _Stale(Exception):
    """A pooled connection was closed by the server; nothing of the message was taken."""


async def _reset(conn: SMTP) -> bool:
    """RSET after a refusal, so the connection can carry the next message."""
    if not conn.is_connected:
        return False
    try:
        await conn.rset()
    except (SMTPException, OSError):
        return False
    return True


async def _quit(conn: SMTP, timeout: float) -> None:
    if not conn.is_connected:
        return
    try:
        await conn.quit(timeout=timeout)
    except (SMTPException, OSError):
        conn.close()


def _delivery_error(error: SMTPException | OSError, connecting: bool = False) -> DeliveryError:
    """The one translation of SMTP outcomes into delivery errors (see the module's rules)."""
    if isinstance(error, SMTPResponseException):
        reason = f"smtp {error.code} {error.message}".strip()
        if connecting:
            return RetryLater(f"{reason} (on connecting)")
        if 400 <= error.code < 500:
            return RetryLater(reason)
        if isinstance(error, SMTPRecipientRefused) and _address_is_dead(error.code, error.message):
            return AddressInvalid(reason, status="bounced")
        return PermanentFailure(reason)
    # Refused, reset, disconnected, timed out, or a client-side error: nothing says the
    # message itself is at fault, so it is tried again.
    return RetryLater(f"smtp: {error}" + (" (on connecting)" if connecting else ""))


def _address_is_dead(code: int, message: str) -> bool:
    enhanced = _ENHANCED_STATUS.match(message)
    if enhanced is not None:  # the enhanced status is the more precise: it decides
        return enhanced.group(1) == "5" and enhanced.group(2) == "1"
    return code in _BOUNCED_CODES
