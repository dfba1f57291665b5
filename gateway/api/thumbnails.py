"""``GET /v1/thumbnails``: a small JPEG of an S3 image for the review page, cacheable and revalidated.

Behind ``API_KEYS``: a preview shows an image's content as surely as its caption does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response

from gateway.api.deps import ThumbnailsDep
from gateway.api.errors import ERROR_RESPONSES
from gateway.thumbnails import DEFAULT_SIZE, MAX_SIZE

# Protected: the request guard checks the key; routes.include_routers declares it when API_KEYS is set.
router = APIRouter(tags=["review"])
MIN_SIZE = 16
# Private: it is fetched with a key. Five minutes without asking again, then a cheap revalidation (304).
CACHE_CONTROL = "private, max-age=300"


@router.get(
    "/v1/thumbnails",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "A JPEG, the longer side at most `size` px"},
        304: {"description": "Not modified: the ETag sent in If-None-Match is current"},
        **ERROR_RESPONSES,
    },
)
async def thumbnail(
    thumbnails: ThumbnailsDep,
    s3_uri: Annotated[str, Query(max_length=1100, description="s3://bucket/key of the image")],
    size: Annotated[int, Query(ge=MIN_SIZE, le=MAX_SIZE, description="Longer side, pixels")] = DEFAULT_SIZE,
    if_none_match: Annotated[str | None, Header(max_length=1000)] = None,
) -> Response:
    found = await thumbnails.get(s3_uri, size, if_none_match)
    headers = {"ETag": found.etag, "Cache-Control": CACHE_CONTROL}
    if found.jpeg is None:
        return Response(status_code=304, headers=headers)
    return Response(found.jpeg, media_type="image/jpeg", headers=headers)
