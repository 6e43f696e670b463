"""The published JSON Schemas in docs/schemas are what the models produce today."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel
from typer.testing import CliRunner

from junction.cli import app, schema_text
from junction.domain.journey_model import JourneyDefinition
from junction.domain.segments import SegmentDefinition
from junction.domain.templates import TemplateDefinition

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schemas"
PUBLISHED: list[tuple[str, type[BaseModel]]] = [
    ("template", TemplateDefinition),
    ("journey", JourneyDefinition),
    ("segment", SegmentDefinition),
]


@pytest.mark.parametrize(("name", "model"), PUBLISHED)
def test_the_published_schema_is_the_models(name: str, model: type[BaseModel]) -> None:
    path = SCHEMAS / f"{name}.schema.json"
    published = path.read_text(encoding="utf-8")
    assert published == schema_text(model), (
        f"{path.relative_to(SCHEMAS.parent.parent)} is stale; regenerate it with "
        f"`.venv/bin/junction schema {name} > docs/schemas/{name}.schema.json`"
    )
    assert json.loads(published)["properties"]["key"]["type"] == "string"


def test_junction_schema_template_prints_the_published_file() -> None:
    result = CliRunner().invoke(app, ["schema", "template"])
    assert result.exit_code == 0, result.output
    assert result.output == (SCHEMAS / "template.schema.json").read_text(encoding="utf-8")
    schema = json.loads(result.output)
    sms = schema["$defs"]["SmsBlock"]["properties"]
    assert "landingPage" in sms and "landing_page" not in sms  # the names files use


def test_junction_schema_journey_prints_the_published_file() -> None:
    result = CliRunner().invoke(app, ["schema", "journey"])
    assert result.exit_code == 0, result.output
    assert result.output == (SCHEMAS / "journey.schema.json").read_text(encoding="utf-8")
    schema = json.loads(result.output)
    wait_for = schema["$defs"]["WaitForStep"]["properties"]
    assert "messageOf" in wait_for and "message_of" not in wait_for  # the names files use
    assert schema["$defs"]["Entry"]["properties"]["maxConcurrent"]["minimum"] == 1
