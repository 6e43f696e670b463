"""The `junction` command, run as a user would (Typer's runner, a real SQLite file)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped, unused-ignore]
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from junction.cli import app
from junction.store.database import Database
from junction.store.tables import api_keys, contacts
from junction.store.templates import list_templates
from tests.conftest import SECRET, Tenant

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


# Templates: apply, preview ---------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "templates"
ORDER = {
    "order_id": "1001",
    "currency": "EUR",
    "total": 59.8,
    "tracking_url": "https://track.example.com/1Z999",
    "delivery_date": "2026-11-24",
    "items": [{"name": "Linen shirt", "quantity": 2, "price": 29.9}],
}


@pytest.fixture
def stored(
    database: Database, tenant: Tenant, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Database:
    """The CLI pointed at the test database (SQLite and PostgreSQL), workspace 'acme'."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JUNCTION_DATABASE_URL", database.url.render_as_string(hide_password=False))
    monkeypatch.setenv("JUNCTION_SECRET_KEY", SECRET)
    return database


def versions(database: Database, tenant: Tenant) -> dict[str, int]:
    with database.read() as conn:
        return {t["key"]: t["currentVersion"] for t in list_templates(conn, tenant.id)}


def examples() -> list[str]:
    return [str(path) for path in sorted(EXAMPLES.glob("*.yaml"))]


def test_apply_saves_the_examples_once(stored: Database, tenant: Tenant) -> None:
    code, output = run("apply", *examples(), "--workspace", "acme")
    assert code == 0, output
    assert "3 created, 0 unchanged" in output
    assert versions(stored, tenant) == {"offer": 1, "order-shipped": 1, "welcome": 1}
    assert "data.items" in output  # the variables each template uses
    code, output = run("apply", *examples(), "--workspace", "acme")
    assert code == 0, output
    assert "0 created, 3 unchanged" in output and "unchanged" in output
    assert versions(stored, tenant) == {"offer": 1, "order-shipped": 1, "welcome": 1}


def test_apply_saves_a_changed_template_as_the_next_version(
    stored: Database, tenant: Tenant, tmp_path: Path
) -> None:
    assert run("apply", str(EXAMPLES / "welcome.yaml"), "--workspace", "acme")[0] == 0
    changed = tmp_path / "welcome.json"
    definition = yaml.safe_load((EXAMPLES / "welcome.yaml").read_text())
    definition["channels"]["telegram"]["text"] = "Hi {{ contact.first_name }}!"
    changed.write_text(json.dumps(definition))
    code, output = run("apply", str(changed), "--workspace", "acme")
    assert code == 0, output
    assert "1 created" in output
    assert versions(stored, tenant) == {"welcome": 2}


def test_a_broken_file_saves_nothing_and_names_file_field_and_position(
    stored: Database, tenant: Tenant, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "key: broken\n"
        "channels:\n"
        "  email:\n"
        "    subject: Hello\n"
        "    html: |\n"
        "      <p>Hello</p>\n"
        "      <p>{% if contact.vip %}Thanks{% endiff %}</p>\n"
    )
    code, output = run("apply", str(EXAMPLES / "welcome.yaml"), str(broken), "--workspace", "acme")
    assert code == 1, output
    assert re.search(
        rf"{re.escape(str(broken))}: channels\.email\.html: line 2 column \d+: ", output
    ), output
    assert "nothing saved" in output
    assert versions(stored, tenant) == {}  # not even welcome, which is valid


def test_apply_reports_every_problem_of_every_file(
    stored: Database, tenant: Tenant, tmp_path: Path
) -> None:
    several = tmp_path / "several.yaml"
    several.write_text(
        "key: ok\nchannels: {sms: {text: 'Hi {{ contact.first_name }}'}}\n"
        "---\n"
        "key: Bad Key\nchannels: {sms: {text: 'Hi'}}\n"
        "---\n"
        "name: a journey, perhaps\nsteps: []\n"
        "---\n"
        "name: a segment without a key\nwhere: {plan: pro}\n"
        "---\n"
        "name: something else\ncolour: red\n"
    )
    unreadable = tmp_path / "unreadable.json"
    unreadable.write_text('{"key": "x",\n "channels": }')
    dangling = tmp_path / "dangling.yaml"
    dangling.write_text(
        "key: dangling\nchannels: {sms: {text: 'Go {{ landing_url }}', landingPage: nope}}\n"
    )
    code, output = run("apply", str(several), str(unreadable), str(dangling), "--workspace", "acme")
    assert code == 1, output
    assert f"{several} (document 2): key: String should match pattern" in output
    assert f"{several} (document 3): steps: List should have at least 1 item" in output
    assert f"{several} (document 4): key: Field required" in output
    assert f"{several} (document 4): where: not a condition" in output
    assert f"{several} (document 5): document: not a definition Junction knows" in output
    assert f"{unreadable}: json: line 2 column 14:" in output
    assert f"{dangling}: channels.sms.landingPage: no landing template 'nope'" in output
    assert versions(stored, tenant) == {}


