"""Journeys over HTTP: saving and versions, validation that names the step, entries and their
rules, pause and archive, per-step counts, exit criteria, branches and splits, profile updates
and webhooks — each on SQLite and PostgreSQL, the clock advanced virtually."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from junction.engine.dispatcher import Dispatcher
from junction.store.database import Database
from junction.store.tables import contacts, journey_runs, journey_versions, journeys, messages

MAIL = {"subject": "Hello", "text": "Good to see you"}
DAY = {"amount": 1, "unit": "days"}


def send(step_id: str, next_step: str | None = None, **content: Any) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "send",
        "channel": "email",
        "content": {**MAIL, **content},
        "next": next_step,
    }


def wait(step_id: str, next_step: str | None = None, **duration: Any) -> dict[str, Any]:
    return {"id": step_id, "type": "wait", "duration": duration or DAY, "next": next_step}


def journey(key: str, steps: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
    return {"key": key, "name": key.title(), "trigger": {"api": True}, "steps": steps, **fields}


def save(client: Any, definition: dict[str, Any], status: int = 201) -> dict[str, Any]:
    answer = client.post("/v1/journeys", json=definition)
    assert answer.status_code == status, answer.text
    body: dict[str, Any] = answer.json()
    return body


def activate(client: Any, definition: dict[str, Any]) -> None:
    save(client, definition)
    answer = client.post(f"/v1/journeys/{definition['key']}/activate")
    assert answer.json()["status"] == "active", answer.text


def identify(client: Any, user_id: str, **traits: Any) -> None:
    answer = client.post("/v1/identify", json={"userId": user_id, "traits": traits})
    assert answer.status_code == 200, answer.text


def track(client: Any, user_id: str, event: str, **properties: Any) -> None:
    body = {"userId": user_id, "event": event, "properties": properties}
    answer = client.post("/v1/track", json=body)
    assert answer.status_code == 200, answer.text


def enter(client: Any, key: str, user_id: str, **context: Any) -> Any:
    return client.post(f"/v1/journeys/{key}/entries", json={"userId": user_id, "context": context})


def entered(client: Any, key: str, user_id: str, **context: Any) -> int:
    answer = enter(client, key, user_id, **context)
    assert answer.status_code == 202, answer.text
    assert answer.json()["entered"] is True
    run_id: int = answer.json()["runId"]
    return run_id


def drain(database: Database, clock: Any) -> None:
    asyncio.run(Dispatcher(database, clock, journey_grace=timedelta(0)).drain())


def runs(database: Database) -> list[Any]:
    with database.read() as conn:
        return list(conn.execute(select(journey_runs).order_by(journey_runs.c.id)))


def run_of(database: Database, run_id: int) -> Any:
    return next(run for run in runs(database) if run.id == run_id)


def sent(database: Database) -> list[Any]:
    with database.read() as conn:
        return list(conn.execute(select(messages).order_by(messages.c.id)))


def count(database: Database, table: Any) -> int:
    with database.read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def contact_id(database: Database, user_id: str) -> int:
    with database.read() as conn:
        found = conn.execute(select(contacts.c.id).where(contacts.c.user_id == user_id))
        return int(found.scalar_one())


# --- saving and versions ---------------------------------------------------------------------

WELCOME = journey(
    "welcome",
    [send("hello", "pause"), wait("pause", "again"), send("again", subject="Still there?")],
)


def test_saving_versions_a_journey_only_when_it_changes(client, database) -> None:
    first = save(client, WELCOME)
    assert (first["version"], first["status"], first["created"]) == (1, "draft", True)
    assert first["steps"] == ["hello", "pause", "again"]
    again = save(client, WELCOME, status=200)
    assert (again["version"], again["created"]) == (1, False)
    changed = journey(
        "welcome",
        [send("hello", "pause"), wait("pause", "again"), send("again", subject="Come back")],
    )
    second = save(client, changed)
    assert (second["version"], second["status"], second["created"]) == (2, "draft", True)
    assert count(database, journey_versions) == 2

    listed = client.get("/v1/journeys").json()["journeys"]
    assert [(j["key"], j["name"], j["status"], j["currentVersion"]) for j in listed] == [
        ("welcome", "Welcome", "draft", 2)
    ]
    shown = client.get("/v1/journeys/welcome").json()
    assert (shown["key"], shown["status"], shown["currentVersion"]) == ("welcome", "draft", 2)
    assert shown["definition"]["steps"][2]["content"]["subject"] == "Come back"
    assert shown["runs"] == {} and shown["steps"] == {} and shown["totals"] == {}
    assert client.get("/v1/journeys/nope").status_code == 404


def test_a_run_stays_on_the_version_it_entered(client, database, clock) -> None:
    activate(client, WELCOME)
    identify(client, "ada", email="ada@x.io")
    identify(client, "bob", email="bob@x.io")
    ada = entered(client, "welcome", "ada")
    changed = journey(
        "welcome",
        [send("hello", "pause"), wait("pause", "again"), send("again", subject="Version two")],
    )
    saved = save(client, changed)
    assert (saved["version"], saved["status"]) == (2, "active")  # the status is kept
    bob = entered(client, "welcome", "bob")
    assert (run_of(database, ada).version, run_of(database, bob).version) == (1, 2)

    clock.advance(timedelta(days=1))
    drain(database, clock)
    subjects = {
        (m.contact_id, m.content["subject"])
        for m in sent(database)
        if m.content["subject"] != "Hello"
    }
    assert subjects == {
        (contact_id(database, "ada"), "Still there?"),
        (contact_id(database, "bob"), "Version two"),
    }
    assert {run.status for run in runs(database)} == {"completed"}


# --- validation ------------------------------------------------------------------------------

SOON = {"amount": 2, "unit": "hours"}
INVALID = {
    "unknown next": (
        "to-nowhere",
        [send("to-nowhere", "nowhere")],
    ),
    "unreachable step": (
        "orphan",
        [send("first"), send("orphan")],
    ),
    "loop with no wait": (
        "check-plan",
        [
            {"id": "tag", "type": "update_profile", "set": {"seen": True}, "next": "check-plan"},
            {
                "id": "check-plan",
                "type": "branch",
                "cases": [{"when": {"trait": "plan", "value": "pro"}, "next": "tag"}],
            },
        ],
    ),
    "wait_for messageOf a non-send step": (
        "wait-open",
        [
            {"id": "tag", "type": "update_profile", "set": {"seen": True}, "next": "wait-open"},
            {
                "id": "wait-open",
                "type": "wait_for",
                "messageOf": "tag",
                "engagement": "opened",
                "timeout": SOON,
            },
        ],
    ),
    "duplicate ids": (
        "twice",
        [send("twice", "other"), {"id": "other", "type": "exit"}, {"id": "twice", "type": "exit"}],
    ),
    "bad operator in where": (
        "wait-paid",
        [
            {
                "id": "wait-paid",
                "type": "wait_for",
                "event": "Order Completed",
                "where": {"total": {"op": "bigger", "value": 10}},
                "timeout": SOON,
            }
        ],
    ),
}


@pytest.mark.parametrize("problem", list(INVALID))
def test_an_invalid_journey_names_the_step_and_saves_nothing(client, database, problem) -> None:
    step, steps = INVALID[problem]
    answer = client.post("/v1/journeys", json=journey("broken", steps))
    assert answer.status_code == 422, answer.text
    body = answer.json()["error"]
    assert body["code"] == "invalid_input"
    assert any(step in error["message"] or step in error["field"] for error in body["errors"]), (
        f"{problem}: no error names the step {step!r}: {body['errors']}"
    )
    assert count(database, journeys) == 0 and count(database, journey_versions) == 0
    assert client.get("/v1/journeys").json() == {"journeys": []}


# --- entries ---------------------------------------------------------------------------------


def test_entries_are_refused_unless_the_journey_is_active(client, database) -> None:
    identify(client, "ada", email="ada@x.io")
    assert enter(client, "nope", "ada").status_code == 404
    save(client, WELCOME)
    unknown = enter(client, "welcome", "nobody")
    assert unknown.status_code == 422
    assert [e["field"] for e in unknown.json()["error"]["errors"]] == ["userId"]
    draft = enter(client, "welcome", "ada")
    assert draft.status_code == 409 and "draft" in draft.text
    client.post("/v1/journeys/welcome/activate")
    client.post("/v1/journeys/welcome/pause")
    paused = enter(client, "welcome", "ada")
    assert paused.status_code == 409 and "paused" in paused.text
    assert client.post("/v1/journeys/welcome/archive").json()["status"] == "archived"
    archived = enter(client, "welcome", "ada")
    assert archived.status_code == 409 and "archived" in archived.text
    assert client.post("/v1/journeys/welcome/resume").status_code == 409
    assert runs(database) == []


def test_once_enters_a_person_a_single_time(client, database) -> None:
    activate(client, journey("tag", [{"id": "mark", "type": "update_profile", "set": {"a": 1}}]))
    identify(client, "ada")
    entered(client, "tag", "ada")
    second = enter(client, "tag", "ada")
    assert second.status_code == 200 and second.json()["entered"] is False
    assert [run.status for run in runs(database)] == ["completed"]


def test_cooldown_enters_again_once_it_has_passed(client, database, clock) -> None:
    cooldown = {"mode": "cooldown", "cooldown": DAY}
    steps = [{"id": "mark", "type": "update_profile", "set": {"a": 1}}]
    activate(client, journey("tag", steps, entry=cooldown))
    identify(client, "ada")
    entered(client, "tag", "ada")
    clock.advance(timedelta(hours=23))
    assert enter(client, "tag", "ada").json() == {
        "entered": False,
        "reason": "the journey's entry rules keep this person out",
    }
    clock.advance(timedelta(hours=1))
    entered(client, "tag", "ada")
    assert len(runs(database)) == 2


def test_every_time_holds_at_most_max_concurrent_runs(client, database, clock) -> None:
    every_time = {"mode": "every_time", "maxConcurrent": 2}
    activate(client, journey("nudge", [wait("hold", amount=1, unit="hours")], entry=every_time))
    identify(client, "ada")
    entered(client, "nudge", "ada")
    entered(client, "nudge", "ada")
    assert enter(client, "nudge", "ada").json()["entered"] is False
    clock.advance(timedelta(hours=1))
    drain(database, clock)
    assert [run.status for run in runs(database)] == ["completed", "completed"]
    entered(client, "nudge", "ada")
    assert [run.status for run in runs(database)] == ["completed", "completed", "waiting"]


def test_a_paused_journey_enters_nobody_from_events(client, database, clock) -> None:
    signed_up = journey("signup", [send("hello")], trigger={"event": "Signed Up"})
    activate(client, signed_up)
    assert client.post("/v1/journeys/signup/pause").json()["status"] == "paused"
    identify(client, "ada", email="ada@x.io")
    track(client, "ada", "Signed Up")
    drain(database, clock)
    assert runs(database) == [] and sent(database) == []

    assert client.post("/v1/journeys/signup/resume").json()["status"] == "active"
    drain(database, clock)
    assert runs(database) == []  # an event tracked while paused is not replayed
    track(client, "ada", "Signed Up")
    drain(database, clock)
    assert [run.status for run in runs(database)] == ["completed"]
    assert [m.to_address for m in sent(database)] == ["ada@x.io"]


def test_archiving_ends_the_runs_that_wait(client, database, clock) -> None:
    activate(client, WELCOME)
    identify(client, "ada", email="ada@x.io")
    identify(client, "bob", email="bob@x.io")
    entered(client, "welcome", "ada")
    entered(client, "welcome", "bob")
    assert [run.status for run in runs(database)] == ["waiting", "waiting"]
    assert client.post("/v1/journeys/welcome/archive").json()["status"] == "archived"
    assert [(run.status, run.wake_at) for run in runs(database)] == [("exited", None)] * 2
    clock.advance(timedelta(days=2))
    drain(database, clock)
    assert len(sent(database)) == 2  # the two "hello"s; no "again"
    shown = client.get("/v1/journeys/welcome").json()
    assert (shown["status"], shown["runs"]) == ("archived", {"exited": 2})
    assert "waiting" not in shown["steps"]["pause"]
    changed = journey("welcome", [send("hello")])
    assert client.post("/v1/journeys", json=changed).status_code == 409


# --- what runs do ----------------------------------------------------------------------------


def test_per_step_counts(client, database, clock) -> None:
    activate(client, WELCOME)
    identify(client, "ada", email="ada@x.io")
    identify(client, "bob", plan="free")  # no email address: his sends fail, his run goes on
    entered(client, "welcome", "ada")
    entered(client, "welcome", "bob")
    drain(database, clock)
    shown = client.get("/v1/journeys/welcome").json()
    assert shown["runs"] == {"waiting": 2}
    assert shown["totals"] == {"entered": 2}
    assert shown["steps"] == {
        "hello": {"entered": 2, "sent": 1, "failed": 1},
        "pause": {"entered": 2, "waiting": 2},
    }

    clock.advance(timedelta(days=1))
    drain(database, clock)
    shown = client.get("/v1/journeys/welcome").json()
    assert shown["runs"] == {"completed": 2}
    assert shown["totals"] == {"entered": 2, "completed": 2}
    assert shown["steps"] == {
        "hello": {"entered": 2, "sent": 1, "failed": 1},
        "pause": {"entered": 2},
        "again": {"entered": 2, "sent": 1, "failed": 1, "completed": 2},
    }
    assert [(m.to_address, m.status) for m in sent(database)] == [("ada@x.io", "sent")] * 2


def test_exit_criteria_end_a_run_wherever_it_waits(client, database, clock) -> None:
    definition = journey(
        "trial",
        [
            {
                "id": "wait-click",
                "type": "wait_for",
                "event": "Clicked",
                "timeout": {"amount": 2, "unit": "days"},
                "onEvent": "cool-off",
                "onTimeout": None,
            },
            wait("cool-off", "nudge", amount=2, unit="days"),
            send("nudge"),
        ],
        exit=[{"event": "Cancelled", "where": {"reason": {"op": "ne", "value": "test"}}}],
    )
    activate(client, definition)
    identify(client, "ada", email="ada@x.io")
    identify(client, "bob", email="bob@x.io")
    ada = entered(client, "trial", "ada")
    bob = entered(client, "trial", "bob")
    track(client, "bob", "Clicked")
    drain(database, clock)
    assert (run_of(database, ada).step, run_of(database, bob).step) == ("wait-click", "cool-off")

    track(client, "ada", "Cancelled", reason="test")  # not what the criterion looks for
    drain(database, clock)
    assert {run.status for run in runs(database)} == {"waiting"}
    track(client, "ada", "Cancelled")
    track(client, "bob", "Cancelled", reason="too expensive")
    drain(database, clock)
    for run in runs(database):
        assert (run.status, run.wake_at, run.state["exit_reason"]) == (
            "exited",
            None,
            "exit criterion",
        )
    clock.advance(timedelta(days=3))
    drain(database, clock)
    assert sent(database) == []
    shown = client.get("/v1/journeys/trial").json()
    assert shown["totals"]["exited"] == 2
    assert shown["steps"]["wait-click"]["exited"] == 1
    assert shown["steps"]["cool-off"]["exited"] == 1


def test_a_branch_on_a_trait(client, database) -> None:
    definition = journey(
        "by-plan",
        [
            {
                "id": "which-plan",
                "type": "branch",
                "cases": [{"when": {"trait": "plan", "op": "eq", "value": "pro"}, "next": "pro"}],
                "default": "free",
            },
            send("pro", subject="Thanks for going pro"),
            send("free", subject="Go pro"),
        ],
    )
    activate(client, definition)
    identify(client, "ada", email="ada@x.io", plan="pro")
    identify(client, "bob", email="bob@x.io", plan="free")
    identify(client, "cy", email="cy@x.io")  # no plan at all: the default
    for user in ("ada", "bob", "cy"):
        entered(client, "by-plan", user)
    assert sorted((m.to_address, m.content["subject"]) for m in sent(database)) == [
        ("ada@x.io", "Thanks for going pro"),
        ("bob@x.io", "Go pro"),
        ("cy@x.io", "Go pro"),
    ]
    steps = client.get("/v1/journeys/by-plan").json()["steps"]
    assert steps["which-plan"] == {"entered": 3}
    assert (steps["pro"]["sent"], steps["free"]["sent"]) == (1, 2)


def test_a_split_with_a_control_group(client, database) -> None:
    definition = journey(
        "ab",
        [
            {
                "id": "ab-test",
                "type": "split",
                "paths": [
                    {"name": "offer", "weight": 1, "next": "offer"},
                    {"name": "off", "weight": 0, "next": "offer"},  # switched off
                    {"name": "control", "weight": 1, "control": True},
                ],
            },
            send("offer", subject="10% off"),
        ],
    )
    activate(client, definition)
    people = [f"person-{n}" for n in range(12)]
    for user in people:
        identify(client, user, email=f"{user}@x.io")
        entered(client, "ab", user)
    control = [run for run in runs(database) if run.state["path"] == ["control"]]
    offered = [run for run in runs(database) if run.state["path"] == ["offer"]]
    assert control and offered and len(control) + len(offered) == len(people)
    for run in control:
        assert (run.status, run.state["exit_reason"], run.state["sent"]) == (
            "exited",
            "control group",
            {},
        )
    assert {run.status for run in offered} == {"completed"}
    assert sorted(m.contact_id for m in sent(database)) == sorted(r.contact_id for r in offered)
    shown = client.get("/v1/journeys/ab").json()
    assert shown["runs"] == {"exited": len(control), "completed": len(offered)}
    assert shown["steps"]["ab-test"] == {"entered": 12, "exited": len(control)}
    assert shown["steps"]["offer"]["sent"] == len(offered)


def test_update_profile_sets_traits(client, database) -> None:
    steps = [{"id": "onboard", "type": "update_profile", "set": {"onboarded": True, "plan": "pro"}}]
    activate(client, journey("onboarding", steps))
    identify(client, "ada", email="ada@x.io", plan="free")
    entered(client, "onboarding", "ada")
    traits = client.get("/v1/contacts/ada").json()["traits"]
    assert traits == {"email": "ada@x.io", "plan": "pro", "onboarded": True}
    assert client.get("/v1/journeys/onboarding").json()["steps"]["onboard"] == {
        "entered": 1,
        "completed": 1,
    }


def test_a_webhook_step_queues_a_webhook(client, database) -> None:
    url = "https://hooks.example.com/journeys"
    steps = [{"id": "notify", "type": "webhook", "url": url}]
    activate(client, journey("crm", steps))
    identify(client, "ada")
    run_id = entered(client, "crm", "ada", order="1001")
    [message] = sent(database)
    assert (message.channel, message.to_address, message.status) == ("webhook", url, "queued")
    assert message.idempotency_key == f"journey:{run_id}:notify:1"
    assert message.content["data"] == {
        "journey": "crm",
        "run": run_id,
        "step": "notify",
        "context": {"order": "1001"},
    }
    assert client.get("/v1/journeys/crm").json()["steps"]["notify"] == {
        "entered": 1,
        "called": 1,
        "completed": 1,
    }
