"""Images by URL (``"image_url"``, a batch list of URLs): the one module that fetches from web servers nobody
here controls, built so that it cannot be turned against the network the gateway runs in.

Every connection is opened by ``CheckedNetwork``, the network backend of this client's own connection pool:
it resolves the host once, judges every address it resolved to (``url_policy``) and connects to one of those
same addresses, so there is no second lookup for DNS rebinding to answer differently. The URL keeps its host
name, so the Host header, TLS SNI and certificate verification are the host name's as usual. Redirects are
followed here, at most ``MAX_REDIRECTS``, each hop checked like the first; the body is read with the size cap
while it streams and sniffed as an image from its first bytes (its Content-Type is not trusted).

Why httpcore with a pool of its own rather than the gateway's shared HTTP client: the check belongs where the
socket is opened, and httpcore's pool takes a network backend (``network_backend=``, its documented extension
point), so no code path (a redirect, a retry, a URL parser that reads the host differently from ours) can
reach an address that was not checked. The shared client's transport resolves names in its own resolver.
The pool keeps no idle connections (a fetch is one-off, and a connection is never reused for another host
name) and reads no proxy from the environment (a proxy would resolve the name itself).
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpcore
import httpx

from gateway.errors import (
    ImageTooLarge,
    ImageUrlFailed,
    ImageUrlForbidden,
    ImageUrlTimeout,
    InvalidInput,
    UnsupportedImage,
)
from gateway.imaging import SNIFF_BYTES, identify_format
from gateway.sources.url_policy import DEFAULT_PORTS, Address, UrlPolicy, UrlRefused, numeric_host

Resolver = Callable[[str, int], Awaitable[list[str]]]
MAX_REDIRECTS = 3
MAX_URL_CHARS = 8192
REDIRECTS = frozenset({301, 302, 303, 307, 308})
SHOWN_CHARS = 200
HEADERS = [
    (b"User-Agent", b"florence-tagger (image captioning)"),
    (b"Accept", b"image/*"),
    (b"Accept-Encoding", b"identity"),  # the bytes as stored: no decompression, so no decompression bomb
]


@dataclass(frozen=True)
class UrlHooks:
    """What a test swaps under the checks: the resolver, the network backend that opens the sockets (one
    that refuses anything beyond loopback), the TLS trust (a test CA). Production passes none."""

    resolver: Resolver | None = None
    network: httpcore.AsyncNetworkBackend | None = None
    ssl_context: ssl.SSLContext | None = None


@dataclass(frozen=True)
class FetchedUrl:
    url: str  # where the bytes came from, after redirects
    data: bytes
    sha256: str


async def system_resolver(host: str, port: int) -> list[str]:
    """The system's resolver (``getaddrinfo`` in asyncio's thread pool): every address, in its order."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def shown(url: httpx.URL) -> str:
    """A URL as messages and logs show it: no credentials, no query (a signed URL's signature is there)."""
    host = url.netloc.decode("ascii", "replace").rpartition("@")[2]
    return f"{url.scheme}://{host}{url.path}"[:SHOWN_CHARS]


def parse_image_url(text: str) -> httpx.URL:
    """An absolute URL, or ``invalid_image_url``; whether it may be fetched is ``UrlPolicy``'s question."""
    try:
        url = httpx.URL(text) if len(text) <= MAX_URL_CHARS else None
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"not a valid image URL: {exc}", code="invalid_image_url") from None
    if url is None or not url.is_absolute_url:
        raise InvalidInput(
            "image_url must be an absolute URL such as https://example.com/photo.jpg "
            f"(at most {MAX_URL_CHARS} characters)",
            code="invalid_image_url",
        )
    return url


