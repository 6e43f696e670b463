"""Liquid, sandboxed and bounded: compiling a template string once, rendering it per person.

Rules kept here:
- python-liquid reaches data only by key and index, never by Python attribute, so a template
  cannot walk to Python internals; on top of that every render is bounded: loop iterations,
  output size, nesting depth and local variables (the limits below). Hitting one is a
  ``RenderFailed`` naming it, for that one message, never a crashed worker;
- ``lenient`` templates render a missing variable as nothing; ``strict`` ones fail the render
  (``| default: '…'`` still works in both);
- HTML fields (an email's html, a landing page) escape what they output (``| raw`` opts out);
- a syntax error is reported with its line and column in the field it is in;
- a compiled ``Piece`` is *bound* once to what every recipient of a batch shares (workspace
  constants, a campaign's data): top-level parts that never read the person's own namespaces
  are rendered then and kept as text; only the rest runs per recipient. Templates that keep
  state between parts (``assign``, ``capture``, ``increment``…) are rendered whole.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from liquid import Environment, Markup, RenderContext, StrictDefaultUndefined, Undefined
from liquid.ast import Node
from liquid.exceptions import LiquidError, LiquidSyntaxError, OutputStreamLimitError
from liquid.template import BoundTemplate

from junction.render import filters

LOOP_ITERATIONS = 10_000
OUTPUT_CHARACTERS = 1_000_000
CONTEXT_DEPTH = 30
LOCAL_NAMESPACE = 100_000
# Namespaces that differ per recipient; anything else is shared by a whole batch.
PERSONAL = frozenset({"contact", "message", "landing_url", "_jn"})
# Tags that carry state from one part of a template to the next.
_STATEFUL_TAGS = frozenset({"assign", "capture", "increment", "decrement", "cycle", "liquid"})


class _Bounded(Environment):
    loop_iteration_limit = LOOP_ITERATIONS
    output_stream_limit = OUTPUT_CHARACTERS
    context_depth_limit = CONTEXT_DEPTH
    local_namespace_limit = LOCAL_NAMESPACE


def _raw(value: object) -> Markup:
    """``{{ trusted_html | raw }}``: output as markup, unescaped."""
    return Markup(str(value))


def _environment(undefined: type[Undefined], html: bool) -> Environment:
    env = _Bounded(undefined=undefined, autoescape=html)
    filters.register(env)
    env.filters["raw"] = _raw
    return env


# By (undefined policy, whether the field is HTML). HTML fields escape what they output, so
# a trait holding markup shows as text: it cannot add a script to a landing page or a link to
# an email.
ENVIRONMENTS = {
    (name, html): _environment(undefined, html)
    for name, undefined in (("lenient", Undefined), ("strict", StrictDefaultUndefined))
    for html in (False, True)
}


@dataclass(frozen=True, slots=True)
class SyntaxProblem:
    field: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.field}, line {self.line} column {self.column}: {self.message}"


class TemplateSyntaxError(ValueError):
    def __init__(self, problem: SyntaxProblem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class RenderFailed(Exception):
    """This person's message cannot be rendered; the text says which field and why."""


class _Personal(Exception):
    """Raised by the stand-in for a personal namespace while a skeleton is being bound."""


class _Tripwire(Mapping[str, Any]):
    def __getitem__(self, key: str) -> Any:
        raise _Personal

    def __iter__(self) -> Iterator[str]:
        raise _Personal

    def __len__(self) -> int:
        raise _Personal

    def __bool__(self) -> bool:
        raise _Personal

    def __str__(self) -> str:
        raise _Personal


class _Capped(io.StringIO):
    """An output buffer that stops a render at ``OUTPUT_CHARACTERS``."""

    size = 0

    def write(self, text: str) -> int:
        self.size += len(text)
        if self.size > OUTPUT_CHARACTERS:
            raise OutputStreamLimitError(
                f"output stream limit reached ({OUTPUT_CHARACTERS:,} characters)", token=None
            )
        return super().write(text)


