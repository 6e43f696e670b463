"""From a template version to one person's content: compiled once, bound per batch, rendered
per recipient.

Rules kept here:
- a version is compiled once (``compile_template``): every Liquid string parsed, email CSS
  inlined, the preheader placed, a plain-text part derived from the HTML when none is given,
  links replaced by tracked ones and the open pixel added — all on the template's source, so
  none of that work is repeated per person;
- the person's namespaces are ``contact`` (traits, ``userId``, ``email``, ``phone``…),
  ``message`` (``id``, ``channel``) and ``landing_url``; ``event``, ``data`` and
  ``workspace`` are shared by everyone the same message goes to;
- a tracked link is ``{public_url}/l/{code}``: the code names the message and the link's
  position and is signed, so nobody can forge clicks or redirect through Junction to a URL of
  their own; the link's target is kept with the message;
- anything rendered into an email header (the subject) has its line breaks turned into
  spaces: a trait cannot add a header;
- a render that fails (a strict template's missing variable, a limit) raises ``RenderFailed``
  with the field and reason, and the send is suppressed with that reason.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import css_inline

from junction.domain.sms import segment
from junction.domain.templates import TemplateDefinition, liquid_fields
from junction.render.email import html_to_text
from junction.render.liquid import (
    Bound,
    Piece,
    RenderFailed,
    SyntaxProblem,
    TemplateSyntaxError,
    compile_piece,
)

LANDING = "landing:"  # a link target that is a landing template, not a URL
_LIQUID = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.DOTALL)
_PLACEHOLDER = re.compile(r"jnlq(\d+)qlnj")
_COMMENTED = re.compile(r"<!--jnlq(\d+)qlnj-->")
_HREF = re.compile(
    r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(https?://.*?)\2""", re.IGNORECASE | re.DOTALL
)
# A URL in SMS text, Liquid in it included (``https://x.example/{{ contact.id }}``).
_TEXT_URL = re.compile(r"https?://(?:\{\{.*?\}\}|[^\s{])+")
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
_BLANK_LINES = re.compile(r"\n\s*\n(?:\s*\n)+")
_LINE_BREAKS = re.compile(r"\s*[\r\n]+\s*")
_PIXEL = (
    '<img src="{{ _jn.open }}" width="1" height="1" alt="" '
    'style="display:block;border:0;width:1px;height:1px">'
)
_PREHEADER = '<div style="display:none;max-height:0;overflow:hidden;mso-hide:all">{source}</div>'
_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


# Signed link codes ---------------------------------------------------------------------


def _b62(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, 62)
        digits = _B62[rest] + digits
        if number == 0:
            return digits


def _from_b62(digits: str) -> int:
    number = 0
    for c in digits:
        number = number * 62 + _B62.index(c)
    return number


