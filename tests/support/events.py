"""S3 event helpers: the deliveries stores send (built as their documentation shows them), the webhook the
session's SeaweedFS sends its filer events to, the gateway served on a real port for it, and waiting.

The session's S3 server (``s3_server``) sends the filer events of buckets named ``events-*`` to
``WEBHOOK_PORT``'s ``/v1/events/s3`` with ``EVENTS_TOKEN``: a test that serves a gateway on that port
receives the events of its own ``events-*`` bucket, straight from SeaweedFS. Other buckets send nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote_plus

import uvicorn

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.processes import HOST, free_port
from tests.support.s3_server import Webhook

EVENTS_TOKEN = "florence-events-test-token"
EVENTS_BUCKET_PREFIX = "events-"  # the only buckets whose changes the session's SeaweedFS announces


def session_webhook() -> Webhook:
    """A webhook to a port picked now, on which webhook tests serve their gateway."""
    port = free_port()
    return Webhook(f"http://{HOST}:{port}/v1/events/s3", EVENTS_TOKEN, (f"/buckets/{EVENTS_BUCKET_PREFIX}",))


def webhook_port(webhook: Webhook) -> int:
    return int(webhook.endpoint.rsplit(":", 1)[1].split("/", 1)[0])


def s3_notification(
    bucket: str, key: str, etag: str | None = None, event: str = "ObjectCreated:Put"
) -> dict[str, Any]:
    """One record as AWS sends it: the key URL-encoded, spaces as ``+``."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "size": 1, "sequencer": "0055AED6DCD90281E5"}
    if etag is not None:
        obj["eTag"] = etag
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "us-east-1",
                "eventTime": "2026-11-30T10:15:02.123Z",
                "eventName": event,
                "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj},
            }
        ]
    }


def eventbridge(
    bucket: str, key: str, etag: str | None, detail_type: str = "Object Created"
) -> dict[str, Any]:
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "detail": {"version": "0", "bucket": {"name": bucket}, "object": {"key": key, "etag": etag}},
    }


async def wait_until(
    condition: Callable[[], Awaitable[bool]],
    timeout_s: float = 30,
    what: str = "the condition",
    every_s: float = 0.05,
) -> float:
    """Polls ``condition`` until it holds; returns the seconds it took. Fails with ``what`` on timeout."""
    started = time.monotonic()
    while not await condition():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        await asyncio.sleep(every_s)
    return time.monotonic() - started


@asynccontextmanager
async def serve_gateway(settings: Settings, port: int) -> AsyncIterator[str]:
    """The app served by uvicorn on a real port, in this event loop (a store's webhook needs a socket; the
    in-process ASGI transport has none). Yields its base URL."""
    config = uvicorn.Config(
        create_app(settings), host=HOST, port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("the gateway did not start")
        await asyncio.sleep(0.02)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        await task
