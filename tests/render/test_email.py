"""Building an email: the bytes, read back with the stdlib parser; no server needed."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest

from junction.render.email import (
    BadRecipient,
    RenderError,
    html_to_text,
    make_sender,
    message_id,
    render,
)

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
SENDER = make_sender(
    "news@acme.example", "Acme", unsubscribe_url="https://acme.example/u/{message_id}/{key}"
)


def build(
    content: dict[str, Any] | None = None,
    to: str = "ada@x.io",
    transactional: bool = True,
    headers: dict[str, str] | None = None,
    key: str = "api:1",
    sender: Any = SENDER,
) -> tuple[Any, EmailMessage]:
    built = render(
        sender,
        to=to,
        content=content or {"subject": "Hi", "text": "Hello"},
        idempotency_key=key,
        message_number=42,
        transactional=transactional,
        headers=headers or {},
        now=NOW,
    )
    parsed: EmailMessage = email.message_from_bytes(built.data, policy=email.policy.default)
    return built, parsed


def test_text_alone_is_one_plain_part_with_the_headers() -> None:
    built, message = build()

    assert message.get_content_type() == "text/plain"
    assert message["From"] == "Acme <news@acme.example>"
    assert message["Date"].datetime == NOW
    assert message["Message-ID"] == built.message_id == message_id("api:1", "acme.example")
    assert message["MIME-Version"] == "1.0"
    assert "Reply-To" not in message
    assert not message.defects
    assert b"\r\n" in built.data and b"\n" not in built.data.replace(b"\r\n", b"")


def test_the_message_id_depends_on_the_key_only() -> None:
    first, _ = build(key="api:a", content={"subject": "One", "text": "1"})
    same, _ = build(key="api:a", content={"subject": "Two", "text": "2"}, to="bob@x.io")
    other, _ = build(key="api:b")
    assert first.message_id == same.message_id != other.message_id


def test_long_and_non_ascii_headers_are_encoded_and_folded() -> None:
    subject = "Ihre Bestellung über " + "Bücher und Hefte, " * 12 + "ist unterwegs"
    built, message = build({"subject": subject, "text": "ok"})

    assert message["Subject"] == subject
    assert built.data.isascii()
    assert max(len(line) for line in built.data.split(b"\r\n")) <= 78


def test_a_reply_to_header_of_the_message_replaces_the_configured_one() -> None:
    sender = make_sender("news@acme.example", reply_to="help@acme.example")
    _, configured = build(sender=sender)
    _, given = build(sender=sender, headers={"Reply-To": "sales@acme.example"})

    assert configured["Reply-To"] == "help@acme.example"
    assert given.get_all("Reply-To") == ["sales@acme.example"]


def test_marketing_mail_gets_the_configured_unsubscribe_link() -> None:
    built, message = build(transactional=False, key="api:m")

    digest = built.message_id[1:33]
    assert message["List-Unsubscribe"] == f"<https://acme.example/u/42/{digest}>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_one_click_is_claimed_only_for_an_https_link() -> None:
    _, message = build(
        transactional=False, headers={"List-Unsubscribe": "<mailto:unsub@acme.example>"}
    )
    assert message["List-Unsubscribe"] == "<mailto:unsub@acme.example>"
    assert "List-Unsubscribe-Post" not in message


def test_marketing_mail_without_any_unsubscribe_link_is_refused() -> None:
    with pytest.raises(RenderError, match="unsubscribe_url"):
        build(transactional=False, sender=make_sender("news@acme.example"))


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Tag": "a\r\nBcc: eve@x.io"},
        {"X-Tag": "a\nb"},
        {"X-Tag": "a\rb"},
        {"X-Tag": "a\0b"},
        {"X Tag": "a"},
        {"X-Tag:": "a"},
        {"Subject": "another"},
        {"content-type": "text/html"},
        {"DKIM-Signature": "v=1"},
    ],
)
def test_bad_or_reserved_headers_are_refused(headers: dict[str, str]) -> None:
    with pytest.raises(RenderError):
        build(headers=headers)


@pytest.mark.parametrize("subject", ["Hi\r\nBcc: eve@x.io", "Hi\nX: y", "Hi\rX: y", ""])
def test_a_subject_must_be_one_non_empty_line(subject: str) -> None:
    with pytest.raises(RenderError):
        build({"subject": subject, "text": "x"})


def test_a_message_needs_a_body() -> None:
    with pytest.raises(RenderError, match="text or an html body"):
        build({"subject": "Hi"})


def test_extra_ascii_headers_are_kept_as_given() -> None:
    long_url = "<https://acme.example/unsubscribe?" + "x" * 300 + ">"
    built, message = build(headers={"X-Campaign": "spring-26", "List-Unsubscribe": long_url})
    assert message["X-Campaign"] == "spring-26"
    assert message["List-Unsubscribe"] == long_url  # a URL is never folded or encoded
    assert f"List-Unsubscribe: {long_url}\r\n".encode() in built.data


def test_recipient_addresses() -> None:
    plain, _ = build(to="ada.lovelace+news@x.io")
    idn, _ = build(to="ada@bücher.example")
    utf8, message = build(to="jörg@bücher.example")

    assert (plain.recipient, plain.smtputf8) == ("ada.lovelace+news@x.io", False)
    assert (idn.recipient, idn.smtputf8) == ("ada@xn--bcher-kva.example", False)
    assert (utf8.recipient, utf8.smtputf8) == ("jörg@xn--bcher-kva.example", True)
    assert message["To"] == "jörg@xn--bcher-kva.example"
    for bad in ["not an address", "a@b@c.io", "ada@x.io\r\nBcc: eve@x.io", "ada@"]:
        with pytest.raises(BadRecipient):
            build(to=bad)


def test_the_sender_must_be_ascii_and_valid() -> None:
    with pytest.raises(RenderError):
        make_sender("jörg@acme.example")
    with pytest.raises(RenderError):
        make_sender("news@acme.example", "Acme\r\nBcc: eve@x.io")
    assert make_sender("news@bücher.example").address == "news@xn--bcher-kva.example"


def test_the_same_content_is_encoded_once() -> None:
    content = {"subject": "Weekly", "text": "t", "html": "<p>h</p>"}
    a, _ = build(dict(content), to="a@x.io")
    b, _ = build(dict(content), to="b@x.io")
    body_a = a.data.split(b"MIME-Version: 1.0\r\n", 1)[1]
    body_b = b.data.split(b"MIME-Version: 1.0\r\n", 1)[1]
    assert body_a == body_b  # same parts, same boundary: built once, from the cache


def test_html_to_text() -> None:
    html = """<!doctype html><html><head><title>News</title>
      <style>.x { color: red }</style><script>track()</script></head>
      <body><div>Hello&nbsp;<b>Ada</b>,</div>
      <p>Read   the
         <a href="https://acme.example/post">new post</a> or
         <a href="https://acme.example/">https://acme.example/</a>.<br>Thanks!</p>
      <img src="logo.png" alt="Acme logo">
      <table><tr><td>Total</td><td>12 &euro;</td></tr></table>
      <ol><li>one</li><li>two</li></ol>
      <p><a href="mailto:help@acme.example">help@acme.example</a></p></body></html>"""
    assert html_to_text(html) == (
        "Hello Ada,\n\n"
        "Read the new post (https://acme.example/post) or https://acme.example/.\n"
        "Thanks!\n\n"
        "Acme logo\n\n"
        "Total 12 €\n\n"
        "- one\n- two\n\n"
        "help@acme.example\n"
    )


def test_html_to_text_with_an_unclosed_head() -> None:
    assert html_to_text("<head><title>T</title><body><p>Body</p>") == "Body\n"


@pytest.mark.parametrize(
    "subject",
    [
        "Hi",
        'Re: [list] (x) <y> "q" ; , :',
        "A long subject that the email package folds over two lines at a space, "
        "as RFC 5322 asks of lines longer than 78 characters",
        "x" * 69,
    ],
)
def test_subjects_read_back_as_written(subject: str) -> None:
    _, message = build({"subject": subject, "text": "x"})
    assert message["Subject"] == subject


def _parts(built: Any) -> dict[str, tuple[str, bytes]]:
    """Content type → (Content-Transfer-Encoding, the part's raw body) as written."""
    body = built.data.split(b"MIME-Version: 1.0\r\n", 1)[1]
    found: dict[str, tuple[str, bytes]] = {}
    for chunk in body.split(b"\r\n--=_jn")[1:] or [body]:
        head, _, raw = chunk.partition(b"\r\n\r\n")
        if b"Content-Transfer-Encoding: " not in head:
            continue
        kind = head.split(b"Content-Type: ", 1)[1].split(b";", 1)[0].decode()
        cte = head.split(b"Content-Transfer-Encoding: ", 1)[1].split(b"\r\n", 1)[0].decode()
        found[kind] = (cte, raw)
    return found


def _read_back(message: EmailMessage) -> dict[str, str]:
    """Each part's text as the stdlib parser decodes it (CRLF line ends read as newlines)."""
    return {
        part.get_content_type(): part.get_content().replace("\r\n", "\n")
        for part in message.walk()
        if not part.is_multipart()
    }


def test_an_ascii_body_goes_as_7bit_and_reads_back_the_same() -> None:
    text = "Hello Ada,\n\nYour order = 3 items, 100% paid.\r\n.\n-- \nAcme   \n"
    html = '<p style="color:red">Hello <b>Ada</b> =3D &amp; co</p>\r\n<p>Bye</p>'
    built, message = build({"subject": "Hi", "text": text, "html": html})

    parts = _parts(built)
    assert parts["text/plain"][0] == parts["text/html"][0] == "7bit"
    assert b"Hello Ada,\r\n\r\nYour order = 3 items, 100% paid.\r\n" in parts["text/plain"][1]
    assert not message.defects
    assert _read_back(message) == {
        "text/plain": text.replace("\r\n", "\n"),
        "text/html": html.replace("\r\n", "\n") + "\n",
    }
    assert b"\n" not in built.data.replace(b"\r\n", b"")  # every line end is CRLF

    alone, message = build({"subject": "Hi", "text": "Just text\nline two"})
    assert _parts(alone)["text/plain"][0] == "7bit"
    assert _read_back(message) == {"text/plain": "Just text\nline two\n"}


def test_non_ascii_or_long_lines_still_go_quoted_printable() -> None:
    long_line = "x" * 999
    built, message = build(
        {"subject": "Hi", "text": "Zoë, hello\n", "html": f"<p>{long_line}</p>\n"}
    )
    parts = _parts(built)
    assert parts["text/plain"][0] == parts["text/html"][0] == "quoted-printable"
    assert max(len(line) for line in parts["text/html"][1].split(b"\r\n")) <= 76
    assert _read_back(message)["text/plain"] == "Zoë, hello\n"
    assert _read_back(message)["text/html"] == f"<p>{long_line}</p>\n"

    # 998 characters is still a valid 7-bit line; one part's encoding does not decide the other's.
    built, message = build({"subject": "Hi", "text": "y" * 998, "html": "<p>Zoë</p>"})
    parts = _parts(built)
    assert parts["text/plain"][0] == "7bit" and parts["text/html"][0] == "quoted-printable"
    assert _read_back(message)["text/plain"] == "y" * 998 + "\n"
    assert not message.defects


def test_a_7bit_part_holding_the_boundary_or_a_nul_is_quoted_printable() -> None:
    from junction.render.email import _part

    assert b"7bit" in _part(b"text/plain", "--=_jnabc\n", b"--=_jnxyz")
    assert b"quoted-printable" in _part(b"text/plain", "a\n--=_jnabc--\n", b"--=_jnabc")
    assert b"quoted-printable" in _part(b"text/plain", "a\0b", None)
