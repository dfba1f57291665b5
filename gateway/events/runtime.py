"""The event path composed from ``Settings`` on top of the app's services: the intake ``POST /v1/events/s3``
queues into, the captioner its workers run, and the workers themselves (in ``serve`` and in
``florence-tagger worker``). Built above ``wiring.py`` so the composition root never needs the events."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from gateway.catalogue import EventQueue
from gateway.events.captioner import EventCaptioner
from gateway.events.intake import EventIntake
from gateway.events.worker import EventWorkers, RetryPolicy
from gateway.metrics import GatewayMetrics
from gateway.pipeline import CaptionRequest, caption_spec
from gateway.settings import Settings
from gateway.sources.s3_uri import parse_prefix
from gateway.styles import load_styles
from gateway.vocabularies import load_vocabularies
from gateway.wiring import Services
from gateway.writeback import WriteBack, WriteBackConfig, require_libxmp

log = logging.getLogger("gateway.events")


@dataclass(frozen=True)
class Events:
    intake: EventIntake
    captioner: EventCaptioner
    workers: EventWorkers | None  # None when EVENT_WORKERS is 0 (another process drains the queue)


def event_request(settings: Settings) -> CaptionRequest:
    """What an event's caption is asked for: EVENTS_STYLE, EVENTS_LANGUAGE, EVENTS_USE_GPT_OSS,
    EVENTS_VOCABULARY, EVENTS_CONTEXT (the batch command's --style, --language... as settings)."""
    return CaptionRequest(
        s3_uri="",
        style=settings.events_style,
        language=settings.events_language,
        use_gpt_oss=settings.events_use_gpt_oss,
        vocabulary=settings.events_vocabulary,
        context=settings.events_context,
    )


def check_event_settings(settings: Settings) -> None:
    """What would fail every event fails the start instead: an unknown EVENTS_STYLE, EVENTS_LANGUAGE or
    EVENTS_VOCABULARY (``InvalidInput``), a bad vocabulary file (``VocabularyError``), XMP write-back
    without Exempi (``XmpUnavailable``)."""
    vocabularies = load_vocabularies(settings.vocabularies_dir, settings.vocabulary_max_terms)
    caption_spec(load_styles(settings.styles_file), event_request(settings), vocabularies)
    if "xmp" in settings.events_write_back_modes:
        require_libxmp()


@asynccontextmanager
async def open_events(
    settings: Settings, services: Services, *, workers: int, metrics: GatewayMetrics | None = None
) -> AsyncIterator[Events]:
    """The intake and captioner, and ``workers`` workers draining the queue until the block ends; they are
    cancelled and awaited, so the rows in hand go back to the queue before the clients they use close."""
    captioner = _captioner(settings, services)
    intake = _intake(settings, services, captioner, metrics)
    if workers < 1:
        yield Events(intake, captioner, None)
        return
    running_workers = EventWorkers(
        intake.queue,
        captioner,
        tasks=workers,
        lease_s=settings.events_lease_s,
        policy=RetryPolicy(settings.events_max_attempts, settings.events_backoff_s),
        doorbell=intake.doorbell,
        metrics=metrics,
    )
    running = asyncio.create_task(running_workers.run(), name="event-workers")
    running.add_done_callback(_stopped)
    try:
        yield Events(intake, captioner, running_workers)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


def _captioner(settings: Settings, services: Services) -> EventCaptioner:
    check_event_settings(settings)
    prefix = settings.events_sidecar_prefix
    config = WriteBackConfig.from_settings(  # XMP_FIELDS and XMP_NAME, as batch and review write them
        settings,
        settings.events_write_back_modes,
        sidecar_prefix=parse_prefix(prefix) if prefix else None,
        language=settings.events_language,
    )
    writeback = WriteBack(services.s3.source, services.s3.writer, config)
    return EventCaptioner(
        services.pipeline,
        services.catalogue,
        writeback,
        event_request(settings),
        review_required=settings.review_required,
    )


def _intake(
    settings: Settings, services: Services, captioner: EventCaptioner, metrics: GatewayMetrics | None
) -> EventIntake:
    prefix = settings.events_sidecar_prefix
    return EventIntake(
        EventQueue(services.catalogue.database),
        lambda: captioner.params,
        sidecar_prefix=parse_prefix(prefix) if prefix else None,
        metrics=metrics,
    )


def _stopped(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:  # a bug: say so, loudly, once
        log.error("the event workers stopped", exc_info=task.exception())
