"""Transactional sends: POST /v1/messages, and each message's lifecycle."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query
from pydantic import BaseModel, ConfigDict, Field

from junction.api.deps import Services, ServicesDep, WorkspaceDep, in_read
from junction.api.responses import JSONAnswer
from junction.domain.sending import SENDABLE_CHANNELS
from junction.errors import FieldError, InvalidInput
from junction.store import sends
from junction.threads import in_thread

router = APIRouter(prefix="/v1/messages", tags=["messages"])


class Recipient(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    user_id: str | None = Field(default=None, alias="userId", min_length=1, max_length=255)
    email: str | None = Field(default=None, max_length=320)
    phone: str | None = Field(default=None, max_length=64)
    url: str | None = Field(default=None, max_length=2048, description="for the webhook channel")
    chat_id: str | None = Field(
        default=None, alias="chatId", max_length=64, description="for the telegram channel"
    )
    psid: str | None = Field(default=None, max_length=64, description="for the messenger channel")


class NewMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    to: Recipient
    channel: Literal[SENDABLE_CHANNELS] | None = None  # type: ignore[valid-type]
    content: dict[str, Any] | None = Field(default=None, description="literal content")
    template: str | None = Field(
        default=None, min_length=1, max_length=64, description="a template's key, instead"
    )
    template_version: int | None = Field(default=None, alias="templateVersion", ge=1)
    locale: str | None = Field(
        default=None, max_length=35, description="the template locale; default: the contact's"
    )
    data: dict[str, Any] | None = Field(default=None, description="{{ data.* }} in the template")
    category: str = Field(default="transactional", description="'transactional' or a topic key")
    channels: list[Literal[SENDABLE_CHANNELS]] | None = Field(  # type: ignore[valid-type]
        default=None,
        min_length=1,
        max_length=8,
        description="instead of channel: the best of these for the contact, chosen when sent",
    )
    ignore_caps: bool = Field(default=False, alias="ignoreCaps")
    counts_toward_caps: bool = Field(default=True, alias="countsTowardCaps")
    quiet_hours: Literal["defer", "drop"] = Field(
        default="defer", alias="quietHours", description="inside quiet hours: wait, or drop"
    )
    fallback_after_seconds: int | None = Field(
        default=None,
        alias="fallbackAfterSeconds",
        ge=30,
        le=7 * 24 * 3600,
        description="with channels: try the next one if delivery is not confirmed in time",
    )


def _accept(
    svc: Services, workspace_id: int, request: sends.SendRequest, key: str | None
) -> sends.Answer:
    with svc.database.write() as conn:
        return sends.accept(conn, workspace_id, request, svc.clock.now(), key)


@router.post("", status_code=202, response_class=JSONAnswer)
async def send_message(
    message: NewMessage,
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> JSONAnswer:
    """Queue one message. With an `Idempotency-Key` header, a retry with the same body gets
    the first answer again (and sends nothing more); the same key with another body is a 422."""
    if (message.channel is None) == (message.channels is None):
        raise InvalidInput(
            FieldError("channel", "give one channel, or channels to choose the best from")
        )
    request = sends.SendRequest(
        channel=message.channel or message.channels[0],  # type: ignore[index]
        to=message.to.model_dump(by_alias=True, exclude_none=True),
        content=message.content,
        category=message.category,
        template=message.template,
        template_version=message.template_version,
        locale=message.locale,
        data=message.data,
        channels=tuple(message.channels or ()),
        ignore_caps=message.ignore_caps,
        counts=message.counts_toward_caps,
        quiet_hours=message.quiet_hours,
        fallback_after_seconds=message.fallback_after_seconds,
    )
    answer = await in_thread(_accept, svc, workspace_id, request, idempotency_key)
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return JSONAnswer(answer.body, status_code=answer.status_code, headers=headers)


@router.get("/{message_id}", response_class=JSONAnswer)
async def get_message(message_id: int, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """The message, its status, and every attempt."""
    return JSONAnswer(await in_thread(in_read, svc, sends.get_message, workspace_id, message_id))


@router.post("/{message_id}/replay", status_code=202, response_class=JSONAnswer)
async def replay_message(
    message_id: int, svc: ServicesDep, workspace_id: WorkspaceDep
) -> JSONAnswer:
    """Send a dead or failed message again (after fixing what made it fail); 409 otherwise."""

    def write(svc: Services) -> dict[str, Any]:
        with svc.database.write() as conn:
            return sends.replay(conn, workspace_id, message_id, svc.clock.now())

    return JSONAnswer(await in_thread(write, svc), status_code=202)


@router.get("", response_class=JSONAnswer)
async def list_messages(
    svc: ServicesDep,
    workspace_id: WorkspaceDep,
    user_id: Annotated[str, Query(min_length=1)],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONAnswer:
    """A contact's messages, newest first."""
    found = await in_thread(in_read, svc, sends.list_messages, workspace_id, user_id, limit)
    return JSONAnswer({"messages": found})
