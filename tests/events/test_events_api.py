"""POST /v1/events/s3 and the workers behind it, in-process against real S3 and the fake VLM, on SQLite and
on a real PostgreSQL: an event becomes one caption, kept and written back; what needs no caption makes no
model call; failures are retried, then kept; the route's key, shape and size rules.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest

from tests.support import images
from tests.support.batch import BatchBucket, new_bucket
from tests.support.events import eventbridge, s3_notification, wait_until
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import GatewayFactory
from tests.support.s3_server import S3Server

TOKEN = "events-token-for-tests"
API_KEY = "api-key-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FAST_RETRIES = {"EVENTS_BACKOFF_S": 0.05, "BACKEND_MAX_ATTEMPTS": 1}


@pytest.fixture
def bucket(s3_server: S3Server) -> BatchBucket:
    return new_bucket(s3_server, prefix="evapi")


def put_image(bucket: BatchBucket, key: str, body: bytes | None = None) -> str:
    """Uploads an image; returns its ETag as S3 gives it (events send it bare)."""
    bucket.put(key, body if body is not None else images.photo(96, 64, quality=80))
    return str(bucket.client.head_object(Bucket=bucket.name, Key=key)["ETag"]).strip('"')


async def deliver(client: httpx.AsyncClient, body: dict[str, Any], **headers: str) -> httpx.Response:
    return await client.post("/v1/events/s3", json=body, headers={**AUTH, **headers})


async def event_rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get("/v1/captions", params={"source": "event"})).json()[
        "items"
    ]
    return items


async def queue_state(client: httpx.AsyncClient) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get("/v1/events/queue")).json()
    return body


async def settled(client: httpx.AsyncClient) -> bool:
    """Nothing waiting or in hand: every queued event was captioned, dropped or failed."""
    counts = (await queue_state(client))["counts"]
    return counts["queued"] + counts["retry"] + counts["running"] == 0


@pytest.fixture
def events_gateway(gateway: GatewayFactory, catalogue_url: str) -> GatewayFactory:
    """``async with events_gateway(**settings) as client``: the gateway with EVENTS_TOKEN, on this engine."""

    def open_one(**settings: Any) -> AbstractAsyncContextManager[httpx.AsyncClient]:
        return gateway(DATABASE_URL=catalogue_url, EVENTS_TOKEN=TOKEN, **settings)

    return open_one


async def test_an_upload_event_is_captioned_once_kept_and_written_back(
    events_gateway: GatewayFactory, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    etag = put_image(bucket, "2024/my photo+1.jpg")
    async with events_gateway(EVENTS_WRITE_BACK="sidecar,tags") as client:
        accepted = await deliver(client, s3_notification(bucket.name, "2024/my photo+1.jpg", etag))
        assert accepted.status_code == 202
        assert accepted.json() == {"accepted": 1, "ignored": 0}
        await wait_until(lambda: settled(client), what="the event's caption")
        rows = await event_rows(client)
        # What writing back made S3 announce: the sidecar, then the tags (S3's event name for them).
        sidecar = await deliver(client, s3_notification(bucket.name, "2024/my photo+1.jpg.json"))
        tags = await deliver(
            client, s3_notification(bucket.name, "2024/my photo+1.jpg", etag, "ObjectTagging:Put")
        )
        again = await deliver(client, eventbridge(bucket.name, "2024/my photo+1.jpg", etag))
        await asyncio.sleep(0.3)  # time enough for a worker to pick up anything that had been queued
    assert [r["s3_uri"] for r in rows] == [f"s3://{bucket.name}/2024/my photo+1.jpg"]
    assert rows[0]["etag"] == etag and rows[0]["source"] == "event"
    assert rows[0]["caption"] == "A red bicycle leans against a brick wall."
    written = bucket.get("2024/my photo+1.jpg.json")
    assert b"A red bicycle" in written
    tagset = bucket.client.get_object_tagging(Bucket=bucket.name, Key="2024/my photo+1.jpg")["TagSet"]
    assert {t["Key"] for t in tagset} >= {"florence:caption", "florence:etag"}
    for echo in (sidecar, tags, again):
        assert echo.status_code == 202 and echo.json() == {"accepted": 0, "ignored": 1}
    assert len(fake_vlm.requests) == 1  # write-back never triggers a second caption


async def test_with_review_required_an_event_caption_is_written_back_only_once_approved(
    events_gateway: GatewayFactory, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    etag = put_image(bucket, "2024/waits.jpg")
    async with events_gateway(EVENTS_WRITE_BACK="sidecar,tags", REVIEW_REQUIRED="true") as client:
        await deliver(client, s3_notification(bucket.name, "2024/waits.jpg", etag))
        await wait_until(lambda: settled(client), what="the event's caption")
        (row,) = await event_rows(client)
        unwritten = bucket.keys("2024/")
        tags_before = bucket.client.get_object_tagging(Bucket=bucket.name, Key="2024/waits.jpg")["TagSet"]
        approved = (await client.patch(f"/v1/captions/{row['id']}", json={"status": "approved"})).json()
    assert unwritten == ["2024/waits.jpg"]  # captioned and kept, nothing beside the image
    assert tags_before == []
    assert row["write_back"] == {
        "status": "deferred",
        "modes": ["sidecar", "tags"],
        "at": None,
        "error": None,
    }
    assert approved["write_back"]["status"] == "done"  # the approval writes what the events asked for
    assert b"A red bicycle" in bucket.get("2024/waits.jpg.json")
    tagset = bucket.client.get_object_tagging(Bucket=bucket.name, Key="2024/waits.jpg")["TagSet"]
    assert {t["Key"] for t in tagset} >= {"florence:caption", "florence:etag"}


async def test_repeated_and_reordered_deliveries_caption_each_version_once(
    events_gateway: GatewayFactory, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(content=structured(), delay_s=0.3))  # both workers hold an event at once
    old = put_image(bucket, "a.jpg")
    new = put_image(bucket, "a.jpg", images.photo(100, 70, quality=80))  # overwritten before captioned
    put_image(bucket, "b.jpg")
    async with events_gateway(EVENT_WORKERS=4) as client:
        bodies = [
            s3_notification(bucket.name, "a.jpg", new),
            s3_notification(bucket.name, "b.jpg"),  # no ETag given
            s3_notification(bucket.name, "a.jpg", old),  # older, arriving later
            s3_notification(bucket.name, "a.jpg", new),
            s3_notification(bucket.name, "b.jpg"),
        ]
        answers = await asyncio.gather(*(deliver(client, body) for body in bodies))
        await wait_until(lambda: settled(client), what="every event settled")
        rows = await event_rows(client)
    assert [a.status_code for a in answers] == [202] * 5
    assert sorted((r["s3_uri"].rsplit("/", 1)[1], r["etag"]) for r in rows) == [
        ("a.jpg", new),  # the version S3 holds, once
        ("b.jpg", put_etag(bucket, "b.jpg")),
    ]
    assert len(fake_vlm.requests) == 2


def put_etag(bucket: BatchBucket, key: str) -> str:
    return str(bucket.client.head_object(Bucket=bucket.name, Key=key)["ETag"]).strip('"')


async def test_an_object_deleted_since_its_event_is_dropped_not_retried(
    events_gateway: GatewayFactory, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    async with events_gateway(**FAST_RETRIES) as client:
        accepted = await deliver(client, s3_notification(bucket.name, "gone.jpg", "0123456789abcdef"))
        await wait_until(lambda: settled(client), what="the event settled")
        state = await queue_state(client)
        rows = await event_rows(client)
        metrics = (await client.get("/metrics")).text
    assert accepted.json() == {"accepted": 1, "ignored": 0}
    assert state["counts"] == {"queued": 0, "retry": 0, "running": 0, "failed": 0}
    assert rows == [] and fake_vlm.requests == []
    assert 'florence_events_processed_total{outcome="gone"} 1.0' in metrics


async def test_a_failure_is_retried_with_backoff_then_kept_failed_with_its_code(
    events_gateway: GatewayFactory, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(status=500))
    etag = put_image(bucket, "down.jpg")
    async with events_gateway(EVENTS_MAX_ATTEMPTS=3, **FAST_RETRIES) as client:
        await deliver(client, s3_notification(bucket.name, "down.jpg", etag))
        await wait_until(lambda: _has_failed(client), what="the event kept as failed after its attempts")
        state = await queue_state(client)
        metrics = (await client.get("/metrics")).text
    assert len(fake_vlm.requests) == 3  # EVENTS_MAX_ATTEMPTS, one VLM call each (BACKEND_MAX_ATTEMPTS=1)
    assert state["counts"]["failed"] == 1
    error = state["last_error"]
    assert error["code"] == "vlm_unavailable" and error["attempts"] == 3
    assert error["s3_uri"] == f"s3://{bucket.name}/down.jpg"
    assert 'florence_events_queue{state="failed"} 1.0' in metrics
    assert 'florence_events_processed_total{outcome="retry"} 2.0' in metrics


async def _has_failed(client: httpx.AsyncClient) -> bool:
    return bool((await queue_state(client))["counts"]["failed"])


async def test_a_failure_that_clears_is_captioned_on_a_later_attempt(
    events_gateway: GatewayFactory, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.then(Reply(status=503))
    etag = put_image(bucket, "flaky.jpg")
    async with events_gateway(**FAST_RETRIES) as client:
        await deliver(client, s3_notification(bucket.name, "flaky.jpg", etag))
        await wait_until(lambda: _rows(client, 1), what="the caption after a retry")
        await wait_until(lambda: settled(client), what="its row settled")
        state = await queue_state(client)
    assert len(fake_vlm.requests) == 2
    assert state["counts"] == {"queued": 0, "retry": 0, "running": 0, "failed": 0}


async def _rows(client: httpx.AsyncClient, count: int) -> bool:
    return len(await event_rows(client)) == count


async def test_an_unreadable_image_fails_at_once(
    events_gateway: GatewayFactory, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    etag = put_image(bucket, "text.jpg", images.NOT_AN_IMAGE)
    async with events_gateway(**FAST_RETRIES) as client:
        await deliver(client, s3_notification(bucket.name, "text.jpg", etag))
        await wait_until(lambda: _has_failed(client), what="the event failed")
        error = (await queue_state(client))["last_error"]
    assert error["code"] == "unsupported_image" and error["attempts"] == 1  # the same bytes fail again
    assert fake_vlm.requests == []


async def test_what_needs_no_caption_makes_no_model_call(
    events_gateway: GatewayFactory, bucket: BatchBucket, fake_vlm: FakeOpenAI
) -> None:
    etag = put_image(bucket, "cached.jpg")
    async with events_gateway(EVENTS_SIDECAR_PREFIX=f"s3://{bucket.name}/sidecars") as client:
        made = await client.post("/caption", json={"s3_uri": f"s3://{bucket.name}/cached.jpg"}, headers=AUTH)
        bodies = [
            s3_notification(bucket.name, "cached.jpg", etag),  # catalogued at this ETag, same parameters
            s3_notification(bucket.name, "x.jpg", "e", "ObjectRemoved:Delete"),
            s3_notification(bucket.name, "x.jpg", "e", "ObjectAcl:Put"),
            s3_notification(bucket.name, "x.jpg", "e", "s3:ObjectCreated:PutTagging"),  # MinIO's tags
            s3_notification(bucket.name, "notes.txt", "e"),
            s3_notification(bucket.name, "x.jpg.xmp", "e"),
            s3_notification(bucket.name, "sidecars/x.jpg", "e"),
            eventbridge(bucket.name, "x.jpg", "e", "Object Deleted"),
        ]
        answers = [await deliver(client, body) for body in bodies]
        await asyncio.sleep(0.3)
        metrics = (await client.get("/metrics")).text
    assert made.status_code == 200
    assert [a.json() for a in answers] == [{"accepted": 0, "ignored": 1}] * len(bodies)
    assert len(fake_vlm.requests) == 1  # the POST /caption, nothing else
    for reason in ("catalogued", "not_created", "not_an_image", "own_output"):
        assert f'florence_events_received_total{{outcome="{reason}"}}' in metrics


async def test_the_route_takes_api_keys_or_the_events_token_and_nothing_else(
    events_gateway: GatewayFactory, bucket: BatchBucket
) -> None:
    body = s3_notification(bucket.name, "nothing-here.txt")
    basic = base64.b64encode(f"events:{TOKEN}".encode()).decode()
    async with events_gateway(API_KEYS=API_KEY) as client:
        none = await client.post("/v1/events/s3", json=body)
        wrong = await deliver(client, body, Authorization="Bearer nope")
        token = await deliver(client, body)
        key = await deliver(client, body, Authorization=f"Bearer {API_KEY}")
        in_url = await deliver(client, body, Authorization=f"Basic {basic}")  # SNS: https://events:TOKEN@host
        elsewhere = await client.get("/v1/captions", headers=AUTH)  # the token is for this route only
        queue_with_token = await client.get("/v1/events/queue", headers=AUTH)
        queue_with_key = await client.get("/v1/events/queue", headers={"Authorization": f"Bearer {API_KEY}"})
    for refused in (none, wrong, elsewhere, queue_with_token):
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "invalid_api_key"
    # SNS sends the user:password of its subscription URL only after a Basic challenge with a realm.
    assert none.headers["WWW-Authenticate"].startswith('Basic realm="')
    assert [r.status_code for r in (token, key, in_url, queue_with_key)] == [202, 202, 202, 200]


async def test_a_body_of_the_wrong_shape_is_a_422_with_the_envelope(events_gateway: GatewayFactory) -> None:
    async with events_gateway() as client:
        shapes = [
            await client.post("/v1/events/s3", json={"hello": "world"}, headers=AUTH),
            await client.post("/v1/events/s3", content=b"not json", headers=AUTH),
            await client.post(
                "/v1/events/s3", json={"Records": [{"eventName": "ObjectCreated:Put"}]}, headers=AUTH
            ),
        ]
    for answer in shapes:
        assert answer.status_code == 422
        error = answer.json()["error"]
        assert error["code"] == "invalid_event" and error["type"] == "invalid_request_error"


async def test_a_body_over_1_mb_is_refused_while_it_streams_in(events_gateway: GatewayFactory) -> None:
    big = b'{"Records": [' + b" " * (1024 * 1024) + b"]}"

    async def trickle() -> AsyncIterator[bytes]:  # no Content-Length: refused by what has arrived
        for start in range(0, len(big), 64 * 1024):
            yield big[start : start + 64 * 1024]

    async with events_gateway() as client:
        declared = await client.post("/v1/events/s3", content=big, headers=AUTH)
        streamed = await client.post("/v1/events/s3", content=trickle(), headers=AUTH)
        unauthenticated = await client.post("/v1/events/s3", content=big)
        fine = await client.post("/v1/events/s3", json={"Records": []}, headers=AUTH)
    for refused in (declared, streamed):
        assert refused.status_code == 413
        assert refused.json()["error"]["code"] == "request_too_large"
    assert unauthenticated.status_code == 401  # the key is checked before the body is read
    assert fine.status_code == 202


async def test_each_processed_event_logs_one_line_with_its_delivery_request_id(
    events_gateway: GatewayFactory, bucket: BatchBucket, caplog: pytest.LogCaptureFixture
) -> None:
    etag = put_image(bucket, "logged.jpg")
    caplog.set_level(logging.INFO, logger="gateway.events")
    async with events_gateway() as client:
        await deliver(
            client, s3_notification(bucket.name, "logged.jpg", etag), **{"X-Request-ID": "delivery-42"}
        )
        await wait_until(lambda: _rows(client, 1), what="the caption")
        await wait_until(lambda: settled(client), what="the row settled")
    lines = [r.getMessage() for r in caplog.records if "outcome=" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].startswith("request_id=delivery-42 ")
    assert "outcome=captioned" in lines[0] and "vlm_ms=" in lines[0]
