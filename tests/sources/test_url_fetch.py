"""The image-URL client against a loopback web server: TLS to the checked address under the host's name, one
lookup per connection, redirects, and the limits (size while streaming, time, content sniffed)."""

from __future__ import annotations

import hashlib
import ssl
import time
from collections.abc import AsyncIterator

import pytest
import trustme

from gateway.errors import GatewayError
from gateway.sources.url import UrlHooks, UrlSource
from gateway.sources.url_policy import HostList, UrlPolicy
from tests.support.loopback import Connections, StaticResolver
from tests.support.web_server import WebServer


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def web() -> AsyncIterator[WebServer]:
    async with WebServer() as server:
        yield server


@pytest.fixture
async def tls_web(ca: trustme.CA) -> AsyncIterator[WebServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("images.test").configure_cert(context)
    async with WebServer(ssl_context=context) as server:
        yield server


def client(
    server: WebServer, *, max_bytes: int = 4 << 20, timeout_s: float = 5, hooks: UrlHooks | None = None
) -> UrlSource:
    """A client that admits the loopback test server (and nothing else beyond the public internet)."""
    policy = UrlPolicy(
        schemes=frozenset({"http", "https"}),
        ports=frozenset({server.port}),
        allow=HostList.parse("127.0.0.1/32"),
    )
    return UrlSource(policy, max_bytes=max_bytes, connect_timeout_s=2, timeout_s=timeout_s, hooks=hooks)


async def fetch_error(urls: UrlSource, url: str) -> GatewayError:
    try:
        with pytest.raises(GatewayError) as failed:
            await urls.fetch(url)
    finally:
        await urls.aclose()
    return failed.value


async def test_https_goes_to_the_checked_address_under_the_host_name(
    tls_web: WebServer, ca: trustme.CA, connections: Connections
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    names = StaticResolver({"images.test": ["127.0.0.1"]})
    urls = client(tls_web, hooks=UrlHooks(resolver=names, ssl_context=context))
    try:
        fetched = await urls.fetch(tls_web.url("/photo.jpg?size=large", host="images.test"))
    finally:
        await urls.aclose()
    assert fetched.data == tls_web.image
    assert fetched.sha256 == hashlib.sha256(tls_web.image).hexdigest()
    assert tls_web.server_names == ["images.test"]  # SNI: the name, though the socket went to the address
    assert [(r.path, r.host) for r in tls_web.requests] == [("/photo.jpg", f"images.test:{tls_web.port}")]
    assert names.lookups == ["images.test"]
    assert connections.attempted == [("127.0.0.1", tls_web.port)]


async def test_the_certificate_is_verified_for_the_host_name(
    tls_web: WebServer, ca: trustme.CA, connections: Connections
) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    names = StaticResolver({"other.test": ["127.0.0.1"]})  # same address, a name the certificate lacks
    urls = client(tls_web, hooks=UrlHooks(resolver=names, ssl_context=context))
    error = await fetch_error(urls, tls_web.url("/photo.jpg", host="other.test"))
    assert error.code == "image_url_unreachable"
    assert tls_web.requests == []


async def test_each_redirect_hop_is_looked_up_once_and_checked_again(
    web: WebServer, connections: Connections
) -> None:
    """DNS rebinding: the name answers an admitted address first and a private one after. Each connection
    looks the name up once and connects to what it checked; the second hop's answer is refused."""
    names = StaticResolver({"rebind.test": ["127.0.0.1"]})
    original = names.__call__

    async def rebinding(host: str, port: int) -> list[str]:
        answer = await original(host, port)
        names.table["rebind.test"] = ["10.0.0.1"]
        return answer

    urls = client(web, hooks=UrlHooks(resolver=rebinding))
    error = await fetch_error(urls, web.url("/hop/1", host="rebind.test"))
    assert error.code == "image_url_forbidden"
    assert names.lookups == ["rebind.test", "rebind.test"]
    assert connections.attempted == [("127.0.0.1", web.port)]
    assert [r.path for r in web.requests] == ["/hop/1"]


async def test_three_redirects_are_followed_and_a_fourth_is_not(
    web: WebServer, connections: Connections
) -> None:
    urls = client(web)
    try:
        fetched = await urls.fetch(web.url("/hop/3"))
    finally:
        await urls.aclose()
    assert fetched.data == web.image
    assert fetched.url == web.url("/hop/0")
    error = await fetch_error(client(web), web.url("/hop/4"))
    assert error.code == "image_url_redirects"


async def test_a_body_that_never_ends_stops_at_the_cap(web: WebServer, connections: Connections) -> None:
    started = time.monotonic()
    error = await fetch_error(client(web, max_bytes=2 << 20), web.url("/forever"))
    assert error.code == "image_too_large"
    assert time.monotonic() - started < 5  # stopped at the cap, not by the timeout


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    web: WebServer, connections: Connections
) -> None:
    error = await fetch_error(client(web), web.url("/huge"))
    assert error.code == "image_too_large"
    assert "1000000000 bytes" in error.message


async def test_a_server_that_answers_slowly_times_out(web: WebServer, connections: Connections) -> None:
    """A byte a second never trips a read timeout; the whole fetch's deadline stops it."""
    for path in ("/slow", "/stall"):
        started = time.monotonic()
        error = await fetch_error(client(web, timeout_s=1.5), web.url(path))
        assert error.code == "image_url_timeout", path
        assert time.monotonic() - started < 4


async def test_content_is_sniffed_not_trusted_from_its_content_type(
    web: WebServer, connections: Connections
) -> None:
    error = await fetch_error(client(web, max_bytes=32 << 20), web.url("/page"))  # HTML sent as image/jpeg
    assert error.code == "unsupported_image"
    assert "Content-Type is not trusted" in error.message


async def test_server_errors_and_refused_connections_are_the_servers_fault(
    web: WebServer, connections: Connections
) -> None:
    assert (await fetch_error(client(web), web.url("/missing.jpg"))).code == "image_url_bad_status"
    port = web.port
    await web.stop()  # nothing listens on the port now
    policy = UrlPolicy(
        schemes=frozenset({"http"}), ports=frozenset({port}), allow=HostList.parse("127.0.0.1/32")
    )
    closed = UrlSource(policy, max_bytes=1 << 20, connect_timeout_s=2, timeout_s=5)
    error = await fetch_error(closed, f"http://127.0.0.1:{port}/photo.jpg")
    assert error.code == "image_url_unreachable"
