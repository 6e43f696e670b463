"""The `junction` command, run as a user would (Typer's runner, a real SQLite file)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from junction.cli import app
from junction.store.database import Database
from junction.store.tables import api_keys, contacts

KEY = re.compile(r"^jk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$", re.M)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUNCTION_DATABASE_URL", f"sqlite:///{tmp_path / 'j.db'}")
    monkeypatch.setenv("JUNCTION_SECRET_KEY", "cli-secret")
    return tmp_path


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_workspace_create_prints_a_key_once_and_stores_only_its_hash(env: Path) -> None:
    code, output = run("workspace", "create", "Acme")
    assert code == 0, output
    key = KEY.search(output)
    assert key is not None
    database = Database(f"sqlite:///{env / 'j.db'}")
    with database.read() as conn:
        stored = conn.execute(api_keys.select()).one()
    assert stored.prefix == key.group(0)[:11]
    assert key.group(0) not in (stored.key_hash, stored.prefix)
    code, output = run("workspace", "create", "Acme")
    assert code == 1 and "already exists" in output


def test_import_keeps_good_rows_and_reports_bad_ones_by_line(env: Path) -> None:
    run("workspace", "create", "acme")
    csv = env / "people.csv"
    csv.write_text(
        "userId,email,phone,country,plan\n"
        "ada,ada@example.com,06 12 34 56 78,FR,pro\n"
        "bob,not-an-email,,,free\n"
        "cyd,cyd@example.com,,,free\n"
        ",nobody@example.com,,,free\n"
    )
    code, output = run("import", "contacts", str(csv), "--workspace", "acme")
    assert code == 0, output
    assert "imported 2 contacts, skipped 2 bad rows" in output
    assert "line 3: email: not a valid email address" in output
    assert "line 5: userId: every call needs a userId or an anonymousId" in output
    database = Database(f"sqlite:///{env / 'j.db'}")
    with database.read() as conn:
        people = {row.user_id: row for row in conn.execute(contacts.select())}
    assert set(people) == {"ada", "cyd"}
    assert people["ada"].traits["plan"] == "pro" and people["ada"].country == "FR"


def test_import_reads_json_lines(env: Path) -> None:
    run("workspace", "create", "acme")
    jsonl = env / "people.jsonl"
    jsonl.write_text(
        '{"userId": "ada", "traits": {"email": "ada@example.com"}}\n'
        '{"user_id": "bob", "plan": "pro", "timezone": "America/New_York"}\n'
        "{oops\n"
    )
    code, output = run("import", "contacts", str(jsonl), "--workspace", "acme")
    assert code == 0, output
    assert "imported 2 contacts, skipped 1 bad rows" in output
    assert "line 3: line: is not valid JSON" in output


def test_import_into_an_unknown_workspace_says_how_to_find_one(env: Path) -> None:
    csv = env / "p.csv"
    csv.write_text("userId\nada\n")
    run("db", "upgrade")
    code, output = run("import", "contacts", str(csv), "--workspace", "nope")
    assert code == 1 and "junction workspace list" in output


def test_db_upgrade_then_check_is_clean(env: Path) -> None:
    assert run("db", "upgrade")[0] == 0
    code, output = run("db", "check")
    assert code == 0 and "matches" in output


def test_webpush_keys_are_a_usable_pair(env: Path) -> None:
    from junction.channels.webpush import vapid_public_key

    code, output = run("webpush", "keys")
    assert code == 0, output
    public = re.search(r"applicationServerKey\):\n(\S+)", output)
    pem = output[
        output.index("-----BEGIN") : output.index("-----", output.index("-----END") + 5) + 5
    ]
    assert public is not None
    assert vapid_public_key(pem) == public.group(1)
