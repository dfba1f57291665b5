"""Request id, one access-log line per request with per-stage timings, and request metrics.

A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it adds no task or stream copy per request,
which matters when the gateway's own cost per request must stay in the low milliseconds.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.errors import internal_error_response
from gateway.metrics import GatewayMetrics

log = logging.getLogger("gateway.access")
QUIET_ROUTES = frozenset({"/health", "/livez", "/metrics"})  # probes and scrapes every few seconds
CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection before the answer"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            candidate = bytes(value).decode("latin-1")
            if _SAFE_ID.match(candidate):  # never echo arbitrary bytes into logs and headers
                return candidate
    return uuid.uuid4().hex


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_from(scope)
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id
        start = time.perf_counter()
        status = 500

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status, started = message["status"], True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if started:
                raise
            # A bug, not a user error: answered here, in the envelope and with the request id the log
            # line carries, rather than by Starlette's outermost handler, which knows neither.
            log.exception("request_id=%s unhandled error on %s", request_id, scope.get("path"))
            await internal_error_response()(scope, receive, send_with_id)
        finally:
            if not started and state.get("client_gone"):
                status = CLIENT_CLOSED  # nothing was answered: the client left first (guard.py)
            self._record(scope, state, request_id, status, time.perf_counter() - start)

    def _record(
        self, scope: Scope, state: dict[str, Any], request_id: str, status: int, seconds: float
    ) -> None:
        path = scope.get("path", "")
        # The matched route's template (the router sets it), so a metric's labels stay few whatever the
        # paths requested; anything unmatched is "other".
        matched = scope.get("route")
        route = str(getattr(matched, "path", "other")) if matched is not None else "other"
        self.metrics.requests.labels(route, str(status)).inc()
        timings = state.get("timings")
        stages = timings.ms if timings is not None else {}
        if stages:
            self.metrics.observe_stages(stages)
        if route in QUIET_ROUTES and status < 400:
            return  # they would drown the log
        stage_text = " ".join(f"{name}_ms={ms}" for name, ms in stages.items())
        log.info(
            "request_id=%s method=%s path=%s status=%d total_ms=%.1f %s",
            request_id,
            scope.get("method"),
            path,
            status,
            seconds * 1000,
            stage_text,
        )
