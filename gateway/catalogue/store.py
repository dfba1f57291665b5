"""The catalogue: every caption result kept, one row per (image version, parameters), searchable.

``Catalogue`` is what the rest of the gateway sees; nothing outside ``gateway/catalogue/`` imports
SQLAlchemy. Every method raises ``CatalogueUnavailable`` when the database is down (``Database`` maps it),
so callers decide what a missing catalogue means for them: the API answers uncached, batch keeps writing DEST.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.dialects.postgresql import insert as postgres_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row

from gateway.catalogue.database import Database
from gateway.catalogue.group_commit import GroupCommit
from gateway.catalogue.schema import captions
from gateway.catalogue.search import CaptionQuery, next_cursor, statement
from gateway.errors import CaptionNotFound, CatalogueUnavailable
from gateway.records import CaptionLine, CaptionParams, CatalogueEntry, EditedFields, Origin, WriteBackState
from gateway.sources.s3_uri import parse_s3_uri

SEARCH_TIMEOUT_S = 10.0
UNIQUE = ("identity", "params_key")  # one row per image version and parameters
EXPORT_BATCH = 500


def identity_of(s3_uri: str | None, etag: str | None, sha256: str | None = None) -> str:
    """One image version: an S3 object and the ETag S3 gave it, ``s3://bucket/key@etag``; bytes sent or
    fetched from a URL are their own version, ``sha256:<hex>`` (a URL's content can change, its bytes
    cannot, so a URL is kept by what it served)."""
    if s3_uri:
        return f"{s3_uri}@{etag or ''}"
    if not sha256:
        raise ValueError("an image without an S3 URI is kept by its SHA-256")
    return f"sha256:{sha256}"


@dataclass(frozen=True)
class Page:
    items: list[CatalogueEntry]
    next_cursor: str | None


class Catalogue:
    def __init__(self, database: Database) -> None:
        self.database = database
        # The upsert is built once: constructing it (its ``excluded`` alias copies every column) cost ~0.6 ms
        # of CPU per stored caption, a tenth of the gateway's own cost per request (issue 16's profile).
        self._stores = GroupCommit(database, _refreshing_upsert(database.dialect))

    @property
    def engine_name(self) -> str:
        return self.database.dialect

    @property
    def available(self) -> bool:
        """False for a few seconds after the database failed: callers skip it rather than wait."""
        return self.database.up

    async def lookup(self, identity: str, params: CaptionParams) -> CatalogueEntry | None:
        """The stored result for this image version (``identity_of``) and these params, if any."""
        stmt = select(captions).where(captions.c.identity == identity, captions.c.params_key == params.key())
        async with self.database.connect() as connection:
            row = (await connection.execute(stmt)).first()
        return entry_of(row) if row is not None else None

    async def store(
        self,
        line: CaptionLine,
        params: CaptionParams,
        source: Origin,
        *,
        write_back: WriteBackState | None = None,
    ) -> int:
        """Keeps a result; a result for the same version and params replaces the model's text (a refresh)
        but never a person's edit, and sends a decided caption whose text changed back to review.
        ``write_back``: what the producer wrote beside the image, or deferred to approval."""
        values = _values(line, params, source)
        values["write_back"] = _json(write_back)
        return await self._stores.store(values)

    async def restore(self, entry: CatalogueEntry) -> int:
        """Puts back an exported entry as it was (review status, edits, times); ``db import`` uses it."""
        line = line_of(entry)
        values = {
            **_values(line, entry.params, entry.source),
            **search_text(line, entry.edited),
            "status": entry.status,
            "edited": _json(entry.edited),
            "write_back": _json(entry.write_back),
            "created_at": entry.created_at,
            "updated_at": entry.updated_at,
        }
        return await self._upsert(values, lambda new: {k: new[k] for k in values if k not in UNIQUE})

    async def _upsert(self, values: dict[str, Any], on_conflict: Callable[[Any], dict[str, Any]]) -> int:
        """Inserts a row, or updates the one with the same (identity, params_key) with ``on_conflict`` of
        the proposed row; returns the row's id."""
        insert = postgres_insert if self.database.dialect == "postgresql" else sqlite_insert
        new = insert(captions).values(**values)
        upsert = new.on_conflict_do_update(index_elements=list(UNIQUE), set_=on_conflict(new.excluded))
        async with self.database.begin() as connection:
            return int((await connection.execute(upsert.returning(captions.c.id))).scalar_one())

    async def get(self, caption_id: int) -> CatalogueEntry:
        async with self.database.connect() as connection:
            row = (await connection.execute(select(captions).where(captions.c.id == caption_id))).first()
        if row is None:
            raise CaptionNotFound(f"no caption with id {caption_id} in the catalogue")
        return entry_of(row)

    async def search(self, query: CaptionQuery) -> Page:
        async with self.database.connect(SEARCH_TIMEOUT_S) as connection:
            rows = (await connection.execute(statement(query, self.database.dialect))).all()
        more = len(rows) > query.limit
        rows = rows[: query.limit]
        return Page([entry_of(r) for r in rows], next_cursor(query, rows[-1]) if more and rows else None)

    async def export(self) -> AsyncIterator[CatalogueEntry]:
        """Every entry in id order, a batch at a time (the whole catalogue is never in memory)."""
        after = 0
        while True:
            stmt = select(captions).where(captions.c.id > after).order_by(captions.c.id).limit(EXPORT_BATCH)
            async with self.database.connect(SEARCH_TIMEOUT_S) as connection:
                rows = (await connection.execute(stmt)).all()
            for row in rows:
                yield entry_of(row)
            if len(rows) < EXPORT_BATCH:
                return
            after = int(rows[-1].id)

    async def count(self) -> int:
        async with self.database.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(captions))).scalar_one())

    async def ping(self) -> bool:
        try:
            async with self.database.connect() as connection:
                await connection.execute(select(1))
        except CatalogueUnavailable:
            return False
        return True


