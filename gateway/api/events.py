"""S3 event notifications over HTTP: the receiving end stores point at, and the queue's state.

``POST /v1/events/s3`` takes a key of ``API_KEYS`` or ``EVENTS_TOKEN``, reads at most 1 MB (refused while it
streams in, before it is held), and answers 202 only once every relevant object is a committed queue row.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from gateway.api.deps import EventsDep
from gateway.api.errors import ErrorEnvelope
from gateway.errors import RequestTooLarge

# Two routers, so each route's key is declared only when one is set (routes.include_routers): the intake
# takes API_KEYS or EVENTS_TOKEN; the queue's state is protected like every other route.
router = APIRouter(prefix="/v1/events", tags=["events"])
intake_router = APIRouter(prefix="/v1/events", tags=["events"])
MAX_BODY_BYTES = 1024 * 1024  # an S3 delivery is a few KB; nothing a store sends comes near this

_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "An S3 event notification document (AWS, Ceph, MinIO's wrapper around it), an "
        "EventBridge S3 event, a SeaweedFS filer webhook event, or an SNS message carrying the first",
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
_ERRORS = {
    401: "Missing or wrong key (API_KEYS, and on POST /v1/events/s3 also EVENTS_TOKEN, when set)",
    413: "The body is over 1 MB",
    422: "The body is none of the formats (code invalid_event)",
    503: "The queue's database is unavailable; a delivery was not queued: send it again (see Retry-After)",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorEnvelope, "description": _ERRORS[s]} for s in statuses}


class EventsAccepted(BaseModel):
    accepted: int = Field(description="Objects now queued for a caption (a repeated delivery counts once)")
    ignored: int = Field(
        description="Records needing no caption: not a new object, not an image, our own "
        "sidecars, or already catalogued at that ETag with the events' parameters"
    )


class LastError(BaseModel):
    s3_uri: str
    code: str
    message: str
    attempts: int
    at: datetime


class QueueOut(BaseModel):
    counts: dict[str, int] = Field(description="Rows by state: queued, retry, running, failed")
    oldest_age_s: float | None = Field(
        description="Age of the oldest event not yet captioned (failed ones aside); null when there is none"
    )
    last_error: LastError | None


@intake_router.post(
    "/s3",
    status_code=202,
    response_model=EventsAccepted,
    responses=_responses(401, 413, 422, 503),
    openapi_extra=_BODY,
)
async def receive_s3_events(request: Request, events: EventsDep) -> EventsAccepted:
    body = await read_capped(request, MAX_BODY_BYTES)
    receipt = await events.receive(body, request.state.request_id)
    return EventsAccepted(accepted=receipt.accepted, ignored=receipt.ignored)


@router.get("/queue", response_model=QueueOut, responses=_responses(401, 503))
async def queue(events: EventsDep) -> QueueOut:
    stats = await events.queue.stats()
    last = stats.last_error
    return QueueOut(
        counts=stats.counts,
        oldest_age_s=round(stats.oldest_age_s, 3) if stats.oldest_age_s is not None else None,
        last_error=LastError(**vars(last)) if last is not None else None,
    )


async def read_capped(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it is known to exceed ``limit``: from Content-Length before reading,
    else while it streams in (chunked), never after holding it whole."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestTooLarge(f"the body is {declared} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
