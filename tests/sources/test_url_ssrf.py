"""Server-side request forgery: hostile image URLs, each refused before any connection to where it points.

Each row is fetched by the gateway's URL client with every port of the test listeners allowed, so only the
address rules stand between the URL and a listener that records who connects. The process-wide guard
(``connections`` fixture) records every connection httpcore is asked for and refuses anything beyond
loopback, and the tests run in a network namespace with only a loopback interface: even a wrong check could
not send a packet anywhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest

from gateway.errors import GatewayError
from gateway.sources.url import UrlHooks, UrlSource
from gateway.sources.url_policy import Endpoint, HostList, UrlPolicy
from tests.support.loopback import Connections, StaticResolver
from tests.support.web_server import WebServer, listener

REFUSED = {"image_url_forbidden", "invalid_image_url"}  # both 422, both before any connection


@dataclass
class Targets:
    inside: WebServer  # 127.0.0.1: what a loopback URL would reach
    inside2: WebServer  # 127.0.0.2: not admitted even when 127.0.0.1 is
    redirector: WebServer  # 127.0.0.1, admitted by the "admit" policy: its redirects must be checked too
    backend: WebServer  # stands for the VLM server on 127.0.0.1

    @property
    def listeners(self) -> list[WebServer]:
        return [self.inside, self.inside2, self.backend]


@pytest.fixture
async def targets() -> AsyncIterator[Targets]:
    servers = Targets(
        await listener(), await listener("127.0.0.2"), await WebServer().start(), await listener()
    )
    yield servers
    for server in (servers.inside, servers.inside2, servers.redirector, servers.backend):
        await server.stop()


def resolver() -> StaticResolver:
    return StaticResolver(
        {
            "localhost": ["127.0.0.1", "::1"],
            "internal.test": ["10.1.2.3"],
            "metadata.test": ["169.254.169.254"],
            "rebind.test": ["93.184.216.34", "127.0.0.1"],
            "mapped.test": ["::ffff:10.0.0.1"],
            "example.test": ["93.184.216.34"],
            "evil.test": ["93.184.216.34"],
            "vlm.test": ["93.184.216.35"],
        }
    )


def policy(t: Targets, admit_loopback: bool) -> UrlPolicy:
    ports = {80, 443, *(s.port for s in (t.inside, t.inside2, t.redirector, t.backend))}
    return UrlPolicy(
        schemes=frozenset({"http", "https"}),
        ports=frozenset(ports),
        # "admit": the test's own allow-list lets the redirector (127.0.0.1) through, and nothing else.
        allow=HostList.parse("127.0.0.1/32") if admit_loopback else HostList(),
        backends=(Endpoint("127.0.0.1", t.backend.port), Endpoint("vlm.test", 8001)),
    )


def rows(t: Targets) -> list[tuple[str, str, bool]]:
    """(what, URL, admit_loopback): every one must be refused with no connection to where it points."""
    p, r, p2, b = t.inside.port, t.redirector.port, t.inside2.port, t.backend.port

    def via(target: str) -> str:  # a URL on the admitted server that redirects to ``target``
        return f"http://127.0.0.1:{r}/redirect?to={quote(target, safe='')}"

    return [
        ("loopback", f"http://127.0.0.1:{p}/", False),
        ("loopback over https", f"https://127.0.0.1:{p}/", False),
        ("localhost by name", f"http://localhost:{p}/", False),
        ("IPv6 loopback", f"https://[::1]:{p}/", False),
        ("decimal IPv4", f"https://2130706433:{p}/", False),
        ("hex IPv4 parts", f"https://0x7f.1:{p}/", False),
        ("hex IPv4 whole", f"http://0x7f000001:{p}/", False),
        ("octal IPv4 whole", f"http://017700000001:{p}/", False),
        ("octal IPv4 dotted", f"http://0177.0.0.1:{p}/", False),
        ("short IPv4", f"http://127.1:{p}/", False),
        ("IPv4-mapped IPv6", f"http://[::ffff:127.0.0.1]:{p}/", False),
        ("IPv4-mapped IPv6, hex", f"http://[::ffff:7f00:1]:{p}/", False),
        ("IPv4-compatible IPv6", f"http://[::127.0.0.1]:{p}/", False),
        ("6to4 of loopback", f"http://[2002:7f00:1::]:{p}/", False),
        ("NAT64 of loopback", f"http://[64:ff9b::7f00:1]:{p}/", False),
        ("cloud metadata", "http://169.254.169.254/latest/meta-data/", False),
        ("cloud metadata over https", "https://169.254.169.254/latest/meta-data/iam/", False),
        ("cloud metadata, IPv6", "http://[fd00:ec2::254]/latest/meta-data/", False),
        ("cloud metadata, IPv4-mapped", "http://[::ffff:169.254.169.254]/latest/meta-data/", False),
        ("cloud metadata, NAT64", "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/", False),
        ("cloud metadata by name", "http://metadata.test/latest/meta-data/", False),
        ("private 10/8", "http://10.0.0.1/", False),
        ("private 172.16/12", "http://172.16.5.4/", False),
        ("private 192.168/16", "https://192.168.1.1/admin", False),
        ("carrier-grade NAT", "http://100.64.0.1/", False),
        ("unspecified IPv4", f"http://0.0.0.0:{p}/", False),
        ("unspecified IPv6", f"http://[::]:{p}/", False),
        ("multicast", "http://224.0.0.1/", False),
        ("multicast IPv6", "http://[ff02::1]/", False),
        ("link-local IPv6", "http://[fe80::1]/", False),
        ("unique-local IPv6", "http://[fc00::1]/", False),
        ("reserved", "http://240.0.0.1/", False),
        ("broadcast", "http://255.255.255.255/", False),
        ("a name resolving to a private address", f"http://internal.test:{p}/", False),
        ("a name resolving to a mapped private address", "http://mapped.test/", False),
        ("a name resolving to a public and a loopback address", f"http://rebind.test:{p}/", False),
        ("userinfo", f"http://evil@127.0.0.1:{p}/", False),
        ("userinfo that looks like the host", f"http://127.0.0.1:{p}@evil.test/", False),
        ("userinfo with a backslash", f"http://evil.test\\@127.0.0.1:{p}/", False),
        ("non-default port", "https://example.test:8080/photo.jpg", False),
        ("ssh port", "https://example.test:22/", False),
        ("file", "file:///etc/passwd", False),
        ("gopher", f"gopher://127.0.0.1:{p}/_GET%20/", False),
        ("dict", f"dict://127.0.0.1:{p}/info", False),
        ("ftp", "ftp://example.test/photo.jpg", False),
        ("the VLM backend, though its address is admitted", f"http://127.0.0.1:{b}/v1/models", True),
        ("a backend by name", "http://vlm.test/v1/models", True),
        ("redirect to another loopback address", via(f"http://127.0.0.2:{p2}/"), True),
        ("redirect to cloud metadata", via("http://169.254.169.254/latest/meta-data/"), True),
        ("redirect to IPv6 loopback", via(f"http://[::1]:{p}/"), True),
        ("redirect to a private address", via("http://10.0.0.1/"), True),
        ("redirect to a private name", via(f"http://internal.test:{p}/"), True),
        ("redirect to file", via("file:///etc/passwd"), True),
        ("redirect to userinfo", via(f"http://evil@127.0.0.2:{p2}/"), True),
    ]


async def test_at_least_thirty_hostile_urls_are_refused_before_any_connection(
    targets: Targets, connections: Connections
) -> None:
    table = rows(targets)
    assert len(table) >= 30
    failures = []
    for what, url, admit in table:
        connections.attempted.clear()
        urls = UrlSource(
            policy(targets, admit),
            max_bytes=1 << 20,
            connect_timeout_s=2,
            timeout_s=5,
            hooks=UrlHooks(resolver=resolver()),
        )
        try:
            await urls.fetch(url)
            outcome = "fetched"
        except GatewayError as exc:
            outcome = exc.code
        finally:
            await urls.aclose()
        # Only the admitted redirector may have been reached; nothing else was even attempted.
        allowed = [("127.0.0.1", targets.redirector.port)] if "redirect" in what else []
        if outcome not in REFUSED or connections.attempted != allowed:
            failures.append(f"{what}: {url} -> {outcome}, connections attempted {connections.attempted}")
    assert failures == []
    assert [s.connections for s in targets.listeners] == [[], [], []]
    assert connections.refused == []  # the gateway's own check refused them, not the test's guard
    redirects = [row for row in table if "redirect" in row[0]]
    assert len(targets.redirector.connections) == len(redirects)


async def test_the_listeners_do_record_a_connection_that_is_allowed(
    targets: Targets, connections: Connections
) -> None:
    """The control: with the address admitted, the same client reaches the server and the guard sees it."""
    urls = UrlSource(
        policy(targets, admit_loopback=True), max_bytes=1 << 20, connect_timeout_s=2, timeout_s=5
    )
    try:
        fetched = await urls.fetch(targets.redirector.url("/photo.jpg"))
    finally:
        await urls.aclose()
    assert fetched.data == targets.redirector.image
    assert len(targets.redirector.connections) == 1
    assert connections.attempted == [("127.0.0.1", targets.redirector.port)]


async def test_the_refusal_says_why_without_the_query(targets: Targets, connections: Connections) -> None:
    urls = UrlSource(policy(targets, False), max_bytes=1 << 20, connect_timeout_s=2, timeout_s=5)
    try:
        with pytest.raises(GatewayError) as refused:
            await urls.fetch("http://169.254.169.254/latest/meta-data/?X-Amz-Signature=secret")
    finally:
        await urls.aclose()
    assert refused.value.code == "image_url_forbidden"
    assert "metadata" in refused.value.message
    assert "secret" not in refused.value.message