@dataclass(frozen=True, slots=True)
class Links:
    """Makes and checks the signed codes of tracked links and open pixels."""

    secret: bytes
    public_url: str
    _keyed: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Keying HMAC costs as much as a digest: key once, copy per code.
        object.__setattr__(self, "_keyed", hmac.new(self.secret, digestmod=hashlib.sha256))

    def _signature(self, purpose: str, message_id: int, index: int) -> str:
        mac = self._keyed.copy()
        mac.update(f"{purpose}:{message_id}:{index}".encode())
        return base64.urlsafe_b64encode(mac.digest()[:6]).decode()

    def code(self, message_id: int, index: int, purpose: str = "click") -> str:
        if not 0 <= index < 62:
            raise ValueError("a message tracks at most 62 links")
        return _b62(message_id) + _B62[index] + self._signature(purpose, message_id, index)

    def read(self, code: str, purpose: str = "click") -> tuple[int, int] | None:
        """(message id, link index) of a genuine code, else None."""
        if len(code) < 10 or len(code) > 30:
            return None
        head, sig = code[:-8], code[-8:]
        if any(c not in _B62 for c in head):
            return None
        message_id, index = _from_b62(head[:-1]), _B62.index(head[-1])
        if not hmac.compare_digest(sig, self._signature(purpose, message_id, index)):
            return None
        return message_id, index

    def preferences_token(self, workspace_id: int, contact_id: int, expires: int) -> str:
        """A contact's preference-center token, good until ``expires`` (epoch seconds)."""
        body = f"{_b62(workspace_id)}.{_b62(contact_id)}.{_b62(expires)}"
        mac = hmac.new(self.secret, f"preferences:{body}".encode(), hashlib.sha256)
        return body + "." + base64.urlsafe_b64encode(mac.digest()[:12]).decode()

    def read_preferences_token(self, token: str, now: int) -> tuple[int, int] | None:
        """(workspace id, contact id) of a genuine token that has not expired, else None."""
        parts = token.split(".")
        if (
            len(parts) != 4
            or len(token) > 80
            or any(c not in _B62 for part in parts[:3] for c in part)
        ):
            return None
        body = ".".join(parts[:3])
        mac = hmac.new(self.secret, f"preferences:{body}".encode(), hashlib.sha256)
        expected = base64.urlsafe_b64encode(mac.digest()[:12]).decode()
        if not hmac.compare_digest(parts[3], expected):
            return None
        workspace_id, contact_id, expires = (_from_b62(part) for part in parts[:3])
        return (workspace_id, contact_id) if now < expires else None

    def preferences_url(self, workspace_id: int, contact_id: int, expires: int) -> str:
        return f"{self.public_url}/p/{self.preferences_token(workspace_id, contact_id, expires)}"

    def unsubscribe_url(self, message_id: int) -> str:
        """RFC 8058 one-click: POST unsubscribes, GET asks first (scanners prefetch links)."""
        return f"{self.public_url}/u/{self.code(message_id, 0, 'unsubscribe')}"

    def click_urls(self, message_id: int, count: int) -> list[str]:
        head = f"{self.public_url}/l/{_b62(message_id)}"
        return [
            head + _B62[index] + self._signature("click", message_id, index)
            for index in range(count)
        ]

    def click_url(self, message_id: int, index: int) -> str:
        return f"{self.public_url}/l/{self.code(message_id, index)}"

    def open_url(self, message_id: int) -> str:
        return f"{self.public_url}/o/{self.code(message_id, 0, 'open')}.gif"


def with_utm(url: str, utm: Mapping[str, str]) -> str:
    """The URL with ``utm_*`` parameters added, keeping any it already sets."""
    if not utm:
        return url
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {name for name, _ in query}
    query += [(f"utm_{k}", v) for k, v in utm.items() if f"utm_{k}" not in present]
    return urlunsplit(parts._replace(query=urlencode(query)))


# Compiling ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompiledBlock:
    """One channel's block of one locale variant, ready to bind."""

    channel: str
    locale: str | None
    shape: Any  # the block's JSON, every string replaced by a Piece
    links: tuple[Piece, ...] = ()  # link targets, by position
    landing_page: str | None = None
    tracked: bool = False  # whether ``_jn`` is needed (links or a pixel)


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    definition: TemplateDefinition
    version: int
    blocks: dict[tuple[str, str | None], CompiledBlock] = field(default_factory=dict)

    def block(self, channel: str, locale: str | None) -> CompiledBlock | None:
        tag, _ = self.definition.block(channel, locale)
        return self.blocks.get((channel, tag))

    @property
    def variables(self) -> list[str]:
        names: set[str] = set()
        for block in self.blocks.values():
            for piece in _pieces(block.shape):
                names.update(piece.variables)
            for piece in block.links:
                names.update(piece.variables)
        return sorted(n for n in names if not n.startswith("_jn"))


def _pieces(shape: Any) -> list[Piece]:
    if isinstance(shape, Piece):
        return [shape]
    if isinstance(shape, dict):
        return [p for item in shape.values() for p in _pieces(item)]
    if isinstance(shape, list):
        return [p for item in shape for p in _pieces(item)]
    return []


def compile_template(definition: TemplateDefinition, version: int) -> CompiledTemplate:
    """Compile every block of every locale; raises ``TemplateSyntaxError`` on the first bad
    Liquid, or returns the template (see ``check`` for a list of every problem)."""
    problems = syntax_problems(definition)
    if problems:
        raise TemplateSyntaxError(problems[0])
    compiled = CompiledTemplate(definition, version)
    variants: list[tuple[str | None, Any]] = [(None, definition)]
    variants += list(definition.locales.items())
    for tag, variant in variants:
        for channel in definition.channel_names():
            block = variant.page if channel == "page" else getattr(variant.channels, channel)
            if block is not None:
                prefix = channel if tag is None else f"locales.{tag}.{channel}"
                compiled.blocks[(channel, tag)] = _compile_block(
                    definition,
                    channel,
                    tag,
                    block.model_dump(by_alias=True, exclude_none=True),
                    prefix,
                )
    return compiled


