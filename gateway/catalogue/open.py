"""Opening the catalogue: the engine from ``Settings``, the schema migrated (or refused), then closed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.catalogue.database import Database, create_engine
from gateway.catalogue.migrate import upgrade
from gateway.catalogue.store import Catalogue
from gateway.errors import CatalogueUnavailable
from gateway.settings import Settings

log = logging.getLogger("gateway.catalogue")
START_WAIT_S = 60.0
RETRY_S = 2.0


@asynccontextmanager
async def open_catalogue(settings: Settings, *, wait_s: float = START_WAIT_S) -> AsyncIterator[Catalogue]:
    """Waits up to ``wait_s`` for a database that is not up yet (a PostgreSQL starting beside the gateway in
    compose or Kubernetes); a database that answers but cannot be used is refused at once."""
    database = Database(
        create_engine(settings.database_url_value, settings.database_timeout_s), settings.database_timeout_s
    )
    try:
        await _upgrade_when_up(database, time.monotonic() + wait_s)
        yield Catalogue(database)
    finally:
        await database.dispose()


async def _upgrade_when_up(database: Database, deadline: float) -> None:
    while True:
        try:
            await upgrade(database)
            return
        except CatalogueUnavailable as exc:
            if time.monotonic() + RETRY_S > deadline:
                raise
            log.warning("catalogue %s not reachable yet (%s); retrying", database.description, exc.message)
            await asyncio.sleep(RETRY_S)
            database.reset()
