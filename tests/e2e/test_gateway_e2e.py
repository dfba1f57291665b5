"""The gateway end to end: real S3 (SeaweedFS), real vLLM servers (tiny random models on the CPU).

The models' words are gibberish; what is proven is everything else: the original README's requests and
responses, the image path through vLLM's Qwen processor, structured outputs, reasoning_effort, readiness.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import httpx
import pytest

from gateway.backends.openai_chat import ChatClient
from gateway.backends.vlm import CaptionSpec, VlmBackend
from gateway.evaluation import Label, evaluate
from gateway.imaging import PixelBudget, prepare_image
from gateway.pipeline import CaptionRequest
from gateway.settings import Settings
from gateway.styles import load_styles
from gateway.wiring import open_pipeline
from tests.support import images
from tests.support.gateway import BUCKET, GatewayFactory
from tests.support.s3_server import S3Server
from tests.support.vllm_stack import VLM_MODEL_ID, CpuStack

URI = f"s3://{BUCKET}/in-budget.jpg"
PHOTO_24MP = f"s3://{BUCKET}/photo-24mp.jpg"
HARMONY_MARKUP = ("<|channel|>", "<|message|>", "<|start|>", "<|end|>", "analysis")
HITS = "vllm:prefix_cache_hits_total"
CPU_BLOCK_TOKENS = 128  # vLLM's KV block size on the CPU backend (GPUs: 16); only whole blocks are cached


def on_stack(cpu_stack: CpuStack, **extra: Any) -> dict[str, Any]:
    # A smaller enhancer budget than production's 2048: the tiny gpt-oss rarely finishes anyway, and each
    # token costs CPU time in CI. The fallback path under test is the same.
    return {**cpu_stack.gateway_env(), "GPT_OSS_MAX_TOKENS": 768, **extra}


def assert_caption_contract(body: dict[str, Any], uri: str) -> None:
    assert isinstance(body["caption"], str)
    assert body["caption"].strip()
    assert body["s3_uri"] == uri
    assert isinstance(body["enhanced"], bool)
    assert body["models"]["vlm"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert body["usage"]["vlm"]["prompt_tokens"] > 0


def assert_enhancement_outcome(body: dict[str, Any]) -> None:
    """The tiny gpt-oss may never finish reasoning: a fallback is correct; leaked reasoning is not."""
    if body["enhanced"]:
        assert body["original_caption"]
        assert not any(mark in body["caption"] for mark in HARMONY_MARKUP)
    else:
        assert body["enhancement_error"]
        assert "rejected" not in body["enhancement_error"]  # vLLM accepted the request's parameters


@pytest.mark.parametrize(
    ("request_body", "enhance"),
    [
        ({"s3_uri": URI, "detailed": True}, False),
        ({"s3_uri": URI, "detailed": True, "use_gpt_oss": True}, True),
        ({"s3_uri": URI, "use_gpt_oss": True}, True),
        ({"s3_uri": URI, "use_gpt_oss": False}, False),
    ],
    ids=["basic", "enhanced", "force-enhance", "skip-enhance"],
)
async def test_the_original_readmes_four_curl_examples(
    gateway: GatewayFactory, cpu_stack: CpuStack, request_body: dict[str, Any], enhance: bool
) -> None:
    async with gateway(**on_stack(cpu_stack)) as client:
        response = await client.post("/caption", json=request_body)
    assert response.status_code == 200, response.text
    body = response.json()
    assert_caption_contract(body, URI)
    if enhance:
        assert body["models"]["enhancer"] == "openai/gpt-oss-120b"
        assert_enhancement_outcome(body)
    else:
        assert body["enhanced"] is False
        assert "enhancement_error" not in body


@pytest.mark.parametrize("level", ["low", "medium", "high"])
async def test_each_reasoning_level_is_accepted(
    gateway: GatewayFactory, cpu_stack: CpuStack, level: str
) -> None:
    async with gateway(**on_stack(cpu_stack, GPT_OSS_MAX_TOKENS=256)) as client:
        response = await client.post(
            "/caption", json={"s3_uri": URI, "use_gpt_oss": True, "reasoning_level": level}
        )
    assert response.status_code == 200, response.text
    assert_enhancement_outcome(response.json())


async def test_bogus_reasoning_level_is_refused_by_the_gateway(
    gateway: GatewayFactory, cpu_stack: CpuStack
) -> None:
    async with gateway(**on_stack(cpu_stack)) as client:
        response = await client.post(
            "/caption", json={"s3_uri": URI, "use_gpt_oss": True, "reasoning_level": "maximum"}
        )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_request"


async def test_24mp_photo_costs_the_budget_not_16000_visual_tokens(
    gateway: GatewayFactory, cpu_stack: CpuStack
) -> None:
    async with gateway(**on_stack(cpu_stack)) as client:
        photo = (await client.post("/caption", json={"s3_uri": PHOTO_24MP})).json()
        # The same prompt with a tiny image: the difference is the photo's visual tokens, counted by vLLM.
        tiny = (await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/image.bmp"})).json()
    visual = photo["usage"]["vlm"]["prompt_tokens"] - tiny["usage"]["vlm"]["prompt_tokens"]
    visual += 4  # the BMP (64x48) is scaled up to VLM_MIN_PIXELS: 4 visual tokens
    assert 1200 <= visual <= 1300  # 1,280 for 1280*28*28; unresized, vLLM counts 16,224 (test_vllm_direct)


async def test_an_image_beyond_200_to_1_is_captioned_not_refused(
    gateway: GatewayFactory, cpu_stack: CpuStack
) -> None:
    """Qwen2.5-VL's processor refuses aspect ratios over 200:1 (vLLM answers 400); the gateway pads a
    2000:1 strip to the limit, so the real processor takes it."""
    async with gateway(**on_stack(cpu_stack)) as client:
        response = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/strip-2000-to-1.jpg"})
    assert response.status_code == 200, response.text
    assert_caption_contract(response.json(), f"s3://{BUCKET}/strip-2000-to-1.jpg")


async def test_every_style_answers_schema_valid_json(s3_server: S3Server, cpu_stack: CpuStack) -> None:
    settings = Settings(S3_ENDPOINT_URL=s3_server.endpoint_url, **cpu_stack.gateway_env())  # type: ignore[arg-type]
    labels = [Label(URI, [], []), Label(f"s3://{BUCKET}/rotated.jpg", [], [])]
    async with open_pipeline(settings) as pipeline:
        for style in load_styles():
            report = await evaluate(pipeline, labels, CaptionRequest(s3_uri="", style=style), concurrency=2)
            summary = report.summary()
            assert summary["errors"] == {}, (style, summary)
            assert summary["schema_compliance"] == 1.0, (style, summary)  # extra keys never appear


async def test_language_reaches_the_prompt(gateway: GatewayFactory, cpu_stack: CpuStack) -> None:
    async with gateway(**on_stack(cpu_stack)) as client:
        english = (await client.post("/caption", json={"s3_uri": URI})).json()
        german = (await client.post("/caption", json={"s3_uri": URI, "language": "de"})).json()
    # vLLM counted the extra instruction ("Write the caption and keywords in German.").
    assert german["usage"]["vlm"]["prompt_tokens"] > english["usage"]["vlm"]["prompt_tokens"]


async def test_health_follows_the_vlm_server(gateway: GatewayFactory, cpu_stack: CpuStack) -> None:
    async with gateway(**on_stack(cpu_stack, USE_GPT_OSS=True)) as client:
        up = await client.get("/health")
        assert up.status_code == 200
        assert up.json()["backends"]["enhancer"]["ok"] is True
        cpu_stack.vlm.stop()
        try:
            await asyncio.sleep(1.1)  # /health answers from a probe at most a second old
            down = await client.get("/health")
            caption = await client.post("/caption", json={"s3_uri": URI})
        finally:
            cpu_stack.vlm.restart()
        back = await client.get("/health")
    assert down.status_code == 503
    assert down.json()["ok"] is False
    assert caption.status_code == 503
    assert caption.json()["error"]["code"] == "vlm_unavailable"
    assert back.status_code == 200
    assert back.json()["ok"] is True


async def test_a_caption_is_kept_served_again_without_the_model_and_found_by_its_words(
    gateway: GatewayFactory, cpu_stack: CpuStack
) -> None:
    """The tiny model's words are gibberish, but they are words: the search finds the caption by them."""
    async with gateway(**cpu_stack.gateway_env()) as client:
        first = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/in-budget.jpg"})
        again = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/in-budget.jpg"})
        words = [w for w in re.findall(r"\w+", first.json()["caption"]) if len(w) > 2][:2]
        found = await client.get("/v1/captions", params={"q": " ".join(words)})
    assert first.status_code == 200, first.text
    assert (first.json()["cached"], again.json()["cached"]) == (False, True)
    assert again.json()["caption"] == first.json()["caption"]
    assert again.json()["usage"] == first.json()["usage"]  # the stored answer, not a second model call
    assert [item["s3_uri"] for item in found.json()["items"]] == [f"s3://{BUCKET}/in-budget.jpg"]


