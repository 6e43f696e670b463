"""Segment-compatible tracking: /v1/identify, /v1/track, /v1/page, /v1/screen, /v1/group,
/v1/alias and /v1/batch.

A batch with some bad items stores the good ones and answers 200 with a report of each bad
one (``rejected``: its index, messageId and errors). Rejecting the whole batch would make
Segment's SDKs, which drop a batch on any 4xx, lose every good event with it. A batch in
which nothing could be accepted answers 422 with the same report. A body over the size
limit, not JSON, or not a batch at all answers 413, 400 or 422.
"""

from __future__ import annotations

import zlib
from typing import Any

from fastapi import APIRouter, Request

from junction.api.deps import Services, ServicesDep, WorkspaceDep
from junction.api.responses import JSONAnswer
from junction.domain import tracking
from junction.errors import FieldError, MalformedBody, PayloadTooLarge
from junction.store.ingest import Batch, IngestResult, ingest
from junction.threads import in_thread

router = APIRouter(prefix="/v1", tags=["tracking"])


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused as soon as it is known to pass ``limit`` (gzip allowed)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(
            FieldError("body", f"the body is {declared} bytes; the limit is {limit // 1024} KB")
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                FieldError("body", f"the body passes the {limit // 1024} KB limit")
            )
        chunks.append(chunk)
    body = b"".join(chunks)
    if request.headers.get("content-encoding", "").lower() == "gzip":
        inflater = zlib.decompressobj(wbits=31)
        try:
            body = inflater.decompress(body, limit + 1)
        except zlib.error:
            raise MalformedBody(FieldError("body", "is not valid gzip")) from None
        if len(body) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                FieldError("body", f"the body passes the {limit // 1024} KB limit")
            )
    return body


def _store(
    svc: Services,
    workspace_id: int,
    messages: list[tracking.AnyMessage],
    sent_at: Any,
    context: dict[str, Any] | None,
) -> IngestResult:
    batch = Batch(messages, received_at=svc.clock.now(), sent_at=sent_at, context=context)
    with svc.database.write() as conn:
        return ingest(conn, workspace_id, batch, svc.secret)


BATCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Batch"}}},
    }
}


@router.post("/batch", openapi_extra=BATCH_BODY, response_class=JSONAnswer)
async def batch(request: Request, svc: ServicesDep, workspace_id: WorkspaceDep) -> JSONAnswer:
    """Many calls at once (what Segment's SDKs send): up to 500 KB, 32 KB per call."""
    body = await read_body(request, tracking.MAX_BATCH_BYTES)
    decoded, sent_at, context = tracking.decode_batch(body)
    result = IngestResult(0, 0)
    if decoded.messages:
        result = await in_thread(_store, svc, workspace_id, decoded.messages, sent_at, context)
    rejected = [tracking.rejected_as_dict(item) for item in decoded.rejected]
    answer: dict[str, Any] = {
        "success": not rejected,
        "accepted": result.accepted,
        "suppressed": result.suppressed,
        "rejected": rejected,
    }
    status = 422 if rejected and not decoded.messages else 200
    return JSONAnswer(answer, status_code=status)


def _single(kind: str) -> Any:
    schema = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{kind.title()}"}}
            },
        }
    }

    async def endpoint(
        request: Request, svc: ServicesDep, workspace_id: WorkspaceDep
    ) -> JSONAnswer:
        body = await read_body(request, tracking.MAX_CALL_BYTES)
        message = tracking.decode_message(body, kind)
        result = await in_thread(_store, svc, workspace_id, [message], None, None)
        return JSONAnswer({"success": True, "suppressed": result.suppressed})

    endpoint.__name__ = kind
    endpoint.__doc__ = f"One `{kind}` call, as in Segment's tracking spec (32 KB at most)."
    router.post(f"/{kind}", openapi_extra=schema, response_class=JSONAnswer)(endpoint)
    return endpoint


for _kind in tracking.MESSAGE_TYPES:
    _single(_kind)
