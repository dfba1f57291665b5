"""Object bodies by presigned GET on the pooled HTTP client: S3's answers map as get_object's did.

404, 403 and an unreachable S3 are in tests/api/test_errors.py; here, what only a proxy in front of the
real S3 server can provoke: a 5xx (retried, then 503), and AWS's answer for a bucket in another region.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import BUCKET, GatewayFactory, sent_image
from tests.support.s3_fault_proxy import Answer, S3FaultProxy, s3_error
from tests.support.s3_server import S3Server

URI = f"s3://{BUCKET}/in-budget.jpg"


def presigned_get(request: web.Request) -> bool:
    return request.method == "GET" and "X-Amz-Signature" in request.query


@pytest.fixture
async def proxy(s3_server: S3Server) -> AsyncIterator[S3FaultProxy]:
    proxy = S3FaultProxy(s3_server.endpoint_url)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


async def test_images_are_read_by_presigned_get(
    gateway: GatewayFactory, proxy: S3FaultProxy, fake_vlm: FakeOpenAI
) -> None:
    seen: list[str] = []
    # Records the GETs (the catalogue's cache sends a HEAD first), never refuses.
    proxy.refuse(lambda request: request.method == "GET" and seen.append(request.path_qs) and False)
    async with gateway(S3_ENDPOINT_URL=proxy.endpoint_url) as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 200
    assert len(seen) == 1
    assert seen[0].startswith(f"/{BUCKET}/in-budget.jpg?") and "X-Amz-Signature=" in seen[0]
    assert sent_image(fake_vlm)[1].size == (1148, 868)


async def test_s3_5xx_is_retried_then_a_503(gateway: GatewayFactory, proxy: S3FaultProxy) -> None:
    proxy.refuse(presigned_get, Answer(500, s3_error("InternalError")))
    async with gateway(S3_ENDPOINT_URL=proxy.endpoint_url) as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "s3_unavailable"
    assert "500 InternalError" in response.json()["error"]["message"]
    assert response.headers["retry-after"]
    assert proxy.refused == 3


async def test_a_slowdown_then_success_is_a_caption(gateway: GatewayFactory, proxy: S3FaultProxy) -> None:
    proxy.refuse(
        lambda request: presigned_get(request) and proxy.refused == 0, Answer(503, s3_error("SlowDown"))
    )
    async with gateway(S3_ENDPOINT_URL=proxy.endpoint_url) as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 200
    assert proxy.refused == 1


async def test_a_bucket_in_another_region_is_read_through_get_object(
    gateway: GatewayFactory, proxy: S3FaultProxy
) -> None:
    # What AWS answers a presigned URL signed for the wrong region; botocore's get_object follows it.
    redirect = Answer(
        301, s3_error("PermanentRedirect", "use the bucket's region"), {"x-amz-bucket-region": "us-east-1"}
    )
    proxy.refuse(presigned_get, redirect)
    async with gateway(S3_ENDPOINT_URL=proxy.endpoint_url) as client:
        first = await client.post("/caption", json={"s3_uri": URI})
        second = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/rotated.jpg"})
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    assert proxy.refused == 1  # the bucket is remembered: no second detour
