"""Image geometry for Qwen2.5-VL, with no pixels in it: the pixel budget, the 28-px grid, the aspect limit."""

from __future__ import annotations

import math
from dataclasses import dataclass

PATCH = 28  # Qwen2.5-VL: one visual token per 28x28 pixels (14-px patches, 2x2 merge)
MAX_ASPECT_RATIO = 200  # Qwen2.5-VL's processor refuses images longer than 200:1
DEFAULT_MAX_DECODE_BYTES = 256 << 20


@dataclass(frozen=True)
class PixelBudget:
    max_pixels: int
    min_pixels: int
    max_source_pixels: int
    max_decode_bytes: int = DEFAULT_MAX_DECODE_BYTES


def fit_to_grid(width: int, height: int, budget: PixelBudget, factor: int = PATCH) -> tuple[int, int]:
    """Qwen2.5-VL's ``smart_resize``: sides on the 28-px grid, area within [min, max], aspect kept."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > budget.max_pixels:
        beta = math.sqrt((height * width) / budget.max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < budget.min_pixels:
        beta = math.sqrt(budget.min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return w, h


def fit_for_vlm(width: int, height: int, budget: PixelBudget) -> tuple[tuple[int, int], tuple[int, int]]:
    """(canvas, content): the size sent to the VLM and the size of the image within it. They differ only
    when the image on the grid would be longer than ``MAX_ASPECT_RATIO``:1: then its short side is padded
    (the canvas is at most 200:1 and within the budget) and the whole image is still in it, undistorted."""
    target = fit_to_grid(width, height, budget)
    if ratio(*target) <= MAX_ASPECT_RATIO:
        return target, target
    wide = width >= height
    long_side, short_side = (width, height) if wide else (height, width)
    canvas_long, canvas_short, content_short = _padded(long_side, short_side, max(target), budget)
    if wide:
        return (canvas_long, canvas_short), (canvas_long, content_short)
    return (canvas_short, canvas_long), (content_short, canvas_long)


def _padded(long_side: int, short_side: int, longest: int, budget: PixelBudget) -> tuple[int, int, int]:
    """The canvas (long, short) with the longest side that holds the image scaled to it: each short side
    on the grid allows a long side of at most 200 times it, and of at most the budget divided by it."""
    best = (longest, PATCH, 1)
    best_long = 0
    short = PATCH
    while True:
        long = min(short * MAX_ASPECT_RATIO, budget.max_pixels // short // PATCH * PATCH, longest)
        if long < short:
            return best
        content = max(1, round(short_side * long / long_side))
        if content <= short and long > best_long:
            best, best_long = (long, short, content), long
        short += PATCH


def ratio(width: int, height: int) -> float:
    return max(width, height) / max(1, min(width, height))
