"""Group commit: the results stored while one write transaction runs share the next one.

Every caption is kept, so under load the catalogue takes one upsert per request. As one transaction each, they
queue for SQLite's single writer (and each pays the event loop's hops to aiosqlite's thread for the
connection, BEGIN and COMMIT): measured, that capped the gateway near 190 captions/s with one worker or two
(issue 16). Batched, one transaction carries whatever arrived while the previous one ran, so the writer's cost
is shared and nobody waits longer than one transaction more. A caller still returns only once its row is
committed: an answered caption is a kept one, as before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from gateway.catalogue.database import Database
from gateway.errors import CatalogueUnavailable

MAX_BATCH = 64  # rows per transaction; more waiting go in the next one


@dataclass
class _Row:
    values: dict[str, Any]
    stored: asyncio.Future[int] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class GroupCommit:
    """Runs ``statement`` (an upsert ``RETURNING`` the row's id) for each row, many rows per transaction."""

    def __init__(self, database: Database, statement: Any) -> None:
        self._database = database
        self._statement = statement
        self._waiting: list[_Row] = []
        self._writer: asyncio.Task[None] | None = None

    async def store(self, values: dict[str, Any]) -> int:
        row = _Row(values)
        self._waiting.append(row)
        writer = self._writer
        if writer is None or writer.done() or writer.get_loop() is not asyncio.get_running_loop():
            self._writer = asyncio.create_task(self._write_all())
        # A caller that gives up (its client left) does not take the batch with it: its row is still kept.
        return await asyncio.shield(row.stored)

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                # In key order (stable: a key stored twice keeps its order, the later text wins), so two
                # processes' batches lock rows in the same order and cannot deadlock on PostgreSQL.
                batch.sort(key=lambda row: (row.values["identity"], row.values["params_key"]))
                if not await self._write(batch) and len(batch) > 1:
                    for row in batch:  # one bad row must not cost the others their place
                        await self._write([row])
        except asyncio.CancelledError:  # the process is stopping: nobody is left waiting unanswered
            closing = CatalogueUnavailable("the catalogue was closing; this result was not kept")
            for row in self._waiting:
                _fail(row, closing)
            self._waiting = []
            raise

    async def _write(self, batch: list[_Row]) -> bool:
        """One transaction for ``batch``. False when it failed for a reason other than the database being
        unavailable (then a batch is worth retrying row by row); its rows are failed only when alone."""
        try:
            async with self._database.begin() as connection:
                ids = [int((await connection.execute(self._statement, r.values)).scalar_one()) for r in batch]
        except CatalogueUnavailable as exc:
            if exc.retry_after is None and len(batch) > 1:  # a failed query, not an outage: row by row
                return False
            for row in batch:
                _fail(row, exc)
            return True
        except Exception as exc:  # a bug: every row of the transaction fails with it
            for row in batch:
                _fail(row, exc)
            return True
        except asyncio.CancelledError:
            for row in batch:
                _fail(row, CatalogueUnavailable("the catalogue was closing; this result was not kept"))
            raise
        for row, caption_id in zip(batch, ids, strict=True):
            if not row.stored.done():
                row.stored.set_result(caption_id)
        return True


def _fail(row: _Row, exc: Exception) -> None:
    if not row.stored.done():
        row.stored.set_exception(exc)
        # Read by the caller, or by nobody when it left: either way, not "never retrieved" in the log.
        row.stored.add_done_callback(lambda done: done.exception())
