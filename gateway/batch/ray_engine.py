"""``--engine ray``: the same job on Ray Data, for when one machine's GPUs are not enough.

Only the Ray plumbing lives here. The listing becomes datasets of ``--ray-window`` items; captioning is a
``map_batches`` stage on a pool of actors, each holding a ``Captioner`` (the batch core's, with its own
pipeline clients) on its own event loop, so one actor keeps a whole batch in flight. Actors hand back typed
outcomes (Ray pickles them); the driver records them through ``Job.record``, as the local engine does, so
DEST, ``--resume``, failure lines and exit codes are the same. Ray starts a local cluster unless
``RAY_ADDRESS`` names one (``ray.init`` reads it).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

from gateway.batch.job import (
    EXIT_CANNOT_START,
    EXIT_INTERRUPTED,
    BatchOptions,
    Captioner,
    Job,
    Outcome,
    on_interrupt,
    open_captioner,
    run_job,
)
from gateway.batch.source import Item
from gateway.errors import OutputFailed
from gateway.settings import Settings
from gateway.wiring import open_s3

ACTOR_CPUS = 0.5  # actors wait on the network (S3, the VLM) far more than they compute


class CaptionActor:
    """One pool member: its own event loop and clients, opened once and reused for every batch."""

    def __init__(self, settings: Settings, options: BatchOptions) -> None:
        self._loop = asyncio.new_event_loop()
        self._stack = AsyncExitStack()
        self._captioner: Captioner = self._loop.run_until_complete(self._open(settings, options))

    async def _open(self, settings: Settings, options: BatchOptions) -> Captioner:
        s3 = await self._stack.enter_async_context(open_s3(settings))
        return await self._stack.enter_async_context(open_captioner(settings, options, s3))

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Outcome]]:
        return {"outcome": self._loop.run_until_complete(self._all(list(batch["item"])))}

    async def _all(self, items: list[Item]) -> list[Outcome]:
        # Ray calls from a worker thread: gather needs the loop running, i.e. inside run_until_complete.
        return list(await asyncio.gather(*(self._captioner.caption_item(item) for item in items)))


def run_ray_batch(options: BatchOptions, settings: Settings) -> int:
    try:
        import ray  # type: ignore[import-untyped,import-not-found,unused-ignore]
    except ImportError:
        print(
            "florence-tagger batch: --engine ray needs Ray Data: pip install 'florence-tagger[ray]'",
            file=sys.stderr,
        )
        return EXIT_CANNOT_START
    try:
        return asyncio.run(run_job(options, settings, partial(_on_ray, ray)))
    except KeyboardInterrupt:  # Ctrl-C before our handler is installed (while listing the first window)
        return EXIT_INTERRUPTED


async def _on_ray(ray: Any, job: Job) -> None:
    windows = _windows(job)
    rows = await _next_window(job, windows)
    if rows is None:
        return
    try:
        # num_cpus only sizes a local cluster; Ray refuses it when RAY_ADDRESS names one. ray.init installs
        # its own SIGTERM handler, so ours are installed after it.
        ray.init(num_cpus=job.options.ray_num_cpus, ignore_reinit_error=True, log_to_driver=False)
    except ValueError as exc:
        job.fatal = f"cannot start Ray: {exc}"
        return
    try:
        with on_interrupt(partial(_interrupt, job)):
            while rows is not None and not job.summary.interrupted:
                await _caption_window(ray, job, rows)
                rows = None if job.summary.interrupted else await _next_window(job, windows)
    except OutputFailed as exc:
        job.fatal = str(exc)
    finally:
        ray.shutdown()


def _interrupt(job: Job) -> None:
    # Stops between batches; lines not yet recorded are captioned again by a resume.
    job.summary.interrupted = True


async def _caption_window(ray: Any, job: Job, rows: list[Item]) -> None:
    dataset = ray.data.from_items([{"item": item} for item in rows]).map_batches(
        CaptionActor,
        fn_constructor_kwargs={"settings": job.settings, "options": job.options},
        batch_size=job.options.concurrency,  # images in flight per actor
        concurrency=job.options.ray_actors,
        num_cpus=ACTOR_CPUS,
    )
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        await asyncio.sleep(0)  # Ray's iterator blocks: let a Ctrl-C handler run between batches
        if job.summary.interrupted:
            return
        for outcome in batch["outcome"]:
            await job.record(outcome)


async def _windows(job: Job) -> AsyncIterator[list[Item]]:
    """The images still to caption, a window of ``--ray-window`` at a time: the listing is streamed, so
    the driver never holds more than one window (about 100 bytes an image)."""
    window: list[Item] = []
    async for item in job.pending():
        window.append(item)
        if len(window) >= job.options.ray_window:
            yield window
            window = []
    if window:
        yield window


async def _next_window(job: Job, windows: AsyncIterator[list[Item]]) -> list[Item] | None:
    try:
        return await anext(windows, None)
    except Exception as exc:  # the listing failed: what was recorded stays, the run stops
        job.listing_failed(exc)
        return None
