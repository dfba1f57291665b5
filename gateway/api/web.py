"""``GET /review``: the review page, static files shipped in the package (``gateway/web/``), no build step.

The page and its files are public (they hold no data; every call they make needs the key) and are sent with
a strict Content-Security-Policy: scripts and styles only from these files, no inline code, no framing,
nothing fetched from elsewhere. Everything a model wrote is inserted by the page as text, never as HTML.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Response

WEB_PACKAGE = "gateway.web"
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",  # previews are fetched with the key, then shown from blob: URLs
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",  # forms are handled by the page's script; none may navigate anywhere
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-cache",  # revalidated (ETag) on every load: an upgraded gateway's page shows at once
}


@dataclass(frozen=True)
class WebFile:
    body: bytes
    media_type: str
    etag: str

    def response(self, if_none_match: str | None) -> Response:
        headers = {**SECURITY_HEADERS, "ETag": self.etag}
        if if_none_match is not None and self.etag in {t.strip() for t in if_none_match.split(",")}:
            return Response(status_code=304, headers=headers)
        return Response(self.body, media_type=self.media_type, headers=headers)


def load_web_files() -> dict[str, WebFile]:
    """Every file of ``gateway/web`` by name, read once when the app is built."""
    files = {}
    for entry in resources.files(WEB_PACKAGE).iterdir():
        suffix = "." + entry.name.rsplit(".", 1)[-1]
        if entry.is_file() and suffix in MEDIA_TYPES:
            body = entry.read_bytes()
            etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
            files[entry.name] = WebFile(body, MEDIA_TYPES[suffix], etag)
    return files


def web_router() -> APIRouter:
    files = load_web_files()
    router = APIRouter(include_in_schema=False)

    @router.get("/review")
    async def review_page(if_none_match: Annotated[str | None, Header()] = None) -> Response:
        return files["index.html"].response(if_none_match)

    @router.get("/review/static/{name}")
    async def review_file(name: str, if_none_match: Annotated[str | None, Header()] = None) -> Response:
        found = files.get(name) if name != "index.html" else None
        if found is None:
            raise HTTPException(404, "Not Found")
        return found.response(if_none_match)

    return router
