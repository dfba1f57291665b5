"""An OpenAI SDK client talking straight to the real vLLM servers (tiny models), as the README shows users.

These tests pin down what the gateway relies on in vLLM 0.32: image data URLs and Qwen's visual token
accounting, ``reasoning_effort`` and where gpt-oss's reasoning goes, and structured outputs. The models'
weights are random: their text is gibberish, so assertions are about shapes, fields and token counts.
Sampling runs with ``temperature=1`` and fixed seeds where a test needs the model to finish a message;
at temperature 0 the tiny models tend to repeat one token until ``max_tokens``.
"""

from __future__ import annotations

import base64
import json
import math
import re
from collections.abc import Iterator
from typing import Any, Literal

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

from tests.support import images
from tests.support.vllm_stack import GPT_OSS_MODEL_ID, VLM_MODEL_ID, CpuStack

PROMPT = "Describe this image in one sentence."
# Qwen2.5-VL's image geometry: 14 px patches merged 2x2, so one visual token per 28x28 pixels.
QWEN_FACTOR = 28
QWEN_MIN_PIXELS = 3136
QWEN_MAX_PIXELS = 12845056  # the real processor's default, kept by the tiny model
# vLLM's refusal of a prompt longer than --max-model-len 4096; it states the prompt's token count.
TOO_LONG = re.compile(r"Input length \((\d+)\) exceeds model's maximum context length \((\d+)\)")
HARMONY_MARKUP = ("<|channel|>", "<|message|>", "<|start|>", "<|end|>")
SEEDS = range(12)

CAPTION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["caption", "tags"],
    "properties": {
        "caption": {"type": "string", "maxLength": 40},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "minItems": 1, "maxItems": 3},
    },
}
CAPTION_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {"name": "caption", "strict": True, "schema": CAPTION_SCHEMA},
}
DOG_JSON: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Caption and tag a photo of a dog as JSON."}
]
REWRITE: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Rewrite: a dog on a beach."}]


