"""Saving, reading and compiling templates; workspace constants.

Saving checks everything first — the definition's shape, every Liquid string (line and
column), whether each channel's content can fit at all, landing pages named — and writes only
a valid template. Saving the same definition again writes nothing; a changed one becomes the
next version. Compiled versions are cached per process: a version never changes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import orjson
from pydantic import ValidationError
from sqlalchemy import Connection, select

from junction.domain.sending import check_content
from junction.domain.templates import TemplateDefinition
from junction.errors import FieldError, InvalidInput, NotFound
from junction.render.liquid import RenderFailed
from junction.render.personalise import (
    CompiledTemplate,
    Links,
    bind,
    compile_template,
    shared_namespace,
    sms_measure,
    syntax_problems,
)
from junction.store.identity import find_contact_id
from junction.store.namespaces import contact_namespace
from junction.store.sql import update_or_insert
from junction.store.tables import contacts, template_versions, templates, workspace_constants


def parse(raw: Any) -> TemplateDefinition:
    """The definition, or ``InvalidInput`` naming every field that is wrong."""
    if not isinstance(raw, dict):
        raise InvalidInput(FieldError("template", "must be an object (a mapping in YAML)"))
    try:
        return TemplateDefinition.model_validate(raw)
    except ValidationError as error:
        raise InvalidInput(
            [
                FieldError(".".join(str(p) for p in item["loc"]) or "template", item["msg"])
                for item in error.errors()
            ]
        ) from None


def check(definition: TemplateDefinition) -> tuple[list[FieldError], list[str]]:
    """(problems that stop a save, the variables the template uses)."""
    problems = [
        FieldError(p.field, f"line {p.line} column {p.column}: {p.message}")
        for p in syntax_problems(definition)
    ]
    if problems:
        return problems, []
    compiled = compile_template(definition, 0)
    # What each block renders to with every variable empty: if even that cannot fit its
    # channel, no contact's can.
    lenient = compile_template(definition.model_copy(update={"undefined": "lenient"}), 0)
    for (channel, tag), block in lenient.blocks.items():
        where = f"channels.{channel}" if tag is None else f"locales.{tag}.channels.{channel}"
        if channel == "page":
            continue
        try:
            least = bind(block, {}, {}).render({}, 0, None).content
        except RenderFailed as error:
            problems.append(FieldError(where, str(error)))
            continue
        problems += [
            FieldError(f"{where}.{e.field.removeprefix('content.')}", e.message)
            for e in check_content(channel, least)
            if "needs" not in e.message  # an empty render of a variable-only field is fine
        ]
        if channel == "sms":
            measured = sms_measure(least["text"])
            if measured["segments"] > definition.sms_max_segments:
                problems.append(
                    FieldError(
                        f"{where}.text",
                        f"takes {measured['segments']} {measured['encoding']} segments even "
                        f"with every variable empty; the limit is {definition.sms_max_segments} "
                        "(smsMaxSegments)",
                    )
                )
    return problems, compiled.variables


def save(conn: Connection, workspace_id: int, raw: Any, now: datetime) -> dict[str, Any]:
    definition = parse(raw)
    problems, variables = check(definition)
    problems += _missing_landing_pages(conn, workspace_id, definition)
    if problems:
        raise InvalidInput(problems)
    stored = definition.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    stored["key"] = definition.key
    digest = hashlib.sha256(orjson.dumps(stored, option=orjson.OPT_SORT_KEYS)).hexdigest()
    row = conn.execute(
        select(templates).where(
            templates.c.workspace_id == workspace_id, templates.c.key == definition.key
        )
    ).first()
    if row is not None:
        current = conn.execute(
            select(template_versions.c.digest).where(
                template_versions.c.template_id == row.id,
                template_versions.c.version == row.current_version,
            )
        ).scalar_one()
        if current == digest and row.archived_at is None and row.kind == definition.kind:
            return _summary(definition, row.current_version, variables, created=False)
        if row.kind != definition.kind:
            raise InvalidInput(
                FieldError("kind", f"{definition.key!r} is a {row.kind} template; use a new key")
            )
        version = row.current_version + 1
        conn.execute(
            templates.update()
            .where(templates.c.id == row.id)
            .values(current_version=version, name=definition.name, archived_at=None, updated_at=now)
        )
        template_id = row.id
    else:
        version = 1
        template_id = conn.execute(
            templates.insert().values(
                workspace_id=workspace_id,
                key=definition.key,
                kind=definition.kind,
                name=definition.name,
                current_version=1,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]  # type: ignore[index]
    conn.execute(
        template_versions.insert().values(
            template_id=template_id,
            version=version,
            definition=stored,
            digest=digest,
            created_at=now,
        )
    )
    return _summary(definition, version, variables, created=True)


def _summary(
    definition: TemplateDefinition, version: int, variables: list[str], created: bool
) -> dict[str, Any]:
    return {
        "key": definition.key,
        "kind": definition.kind,
        "version": version,
        "created": created,
        "channels": definition.channel_names(),
        "locales": sorted(definition.locales),
        "variables": variables,
    }


def _missing_landing_pages(
    conn: Connection, workspace_id: int, definition: TemplateDefinition
) -> list[FieldError]:
    named = {
        (f"locales.{tag}.channels.sms.landingPage" if tag else "channels.sms.landingPage"): sms
        for tag, variant in [(None, definition), *definition.locales.items()]
        if (sms := variant.channels.sms) is not None and sms.landing_page
    }
    problems = []
    for field, sms in named.items():
        kind = conn.execute(
            select(templates.c.kind).where(
                templates.c.workspace_id == workspace_id,
                templates.c.key == sms.landing_page,
                templates.c.archived_at.is_(None),
            )
        ).scalar_one_or_none()
        if kind != "landing":
            problems.append(
                FieldError(
                    field,
                    f"no landing template {sms.landing_page!r} in this workspace; save it first",
                )
            )
    return problems


def _row(conn: Connection, workspace_id: int, key: str) -> Any:
    row = conn.execute(
        select(templates).where(templates.c.workspace_id == workspace_id, templates.c.key == key)
    ).first()
    if row is None:
        raise NotFound(f"no template {key!r} in this workspace")
    return row


def current_version(conn: Connection, workspace_id: int, key: str) -> int:
    """The version a send made now uses; archived templates cannot be sent."""
    row = _row(conn, workspace_id, key)
    if row.archived_at is not None:
        raise NotFound(f"template {key!r} is archived; save it again to use it")
    return int(row.current_version)


def load(conn: Connection, workspace_id: int, key: str, version: int) -> CompiledTemplate:
    row = conn.execute(
        select(template_versions.c.definition)
        .join(templates, templates.c.id == template_versions.c.template_id)
        .where(
            templates.c.workspace_id == workspace_id,
            templates.c.key == key,
            template_versions.c.version == version,
        )
    ).first()
    if row is None:
        raise NotFound(f"no version {version} of template {key!r} in this workspace")
    return _compiled(workspace_id, key, version, orjson.dumps(row.definition))


@lru_cache(maxsize=512)
def _compiled(workspace_id: int, key: str, version: int, definition: bytes) -> CompiledTemplate:
    # Keyed by the definition's bytes too: a database recreated under the same ids (tests)
    # must not be served another workspace's template.
    return compile_template(TemplateDefinition.model_validate(orjson.loads(definition)), version)


def get(
    conn: Connection, workspace_id: int, key: str, version: int | None = None
) -> dict[str, Any]:
    row = _row(conn, workspace_id, key)
    wanted = version or row.current_version
    found = conn.execute(
        select(template_versions).where(
            template_versions.c.template_id == row.id, template_versions.c.version == wanted
        )
    ).first()
    if found is None:
        raise NotFound(f"template {key!r} has no version {wanted}")
    versions = conn.execute(
        select(template_versions.c.version, template_versions.c.created_at)
        .where(template_versions.c.template_id == row.id)
        .order_by(template_versions.c.version)
    ).all()
    return {
        "key": row.key,
        "kind": row.kind,
        "name": row.name,
        "currentVersion": row.current_version,
        "archived": row.archived_at is not None,
        "version": wanted,
        "definition": found.definition,
        "versions": [
            {"version": v.version, "createdAt": v.created_at.isoformat()} for v in versions
        ],
    }


def list_templates(conn: Connection, workspace_id: int) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(templates).where(templates.c.workspace_id == workspace_id).order_by(templates.c.key)
    )
    return [
        {
            "key": r.key,
            "kind": r.kind,
            "name": r.name,
            "currentVersion": r.current_version,
            "archived": r.archived_at is not None,
            "updatedAt": r.updated_at.isoformat(),
        }
        for r in rows
    ]


def archive(conn: Connection, workspace_id: int, key: str, now: datetime) -> dict[str, Any]:
    row = _row(conn, workspace_id, key)
    conn.execute(templates.update().where(templates.c.id == row.id).values(archived_at=now))
    return {"key": key, "archived": True}


def constants(conn: Connection, workspace_id: int) -> dict[str, Any]:
    found = conn.execute(
        select(workspace_constants.c.constants).where(
            workspace_constants.c.workspace_id == workspace_id
        )
    ).scalar_one_or_none()
    return dict(found or {})


def set_constants(
    conn: Connection, workspace_id: int, values: dict[str, Any], now: datetime
) -> dict[str, Any]:
    bad = [name for name in values if not name.isidentifier()]
    if bad:
        raise InvalidInput(
            [FieldError(name, "a constant's name is letters, digits and _") for name in bad]
        )
    update_or_insert(
        conn,
        workspace_constants,
        {"workspace_id": workspace_id},
        {"constants": values, "updated_at": now},
    )
    return values


def contact_of(conn: Connection, workspace_id: int, contact_id: int | None) -> dict[str, Any]:
    """What a template sees as ``{{ contact }}``."""
    if contact_id is None:
        return {}
    row = conn.execute(
        select(
            contacts.c.user_id,
            contacts.c.traits,
            contacts.c.timezone,
            contacts.c.locale,
            contacts.c.country,
        ).where(contacts.c.id == contact_id, contacts.c.workspace_id == workspace_id)
    ).first()
    return contact_namespace(row) if row is not None else {}


@dataclass(frozen=True, slots=True)
class PreviewRequest:
    version: int | None = None
    user_id: str | None = None
    contact: dict[str, Any] | None = None  # traits to use instead of a stored contact
    data: dict[str, Any] | None = None
    event: dict[str, Any] | None = None
    channels: list[str] | None = None
    locale: str | None = None


def preview(
    conn: Connection,
    workspace_id: int,
    key: str,
    request: PreviewRequest,
    links: Links | None = None,
) -> dict[str, Any]:
    """The template rendered for one contact, per channel, as it would be sent — with
    ``links``, tracked links of the length they will have, so an SMS's segment count is the
    real one — with each SMS's segments and encoding."""
    version = request.version or current_version(conn, workspace_id, key)
    compiled = load(conn, workspace_id, key, version)
    contact = dict(request.contact or {})
    if request.user_id is not None:
        contact_id = find_contact_id(conn, workspace_id, request.user_id)
        if contact_id is None:
            raise NotFound(f"no contact with userId {request.user_id!r} in this workspace")
        contact = {**contact_of(conn, workspace_id, contact_id), **contact}
    locale = request.locale or contact.get("locale")
    offered = compiled.definition.channel_names()
    unknown = sorted(set(request.channels or []) - set(offered))
    if unknown:
        raise InvalidInput(
            FieldError("channels", f"{key!r} has no {unknown[0]} content; it has {offered}")
        )
    shared = shared_namespace(request.event, request.data, constants(conn, workspace_id))
    rendered: dict[str, Any] = {}
    for channel in request.channels or offered:
        block = compiled.block(channel, locale)
        if block is None:
            continue
        try:
            out = bind(block, shared, compiled.definition.tracking.utm).render(contact, 0, links)
        except RenderFailed as error:
            rendered[channel] = {"locale": block.locale, "error": str(error)}
            continue
        entry: dict[str, Any] = {"locale": block.locale, "content": out.content}
        if out.links:
            entry["links"] = out.links  # where each tracked link leads
        problems = check_content(channel, out.content) if channel != "page" else []
        if problems:
            entry["problems"] = [p.as_dict() for p in problems]
        if channel == "sms":
            entry["sms"] = sms_measure(out.content["text"])
        rendered[channel] = entry
    return {"key": key, "version": version, "locale": locale, "channels": rendered}


def landing_page(
    conn: Connection, workspace_id: int, key: str, contact_id: int | None, data: dict[str, Any]
) -> dict[str, str]:
    """A landing template's page (title and html) for one contact, in the locale the message
    that linked to it was sent in."""
    compiled = load(conn, workspace_id, key, current_version(conn, workspace_id, key))
    contact = contact_of(conn, workspace_id, contact_id)
    block = compiled.block("page", data.get("locale") or contact.get("locale"))
    if block is None:
        raise NotFound(f"template {key!r} is not a landing page")
    shared = shared_namespace(data.get("event"), data.get("data"), constants(conn, workspace_id))
    page: dict[str, str] = bind(block, shared, {}).render(contact, 0, None).content
    return page
