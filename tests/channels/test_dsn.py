"""Bounces as mail servers send them (RFC 3464), read into delivery updates."""

from __future__ import annotations

from junction.channels.dsn import parse_dsn

DSN = b"""\
From: MAILER-DAEMON@mx.example.net
To: bounces@junction.example.com
Subject: Undelivered Mail Returned to Sender
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

This is the mail system. Your message could not be delivered.

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.net
Arrival-Date: Mon, 23 Nov 2026 10:00:00 +0000

Final-Recipient: rfc822; ada@example.net
Original-Recipient: rfc822;ada@example.net
Action: failed
Status: %(status)s
Diagnostic-Code: smtp; 550 5.1.1 <ada@example.net>: Recipient address rejected

--B
Content-Type: %(original_type)s

Message-ID: <4f1c9a2e@junction.example.com>
From: Acme <news@acme.example>
To: ada@example.net
Subject: Your receipt

--B--
"""


def dsn(status: str = "5.1.1", original_type: str = "text/rfc822-headers") -> bytes:
    return DSN % {b"status": status.encode(), b"original_type": original_type.encode()}


def test_a_hard_bounce_names_the_original_message() -> None:
    (update,) = parse_dsn(dsn())
    assert update.provider_message_id == "<4f1c9a2e@junction.example.com>"
    assert update.status == "bounced"
    assert update.details == {"recipient": "ada@example.net", "status": "5.1.1"}
    assert "Recipient address rejected" in (update.reason or "")


def test_a_soft_failure_is_a_failure_not_a_bounce() -> None:
    (update,) = parse_dsn(dsn(status="4.2.2"))
    assert update.status == "failed"


def test_the_original_may_come_whole() -> None:
    (update,) = parse_dsn(dsn(original_type="message/rfc822"))
    assert update.provider_message_id == "<4f1c9a2e@junction.example.com>"


def test_a_plain_message_is_not_a_bounce() -> None:
    assert parse_dsn(b"From: a@b.c\r\nSubject: hello\r\n\r\nhi\r\n") == []
