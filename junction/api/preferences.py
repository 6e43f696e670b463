"""Topics and each contact's preferences, over the API; and signed preference-center links.

Rules kept here:
- a topic shows, for a contact, on its own channels, or (when it names none) on every channel
  the contact has an active address for, plus ``in_app`` (which needs no address);
- a topic's effective choice on a channel is the stored choice, else the topic's default;
  ``optedOut`` lists the channels opted out of every marketing topic (topic ``*``), which
  wins over any topic when sending;
- a choice must name a known topic (or ``*``) and a channel the topic is sent on; a request
  is checked whole before anything is written.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel
from sqlalchemy import Connection, select

from junction.api.deps import Services, ServicesDep, WorkspaceDep, in_read, in_write
from junction.api.responses import JSONAnswer
from junction.domain.addresses import AddressKind, AddressStatus
from junction.domain.sending import SENDABLE_CHANNELS
from junction.engine.personalising import links_from
from junction.errors import FieldError, InvalidInput, NotFound
from junction.store import preferences as store
from junction.store.identity import find_contact_id
from junction.store.tables import addresses, contacts, preferences
from junction.threads import in_thread

router = APIRouter(prefix="/v1", tags=["preferences"])

DEFAULT_LINK_HOURS = 720  # 30 days
MAX_LINK_HOURS = 8760  # a year
# The channels an active address of each kind opens (voice is not a marketing channel).
_REACHES: dict[str, tuple[str, ...]] = {
    AddressKind.EMAIL: ("email",),
    AddressKind.PHONE: ("sms", "whatsapp"),
    AddressKind.PUSH: ("push",),
    AddressKind.WEB_PUSH: ("web_push",),
    AddressKind.TELEGRAM: ("telegram",),
    AddressKind.MESSENGER: ("messenger",),
}


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class TopicBody(_Camel):
    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    default_opt_in: bool = True
    channels: list[str] | None = Field(default=None, description="null: any channel")


class PreferenceItem(_Camel):
    topic: str = Field(min_length=1, max_length=64, description='a topic key, or "*" for all')
    channel: str = Field(min_length=1, max_length=32)
    opted_in: bool


class PreferencesBody(_Camel):
    preferences: list[PreferenceItem] = Field(max_length=500)


class LinkBody(_Camel):
    ttl_hours: int = Field(default=DEFAULT_LINK_HOURS, ge=1, le=MAX_LINK_HOURS)


def in_channel_order(channels: Any) -> list[str]:
    wanted = set(channels)
    return [c for c in SENDABLE_CHANNELS if c in wanted]


def reachable_channels(conn: Connection, contact_id: int) -> list[str]:
    """The channels a topic with no channels of its own shows on for this contact."""
    kinds = conn.execute(
        select(addresses.c.kind).where(
            addresses.c.contact_id == contact_id, addresses.c.status == AddressStatus.ACTIVE
        )
    ).scalars()
    found = {"in_app"}
    for kind in kinds:
        found.update(_REACHES.get(kind, ()))
    return in_channel_order(found)


def preference_view(conn: Connection, workspace_id: int, contact_id: int) -> dict[str, Any]:
    """Every topic with the contact's effective choice per channel, the global opt-outs, and
    the stored rows."""
    stored = store.choices_of(conn, [contact_id]).get(contact_id, {})
    reach = reachable_channels(conn, contact_id)
    topics = []
    for topic in store.list_topics(conn, workspace_id):
        shown = in_channel_order(topic["channels"]) if topic["channels"] is not None else reach
        topics.append(
            {
                "key": topic["key"],
                "name": topic["name"],
                "description": topic["description"],
                "channels": {
                    c: stored.get((topic["key"], c), topic["defaultOptIn"]) for c in shown
                },
            }
        )
    rows = conn.execute(
        select(preferences)
        .where(preferences.c.contact_id == contact_id)
        .order_by(preferences.c.topic, preferences.c.channel)
    )
    return {
        "topics": topics,
        "optedOut": in_channel_order(
            c for (t, c), opted_in in stored.items() if t == store.EVERY_TOPIC and not opted_in
        ),
        "choices": [
            {
                "topic": row.topic,
                "channel": row.channel,
                "optedIn": row.opted_in,
                "source": row.source,
                "updatedAt": row.updated_at.isoformat(),
            }
            for row in rows
        ],
    }


def contact_locale(conn: Connection, workspace_id: int, contact_id: int) -> str | None:
    """The contact's locale, if known; NotFound when the workspace has no such contact."""
    row = conn.execute(
        select(contacts.c.locale).where(
            contacts.c.id == contact_id, contacts.c.workspace_id == workspace_id
        )
    ).first()
    if row is None:
        raise NotFound("no such contact")
    return row.locale  # type: ignore[no-any-return]


