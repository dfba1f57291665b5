"""Opening the catalogue: the engine from ``Settings``, the schema migrated (or refused), then closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from gateway.catalogue.database import Database, create_engine
from gateway.catalogue.migrate import upgrade
from gateway.catalogue.store import Catalogue
from gateway.settings import Settings


@asynccontextmanager
async def open_catalogue(settings: Settings, *, migrate: bool = True) -> AsyncIterator[Catalogue]:
    database = Database(
        create_engine(settings.database_url_value, settings.database_timeout_s), settings.database_timeout_s
    )
    try:
        if migrate:
            await upgrade(database)
        yield Catalogue(database)
    finally:
        await database.dispose()
