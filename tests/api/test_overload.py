"""Overload and abandoned work, through the app: 429s instead of a queue without end, and a client that
leaves takes its work with it (a real uvicorn server, since only a real connection can be dropped)."""

from __future__ import annotations

import asyncio
import base64
import contextlib

import httpx

from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.gateway import BUCKET, GatewayFactory, ServedGatewayFactory
from tests.support.images import photo

URI = f"s3://{BUCKET}/in-budget.jpg"
# The queue's own rules, counted exactly: no refusals because a busy test machine made the loop run late.
NO_LAG_CHECK = {"MAX_LOOP_LAG_MS": 0}


def request(n: int) -> dict[str, str]:
    """Distinct requests (identical concurrent ones share one computation, gateway/caching.py)."""
    return {"s3_uri": URI, "prompt": f"request {n}"}


async def test_beyond_inflight_and_queue_the_answer_is_429_at_once(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(delay_s=1.0, content=fake_vlm.default.content))
    async with gateway(MAX_INFLIGHT=1, MAX_QUEUED=1, **NO_LAG_CHECK) as client:
        calls = [asyncio.create_task(client.post("/caption", json=request(n))) for n in range(3)]
        done, _ = await asyncio.wait(calls, return_when=asyncio.FIRST_COMPLETED)
        first = done.pop().result()
        health = await client.get("/health")  # probes are never shed
        rest = await asyncio.gather(*calls)
    assert first.status_code == 429  # answered while the admitted requests were still at the VLM
    assert first.json()["error"]["code"] == "overloaded"
    assert int(first.headers["retry-after"]) >= 1
    assert health.status_code == 200
    assert sorted(r.status_code for r in rest) == [200, 200, 429]
    assert len(fake_vlm.requests) == 2


async def test_a_request_queued_past_the_queue_timeout_is_429(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(delay_s=1.5, content=fake_vlm.default.content))
    async with gateway(MAX_INFLIGHT=1, MAX_QUEUED=4, QUEUE_TIMEOUT_S=0.2, **NO_LAG_CHECK) as client:
        admitted = asyncio.create_task(client.post("/caption", json=request(0)))
        await asyncio.sleep(0.1)
        queued = await client.post("/caption", json=request(1))
        assert not admitted.done()
        assert (await admitted).status_code == 200
    assert queued.status_code == 429
    assert "QUEUE_TIMEOUT_S" in queued.json()["error"]["message"]
    assert len(fake_vlm.requests) == 1


async def wait_for(condition: object, timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.05)


async def test_a_client_that_leaves_mid_call_closes_the_vlm_request(
    served_gateway: ServedGatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(delay_s=8.0, content=fake_vlm.default.content))
    async with served_gateway() as url, httpx.AsyncClient(base_url=url) as client:
        with contextlib.suppress(httpx.ReadTimeout):  # the client gives up and closes its connection
            await client.post("/caption", json={"s3_uri": URI}, timeout=httpx.Timeout(10, read=0.5))
        # The gateway cancels the request's work, and with it the HTTP request to the VLM.
        await wait_for(lambda: fake_vlm.closed_early == [0])
    assert len(fake_vlm.requests) == 1


async def test_a_client_that_leaves_while_queued_never_reaches_the_vlm(
    served_gateway: ServedGatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(delay_s=1.5, content=fake_vlm.default.content))
    served = served_gateway(MAX_INFLIGHT=1, MAX_QUEUED=8, **NO_LAG_CHECK)
    async with served as url, httpx.AsyncClient(base_url=url) as client:
        patient = asyncio.create_task(client.post("/caption", json=request(0), timeout=30))
        await wait_for(lambda: len(fake_vlm.requests) == 1)
        leavers = [
            client.post("/caption", json=request(n), timeout=httpx.Timeout(10, read=0.3)) for n in range(1, 6)
        ]
        results = await asyncio.gather(*leavers, return_exceptions=True)
        assert all(isinstance(r, httpx.ReadTimeout) for r in results)
        assert (await patient).status_code == 200
        await asyncio.sleep(1.0)  # had they stayed queued, they would reach the VLM now
    assert len(fake_vlm.requests) == 1
    assert fake_vlm.closed_early == []


async def test_time_spent_queued_is_not_charged_to_the_clients_body(
    served_gateway: ServedGatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    """A 5.7 MB base64 body sent at once, queued 1.5 s behind another caption, with a 0.5 s body deadline:
    the wait is the server's, so the body is read and captioned, not a 408."""
    fake_vlm.reset(Reply(delay_s=1.5, content=fake_vlm.default.content))
    image = base64.b64encode(photo(2400, 1800, quality=95)).decode()
    served = served_gateway(MAX_INFLIGHT=1, MAX_QUEUED=4, QUEUE_TIMEOUT_S=10, CLIENT_BODY_TIMEOUT_S=0.5)
    async with served as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        first = asyncio.create_task(client.post("/caption", json=request(0)))
        await wait_for(lambda: len(fake_vlm.requests) == 1)
        second = await client.post("/caption", json={"image_base64": image})
        assert (await first).status_code == 200
    assert second.status_code == 200, second.text


async def test_an_empty_body_queued_behind_another_is_answered_not_held(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(delay_s=1.0, content=fake_vlm.default.content))
    async with gateway(MAX_INFLIGHT=1, MAX_QUEUED=4, QUEUE_TIMEOUT_S=10) as client:
        first = asyncio.create_task(client.post("/caption", json=request(0)))
        await wait_for(lambda: len(fake_vlm.requests) == 1)
        async with asyncio.timeout(10):  # it used to wait for a body the disconnect watch had taken
            empty = await client.post("/caption", headers={"content-type": "application/json"})
        assert (await first).status_code == 200
    assert empty.status_code == 422
