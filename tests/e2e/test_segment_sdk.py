"""Segment's own Python SDK, pointed at a running Junction, lands every call as sent."""

from __future__ import annotations

from datetime import UTC, datetime

from segment.analytics import Client
from sqlalchemy import select

from junction.api.app import create_app
from junction.store import contacts as store_contacts
from junction.store.tables import contacts, events
from tests.e2e.server import serving


def test_identify_track_and_batches_from_the_segment_sdk(settings, database, clock, tenant) -> None:
    failures: list[Exception] = []
    with serving(create_app(settings, database, clock)) as url:
        sdk = Client(
            tenant.key,
            host=url,
            on_error=lambda error, _batch: failures.append(error),
            upload_size=50,
            max_retries=0,
            gzip=True,
        )
        sdk.identify(
            "ada",
            {
                "email": "ada@example.com",
                "phone": "+33612345678",
                "timezone": "Europe/Paris",
                "plan": "pro",
            },
        )
        sdk.alias("anon-7", "ada")
        when = datetime(2026, 11, 19, 8, 30, tzinfo=UTC)
        for index in range(120):  # more than two uploads of 50
            sdk.track(
                "ada",
                "Product Viewed",
                {"sku": f"SKU-{index}"},
                timestamp=when,
                message_id=f"view-{index}",
            )
        sdk.page(anonymous_id="anon-7", name="Pricing", properties={"path": "/pricing"})
        sdk.flush()
        sdk.join()
    assert failures == []

    with database.read() as conn:
        ada = store_contacts.get_contact(conn, tenant.id, "ada")
        stored = conn.execute(
            select(
                events.c.type,
                events.c.name,
                events.c.message_id,
                events.c.timestamp,
                events.c.context,
            ).where(events.c.workspace_id == tenant.id)
        ).all()
        people = conn.execute(select(contacts.c.user_id)).scalars().all()
    assert people == ["ada"]  # the anonymous page view landed on her too
    assert ada["traits"]["plan"] == "pro"
    assert {a["value"] for a in ada["addresses"]} == {"ada@example.com", "+33612345678"}
    assert ada["anonymousIds"] == ["anon-7"]
    views = [row for row in stored if row.type == "track"]
    assert sorted(row.message_id for row in views) == sorted(f"view-{i}" for i in range(120))
    assert {row.timestamp for row in views} == {when}
    assert views[0].context["library"]["name"] == "analytics-python"
    assert sorted(row.type for row in stored if row.type != "track") == [
        "alias",
        "identify",
        "page",
    ]
