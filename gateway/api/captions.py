"""The catalogue over HTTP: search and list captions, read one. Behind ``API_KEYS`` like ``/caption``."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, BeforeValidator, Field

from gateway.api.deps import CatalogueDep
from gateway.api.errors import ERROR_RESPONSES
from gateway.api.schemas import CaptionIdPath
from gateway.catalogue import CaptionQuery
from gateway.records import CatalogueEntry, Origin, ReviewStatus

# Protected: the request guard checks the key; routes.include_routers declares it when API_KEYS is set.
router = APIRouter(prefix="/v1/captions", tags=["catalogue"])
MAX_LIMIT = 200
_NUMBER = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*")


def _iso_only(value: object) -> object:
    # Pydantic also reads a number as seconds since 1970; the schema promises an ISO 8601 date-time, so a
    # number is refused (Schemathesis: `since=0.5` was accepted).
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("an ISO 8601 date-time such as 2026-01-31T12:00:00Z, not a number")
    return value


class CaptionPage(BaseModel):
    items: list[CatalogueEntry]
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null at the end")


@router.get("", response_model=CaptionPage, responses=ERROR_RESPONSES)
async def list_captions(
    catalogue: CatalogueDep,
    q: Annotated[
        str | None,
        Query(
            max_length=500,
            description="Words in the caption, keywords or visible text, all required; "
            "`word*` matches a prefix. Ranked best first; without q, newest first.",
        ),
    ] = None,
    s3_prefix: Annotated[str | None, Query(max_length=1100, description="s3://bucket/prefix/")] = None,
    status: ReviewStatus | None = None,
    source: Origin | None = None,
    since: Annotated[
        datetime | None,
        BeforeValidator(_iso_only),
        Query(description="Created at or after (ISO 8601; UTC if no zone)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> CaptionPage:
    page = await catalogue.search(
        CaptionQuery(
            q=q, s3_prefix=s3_prefix, status=status, source=source, since=since, limit=limit, cursor=cursor
        )
    )
    return CaptionPage(items=page.items, next_cursor=page.next_cursor)


@router.get("/{caption_id:int}", response_model=CatalogueEntry, responses=ERROR_RESPONSES)
async def get_caption(caption_id: CaptionIdPath, catalogue: CatalogueDep) -> CatalogueEntry:
    return await catalogue.get(caption_id)