def _require(conn: Connection, workspace_id: int, user_id: str) -> int:
    found = find_contact_id(conn, workspace_id, user_id)
    if found is None:
        raise NotFound(f"no contact with userId {user_id!r} in this workspace")
    return found


def check_topic_channels(
    conn: Connection, workspace_id: int, choices: list[store.Choice]
) -> list[FieldError]:
    """A choice on a channel its topic is never sent on is a mistake worth naming."""
    limited = {t["key"]: t["channels"] for t in store.list_topics(conn, workspace_id)}
    return [
        FieldError(f"preferences.{i}.channel", f"topic {c.topic!r} is not sent on {c.channel}")
        for i, c in enumerate(choices)
        if limited.get(c.topic) is not None
        and c.channel in SENDABLE_CHANNELS
        and c.channel not in limited[c.topic]
    ]


def _set_preferences(
    svc: Services, workspace_id: int, user_id: str, choices: list[store.Choice]
) -> dict[str, Any]:
    with svc.database.write() as conn:
        contact_id = _require(conn, workspace_id, user_id)
        problems = check_topic_channels(conn, workspace_id, choices)
        if problems:
            raise InvalidInput(problems)
        store.set_choices(conn, workspace_id, contact_id, choices, "api", svc.clock.now())
        return preference_view(conn, workspace_id, contact_id)


def _get_preferences(svc: Services, workspace_id: int, user_id: str) -> dict[str, Any]:
    with svc.database.read() as conn:
        return preference_view(conn, workspace_id, _require(conn, workspace_id, user_id))


def _save_topic(svc: Services, workspace_id: int, key: str, body: TopicBody) -> dict[str, Any]:
    with svc.database.write() as conn:
        return store.save_topic(
            conn,
            workspace_id,
            key,
            name=body.name,
            description=body.description,
            default_opt_in=body.default_opt_in,
            channels=body.channels,
            now=svc.clock.now(),
        )


@router.put("/topics/{key}", response_class=JSONAnswer)
async def put_topic(
    key: str, svc: ServicesDep, workspace_id: WorkspaceDep, body: Annotated[TopicBody, Body()]
) -> JSONAnswer:
    """Create or update a topic: what a person can opt in to or out of, per channel."""
    return JSONAnswer(await in_thread(_save_topic, svc, workspace_id, key, body))


@router.get("/topics", response_class=JSONAnswer)
async def get_topics(svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    return JSONAnswer({"topics": await in_thread(in_read, svc, store.list_topics, workspace_id)})


@router.delete("/topics/{key}", status_code=204)
async def delete_topic(key: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> Response:
    """Delete a topic and every choice made about it."""
    await in_thread(in_write, svc, store.delete_topic, workspace_id, key)
    return Response(status_code=204)


@router.get("/contacts/{user_id}/preferences", response_class=JSONAnswer)
async def get_preferences(user_id: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Each topic with the contact's effective choice per channel, and their global opt-outs."""
    return JSONAnswer(await in_thread(_get_preferences, svc, workspace_id, user_id))


@router.put("/contacts/{user_id}/preferences", response_class=JSONAnswer)
async def put_preferences(
    user_id: str,
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    body: Annotated[PreferencesBody, Body()],
) -> JSONAnswer:
    """Record choices (topic ``*`` opts a channel out of every marketing topic)."""
    choices = [store.Choice(p.topic, p.channel, p.opted_in) for p in body.preferences]
    return JSONAnswer(await in_thread(_set_preferences, svc, workspace_id, user_id, choices))


@router.post("/contacts/{user_id}/preference-link", response_class=JSONAnswer)
async def preference_link(
    user_id: str,
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    body: Annotated[LinkBody | None, Body()] = None,
) -> JSONAnswer:
    """A signed link to the contact's hosted preference center (the link is the key)."""
    hours = (body or LinkBody()).ttl_hours
    contact_id = await in_thread(in_read, svc, _require, workspace_id, user_id)
    expires = svc.clock.now() + timedelta(hours=hours)
    url = links_from(svc.settings).preferences_url(
        workspace_id, contact_id, int(expires.timestamp())
    )
    return JSONAnswer({"url": url, "expiresAt": expires.isoformat()})
