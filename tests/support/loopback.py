"""The URL tests' safety net: whatever the code under test does, no connection leaves loopback.

``Connections.check`` records every connection httpcore is asked to open and
refuses, before any socket exists, anything but a loopback IP literal (a host name reaching it means the
address check was bypassed). ``guard_connections`` puts it under every httpcore pool in the process (the
gateway's URL client included, wherever it is built: the app, a batch), by wrapping httpcore's own
``AnyIOBackend.connect_tcp``. The tests also run in a network namespace that has only a loopback interface.

``StaticResolver`` answers host names from a table, as a DNS server under the test's control would.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpcore


@dataclass
class Connections:
    """Every (host, port) a connection was asked for, and those refused for not being loopback."""

    attempted: list[tuple[str, int]] = field(default_factory=list)
    refused: list[tuple[str, int]] = field(default_factory=list)

    def check(self, host: str, port: int) -> None:
        self.attempted.append((host, port))
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False  # a name: nothing but an address the gateway checked may get here
        if not loopback:
            self.refused.append((host, port))
            raise httpcore.ConnectError(f"test guard: refused a connection to {host}:{port} beyond loopback")


@contextmanager
def guard_connections() -> Iterator[Connections]:
    """Every httpcore connection in the process checked by ``Connections.check`` while this is open."""
    connections = Connections()
    original = httpcore.AnyIOBackend.connect_tcp

    async def guarded(self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        connections.check(host, port)
        return await original(self, host, port, *args, **kwargs)

    httpcore.AnyIOBackend.connect_tcp = guarded  # type: ignore[method-assign]
    try:
        yield connections
    finally:
        httpcore.AnyIOBackend.connect_tcp = original  # type: ignore[method-assign]


@dataclass
class StaticResolver:
    """Host name -> addresses, and a log of every lookup (a name is looked up once per connection)."""

    table: dict[str, list[str]]
    lookups: list[str] = field(default_factory=list)

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        if host not in self.table:
            raise OSError(f"no such test host: {host}")
        return list(self.table[host])

    def add(self, names: Iterable[str], address: str) -> None:
        for name in names:
            self.table[name] = [address]
