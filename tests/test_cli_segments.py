"""`junction apply` with segments, and `junction segment list/show/evaluate`, run as a user
would against the test database (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import select

from junction.store.database import Database
from junction.store.tables import segments
from tests.conftest import Tenant
from tests.test_cli import run, stored  # noqa: F401  (the fixture)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "segments"


def test_apply_saves_the_example_segments_and_lists_them(
    stored: Database,  # noqa: F811
    tenant: Tenant,
) -> None:
    files = [str(path) for path in sorted(EXAMPLES.glob("*.yaml"))]
    code, output = run("apply", *files, "--workspace", "acme")
    assert code == 0, output
    assert "3 created, 0 unchanged" in output
    code, output = run("apply", *files, "--workspace", "acme")
    assert "0 created, 3 unchanged" in output
    with stored.read() as conn:
        keys = sorted(conn.scalars(select(segments.c.key)))
    assert keys == ["cart-abandoners", "frequent-buyers", "inactive-customers"]
    code, output = run("segment", "list", "--workspace", "acme")
    assert code == 0 and "cart-abandoners" in output and "inactive-customers" in output


def test_a_bad_segment_names_file_and_field_and_saves_nothing(
    stored: Database,  # noqa: F811
    tenant: Tenant,
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("key: bad\nwhere:\n  all:\n    - trait: plan\n      op: like\n")
    code, output = run("apply", str(EXAMPLES / "inactive.yaml"), str(bad), "--workspace", "acme")
    assert code == 1, output
    assert f"{bad}: where.all.0.op:" in output.replace("\n", "")
    with stored.read() as conn:
        assert list(conn.scalars(select(segments.c.key))) == []


def test_show_and_evaluate_count_the_members(
    stored: Database,  # noqa: F811
    tenant: Tenant,
    tmp_path: Path,
    client: TestClient,
) -> None:
    for user_id in ("ann", "bob"):
        client.post("/v1/identify", json={"userId": user_id, "traits": {"plan": "pro"}})
    client.post("/v1/identify", json={"userId": "cat", "traits": {"plan": "free"}})
    pros = tmp_path / "pros.yaml"
    pros.write_text("key: pros\nwhere: {trait: plan, value: pro}\n")
    assert run("apply", str(pros), "--workspace", "acme")[0] == 0
    code, output = run("segment", "show", "pros", "--workspace", "acme")
    assert code == 0, output
    assert "pros: 2 member(s)" in output and "ann" in output and "cat" not in output
    code, output = run("segment", "evaluate", "pros", "--workspace", "acme")
    assert code == 0 and "pros: 2 member(s)" in output
    code, output = run("segment", "show", "nope", "--workspace", "acme")
    assert code == 1 and "no segment 'nope'" in output
