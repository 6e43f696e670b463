"""One exception tree for the whole of Junction.

    JunctionError                 anything Junction raises on purpose
    ├── InvalidInput              bad input; names each field and what to fix       → 422
    │   ├── PayloadTooLarge       a body over a documented size limit               → 413
    │   └── MalformedBody         not JSON, wrong encoding                           → 400
    ├── Unauthenticated           no API key, or one that is unknown or revoked     → 401
    ├── InvalidSignature          a provider callback whose signature does not check → 403
    ├── NotFound                  absent, or belonging to another workspace         → 404
    └── Conflict                  clashes with what is stored                       → 409

Only the API layer maps these to HTTP statuses (``junction/api/problems.py``); the CLI
prints them. Each class's docstring is its default message.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field: ``field`` is a dotted path such as ``batch.3.traits.email``."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class JunctionError(Exception):
    """Something went wrong in Junction."""

    code = "error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or " ".join((self.__doc__ or self.code).split())
        super().__init__(self.message)


class InvalidInput(JunctionError):
    """The input is not valid."""

    code = "invalid_input"

    def __init__(self, errors: list[FieldError] | FieldError, message: str | None = None) -> None:
        self.errors = [errors] if isinstance(errors, FieldError) else list(errors)
        if message is None and len(self.errors) == 1:
            message = f"{self.errors[0].field}: {self.errors[0].message}"
        super().__init__(message)


class PayloadTooLarge(InvalidInput):
    """The request body is larger than allowed."""

    code = "payload_too_large"


class MalformedBody(InvalidInput):
    """The request body is not valid JSON."""

    code = "malformed_body"


class Unauthenticated(JunctionError):
    """Send a workspace API key: `Authorization: Bearer KEY`, or HTTP Basic with the key as
    username."""

    code = "unauthenticated"


class InvalidSignature(JunctionError):
    """The request's signature does not match: it did not come from the provider, or the
    configured secret is wrong."""

    code = "invalid_signature"


class NotFound(JunctionError):
    """Not found."""

    code = "not_found"


class Conflict(JunctionError):
    """This conflicts with what is already stored."""

    code = "conflict"
