"""Reading bounces: RFC 3464 delivery status notifications (DSNs).

A mail server that cannot deliver sends back a ``multipart/report`` with a
``message/delivery-status`` part (one block per recipient: ``Action``, ``Status``,
``Diagnostic-Code``) and the original message or its headers, whose ``Message-ID`` names
the message Junction sent.

    Action: failed,  Status 5.x.x  → bounced (a hard bounce: the address is dead)
    Action: failed,  Status 4.x.x  → failed  (given up after soft failures)
    Action: delivered / relayed    → delivered
    Action: delayed                → nothing yet
"""

from __future__ import annotations

import email
import email.policy
from email.message import Message

from junction.channels.base import DeliveryUpdate


def _original_message_id(report: Message) -> str | None:
    for part in report.walk():
        kind = part.get_content_type()
        if kind == "message/rfc822":
            inner = part.get_payload()
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                return str(inner[0].get("Message-ID", "")).strip() or None
        if kind == "text/rfc822-headers":
            found = email.message_from_string(_text(part)).get("Message-ID")
            if found:
                return str(found).strip()
    return None


def _text(part: Message) -> str:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload.decode("utf-8", "replace")
    return str(part.get_payload())


def parse_dsn(raw: bytes) -> list[DeliveryUpdate]:
    """The delivery updates a DSN carries (empty when it is not a DSN)."""
    report = email.message_from_bytes(raw, policy=email.policy.compat32)
    message_id = _original_message_id(report)
    if message_id is None:
        return []
    updates: list[DeliveryUpdate] = []
    for part in report.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:]:  # the first block is about the whole message
            if not isinstance(block, Message):
                continue
            action = str(block.get("Action", "")).strip().lower()
            status = str(block.get("Status", "")).strip()
            diagnostic = str(block.get("Diagnostic-Code", "")).strip() or None
            recipient = str(block.get("Final-Recipient", "")).partition(";")[2].strip()
            reason = f"{status} {diagnostic or ''}".strip()
            details = {"recipient": recipient, "status": status}
            if action == "failed":
                outcome = "bounced" if status.startswith("5") else "failed"
                updates.append(DeliveryUpdate(message_id, outcome, reason, details))
            elif action in ("delivered", "relayed"):
                updates.append(DeliveryUpdate(message_id, "delivered", reason, details))
    return updates
