"""Schema migrations (Alembic), run at start-up or by ``florence-tagger db upgrade``.

Several processes may start at once (``--workers``, replicas, a batch beside a gateway), so one migrates
while the others wait: a PostgreSQL advisory lock, or a lock file beside the SQLite database. A database
at a revision this release does not know (a newer florence-tagger migrated it) is refused, not touched.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import text

from gateway.catalogue.database import Database, sqlite_path
from gateway.errors import CatalogueRefused

log = logging.getLogger("gateway.catalogue")
MIGRATIONS = Path(__file__).with_name("migrations")
LOCK_ID = 0x466C6F72  # "Flor": the advisory lock every florence-tagger process migrates under
MIGRATION_TIMEOUT_S = 300.0


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the catalogue has migrations"
    return head


async def upgrade(database: Database) -> str:
    """Brings the schema to this release's head; returns the revision it is at."""
    async with _migration_lock(database):
        async with database.begin(MIGRATION_TIMEOUT_S) as connection:
            if database.dialect == "postgresql":
                await connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": LOCK_ID})
            return await connection.run_sync(_upgrade)


async def current_revision(database: Database) -> str | None:
    async with database.connect() as connection:
        return await connection.run_sync(_current)


def _current(connection: Any) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(connection: Any) -> str:
    config = alembic_config()
    current = _current(connection)
    try:
        if current is not None:
            ScriptDirectory.from_config(config).get_revision(current)
    except CommandError:
        raise CatalogueRefused(
            f"the catalogue's database is at schema revision {current!r}, which this florence-tagger does "
            f"not know (its newest is {head_revision()!r}): a newer release migrated it. Run that release, "
            "or point DATABASE_URL at another database."
        ) from None
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
    if current != head_revision():
        log.info("catalogue schema migrated from %s to %s", current or "empty", head_revision())
    return head_revision()


@asynccontextmanager
async def _migration_lock(database: Database) -> AsyncIterator[None]:
    path = sqlite_path(str(database.engine.url))
    if path is None:  # PostgreSQL: the advisory lock is taken inside the migration's transaction
        yield
        return
    with (path.parent / f"{path.name}.migrate.lock").open("a") as lock:
        await asyncio.to_thread(fcntl.flock, lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
