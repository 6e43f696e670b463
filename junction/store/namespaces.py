"""What templates see of a contact: ``{{ contact }}``."""

from __future__ import annotations

from typing import Any


def contact_namespace(row: Any) -> dict[str, Any]:
    return {
        **(row.traits or {}),
        "userId": row.user_id,
        "timezone": row.timezone,
        "locale": row.locale,
        "country": row.country,
    }
