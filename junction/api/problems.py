"""The one place exceptions become HTTP answers.

Every error body has the same shape::

    {"error": {"code": "invalid_input", "message": "traits.email: not a valid ...",
               "errors": [{"field": "traits.email", "message": "not a valid ..."}]}}
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from junction.api.responses import JSONAnswer
from junction.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    InvalidSignature,
    JunctionError,
    MalformedBody,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)

STATUS: list[tuple[type[JunctionError], int]] = [
    (PayloadTooLarge, 413),
    (MalformedBody, 400),
    (InvalidInput, 422),
    (Unauthenticated, 401),
    (InvalidSignature, 403),
    (NotFound, 404),
    (Conflict, 409),
]


def status_of(error: JunctionError) -> int:
    return next((status for kind, status in STATUS if isinstance(error, kind)), 500)


def error_body(code: str, message: str, errors: list[FieldError] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = [error.as_dict() for error in errors]
    return {"error": body}


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(part) for part in location if part not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install(app: FastAPI) -> None:
    @app.exception_handler(JunctionError)
    async def on_junction_error(request: Request, error: JunctionError) -> JSONAnswer:
        errors = error.errors if isinstance(error, InvalidInput) else None
        headers = None
        if isinstance(error, Unauthenticated):
            # Pages ask the browser for the key (as the Basic username); the API says Bearer.
            scheme = 'Basic realm="Junction"' if request.url.path.startswith("/dev") else "Bearer"
            headers = {"WWW-Authenticate": scheme}
        return JSONAnswer(
            error_body(error.code, error.message, errors),
            status_code=status_of(error),
            headers=headers,
        )

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, error: RequestValidationError) -> JSONAnswer:
        errors = []
        for item in error.errors():
            message = str(item.get("msg", "is not valid"))
            if item.get("type") == "json_invalid":
                errors.append(FieldError("body", "is not valid JSON"))
            else:
                errors.append(FieldError(_field(tuple(item.get("loc", ()))), message))
        message = "; ".join(f"{e.field}: {e.message}" for e in errors)
        return JSONAnswer(error_body("invalid_input", message, errors), status_code=422)

    @app.exception_handler(HTTPException)
    async def on_http_error(_: Request, error: HTTPException) -> JSONAnswer:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "error")
        return JSONAnswer(
            error_body(code, str(error.detail)),
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )
