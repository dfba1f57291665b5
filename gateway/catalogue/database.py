"""The engine behind the catalogue: SQLite (aiosqlite, WAL) or PostgreSQL (asyncpg), with short timeouts so a
database that is down costs a request little, and a breaker so it costs most requests nothing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from gateway.backends.openai_chat import redact_url
from gateway.errors import CatalogueUnavailable

log = logging.getLogger("gateway.catalogue")
BREAKER_OPEN_S = 5.0  # after a failure, calls fail fast for this long, then one tries again
RETRY_AFTER_S = 5.0
SQLITE_BUSY_TIMEOUT_MS = 10_000
WRITE_OPTION = "florence_write"
# What a database that is down, gone or hung raises (a refused connection is a bare OSError from asyncpg):
# these open the breaker. Any other SQLAlchemyError is a bug, logged with its traceback.
OUTAGES = (OperationalError, InterfaceError, DisconnectionError, OSError, TimeoutError)


def create_engine(url: str, timeout_s: float) -> AsyncEngine:
    if make_url(url).get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    # Pre-ping: a pooled connection that died with a restarted server is replaced, not handed out.
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_timeout=timeout_s,
        connect_args={"timeout": timeout_s, "command_timeout": max(timeout_s * 10, 30.0)},
    )


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    return Path(parsed.database) if parsed.get_backend_name() == "sqlite" and parsed.database else None


def _sqlite_engine(url: str) -> AsyncEngine:
    path = sqlite_path(url)
    if path is None:
        raise ValueError(
            "the SQLite catalogue needs a file (DATABASE_URL=sqlite+aiosqlite:///path/to/file.db)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_connect)
    event.listen(engine.sync_engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Python's sqlite3 opens transactions implicitly and never around DDL; SQLAlchemy's recipe hands
    # transaction control to the "begin" hook below, so a migration is all or nothing.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL: readers never wait for the writer. NORMAL sync is durable across a process crash in WAL mode.
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", f"busy_timeout={SQLITE_BUSY_TIMEOUT_MS}"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    # A write takes SQLite's write lock up front (IMMEDIATE), so a busy database is waited for: a deferred
    # transaction whose insert fires the FTS5 trigger fails at once with "database is locked" instead.
    immediate = connection.get_execution_options().get(WRITE_OPTION)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """An engine with a breaker: ``connect()``/``begin()`` map every database failure to
    ``CatalogueUnavailable`` and, for a few seconds after one, fail at once instead of waiting again."""

    def __init__(self, engine: AsyncEngine, timeout_s: float) -> None:
        self.engine = engine
        self.timeout_s = timeout_s
        self.dialect = engine.dialect.name
        self.description = redact_url(engine.url.render_as_string(hide_password=True))
        self._down_until = 0.0

    @property
    def up(self) -> bool:
        return time.monotonic() >= self._down_until

    @asynccontextmanager
    async def connect(self, timeout_s: float | None = None) -> AsyncIterator[AsyncConnection]:
        async with self._guard(timeout_s), self.engine.connect() as connection:
            yield connection

    @asynccontextmanager
    async def begin(self, timeout_s: float | None = None) -> AsyncIterator[AsyncConnection]:
        """A write transaction, committed at the end."""
        async with self._guard(timeout_s), self.engine.connect() as connection:
            await connection.execution_options(**{WRITE_OPTION: True})
            async with connection.begin():
                yield connection

    @asynccontextmanager
    async def _guard(self, timeout_s: float | None) -> AsyncIterator[None]:
        if not self.up:
            raise CatalogueUnavailable(
                "the catalogue's database is unavailable (retrying shortly)", retry_after=RETRY_AFTER_S
            )
        try:
            async with asyncio.timeout(timeout_s or self.timeout_s):
                yield
        except OUTAGES as exc:
            self._trip(exc)
            raise CatalogueUnavailable(
                f"the catalogue's database is unavailable ({type(exc).__name__})", retry_after=RETRY_AFTER_S
            ) from None
        except SQLAlchemyError as exc:
            log.exception("catalogue query failed on %s", self.description)
            raise CatalogueUnavailable(f"the catalogue failed ({type(exc).__name__})") from None

    def _trip(self, exc: BaseException) -> None:
        if self.up:  # once per outage, not once per request
            detail = str(exc).splitlines()[0][:300] if str(exc) else ""
            log.warning(
                "catalogue database %s unavailable: %s %s", self.description, type(exc).__name__, detail
            )
        self._down_until = time.monotonic() + BREAKER_OPEN_S

    def reset(self) -> None:
        """Closes the breaker: the next call tries the database again (a start-up retry, say)."""
        self._down_until = 0.0

    async def dispose(self) -> None:
        await self.engine.dispose()
