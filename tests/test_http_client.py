"""The outbound HTTP client (httpx's API on aiohttp's pool): pool limits and timeouts still hold.

The transport under httpx changed; what a caller sees must not: at most MAX_CONCURRENCY connections per
backend, a request that finds them all busy for VLM_TIMEOUT_S is a 503 (local overload, not retried), and a
server that never accepts the connection is a 503 after the retries, each attempt cut at the connect timeout.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from gateway.http_client import make_http_client
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import BUCKET, GatewayFactory

URI = f"s3://{BUCKET}/in-budget.jpg"


@contextmanager
def port_that_never_accepts() -> Iterator[int]:
    """A listening port whose accept queue is full: the kernel drops further SYNs, so connecting hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    try:
        yield port
    finally:
        for sock in [*fillers, server]:
            sock.close()


async def test_the_pool_opens_at_most_max_connections(fake_vlm: FakeOpenAI) -> None:
    fake_vlm.reset(Reply(delay_s=0.3))
    async with make_http_client(None, 10, 2) as client:
        url = fake_vlm.base_url + "/chat/completions"
        responses = await asyncio.gather(*(client.post(url, json={"n": i}) for i in range(6)))
    assert [r.status_code for r in responses] == [200] * 6
    assert fake_vlm.max_in_flight == 2


async def test_a_request_that_finds_the_pool_busy_gets_a_pool_timeout(fake_vlm: FakeOpenAI) -> None:
    fake_vlm.reset(Reply(delay_s=2))
    async with make_http_client(None, 10, 1) as client:
        url = fake_vlm.base_url + "/chat/completions"
        holder = asyncio.create_task(client.post(url, json={}))
        while not fake_vlm.requests:
            await asyncio.sleep(0.02)
        try:
            await client.post(url, json={}, timeout=httpx.Timeout(10, pool=0.2))
        except httpx.PoolTimeout:
            pass
        else:
            raise AssertionError("the second request got a connection the pool does not have")
        assert (await holder).status_code == 200
    assert len(fake_vlm.requests) == 1


async def test_every_vlm_connection_busy_is_a_503_and_not_retried(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    # The first caption holds the only connection for 3 s with a slow but live answer (no read timeout).
    fake_vlm.reset(Reply(content=structured(), trickle_s=3))
    async with gateway(MAX_CONCURRENCY=1, VLM_TIMEOUT_S=1) as client:
        first = asyncio.create_task(client.post("/caption", json={"s3_uri": URI}))
        while not fake_vlm.requests:
            await asyncio.sleep(0.02)
        # Another image: the same one would join the first caption's computation (the catalogue coalesces).
        busy = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/rotated.jpg"})
        assert (await first).status_code == 200
    assert busy.status_code == 503
    assert busy.json()["error"]["code"] == "vlm_unavailable"
    assert "busy" in busy.json()["error"]["message"]
    assert busy.headers["retry-after"]
    assert len(fake_vlm.requests) == 1  # the second never reached the server and was not retried


async def test_a_vlm_that_never_accepts_the_connection_is_a_503_after_retries(
    gateway: GatewayFactory,
) -> None:
    with port_that_never_accepts() as port:
        async with gateway(VLM_BASE_URL=f"http://127.0.0.1:{port}/v1", VLM_TIMEOUT_S=1) as client:
            start = time.monotonic()
            response = await client.post("/caption", json={"s3_uri": URI})
            elapsed = time.monotonic() - start
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "vlm_unavailable"
    assert "ConnectTimeout" in response.json()["error"]["message"]
    assert "after 3 attempts" in response.json()["error"]["message"]
    assert elapsed < 30  # three attempts cut at the 1 s connect timeout, not a hang


async def test_a_refused_connection_says_so(gateway: GatewayFactory) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: connections are refused
        async with gateway(VLM_BASE_URL=f"http://127.0.0.1:{port}/v1") as client:
            response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 503
    assert "ConnectError" in response.json()["error"]["message"]
