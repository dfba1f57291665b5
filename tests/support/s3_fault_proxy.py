"""A pass-through proxy in front of the real S3 server that refuses chosen requests, to inject S3 faults.

Requests are forwarded unchanged (the Host header included, so SigV4 signatures still verify) unless a rule
matches, in which case S3's own ``AccessDenied`` error is answered. SeaweedFS itself cannot be made to refuse
a write mid-run (it even re-creates a deleted bucket on the next PUT), hence this proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.support.processes import HOST, free_port

Rule = Callable[[web.Request], bool]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}
DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>refused by the test's fault proxy</Message></Error>"
)


@dataclass
class S3FaultProxy:
    upstream: str
    rules: list[Rule] = field(default_factory=list)
    refused: int = 0
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def refuse(self, rule: Rule) -> None:
        self.rules.append(rule)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(auto_decompress=False)
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, HOST, self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if any(rule(request) for rule in self.rules):
            self.refused += 1
            return web.Response(status=403, body=DENIED, content_type="application/xml")
        assert self._session is not None
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as upstream:
            body = await upstream.read()
            kept = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=upstream.status, body=body, headers=kept)
