"""``florence-tagger worker``: the event workers without the HTTP server, until SIGTERM or Ctrl-C.

On PostgreSQL any number of these (and of gateways) share the queue; on SQLite, the processes of one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any

from gateway.errors import CatalogueRefused, CatalogueUnavailable, InvalidInput, XmpUnavailable
from gateway.events.runtime import check_event_settings, open_events
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.vocabularies import VocabularyError
from gateway.wiring import open_services

log = logging.getLogger("gateway.events")


def add_worker_parser(sub: Any) -> None:
    worker = sub.add_parser(
        "worker", help="caption queued S3 events (EVENT_WORKERS at once, at least 1) without serving HTTP"
    )
    worker.set_defaults(handler=run_worker)


def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    if not startable(settings, "worker"):
        return 1
    try:
        asyncio.run(_work(settings))
    except (CatalogueRefused, CatalogueUnavailable) as exc:
        print(f"florence-tagger worker: cannot open the catalogue: {exc.message}", file=sys.stderr)
        return 1
    return 0


def startable(settings: Settings, command: str) -> bool:
    """The events' settings checked before anything opens, so a bad one stops the start with its reason."""
    try:
        check_event_settings(settings)
    except (InvalidInput, XmpUnavailable) as exc:
        print(f"florence-tagger {command}: events settings (EVENTS_*): {exc.message}", file=sys.stderr)
        return False
    except VocabularyError as exc:
        print(f"florence-tagger {command}: {exc}", file=sys.stderr)
        return False
    return True


async def _work(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = max(1, settings.event_workers)
    metrics = GatewayMetrics()
    async with (
        open_services(settings, metrics=metrics) as services,
        open_events(settings, services, workers=tasks, metrics=metrics),
    ):
        log.info(
            "florence-tagger worker: %d event workers on %s", tasks, services.catalogue.database.description
        )
        await stop.wait()
    log.info("florence-tagger worker stopped")
