"""The batch job's core, shared by both engines: options, exit codes, DEST, one image captioned into one
outcome, an outcome recorded. An engine (``local.py``, ``ray_engine.py``) only decides where
``Captioner.caption_item`` runs and how its outcomes travel back to ``Job.record``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from gateway.batch.output import DoneIndex, LocalJsonl, Mode, Output
from gateway.batch.output_s3 import S3Parts
from gateway.batch.progress import Progress, Summary
from gateway.batch.source import Item, iter_items
from gateway.caching import keep
from gateway.catalogue import Catalogue, open_catalogue
from gateway.errors import (
    CannotStart,
    CatalogueRefused,
    CatalogueUnavailable,
    GatewayError,
    OutputFailed,
)
from gateway.pipeline import CaptionPipeline, CaptionRequest, StageTimings, caption_spec
from gateway.records import CaptionLine, CaptionParams, FailureLine, WriteBackState
from gateway.settings import Settings, XmpName
from gateway.sources.s3_uri import parse_prefix, parse_s3_uri
from gateway.styles import load_styles
from gateway.vocabularies import VocabularyError, check_style_vocabularies, load_vocabularies
from gateway.wiring import S3, open_pipeline, open_s3
from gateway.writeback import WriteBack, WriteBackConfig, require_libxmp

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
    xmp_name: XmpName | None = None  # None: XMP_NAME
    modified_since: datetime | None = None
    log_every: int = 100
    progress_bar: bool | None = None  # None: a bar when stderr is a terminal
    page_size: int = 1000
    ray_actors: int = 2  # --engine ray: actors in the pool, each with `concurrency` images in flight
    ray_num_cpus: float | None = None  # --engine ray: CPUs of a local cluster (refused with RAY_ADDRESS)
    ray_window: int = 50_000  # --engine ray: images per Ray dataset; bounds what the driver holds


# --- one image, one outcome ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Captioned:
    line: CaptionLine
    params: CaptionParams  # what made it: the catalogue keys the line on it
    write_back: WriteBackState | None = None  # what was written beside the image, or deferred to approval


@dataclass(frozen=True)
class Failed:
    line: FailureLine


@dataclass(frozen=True)
class Skipped:
    uri: str


Outcome = Captioned | Failed | Skipped


class Captioner:
    """Captions one item into one outcome: what every engine's worker runs (a local task, a Ray actor)."""

    def __init__(self, pipeline: CaptionPipeline, s3: S3, options: BatchOptions, settings: Settings) -> None:
        self._pipeline = pipeline
        self._s3 = s3
        self._request = options.request
        # REVIEW_REQUIRED: nothing is written beside an image until a person approves its caption; the
        # catalogue keeps the modes asked for, and the approval writes them (gateway/review.py).
        self._deferred = settings.review_required
        config = WriteBackConfig.from_settings(
            settings,
            options.write_back,
            xmp_name=options.xmp_name,
            sidecar_prefix=parse_prefix(options.sidecar_prefix) if options.sidecar_prefix else None,
            language=options.request.language,
        )
        self._writeback = WriteBack(s3.source, s3.writer, config)

    async def caption_item(self, item: Item) -> Outcome:
        timings = StageTimings()
        try:
            if item.is_url:
                return await self._caption_url(item, timings)
            if item.etag is None and item.done_etag is not None:
                # A URI list has no ETags: S3 is asked only for URIs DEST already holds.
                item = replace(item, etag=await self._s3.source.head_etag(parse_s3_uri(item.uri)))
                if item.etag == item.done_etag:
                    return Skipped(item.uri)
            result = await self._pipeline.caption(replace(self._request, s3_uri=item.uri), timings)
            line = CaptionLine.of(result.record(), result.etag, dict(timings.ms))
            # A write-back failure fails the image: its line never reaches DEST.
            written = await self._writeback.apply_or_defer(line, defer=self._deferred)
            return Captioned(line, result.params, written)
        except GatewayError as exc:
            return _failed(item, exc.code, exc.message, timings)
        except Exception as exc:  # a bug must not stop 5 million images; it is reported with the image
            log.exception("unexpected error on %s", item.uri)
            return _failed(item, "internal_error", f"{type(exc).__name__}: {exc}", timings)

    async def _caption_url(self, item: Item, timings: StageTimings) -> Outcome:
        result = await self._pipeline.caption(replace(self._request, image_url=item.uri), timings)
        line = CaptionLine.of(result.record(), None, dict(timings.ms))
        # Refused (write_back_needs_s3) when write-back is asked for: there is nothing beside a URL to write.
        written = await self._writeback.apply_or_defer(line, defer=self._deferred)
        return Captioned(line, result.params, written)


def _failed(item: Item, reason: str, message: str, timings: StageTimings) -> Failed:
    where = {"image_url": item.uri, "s3_uri": None} if item.is_url else {"s3_uri": item.uri}
    return Failed(FailureLine(**where, etag=item.etag, reason=reason, message=message, timings=timings.ms))


@asynccontextmanager
async def open_captioner(settings: Settings, options: BatchOptions, s3: S3) -> AsyncIterator[Captioner]:
    # A batch fetches the URLs its operator listed (under the URL rules), whatever IMAGE_URL_ENABLED says.
    async with open_pipeline(settings, s3=s3, image_urls=True) as pipeline:
        yield Captioner(pipeline, s3, options, settings)


