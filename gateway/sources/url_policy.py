"""Which URLs and addresses the gateway may fetch an image from: rules only, no I/O (``url.py`` fetches).

The address rules are Python's ``ipaddress`` (the standard library's registry of special-purpose ranges),
not a hand-written pattern: an address is refused unless it is a global unicast address. Addresses that
carry another address inside (IPv4-mapped, 6to4, NAT64, Teredo, IPv4-compatible) are judged by the inner
one as well, so ``::ffff:127.0.0.1`` is loopback. Numeric host names the C library would read as IPv4
(``2130706433``, ``0x7f.1``, ``017700000001``) are read the same way here, with ``socket.inet_aton``, and
judged as the address they are.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from urllib.parse import unquote

from gateway.text import quoted

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network
DEFAULT_PORTS = {"https": 443, "http": 80}
SCHEMES = frozenset(DEFAULT_PORTS)

# Named for clearer messages; every one of them is also outside ``is_global``.
_METADATA = {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Ranges ``is_global`` has judged differently across Python releases; refused whatever the release.
_ALSO_REFUSED = (
    (ipaddress.ip_network("100.64.0.0/10"), "carrier-grade NAT (shared address space)"),
    (ipaddress.ip_network("0.0.0.0/8"), "'this network'"),
    (ipaddress.ip_network("192.0.0.0/24"), "IETF protocol assignments"),
    (ipaddress.ip_network("198.18.0.0/15"), "benchmarking"),
    (ipaddress.ip_network("64:ff9b:1::/48"), "local-use NAT64"),
)
_KINDS = (
    ("is_loopback", "loopback"),
    ("is_link_local", "link-local"),
    ("is_multicast", "multicast"),
    ("is_unspecified", "unspecified"),
    ("is_private", "private"),
    ("is_reserved", "reserved"),
)


class UrlRefused(Exception):
    """A URL or an address the policy forbids; ``url.py`` turns it into ``image_url_forbidden``."""


def numeric_host(host: str) -> Address | None:
    """The address a host name stands for without any DNS: an IP literal, or a numeric IPv4 form."""
    bare = unquote(host.strip("[]"))
    try:
        return ipaddress.ip_address(bare)
    except ValueError:
        pass
    if bare and all(c in "0123456789abcdefxABCDEFX." for c in bare) and bare[0].isdigit():
        try:  # the C library's own reading: decimal, octal and hex parts, 1 to 4 of them
            return IPv4Address(socket.inet_aton(bare))
        except OSError:
            return None
    return None


def inner_ipv4(address: IPv6Address) -> IPv4Address | None:
    """The IPv4 address an IPv6 one carries, where it carries one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client's address: where the packets end up
    if address in _NAT64:
        return IPv4Address(int(address) & 0xFFFFFFFF)
    if int(address) >> 32 == 0 and int(address) > 1:  # IPv4-compatible ::a.b.c.d (deprecated)
        return IPv4Address(int(address))
    return None


def why_forbidden(address: Address) -> str | None:
    """Why the gateway must not connect to ``address``; None for a global unicast address."""
    if address in _METADATA:
        return "the cloud metadata service"
    if isinstance(address, IPv6Address):
        if address.scope_id:
            return "a scoped (link-local) IPv6 address"
        inner = inner_ipv4(address)
        reason = why_forbidden(inner) if inner is not None else None
        if reason is not None:
            return f"{reason} ({inner} inside {address})"
    for attribute, kind in _KINDS:
        if getattr(address, attribute):
            return f"a {kind} address"
    for network, kind in _ALSO_REFUSED:
        if address.version == network.version and address in network:
            return f"a {kind} address"
    return None if address.is_global else "not a global address"


def _hostname(host: str) -> str:
    return host.strip().rstrip(".").lower()


