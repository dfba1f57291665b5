"""The local engine: list, skip what DEST holds, caption with bounded concurrency, write back, write lines."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.api.schemas import CaptionOut
from gateway.app import open_pipeline
from gateway.batch.output import CannotStart, DoneIndex, LocalJsonl, Mode, Output
from gateway.batch.output_s3 import S3Parts
from gateway.batch.progress import Progress, Summary
from gateway.batch.source import Item, iter_items
from gateway.batch.writeback import WriteBack
from gateway.batch.xmp import require_libxmp
from gateway.errors import GatewayError
from gateway.pipeline import CaptionPipeline, CaptionRequest, CaptionResult, StageTimings, caption_spec
from gateway.settings import Settings
from gateway.sources.s3 import open_s3_client, parse_s3_uri
from gateway.sources.s3_batch import S3Batch
from gateway.styles import load_styles

log = logging.getLogger("gateway.batch")
EXIT_OK, EXIT_CANNOT_START, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class BatchOptions:
    source: str
    out: str
    mode: Mode = "new"
    concurrency: int = 16
    request: CaptionRequest = field(default_factory=lambda: CaptionRequest(s3_uri=""))
    write_back: frozenset[str] = frozenset()
    sidecar_prefix: str | None = None
    modified_since: datetime | None = None
    log_every: int = 100
    progress_bar: bool | None = None  # None: a bar when stderr is a terminal
    page_size: int = 1000
    ray_actors: int = 2  # --engine ray: actors in the pool, each with `concurrency` images in flight
    ray_num_cpus: float | None = None  # --engine ray: CPUs of a local cluster (refused with RAY_ADDRESS)
    ray_window: int = 50_000  # --engine ray: images per Ray dataset; bounds what the driver holds


class OutputFailed(Exception):
    """DEST stopped accepting lines mid-run: stop, since every further caption would be lost."""


def make_output(dest: str, s3: S3Batch) -> Output:
    return S3Parts(s3, dest) if dest.startswith("s3://") else LocalJsonl(Path(dest))


def result_record(result: CaptionResult, timings: StageTimings) -> dict[str, Any]:
    """The /caption response body, plus the ETag it describes and the stage timings."""
    record = CaptionOut.from_result(result).model_dump(exclude_none=True)
    return {**record, "etag": result.etag, "timings": dict(timings.ms)}


def check_can_start(options: BatchOptions, settings: Settings) -> None:
    """What would fail every image fails the run instead, before DEST is touched (--overwrite deletes)."""
    caption_spec(load_styles(settings.styles_file), options.request)  # a bad --style or --language
    if "xmp" in options.write_back:
        require_libxmp()  # a missing Exempi library


async def open_output(
    options: BatchOptions, settings: Settings, s3: S3Batch
) -> tuple[Output, DoneIndex] | None:
    """DEST, ready for lines, and what it already holds; None (said on stderr) when the run cannot start.

    Shared by both engines, so they refuse the same things, in the same words, before any model call."""
    output = make_output(options.out, s3)
    try:
        check_can_start(options, settings)
        return output, await output.prepare(options.mode)
    except (CannotStart, GatewayError) as exc:
        print(f"florence-tagger batch: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return None


async def run_batch(options: BatchOptions, settings: Settings) -> int:
    async with open_s3_client(settings) as client:
        s3 = S3Batch(client, timeout_s=settings.s3_timeout_s)
        opened = await open_output(options, settings, s3)
        if opened is None:
            return EXIT_CANNOT_START
        output, done = opened
        summary = Summary()
        writeback = WriteBack(
            s3, options.write_back, sidecar_prefix=options.sidecar_prefix, language=options.request.language
        )
        try:
            async with open_pipeline(settings) as pipeline:
                status = await BatchRun(options, pipeline, s3, output, writeback, done, summary).run()
        finally:
            await output.close()
        print(summary.text(), flush=True)
        return status


class BatchRun:
    def __init__(
        self,
        options: BatchOptions,
        pipeline: CaptionPipeline,
        s3: S3Batch,
        output: Output,
        writeback: WriteBack,
        done: DoneIndex,
        summary: Summary,
    ) -> None:
        self.options, self.pipeline, self.s3, self.output = options, pipeline, s3, output
        self.writeback, self.done, self.summary = writeback, done, summary
        self.progress = Progress(summary, bar=options.progress_bar, log_every=options.log_every)
        self.fatal: str | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def run(self) -> int:
        queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=self.options.concurrency * 2)
        workers = [asyncio.create_task(self._worker(queue)) for _ in range(self.options.concurrency)]
        producer = asyncio.create_task(self._produce(queue))
        self._tasks = [producer, *workers]
        with on_interrupt(self._interrupt):
            results = await asyncio.gather(*self._tasks, return_exceptions=True)
        self.progress.close()
        return self._status(results)

    def _interrupt(self) -> None:
        # In-flight images are dropped: none has a line yet, so a resume captions them again.
        self.summary.interrupted = True
        self._cancel_all()

    def _cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()

    def _status(self, results: list[BaseException | None]) -> int:
        for outcome in results:  # an exception here is a bug in the engine, not in one image
            if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
                self.fatal = self.fatal or f"{type(outcome).__name__}: {outcome}"
        if self.summary.interrupted:
            return EXIT_INTERRUPTED
        if self.fatal:
            print(f"florence-tagger batch: stopped: {self.fatal}", file=sys.stderr)
            return EXIT_CANNOT_START
        return EXIT_SOME_FAILED if self.summary.failed_total else EXIT_OK

    async def _produce(self, queue: asyncio.Queue[Item | None]) -> None:
        listed = 0
        try:
            items = iter_items(
                self.options.source,
                self.s3,
                modified_since=self.options.modified_since,
                page_size=self.options.page_size,
            )
            async for item in items:
                listed += 1
                self.progress.listed(listed)
                if item.etag is not None and self.done.is_done(item.uri, item.etag):
                    self.progress.advance("skipped")
                    continue
                await queue.put(item)
        except (GatewayError, OSError) as exc:
            self.fatal = f"cannot list {self.options.source}: {getattr(exc, 'message', None) or exc}"
        except Exception as exc:  # a URI file that is not UTF-8, say: the workers must still be released
            log.exception("listing %s failed", self.options.source)
            self.fatal = f"cannot list {self.options.source}: {type(exc).__name__}: {exc}"
        # Whatever ended the listing (but a cancel, which stops the workers too), they must hear it.
        for _ in range(self.options.concurrency):
            await queue.put(None)

    async def _worker(self, queue: asyncio.Queue[Item | None]) -> None:
        try:
            while (item := await queue.get()) is not None:
                await self._one(item)
        except OutputFailed as exc:
            self.fatal = str(exc)
            self._cancel_all()  # the producer may be blocked on a full queue

    async def _one(self, item: Item) -> None:
        timings = StageTimings()
        try:
            if item.etag is None and item.uri in self.done.etags:
                # A URI list has no ETags: ask S3 only for URIs DEST already holds.
                item = replace(item, etag=await self.s3.head_etag(parse_s3_uri(item.uri)))
                if self.done.is_done(item.uri, item.etag or ""):
                    self.progress.advance("skipped")
                    return
            result = await self.pipeline.caption(replace(self.options.request, s3_uri=item.uri), timings)
            record = result_record(result, timings)
            await self.writeback.apply(record)
        except GatewayError as exc:
            await self._fail(item, exc.code, exc.message, timings)
            return
        except Exception as exc:  # a bug must not stop 5 million images; it is reported with the image
            log.exception("unexpected error on %s", item.uri)
            await self._fail(item, "internal_error", f"{type(exc).__name__}: {exc}", timings)
            return
        await self._write(record)
        self.progress.advance("done")

    async def _write(self, record: dict[str, Any]) -> None:
        try:
            await self.output.write(record)
        except (GatewayError, OSError) as exc:  # S3 refusing a part, or a local disk that is full
            raise OutputFailed(
                f"cannot write {self.output.description}: {getattr(exc, 'message', exc)}"
            ) from None

    async def _fail(self, item: Item, reason: str, message: str, timings: StageTimings) -> None:
        record = {"s3_uri": item.uri, "etag": item.etag, "reason": reason, "message": message}
        try:
            await self.output.fail({**record, "timings": dict(timings.ms)})
        except (GatewayError, OSError) as exc:
            log.warning("cannot record the failure of %s: %s", item.uri, exc)
        self.progress.advance("failed", reason)


@contextlib.contextmanager
def on_interrupt(callback: Any) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, callback)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
