"""GET /health keeps the original keys; readiness follows the VLM only. GET /livez always answers."""

from __future__ import annotations

import asyncio

from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import GatewayFactory
from tests.support.processes import free_port

ORIGINAL_KEYS = {"ok", "backend", "device", "gpt_oss_enabled", "gpt_oss_model", "gpt_oss_reasoning_level"}


async def test_health_has_the_original_keys_and_values(gateway: GatewayFactory) -> None:
    async with gateway(USE_GPT_OSS=True, GPT_OSS_REASONING_LEVEL="high") as client:
        response = await client.get("/health")
    body = response.json()
    assert response.status_code == 200
    assert set(body) >= ORIGINAL_KEYS
    assert body["ok"] is True
    assert body["backend"] == "qwen2.5-vl-7b-instruct"
    assert body["device"] == "cuda"
    assert body["gpt_oss_enabled"] is True
    assert body["gpt_oss_model"] == "openai/gpt-oss-120b"
    assert body["gpt_oss_reasoning_level"] == "high"
    assert body["vlm_load_8bit"] is False
    assert body["backends"]["vlm"]["ok"] is True
    assert body["backends"]["enhancer"]["ok"] is True


async def test_health_is_503_when_the_vlm_is_down(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    fake_vlm.healthy = False
    async with gateway() as client:
        down = await client.get("/health")
        live = await client.get("/livez")
        fake_vlm.healthy = True
        await asyncio.sleep(1.1)  # /health answers from a probe at most a second old
        up = await client.get("/health")
    assert down.status_code == 503
    assert down.json()["ok"] is False
    assert live.status_code == 200
    assert up.status_code == 200


async def test_enhancer_down_does_not_flip_ok(gateway: GatewayFactory) -> None:
    async with gateway(USE_GPT_OSS=True, GPT_OSS_BASE_URL=f"http://127.0.0.1:{free_port()}/v1") as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["ok"] is True
    assert response.json()["backends"]["enhancer"]["ok"] is False


async def test_metrics_count_requests_and_stages(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": "s3://test-bucket/in-budget.jpg"})
        text = (await client.get("/metrics")).text
    assert 'florence_requests_total{route="/caption",status="200"} 1.0' in text
    assert 'florence_stage_seconds_count{stage="vlm"} 1.0' in text
    assert "florence_vlm_image_bytes_total" in text


async def test_health_answers_while_every_caption_connection_is_busy(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(content=structured(), delay_s=3))
    async with gateway(MAX_CONCURRENCY=1) as client:
        busy = asyncio.create_task(client.post("/caption", json={"s3_uri": "s3://test-bucket/in-budget.jpg"}))
        while not fake_vlm.requests:  # the only pooled VLM connection is now taken
            await asyncio.sleep(0.02)
        health = await client.get("/health")
        assert (await busy).status_code == 200
    assert health.status_code == 200
    assert health.json()["ok"] is True


async def test_a_burst_of_probes_costs_one_backend_call(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.health_delay_s = 0.3  # a slow answer, so the burst overlaps it
    async with gateway() as client:
        answers = await asyncio.gather(*(client.get("/health") for _ in range(40)))
        calls_after_burst = fake_vlm.health_calls
        await asyncio.sleep(1.1)
        await client.get("/health")
    assert {a.status_code for a in answers} == {200}
    assert calls_after_burst == 1
    assert fake_vlm.health_calls == 2  # a second later the answer is probed afresh
