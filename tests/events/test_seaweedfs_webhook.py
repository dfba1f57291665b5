"""The real emitter, end to end: the session's SeaweedFS posts its filer events to a gateway served on a real
port (uvicorn, in this loop), on SQLite and on PostgreSQL. An upload through S3 becomes a catalogue row and
a sidecar; what writing back makes SeaweedFS announce (the sidecar, the tags) is ignored, as are the folder
the key implied and a delete; a burst of 200 uploads is captioned once each.
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.settings import Settings
from tests.support import images
from tests.support.batch import BatchBucket, new_bucket, small_images
from tests.support.events import EVENTS_BUCKET_PREFIX, serve_gateway, wait_until, webhook_port
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.s3_server import S3Server

BURST = 200


@pytest.fixture
def bucket(s3_server: S3Server) -> BatchBucket:
    """A bucket whose changes SeaweedFS announces (the session's webhook covers events-* buckets)."""
    return new_bucket(s3_server, prefix=EVENTS_BUCKET_PREFIX.rstrip("-"))


@pytest.fixture
def webhook_gateway(
    s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI, catalogue_url: str, tmp_path: Path
) -> Any:
    """``async with webhook_gateway(**settings) as client``: the gateway SeaweedFS's webhook points at."""
    assert s3_server.webhook is not None

    @asynccontextmanager
    async def serve(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(  # type: ignore[call-arg]
            **{
                "S3_ENDPOINT_URL": s3_server.endpoint_url,
                "VLM_BASE_URL": fake_vlm.base_url,
                "GPT_OSS_BASE_URL": fake_enhancer.base_url,
                "DATABASE_URL": catalogue_url,
                "DATA_DIR": str(tmp_path),
                "EVENTS_TOKEN": s3_server.webhook.token,
                **overrides,
            }
        )
        async with (
            serve_gateway(settings, webhook_port(s3_server.webhook)) as url,
            httpx.AsyncClient(base_url=url, timeout=30) as client,
        ):
            yield client

    return serve


async def event_rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    page = await client.get("/v1/captions", params={"source": "event", "limit": 200})
    items: list[dict[str, Any]] = page.json()["items"]
    return items


def received(metrics: str, outcome: str) -> float:
    found = re.search(rf'^florence_events_received_total{{outcome="{outcome}"}} (\S+)$', metrics, re.M)
    return float(found.group(1)) if found else 0.0


async def test_an_upload_is_captioned_and_what_write_back_stirs_up_is_ignored(
    webhook_gateway: Any, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    key = "2024/my photo+1.jpg"
    async with webhook_gateway(EVENTS_WRITE_BACK="sidecar,tags") as client:
        await asyncio.to_thread(bucket.put, key, images.photo(120, 90, quality=85))
        head = await asyncio.to_thread(bucket.client.head_object, Bucket=bucket.name, Key=key)
        await wait_until(lambda: has_rows(client, 1), what="the upload's catalogue row")
        await wait_until(lambda: asyncio.to_thread(bool, bucket.keys(key + ".json")), what="the sidecar")

        async def echoes_seen() -> bool:
            metrics = (await client.get("/metrics")).text
            return received(metrics, "own_output") >= 1 and received(metrics, "not_created") >= 1

        # SeaweedFS announces the sidecar (a create) and the tags (an update, same ETag): both ignored.
        await wait_until(echoes_seen, what="SeaweedFS's events for the sidecar and the tags")
        await asyncio.to_thread(bucket.client.delete_object, Bucket=bucket.name, Key=key)

        async def delete_seen() -> bool:
            return received((await client.get("/metrics")).text, "not_created") >= 2

        await wait_until(delete_seen, what="SeaweedFS's delete event")
        rows = await event_rows(client)
        metrics = (await client.get("/metrics")).text
        state = (await client.get("/v1/events/queue")).json()
    assert [(r["s3_uri"], r["source"]) for r in rows] == [(f"s3://{bucket.name}/{key}", "event")]
    assert rows[0]["etag"] == head["ETag"].strip('"')
    assert received(metrics, "accepted") == 1
    assert received(metrics, "directory") >= 1  # the folder "2024" the key implied
    assert len(fake_vlm.requests) == 1  # one caption, whatever SeaweedFS said afterwards
    assert state["counts"] == {"queued": 0, "retry": 0, "running": 0, "failed": 0}


async def has_rows(client: httpx.AsyncClient, count: int) -> bool:
    return len(await event_rows(client)) >= count


async def test_a_burst_of_200_uploads_is_captioned_once_each(
    webhook_gateway: Any, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(content=structured(), delay_s=0.1))  # a GPU-like 100 ms per caption
    uploaded: dict[str, datetime] = {}

    def upload_all() -> None:
        for i in range(BURST):
            key = f"burst/{i:03d}.jpg"
            bucket.put(key, small_images()[i % 10])
            uploaded[f"s3://{bucket.name}/{key}"] = datetime.now(UTC)

    async with webhook_gateway(EVENT_WORKERS=8) as client:
        await asyncio.to_thread(upload_all)
        await wait_until(
            lambda: has_rows(client, BURST), timeout_s=120, what=f"{BURST} catalogue rows", every_s=0.25
        )
        await asyncio.sleep(0.5)  # a straggler or a duplicate would show now
        rows = await event_rows(client)
    uris = [r["s3_uri"] for r in rows]
    assert sorted(uris) == sorted(uploaded)  # every upload, each once
    assert len(fake_vlm.requests) == BURST
    latency = sorted(
        (datetime.fromisoformat(r["created_at"]) - uploaded[r["s3_uri"]]).total_seconds() for r in rows
    )
    p50, p95 = statistics.median(latency), latency[int(0.95 * len(latency)) - 1]
    # Reported, not asserted: timings belong to benchmarks/bench_events.py (machines are shared).
    print(f"\n{BURST} uploads -> catalogue rows: p50 {p50:.2f} s, p95 {p95:.2f} s (8 workers, 100 ms VLM)")