# --- the job: DEST, the listing, the record of outcomes --------------------------------------------------
@dataclass
class Job:
    options: BatchOptions
    settings: Settings
    s3: S3
    output: Output
    done: DoneIndex
    summary: Summary
    progress: Progress
    catalogue: Catalogue
    fatal: str | None = None

    def pending(self) -> AsyncIterator[Item]:
        """The images still to caption; those DEST holds at their listed ETag are counted as skipped."""
        return _pending(self)

    async def record(self, outcome: Outcome) -> None:
        """The one place an outcome reaches DEST. Raises ``OutputFailed`` when DEST refuses a line."""
        if isinstance(outcome, Skipped):
            self.progress.advance("skipped")
        elif isinstance(outcome, Failed):
            try:
                await self.output.fail(outcome.line)
            except (GatewayError, OSError) as exc:
                log.warning("cannot record the failure of %s: %s", outcome.line.s3_uri, exc)
            self.progress.advance("failed", outcome.line.reason)
        else:
            try:
                await self.output.write(outcome.line)
            except (GatewayError, OSError) as exc:  # S3 refusing a part, or a local disk that is full
                raise OutputFailed(self.cannot_write(exc)) from None
            # After DEST, never instead of it.
            await keep(self.catalogue, outcome.line, outcome.params, "batch", outcome.write_back)
            self.progress.advance("done")

    def cannot_write(self, exc: GatewayError | OSError) -> str:
        return f"cannot write {self.output.description}: {getattr(exc, 'message', exc)}"

    def listing_failed(self, exc: BaseException) -> None:
        if not isinstance(exc, GatewayError | OSError):  # a URI file that is not UTF-8, say
            log.error("listing %s failed", self.options.source, exc_info=exc)
        detail = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        self.fatal = self.fatal or f"cannot list {self.options.source}: {detail}"

    def status(self) -> int:
        if self.summary.interrupted:
            return EXIT_INTERRUPTED
        if self.fatal:
            print(f"florence-tagger batch: stopped: {self.fatal}", file=sys.stderr)
            return EXIT_CANNOT_START
        return EXIT_SOME_FAILED if self.summary.failed_total else EXIT_OK


async def _pending(job: Job) -> AsyncIterator[Item]:
    listed = 0
    items = iter_items(
        job.options.source,
        job.s3.source,
        modified_since=job.options.modified_since,
        page_size=job.options.page_size,
    )
    async for item in items:
        listed += 1
        job.progress.listed(listed)
        if item.etag is not None and job.done.is_done(item.uri, item.etag):
            job.progress.advance("skipped")
        elif item.is_url and item.uri in job.done.etags:
            job.progress.advance("skipped")  # a URL in DEST is done: resume does not fetch it again
        elif item.etag is None and item.uri in job.done.etags:
            yield Item(item.uri, done_etag=job.done.etags[item.uri])
        else:
            yield item


Engine = Callable[[Job], Awaitable[None]]


async def run_job(options: BatchOptions, settings: Settings, engine: Engine) -> int:
    """Opens S3 and DEST (refusing what cannot start, before any model call), runs the engine, closes DEST
    and prints the summary; the exit status is decided here for both engines."""
    async with AsyncExitStack() as stack:
        try:  # first: a catalogue that cannot be opened or migrated stops the run before DEST is touched
            catalogue = await stack.enter_async_context(open_catalogue(settings))
        except (CatalogueUnavailable, CatalogueRefused) as exc:
            print(f"florence-tagger batch: cannot open the catalogue: {exc.message}", file=sys.stderr)
            return EXIT_CANNOT_START
        s3 = await stack.enter_async_context(open_s3(settings))
        opened = await open_output(options, settings, s3)
        if opened is None:
            return EXIT_CANNOT_START
        output, done = opened
        summary = Summary()
        progress = Progress(summary, bar=options.progress_bar, log_every=options.log_every)
        job = Job(options, settings, s3, output, done, summary, progress, catalogue)
        status = await _run(job, engine)
        print(summary.text(), flush=True)
        return status


async def _run(job: Job, engine: Engine) -> int:
    try:
        await engine(job)
    finally:
        job.progress.close()
        await _close(job)
    return job.status()


async def _close(job: Job) -> None:
    # Closing flushes the last lines: DEST refusing them is the same failure as refusing one mid-run.
    try:
        await job.output.close()
    except (GatewayError, OSError) as exc:
        job.fatal = job.fatal or job.cannot_write(exc)


def check_can_start(options: BatchOptions, settings: Settings) -> None:
    """What would fail every image fails the run instead, before DEST is touched (--overwrite deletes)."""
    # A bad --style, --language or --vocabulary, or a vocabulary file over the limit.
    styles = load_styles(settings.styles_file)
    vocabularies = load_vocabularies(settings.vocabularies_dir, settings.vocabulary_max_terms)
    check_style_vocabularies(styles, vocabularies)
    caption_spec(styles, options.request, vocabularies)
    if "xmp" in options.write_back:
        require_libxmp()  # a missing Exempi library


async def open_output(options: BatchOptions, settings: Settings, s3: S3) -> tuple[Output, DoneIndex] | None:
    """DEST, ready for lines, and what it already holds; None (said on stderr) when the run cannot start."""
    output: Output = (
        S3Parts(s3.source, s3.writer, options.out)
        if options.out.startswith("s3://")
        else LocalJsonl(Path(options.out))
    )
    try:
        check_can_start(options, settings)
        return output, await output.prepare(options.mode)
    except (CannotStart, GatewayError, VocabularyError) as exc:
        print(f"florence-tagger batch: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return None


@contextlib.contextmanager
def on_interrupt(callback: Callable[[], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``callback`` on the running loop (both engines stop the same way)."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, callback)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
