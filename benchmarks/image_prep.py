"""Image preparation, naive Pillow vs the gateway's ``prepare_image``, timed per image (bench_gateway's
first section) and the CPU of the gateway's image work on one small JPEG (taken out of CPU per request)."""

from __future__ import annotations

import io
import statistics
import time
from collections.abc import Callable
from typing import Any

from PIL import Image

from gateway.imaging import PATCH, PixelBudget, fit_to_grid, prepare_image

BUDGET = PixelBudget(1280 * PATCH * PATCH, 4 * PATCH * PATCH, 100_000_000)


def naive_prepare(data: bytes) -> bytes:
    """What a plain Pillow gateway does: decode everything, LANCZOS to the budget, re-encode."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    target = fit_to_grid(*rgb.size, BUDGET)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=92)
    return out.getvalue()


def ours_prepare(data: bytes) -> bytes:
    return prepare_image(data, BUDGET).jpeg


def png_of(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as image:
        image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def median_ms(func: Callable[[bytes], bytes], data: bytes, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func(data)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_image_prep(images: dict[str, bytes], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, data in images.items():
        ours_prepare(data), naive_prepare(data)  # warm caches and lazy imports
        naive_runs, ours_runs = [], []
        for _ in range(repeats):  # interleaved, so load from other jobs hits both alike
            naive_runs.append(median_ms(naive_prepare, data, 1))
            ours_runs.append(median_ms(ours_prepare, data, 1))
        prepared = prepare_image(data, BUDGET)
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
        naive_ms, ours_ms = statistics.median(naive_runs), statistics.median(ours_runs)
        results[name] = {
            "source": f"{size[0]}x{size[1]} {Image.open(io.BytesIO(data)).format}",
            "source_bytes": len(data),
            "output": f"{prepared.width}x{prepared.height}",
            "output_bytes": len(prepared.jpeg),
            "passed_through": prepared.passed_through,
            "byte_identical": prepared.jpeg == data,
            "naive_ms": round(naive_ms, 2),
            "ours_ms": round(ours_ms, 2),
            "ratio": round(ours_ms / naive_ms, 3),
            "repeats": repeats,
        }
    return results


def image_cpu_ms(data: bytes, repeats: int = 200) -> float:
    """CPU of the gateway's image work for one small in-budget JPEG, to take out of CPU per request."""
    start = time.thread_time()
    for _ in range(repeats):
        prepare_image(data, BUDGET)
    return (time.thread_time() - start) * 1000 / repeats
