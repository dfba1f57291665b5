"""POST /caption: the original service's contract, against real S3 and the fake backends."""

from __future__ import annotations

from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.gateway import BUCKET, GatewayFactory, json_enhancement, sent_texts

URI = f"s3://{BUCKET}/in-budget.jpg"


async def test_old_client_sends_only_s3_uri(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 200
    body = response.json()
    assert body["caption"] == "A red bicycle leans against a brick wall."
    assert body["enhanced"] is False
    assert body["s3_uri"] == URI
    assert "original_caption" not in body
    assert body["models"] == {"vlm": "Qwen/Qwen2.5-VL-7B-Instruct", "enhancer": None}
    assert body["usage"]["vlm"]["prompt_tokens"] == 1300
    sent = fake_vlm.requests[0]
    assert sent["model"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert sent["temperature"] == 0.0
    assert response.headers["x-request-id"]


async def test_detailed_and_short_prompts_differ(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": URI, "detailed": True})
        await client.post("/caption", json={"s3_uri": URI, "detailed": False})
    detailed, short = ("\n".join(sent_texts(fake_vlm, i)) for i in range(2))
    assert "rich, specific detail" in detailed
    assert "one factual sentence" in short
    assert "This image shows" not in fake_vlm.requests[0]["messages"][0]["content"].replace("'This image", "")


async def test_enhanced_caption_keeps_original(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI, "detailed": True, "use_gpt_oss": True})
    body = response.json()
    assert response.status_code == 200
    assert body["enhanced"] is True
    assert body["caption"] == "A red bicycle leans against a weathered brick wall."
    assert body["original_caption"] == "A red bicycle leans against a brick wall."
    assert body["models"]["enhancer"] == "openai/gpt-oss-120b"
    sent = fake_enhancer.requests[0]
    assert sent["model"] == "openai/gpt-oss-120b"
    assert sent["reasoning_effort"] == "medium"
    assert "A red bicycle leans against a brick wall." in sent["messages"][-1]["content"]


async def test_request_reasoning_level_overrides_setting(
    gateway: GatewayFactory, fake_enhancer: FakeOpenAI
) -> None:
    async with gateway(GPT_OSS_REASONING_LEVEL="low") as client:
        await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})
        await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True, "reasoning_level": "high"})
    assert [r["reasoning_effort"] for r in fake_enhancer.requests] == ["low", "high"]


async def test_bogus_reasoning_level_is_422_before_any_backend_call(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> None:
    async with gateway() as client:
        response = await client.post(
            "/caption", json={"s3_uri": URI, "use_gpt_oss": True, "reasoning_level": "extreme"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"
    assert "reasoning_level" in response.json()["error"]["message"]
    assert fake_vlm.requests == [] and fake_enhancer.requests == []


async def test_global_use_gpt_oss_and_request_override(
    gateway: GatewayFactory, fake_enhancer: FakeOpenAI
) -> None:
    async with gateway(USE_GPT_OSS=True) as client:
        on = await client.post("/caption", json={"s3_uri": URI})
        off = await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": False})
    assert on.json()["enhanced"] is True
    assert off.json()["enhanced"] is False and "enhancement_error" not in off.json()
    assert len(fake_enhancer.requests) == 1


async def test_enhancer_reasoning_never_leaks(gateway: GatewayFactory, fake_enhancer: FakeOpenAI) -> None:
    fake_enhancer.reset(
        Reply(content=json_enhancement("A red bicycle by a wall."), reasoning="SECRET-THOUGHTS")
    )
    async with gateway() as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})).json()
    assert body["enhanced"] is True
    assert "SECRET-THOUGHTS" not in str(body)


async def test_enhancer_out_of_tokens_while_reasoning_falls_back(
    gateway: GatewayFactory, fake_enhancer: FakeOpenAI
) -> None:
    fake_enhancer.reset(Reply(content=None, finish_reason="length", reasoning="thinking " * 50))
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})
    body = response.json()
    assert response.status_code == 200
    assert body["enhanced"] is False
    assert body["caption"] == "A red bicycle leans against a brick wall."
    assert "token limit" in body["enhancement_error"]
    assert "thinking" not in body["caption"]
    assert fake_enhancer.requests[0]["max_tokens"] >= 1024  # room to reason before answering


async def test_enhancer_down_falls_back(gateway: GatewayFactory, fake_enhancer: FakeOpenAI) -> None:
    fake_enhancer.reset(Reply(status=503))
    async with gateway() as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})).json()
    assert body["enhanced"] is False
    assert body["enhancement_error"].startswith("enhancer_unavailable")
    assert len(fake_enhancer.requests) == 3  # retried, then gave up without losing the caption


async def test_api_keys_guard_caption_not_health(gateway: GatewayFactory) -> None:
    async with gateway(API_KEYS="k-one, k-two") as client:
        missing = await client.post("/caption", json={"s3_uri": URI})
        wrong = await client.post("/caption", json={"s3_uri": URI}, headers={"Authorization": "Bearer nope"})
        right = await client.post("/caption", json={"s3_uri": URI}, headers={"Authorization": "Bearer k-two"})
        health = await client.get("/health")
        live = await client.get("/livez")
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert "k-one" not in wrong.text
    assert right.status_code == 200
    assert health.status_code == 200 and live.status_code == 200


async def test_request_id_is_echoed(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI}, headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"


async def test_raw_harmony_output_is_not_a_caption(
    gateway: GatewayFactory, fake_enhancer: FakeOpenAI
) -> None:
    leaked = "<|channel|>analysis<|message|>The user wants a caption<|end|>"
    fake_enhancer.reset(Reply(content=leaked, finish_reason="stop"))
    async with gateway(GROUNDING="off") as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})).json()
    assert body["enhanced"] is False
    assert "analysis" not in body["caption"]
    assert body["enhancement_error"].startswith("enhancer_bad_output")