@dataclass(frozen=True)
class HostList:
    """``IMAGE_URL_ALLOW_HOSTS`` / ``IMAGE_URL_DENY_HOSTS``: host names (``images.example.com``), subdomain
    wildcards (``*.example.com``: any name below it, not the name itself) and networks (``203.0.113.0/24``;
    a bare address is a one-address network)."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[Network, ...] = ()

    @classmethod
    def parse(cls, text: str) -> HostList:
        names, suffixes, networks = set(), [], []
        for entry in (e.strip() for e in text.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry.strip("[]"), strict=False))
                continue
            except ValueError:
                pass
            name = _hostname(entry.removeprefix("*."))
            if not name or any(c in name for c in "/:@ *"):
                raise ValueError(f"not a host name, *.domain or network: {entry!r}")
            (suffixes.append("." + name) if entry.startswith("*.") else names.add(name))
        return cls(frozenset(names), tuple(suffixes), tuple(networks))

    def __bool__(self) -> bool:
        return bool(self.names or self.suffixes or self.networks)

    def has_name(self, host: str) -> bool:
        name = _hostname(host)
        return name in self.names or name.endswith(self.suffixes)

    def has_address(self, address: Address) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


@dataclass(frozen=True)
class Endpoint:
    """A backend the gateway talks to (``VLM_BASE_URL``, ``GPT_OSS_BASE_URL``, ``S3_ENDPOINT_URL``)."""

    host: str
    port: int


@dataclass(frozen=True)
class UrlPolicy:
    schemes: frozenset[str] = frozenset({"https"})
    ports: frozenset[int] = frozenset()  # empty: the schemes' default ports
    allow: HostList = field(default_factory=HostList)
    deny: HostList = field(default_factory=HostList)
    backends: tuple[Endpoint, ...] = ()

    def allowed_ports(self) -> frozenset[int]:
        return self.ports or frozenset(DEFAULT_PORTS[s] for s in self.schemes)

    def check_url(self, scheme: str, userinfo: bytes, host: str, port: int) -> None:
        """What the URL alone says: scheme, credentials, port, and the host by name."""
        if scheme not in self.schemes:
            raise UrlRefused(f"the scheme {quoted(scheme or 'none')} is not allowed (IMAGE_URL_SCHEMES)")
        if userinfo:
            raise UrlRefused("credentials in a URL are not allowed")
        if not host:
            raise UrlRefused("the URL has no host")
        if port not in self.allowed_ports():
            raise UrlRefused(f"port {port} is not allowed (IMAGE_URL_ALLOWED_PORTS)")
        self.check_name(host, port)

    def check_name(self, host: str, port: int) -> None:
        """Before any DNS: a denied or backend name is refused without being looked up."""
        if self.deny.has_name(host):
            raise UrlRefused(f"the host {host} is denied (IMAGE_URL_DENY_HOSTS)")
        if any(_hostname(b.host) == _hostname(host) and numeric_host(b.host) is None for b in self.backends):
            raise UrlRefused(f"the host {host} is one of the gateway's own backends")
        if self.allow and not self.allow.has_name(host) and not self.allow.networks:
            raise UrlRefused(f"the host {host} is not in IMAGE_URL_ALLOW_HOSTS")

    def check_addresses(self, host: str, port: int, addresses: Iterable[Address]) -> list[Address]:
        """Every address ``host`` resolved to, judged; one refused address refuses the host (a name that
        resolves to a public and a private address is either misconfigured or an attack)."""
        checked = list(dict.fromkeys(addresses))
        if not checked:
            raise UrlRefused(f"the host {host} resolved to no address")
        for address in checked:
            self._check_address(host, port, address)
        return checked

    def _check_address(self, host: str, port: int, address: Address) -> None:
        if self.deny.has_address(address):
            raise UrlRefused(f"the host {host} resolves to {address}, denied (IMAGE_URL_DENY_HOSTS)")
        if any(numeric_host(b.host) == address and b.port == port for b in self.backends):
            raise UrlRefused(f"{address}:{port} is one of the gateway's own backends")
        if self.allow.has_address(address):
            return  # an operator's own network, admitted on purpose
        if self.allow and not self.allow.has_name(host):
            raise UrlRefused(f"the host {host} is not in IMAGE_URL_ALLOW_HOSTS")
        reason = why_forbidden(address)
        if reason is not None:
            shown = (
                f"{host} is" if numeric_host(host) == address else f"{host} resolves to {address}, which is"
            )
            raise UrlRefused(f"{shown} {reason}")
