"""A pass-through proxy in front of the real S3 server that refuses chosen requests, to inject S3 faults.

Requests are forwarded unchanged (the Host header included, so SigV4 signatures still verify) unless a rule
matches, in which case the rule's answer is given: S3's own ``AccessDenied`` by default, or any status, XML
body and headers (a 500, a region redirect). SeaweedFS itself cannot be made to refuse a write mid-run (it
even re-creates a deleted bucket on the next PUT), nor to answer as AWS does for a bucket in another region,
hence this proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from tests.support.processes import HOST, free_port

Rule = Callable[[web.Request], bool]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "content-length"}


def s3_error(code: str, message: str = "injected by the test's fault proxy") -> bytes:
    """An error body as S3 writes it."""
    xml = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + xml.encode()


DENIED = s3_error("AccessDenied", "refused by the test's fault proxy")


@dataclass(frozen=True)
class Answer:
    status: int = 403
    body: bytes = DENIED
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class S3FaultProxy:
    upstream: str
    rules: list[tuple[Rule, Answer]] = field(default_factory=list)
    refused: int = 0
    port: int = field(default_factory=free_port)
    _runner: web.AppRunner | None = None
    _session: aiohttp.ClientSession | None = None

    @property
    def endpoint_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def refuse(self, rule: Rule, answer: Answer | None = None) -> None:
        """From now on, requests matching ``rule`` get ``answer`` (S3's AccessDenied by default)."""
        self.rules.append((rule, answer or Answer()))

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
        answer = next((answer for rule, answer in self.rules if rule(request)), None)
        if answer is not None:
            self.refused += 1
            return web.Response(
                status=answer.status, body=answer.body, headers=answer.headers, content_type="application/xml"
            )
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
