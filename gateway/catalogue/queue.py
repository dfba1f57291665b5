"""The S3 event queue, in the catalogue's database: enqueue, claim under a lease, finish, count.

Rows are object versions waiting for a caption. A claim takes one due row (queued, due for a retry, or
running under a lease that ran out: its worker died) and leases it to one owner; the owner renews the lease
while it works and finishes the row (done rows are deleted: the caption row is the record), schedules a
retry or marks it failed. PostgreSQL claims with ``FOR UPDATE SKIP LOCKED``, so any number of processes on
any number of machines share the queue; SQLite's writes are serialised by its lock (``BEGIN IMMEDIATE``), so
the processes of one machine can share its file. How often to retry, and when to give up, is the worker's
business (``gateway/events``); this module only keeps the rows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row

from gateway.catalogue.database import Database
from gateway.catalogue.schema import captions, event_queue
from gateway.catalogue.store import identity_of

QueueState = Literal["queued", "retry", "running", "failed"]
QUEUE_STATES: tuple[QueueState, ...] = ("queued", "retry", "running", "failed")
WAITING: tuple[QueueState, ...] = ("queued", "retry")
MESSAGE_MAX_CHARS = 1000
CLAIM_TRIES = 5
# Workers are in no hurry, and a database busy with a burst is not a database that is down: their calls
# wait longer than DATABASE_TIMEOUT_S (a delivery's enqueue keeps it: a store waits for that answer).
WORKER_TIMEOUT_S = 30.0
_q = event_queue


def now_utc() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class ObjectVersion:
    """An object as an event names it; ``etag`` is None when the store did not say."""

    bucket: str
    key: str
    etag: str | None = None

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Enqueued:
    accepted: int  # rows now in the queue for these objects (a repeated delivery collapses onto its row)
    catalogued: int  # already in the catalogue at that ETag with these parameters: nothing to do


@dataclass(frozen=True)
class ClaimedEvent:
    id: int
    object: ObjectVersion
    attempts: int  # this one included
    request_id: str | None
    received_at: datetime


@dataclass(frozen=True)
class QueueError:
    s3_uri: str
    code: str
    message: str
    attempts: int
    at: datetime


@dataclass(frozen=True)
class QueueStats:
    counts: dict[str, int]  # every state, zeros included
    oldest_age_s: float | None  # the oldest event not yet captioned (failed ones aside)
    last_error: QueueError | None


class EventQueue:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._claiming = asyncio.Lock()

    async def enqueue(
        self, objects: Sequence[ObjectVersion], params_key: str, request_id: str | None
    ) -> Enqueued:
        """Commits a row per object not yet catalogued at its ETag with ``params_key``; returns once the
        rows are durable. A failed row delivered again is queued afresh (a re-upload of the same bytes)."""
        unique = list(dict.fromkeys(objects))  # one statement must not touch a row twice
        async with self.database.begin() as connection:
            done = await connection.execute(_catalogued(unique, params_key)) if _known(unique) else None
            identities = {row.identity for row in done} if done is not None else set()
            todo = [o for o in unique if o.etag is None or identity_of(o.uri, o.etag) not in identities]
            if todo:
                await connection.execute(self._upsert(todo, request_id))
        return Enqueued(accepted=len(todo), catalogued=len(unique) - len(todo))

    def _upsert(self, objects: Sequence[ObjectVersion], request_id: str | None) -> Any:
        insert = postgres_insert if self.database.dialect == "postgresql" else sqlite_insert
        moment = now_utc()
        rows = [
            {
                "bucket": o.bucket,
                "key": o.key,
                "etag": o.etag or "",
                "request_id": request_id,
                "received_at": moment,
                "state": "queued",
                "attempts": 0,
                "next_attempt_at": moment,
                "updated_at": moment,
            }
            for o in objects
        ]
        new = insert(_q).values(rows)
        again = {
            **{name: getattr(new.excluded, name) for name in ("request_id", "next_attempt_at", "updated_at")},
            **{"state": "queued", "attempts": 0, "last_error_code": None, "last_error_message": None},
        }
        return new.on_conflict_do_update(
            index_elements=["bucket", "key", "etag"],
            set_=again,
            where=_q.c.state == "failed",  # a row queued or in hand already covers this delivery
        )

    async def claim(self, owner: str, lease_s: float) -> ClaimedEvent | None:
        """The next due row, leased to ``owner`` for ``lease_s`` seconds and its attempt counted; or None."""
        if self.database.dialect == "postgresql":
            # Other workers skip the row this one locked and take the next: nobody waits, nobody collides.
            return await self._take(
                _next_due().with_for_update(skip_locked=True).scalar_subquery(), owner, lease_s
            )
        # SQLite has one writer at a time: look first (WAL readers never wait), write only for a due row, and
        # claim one at a time per process, so this process's workers never race each other for one row.
        async with self._claiming:
            for _ in range(CLAIM_TRIES):  # another process may take the row between the look and the write
                async with self.database.connect(WORKER_TIMEOUT_S) as connection:
                    due = (await connection.execute(_next_due())).scalar()
                if due is None:
                    return None
                if (claimed := await self._take(due, owner, lease_s, still_due=True)) is not None:
                    return claimed
        return None

    async def _take(
        self, which: Any, owner: str, lease_s: float, *, still_due: bool = False
    ) -> ClaimedEvent | None:
        moment = now_utc()
        stmt = (
            update(_q)
            .where(_q.c.id == which, *((_due(moment),) if still_due else ()))
            .values(
                state="running",
                lease_owner=owner,
                lease_expires_at=moment + timedelta(seconds=lease_s),
                attempts=_q.c.attempts + 1,
                updated_at=moment,
            )
            .returning(
                _q.c.id, _q.c.bucket, _q.c.key, _q.c.etag, _q.c.attempts, _q.c.request_id, _q.c.received_at
            )
        )
        async with self.database.begin(WORKER_TIMEOUT_S) as connection:
            row = (await connection.execute(stmt)).first()
        return _claimed(row) if row is not None else None

    async def renew(self, owner: str, ids: Collection[int], lease_s: float) -> None:
        """Extends the lease on the rows ``owner`` holds: a long caption must not look like a dead worker."""
        if not ids:
            return
        stmt = (
            update(_q)
            .where(_q.c.id.in_(list(ids)), _q.c.lease_owner == owner, _q.c.state == "running")
            .values(lease_expires_at=now_utc() + timedelta(seconds=lease_s))
        )
        async with self.database.begin(WORKER_TIMEOUT_S) as connection:
            await connection.execute(stmt)

    async def complete(self, event_id: int, owner: str) -> None:
        """Done (captioned, already catalogued, or the object is gone): the row goes."""
        async with self.database.begin(WORKER_TIMEOUT_S) as connection:
            await connection.execute(delete(_q).where(*_held(event_id, owner)))

    async def retry(self, event_id: int, owner: str, code: str, message: str, at: datetime) -> None:
        await self._settle(event_id, owner, "retry", code, message, next_attempt_at=at)

    async def fail(self, event_id: int, owner: str, code: str, message: str) -> None:
        await self._settle(event_id, owner, "failed", code, message)

    async def _settle(
        self, event_id: int, owner: str, state: QueueState, code: str, message: str, **more: Any
    ) -> None:
        values = {
            "state": state,
            "lease_owner": None,
            "lease_expires_at": None,
            "last_error_code": code,
            "last_error_message": message[:MESSAGE_MAX_CHARS],
            "updated_at": now_utc(),
            **more,
        }
        async with self.database.begin(WORKER_TIMEOUT_S) as connection:
            await connection.execute(update(_q).where(*_held(event_id, owner)).values(**values))

    async def release(self, owner: str) -> int:
        """Gives back every row ``owner`` holds (a clean shutdown), its unfinished attempt uncounted."""
        stmt = (
            update(_q)
            .where(_q.c.lease_owner == owner, _q.c.state == "running")
            .values(state="queued", attempts=_q.c.attempts - 1, lease_owner=None, lease_expires_at=None)
        )
        async with self.database.begin(WORKER_TIMEOUT_S) as connection:
            return int((await connection.execute(stmt)).rowcount)

    async def stats(self) -> QueueStats:
        by_state = select(_q.c.state, func.count(), func.min(_q.c.received_at)).group_by(_q.c.state)
        last = select(_q).where(_q.c.last_error_code.is_not(None)).order_by(_q.c.updated_at.desc()).limit(1)
        async with self.database.connect() as connection:
            groups = (await connection.execute(by_state)).all()
            error = (await connection.execute(last)).first()
        counts = dict.fromkeys(QUEUE_STATES, 0) | {state: int(n) for state, n, _ in groups}
        pending = [_utc(oldest) for state, _, oldest in groups if state != "failed" and oldest is not None]
        age = (now_utc() - min(pending)).total_seconds() if pending else None
        return QueueStats(counts, age, _error(error) if error is not None else None)


def _due(moment: datetime) -> Any:
    return or_(
        and_(_q.c.state.in_(WAITING), _q.c.next_attempt_at <= moment),
        and_(_q.c.state == "running", _q.c.lease_expires_at < moment),  # its worker died
    )


def _next_due() -> Any:
    return select(_q.c.id).where(_due(now_utc())).order_by(_q.c.next_attempt_at, _q.c.id).limit(1)


def _known(objects: Sequence[ObjectVersion]) -> bool:
    return any(o.etag is not None for o in objects)


def _catalogued(objects: Sequence[ObjectVersion], params_key: str) -> Any:
    identities = [identity_of(o.uri, o.etag) for o in objects if o.etag is not None]
    return select(captions.c.identity).where(
        captions.c.params_key == params_key, captions.c.identity.in_(identities)
    )


def _held(event_id: int, owner: str) -> tuple[Any, ...]:
    # Only while the lease is ours: a row a slower twin reclaimed is that twin's to finish.
    return (_q.c.id == event_id, _q.c.lease_owner == owner, _q.c.state == "running")


def _claimed(row: Row[Any]) -> ClaimedEvent:
    return ClaimedEvent(
        id=int(row.id),
        object=ObjectVersion(row.bucket, row.key, row.etag or None),
        attempts=int(row.attempts),
        request_id=row.request_id,
        received_at=_utc(row.received_at),
    )


def _error(row: Row[Any]) -> QueueError:
    return QueueError(
        s3_uri=ObjectVersion(row.bucket, row.key).uri,
        code=row.last_error_code,
        message=row.last_error_message or "",
        attempts=int(row.attempts),
        at=_utc(row.updated_at),
    )


def _utc(moment: datetime) -> datetime:
    # SQLite keeps no time zone; every time the queue writes is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
