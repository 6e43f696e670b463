"""Definitions read from files or request bodies (journeys, segments, campaigns): a
pydantic model's errors become one ``InvalidInput`` naming every field, nothing saved."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from junction.errors import FieldError, InvalidInput

Model = TypeVar("Model", bound=BaseModel)


def validated(
    model: type[Model], raw: Any, name: str, field: Callable[[Sequence[Any]], str]
) -> Model:
    """``raw`` as a ``model``; ``field`` turns pydantic's location into the path the user
    wrote (``name`` when it is empty)."""
    if not isinstance(raw, dict):
        raise InvalidInput(FieldError(name, "must be an object (a mapping in YAML)"))
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        raise InvalidInput(
            [
                FieldError(
                    field(item["loc"]) or name, str(item["msg"]).removeprefix("Value error, ")
                )
                for item in error.errors()
            ]
        ) from None
