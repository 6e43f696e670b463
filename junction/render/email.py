"""An email as the bytes an SMTP server receives: headers, MIME body, DKIM signature.

Rules kept here:
- pure functions, no I/O; anything that cannot be built raises ``RenderError`` (or
  ``BadRecipient``, its subclass, when the address is at fault) with the fix in its text;
- no header value may carry CR, LF or NUL: that is how headers get injected, so such a
  message is refused, never cleaned;
- text and HTML go as multipart/alternative; HTML alone gets a plain-text part read out of it
  (mail without one scores as spam);
- the Message-ID derives from the idempotency key, so a resend after a crash carries the same
  id and the receiving side can tell it is the same message;
- marketing mail (not transactional) carries ``List-Unsubscribe`` and, with an HTTPS link,
  the RFC 8058 one-click ``List-Unsubscribe-Post``; marketing mail without an unsubscribe
  link is refused (Gmail and Yahoo reject bulk mail without one);
- bodies are 7-bit clean, so any server takes them without 8BITMIME: a part of plain ASCII
  with no NUL and no line over 998 characters goes as it is (``7bit``, line ends made CRLF),
  any other part quoted-printable;
  non-ASCII header text is RFC 2047-encoded, except an address that needs SMTPUTF8;
- what does not change per message is built once: the sender's lines when the ``Sender`` is
  made, the body and Subject once per distinct content (a small cache: a campaign sends the
  same content to many people). Lines of plain ASCII that Junction makes itself (To, Date,
  Message-ID, List-Unsubscribe) are written directly; everything that needs encoding or
  folding goes through the stdlib ``email`` package.
"""

from __future__ import annotations

import binascii
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address
from email.policy import SMTP
from email.utils import format_datetime
from functools import lru_cache
from html.parser import HTMLParser
from typing import Any

import dkim
from email_validator import EmailNotValidError, validate_email

# CRLF line ends (what SMTP carries, and what the DKIM signature covers) and 7-bit bodies.
POLICY = SMTP.clone(cte_type="7bit")

# Headers Junction writes itself; a message's own headers may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "dkim-signature",
    }
)
ONE_CLICK = "List-Unsubscribe=One-Click"
_FORBIDDEN_IN_HEADERS = re.compile(r"[\r\n\0]")
_HEADER_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 field name: printable ASCII but ':'
# A dot-atom address in ASCII: what addresses normalised on the way in look like, written as
# is. Anything else is checked (and its domain IDNA-encoded) by email-validator first.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_PLAIN_ADDRESS = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@{_LABEL}(?:\.{_LABEL})+")
_MAX_LINE = 998  # RFC 5322: longer lines get broken by relays


class RenderError(ValueError):
    """This message cannot be built as it is; the text says why and what to change."""


class BadRecipient(RenderError):
    """The recipient's address cannot be written into a message."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    domain: str
    selector: str
    private_key: bytes  # PEM, PKCS#1 or PKCS#8


@dataclass(frozen=True, slots=True)
class Sender:
    """Who sends, prepared once per configuration. Build it with :func:`make_sender`."""

    address: str  # ASCII: the envelope sender (MAIL FROM)
    domain: str  # ASCII: the right-hand side of every Message-ID
    from_line: bytes
    reply_to_line: bytes
    unsubscribe_url: str | None
    dkim: DkimKey | None


@dataclass(frozen=True, slots=True)
class Email:
    data: bytes  # the whole message, CRLF line ends, signed when the sender has a key
    message_id: str  # the Message-ID header's value, with its angle brackets
    recipient: str  # the address for RCPT TO
    smtputf8: bool  # the recipient's address needs SMTPUTF8


def make_sender(
    address: str,
    name: str | None = None,
    reply_to: str | None = None,
    unsubscribe_url: str | None = None,
    dkim_key: DkimKey | None = None,
) -> Sender:
    """The sender's part of every message, folded and encoded once."""
    ascii_address = ascii_mailbox(address, "the from address")
    if name is not None:
        _refuse_line_breaks("the from name", name)
    from_line = _fold("From", Address(display_name=name or "", addr_spec=ascii_address))
    reply_to_line = b""
    if reply_to is not None:
        reply_to_line = _fold("Reply-To", Address(addr_spec=ascii_mailbox(reply_to, "reply-to")))
    return Sender(
        address=ascii_address,
        domain=ascii_address.rpartition("@")[2],
        from_line=from_line,
        reply_to_line=reply_to_line,
        unsubscribe_url=unsubscribe_url,
        dkim=dkim_key,
    )