@pytest.fixture(scope="module")
def vlm(cpu_stack: CpuStack) -> Iterator[OpenAI]:
    with OpenAI(base_url=cpu_stack.vlm_url, api_key="unused", max_retries=0, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def gpt_oss(cpu_stack: CpuStack) -> Iterator[OpenAI]:
    with OpenAI(base_url=cpu_stack.gpt_oss_url, api_key="unused", max_retries=0, timeout=120) as client:
        yield client


def data_url(jpeg: bytes) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def image_message(jpeg: bytes | None) -> list[ChatCompletionMessageParam]:
    content: list[ChatCompletionContentPartParam] = [{"type": "text", "text": PROMPT}]
    if jpeg is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": data_url(jpeg)}})
    return [{"role": "user", "content": content}]


def qwen_visual_tokens(width: int, height: int) -> int:
    """Visual tokens Qwen2.5-VL's processor gives an image (its smart_resize, then one per 28x28)."""
    f = QWEN_FACTOR
    h, w = max(f, round(height / f) * f), max(f, round(width / f) * f)
    if h * w > QWEN_MAX_PIXELS:
        beta = math.sqrt(height * width / QWEN_MAX_PIXELS)
        h, w = max(f, math.floor(height / beta / f) * f), max(f, math.floor(width / beta / f) * f)
    elif h * w < QWEN_MIN_PIXELS:
        beta = math.sqrt(QWEN_MIN_PIXELS / (height * width))
        h, w = math.ceil(height * beta / f) * f, math.ceil(width * beta / f) * f
    return (h // f) * (w // f)


def prompt_tokens(client: OpenAI, jpeg: bytes | None) -> int:
    reply = client.chat.completions.create(
        model=VLM_MODEL_ID, messages=image_message(jpeg), max_tokens=1, temperature=0
    )
    assert reply.usage is not None
    return reply.usage.prompt_tokens


def test_both_servers_serve_the_production_model_ids(vlm: OpenAI, gpt_oss: OpenAI) -> None:
    assert [m.id for m in vlm.models.list()] == [VLM_MODEL_ID]
    assert [m.id for m in gpt_oss.models.list()] == [GPT_OSS_MODEL_ID]


def test_health_answers_200(cpu_stack: CpuStack) -> None:
    for server in cpu_stack.servers:
        assert httpx.get(server.health_url, timeout=5).status_code == 200


def test_vlm_answers_a_chat_completion_with_a_jpeg_data_url(vlm: OpenAI) -> None:
    reply = vlm.chat.completions.create(
        model=VLM_MODEL_ID, messages=image_message(images.photo(1148, 868)), max_tokens=24, temperature=0
    )
    choice = reply.choices[0]
    assert reply.model == VLM_MODEL_ID
    assert choice.finish_reason in {"stop", "length"}
    # Random weights: some text (often control characters), never more than asked for.
    assert isinstance(choice.message.content, str)
    assert reply.usage is not None
    assert 1 <= reply.usage.completion_tokens <= 24


def test_visual_tokens_in_budget_photo_vs_unresized_24mp_photo(vlm: OpenAI) -> None:
    """The README's performance pair: ~1 MP (what the gateway sends) against a 24 MP original."""
    text_only = prompt_tokens(vlm, None)
    # An image adds <|vision_start|>, its <|image_pad|> tokens and <|vision_end|>.
    small = prompt_tokens(vlm, images.photo(1148, 868)) - text_only - 2
    assert small == qwen_visual_tokens(1148, 868) == 1271  # 41 x 31 tiles of 28 px, no resize
    assert small + text_only + 2 <= 1350

    with pytest.raises(openai.BadRequestError) as refused:
        vlm.chat.completions.create(
            model=VLM_MODEL_ID, messages=image_message(images.photo(6000, 4000)), max_tokens=1
        )
    match = TOO_LONG.search(str(refused.value))
    assert match, f"vLLM no longer states the prompt length when refusing it: {refused.value}"
    assert int(match.group(2)) == 4096
    large = int(match.group(1)) - text_only - 2
    # Capped only by the processor's max_pixels (12845056 = 16384 tokens): 104 x 156 tiles.
    assert large == qwen_visual_tokens(6000, 4000) == 16224
    assert large / small >= 12


def test_structured_outputs_response_format_json_schema_is_enforced(vlm: OpenAI) -> None:
    """``response_format`` json_schema is how vLLM 0.32 takes a schema; the answer has exactly its keys.

    The servers run with ``disable_any_whitespace`` (as in production); that is a server flag only: the
    per-request ``structured_outputs.disable_any_whitespace`` field is accepted but ignored by 0.32.
    """
    finished = []
    for seed in SEEDS:
        reply = vlm.chat.completions.create(
            model=VLM_MODEL_ID,
            messages=DOG_JSON,
            response_format=CAPTION_FORMAT,
            max_tokens=200,
            temperature=1.0,
            seed=seed,
        )
        if reply.choices[0].finish_reason == "stop":
            finished.append(reply.choices[0].message.content)
    assert finished, "no structured answer finished within max_tokens for any seed"
    for content in finished:
        assert content is not None
        # Strings may hold raw control characters (random weights): valid for the grammar, not strict JSON.
        value = json.loads(content, strict=False)
        assert set(value) == {"caption", "tags"}
        assert isinstance(value["caption"], str) and len(value["caption"]) <= 40
        assert 1 <= len(value["tags"]) <= 3
        assert all(isinstance(tag, str) and len(tag) <= 10 for tag in value["tags"])


def test_guided_json_is_silently_ignored(vlm: OpenAI) -> None:
    """vLLM 0.32 dropped ``guided_json``: accepted without error, and nothing is constrained."""
    for seed in range(3):
        reply = vlm.chat.completions.create(
            model=VLM_MODEL_ID,
            messages=DOG_JSON,
            extra_body={"guided_json": CAPTION_SCHEMA},
            max_tokens=24,
            temperature=1.0,
            seed=seed,
        )
        content = reply.choices[0].message.content or ""
        assert not content.lstrip().startswith('{"caption"')


@pytest.mark.parametrize("effort", ["low", "medium", "high"])
def test_gpt_oss_accepts_reasoning_effort(gpt_oss: OpenAI, effort: Literal["low", "medium", "high"]) -> None:
    reply = gpt_oss.chat.completions.create(
        model=GPT_OSS_MODEL_ID,
        messages=REWRITE,
        reasoning_effort=effort,
        max_tokens=32,
        temperature=0,
    )
    choice = reply.choices[0]
    assert reply.model == GPT_OSS_MODEL_ID
    assert choice.finish_reason in {"stop", "length"}
    if choice.finish_reason == "stop":
        assert not any(mark in (choice.message.content or "") for mark in HARMONY_MARKUP)


def test_gpt_oss_refuses_an_unknown_reasoning_effort(cpu_stack: CpuStack) -> None:
    reply = httpx.post(
        f"{cpu_stack.gpt_oss_url}/chat/completions",
        json={
            "model": GPT_OSS_MODEL_ID,
            "messages": [{"role": "user", "content": "hi"}],
            "reasoning_effort": "bogus",
            "max_tokens": 4,
        },
        timeout=60,
    )
    assert reply.status_code == 400
    assert "reasoning_effort" in reply.text


def test_gpt_oss_reasoning_lands_in_message_reasoning_not_content(cpu_stack: CpuStack) -> None:
    """The reasoning parser puts the analysis channel in ``message.reasoning`` (not ``reasoning_content``).

    When generation stops mid-message (``finish_reason: "length"``), vLLM 0.32 cannot finish parsing the
    harmony output and returns the raw text, markup and reasoning included, as ``content``: only content
    that ends with ``finish_reason: "stop"`` is an answer.
    """
    messages = []
    with httpx.Client(timeout=120) as client:
        for seed in SEEDS:
            reply = client.post(
                f"{cpu_stack.gpt_oss_url}/chat/completions",
                json={
                    "model": GPT_OSS_MODEL_ID,
                    "messages": REWRITE,
                    "reasoning_effort": "low",
                    # Constraining the final answer makes the tiny model emit well-formed harmony channels.
                    "response_format": CAPTION_FORMAT,
                    "max_tokens": 48,
                    "temperature": 1.0,
                    "seed": seed,
                },
            )
            assert reply.status_code == 200, reply.text
            choice = reply.json()["choices"][0]
            messages.append((choice["finish_reason"], choice["message"]))
    assert all("reasoning_content" not in message for _, message in messages)
    reasoned = [message for _, message in messages if message.get("reasoning")]
    assert reasoned, f"no seed produced an analysis channel: {messages}"
    for message in reasoned:
        assert not message["content"] or message["reasoning"] not in message["content"]
    for finish_reason, message in messages:
        if any(mark in (message["content"] or "") for mark in HARMONY_MARKUP):
            assert finish_reason == "length"
