"""``--engine ray``: the same job on Ray Data (placeholder until the Ray engine lands)."""

from __future__ import annotations

from gateway.batch.runner import BatchOptions
from gateway.settings import Settings


def run_ray_batch(options: BatchOptions, settings: Settings) -> int:
    raise ImportError("--engine ray is not available yet in this build; use --engine local")