def ascii_mailbox(address: str, what: str) -> str:
    """The address in ASCII (IDNA domain), or RenderError when its local part is not ASCII."""
    try:
        checked = validate_email(address, check_deliverability=False)
    except EmailNotValidError as error:
        raise RenderError(f"{what} is not a valid email address: {error}") from None
    if checked.ascii_email is None:
        raise RenderError(f"{what} must have an ASCII local part (before the @)")
    return str(checked.ascii_email)


def key_digest(idempotency_key: str) -> str:
    """32 hex digits naming a message for good: the Message-ID's left part, and the ``{key}``
    of unsubscribe links (an endpoint can recompute it from the message's idempotency key)."""
    return hashlib.sha256(idempotency_key.encode("utf-8")).hexdigest()[:32]


def message_id(idempotency_key: str, domain: str) -> str:
    return f"<{key_digest(idempotency_key)}@{domain}>"


def render(
    sender: Sender,
    *,
    to: str,
    content: Mapping[str, Any],
    idempotency_key: str,
    message_number: int,
    transactional: bool,
    headers: Mapping[str, str],
    now: datetime,
) -> Email:
    """One message, ready for DATA. ``message_number`` is Junction's id of the message (the
    ``{message_id}`` of unsubscribe links); ``now`` is its Date."""
    subject = content.get("subject")
    if not isinstance(subject, str) or not subject:
        raise RenderError("an email needs a subject (content.subject)")
    _refuse_line_breaks("the subject", subject)
    text, html = content.get("text") or None, content.get("html") or None
    if text is None and html is None:
        raise RenderError("an email needs a text or an html body (content.text, content.html)")
    if not isinstance(text, str | None) or not isinstance(html, str | None):
        raise RenderError("content.text and content.html must be strings")

    recipient, smtputf8 = _recipient(to)
    digest = key_digest(idempotency_key)
    mid = f"<{digest}@{sender.domain}>"

    extra = _extra_headers(headers)
    reply_to_line = sender.reply_to_line
    if "reply-to" in extra:
        reply_to_line = _line(*extra.pop("reply-to"))
    unsubscribe = extra.pop("list-unsubscribe", (None, None))[1]
    one_click = extra.pop("list-unsubscribe-post", (None, None))[1]
    if unsubscribe is None and not transactional:
        if sender.unsubscribe_url is None:
            raise RenderError(
                "marketing email needs an unsubscribe link: set unsubscribe_url in the smtp "
                "provider's configuration (with {message_id} and {key}), send the message "
                "with a List-Unsubscribe header, or send it as transactional"
            )
        unsubscribe = (
            "<" + sender.unsubscribe_url.format(message_id=message_number, key=digest) + ">"
        )
    if unsubscribe is not None and one_click is None and "<https://" in unsubscribe:
        one_click = ONE_CLICK

    lines = [
        sender.from_line,
        reply_to_line,
        b"To: " + recipient.encode("utf-8") + b"\r\n",
        _subject_line(subject),
        _date_line(now),
        b"Message-ID: " + mid.encode("ascii") + b"\r\n",
    ]
    if unsubscribe is not None:
        lines.append(_line("List-Unsubscribe", unsubscribe))
    if one_click is not None:
        lines.append(_line("List-Unsubscribe-Post", one_click))
    lines.extend(_line(name, value) for name, value in extra.values())
    lines.append(b"MIME-Version: 1.0\r\n")
    lines.append(_body(text, html))
    data = b"".join(lines)
    if sender.dkim is not None:
        data = (
            _dkim_signature(
                data,
                sender.dkim,
                bool(reply_to_line),
                unsubscribe is not None,
                one_click is not None,
            )
            + data
        )
    return Email(data=data, message_id=mid, recipient=recipient, smtputf8=smtputf8)