def syntax_problems(definition: TemplateDefinition) -> list[SyntaxProblem]:
    problems: list[SyntaxProblem] = []
    variants: list[tuple[str, Any]] = [("", definition)]
    variants += [(f"locales.{tag}.", v) for tag, v in definition.locales.items()]
    for prefix, variant in variants:
        blocks = [(f"{prefix}page", variant.page)] if variant.page else []
        blocks += [
            (f"{prefix}channels.{name}", getattr(variant.channels, name))
            for name in variant.channels.present()
        ]
        for where, block in blocks:
            for path, source in liquid_fields(block, where):
                try:
                    compile_piece(path, source, definition.undefined, path.endswith(".html"))
                except TemplateSyntaxError as error:
                    problems.append(error.problem)
    return problems


def _compile_block(
    definition: TemplateDefinition,
    channel: str,
    locale: str | None,
    data: dict[str, Any],
    prefix: str,
) -> CompiledBlock:
    undefined = definition.undefined
    track = definition.tracking
    targets: list[str] = []
    landing = data.pop("landingPage", None)
    if channel == "email":
        html = data.get("html")
        if html is not None:
            html = _inline_css(html)
            if data.get("preheader"):
                html = _insert_after_body(html, _PREHEADER.format(source=data.pop("preheader")))
            if data.get("text") is None:
                data["text"] = _protected(html, html_to_text)
            if track.clicks:
                html, targets = _track_hrefs(html)
                for index, target in enumerate(targets):
                    data["text"] = data["text"].replace(target, _link_output(index))
            if track.opens:
                html = _insert_before_body_end(html, _PIXEL)
            data["html"] = html
        data.pop("preheader", None)
    elif channel == "sms":
        if track.clicks:
            data["text"], targets = _track_text_urls(data["text"])
        if landing:
            targets.append(LANDING + landing)
    shape = _compile_shape(data, prefix, undefined)
    links = tuple(
        Piece(f"{prefix}.link[{i}]", t, None)
        if t.startswith(LANDING)
        else compile_piece(f"{prefix}.link[{i}]", t, undefined)
        for i, t in enumerate(targets)
    )
    if len(links) > 61:
        raise TemplateSyntaxError(
            SyntaxProblem(prefix, 1, 1, "at most 61 tracked links per message")
        )
    tracked = bool(links) or (channel == "email" and track.opens and "html" in data)
    return CompiledBlock(channel, locale, shape, links, landing, tracked)


def _compile_shape(value: Any, path: str, undefined: str) -> Any:
    if isinstance(value, str):
        return compile_piece(path, value, undefined, html=path.endswith(".html"))
    if isinstance(value, dict):
        return {k: _compile_shape(v, f"{path}.{k}", undefined) for k, v in value.items()}
    if isinstance(value, list):
        return [_compile_shape(v, f"{path}[{i}]", undefined) for i, v in enumerate(value)]
    return value


def _protected(source: str, change: Callable[[str], str], comments: bool = False) -> str:
    """Apply ``change`` to HTML whose Liquid markup is hidden from it, then put it back.

    With ``comments``, markup between tags hides in an HTML comment: an HTML5 parser moves
    text it finds between table rows out of the table ("foster parenting"), which would
    carry a ``{% for %}`` away from the rows it repeats; a comment stays where it is.
    """
    found: list[str] = []

    def hide(match: re.Match[str]) -> str:
        found.append(match.group(0))
        token = f"jnlq{len(found) - 1}qlnj"
        before = source[: match.start()]
        in_tag = before.rfind("<") > before.rfind(">")
        return token if in_tag or not comments else f"<!--{token}-->"

    changed = change(_LIQUID.sub(hide, source))
    changed = _COMMENTED.sub(lambda m: found[int(m.group(1))], changed)
    return _PLACEHOLDER.sub(lambda m: found[int(m.group(1))], changed)


def _inline_css(html: str) -> str:
    if "<style" not in html.lower():
        return html
    inliner = css_inline.CSSInliner(load_remote_stylesheets=False)
    return _protected(html, inliner.inline, comments=True)


def _insert_after_body(html: str, snippet: str) -> str:
    match = _BODY_OPEN.search(html)
    return html[: match.end()] + snippet + html[match.end() :] if match else snippet + html


def _insert_before_body_end(html: str, snippet: str) -> str:
    match = _BODY_CLOSE.search(html)
    return html[: match.start()] + snippet + html[match.start() :] if match else html + snippet


