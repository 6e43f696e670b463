"""Reading contacts from CSV or JSON Lines into identify calls.

A CSV has a header row; ``userId`` (or ``user_id``) names the contact, ``anonymousId`` (or
``anonymous_id``) may too, and every other column is a trait. A JSON Lines file holds one
object per line: either identify-shaped (``{"userId": …, "traits": {…}}``) or flat, in which
case every key but the ids is a trait. Empty CSV cells are left out.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from junction.domain.tracking import Identify, validate
from junction.errors import FieldError

USER_KEYS = ("userId", "user_id")
ANONYMOUS_KEYS = ("anonymousId", "anonymous_id")


@dataclass(frozen=True, slots=True)
class Row:
    line: int
    identify: Identify | None
    errors: list[FieldError]


def _identify(data: dict[str, Any]) -> tuple[Identify | None, list[FieldError]]:
    user_id = next((data[k] for k in USER_KEYS if data.get(k) not in (None, "")), None)
    anonymous_id = next((data[k] for k in ANONYMOUS_KEYS if data.get(k) not in (None, "")), None)
    traits = data.get("traits")
    flat = traits is None
    if flat:
        traits = {k: v for k, v in data.items() if k not in USER_KEYS + ANONYMOUS_KEYS}
    elif not isinstance(traits, dict):
        return None, [FieldError("traits", "must be an object")]
    message = Identify(user_id=user_id, anonymous_id=anonymous_id, traits=traits)
    errors = validate(message)
    if flat:  # name the column the person wrote, not the trait it became
        errors = [FieldError(e.field.removeprefix("traits."), e.message) for e in errors]
    return (None, errors) if errors else (message, [])


def read_rows(path: Path) -> Iterator[Row]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        yield from _read_csv(path)
    elif suffix in (".jsonl", ".ndjson"):
        yield from _read_jsonl(path)
    else:
        raise ValueError(f"{path.name}: give a .csv or .jsonl file")


def _read_csv(path: Path) -> Iterator[Row]:
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not set(reader.fieldnames) & set(USER_KEYS + ANONYMOUS_KEYS):
            raise ValueError(f"{path.name}: the header needs a userId or anonymousId column")
        for record in reader:
            if None in record:
                yield Row(
                    reader.line_num, None, [FieldError("row", "has more cells than the header")]
                )
                continue
            data = {k: v for k, v in record.items() if v not in (None, "")}
            yield Row(reader.line_num, *_identify(data))


def _read_jsonl(path: Path) -> Iterator[Row]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = orjson.loads(line)
            except orjson.JSONDecodeError as error:
                yield Row(number, None, [FieldError("line", f"is not valid JSON ({error})")])
                continue
            if not isinstance(data, dict):
                yield Row(number, None, [FieldError("line", "must be a JSON object")])
                continue
            yield Row(number, *_identify(data))


def count_lines(path: Path) -> int:
    with path.open("rb") as handle:
        return sum(1 for _ in handle)