def line_of(entry: CatalogueEntry) -> CaptionLine:
    """The model's line an entry holds (without review fields or a person's edits)."""
    return CaptionLine.model_validate(entry.model_dump(include=set(CaptionLine.model_fields)))


def _json(model: EditedFields | WriteBackState | None) -> dict[str, Any] | None:
    return model.model_dump(mode="json", exclude_none=True) if model is not None else None


def _values(line: CaptionLine, params: CaptionParams, source: Origin) -> dict[str, Any]:
    location = parse_s3_uri(line.s3_uri) if line.s3_uri else None
    now = datetime.now(UTC)
    record = line.model_dump(mode="json", exclude_none=True, exclude={"etag", "timings"})
    if line.image_url:
        record["image_url"] = kept_url(line.image_url)
    return {
        "identity": identity_of(line.s3_uri, line.etag, line.image_sha256),
        "params_key": params.key(),
        "s3_uri": line.s3_uri,
        "bucket": location.bucket if location else None,
        "key": location.key if location else None,
        "etag": line.etag,
        "image_sha256": line.image_sha256,
        "params": params.model_dump(mode="json"),
        "record": record,
        "timings": line.timings,
        **search_text(line, None),
        "source": source,
        "status": "pending",
        "created_at": now,
        "updated_at": now,
    }


def kept_url(url: str) -> str:
    """A URL as the catalogue keeps it: without its query and fragment, where a signed URL carries its
    credentials (``X-Amz-Signature=...``); the response to the request echoes it whole."""
    return url.split("#", 1)[0].split("?", 1)[0]


def search_text(line: CaptionLine, edited: EditedFields | None) -> dict[str, str]:
    """What search finds a row by: a person's edit where there is one, the model's text otherwise."""
    keywords = edited.keywords if edited and edited.keywords is not None else line.keywords
    return {
        "caption": edited.caption if edited and edited.caption else line.caption,
        "keywords": " ".join(keywords or []),
        "visible_text": " ".join(line.visible_text or []),
    }


def _refreshing_upsert(dialect: str) -> Any:
    """``store``'s statement, its values given when it runs: insert, or refresh the row (``_refresh``)."""
    insert = postgres_insert if dialect == "postgresql" else sqlite_insert
    new = insert(captions)
    refresh = new.on_conflict_do_update(index_elements=list(UNIQUE), set_=_refresh(new.excluded))
    return refresh.returning(captions.c.id)


def _refresh(new: Any) -> dict[str, Any]:
    """The columns a repeat of (version, params) updates; a person's edit keeps its searchable text, and a
    decision stands while the model's text is the same (a re-run must not undo a day of review)."""
    edited = captions.c.edited.is_not(None)
    same_text = and_(captions.c.caption == new.caption, captions.c.keywords == new.keywords)
    return {
        "record": new.record,
        "timings": new.timings,
        "source": new.source,
        "updated_at": new.updated_at,
        "caption": case((edited, captions.c.caption), else_=new.caption),
        "keywords": case((edited, captions.c.keywords), else_=new.keywords),
        "visible_text": case((edited, captions.c.visible_text), else_=new.visible_text),
        "status": case((edited, captions.c.status), (same_text, captions.c.status), else_="pending"),
        "write_back": func.coalesce(new.write_back, captions.c.write_back),
    }


def entry_of(row: Row[Any]) -> CatalogueEntry:
    return CatalogueEntry(
        **row.record,
        etag=row.etag,
        timings=row.timings,
        id=row.id,
        status=row.status,
        source=row.source,
        created_at=_utc(row.created_at),
        updated_at=_utc(row.updated_at),
        params=row.params,
        edited=row.edited,
        write_back=row.write_back,
    )


def _utc(moment: datetime) -> datetime:
    # SQLite keeps no time zone; every time the catalogue writes is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
