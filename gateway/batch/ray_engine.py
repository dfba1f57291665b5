"""``--engine ray``: the same job on Ray Data, for when one machine's GPUs are not enough.

The listing becomes a dataset; captioning is a ``map_batches`` stage on a pool of actors, each holding the
pipeline's clients (``open_pipeline``) on its own event loop, so one actor keeps a whole batch in flight.
Actors also do the write-back and hand back finished JSON lines; the driver writes them through the same
``Output`` as the local engine, so DEST, ``--resume`` and exactly-once behave identically.
Ray starts a local cluster unless ``RAY_ADDRESS`` names one (``ray.init`` reads it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import replace
from typing import Any

from gateway.app import open_pipeline
from gateway.batch.output import DoneIndex, Output
from gateway.batch.progress import Progress, Summary
from gateway.batch.runner import (
    EXIT_CANNOT_START,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOME_FAILED,
    BatchOptions,
    on_interrupt,
    open_output,
    result_record,
)
from gateway.batch.source import iter_items
from gateway.batch.writeback import WriteBack
from gateway.errors import GatewayError
from gateway.pipeline import CaptionPipeline, StageTimings
from gateway.settings import Settings
from gateway.sources.s3 import open_s3_client, parse_s3_uri
from gateway.sources.s3_batch import S3Batch

ACTOR_CPUS = 0.5  # actors wait on the network (S3, the VLM) far more than they compute


class CaptionActor:
    """One pool member: its own event loop and clients, opened once and reused for every batch."""

    def __init__(self, settings: Settings, options: BatchOptions) -> None:
        self._options = options
        self._loop = asyncio.new_event_loop()
        self._stack = AsyncExitStack()
        self._pipeline: CaptionPipeline = self._loop.run_until_complete(
            self._stack.enter_async_context(open_pipeline(settings))
        )
        client = self._loop.run_until_complete(self._stack.enter_async_context(open_s3_client(settings)))
        self._writeback = WriteBack(
            S3Batch(client, timeout_s=settings.s3_timeout_s),
            options.write_back,
            sidecar_prefix=options.sidecar_prefix,
            language=options.request.language,
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        uris, etags = list(batch["s3_uri"]), list(batch["etag"])
        rows = self._loop.run_until_complete(self._all(uris, etags))
        return {
            "line": [json.dumps(r, ensure_ascii=False) for r in rows],
            "ok": ["reason" not in r for r in rows],
        }

    async def _all(self, uris: list[Any], etags: list[Any]) -> list[dict[str, Any]]:
        # Ray calls from a worker thread: gather needs the loop running, i.e. inside run_until_complete.
        pairs = zip(uris, etags, strict=True)
        return list(await asyncio.gather(*(self._one(str(u), str(e)) for u, e in pairs)))

    async def _one(self, uri: str, etag: str) -> dict[str, Any]:
        timings = StageTimings()
        request = replace(self._options.request, s3_uri=uri)
        try:
            record = result_record(await self._pipeline.caption(request, timings), timings)
            await self._writeback.apply(record)
            return record
        except GatewayError as exc:
            reason, message = exc.code, exc.message
        except Exception as exc:  # reported with the image, as in the local engine
            reason, message = "internal_error", f"{type(exc).__name__}: {exc}"
        return {"s3_uri": uri, "etag": etag, "reason": reason, "message": message, "timings": timings.ms}


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
        return asyncio.run(_drive(ray, options, settings))
    except KeyboardInterrupt:  # Ctrl-C before our handler is installed (while listing the first window)
        return EXIT_INTERRUPTED


async def _drive(ray: Any, options: BatchOptions, settings: Settings) -> int:
    async with open_s3_client(settings) as client:
        s3 = S3Batch(client, timeout_s=settings.s3_timeout_s)
        opened = await open_output(options, settings, s3)
        if opened is None:
            return EXIT_CANNOT_START
        output, done = opened
        summary = Summary()
        progress = Progress(summary, bar=options.progress_bar, log_every=options.log_every)
        try:
            windows = _pending(options, s3, done, progress)
            status = await _caption_on_ray(ray, windows, options, settings, output, summary, progress)
        except (GatewayError, OSError, UnicodeError) as exc:  # the listing failed, as in the local engine
            print(
                f"florence-tagger batch: cannot list {options.source}: {getattr(exc, 'message', exc)}",
                file=sys.stderr,
            )
            status = EXIT_CANNOT_START
        finally:
            progress.close()
            await output.close()
        print(summary.text(), flush=True)
        return status


async def _pending(
    options: BatchOptions, s3: S3Batch, done: DoneIndex, progress: Progress
) -> AsyncIterator[list[dict[str, str]]]:
    """The images still to caption, a window of ``--ray-window`` at a time: the listing is streamed, so
    the driver never holds more than one window (about 100 bytes an image)."""
    window: list[dict[str, str]] = []
    listed = 0
    async for item in iter_items(options.source, s3, modified_since=options.modified_since):
        listed += 1
        progress.listed(listed)
        if item.etag is None and item.uri in done.etags:
            # A URI list has no ETags: ask S3 only for URIs DEST already holds, as the local engine does.
            # Gone or refused: the item goes on without an ETag, and an actor reports the failure.
            with contextlib.suppress(GatewayError):
                item = replace(item, etag=await s3.head_etag(parse_s3_uri(item.uri)))
        if item.etag is not None and done.is_done(item.uri, item.etag):
            progress.advance("skipped")
            continue
        window.append({"s3_uri": item.uri, "etag": item.etag or ""})
        if len(window) >= options.ray_window:
            yield window
            window = []
    if window:
        yield window


async def _caption_on_ray(
    ray: Any,
    windows: AsyncIterator[list[dict[str, str]]],
    options: BatchOptions,
    settings: Settings,
    output: Output,
    summary: Summary,
    progress: Progress,
) -> int:
    first = await anext(windows, None)
    if first is None:
        return EXIT_OK
    try:
        # num_cpus only sizes a local cluster; Ray refuses it when RAY_ADDRESS names one. ray.init installs
        # its own SIGTERM handler, so ours are installed after it.
        ray.init(num_cpus=options.ray_num_cpus, ignore_reinit_error=True, log_to_driver=False)
    except ValueError as exc:
        print(f"florence-tagger batch: cannot start Ray: {exc}", file=sys.stderr)
        return EXIT_CANNOT_START
    interrupted = asyncio.Event()
    try:
        with on_interrupt(interrupted.set):
            rows: list[dict[str, str]] | None = first
            while rows is not None and not interrupted.is_set():
                async for batch in _batches(_dataset(ray, rows, options, settings)):
                    if interrupted.is_set():  # Ctrl-C: stop between batches; a resume redoes the rest
                        break
                    await _write_batch(batch, output, progress)
                rows = None if interrupted.is_set() else await anext(windows, None)
    finally:
        ray.shutdown()
    if interrupted.is_set():
        summary.interrupted = True
        return EXIT_INTERRUPTED
    return EXIT_SOME_FAILED if summary.failed_total else EXIT_OK


def _dataset(ray: Any, rows: list[dict[str, str]], options: BatchOptions, settings: Settings) -> Any:
    return ray.data.from_items(rows).map_batches(
        CaptionActor,
        fn_constructor_kwargs={"settings": settings, "options": options},
        batch_size=options.concurrency,  # images in flight per actor
        concurrency=options.ray_actors,
        num_cpus=ACTOR_CPUS,
    )


async def _batches(dataset: Any) -> Any:
    """Ray's blocking iterator, yielding to the event loop between batches so a Ctrl-C handler can run."""
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        await asyncio.sleep(0)
        yield batch


async def _write_batch(batch: Any, output: Output, progress: Progress) -> None:
    for line, ok in zip(batch["line"], batch["ok"], strict=True):
        record = json.loads(str(line))
        if ok:
            await output.write(record)
            progress.advance("done")
        else:
            await output.fail(record)
            progress.advance("failed", record["reason"])
