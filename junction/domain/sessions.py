"""Chat apps' customer-service windows.

WhatsApp (and Messenger) let a business send free text only within 24 hours of the person's
last message to it; outside that window only an approved template may go. A free-text send
outside the window is refused with the reason, never silently dropped.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from junction.errors import FieldError

WINDOW_HOURS = {"whatsapp": 24, "messenger": 24}
FIX = {
    "whatsapp": "send an approved template instead",
    "messenger": "send it with a message tag that allows it, such as POST_PURCHASE_UPDATE",
}


def window_open(last_inbound: datetime | None, now: datetime, hours: int) -> bool:
    return last_inbound is not None and now - last_inbound < timedelta(hours=hours)


def check_session(
    channel: str, content: dict[str, Any], last_inbound: datetime | None, now: datetime
) -> list[FieldError]:
    hours = WINDOW_HOURS.get(channel)
    # WhatsApp's approved templates and Messenger's message tags may go outside the window.
    allowed = "template" in content or "tag" in content
    if hours is None or allowed or window_open(last_inbound, now, hours):
        return []
    since = (
        f"their last message was at {last_inbound.isoformat()}"
        if last_inbound
        else "they have never written"
    )
    return [
        FieldError(
            "content.text",
            f"{channel} allows free text only within {hours} h of the person's last message "
            f"({since}); {FIX[channel]}",
        )
    ]
