"""Journey definitions: filters, triggers, steps, and the graph checks that name the step."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from junction.domain.journey_model import (
    JourneyDefinition,
    Period,
    SendStep,
    Trigger,
    WaitStep,
    check_where,
    matches,
)

SEND = {"type": "send", "channel": "email", "template": "hello"}


def journey(*steps: dict[str, Any], **fields: Any) -> JourneyDefinition:
    return JourneyDefinition.model_validate(
        {"key": "j", "name": "J", "trigger": {"event": "signed_up"}, "steps": list(steps), **fields}
    )


def refused(*steps: dict[str, Any], **fields: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        journey(*steps, **fields)
    return str(caught.value)


# --- filters ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "properties", "expected"),
    [
        ({}, {}, True),
        ({"plan": "pro"}, {"plan": "pro"}, True),
        ({"plan": "pro"}, {"plan": "free"}, False),
        ({"plan": "pro"}, {}, False),
        ({"order.total": {"op": "gt", "value": 50}}, {"order": {"total": 80}}, True),
        ({"order.total": {"op": "gt", "value": 50}}, {"order": {"total": 20}}, False),
        ({"order.total": {"op": "gte", "value": 20}}, {"order": {"total": 20}}, True),
        ({"order.total": 1}, {"order.total": 1, "order": {"total": 2}}, True),
        ({"n": {"op": "lt", "value": 3}}, {"n": 2}, True),
        ({"n": {"op": "lte", "value": 3}}, {"n": 4}, False),
        ({"n": {"op": "gt", "value": 3}}, {"n": "4"}, False),
        ({"n": {"op": "gt", "value": 0}}, {"n": True}, False),
        ({"n": {"op": "ne", "value": 3}}, {}, True),
        ({"n": {"op": "ne", "value": 3}}, {"n": 3}, False),
        ({"n": {"op": "eq", "value": 3}}, {"n": 3}, True),
        ({"c": {"op": "in", "value": ["FR", "BE"]}}, {"c": "FR"}, True),
        ({"c": {"op": "in", "value": ["FR", "BE"]}}, {"c": "DE"}, False),
        ({"tags": {"op": "contains", "value": "vip"}}, {"tags": ["vip", "new"]}, True),
        ({"name": {"op": "contains", "value": "ann"}}, {"name": "Joanna"}, True),
        ({"name": {"op": "contains", "value": 1}}, {"name": 12}, False),
        ({"x": {"op": "exists"}}, {"x": None}, True),
        ({"x": {"op": "exists", "value": False}}, {}, True),
        ({"x": {"op": "exists", "value": True}}, {}, False),
        ({"a": 1, "b": 2}, {"a": 1, "b": 3}, False),
    ],
)
def test_a_filter_matches_properties(
    where: dict[str, Any], properties: dict[str, Any], expected: bool
) -> None:
    assert matches(check_where(where), properties) is expected


@pytest.mark.parametrize(
    ("where", "complaint"),
    [
        ({"x": {"op": "between", "value": 1}}, "unknown operator 'between'"),
        ({"x": {"op": "in", "value": 1}}, "'in' needs a list"),
        ({"x": {"op": "exists", "value": "yes"}}, "'exists' takes true or false"),
        ({"x": {"op": "eq", "value": 1, "unit": "s"}}, "unexpected key 'unit'"),
        ({"": 1}, "empty"),
    ],
)
def test_a_bad_filter_is_refused_at_load(where: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        check_where(where)
    assert complaint in refused(SEND | {"id": "a"}, trigger={"event": "e", "where": where})


# --- triggers, entry, periods ----------------------------------------------------------------


def test_periods_have_a_length() -> None:
    assert Period(amount=90, unit="minutes").delta() == timedelta(minutes=90)
    assert Period(amount=2, unit="weeks").delta() == timedelta(days=14)
    with pytest.raises(ValidationError):
        Period(amount=0, unit="days")


@pytest.mark.parametrize(
    "trigger",
    [
        {"event": "signed_up", "where": {"plan": "pro"}},
        {"segment": "vip"},
        {"api": True},
        {"schedule": {"cron": "0 9 * * MON-FRI"}},
        {"schedule": {"cron": "*/15 0-6,22,23 1 1,6 0"}},
    ],
)
def test_each_trigger_kind_loads(trigger: dict[str, Any]) -> None:
    assert journey(SEND | {"id": "a"}, trigger=trigger).trigger == Trigger.model_validate(trigger)


@pytest.mark.parametrize(
    ("trigger", "complaint"),
    [
        ({}, "exactly one of event, segment, api or schedule"),
        ({"event": "e", "api": True}, "exactly one of"),
        ({"api": True, "where": {"a": 1}}, "set event"),
        ({"schedule": {"cron": "0 9 * *"}}, "needs 5 fields"),
        ({"schedule": {"cron": "61 9 * * *"}}, "'61' is not within 0-59"),
        ({"schedule": {"cron": "0 9 * * */x"}}, "bad step"),
        ({"schedule": {"cron": "0 9 * * 1", "audience": "some"}}, "audience"),
    ],
)
def test_a_bad_trigger_is_refused(trigger: dict[str, Any], complaint: str) -> None:
    assert complaint in refused(SEND | {"id": "a"}, trigger=trigger)


def test_an_event_trigger_accepts_matching_events() -> None:
    trigger = Trigger.model_validate(
        {"event": "order", "where": {"total": {"op": "gt", "value": 9}}}
    )
    assert trigger.accepts("order", {"total": 10})
    assert not trigger.accepts("order", {"total": 5})
    assert not trigger.accepts("refund", {"total": 10})


def test_entry_defaults_and_cooldown() -> None:
    definition = journey(SEND | {"id": "a"})
    assert (definition.entry.mode, definition.entry.max_concurrent) == ("once", 1)
    loaded = journey(
        SEND | {"id": "a"},
        entry={"mode": "cooldown", "cooldown": {"amount": 7, "unit": "days"}, "maxConcurrent": 2},
    )
    assert loaded.entry.max_concurrent == 2
    assert "cooldown is set exactly when" in refused(SEND | {"id": "a"}, entry={"mode": "cooldown"})


# --- steps -----------------------------------------------------------------------------------


def test_every_step_type_loads() -> None:
    definition = journey(
        SEND | {"id": "send", "next": "wait"},
        {"id": "wait", "type": "wait", "duration": {"amount": 1, "unit": "days"}, "next": "tod"},
        {"id": "tod", "type": "wait", "until": {"time": "09:30"}, "next": "trait"},
        {"id": "trait", "type": "wait", "untilTrait": {"trait": "renewal"}, "next": "for"},
        {
            "id": "for",
            "type": "wait_for",
            "event": "purchase",
            "where": {"total": {"op": "gte", "value": 1}},
            "timeout": {"amount": 2, "unit": "days"},
            "onEvent": "branch",
            "onTimeout": "open",
        },
        {
            "id": "open",
            "type": "wait_for",
            "messageOf": "send",
            "engagement": "clicked",
            "timeout": {"amount": 1, "unit": "hours"},
            "onEvent": "branch",
        },
        {
            "id": "branch",
            "type": "branch",
            "cases": [
                {"when": {"trait": "plan", "op": "eq", "value": "pro"}, "next": "split"},
                {"when": {"event": "total", "op": "gt", "value": 5}, "next": "split"},
                {"when": {"engaged": {"messageOf": "send", "engagement": "opened"}}},
            ],
            "default": "split",
        },
        {
            "id": "split",
            "type": "split",
            "paths": [
                {"name": "a", "weight": 1, "next": "update"},
                {"name": "control", "weight": 1, "control": True},
            ],
        },
        {"id": "update", "type": "update_profile", "set": {"stage": "won"}, "next": "hook"},
        {"id": "hook", "type": "webhook", "url": "https://crm.example/hook", "next": "bye"},
        {"id": "bye", "type": "exit"},
    )
    assert [step.type for step in definition.steps] == [
        "send", "wait", "wait", "wait", "wait_for", "wait_for", "branch", "split",
        "update_profile", "webhook", "exit",
    ]  # fmt: skip
    wait = definition.step("tod")
    assert isinstance(wait, WaitStep) and wait.until is not None
    assert len(wait.until.weekdays) == 7
    assert definition.first == "send"
    with pytest.raises(KeyError):
        definition.step("nope")


@pytest.mark.parametrize(
    ("step", "complaint"),
    [
        ({"type": "send", "template": "t"}, "step 'x': set exactly one of channel or channels"),
        (
            {"type": "send", "channel": "sms", "channels": ["sms"], "template": "t"},
            "step 'x': set exactly one of channel or channels",
        ),
        (
            {"type": "send", "channel": "sms", "template": "t", "content": {}},
            "step 'x': set exactly one of template or content",
        ),
        ({"type": "wait"}, "step 'x': set exactly one of duration, until, untilTrait"),
        ({"type": "wait", "until": {"time": "25:00"}}, "String should match pattern"),
        ({"type": "wait", "until": {"time": "09:00", "weekdays": ["someday"]}}, "weekdays"),
        (
            {"type": "wait_for", "timeout": {"amount": 1, "unit": "days"}},
            "step 'x': wait for an event, or for messageOf+engagement",
        ),
        (
            {"type": "wait_for", "messageOf": "x", "timeout": {"amount": 1, "unit": "days"}},
            "step 'x': messageOf and engagement go together",
        ),
        ({"type": "wait_for", "event": "e"}, "timeout"),
        (
            {
                "type": "wait_for",
                "where": {"a": 1},
                "messageOf": "x",
                "engagement": "opened",
                "timeout": {"amount": 1, "unit": "days"},
            },
            "step 'x': where filters an event",
        ),
        ({"type": "branch", "cases": []}, "at least 1 item"),
        ({"type": "split", "paths": [{"name": "a", "weight": 0}]}, "step 'x': split weights"),
        (
            {"type": "split", "paths": [{"name": "a", "weight": 1}, {"name": "a", "weight": 1}]},
            "step 'x': path 'a' is named twice",
        ),
        ({"type": "update_profile", "set": {}}, "at least 1 item"),
        ({"type": "webhook", "url": "ftp://x"}, "String should match pattern"),
        ({"type": "teleport"}, "does not match any of the expected tags"),
        ({"type": "exit", "next": "a"}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_step_is_refused(step: dict[str, Any], complaint: str) -> None:
    assert complaint in refused(step | {"id": "x"})


def test_a_step_id_has_a_shape() -> None:
    assert "String should match pattern" in refused(SEND | {"id": "Bad Id"})


# --- the graph -------------------------------------------------------------------------------


def wait(step_id: str, next_id: str | None) -> dict[str, Any]:
    return {
        "id": step_id,
        "type": "wait",
        "duration": {"amount": 1, "unit": "days"},
        "next": next_id,
    }


@pytest.mark.parametrize(
    ("steps", "fields", "complaint"),
    [
        ([SEND | {"id": "a"}, SEND | {"id": "a"}], {}, "step 'a' is defined twice"),
        ([SEND | {"id": "a", "next": "b"}], {}, "step 'a' leads to 'b', which is not a step"),
        (
            [
                {
                    "id": "w",
                    "type": "wait_for",
                    "event": "e",
                    "timeout": {"amount": 1, "unit": "days"},
                    "onTimeout": "ghost",
                }
            ],
            {},
            "step 'w' leads to 'ghost'",
        ),
        (
            [{"id": "b", "type": "branch", "cases": [{"when": {"trait": "t"}, "next": "z"}]}],
            {},
            "step 'b' leads to 'z'",
        ),
        (
            [{"id": "b", "type": "branch", "cases": [{"when": {"trait": "t"}}], "default": "z"}],
            {},
            "step 'b' leads to 'z'",
        ),
        (
            [{"id": "s", "type": "split", "paths": [{"name": "a", "weight": 1, "next": "z"}]}],
            {},
            "step 's' leads to 'z'",
        ),
        ([SEND | {"id": "a"}], {"start": "z"}, "start 'z' is not a step"),
        ([SEND | {"id": "a"}, SEND | {"id": "b"}], {}, "step 'b' is never reached"),
        ([SEND | {"id": "a"}, SEND | {"id": "b"}], {"start": "b"}, "step 'a' is never reached"),
        (
            [SEND | {"id": "a", "next": "b"}, SEND | {"id": "b", "next": "a"}],
            {},
            "steps a → b → a loop with no wait",
        ),
        (
            [
                SEND | {"id": "a", "next": "t"},
                {"id": "t", "type": "wait", "untilTrait": {"trait": "d"}, "next": "a"},
            ],
            {},
            "steps a → t → a loop with no wait",
        ),
        (
            [
                {
                    "id": "w",
                    "type": "wait_for",
                    "messageOf": "nope",
                    "engagement": "opened",
                    "timeout": {"amount": 1, "unit": "days"},
                },
            ],
            {},
            "step 'w': messageOf 'nope' is not a send step",
        ),
        (
            [
                wait("p", "w"),
                {
                    "id": "w",
                    "type": "wait_for",
                    "messageOf": "p",
                    "engagement": "opened",
                    "timeout": {"amount": 1, "unit": "days"},
                },
            ],
            {},
            "step 'w': messageOf 'p' is not a send step",
        ),
        (
            [
                {
                    "id": "b",
                    "type": "branch",
                    "default": "m",
                    "cases": [{"when": {"engaged": {"messageOf": "m", "engagement": "opened"}}}],
                },
                SEND | {"id": "m"},
            ],
            {},
            "step 'b': send step 'm' never comes first",
        ),
        (
            [
                {
                    "id": "b",
                    "type": "branch",
                    "cases": [{"when": {"engaged": {"messageOf": "b", "engagement": "opened"}}}],
                }
            ],
            {},
            "step 'b': messageOf 'b' is not a send step",
        ),
    ],
)
def test_a_bad_graph_is_refused_naming_the_step(
    steps: list[dict[str, Any]], fields: dict[str, Any], complaint: str
) -> None:
    assert complaint in refused(*steps, **fields)


def test_a_loop_through_a_wait_is_allowed() -> None:
    definition = journey(SEND | {"id": "a", "next": "w"}, wait("w", "a"))
    assert definition.first == "a"
    looped = journey(
        SEND | {"id": "a", "next": "f"},
        {"id": "f", "type": "wait_for", "event": "e", "timeout": {"amount": 1, "unit": "days"},
         "onEvent": "a", "onTimeout": "a"},
    )  # fmt: skip
    assert looped.steps[1].type == "wait_for"


def test_a_control_path_needs_no_next_and_start_may_be_named() -> None:
    definition = journey(
        {"id": "s", "type": "split", "paths": [{"name": "c", "weight": 1, "control": True},
                                               {"name": "a", "weight": 0, "next": "a"}]},
        SEND | {"id": "a"},
    )  # fmt: skip
    assert definition.first == "s"
    assert journey(SEND | {"id": "a"}, SEND | {"id": "b", "next": "a"}, start="b").first == "b"


def test_multiword_fields_load_by_name_or_alias() -> None:
    by_alias = WaitStep.model_validate(
        {"id": "w", "type": "wait", "untilTrait": {"trait": "birthday"}}
    )
    by_name = WaitStep.model_validate(
        {"id": "w", "type": "wait", "until_trait": {"trait": "birthday"}}
    )
    assert by_alias == by_name
    assert SendStep.model_validate(SEND | {"id": "s"}).category == "transactional"


def test_the_json_schema_is_published_with_aliases() -> None:
    schema = JourneyDefinition.json_schema()
    assert schema["title"] == "JourneyDefinition"
    assert "untilTrait" in schema["$defs"]["WaitStep"]["properties"]
    assert "onTimeout" in schema["$defs"]["WaitForStep"]["properties"]
    assert "maxConcurrent" in schema["$defs"]["Entry"]["properties"]