def test_apply_refuses_the_same_key_twice(stored: Database, tenant: Tenant, tmp_path: Path) -> None:
    copy = tmp_path / "copy.yaml"
    copy.write_text((EXAMPLES / "welcome.yaml").read_text())
    code, output = run("apply", str(EXAMPLES / "welcome.yaml"), str(copy), "--workspace", "acme")
    assert code == 1 and f"{copy}: key: 'welcome' is also defined in" in output
    assert versions(stored, tenant) == {}


def test_apply_to_an_unknown_workspace_fails(stored: Database, tenant: Tenant) -> None:
    code, output = run("apply", str(EXAMPLES / "welcome.yaml"), "--workspace", "nope")
    assert code == 1 and "junction workspace list" in output


def test_preview_renders_each_channel_for_a_stored_contact(
    stored: Database, tenant: Tenant, client: TestClient, tmp_path: Path
) -> None:
    for user_id, traits in [
        ("ada", {"first_name": "Ada", "locale": "fr-FR"}),
        ("bob", {"first_name": "Bob"}),
    ]:
        answer = client.post("/v1/identify", json={"userId": user_id, "traits": traits})
        assert answer.status_code == 200, answer.text
    assert run("apply", *examples(), "--workspace", "acme")[0] == 0
    order = tmp_path / "order.json"
    order.write_text(json.dumps(ORDER))

    code, output = run(
        "preview", "order-shipped", "--user-id", "bob", "--data", str(order), "--workspace", "acme"
    )
    assert code == 0, output
    assert "subject: Your order 1001 is on its way" in output
    assert "2 \u00d7 Linen shirt €29.90" in output and "Total €59.80" in output
    assert "text: Bob, order 1001 has shipped." in output
    assert re.search(r"\d+ segments?, GSM-7, \d+ characters", output)
    assert "order_shipped" in output  # the WhatsApp template
    assert "<html>" not in output  # the HTML only with --html

    code, output = run(
        "preview", "order-shipped", "--user-id", "ada", "--data", str(order),
        "--channel", "sms", "--channel", "email", "--html", "--workspace", "acme",
    )  # fmt: skip
    assert code == 0, output
    assert "sms (fr)" in output and "text: Ada, votre commande 1001 est" in output
    assert "Votre commande 1001 est en route" in output
    assert re.search(r"29,90\s€", output)  # French formatting: a no-break space
    assert "<html>" in output
    assert "push" not in output


def test_preview_of_a_strict_template_names_the_missing_variable(
    stored: Database, tenant: Tenant, tmp_path: Path
) -> None:
    assert run("apply", str(EXAMPLES / "welcome.yaml"), "--workspace", "acme")[0] == 0
    code, output = run("preview", "welcome", "--channel", "telegram", "--workspace", "acme")
    assert code == 1
    assert "telegram.text: contact.first_name is undefined" in output
    traits = tmp_path / "traits.json"
    traits.write_text('{"first_name": "Cyd"}')
    code, output = run("preview", "welcome", "--contact", str(traits), "--workspace", "acme")
    assert code == 0, output
    assert "Welcome aboard, Cyd!" in output and "title: Welcome, Cyd!" in output


def test_preview_of_an_unknown_template_or_contact_fails(stored: Database, tenant: Tenant) -> None:
    code, output = run("preview", "nope", "--workspace", "acme")
    assert code == 1 and "no template 'nope'" in output
    assert run("apply", str(EXAMPLES / "welcome.yaml"), "--workspace", "acme")[0] == 0
    code, output = run("preview", "welcome", "--user-id", "ghost", "--workspace", "acme")
    assert code == 1 and "no contact with userId 'ghost'" in output
