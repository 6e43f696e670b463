"""Contacts: read one, export everything about one, erase one, register their devices."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from junction.api.deps import ServicesDep, WorkspaceDep, in_read, in_write
from junction.api.responses import JSONAnswer
from junction.domain.addresses import AddressKind, check_web_push_subscription
from junction.errors import FieldError, InvalidInput
from junction.store import contacts as store
from junction.threads import in_thread

router = APIRouter(prefix="/v1/contacts", tags=["contacts"])


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class WebPushKeys(_Camel):
    p256dh: str
    auth: str


class WebPushSubscription(_Camel):
    """What the browser's ``PushSubscription.toJSON()`` gives."""

    model_config = ConfigDict(extra="ignore")
    endpoint: str = Field(min_length=1, max_length=2048)
    keys: WebPushKeys


class Device(_Camel):
    """An iOS (APNs) or Android (FCM) device token, or a browser's web-push subscription."""

    type: Literal["ios", "android", "web_push"]
    token: str | None = Field(
        default=None, min_length=1, max_length=4096, description="for ios and android"
    )
    app_id: str | None = Field(
        default=None, max_length=255, description="bundle id or package name, for ios and android"
    )
    subscription: WebPushSubscription | None = Field(default=None, description="for web_push")


def _device_address(device: Device) -> tuple[AddressKind, str, dict[str, Any]]:
    if device.type == "web_push":
        subscription = device.subscription
        if subscription is None:
            raise InvalidInput(
                FieldError(
                    "subscription",
                    "web_push needs the browser's PushSubscription (endpoint and keys)",
                )
            )
        problems = check_web_push_subscription(
            subscription.endpoint, subscription.keys.p256dh, subscription.keys.auth
        )
        if problems:
            raise InvalidInput([FieldError(field, reason) for field, reason in problems])
        return (
            AddressKind.WEB_PUSH,
            subscription.endpoint,
            {"platform": "web", "keys": subscription.keys.model_dump()},
        )
    if device.token is None:
        raise InvalidInput(FieldError("token", f"{device.type} needs the device token"))
    return AddressKind.PUSH, device.token, {"platform": device.type, "appId": device.app_id}


@router.get("/{user_id}", response_class=JSONAnswer)
async def get_contact(user_id: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """The contact's traits, addresses (with their status) and latest events."""
    return JSONAnswer(await in_thread(in_read, svc, store.get_contact, workspace_id, user_id))


@router.get("/{user_id}/export", response_class=JSONAnswer)
async def export_contact(user_id: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Everything stored about the contact, as one JSON document."""
    data = await in_thread(in_read, svc, store.export_contact, workspace_id, user_id)
    filename = f"contact-{workspace_id}-{abs(hash(user_id))}.json"
    return JSONAnswer(data, headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@router.delete("/{user_id}", status_code=204)
async def erase_contact(user_id: str, svc: ServicesDep, workspace_id: WorkspaceDep) -> Response:
    """Erase the contact (GDPR art. 17): every row naming them goes; only keyed hashes of
    their ids stay, so a late event does not bring them back. Identifying them again does."""
    await in_thread(
        in_write, svc, store.erase_contact, workspace_id, user_id, svc.clock.now(), svc.secret
    )
    return Response(status_code=204)


@router.post("/{user_id}/devices", status_code=201, response_class=JSONAnswer)
async def register_device(
    user_id: str, svc: ServicesDep, workspace_id: WorkspaceDep, device: Annotated[Device, Body()]
) -> JSONAnswer:
    """Register a push token or a web-push subscription for the contact (created if new).
    A device registered for another user moves to this one."""
    kind, value, details = _device_address(device)
    address = await in_thread(
        in_write,
        svc,
        store.register_device,
        workspace_id,
        user_id,
        kind,
        value,
        details,
        svc.clock.now(),
    )
    return JSONAnswer(address, status_code=201)


@router.delete("/{user_id}/devices/{device_id}", status_code=204)
async def remove_device(
    user_id: str, device_id: int, svc: ServicesDep, workspace_id: WorkspaceDep
) -> Response:
    await in_thread(in_write, svc, store.remove_device, workspace_id, user_id, device_id)
    return Response(status_code=204)
