"""How uvicorn serves the app: its options, from Settings, and a protocol that bounds slow and huge headers.

uvicorn times out idle keep-alive connections (``KEEPALIVE_TIMEOUT_S``) but nothing else: a connection that
trickles its request headers a byte at a time, or sends no request at all, stays open for ever, and the
httptools parser takes headers of any size. ``SlowClientProtocol`` adds what nginx calls
``client_header_timeout`` and ``large_client_header_buffers``: a request's headers must arrive whole within
``CLIENT_HEADER_TIMEOUT_S`` of its first byte (or of the connection's opening) and within 64 KiB, or the
connection gets a 408 or 431 in the error envelope and is closed. A slow *body* is the request guard's job
(``CLIENT_BODY_TIMEOUT_S``, see ``guard.py``), since the app reads bodies.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import Settings

MAX_HEADER_BYTES = 64 * 1024
_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


def envelope_response(status: int, message: str, kind: str, code: str) -> bytes:
    """A whole HTTP/1.1 response, for answers given before there is a request to hand to the app."""
    body = orjson.dumps({"error": {"message": message, "type": kind, "code": code}})
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


HEADER_TIMEOUT = envelope_response(
    408, "the request headers did not arrive in time", "timeout_error", "request_timeout"
)
HEADERS_TOO_LARGE = envelope_response(
    431, f"the request headers exceed {MAX_HEADER_BYTES} bytes", "invalid_request_error", "headers_too_large"
)
INVALID_HTTP = envelope_response(
    400, "not a valid HTTP/1.1 request", "invalid_request_error", "invalid_http_request"
)


class SlowClientProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size cap on each request's headers."""

    def __init__(self, *args: Any, header_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timeout_s = header_timeout_s
        self._header_timer: asyncio.TimerHandle | None = None
        self._header_bytes = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_headers()  # a connection that never sends a request is timed out too

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._await_headers()  # the first bytes of the next request on a keep-alive connection
        super().data_received(data)
        if self._header_timer is not None:  # the headers are still incomplete after these bytes
            self._header_bytes += len(data)
            if self._header_bytes > MAX_HEADER_BYTES:
                self._refuse(HEADERS_TOO_LARGE)

    def on_headers_complete(self) -> None:
        self._headers_done()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._headers_done()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's own answer is plain text; the API promises the error envelope everywhere.
        self._headers_done()
        self._refuse(INVALID_HTTP)

    def _await_headers(self) -> None:
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self._header_timeout_s, self._refuse, HEADER_TIMEOUT)

    def _headers_done(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _refuse(self, response: bytes) -> None:
        self._headers_done()
        if not self.transport.is_closing():
            self.transport.write(response)
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Everything ``uvicorn.run`` / ``uvicorn.Config`` needs besides the app, host, port and workers."""
    return {
        # Named, not "auto": auto falls back to asyncio's loop without a word when uvloop is missing, at a
        # cost in CPU per request; the protocol is httptools' (SlowClientProtocol subclasses it). Both come
        # with uvicorn[standard].
        "loop": "uvloop",
        "http": functools.partial(SlowClientProtocol, header_timeout_s=settings.client_header_timeout_s),
        "timeout_keep_alive": settings.keepalive_timeout_s,
        "log_level": settings.log_level,
        "log_config": None,  # gateway.logs configures the root logger; uvicorn's loggers propagate to it
        "access_log": False,  # our middleware logs one line per request, with its request id and timings
        "proxy_headers": True,
    }
