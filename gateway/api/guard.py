"""The front door, in plain ASGI before FastAPI parses anything: API key, body cap, admission, disconnects.

Per request, in this order, from the matched route's ``RoutePolicy``:

1. ``HEAD`` is answered wherever ``GET`` is (FastAPI routes only the methods they list).
2. Authentication from the headers alone: a request without a valid key is a 401 before one byte of its
   body is read (``API_KEYS``; a route may carry its own keys, as the S3 events route will).
3. The body is read here, capped while streaming (``MAX_REQUEST_BYTES``: a 413, from ``Content-Length``
   when it is sent, else as soon as the bytes pass the cap) and timed (``CLIENT_BODY_TIMEOUT_S``: a 408).
   A route that streams its own body (``POST /caption``: an upload or base64 image of up to
   ``MAX_IMAGE_BYTES``, read under an image slot) gets it passed through, with the same cap and deadline
   applied as the route reads: held whole here, concurrent uploads would cost memory no slot bounds.
4. Admission control (``gateway.admission``) for routes that do expensive work: 429 when full.
5. For those routes, a client that disconnects cancels its request's task, wherever it is: in the queue,
   fetching, or waiting on the VLM (whose HTTP request is then closed, so vLLM stops generating).

Which routes are protected: every route is, except the public ones ``create_app`` lists (probes, metrics,
styles, the API docs). A route added later is protected unless it is made public on purpose, and so is a
path no route serves (a 401 without a key, a 404 with one): nothing reaches the app without the check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from fastapi.routing import iter_route_contexts
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admission import Admission
from gateway.api.errors import error_response, gateway_error_response
from gateway.errors import BodyTooSlow, Overloaded, RequestTooLarge


@dataclass(frozen=True)
class BearerKeys:
    """``Authorization: Bearer <key>`` with one of ``keys`` (or, with ``basic``, a Basic password: SNS sends
    its URL's credentials so), compared in constant time. ``challenge`` goes in a 401's WWW-Authenticate."""

    keys: tuple[bytes, ...]
    basic: bool = False
    challenge: str = "Bearer"

    @classmethod
    def of(cls, keys: Sequence[str], *, basic: bool = False, challenge: str = "Bearer") -> BearerKeys | None:
        """None (no check) when no key is configured."""
        return cls(tuple(key.encode() for key in keys), basic, challenge) if keys else None

    def allows(self, authorization: bytes | None) -> bool:
        scheme, _, token = (authorization or b"").partition(b" ")
        offered = b""
        if scheme.lower() == b"bearer":
            offered = token.strip()
        elif scheme.lower() == b"basic" and self.basic:
            offered = _basic_password(token.strip())
        matched = False
        for key in self.keys:  # every key, so timing tells nothing about which one nearly matched
            matched |= hmac.compare_digest(offered, key)
        return matched


def _basic_password(token: bytes) -> bytes:
    try:
        return base64.b64decode(token, validate=True).partition(b":")[2]
    except (binascii.Error, ValueError):
        return b""


@dataclass(frozen=True)
class RoutePolicy:
    auth: BearerKeys | None  # None: no key needed
    max_body_bytes: int
    body_timeout_s: float
    admission: Admission | None = None  # set for routes that do expensive work; they also watch disconnects
    cap_source: str = "MAX_REQUEST_BYTES"  # what the 413 names as the cap's origin
    streams_body: bool = False  # True: the route reads its body as it arrives (see the module's point 3)


@dataclass(frozen=True)
class GuardPolicies:
    protected: RoutePolicy  # every route not named below
    public: RoutePolicy
    public_paths: frozenset[str]
    overrides: Mapping[str, RoutePolicy] = field(default_factory=dict)  # by route path, e.g. "/caption"

    def for_path(self, path: str | None) -> RoutePolicy:
        """``path`` is the route's template; None when no route serves the request's path."""
        if path is None:
            return self.protected  # no route: a 404 to those with a key, a 401 to the others
        if path in self.overrides:
            return self.overrides[path]
        return self.public if path in self.public_paths else self.protected


@dataclass(frozen=True)
class _Matched:
    path: str | None  # the route's template, e.g. "/caption"; None: no route has this path
    methods_ok: bool  # False: the route exists but not for this method (answered 405 here)
    route: BaseRoute | None = None
    allowed: frozenset[str] = frozenset()  # with methods_ok False: every method some route takes here


class _ClientGone(Exception):
    pass


class _Refusal(Exception):
    def __init__(
        self, status: int, message: str, kind: str, code: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code
        self.headers = headers or {}


class RequestGuard:
    def __init__(self, app: ASGIApp, routes: Callable[[], Sequence[BaseRoute]], policies: GuardPolicies):
        """``routes``: the app's routes (``app.router.routes``), read per request."""
        self.app = app
        self._routes = routes  # read per request: routes included after the app was built count too
        self.policies = policies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        inner, send, matched = self._head_as_get(scope, send)
        if matched.route is not None:
            scope["route"] = matched.route  # for the access log and metrics, also when refused here
        # A wrong method is a 405, whoever asks: it tells nothing the schema does not.
        policy = self.policies.for_path(matched.path) if matched.methods_ok else self.policies.public
        headers = dict(inner["headers"])
        try:
            if not matched.methods_ok:
                raise _not_allowed(matched.allowed)
            self._check_headers(headers, policy)
            body = None if policy.streams_body else await self._read_body(headers, receive, policy)
        except _Refusal as refusal:
            await self._refuse(refusal, inner, receive, send)
            return
        except _ClientGone:
            scope.setdefault("state", {})["client_gone"] = True
            return
        body_read: asyncio.Event | None = None  # None: the app has nothing left to read
        replay: Receive
        if policy.streams_body and _has_body(headers):
            streamed = _StreamedBody(receive, policy, watched=policy.admission is not None)
            replay, body_read, send = streamed, streamed.done, streamed.closing(send)
        else:
            # Its body (empty when none was sent) from here: the server's own messages are left to the
            # disconnect watch, which would otherwise take the one empty-body message the app waits for.
            replay = _replay(body or b"", receive)
        if policy.admission is None:
            await self.app(inner, replay, send)
            return
        refused = policy.admission.refusal()
        if refused is not None:  # answered here and now: no task, no watch, nothing started
            await gateway_error_response(refused)(inner, replay, send)
            return
        await self._admitted(policy.admission, inner, replay, _after(body_read, receive), send)

    def _head_as_get(self, scope: Scope, send: Send) -> tuple[Scope, Send, _Matched]:
        matched = self._match(scope)
        if scope["method"] != "HEAD" or matched.methods_ok:
            return scope, send, matched
        as_get = {**scope, "method": "GET"}
        matched_get = self._match(as_get)
        if not matched_get.methods_ok:
            return scope, send, matched

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}  # Content-Length stays the GET's, as HTTP asks
            await send(message)

        return as_get, headers_only, matched_get

    def _match(self, scope: Scope) -> _Matched:
        """Matches the way the router will, over every route including those of included routers. Read
        per request (~20 us), so a route added at any time is matched, and guarded, at once."""
        path = _route_path(scope)
        partial, allowed = None, set()
        for context in iter_route_contexts(self._routes()):
            regex = getattr(context, "path_regex", None)
            if regex is None or not regex.match(path):
                continue
            methods = context.methods
            if methods is None or scope["method"] in methods:
                return _Matched(context.path, True, context.original_route)
            # Several routes can share a path (GET and PATCH /v1/captions/{id} live in two routers): the
            # router's own 405 names only the first one's methods, so Allow is gathered here from all.
            allowed |= methods
            partial = partial or _Matched(context.path, False, context.original_route)
        if partial is None:
            return _Matched(None, True)
        return replace(partial, allowed=frozenset(allowed | ({"HEAD"} if "GET" in allowed else set())))

    def _check_headers(self, headers: dict[bytes, bytes], policy: RoutePolicy) -> None:
        auth = policy.auth
        if auth is not None and not auth.allows(headers.get(b"authorization")):
            raise _Refusal(
                401,
                "missing or invalid API key",
                "authentication_error",
                "invalid_api_key",
                {"WWW-Authenticate": auth.challenge} if auth.challenge else None,
            )
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > policy.max_body_bytes:
            raise _too_large(policy)

    async def _read_body(
        self, headers: dict[bytes, bytes], receive: Receive, policy: RoutePolicy
    ) -> bytes | None:
        """The whole body, or None when the request has none (then nothing is read here)."""
        if not _has_body(headers):
            return None
        chunks, size = [], 0
        try:
            async with asyncio.timeout(policy.body_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > policy.max_body_bytes:
                        raise _too_large(policy)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _Refusal(
                408,
                f"the request body did not arrive within {policy.body_timeout_s:g} s (CLIENT_BODY_TIMEOUT_S)",
                "timeout_error",
                "request_timeout",
            ) from None

    async def _refuse(self, refusal: _Refusal, scope: Scope, receive: Receive, send: Send) -> None:
        # The body may be unread (or still trickling in): close the connection rather than read it.
        headers = {"Connection": "close", **refusal.headers}
        response = error_response(refusal.status, refusal.message, refusal.kind, refusal.code, headers)
        await response(scope, receive, send)

    async def _admitted(
        self, admission: Admission, scope: Scope, replay: Receive, receive: Receive, send: Send
    ) -> None:
        answered = asyncio.Event()

        async def send_noting_the_end(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered.set()

        work = asyncio.ensure_future(self._admit_then_run(admission, scope, replay, send_noting_the_end))
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            await asyncio.gather(gone, return_exceptions=True)  # nothing left unretrieved
            if not work.done() and not answered.is_set():
                # The client left before its answer: stop the work (queued, fetching or at the VLM).
                scope.setdefault("state", {})["client_gone"] = True
                work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work

    async def _admit_then_run(self, admission: Admission, scope: Scope, replay: Receive, send: Send) -> None:
        try:
            async with admission.slot():
                await self.app(scope, replay, send)
        except Overloaded as exc:
            await gateway_error_response(exc)(scope, replay, send)


class _StreamedBody:
    """The app's ``receive`` for a route that streams its body: the guard's cap and deadline, applied as
    the route reads. Refusals are raised into the route (a ``GatewayError``, answered in the envelope)."""

    def __init__(self, receive: Receive, policy: RoutePolicy, *, watched: bool) -> None:
        self._receive, self._policy, self._watched = receive, policy, watched
        # Only the time spent waiting for the client counts: the route may wait between reads for an
        # admission place or an image slot, and that is the server's time, not the client's.
        self._budget_s = policy.body_timeout_s
        self._size = 0
        self._refused = False
        self.done = asyncio.Event()  # the body is whole: from here on, receive() only reports a disconnect

    async def __call__(self) -> Message:
        if self.done.is_set():
            return await self._receive()
        started = asyncio.get_running_loop().time()
        try:
            async with asyncio.timeout(max(self._budget_s, 0.0)):
                message = await self._receive()
        except TimeoutError:
            self.done.set()
            self._refused = True
            raise BodyTooSlow(
                f"the request body did not arrive within {self._policy.body_timeout_s:g} s "
                "(CLIENT_BODY_TIMEOUT_S)"
            ) from None
        self._budget_s -= asyncio.get_running_loop().time() - started
        if message["type"] == "http.disconnect":
            self.done.set()
            if self._watched:
                # The guard's watch reads the same disconnect and cancels this request (a 499); handing it
                # to the route instead would end the request as an error.
                await asyncio.Event().wait()
            return message
        if not message.get("more_body", False):
            self.done.set()
        self._size += len(message.get("body", b""))
        if self._size > self._policy.max_body_bytes:
            self.done.set()
            self._refused = True
            raise RequestTooLarge(_too_large(self._policy).message)
        return message

    def closing(self, send: Send) -> Send:
        """``send`` that closes the connection after a refused body: the rest of it is never read."""

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self._refused:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        return send_closing


def _after(event: asyncio.Event | None, receive: Receive) -> Receive:
    """``receive`` for the disconnect watch, once the app has the whole body (before, the app's reads
    are the ones that see a disconnect)."""
    if event is None:
        return receive

    async def watched() -> Message:
        await event.wait()
        return await receive()

    return watched


def _has_body(headers: dict[bytes, bytes]) -> bool:
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0") not in (b"0", b"")


def _not_allowed(allowed: frozenset[str]) -> _Refusal:
    return _Refusal(
        405,
        "Method Not Allowed",
        "invalid_request_error",
        "method_not_allowed",
        {"Allow": ", ".join(sorted(allowed))},
    )


def _too_large(policy: RoutePolicy) -> _Refusal:
    return _Refusal(
        413,
        f"the request body exceeds {policy.max_body_bytes} bytes ({policy.cap_source})",
        "request_too_large_error",
        "request_too_large",
    )


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hands the app the body read here, then the server's own messages (a disconnect, later)."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


async def _disconnected(receive: Callable[[], Awaitable[Message]]) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
