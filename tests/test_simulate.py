"""The journey simulator: the canonical launch journey run on a virtual clock against
synthetic people, through the real engine, dispatcher and capture provider."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from junction.cli import app
from junction.simulate import Forecast, Refused, parse_assumptions, simulate
from junction.store import journeys
from junction.store.database import Database
from tests.conftest import Tenant
from tests.test_cli import stored  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parent.parent
LAUNCH = ROOT / "examples" / "journeys" / "launch.yaml"
TEMPLATES = ROOT / "examples" / "journeys" / "templates.yaml"
PURCHASE = {"purchase": "Order Completed"}


def launch(
    people: int,
    days: int,
    assume: dict[str, float],
    seed: int = 1,
    events: Path | None = None,
) -> Forecast:
    return simulate(
        LAUNCH, [TEMPLATES], people, days, assume, events, seed, 1.0, event_names=PURCHASE
    )


def step(forecast: Forecast, step_id: str) -> dict[str, object]:
    return next(s.__dict__ for s in forecast.steps if s.id == step_id)


def sent_in(forecast: Forecast, channel: str) -> dict[float, int]:
    """Hour each bucket starts at → messages of the channel sent in it (non-empty only)."""
    return {b.from_hour: b.sent[channel] for b in forecast.timeline if b.sent.get(channel)}


def test_the_same_seed_gives_the_same_forecast_and_another_seed_another() -> None:
    assume = {"opens": 0.3, "clicks": 0.1, "purchase": 0.2}
    first = launch(20, 4, assume, seed=1)
    assert launch(20, 4, assume, seed=1) == first
    assert launch(20, 4, assume, seed=2) != first
    assert first.entered == 20 and sum(first.runs.values()) == 20


def test_without_engagement_everyone_gets_email_push_then_sms_72_hours_after_entry() -> None:
    forecast = launch(25, 4, {"opens": 0.0, "purchase": 0.0})

    assert forecast.channels == {"email": 25, "push": 25, "sms": 25}
    assert sent_in(forecast, "email") == {0: 25}
    assert sent_in(forecast, "push") == {24: 25}  # D+1: the email was not opened in 24 h
    assert sent_in(forecast, "sms") == {72: 25}  # D+3: no purchase in the 48 h after the push
    assert forecast.timeline[3].label == "D+3"
    assert forecast.runs == {"completed": 25}
    assert step(forecast, "sms")["completed"] == 25
    assert forecast.events == {"Signed Up": 25}


def test_when_everyone_opens_the_email_nobody_gets_the_push() -> None:
    forecast = launch(30, 4, {"opens": 1.0})

    assert forecast.channels == {"email": 30, "sms": 30}
    assert step(forecast, "push")["entered"] == 0
    # Opened within 6 hours, then 48 hours without a purchase.
    assert set(sent_in(forecast, "sms")) == {48}
    assert forecast.events["message.opened"] == 30


def test_when_everyone_buys_before_the_sms_would_go_every_run_converts() -> None:
    # Over 3 days each purchase falls at one of hours 0-71, and the SMS would go at hour 72.
    forecast = launch(30, 3, {"purchase": 1.0})

    assert forecast.runs == {"converted": 30}
    assert forecast.events["Order Completed"] == 30
    email, push, sms = step(forecast, "email"), step(forecast, "push"), step(forecast, "sms")
    assert email["sent"] == {"email": 30} and email["converted"] == 30
    # Whoever was sent the push had not bought by hour 24, and bought later.
    assert push["sent"] == ({"push": push["converted"]} if push["converted"] else {})
    assert 0 < push["converted"] < 30  # type: ignore[operator]
    assert sms["entered"] == 0 and "sms" not in forecast.channels
    assert sum(s.waiting for s in forecast.steps) == 0


def test_replayed_purchases_stop_the_journey_exactly_where_they_happen(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    lines = [
        {"userId": "sim-000001", "event": "Order Completed", "at": 0},
        # Stored at the 24 h step, before that step's timers: no push.
        {"userId": "sim-000002", "event": "Order Completed", "at": 23.5},
        {"userId": "sim-000003", "event": "Order Completed", "properties": {"total": 9}, "at": 30},
    ]
    events.write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    forecast = launch(4, 4, {}, events=events)

    assert forecast.channels == {"email": 4, "push": 2, "sms": 1}
    assert forecast.runs == {"completed": 1, "converted": 3}
    assert step(forecast, "email")["converted"] == 3
    assert step(forecast, "push")["converted"] == 1


def test_an_api_journey_with_a_missing_template_gets_a_placeholder(tmp_path: Path) -> None:
    journey = tmp_path / "nudge.yaml"
    journey.write_text(
        "key: nudge\nname: Nudge\ntrigger: {api: true}\n"
        "steps:\n  - {id: text, type: send, channels: [sms, email], template: nudge-text}\n"
    )

    forecast = simulate(journey, [], 5, 1, {}, None, 1, 1.0)

    assert forecast.channels == {"sms": 5}  # the best reachable of the two
    assert forecast.runs == {"completed": 5}
    assert any("placeholder" in note and "nudge-text" in note for note in forecast.notes)
    assert any("API" in note for note in forecast.notes)
    assert forecast.timeline[0].label == "H+0" and forecast.timeline[0].sent == {"sms": 5}
    assert len(forecast.timeline) == 24  # hour by hour within 2 days


def test_a_scheduled_journey_enters_everyone_at_each_firing(tmp_path: Path) -> None:
    journey = tmp_path / "daily.yaml"
    journey.write_text(
        "key: daily\nname: Daily\ntrigger: {schedule: {cron: '0 10 * * *'}}\n"
        "entry: {mode: every_time}\n"
        "steps:\n  - {id: tip, type: send, channel: push, content: {body: Tip of the day}}\n"
    )

    forecast = simulate(journey, [], 3, 2, {}, None, 1, 1.0)

    # The simulation starts at 09:00 UTC: the cron fires at hours 1 and 25.
    assert forecast.entered == 6 and forecast.runs == {"completed": 6}
    assert sent_in(forecast, "push") == {1: 3, 25: 3}
    assert any("'0 10 * * *'" in note for note in forecast.notes)


def test_assumptions_are_read_and_bad_ones_named() -> None:
    assert parse_assumptions("opens=0.3, clicks=0.05,purchase=1") == {
        "opens": 0.3,
        "clicks": 0.05,
        "purchase": 1.0,
    }
    with pytest.raises(ValueError, match=r"opens: 1\.5 is not a probability"):
        parse_assumptions("opens=1.5")
    with pytest.raises(ValueError, match="name=probability"):
        parse_assumptions("opens")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.stdout, result.output


def test_the_command_prints_the_same_numbers_as_the_function() -> None:
    code, stdout, output = run(
        "simulate",
        str(LAUNCH),
        "--templates",
        str(TEMPLATES),
        "--contacts",
        "200",
        "--days",
        "7",
        "--seed",
        "3",
        "--json",
    )
    assert code == 0, output
    direct = simulate(LAUNCH, [TEMPLATES], 200, 7, {}, None, 3, 1.0)
    assert json.loads(stdout) == json.loads(json.dumps(direct.as_dict()))
    assert json.loads(stdout)["channels"] == {"email": 200, "push": 200, "sms": 200}


def test_the_command_prints_tables(tmp_path: Path) -> None:
    code, stdout, output = run(
        "simulate", str(LAUNCH), "--contacts", "3", "--days", "1", "--assume", "opens=1"
    )
    assert code == 0, output
    assert "template 'launch-email' not given: a placeholder (email)" in stdout
    assert "wait-open" in stdout and "H+0 (0-1 h)" in stdout and "completed" not in stdout
    assert "runs: waiting 3" in stdout


def test_an_invalid_journey_is_refused_naming_the_step(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        LAUNCH.read_text().replace("launch-sms\n    next: null", "launch-sms\n    next: nowhere")
    )
    code, _, output = run("simulate", str(broken), "--contacts", "2")
    assert code == 1
    assert "'sms' leads to 'nowhere'" in output and "not simulated" in output

    untimed = tmp_path / "untimed.yaml"
    untimed.write_text(
        "key: x\nname: X\ntrigger: {api: true}\n"
        "steps:\n  - {id: wait-paid, type: wait_for, event: Paid}\n"
    )
    code, _, output = run("simulate", str(untimed), "--contacts", "2")
    assert code == 1 and "steps.wait-paid.timeout: Field required" in output


def test_bad_replayed_events_and_assumptions_are_named(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"userId": "sim-000001", "event": "Order Completed", "at": 2}\n'
        '{"userId": "ada", "event": "Order Completed", "at": 2}\n'
        '{"userId": "sim-000009", "event": "Order Completed", "at": 2}\n'
        '{"userId": "sim-000001", "event": "Order Completed", "at": 900}\n'
        "{oops\n"
    )
    code, _, output = run("simulate", str(LAUNCH), "--contacts", "2", "--events", str(events))
    assert code == 1
    assert "line 2: userId" in output and "line 3: userId: sim-000009 is not simulated" in output
    assert "line 4: at" in output and "line 5: not JSON" in output
    code, _, output = run("simulate", str(LAUNCH), "--assume", "opens=lots")
    assert code == 1 and "'lots' is not a number" in output
    with pytest.raises(Refused, match="exactly one"):
        simulate(TEMPLATES, [], 2, 1, {}, None, 1, 1.0)


def test_the_example_journey_and_its_templates_apply(
    stored: Database,  # noqa: F811
    tenant: Tenant,
) -> None:
    # Campaign definitions are created with `junction campaign create`, not applied.
    files = sorted(
        str(p) for p in (ROOT / "examples").glob("*/*.yaml") if p.parent.name != "campaigns"
    )
    result = CliRunner().invoke(app, ["apply", *files, "--workspace", "acme"])
    assert result.exit_code == 0, result.output
    with stored.read() as conn:
        saved = journeys.get(conn, tenant.id, "launch")
    assert saved["status"] == "draft" and saved["definition"]["steps"][0]["id"] == "email"
