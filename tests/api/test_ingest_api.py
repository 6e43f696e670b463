"""The tracking endpoints over HTTP: auth, tenancy, bad input, partial batches."""

from __future__ import annotations

import base64
import gzip

import orjson
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from junction.store.database import Database
from junction.store.tables import contacts, events
from tests.conftest import make_tenant


def rows(database: Database, table) -> int:  # type: ignore[no-untyped-def]
    with database.read() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_track_is_stored(client: TestClient, database: Database) -> None:
    answer = client.post("/v1/track", json={"userId": "ada", "event": "Signed Up"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["success"] is True
    assert rows(database, events) == 1


def test_http_basic_with_the_key_as_username_is_accepted(client, database, tenant) -> None:
    token = base64.b64encode(f"{tenant.key}:".encode()).decode()
    answer = client.post(
        "/v1/track",
        json={"userId": "ada", "event": "X"},
        headers={"Authorization": f"Basic {token}"},
    )
    assert answer.status_code == 200
    assert rows(database, events) == 1


def test_every_route_needs_a_known_key(client: TestClient, database: Database) -> None:
    missing = client.post(
        "/v1/track", json={"userId": "a", "event": "X"}, headers={"Authorization": ""}
    )
    assert missing.status_code == 401
    assert "Authorization: Bearer KEY" in missing.json()["error"]["message"]
    unknown = client.post(
        "/v1/batch", json={"batch": []}, headers={"Authorization": "Bearer jk_nope_nope"}
    )
    assert unknown.status_code == 401
    assert client.get("/v1/contacts/ada", headers={"Authorization": "Basic !!"}).status_code == 401
    assert rows(database, events) == 0


def test_a_key_sees_only_its_own_workspace(client, database, clock) -> None:
    client.post("/v1/identify", json={"userId": "ada", "traits": {"plan": "pro"}})
    other = make_tenant(database, clock, "globex")
    answer = client.get("/v1/contacts/ada", headers={"Authorization": f"Bearer {other.key}"})
    assert answer.status_code == 404
    assert client.get("/v1/contacts/ada").status_code == 200


def test_malformed_json_is_a_400_naming_the_body(client, database) -> None:
    answer = client.post(
        "/v1/track", content=b'{"userId": "a",', headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["errors"] == [{"field": "body", "message": "is not valid JSON"}]


def test_a_wrong_type_is_a_422_naming_the_field(client, database) -> None:
    answer = client.post("/v1/track", json={"userId": "a", "event": "X", "properties": "big"})
    assert answer.status_code == 422
    assert answer.json()["error"]["errors"][0]["field"] == "properties"


def test_an_invalid_identify_writes_nothing(client, database) -> None:
    answer = client.post(
        "/v1/identify",
        json={
            "userId": "ada",
            "traits": {"email": "ada@example.com", "phone": "+33 6 12", "timezone": "Paris"},
        },
    )
    assert answer.status_code == 422
    fields = {e["field"] for e in answer.json()["error"]["errors"]}
    assert fields == {"traits.phone", "traits.timezone"}
    assert rows(database, contacts) == 0 and rows(database, events) == 0


def test_oversized_calls_are_413_naming_the_limit(client, database) -> None:
    big = {"userId": "a", "event": "X", "properties": {"blob": "x" * 33_000}}
    answer = client.post("/v1/track", json=big)
    assert answer.status_code == 413
    assert "32 KB" in answer.json()["error"]["message"]
    huge = orjson.dumps({"batch": [{"type": "track", "userId": "a", "event": "x" * 1000}] * 600})
    answer = client.post("/v1/batch", content=huge, headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert "500 KB" in answer.json()["error"]["message"]
    assert rows(database, events) == 0


def test_a_gzip_bomb_is_refused_at_the_limit(client, database) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    answer = client.post(
        "/v1/batch",
        content=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413


def test_a_gzipped_batch_is_read(client, database) -> None:
    payload = orjson.dumps({"batch": [{"type": "track", "userId": "a", "event": "X"}]})
    answer = client.post(
        "/v1/batch",
        content=gzip.compress(payload),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert answer.status_code == 200
    assert rows(database, events) == 1


def test_a_batch_stores_good_items_and_reports_bad_ones(client, database) -> None:
    answer = client.post(
        "/v1/batch",
        json={
            "batch": [
                {"type": "track", "userId": "ada", "event": "Good", "messageId": "m1"},
                {
                    "type": "identify",
                    "userId": "bob",
                    "messageId": "m2",
                    "traits": {"phone": "nope"},
                },
                {"type": "track", "event": "No one", "messageId": "m3"},
            ]
        },
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == 1 and body["success"] is False
    assert [(r["index"], r["messageId"], r["errors"][0]["field"]) for r in body["rejected"]] == [
        (1, "m2", "batch.1.traits.phone"),
        (2, "m3", "batch.2.userId"),
    ]
    assert rows(database, events) == 1 and rows(database, contacts) == 1


def test_a_batch_with_nothing_acceptable_is_a_422(client, database) -> None:
    answer = client.post("/v1/batch", json={"batch": [{"type": "track", "userId": "a"}]})
    assert answer.status_code == 422
    assert answer.json()["rejected"][0]["errors"][0]["field"] == "batch.0.event"


def test_the_openapi_document_describes_the_tracking_calls(client) -> None:
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/v1/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/Batch"
    assert "userId" in spec["components"]["schemas"]["Track"]["properties"]