class CheckedNetwork(httpcore.AsyncNetworkBackend):
    """Connects only to addresses the policy has judged, resolving each host once per connection."""

    def __init__(
        self,
        policy: UrlPolicy,
        resolver: Resolver,
        inner: httpcore.AsyncNetworkBackend,
        resolve_timeout_s: float,
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._inner = inner
        self._resolve_timeout_s = resolve_timeout_s

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        failure: Exception | None = None
        for address in await self.checked_addresses(host, port):
            try:  # the checked address itself: the inner backend gets an IP literal, never a name
                return await self._inner.connect_tcp(
                    str(address), port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None  # checked_addresses never returns an empty list
        raise failure

    async def checked_addresses(self, host: str, port: int) -> list[Address]:
        self._policy.check_name(host, port)  # a denied name is not even looked up
        literal = numeric_host(host)
        if literal is not None:
            return self._policy.check_addresses(host, port, [literal])
        try:
            async with asyncio.timeout(self._resolve_timeout_s):
                found = await self._resolver(host, port)
        except TimeoutError:
            raise httpcore.ConnectTimeout(
                f"resolving {host} took over {self._resolve_timeout_s:g} s"
            ) from None
        except OSError as exc:  # socket.gaierror: no such name, or no DNS
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc.strerror or exc}") from None
        addresses = [numeric_host(a) for a in found]
        if None in addresses:
            raise UrlRefused(f"the resolver answered something that is not an address for {host}")
        return self._policy.check_addresses(host, port, [a for a in addresses if a is not None])

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise UrlRefused("image URLs are fetched over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class UrlSource:
    """Fetches one image by URL under ``policy``: capped, timed, checked at every hop."""

    def __init__(
        self,
        policy: UrlPolicy,
        *,
        max_bytes: int,
        connect_timeout_s: float,
        timeout_s: float,
        hooks: UrlHooks | None = None,
    ) -> None:
        hooks = hooks or UrlHooks()
        self.policy = policy
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        backend = CheckedNetwork(
            policy,
            hooks.resolver or system_resolver,
            hooks.network or httpcore.AnyIOBackend(),
            connect_timeout_s,
        )
        self._timeouts = {
            "connect": connect_timeout_s,
            "read": timeout_s,
            "write": timeout_s,
            "pool": timeout_s,
        }
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=hooks.ssl_context, max_keepalive_connections=0, network_backend=backend, retries=0
        )

    async def aclose(self) -> None:
        await self._pool.aclose()

    async def fetch(self, text: str) -> FetchedUrl:
        url = parse_image_url(text)
        try:
            async with asyncio.timeout(self._timeout_s):
                return await self._follow(url)
        except TimeoutError:
            raise ImageUrlTimeout(
                f"{shown(url)} did not send the image within {self._timeout_s:g} s (IMAGE_URL_TIMEOUT_S)"
            ) from None

    async def _follow(self, url: httpx.URL) -> FetchedUrl:
        for _ in range(MAX_REDIRECTS + 1):
            async with self._get(url) as response:
                if response.status in REDIRECTS:
                    url = _redirected(url, response)
                    continue
                if not 200 <= response.status < 300:
                    raise ImageUrlFailed(
                        f"{shown(url)} answered HTTP {response.status}", code="image_url_bad_status"
                    )
                data, digest = await self._read(url, response)
                return FetchedUrl(str(url), data, digest)
        raise ImageUrlFailed(f"{shown(url)}: more than {MAX_REDIRECTS} redirects", code="image_url_redirects")

    @asynccontextmanager
    async def _get(self, url: httpx.URL) -> AsyncIterator[httpcore.Response]:
        port = url.port or DEFAULT_PORTS.get(url.scheme, 0)
        try:
            self.policy.check_url(url.scheme, url.userinfo, url.host, port)
            target = httpcore.URL(
                scheme=url.scheme.encode(), host=url.raw_host, port=port, target=url.raw_path
            )
            headers = [(b"Host", url.netloc.rpartition(b"@")[2]), *HEADERS]
            async with self._pool.stream(
                "GET", target, headers=headers, extensions={"timeout": self._timeouts}
            ) as response:
                yield response
        except UrlRefused as exc:
            raise ImageUrlForbidden(f"{shown(url)} is not fetched: {exc}") from None
        except httpcore.TimeoutException as exc:
            raise ImageUrlTimeout(f"{shown(url)} timed out: {exc or type(exc).__name__}") from None
        except httpcore.ConnectError as exc:
            raise ImageUrlFailed(f"cannot connect to {shown(url)}: {exc or 'refused'}") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise ImageUrlFailed(f"{shown(url)} broke off: {exc or type(exc).__name__}") from None

    async def _read(self, url: httpx.URL, response: httpcore.Response) -> tuple[bytes, str]:
        length = _content_length(response)
        if length is not None and length > self._max_bytes:
            raise ImageTooLarge(
                f"{shown(url)} is {length} bytes; the limit is {self._max_bytes} (MAX_IMAGE_BYTES)"
            )
        buffer, digest = bytearray(), hashlib.sha256()
        sniffed = False
        async for chunk in response.aiter_stream():
            buffer += chunk
            digest.update(chunk)
            if len(buffer) > self._max_bytes:  # the length header can be absent or a lie
                raise ImageTooLarge(
                    f"{shown(url)} sent more than {self._max_bytes} bytes (MAX_IMAGE_BYTES); stopped reading"
                )
            if not sniffed and len(buffer) >= SNIFF_BYTES:
                sniffed = _sniffed(url, buffer)
        if not sniffed:
            _sniffed(url, buffer)
        return bytes(buffer), digest.hexdigest()


def _sniffed(url: httpx.URL, head: bytes | bytearray) -> bool:
    """Refuses what is not an image as soon as its first bytes say so (a 20 MB HTML page is not read)."""
    if not head:
        raise UnsupportedImage(f"{shown(url)} sent no bytes", code="image_empty")
    if identify_format(bytes(head[:SNIFF_BYTES])) is None:
        raise UnsupportedImage(
            f"{shown(url)} did not send an image in a supported format (its Content-Type is not trusted)",
            code="unsupported_image",
        )
    return True


def _header(response: httpcore.Response, name: bytes) -> bytes | None:
    return next((value for key, value in response.headers if key.lower() == name), None)


def _content_length(response: httpcore.Response) -> int | None:
    value = _header(response, b"content-length")
    return int(value) if value is not None and value.strip().isdigit() else None


def _redirected(url: httpx.URL, response: httpcore.Response) -> httpx.URL:
    location = _header(response, b"location")
    if location is None:
        raise ImageUrlFailed(
            f"{shown(url)} answered HTTP {response.status} without a Location", code="image_url_bad_status"
        )
    try:
        return url.join(location.decode("latin-1"))
    except httpx.InvalidURL:
        raise ImageUrlFailed(
            f"{shown(url)} redirected to an invalid URL", code="image_url_bad_status"
        ) from None