def _link_output(index: int) -> str:
    return "{{ _jn.links[" + str(index) + "] }}"


def _track_hrefs(html: str) -> tuple[str, list[str]]:
    targets: list[str] = []

    def swap(match: re.Match[str]) -> str:
        targets.append(match.group(3))
        quote = match.group(2)
        return f"{match.group(1)}{quote}{_link_output(len(targets) - 1)}{quote}"

    return _HREF.sub(swap, html), targets


def _track_text_urls(text: str) -> tuple[str, list[str]]:
    targets: list[str] = []

    def swap(match: re.Match[str]) -> str:
        targets.append(match.group(0))
        return _link_output(len(targets) - 1)

    return _TEXT_URL.sub(swap, text), targets


# Rendering ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rendered:
    content: dict[str, Any]
    links: list[str]  # each tracked link's target, by position (``landing:KEY`` for a page)


@dataclass(frozen=True, slots=True)
class BoundBlock:
    block: CompiledBlock
    shape: Any  # the block's JSON, every string replaced by a Bound
    links: tuple[str | Bound, ...]  # targets: final text, or to render per person
    utm: dict[str, str]

    def render(self, contact: Mapping[str, Any], message_id: int, links: Links | None) -> Rendered:
        personal: dict[str, Any] = {
            "contact": contact,
            "message": {"id": message_id, "channel": self.block.channel},
        }
        if self.block.tracked and links is not None:
            tracked = links.click_urls(message_id, len(self.links))
            personal["_jn"] = {"links": tracked, "open": links.open_url(message_id)}
        else:  # previews without a public URL, and templates that track nothing
            personal["_jn"] = {"links": [], "open": ""}
        targets = [
            link if isinstance(link, str) else with_utm(link.render(personal), self.utm)
            for link in self.links
        ]
        if not self.block.tracked or links is None:
            personal["_jn"]["links"] = [t if not t.startswith(LANDING) else "" for t in targets]
        if self.block.landing_page:
            personal["landing_url"] = personal["_jn"]["links"][-1]
        content = _render_shape(self.shape, personal)
        if self.block.channel == "email":
            content["subject"] = _LINE_BREAKS.sub(" ", content["subject"]).strip()
            if "text" in content:  # a loop in HTML leaves runs of blank lines in the text
                content["text"] = _BLANK_LINES.sub("\n\n", content["text"])
        return Rendered(content, targets)


def _render_shape(shape: Any, personal: Mapping[str, Any]) -> Any:
    if isinstance(shape, Bound):
        return shape.render(personal)
    if isinstance(shape, dict):
        return {k: _render_shape(v, personal) for k, v in shape.items()}
    if isinstance(shape, list):
        return [_render_shape(v, personal) for v in shape]
    return shape


def bind(block: CompiledBlock, shared: Mapping[str, Any], utm: Mapping[str, str]) -> BoundBlock:
    """Render once what everyone sharing ``shared`` (event, context, workspace) gets alike."""

    def walk(shape: Any) -> Any:
        if isinstance(shape, Piece):
            return shape.bind(shared)
        if isinstance(shape, dict):
            return {k: walk(v) for k, v in shape.items()}
        if isinstance(shape, list):
            return [walk(v) for v in shape]
        return shape

    bound_links = tuple(
        link.source
        if link.source.startswith(LANDING)
        else with_utm(link.source, utm)
        if link.template is None
        else link.bind(shared)
        for link in block.links
    )
    return BoundBlock(block, walk(block.shape), bound_links, dict(utm))


def shared_namespace(
    event: Mapping[str, Any] | None,
    data: Mapping[str, Any] | None,
    workspace: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """What every recipient of one message shares: the triggering event, the send's data
    (an API call's ``data``, a journey run's context) and the workspace's constants."""
    return {"event": event or {}, "data": data or {}, "workspace": workspace or {}}


def sms_measure(text: str) -> dict[str, Any]:
    measured = segment(text)
    return {
        "characters": len(text),
        "encoding": measured.encoding.value,
        "segments": measured.segments,
    }


__all__ = [
    "LANDING",
    "BoundBlock",
    "CompiledBlock",
    "CompiledTemplate",
    "Links",
    "RenderFailed",
    "Rendered",
    "bind",
    "compile_template",
    "shared_namespace",
    "sms_measure",
    "syntax_problems",
    "with_utm",
]
