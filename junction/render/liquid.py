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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from liquid import Environment, Markup, RenderContext, StrictDefaultUndefined, Undefined
from liquid.ast import Node
from liquid.builtin.expressions import FilteredExpression, Path
from liquid.builtin.output import OutputNode
from liquid.exceptions import LiquidError, LiquidSyntaxError, OutputStreamLimitError
from liquid.template import BoundTemplate
from markupsafe import escape

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


@dataclass(frozen=True)
class Piece:
    """One Liquid string, compiled."""

    field: str
    source: str
    template: BoundTemplate | None  # None when the string holds no Liquid at all

    @property
    def variables(self) -> list[str]:
        return [] if self.template is None else sorted(self.template.global_variable_paths())

    @cached_property
    def stateful(self) -> bool:
        return self.template is not None and bool(
            _STATEFUL_TAGS.intersection(self.template.tag_names())
        )

    def bind(self, shared: Mapping[str, Any]) -> Bound:
        """Render what does not depend on the person, once for everyone sharing ``shared``."""
        template = self.template
        if template is None:
            return Bound(self.field, None, (self.source,), {})
        if self.stateful:
            return Bound(self.field, template, tuple(template.nodes), dict(shared))
        context = RenderContext(template, globals={**shared, **_TRIPWIRES})
        parts: list[str | Node | _Lookup] = []
        for node in template.nodes:
            buffer = _Capped()
            try:
                node.render(context, buffer)
            except _Personal:
                parts.append(_as_lookup(node, bool(template.env.autoescape)))
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
class _Lookup:
    """``{{ a.b.c }}`` with no filter, looked up directly: the commonest personal part (a
    first name, a tracked link) without python-liquid's machinery. Whenever the plain lookup
    cannot tell what python-liquid would print (absent, not text or a number), the node is
    rendered by python-liquid after all."""

    path: tuple[str | int, ...]
    node: Node
    escape: bool
    filters: tuple[Callable[[str], str], ...] = ()  # string filters without arguments


_MISSING = object()
# Filters whose python-liquid version is exactly this str method on a str value.
_STRING_FILTERS: dict[str, Callable[[str], str]] = {
    "upcase": str.upper,
    "downcase": str.lower,
    "capitalize": str.capitalize,
    "strip": str.strip,
    "lstrip": str.lstrip,
    "rstrip": str.rstrip,
}
_HTML_SPECIAL = ("<", ">", "&", '"', "'")
_SPECIAL = frozenset({"size", "first", "last"})  # python-liquid's own properties


def _as_lookup(node: Node, html: bool) -> Node | _Lookup:
    expression = getattr(node, "expression", None)
    if type(node) is not OutputNode or type(expression) is not FilteredExpression:
        return node
    left, applied = expression.left, expression.filters or []
    if type(left) is not Path or any(f.args or f.name not in _STRING_FILTERS for f in applied):
        return node
    filters = tuple(_STRING_FILTERS[f.name] for f in applied)
    segments = left.path
    if not segments or not all(
        (type(s) is str and s not in _SPECIAL) or type(s) is int for s in segments
    ):
        return node
    return _Lookup(tuple(segments), node, html, filters)  # type: ignore[arg-type]


def _look_up(path: tuple[str | int, ...], *namespaces: Mapping[str, Any]) -> Any:
    head: Any = path[0]
    value: Any = _MISSING
    for namespace in namespaces:
        if head in namespace:
            value = namespace[head]
            break
    segment: Any
    for segment in path[1:]:
        if type(segment) is str:
            if type(value) is not dict:
                return _MISSING
            value = value.get(segment, _MISSING)
        else:
            if type(value) is not list or not -len(value) <= segment < len(value):
                return _MISSING
            value = value[segment]
        if value is _MISSING:
            return _MISSING
    return value


@dataclass(frozen=True, slots=True)
class Bound:
    field: str
    template: BoundTemplate | None
    parts: tuple[str | Node | _Lookup, ...]
    shared: dict[str, Any]

    def render(self, personal: Mapping[str, Any]) -> str:
        if self.template is None or all(type(part) is str for part in self.parts):
            return "".join(part for part in self.parts if isinstance(part, str))
        out: list[str] = []
        size = 0
        context: RenderContext | None = None
        try:
            for part in self.parts:
                text = None
                if type(part) is str:
                    text = part
                elif type(part) is _Lookup:
                    value = _look_up(part.path, personal, self.shared)
                    kind: type | None = type(value)
                    if part.filters:
                        if kind is str:
                            for apply in part.filters:
                                value = apply(value)
                        else:
                            kind = None  # python-liquid's own stringifying first
                    if kind is str or kind is int or kind is float:
                        text = str(value)
                        if part.escape and any(c in text for c in _HTML_SPECIAL):
                            text = str(escape(text))
                if text is None:
                    node = part.node if isinstance(part, _Lookup) else part
                    if context is None:
                        context = RenderContext(self.template, globals={**self.shared, **personal})
                    buffer = _Capped()
                    node.render(context, buffer)  # type: ignore[union-attr]
                    text = buffer.getvalue()
                out.append(text)
                size += len(text)
                if size > OUTPUT_CHARACTERS:
                    raise OutputStreamLimitError(
                        f"output stream limit reached ({OUTPUT_CHARACTERS:,} characters)",
                        token=None,
                    )
        except LiquidError as error:
            raise RenderFailed(f"{self.field}: {_short(error)}") from None
        except RecursionError:
            raise RenderFailed(f"{self.field}: nested too deeply") from None
        return "".join(out)


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