async def prefix_cache_hits(vllm: httpx.AsyncClient, root: str) -> float:
    text = (await vllm.get(f"{root}/metrics")).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(HITS))


async def tokens_before_image(vllm: httpx.AsyncClient, root: str, style: str) -> int:
    """Tokens before the image in the gateway's request for ``style`` (the same whatever the image)."""
    chat = ChatClient("vlm", f"{root}/v1", vllm)
    vlm = VlmBackend(chat, model=VLM_MODEL_ID, temperature=0, max_tokens=64, structured=True)
    image = prepare_image(images.photo(448, 336), PixelBudget(1003520, 3136, 10**8))
    payload = vlm.build_request(image, CaptionSpec(load_styles()[style]))
    request = {"model": VLM_MODEL_ID, "messages": payload["messages"], "return_token_strs": True}
    tokens = (await vllm.post(f"{root}/tokenize", json=request)).json()["token_strs"]
    return int(tokens.index("<|vision_start|>"))


async def test_a_styles_text_comes_from_vllms_prefix_cache(
    gateway: GatewayFactory, cpu_stack: CpuStack
) -> None:
    """The style's text precedes the image, so a second caption of the style, with another image, finds
    every whole KV block before the image in vLLM's prefix cache (the CPU backend's blocks: 128 tokens)."""
    root = cpu_stack.vlm.root_url
    async with gateway(**on_stack(cpu_stack)) as client, httpx.AsyncClient(timeout=60) as vllm:
        first = await client.post("/caption", json={"s3_uri": URI, "style": "stock"})
        before = await prefix_cache_hits(vllm, root)
        second = await client.post(
            "/caption", json={"s3_uri": f"s3://{BUCKET}/rotated.jpg", "style": "stock"}
        )
        hits = await prefix_cache_hits(vllm, root) - before
        before_image = await tokens_before_image(vllm, root, "stock")
    assert first.status_code == 200 and second.status_code == 200, second.text
    assert before_image >= CPU_BLOCK_TOKENS  # the style's text fills whole blocks
    assert hits >= before_image // CPU_BLOCK_TOKENS * CPU_BLOCK_TOKENS
