"""Search and listing queries: full text (SQLite FTS5 or PostgreSQL tsvector, ranked), filters, cursors.

A query is words, all of which must match (``red umbrella``); a word ending in ``*`` matches as a prefix
(``umbrell*``). Nothing else in the query is syntax, so no input can break or widen the statement.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, literal_column, select, table, text, tuple_

from gateway.catalogue.schema import captions
from gateway.errors import InvalidInput
from gateway.records import Origin, ReviewStatus
from gateway.sources.s3_uri import parse_prefix

MAX_TERMS = 16
_TERM = re.compile(r"(\w+)(\*?)")
_FTS = table("captions_fts")
# Column weights for ranking: the caption counts most, then keywords, then text read in the image.
_SQLITE_RANK = "bm25(captions_fts, 3.0, 2.0, 1.0)"


@dataclass(frozen=True)
class CaptionQuery:
    q: str | None = None
    s3_prefix: str | None = None
    status: ReviewStatus | None = None
    source: Origin | None = None
    since: datetime | None = None
    limit: int = 50
    cursor: str | None = None


def terms(q: str) -> list[tuple[str, bool]]:
    """The words of a query, lower-cased, each with whether it is a prefix."""
    found = [(word.lower(), star == "*") for word, star in _TERM.findall(q)]
    if not found:
        raise InvalidInput("q has no words to search for", code="invalid_query")
    return found[:MAX_TERMS]


def statement(query: CaptionQuery, dialect: str) -> Select[Any]:
    """The page's SELECT: one row more than ``limit``, so the caller knows whether another page follows."""
    where = _filters(query)
    cursor = _decode(query)
    if query.q:
        return _ranked(terms(query.q), dialect, where, cursor.get("o", 0), query.limit + 1)
    return _newest_first(where, cursor).limit(query.limit + 1)


def next_cursor(query: CaptionQuery, last: Any) -> str:
    """Ranked results page by offset (ranks are recomputed per query); the newest-first listing by
    (created_at, id), so rows added meanwhile never shift a page."""
    if query.q:
        return _encode({"o": int(_decode(query).get("o", 0)) + query.limit})
    return _encode({"t": last.created_at.isoformat(), "i": int(last.id)})


def _filters(query: CaptionQuery) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if query.status:
        where.append(captions.c.status == query.status)
    if query.source:
        where.append(captions.c.source == query.source)
    if query.since:
        since = query.since if query.since.tzinfo else query.since.replace(tzinfo=UTC)
        # In UTC: SQLite compares the stored text, which is UTC without a zone.
        where.append(captions.c.created_at >= since.astimezone(UTC))
    if query.s3_prefix:
        prefix = parse_prefix(query.s3_prefix)
        where.append(captions.c.bucket == prefix.bucket)
        if prefix.key:  # substr, not LIKE: exact and case-sensitive on both engines, no escaping to get wrong
            where.append(func.substr(captions.c.key, 1, len(prefix.key)) == prefix.key)
    return where


def _ranked(
    words: list[tuple[str, bool]], dialect: str, where: list[Any], offset: int, limit: int
) -> Select[Any]:
    if dialect == "sqlite":
        return _ranked_sqlite(words, where, offset, limit)
    tsquery = func.to_tsquery(literal_column("'simple'::regconfig"), " & ".join(_pg_term(*w) for w in words))
    search: ColumnElement[Any] = literal_column("captions.search")
    rank: ColumnElement[Any] = func.ts_rank(search, tsquery)
    return (
        select(captions, rank.label("rank"))
        .where(search.op("@@")(tsquery), *where)
        .order_by(rank.desc(), captions.c.id)
        .offset(offset)
        .limit(limit)
    )


def _ranked_sqlite(words: list[tuple[str, bool]], where: list[Any], offset: int, limit: int) -> Select[Any]:
    match = text("captions_fts MATCH :match").bindparams(
        match=" ".join(f'"{word}"' + ("*" if prefix else "") for word, prefix in words)
    )
    bm25: ColumnElement[Any] = literal_column(_SQLITE_RANK)
    rowid: ColumnElement[Any] = literal_column("captions_fts.rowid")
    if where:  # filters live in the captions table: every match is joined, then ranked
        return (
            select(captions, bm25.label("rank"))
            .select_from(_FTS.join(captions, rowid == captions.c.id))
            .where(match, *where)
            .order_by(bm25, captions.c.id)
            .offset(offset)
            .limit(limit)
        )
    # Ranked inside the index first, and only the page's rows read from the table: joining every match
    # (thousands for common words) cost twice the CPU and most of the disk reads (benchmarks/bench_catalogue).
    top = (
        select(rowid.label("id"), bm25.label("rank"))
        .select_from(_FTS)
        .where(match)
        .order_by(bm25, rowid)
        .offset(offset)
        .limit(limit)
        .subquery("top")
    )
    return (
        select(captions, top.c.rank)
        .join_from(top, captions, top.c.id == captions.c.id)
        .order_by(top.c.rank, captions.c.id)
    )


def _pg_term(word: str, prefix: bool) -> str:
    return word + (":*" if prefix else "")  # words are \w+ only: nothing in them is tsquery syntax


def _newest_first(where: list[Any], cursor: dict[str, Any]) -> Select[Any]:
    if cursor:
        after = (datetime.fromisoformat(cursor["t"]), int(cursor["i"]))
        where = [*where, tuple_(captions.c.created_at, captions.c.id) < tuple_(*after)]
    return (
        select(captions)
        .where(and_(True, *where))
        .order_by(captions.c.created_at.desc(), captions.c.id.desc())
    )


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(query: CaptionQuery) -> dict[str, Any]:
    if not query.cursor:
        return {}
    try:
        data = json.loads(base64.urlsafe_b64decode(query.cursor + "=" * (-len(query.cursor) % 4)))
        if query.q:
            valid = isinstance(data, dict) and data.keys() == {"o"} and isinstance(data["o"], int)
        else:
            valid = isinstance(data, dict) and data.keys() == {"t", "i"} and isinstance(data["i"], int)
            if valid:
                datetime.fromisoformat(data["t"])  # a forged time raises ValueError
    except (ValueError, binascii.Error, TypeError):
        valid = False
    if not valid:
        raise InvalidInput("cursor is not one this API handed out for this query", code="invalid_cursor")
    return data  # type: ignore[no-any-return]
