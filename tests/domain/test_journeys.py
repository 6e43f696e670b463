"""The journey step function: runs driven by plain triggers, no database and no clock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from junction.domain.journeys import (
    EVENT_FOR_ENGAGEMENT,
    Effect,
    Entered,
    Entry,
    EventReceived,
    Finished,
    JourneyDefinition,
    ProfileUpdate,
    RunState,
    RunTrigger,
    SendIntent,
    SetTimer,
    TimerFired,
    WebhookCall,
    advance,
    may_enter,
    waits_on,
)

T0 = datetime(2025, 3, 3, 10, 0, tzinfo=UTC)  # a Monday
HOUR = timedelta(hours=1)
CONTACT: dict[str, Any] = {"timezone": "Europe/Paris", "plan": "pro"}


def journey(*steps: dict[str, Any], **fields: Any) -> JourneyDefinition:
    return JourneyDefinition.model_validate(
        {"key": "j", "name": "J", "trigger": {"event": "signed_up"}, "steps": list(steps), **fields}
    )


def send(step_id: str, next_id: str | None = None, channel: str = "email") -> dict[str, Any]:
    return {"id": step_id, "type": "send", "channel": channel, "template": step_id, "next": next_id}


def hours(n: int) -> dict[str, Any]:
    return {"amount": n, "unit": "hours"}


LAUNCH = journey(
    send("email", "opened"),
    {"id": "opened", "type": "wait_for", "messageOf": "email", "engagement": "opened",
     "timeout": hours(24), "onEvent": "bought", "onTimeout": "push"},
    send("push", "bought", channel="push"),
    {"id": "bought", "type": "wait_for", "event": "purchase", "timeout": hours(48),
     "onTimeout": "sms"},
    send("sms", channel="sms"),
    exit=[{"event": "purchase"}],
)  # fmt: skip


class Driver:
    """Feeds triggers to one run and keeps what it asked for."""

    def __init__(self, definition: JourneyDefinition, contact: dict[str, Any] | None = None):
        self.definition = definition
        self.contact = CONTACT if contact is None else contact
        self.state: RunState | None = None
        self.effects: list[Effect] = []

    def __call__(self, trigger: RunTrigger, now: datetime) -> list[Effect]:
        self.state, effects = advance(self.definition, 7, self.state, trigger, now, self.contact)
        self.effects.extend(effects)
        return effects

    def enter(self, now: datetime = T0, **context: Any) -> list[Effect]:
        return self(Entered(context=context), now)

    @property
    def run(self) -> RunState:
        assert self.state is not None
        return self.state

    def sent(self) -> list[str]:
        return [e.step for e in self.effects if isinstance(e, SendIntent)]

    def opened(self, step: str, now: datetime, engagement: str = "opened") -> list[Effect]:
        key = self.run.sent[step]
        return self(EventReceived(f"message.{engagement}", {}, key, engagement), now)


# --- the canonical scenario ------------------------------------------------------------------


def test_buying_after_the_email_stops_the_push_and_the_sms() -> None:
    run = Driver(LAUNCH)
    assert run.enter() == [
        SendIntent("email", "journey:7:email:1", "email", None, "email", None, "transactional", {}),
        SetTimer(T0 + 24 * HOUR),
    ]
    assert waits_on(run.run) == ("message.opened", T0 + 24 * HOUR)
    assert run(EventReceived("purchase", {"total": 30}), T0 + 2 * HOUR) == [
        Finished("exited", "exit criterion")
    ]
    assert run(TimerFired(T0 + 24 * HOUR), T0 + 24 * HOUR) == []
    assert run.sent() == ["email"]
    assert (run.run.status, run.run.exit_reason) == ("exited", "exit criterion")


def test_buying_after_the_push_stops_the_sms() -> None:
    run = Driver(LAUNCH)
    run.enter()
    assert run(TimerFired(T0 + 24 * HOUR), T0 + 24 * HOUR) == [
        SendIntent("push", "journey:7:push:1", "push", None, "push", None, "transactional", {}),
        SetTimer(T0 + 72 * HOUR),
    ]
    assert waits_on(run.run) == ("purchase", T0 + 72 * HOUR)
    run(EventReceived("purchase", {}), T0 + 30 * HOUR)
    run(TimerFired(T0 + 72 * HOUR), T0 + 72 * HOUR)
    assert run.sent() == ["email", "push"]
    assert run.run.status == "exited"


def test_never_buying_gets_all_three() -> None:
    run = Driver(LAUNCH)
    run.enter()
    run(TimerFired(T0 + 24 * HOUR), T0 + 24 * HOUR)
    effects = run(TimerFired(T0 + 72 * HOUR), T0 + 72 * HOUR)
    assert effects[-1] == Finished("completed", "end")
    assert run.sent() == ["email", "push", "sms"]
    assert run.run.status == "completed"
    assert run.run.touched == ["email", "push", "sms"]
    assert waits_on(run.run) == (None, None)


def test_opening_without_buying_skips_the_push_but_gets_the_sms() -> None:
    run = Driver(LAUNCH)
    run.enter()
    assert run.opened("email", T0 + 3 * HOUR) == [SetTimer(T0 + 51 * HOUR)]
    assert run.run.engaged == {"email": ["opened"]}
    # The 24-hour timer of the first wait still fires: it is stale now.
    before = run.run
    assert run(TimerFired(T0 + 24 * HOUR), T0 + 24 * HOUR) == []
    assert run.run is before
    run(TimerFired(T0 + 51 * HOUR), T0 + 51 * HOUR)
    assert run.sent() == ["email", "sms"]
    assert run.run.status == "completed"


def test_a_goal_converts_the_run_within_its_window() -> None:
    definition = LAUNCH.model_copy(
        update={"goal": JourneyDefinition.model_validate(
            {"key": "g", "name": "g", "trigger": {"api": True}, "steps": [send("a")],
             "goal": {"event": "purchase", "within": {"amount": 2, "unit": "days"}}}
        ).goal}
    )  # fmt: skip
    inside = Driver(definition)
    inside.enter()
    assert inside(EventReceived("purchase", {}), T0 + 47 * HOUR) == [Finished("converted", "goal")]
    assert (inside.run.status, inside.run.converted_at) == ("converted", T0 + 47 * HOUR)
    # Outside the window the purchase is no conversion: the exit criterion ends the run.
    outside = Driver(definition)
    outside.enter()
    outside(TimerFired(T0 + 24 * HOUR), T0 + 24 * HOUR)
    assert outside(EventReceived("purchase", {}), T0 + 49 * HOUR) == [
        Finished("exited", "exit criterion")
    ]
    assert outside.run.converted_at is None


def test_a_goal_outside_its_window_with_no_exit_changes_nothing() -> None:
    definition = journey(
        send("a", "w"),
        {"id": "w", "type": "wait", "duration": hours(100)},
        goal={"event": "purchase", "where": {"total": {"op": "gt", "value": 10}},
              "within": hours(10)},
    )  # fmt: skip
    run = Driver(definition)
    run.enter()
    before = run.run
    assert run(EventReceived("purchase", {"total": 50}), T0 + 11 * HOUR) == []
    assert run(EventReceived("purchase", {"total": 5}), T0 + 1 * HOUR) == []
    assert run.run is before
    assert run(EventReceived("purchase", {"total": 50}), T0 + 10 * HOUR) == [
        Finished("converted", "goal")
    ]


# --- exits and finality ----------------------------------------------------------------------


def test_an_exit_criterion_ends_the_run_wherever_it_is() -> None:
    definition = journey(
        {"id": "w", "type": "wait", "duration": hours(5), "next": "f"},
        {"id": "f", "type": "wait_for", "event": "x", "timeout": hours(5), "onTimeout": "a"},
        send("a"),
        exit=[{"event": "unsubscribed", "where": {"list": "news"}}],
    )
    for steps_taken in range(2):
        run = Driver(definition)
        run.enter()
        if steps_taken:
            run(TimerFired(T0 + 5 * HOUR), T0 + 5 * HOUR)
            assert run.run.step == "f"
        before = run.run
        assert run(EventReceived("unsubscribed", {"list": "other"}), T0 + 6 * HOUR) == []
        assert run.run is before
        assert run(EventReceived("unsubscribed", {"list": "news"}), T0 + 6 * HOUR) == [
            Finished("exited", "exit criterion")
        ]
        assert run.run.waiting is None and run.run.ended_at == T0 + 6 * HOUR


def test_final_runs_ignore_every_trigger() -> None:
    run = Driver(journey(send("a")))
    run.enter()
    final = run.run
    assert final.status == "completed"
    for trigger in (
        Entered(),
        TimerFired(T0 + HOUR),
        EventReceived("x", {}),
        EventReceived("message.opened", {}, final.sent["a"], "opened"),
    ):
        assert run(trigger, T0 + 2 * HOUR) == []
        assert run.run is final


def test_entered_again_on_a_live_run_changes_nothing_and_others_need_a_state() -> None:
    run = Driver(LAUNCH)
    run.enter()
    before = run.run
    assert run(Entered(), T0 + HOUR) == [] and run.run is before
    with pytest.raises(ValueError, match="starts with Entered"):
        advance(LAUNCH, 1, None, TimerFired(T0), T0, CONTACT)
    with pytest.raises(ValueError, match="timezone-aware"):
        advance(LAUNCH, 1, None, Entered(), T0.replace(tzinfo=None), CONTACT)


def test_an_exit_step_ends_the_run_exited() -> None:
    run = Driver(journey(send("a", "x"), {"id": "x", "type": "exit"}))
    assert run.enter()[-1] == Finished("exited", "exit step")
    assert (run.run.status, run.run.step) == ("exited", "x")


# --- waits -----------------------------------------------------------------------------------


def test_a_duration_wait_holds_until_its_timer() -> None:
    run = Driver(journey({"id": "w", "type": "wait", "duration": hours(3), "next": "a"}, send("a")))
    assert run.enter() == [SetTimer(T0 + 3 * HOUR)]
    assert waits_on(run.run) == (None, T0 + 3 * HOUR)
    waiting = run.run
    assert run(TimerFired(T0 + 2 * HOUR), T0 + 2 * HOUR) == []  # early
    assert run.run is waiting
    assert run(TimerFired(T0 + 3 * HOUR), T0 + 3 * HOUR + timedelta(seconds=4))[0] == SendIntent(
        "a", "journey:7:a:1", "email", None, "a", None, "transactional", {}
    )
    assert run(TimerFired(T0 + 3 * HOUR), T0 + 4 * HOUR) == []  # a resent timer


def until(time: str, *weekdays: str) -> JourneyDefinition:
    spec: dict[str, Any] = {"time": time}
    if weekdays:
        spec["weekdays"] = list(weekdays)
    return journey({"id": "w", "type": "wait", "until": spec, "next": "a"}, send("a"))


@pytest.mark.parametrize(
    ("definition", "now", "wake"),
    [
        # 10:00 UTC is 11:00 in Paris (CET): 09:00 today is past, so tomorrow 08:00 UTC.
        (until("09:00"), T0, datetime(2025, 3, 4, 8, 0, tzinfo=UTC)),
        (until("12:00"), T0, datetime(2025, 3, 3, 11, 0, tzinfo=UTC)),
        # Exactly at the time: strictly after now, so the next day.
        (until("11:00"), T0, datetime(2025, 3, 4, 10, 0, tzinfo=UTC)),
        (until("09:00", "sat", "sun"), T0, datetime(2025, 3, 8, 8, 0, tzinfo=UTC)),
        # Across spring forward (30 March 2025): 09:00 CEST is 07:00 UTC.
        (
            until("09:00", "mon"),
            datetime(2025, 3, 28, 12, 0, tzinfo=UTC),
            datetime(2025, 3, 31, 7, 0, tzinfo=UTC),
        ),
        # 02:30 does not exist on 30 March in Paris: it falls the gap later, 03:30 CEST.
        (
            until("02:30", "sun"),
            datetime(2025, 3, 29, 12, 0, tzinfo=UTC),
            datetime(2025, 3, 30, 1, 30, tzinfo=UTC),
        ),
        # Across fall back (26 October 2025): 09:00 CET is 08:00 UTC again.
        (
            until("09:00", "mon"),
            datetime(2025, 10, 24, 12, 0, tzinfo=UTC),
            datetime(2025, 10, 27, 8, 0, tzinfo=UTC),
        ),
        # 02:30 happens twice on 26 October: the first one, still CEST.
        (
            until("02:30", "sun"),
            datetime(2025, 10, 25, 12, 0, tzinfo=UTC),
            datetime(2025, 10, 26, 0, 30, tzinfo=UTC),
        ),
    ],
)
def test_a_time_of_day_wait_wakes_at_the_next_local_time(
    definition: JourneyDefinition, now: datetime, wake: datetime
) -> None:
    run = Driver(definition)
    assert run.enter(now) == [SetTimer(wake)]


def test_a_time_of_day_wait_falls_back_to_utc() -> None:
    for contact in ({"timezone": "Mars/Olympus"}, {}, {"timezone": 3}):
        run = Driver(until("09:00"), contact)
        assert run.enter() == [SetTimer(datetime(2025, 3, 4, 9, 0, tzinfo=UTC))]


def trait_wait(**spec: Any) -> JourneyDefinition:
    return journey(
        {"id": "w", "type": "wait", "untilTrait": {"trait": "renewal", **spec}, "next": "a"},
        send("a"),
    )


@pytest.mark.parametrize(
    ("spec", "renewal", "wake"),
    [
        ({}, "2025-03-10T12:00:00+00:00", datetime(2025, 3, 10, 12, tzinfo=UTC)),
        ({}, "2025-03-10T12:00:00Z", datetime(2025, 3, 10, 12, tzinfo=UTC)),
        # A date alone is midnight in the contact's timezone.
        ({}, "2025-03-10", datetime(2025, 3, 9, 23, tzinfo=UTC)),
        ({}, datetime(2025, 3, 10, 12, tzinfo=UTC), datetime(2025, 3, 10, 12, tzinfo=UTC)),
        (
            {"offset": {"amount": 3, "unit": "days"}, "before": True},
            "2025-03-10T12:00:00+00:00",
            datetime(2025, 3, 7, 12, tzinfo=UTC),
        ),
        (
            {"offset": {"amount": 2, "unit": "hours"}},
            "2025-03-10T12:00:00+00:00",
            datetime(2025, 3, 10, 14, tzinfo=UTC),
        ),
    ],
)
def test_an_until_trait_wait_wakes_at_the_trait_plus_or_minus_the_offset(
    spec: dict[str, Any], renewal: object, wake: datetime
) -> None:
    run = Driver(trait_wait(**spec), {**CONTACT, "renewal": renewal})
    assert run.enter() == [SetTimer(wake)]
    run(TimerFired(wake), wake)
    assert run.sent() == ["a"]


@pytest.mark.parametrize(
    ("spec", "renewal"),
    [
        ({}, "2025-03-01"),
        ({"offset": {"amount": 7, "unit": "days"}, "before": True}, "2025-03-09T12:00:00+00:00"),
        ({}, "not a date"),
        ({}, None),
        ({}, 12),
    ],
)
def test_an_until_trait_wait_already_past_or_unreadable_continues_at_once(
    spec: dict[str, Any], renewal: object
) -> None:
    contact = {**CONTACT, "renewal": renewal} if renewal is not None else CONTACT
    run = Driver(trait_wait(**spec), contact)
    run.enter()
    assert run.sent() == ["a"] and run.run.status == "completed"


def test_a_wait_for_an_event_continues_on_a_match_and_times_out_otherwise() -> None:
    definition = journey(
        {"id": "f", "type": "wait_for", "event": "cart",
         "where": {"items": {"op": "gte", "value": 2}},
         "timeout": hours(6), "onEvent": "yes", "onTimeout": "no"},
        send("yes"),
        send("no"),
    )  # fmt: skip
    hit = Driver(definition)
    assert hit.enter() == [SetTimer(T0 + 6 * HOUR)]
    assert waits_on(hit.run) == ("cart", T0 + 6 * HOUR)
    waiting = hit.run
    assert hit(EventReceived("cart", {"items": 1}), T0 + HOUR) == []
    assert hit(EventReceived("other", {"items": 3}), T0 + HOUR) == []
    assert hit.run is waiting
    hit(EventReceived("cart", {"items": 3}), T0 + HOUR)
    assert hit.sent() == ["yes"]
    assert hit(TimerFired(T0 + 6 * HOUR), T0 + 6 * HOUR) == []
    miss = Driver(definition)
    miss.enter()
    miss(TimerFired(T0 + 6 * HOUR), T0 + 6 * HOUR)
    assert miss.sent() == ["no"]


@pytest.mark.parametrize(
    ("waited", "seen", "continues"),
    [
        ("opened", "opened", True),
        ("opened", "clicked", True),
        ("opened", "read", True),
        ("opened", "delivered", False),
        ("delivered", "delivered", True),
        ("delivered", "clicked", True),
        ("clicked", "opened", False),
        ("read", "opened", True),
    ],
)
def test_an_engagement_proves_weaker_ones(waited: str, seen: str, continues: bool) -> None:
    definition = journey(
        send("m", "f"),
        {"id": "f", "type": "wait_for", "messageOf": "m", "engagement": waited,
         "timeout": hours(1), "onEvent": "yes"},
        send("yes"),
    )  # fmt: skip
    run = Driver(definition)
    run.enter()
    assert waits_on(run.run) == (EVENT_FOR_ENGAGEMENT[waited], T0 + HOUR)
    run.opened("m", T0 + HOUR / 2, seen)
    assert ("yes" in run.sent()) is continues
    assert run.run.engaged == {"m": [seen]}


def test_an_engagement_of_another_message_does_not_continue() -> None:
    run = Driver(LAUNCH)
    run.enter()
    before = run.run
    assert run(EventReceived("message.opened", {}, "journey:8:email:1", "opened"), T0) == []
    assert run(EventReceived("message.opened", {}, None, None), T0) == []
    assert run.run is before


def test_an_engagement_seen_before_the_wait_for_continues_at_once() -> None:
    definition = journey(
        send("m", "w"),
        {"id": "w", "type": "wait", "duration": hours(2), "next": "f"},
        {"id": "f", "type": "wait_for", "messageOf": "m", "engagement": "opened",
         "timeout": hours(1), "onEvent": "yes", "onTimeout": "no"},
        send("yes"),
        send("no"),
    )  # fmt: skip
    run = Driver(definition)
    run.enter()
    effects = run.opened("m", T0 + HOUR)
    assert effects == [] and run.run.engaged == {"m": ["opened"]}
    assert run.opened("m", T0 + HOUR) == []  # seen already: nothing new
    run(TimerFired(T0 + 2 * HOUR), T0 + 2 * HOUR)
    assert run.sent() == ["m", "yes"]


# --- branch, split, profile, webhook ---------------------------------------------------------


def branch(when: dict[str, Any]) -> JourneyDefinition:
    return journey(
        send("m", "w"),
        {"id": "w", "type": "wait", "duration": hours(1), "next": "b"},
        {"id": "b", "type": "branch", "cases": [{"when": when, "next": "yes"}], "default": "no"},
        send("yes"),
        send("no"),
    )


@pytest.mark.parametrize(
    ("when", "contact", "event", "expected"),
    [
        ({"trait": "plan", "value": "pro"}, {"plan": "pro"}, None, "yes"),
        ({"trait": "plan", "value": "pro"}, {"plan": "free"}, None, "no"),
        ({"trait": "address.country", "op": "in", "value": ["FR"]},
         {"address": {"country": "FR"}}, None, "yes"),
        ({"trait": "age", "op": "gte", "value": 18}, {}, None, "no"),
        ({"trait": "age", "op": "exists", "value": False}, {}, None, "yes"),
        ({"event": "total", "op": "gt", "value": 100}, {}, {"total": 120}, "yes"),
        ({"event": "total", "op": "gt", "value": 100}, {}, {"total": 80}, "no"),
        ({"event": "total", "op": "gt", "value": 100}, {}, None, "no"),
    ],
)  # fmt: skip
def test_a_branch_on_a_trait_or_the_triggering_event(
    when: dict[str, Any], contact: dict[str, Any], event: dict[str, Any] | None, expected: str
) -> None:
    run = Driver(branch(when), contact)
    trigger_event = {"name": "signed_up", "properties": event} if event is not None else None
    run(Entered({}, trigger_event), T0)
    run(TimerFired(T0 + HOUR), T0 + HOUR)
    assert run.sent() == ["m", expected]


@pytest.mark.parametrize(("opened", "expected"), [(True, "yes"), (False, "no")])
def test_a_branch_on_engagement_reads_the_run(opened: bool, expected: str) -> None:
    run = Driver(branch({"engaged": {"messageOf": "m", "engagement": "opened"}}))
    run.enter()
    if opened:
        run.opened("m", T0 + HOUR / 2, "clicked")
    run(TimerFired(T0 + HOUR), T0 + HOUR)
    assert run.sent() == ["m", expected]


def split(*paths: dict[str, Any]) -> JourneyDefinition:
    return journey(
        {"id": "s", "type": "split", "paths": list(paths)},
        send("a"),
        send("b"),
    )


def test_a_split_is_deterministic_and_follows_its_weights() -> None:
    definition = split(
        {"name": "a", "weight": 70, "next": "a"},
        {"name": "b", "weight": 20, "next": "b"},
        {"name": "off", "weight": 0, "next": "b"},
        {"name": "control", "weight": 10, "control": True},
    )
    counts: Counter[str] = Counter()
    for run_id in range(10_000):
        state, effects = advance(definition, run_id, None, Entered(), T0, CONTACT)
        again, _ = advance(definition, run_id, None, Entered(), T0, CONTACT)
        assert state == again
        counts[state.path[0]] += 1
        if state.path == ["control"]:
            assert effects == [Finished("exited", "control group")]
            assert state.sent == {}
    assert counts["off"] == 0
    for name, share in (("a", 0.7), ("b", 0.2), ("control", 0.1)):
        assert abs(counts[name] / 10_000 - share) < 0.02, counts


def test_a_split_in_a_loop_draws_again_on_each_visit() -> None:
    definition = journey(
        {"id": "s", "type": "split", "paths": [{"name": "a", "weight": 1, "next": "w"},
                                               {"name": "b", "weight": 1, "next": "w"}]},
        {"id": "w", "type": "wait", "duration": hours(1), "next": "s"},
    )  # fmt: skip
    run = Driver(definition)
    run.enter()
    for n in range(1, 20):
        run(TimerFired(T0 + n * HOUR), T0 + n * HOUR)
    assert set(run.run.path) == {"a", "b"}
    assert run.run.visits == {"s": 20, "w": 20}


def test_update_profile_and_webhook_continue_at_once() -> None:
    definition = journey(
        {"id": "u", "type": "update_profile", "set": {"plan": "trial"}, "next": "b"},
        {"id": "b", "type": "branch", "cases": [{"when": {"trait": "plan", "value": "trial"},
                                                 "next": "h"}]},
        {"id": "h", "type": "webhook", "url": "https://crm.example/h", "next": "h2"},
        {"id": "h2", "type": "webhook", "url": "http://crm.example/h2", "body": {"x": 1},
         "next": "m"},
        send("m"),
    )  # fmt: skip
    run = Driver(definition, {"plan": "free"})
    effects = run.enter(source="ad")
    assert effects == [
        ProfileUpdate({"plan": "trial"}),
        WebhookCall(
            "h",
            "journey:7:h:1",
            "https://crm.example/h",
            {"journey": "j", "run": 7, "step": "h", "context": {"source": "ad"}},
        ),
        WebhookCall("h2", "journey:7:h2:1", "http://crm.example/h2", {"x": 1}),
        SendIntent("m", "journey:7:m:1", "email", None, "m", None, "transactional",
                   {"source": "ad"}),
        Finished("completed", "end"),
    ]  # fmt: skip


def test_a_best_of_send_carries_its_channels_and_content() -> None:
    definition = journey(
        {"id": "m", "type": "send", "channels": ["whatsapp", "sms"],
         "content": {"sms": {"text": "hi"}}, "category": "promo"},
    )  # fmt: skip
    run = Driver(definition)
    intent = run.enter(order=12)[0]
    assert intent == SendIntent(
        "m", "journey:7:m:1", None, ("whatsapp", "sms"), None, {"sms": {"text": "hi"}}, "promo",
        {"order": 12},
    )  # fmt: skip


def test_the_step_limit_ends_a_runaway_run() -> None:
    # Validation refuses loops with no wait; a past untilTrait makes one, caught at run time.
    definition = JourneyDefinition.model_construct(
        key="j",
        name="J",
        steps=journey(
            send("a", "t"),
            {"id": "t", "type": "wait", "untilTrait": {"trait": "d"}, "next": "x"},
            send("x"),
        ).steps,
        start=None,
        exit=[],
        goal=None,
        trigger=LAUNCH.trigger,
    )
    definition.steps[2].next = "a"  # type: ignore[union-attr]
    state, effects = advance(definition, 1, None, Entered(), T0, {})
    assert effects[-1] == Finished("exited", "step limit")
    assert state.status == "exited"
    sends = [e.key for e in effects if isinstance(e, SendIntent)]
    assert len(sends) == len(set(sends)) > 300


# --- state -----------------------------------------------------------------------------------


def test_run_state_round_trips_through_json() -> None:
    run = Driver(
        journey(
            {"id": "s", "type": "split", "paths": [{"name": "a", "weight": 1, "next": "m"}]},
            send("m", "f"),
            {"id": "f", "type": "wait_for", "event": "cart",
             "where": {"n": {"op": "gt", "value": 1}}, "timeout": hours(2), "onTimeout": "m2"},
            send("m2"),
        )
    )  # fmt: skip
    run(Entered({"a": [1, 2]}, {"name": "signed_up", "properties": {"p": 1}}), T0)
    run.opened("m", T0 + HOUR, "delivered")
    for state in (run.run, advance(LAUNCH, 2, None, Entered(), T0, {})[0]):
        data = orjson.loads(orjson.dumps(state.to_dict()))
        assert RunState.from_dict(data) == state
    run(TimerFired(T0 + 2 * HOUR), T0 + 2 * HOUR)
    final = run.run
    assert final.ended_at == T0 + 2 * HOUR
    assert RunState.from_dict(orjson.loads(orjson.dumps(final.to_dict()))) == final


def test_may_enter_follows_the_entry_rules() -> None:
    once = Entry()
    assert may_enter(once, runs_before=0, active_runs=0, last_entered_at=None, now=T0)
    assert not may_enter(once, runs_before=1, active_runs=0, last_entered_at=T0, now=T0)
    cool = Entry.model_validate({"mode": "cooldown", "cooldown": {"amount": 1, "unit": "days"}})
    last = T0 - 23 * HOUR
    assert not may_enter(cool, runs_before=1, active_runs=0, last_entered_at=last, now=T0)
    assert may_enter(cool, runs_before=1, active_runs=0, last_entered_at=last, now=T0 + HOUR)
    every = Entry.model_validate({"mode": "every_time", "maxConcurrent": 2})
    assert may_enter(every, runs_before=5, active_runs=1, last_entered_at=T0, now=T0)
    assert not may_enter(every, runs_before=5, active_runs=2, last_entered_at=T0, now=T0)


# --- properties ------------------------------------------------------------------------------

LOOPY = journey(
    send("m", "f"),
    {"id": "f", "type": "wait_for", "messageOf": "m", "engagement": "opened",
     "timeout": hours(5), "onEvent": "b", "onTimeout": "s"},
    {"id": "s", "type": "split", "paths": [{"name": "a", "weight": 3, "next": "m"},
                                           {"name": "c", "weight": 1, "control": True},
                                           {"name": "x", "weight": 1, "next": "b"}]},
    {"id": "b", "type": "branch", "default": "w",
     "cases": [{"when": {"engaged": {"messageOf": "m", "engagement": "clicked"}}, "next": "h"}]},
    {"id": "h", "type": "webhook", "url": "https://x.example", "next": "w"},
    {"id": "w", "type": "wait", "until": {"time": "09:00", "weekdays": ["mon", "thu"]},
     "next": "p"},
    {"id": "p", "type": "wait_for", "event": "purchase", "timeout": hours(30),
     "onEvent": "u", "onTimeout": "m"},
    {"id": "u", "type": "update_profile", "set": {"buyer": True}},
    exit=[{"event": "unsubscribed"}],
    goal={"event": "upgraded", "within": {"amount": 3, "unit": "days"}},
)  # fmt: skip

trigger_steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=40),  # hours since the previous trigger
        st.sampled_from(
            ["timer-due", "timer-early", "opened", "clicked", "stale-open", "purchase",
             "noise", "unsubscribed", "upgraded", "entered"]
        ),
    ),
    max_size=25,
)  # fmt: skip


def play(definition: JourneyDefinition, run_id: int, plan: list[tuple[int, str]]) -> list[Any]:
    """Plays a plan, checking the invariants after every trigger; returns what it saw."""
    now = T0
    state, effects = advance(definition, run_id, None, Entered(), now, CONTACT)
    seen: list[Any] = [(state, effects)]
    keys = [e.key for e in effects if isinstance(e, SendIntent)]
    for gap, kind in plan:
        now += gap * HOUR
        trigger = make_trigger(kind, state, now)
        new, effects = advance(definition, run_id, state, trigger, now, CONTACT)
        assert (new, effects) == advance(definition, run_id, state, trigger, now, CONTACT)
        if not effects:
            assert new.status == state.status and new.step == state.step
        if state.final:
            assert new is state
        keys.extend(e.key for e in effects if isinstance(e, SendIntent))
        state = new
        seen.append((state, effects))
        assert len(keys) == len(set(keys)), keys
        assert state.status != "active"
        if not state.final:
            assert state.waiting is not None and state.waiting.until is not None
            assert waits_on(state)[1] == state.waiting.until
    return seen


def make_trigger(kind: str, state: RunState, now: datetime) -> RunTrigger:
    until = state.waiting.until if state.waiting and state.waiting.until else now
    key = state.sent.get("m")
    if kind == "timer-due":
        return TimerFired(until)
    if kind == "timer-early":
        return TimerFired(until - timedelta(minutes=1))
    if kind in ("opened", "clicked"):
        return EventReceived(f"message.{kind}", {}, key, kind)
    if kind == "stale-open":
        return EventReceived("message.opened", {}, "journey:0:m:99", "opened")
    if kind == "entered":
        return Entered()
    return EventReceived(kind, {})


@settings(max_examples=300, deadline=None)
@given(run_id=st.integers(min_value=0, max_value=10**9), plan=trigger_steps)
def test_random_triggers_keep_the_run_sound(run_id: int, plan: list[tuple[int, str]]) -> None:
    play(LOOPY, run_id, plan)
    play(LAUNCH, run_id, plan)
