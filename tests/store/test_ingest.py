"""Storing tracking calls: contacts, identities, idempotency, erasure — on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from sqlalchemy import func, select

from junction.clock import VirtualClock
from junction.domain.tracking import Alias, AnyMessage, Identify, Page, Track
from junction.store import contacts as store_contacts
from junction.store.database import Database
from junction.store.ingest import Batch, IngestResult, ingest
from junction.store.tables import addresses, contact_aliases, contacts, events
from tests.conftest import SECRET, Tenant, make_tenant


def send(db: Database, clock: VirtualClock, tenant: Tenant, *messages: AnyMessage) -> IngestResult:
    with db.write() as conn:
        return ingest(conn, tenant.id, Batch(list(messages), clock.now()), SECRET)


def count(db: Database, table, *where) -> int:  # type: ignore[no-untyped-def]
    with db.read() as conn:
        return conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def profile(db: Database, tenant: Tenant, user_id: str) -> dict:
    with db.read() as conn:
        return store_contacts.get_contact(conn, tenant.id, user_id)


def test_identify_creates_a_contact_with_traits_and_addresses(database, clock, tenant) -> None:
    send(
        database,
        clock,
        tenant,
        Identify(
            user_id="ada",
            traits={
                "email": "ada@example.com",
                "phone": "+33612345678",
                "timezone": "Europe/Paris",
                "locale": "fr",
                "country": "FR",
                "plan": "pro",
            },
        ),
    )
    ada = profile(database, tenant, "ada")
    assert ada["traits"]["plan"] == "pro"
    assert (ada["timezone"], ada["locale"], ada["country"]) == ("Europe/Paris", "fr", "FR")
    assert {(a["kind"], a["value"], a["status"]) for a in ada["addresses"]} == {
        ("email", "ada@example.com", "active"),
        ("phone", "+33612345678", "active"),
    }
    assert [e["type"] for e in ada["latestEvents"]] == ["identify"]


def test_traits_merge_and_a_new_email_replaces_the_old(database, clock, tenant) -> None:
    send(
        database, clock, tenant, Identify(user_id="ada", traits={"email": "a@x.io", "plan": "free"})
    )
    send(database, clock, tenant, Identify(user_id="ada", traits={"email": "ada@y.io", "age": 36}))
    ada = profile(database, tenant, "ada")
    assert ada["traits"] == {"email": "ada@y.io", "plan": "free", "age": 36}
    assert [a["value"] for a in ada["addresses"]] == ["ada@y.io"]


def test_identifying_the_same_email_keeps_its_status(database, clock, tenant) -> None:
    send(database, clock, tenant, Identify(user_id="ada", traits={"email": "a@x.io"}))
    with database.write() as conn:
        conn.execute(addresses.update().values(status="bounced"))
    send(
        database, clock, tenant, Identify(user_id="ada", traits={"email": "a@x.io", "plan": "pro"})
    )
    assert [a["status"] for a in profile(database, tenant, "ada")["addresses"]] == ["bounced"]


def test_track_for_an_unknown_user_creates_a_bare_contact(database, clock, tenant) -> None:
    send(database, clock, tenant, Track(user_id="bob", event="Signed Up", properties={"via": "ad"}))
    bob = profile(database, tenant, "bob")
    assert bob["traits"] == {}
    assert bob["latestEvents"][0]["name"] == "Signed Up"
    assert bob["latestEvents"][0]["properties"] == {"via": "ad"}


def test_absent_documents_are_sql_null(database, clock, tenant) -> None:
    send(database, clock, tenant, Track(user_id="bob", event="Signed Up"))
    assert count(database, events, events.c.traits.is_(None), events.c.context.is_(None)) == 1


def test_times_round_trip_as_utc_instants(database, clock, tenant) -> None:
    sent = datetime(2026, 11, 20, 10, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    send(database, clock, tenant, Track(user_id="bob", event="X", timestamp=sent))
    with database.read() as conn:
        stored = conn.execute(select(events.c.timestamp, events.c.received_at)).one()
    assert stored.timestamp == sent and stored.timestamp.tzinfo == UTC
    assert stored.received_at == clock.now()


def test_a_retried_message_id_is_stored_once(database, clock, tenant) -> None:
    call = Track(user_id="ada", event="Order Completed", message_id="m-1")
    send(database, clock, tenant, call, call)
    clock.advance(timedelta(minutes=5))
    send(database, clock, tenant, call)
    assert count(database, events) == 1


def test_message_ids_are_per_workspace(database, clock, tenant) -> None:
    other = make_tenant(database, clock, "globex")
    call = Track(user_id="ada", event="Order Completed", message_id="m-1")
    send(database, clock, tenant, call)
    send(database, clock, other, call)
    assert count(database, events, events.c.workspace_id == tenant.id) == 1
    assert count(database, events, events.c.workspace_id == other.id) == 1


def test_an_anonymous_visitor_is_merged_on_identify(database, clock, tenant) -> None:
    send(
        database,
        clock,
        tenant,
        Page(anonymous_id="anon-1", name="Pricing"),
        Identify(anonymous_id="anon-1", traits={"email": "visitor@x.io", "source": "ad"}),
    )
    assert count(database, contacts) == 1
    send(
        database,
        clock,
        tenant,
        Identify(user_id="ada", anonymous_id="anon-1", traits={"source": "organic"}),
    )
    assert count(database, contacts) == 1
    ada = profile(database, tenant, "ada")
    assert ada["anonymousIds"] == ["anon-1"]
    assert ada["traits"] == {"email": "visitor@x.io", "source": "organic"}
    assert [a["value"] for a in ada["addresses"]] == ["visitor@x.io"]
    assert {e["type"] for e in ada["latestEvents"]} == {"page", "identify"}
    # Later anonymous calls from that browser land on Ada.
    send(database, clock, tenant, Track(anonymous_id="anon-1", event="Clicked"))
    assert "Clicked" in [e["name"] for e in profile(database, tenant, "ada")["latestEvents"]]


def test_a_shared_device_points_to_the_newest_user_without_moving_history(
    database, clock, tenant
) -> None:
    send(database, clock, tenant, Identify(user_id="ada", anonymous_id="tablet"))
    send(database, clock, tenant, Identify(user_id="bob", anonymous_id="tablet"))
    send(database, clock, tenant, Track(anonymous_id="tablet", event="Watched"))
    assert count(database, contacts) == 2
    assert profile(database, tenant, "bob")["anonymousIds"] == ["tablet"]
    assert [e["type"] for e in profile(database, tenant, "ada")["latestEvents"]] == ["identify"]
    assert "Watched" in [e["name"] for e in profile(database, tenant, "bob")["latestEvents"]]


def test_alias_merges_an_old_user_id_into_the_new_one(database, clock, tenant) -> None:
    send(
        database,
        clock,
        tenant,
        Identify(user_id="old-42", traits={"email": "ada@x.io", "plan": "free"}),
        Track(user_id="old-42", event="Order Completed"),
    )
    send(database, clock, tenant, Identify(user_id="ada", traits={"plan": "pro"}))
    send(database, clock, tenant, Alias(user_id="ada", previous_id="old-42"))
    assert count(database, contacts) == 1
    ada = profile(database, tenant, "ada")
    assert ada["aliases"] == ["old-42"]
    assert ada["traits"] == {"email": "ada@x.io", "plan": "pro"}
    # The old id still finds her, and late calls with it land on her.
    assert profile(database, tenant, "old-42")["userId"] == "ada"
    send(database, clock, tenant, Track(user_id="old-42", event="Late"))
    assert count(database, contacts) == 1
    assert "Late" in [e["name"] for e in profile(database, tenant, "ada")["latestEvents"]]


def test_alias_before_the_previous_id_is_seen_still_routes_it(database, clock, tenant) -> None:
    send(database, clock, tenant, Alias(user_id="ada", previous_id="anon-9"))
    send(database, clock, tenant, Track(anonymous_id="anon-9", event="Came Back"))
    assert count(database, contacts) == 1
    assert profile(database, tenant, "ada")["latestEvents"][0]["name"] == "Came Back"


def test_erasure_removes_every_row_and_blocks_late_events(database, clock, tenant) -> None:
    send(
        database,
        clock,
        tenant,
        Identify(user_id="ada", anonymous_id="anon-1", traits={"email": "ada@x.io"}),
        Track(user_id="ada", event="Order Completed"),
    )
    with database.write() as conn:
        store_contacts.erase_contact(conn, tenant.id, "ada", clock.now(), SECRET)
    for table in (contacts, events, addresses, contact_aliases):
        assert count(database, table) == 0
    result = send(
        database,
        clock,
        tenant,
        Track(user_id="ada", event="Late"),
        Page(anonymous_id="anon-1", name="Home"),
    )
    assert result.suppressed == 2
    assert count(database, contacts) == 0 and count(database, events) == 0


def test_identifying_an_erased_person_again_brings_them_back(database, clock, tenant) -> None:
    send(database, clock, tenant, Identify(user_id="ada", traits={"plan": "pro"}))
    with database.write() as conn:
        store_contacts.erase_contact(conn, tenant.id, "ada", clock.now(), SECRET)
    send(
        database,
        clock,
        tenant,
        Identify(user_id="ada", traits={"plan": "new"}),
        Track(user_id="ada", event="Signed Up"),
    )
    ada = profile(database, tenant, "ada")
    assert ada["traits"] == {"plan": "new"}
    assert len(ada["latestEvents"]) == 2


def test_a_device_moves_to_the_user_who_registers_it(database, clock, tenant) -> None:
    with database.write() as conn:
        store_contacts.register_device(
            conn, tenant.id, "ada", "push", "tok-1", {"platform": "ios"}, clock.now()
        )
        store_contacts.register_device(
            conn, tenant.id, "bob", "push", "tok-1", {"platform": "ios"}, clock.now()
        )
    assert profile(database, tenant, "ada")["addresses"] == []
    assert [a["value"] for a in profile(database, tenant, "bob")["addresses"]] == ["tok-1"]
