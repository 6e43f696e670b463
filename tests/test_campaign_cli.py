"""`junction campaign …` run as a user would (Typer's runner) on SQLite and PostgreSQL: the
example files created, invalid ones refused with the field named, moves, status, and
``status --watch`` following a campaign a worker is sending until it completes."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from junction.cli import app, schema_text
from junction.clock import SystemClock
from junction.domain.campaigns import CampaignDefinition
from junction.domain.tracking import Identify
from junction.engine.dispatcher import Dispatcher
from junction.store.database import Database
from junction.store.ingest import Batch, ingest
from junction.store.tables import segments
from tests.conftest import SECRET, Tenant

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "campaigns"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, [*args, *(["--workspace", "acme"] if args[0] != "schema" else [])]
    )
    return result.exit_code, result.output


@pytest.fixture
def stored(
    database: Database, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Database:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUNCTION_DATABASE_URL", database.url.render_as_string(hide_password=False))
    monkeypatch.setenv("JUNCTION_SECRET_KEY", SECRET)
    now = datetime.now(UTC)
    people = [
        Identify(user_id=f"p{i}", traits={"email": f"p{i}@example.com", "timezone": "Europe/Paris"})
        for i in range(30)
    ]
    with database.write() as conn:
        ingest(conn, tenant.id, Batch(messages=people, received_at=now), SECRET)
        conn.execute(
            segments.insert().values(
                workspace_id=tenant.id,
                key="cart-abandoners",
                status="active",
                version=1,
                definition={
                    "key": "cart-abandoners",
                    "where": {"trait": "email", "op": "exists", "value": True},
                },
                digest="test",
                members=0,
                created_at=now,
                updated_at=now,
            )
        )
    code, output = run("apply", *map(str, sorted((EXAMPLES / "templates").glob("*.yaml"))))
    assert code == 0, output
    return database


def test_the_examples_are_created_and_the_schema_published(stored: Database) -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        code, output = run("campaign", "create", str(path))
        assert code == 0 and "created (draft)" in output, (path.name, output)
    code, output = run("campaign", "create", str(EXAMPLES / "winter-sale.yaml"))
    assert code == 0 and "unchanged" in output
    published = (ROOT / "docs" / "schemas" / "campaign.schema.json").read_text(encoding="utf-8")
    assert published == schema_text(CampaignDefinition), "regenerate docs/schemas/campaign…"
    code, output = run("schema", "campaign")
    assert code == 0 and output == published


def test_an_invalid_file_names_each_field(stored: Database, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "key: bad\naudience: {segment: nobody}\n"
        "message: {template: missing, channel: email, category: offers}\n"
        "schedule: {at: '2020-01-01T09:00:00Z'}\n"
    )
    code, output = run("campaign", "create", str(bad))
    assert code == 1
    for field in ("message.template", "audience.segment", "schedule.at"):
        assert field in output, output
    code, output = run("campaign", "status", "bad")
    assert code == 1 and "no campaign 'bad'" in output


def test_moves_and_watching_a_send_to_the_end(stored: Database) -> None:
    run("campaign", "create", str(EXAMPLES / "cart-reminder.yaml"))
    code, output = run("campaign", "pause", "cart-reminder")
    assert code == 1 and "draft: it cannot pause" in output
    code, output = run("campaign", "schedule", "cart-reminder", "--at", "2020-01-01T00:00:00+00:00")
    assert code == 1 and "schedule.at" in output
    code, output = run("campaign", "schedule", "cart-reminder", "--at", "2099-01-01T00:00:00+00:00")
    assert code == 0 and "scheduled, starts 2099-01-01T00:00:00+00:00" in output, output
    assert run("campaign", "pause", "cart-reminder")[1].strip().endswith("paused")
    assert run("campaign", "cancel", "cart-reminder")[1].strip().endswith("cancelled")

    run("campaign", "create", str(EXAMPLES / "feature-launch.yaml"))
    run("campaign", "create", str(EXAMPLES / "winter-sale.yaml"))
    code, output = run("campaign", "send", "winter-sale")
    assert code == 0 and "sending" in output
    # A worker sends while the CLI watches: --watch returns once the test period's share
    # is out and the rest wait for the winner (still sending), so watch the other campaign.
    code, output = run("campaign", "send", "cart-reminder")
    assert code == 1 and "cancelled" in output
    worker = threading.Thread(target=lambda: asyncio.run(Dispatcher(stored, SystemClock()).drain()))
    code, output = run("campaign", "send", "feature-launch")
    assert code == 0
    worker.start()
    code, output = run("campaign", "status", "feature-launch", "--watch", "--interval", "0.1")
    worker.join(timeout=60)
    assert code == 0, output
    assert "feature-launch completed" in output and "queued 30" in output, output
    code, output = run("campaign", "status", "winter-sale")
    assert code == 0 and "heldForWinner" in output and "calm" in output and "urgent" in output
