"""Every outbound HTTP client of the gateway: httpx's API on aiohttp's connection pool.

httpx stays the API (typed errors, timeouts per request, injected clients, tenacity retries around it);
underneath, ``httpx-aiohttp``'s ``AiohttpTransport`` (the transport openai-python ships as its
``DefaultAioHttpClient``) replaces httpcore, whose pool checks every pooled connection and takes an
``anyio.Lock`` on each request (encode/httpx#3215): about half of the gateway's CPU per request was there.

Two things the plain transport does not do, and this module adds:

* **Pool exhaustion is ``httpx.PoolTimeout``.** aiohttp waits for a free connection under its ``connect``
  timeout and reports it as a connect timeout, which our retry policy would retry (three times the wait)
  and report as "unreachable". Here a semaphore of ``max_connections`` slots is taken first, under
  httpx's ``pool`` timeout, and released when the response is closed: the same contract as httpcore's.
* **A refused connection is ``httpx.ConnectError``**, not ``ConnectTimeout`` (the transport's exception
  table maps every ``ClientConnectionError`` to a connect timeout), so messages say what happened.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from http.client import HTTPResponse
from http.cookiejar import CookieJar
from urllib.request import Request

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

CONNECT_TIMEOUT_S = 3.0
# Under the 5 s after which uvicorn (vLLM) closes an idle keep-alive connection: a connection the server
# is closing is never picked for a new request.
KEEPALIVE_S = 4.0
DEFAULT_LIMITS = httpx.Limits(
    max_connections=100, max_keepalive_connections=100, keepalive_expiry=KEEPALIVE_S
)
Verify = ssl.SSLContext | str | bool  # httpx's own type; the gateway passes a context or a bool


class _ReleasingStream(httpx.AsyncByteStream):
    """The response body; closing it (httpx always does) gives the pool slot back, once."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


class _NoCookies(CookieJar):
    """A jar that keeps nothing. Model servers and S3 set no cookies the gateway needs, and a client shared
    by every request must not carry one (a load balancer's sticky-session cookie would pin the whole
    process to one replica). Keeping nothing also spares httpx an ``email.message`` built per response."""

    def extract_cookies(self, response: HTTPResponse, request: Request) -> None:
        return None


class PooledAiohttpTransport(AiohttpTransport):
    """``AiohttpTransport`` with httpcore's pool contract: at most ``limits.max_connections`` requests in
    flight, a wait for a slot bounded by the request's ``pool`` timeout and reported as ``PoolTimeout``."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: Verify = True,
        trust_env: bool = True,
        proxy: httpx.Proxy | None = None,
    ) -> None:
        # trust_env here only means SSL_CERT_FILE/SSL_CERT_DIR for the TLS context, as in httpx's own.
        super().__init__(verify=verify, trust_env=trust_env, limits=limits, proxy=proxy)
        self._slots = asyncio.Semaphore(limits.max_connections or 2**31)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await self._acquire(request.extensions.get("timeout", {}).get("pool"))
        try:
            response = await self._send(request)
        except BaseException:
            self._slots.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _ReleasingStream(response.stream, self._slots.release)
        return response

    async def _acquire(self, timeout_s: float | None) -> None:
        try:
            async with asyncio.timeout(timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(f"no pooled connection became free within {timeout_s:g} s") from None

    async def _send(self, request: httpx.Request) -> httpx.Response:
        if request.url.userinfo:
            # httpx has turned ``user:pass@`` into an Authorization header already; httpcore never sends the
            # userinfo, and aiohttp refuses a URL that carries it beside that header.
            request.url = request.url.copy_with(username=None, password=None)
        try:
            return await super().handle_async_request(request)
        except httpx.ConnectTimeout as exc:
            cause = exc.__cause__
            if isinstance(cause, aiohttp.ClientConnectorError):
                raise httpx.ConnectError(str(exc), request=request) from cause
            if isinstance(cause, aiohttp.ClientConnectionError) and not isinstance(cause, TimeoutError):
                # The server closed or reset the connection: httpcore calls this a protocol error.
                raise httpx.RemoteProtocolError(str(exc) or type(cause).__name__, request=request) from cause
            raise


class AiohttpClient(httpx.AsyncClient):
    """``httpx.AsyncClient`` whose transports, the proxy ones from ``HTTP(S)_PROXY`` included, are
    ``PooledAiohttpTransport`` (httpx-aiohttp's own ``HttpxAiohttpClient`` does the same with the plain one).
    Passing ``transport=`` instead would switch off httpx's environment proxies."""

    def _init_transport(
        self,
        verify: Verify = True,
        cert: object = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> httpx.AsyncBaseTransport:
        return transport or PooledAiohttpTransport(limits=limits, verify=verify, trust_env=trust_env)

    def _init_proxy_transport(
        self,
        proxy: httpx.Proxy,
        verify: Verify = True,
        cert: object = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = DEFAULT_LIMITS,
    ) -> httpx.AsyncBaseTransport:
        return PooledAiohttpTransport(limits=limits, verify=verify, trust_env=trust_env, proxy=proxy)


def make_http_client(
    headers: dict[str, str] | None,
    timeout_s: float,
    max_connections: int,
    *,
    verify: ssl.SSLContext | bool = True,
) -> httpx.AsyncClient:
    """A pooled keep-alive client; its owner (the wiring's exit stack) closes it.

    ``timeout_s`` bounds each read and the wait for a pooled connection; connecting gets at most
    ``CONNECT_TIMEOUT_S``. Proxies from the environment apply as with plain httpx."""
    return AiohttpClient(
        headers=headers or {},
        cookies=_NoCookies(),
        timeout=httpx.Timeout(timeout_s, connect=min(CONNECT_TIMEOUT_S, timeout_s)),
        limits=httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=KEEPALIVE_S,
        ),
        verify=verify,
    )
