"""Image preparation on its own: the memory a decode takes and gives back, and the aspect-ratio limit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.geometry import MAX_ASPECT_RATIO, PATCH, PixelBudget, fit_for_vlm, ratio

ROOT = Path(__file__).parents[1]
BUDGET = PixelBudget(1280 * PATCH * PATCH, 4 * PATCH * PATCH, 100_000_000)

# Four 12 KB bilevel PNGs of 100 MP at once, on four image threads (MAX_CONCURRENT_IMAGES), in a fresh
# process so its memory is this work's alone. Before issue 14: ~2 GB at the peak and ~700 MB kept after.
MEMORY_PROBE = textwrap.dedent(
    """
    import asyncio, json
    from pathlib import Path
    from gateway.geometry import PixelBudget
    from gateway.imaging import ImagePreparer
    from tests.support.images import bilevel_png

    def mb(key):
        line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(key))
        return int(line.split()[1]) // 1024

    data = bilevel_png()
    preparer = ImagePreparer(PixelBudget(1003520, 3136, 100_000_000), 4)
    before = mb("VmRSS")
    async def main():
        return await asyncio.gather(*(preparer.prepare(data) for _ in range(4)))
    sizes = [(p.width, p.height) for p in asyncio.run(main())]
    print(json.dumps({"before": before, "peak": mb("VmHWM"), "after": mb("VmRSS"), "sizes": sizes}))
    """
)


def test_small_files_that_decode_big_stay_bounded_and_give_memory_back() -> None:
    run = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", MEMORY_PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    measured = json.loads(run.stdout.strip().splitlines()[-1])
    assert measured["sizes"] == [[980, 980]] * 4
    assert measured["peak"] - measured["before"] < 1000, measured  # 100 MB of pixels per image, not 650
    assert measured["after"] - measured["before"] < 150, measured  # and it goes back to the system


@pytest.mark.parametrize(
    ("size", "sent_ratio_at_least"),
    [((20_000, 10), 100), ((10, 20_000), 100), ((30_000, 200), 100), ((5_650, 28), 100), ((300_000, 1), 100)],
)
def test_beyond_the_vlms_aspect_limit_the_canvas_is_padded(
    size: tuple[int, int], sent_ratio_at_least: float
) -> None:
    canvas, content = fit_for_vlm(*size, BUDGET)
    assert ratio(*canvas) <= MAX_ASPECT_RATIO
    assert canvas[0] % PATCH == 0 and canvas[1] % PATCH == 0
    assert canvas[0] * canvas[1] <= BUDGET.max_pixels
    assert content[0] <= canvas[0] and content[1] <= canvas[1]
    # the whole image, scaled alike on both axes (within a pixel of rounding)
    scale = max(content) / max(size)
    assert abs(min(content) - max(1, min(size) * scale)) <= 1
    assert ratio(*canvas) >= sent_ratio_at_least  # a long image stays long: no more padding than needed


@pytest.mark.parametrize("size", [(6000, 4000), (1148, 868), (100, 100), (5_590, 28)])
def test_within_the_limit_nothing_is_padded(size: tuple[int, int]) -> None:
    canvas, content = fit_for_vlm(*size, BUDGET)
    assert canvas == content