@lru_cache(maxsize=8)
def _date_line(now: datetime) -> bytes:
    # A batch is sent within the same few seconds: format each second once.
    return b"Date: " + format_datetime(now).encode("ascii") + b"\r\n"


def _refuse_line_breaks(what: str, value: str) -> None:
    if _FORBIDDEN_IN_HEADERS.search(value):
        raise RenderError(f"{what} contains a line break or NUL, which would inject headers")


def _recipient(to: str) -> tuple[str, bool]:
    """(address for the envelope and the To line, whether it needs SMTPUTF8)."""
    if len(to) <= 254 and _PLAIN_ADDRESS.fullmatch(to):
        return to, False
    try:
        checked = validate_email(to, check_deliverability=False)
    except EmailNotValidError as error:
        raise BadRecipient(f"cannot send to {to!r}: {error}") from None
    if checked.ascii_email is not None:
        return str(checked.ascii_email), False
    # A non-ASCII local part has no ASCII form: the server must take it as UTF-8.
    return f"{checked.local_part}@{checked.ascii_domain}", True


def _extra_headers(headers: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """The message's own headers by lower-case name, checked."""
    found: dict[str, tuple[str, str]] = {}
    for name, value in headers.items():
        if not _HEADER_NAME.fullmatch(name):
            raise RenderError(f"{name!r} is not a valid header name")
        if name.lower() in RESERVED_HEADERS:
            raise RenderError(f"the {name} header is set by Junction and cannot be given")
        if not isinstance(value, str):
            raise RenderError(f"the {name} header's value must be a string")
        _refuse_line_breaks(f"the {name} header", value)
        found[name.lower()] = (name, value)
    return found


def _line(name: str, value: str) -> bytes:
    # ASCII is written as given: folding is optional below 998 characters, and can only harm
    # values such as URLs. Anything else is encoded by the email package.
    if value.isascii() and len(name) + len(value) + 2 <= _MAX_LINE:
        return f"{name}: {value}\r\n".encode("ascii")
    return _fold(name, value)


def _fold(name: str, value: Any) -> bytes:
    folded: str = POLICY.header_factory(name, value).fold(policy=POLICY)
    return folded.encode("ascii")


@lru_cache(maxsize=256)
def _subject_line(subject: str) -> bytes:
    # A short printable ASCII subject comes out of the email package unchanged: skip it.
    if len(subject) <= 69 and subject.isascii() and subject.isprintable() and "=?" not in subject:
        return f"Subject: {subject}\r\n".encode("ascii")
    return _fold("Subject", subject)


@lru_cache(maxsize=64)
def _body(text: str | None, html: str | None) -> bytes:
    """Content-Type, Content-Transfer-Encoding and the encoded parts, from the blank line on.

    Written directly rather than through the email package, which costs milliseconds a
    message (measured: most of the send path's time). A part that is already 7-bit (ASCII, no
    NUL, lines of at most 998 characters) is sent unencoded as ``7bit``; any other is
    quoted-printable, encoded in C by binascii (which costs about 25 ns a byte: ~100 µs for a
    typical personalised email, when every body differs). The boundary starts with "=_",
    which quoted-printable never produces, and is a hash of both parts; a 7-bit part that
    contains it anyway is quoted-printable. Cached: the same content sent to many people is
    encoded once.
    """
    plain = text if text is not None else html_to_text(html or "")
    if html is None:
        return _part(b"text/plain", plain, None)
    boundary = "=_jn" + hashlib.sha256(f"{plain}\0{html}".encode()).hexdigest()[:28]
    mark = b"--" + boundary.encode("ascii")
    return b"".join(
        [
            b'Content-Type: multipart/alternative; boundary="',
            boundary.encode("ascii"),
            b'"\r\n',
            b"\r\n",
            mark,
            b"\r\n",
            _part(b"text/plain", plain, mark),
            b"\r\n",
            mark,
            b"\r\n",
            _part(b"text/html", html, mark),
            b"\r\n",
            mark,
            b"--\r\n",
        ]
    )


def _part(content_type: bytes, value: str, mark: bytes | None) -> bytes:
    """One part's Content-Type and Content-Transfer-Encoding lines, blank line, and body
    (ending in CRLF); ``mark`` is the multipart boundary line, which the body must not hold."""
    head = b"Content-Type: " + content_type + b'; charset="utf-8"\r\n'
    lines = value.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if value.isascii() and "\0" not in value and max(map(len, lines)) <= _MAX_LINE:
        data = "\r\n".join(lines).encode("ascii")
        if mark is None or mark not in data:
            end = b"" if data.endswith(b"\r\n") else b"\r\n"
            return head + b"Content-Transfer-Encoding: 7bit\r\n\r\n" + data + end
    encoded = binascii.b2a_qp("\r\n".join(lines).encode("utf-8"), istext=True)
    # b2a_qp breaks long lines with "=\n" unless the text's own line ends are CRLF.
    if b"\r\n" not in encoded:
        encoded = encoded.replace(b"=\n", b"=\r\n")
    end = b"" if encoded.endswith(b"\r\n") else b"\r\n"
    return head + b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + encoded + end


def _dkim_signature(
    data: bytes, key: DkimKey, reply_to: bool, unsubscribe: bool, one_click: bool
) -> bytes:
    signed = [b"from", b"to", b"subject", b"date", b"message-id"]
    if reply_to:
        signed.append(b"reply-to")
    if unsubscribe:
        signed.append(b"list-unsubscribe")
    if one_click:
        signed.append(b"list-unsubscribe-post")
    signed += [b"mime-version", b"content-type"]
    # dkimpy signs in pure Python: about 10 ms of CPU for a 2048-bit key (docs/channels/email.md).
    signature = dkim.sign(
        data,
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=signed,
    )
    return bytes(signature)


# --- HTML to plain text ------------------------------------------------------------------

_HIDDEN = frozenset({"head", "title", "script", "style", "template", "noscript"})
_BLOCKS = frozenset(
    {
        "p",
        "div",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "ul",
        "ol",
        "table",
        "blockquote",
        "section",
        "article",
        "header",
        "footer",
        "pre",
        "hr",
    }
)
_LINES = frozenset({"tr", "li", "dt", "dd"})
_WHITESPACE = re.compile(r"\s+")
_BLANK_LINES = re.compile(r"\n{3,}")


class _PlainText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0
        self._links: list[tuple[str, int]] = []  # (href, where its text starts in parts)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self._hidden += 1
        elif tag == "body":
            self._hidden = 0  # a <head> left open ends here
        elif tag == "br":
            self.parts.append("\n")
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag in _LINES:
            self.parts.append("\n- " if tag == "li" else "\n")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and not self._hidden:
                self.parts.append(alt)
        elif tag == "a":
            self._links.append((dict(attrs).get("href") or "", len(self.parts)))

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self._hidden = max(0, self._hidden - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.parts[start:]).strip()
            # Keep where a link goes unless its text already says it.
            if href.startswith(("http://", "https://", "mailto:")) and href not in label:
                shown = href.removeprefix("mailto:")
                if shown != label:
                    self.parts.append(f" ({shown})")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(_WHITESPACE.sub(" ", data))


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML body: paragraphs, list items and line breaks
    kept, links written out, scripts and styles dropped."""
    parser = _PlainText()
    parser.feed(html)
    parser.close()
    lines = (line.strip() for line in "".join(parser.parts).split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip() + "\n"