_TRIPWIRES: dict[str, Any] = {name: _Tripwire() for name in PERSONAL}


def _position(error: LiquidError) -> tuple[int, int]:
    token = getattr(error, "token", None)
    if token is None:
        return 1, 1
    before = token.source[: token.start_index]
    return before.count("\n") + 1, token.start_index - (before.rfind("\n") + 1) + 1


def _short(error: LiquidError) -> str:
    return str(error.message if hasattr(error, "message") else error).splitlines()[0]


@dataclass(frozen=True, slots=True)
class Piece:
    """One Liquid string, compiled."""

    field: str
    source: str
    template: BoundTemplate | None  # None when the string holds no Liquid at all

    @property
    def variables(self) -> list[str]:
        return [] if self.template is None else sorted(self.template.global_variable_paths())

    def bind(self, shared: Mapping[str, Any]) -> Bound:
        """Render what does not depend on the person, once for everyone sharing ``shared``."""
        template = self.template
        if template is None:
            return Bound(self.field, None, (self.source,), {})
        if _STATEFUL_TAGS.intersection(template.tag_names()):
            return Bound(self.field, template, tuple(template.nodes), dict(shared))
        context = RenderContext(template, globals={**shared, **_TRIPWIRES})
        parts: list[str | Node] = []
        for node in template.nodes:
            buffer = _Capped()
            try:
                node.render(context, buffer)
            except _Personal:
                parts.append(node)
                continue
            except LiquidError as error:
                raise RenderFailed(f"{self.field}: {_short(error)}") from None
            text = buffer.getvalue()
            if parts and isinstance(parts[-1], str):
                parts[-1] += text
            else:
                parts.append(text)
        return Bound(self.field, template, tuple(parts), dict(shared))

    def render(self, namespace: Mapping[str, Any]) -> str:
        return self.bind({}).render(namespace) if self.template else self.source


@dataclass(frozen=True, slots=True)
class Bound:
    field: str
    template: BoundTemplate | None
    parts: tuple[str | Node, ...]
    shared: dict[str, Any]

    def render(self, personal: Mapping[str, Any]) -> str:
        if self.template is None or all(isinstance(part, str) for part in self.parts):
            return "".join(part for part in self.parts if isinstance(part, str))
        context = RenderContext(self.template, globals={**self.shared, **personal})
        buffer = _Capped()
        try:
            for part in self.parts:
                if isinstance(part, str):
                    buffer.write(part)
                else:
                    part.render(context, buffer)
        except LiquidError as error:
            raise RenderFailed(f"{self.field}: {_short(error)}") from None
        except RecursionError:
            raise RenderFailed(f"{self.field}: nested too deeply") from None
        return buffer.getvalue()


def compile_piece(field: str, source: str, undefined: str = "lenient", html: bool = False) -> Piece:
    if "{" not in source:
        return Piece(field, source, None)
    env = ENVIRONMENTS[(undefined, html)]
    try:
        template = env.from_string(source)
    except LiquidError as error:
        line, column = _position(error)
        raise TemplateSyntaxError(SyntaxProblem(field, line, column, _short(error))) from None
    for name in template.filter_names():
        if name not in env.filters:
            at = re.search(r"\|\s*" + re.escape(name) + r"\b", source)
            before = source[: at.end() - len(name)] if at else ""
            raise TemplateSyntaxError(
                SyntaxProblem(
                    field,
                    before.count("\n") + 1,
                    len(before) - (before.rfind("\n") + 1) + 1,
                    f"unknown filter {name!r}",
                )
            )
    return Piece(field, source, template)


__all__ = [
    "Bound",
    "LiquidSyntaxError",
    "Piece",
    "RenderFailed",
    "SyntaxProblem",
    "TemplateSyntaxError",
    "compile_piece",
]
