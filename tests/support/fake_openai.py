"""An OpenAI-compatible fake server for fault injection; it records every request the gateway sent.

The happy path is proven against real vLLM (tests/e2e); this fake exists for what a real server will not
do on demand: 500 then 200, timeouts, 429 with Retry-After, `finish_reason: "length"` with null content,
reasoning that must not leak, malformed answers, an error body that echoes the request's headers. It also
records what a test cannot see from outside: which requests' connections the gateway closed before the
answer (``closed_early``) and how many readiness probes reached it (``health_calls``).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.support.processes import free_port


@dataclass
class Reply:
    """One scripted answer; ``raw`` replaces the whole body (for malformed answers)."""

    content: str | None = "A red bicycle leans against a brick wall."
    finish_reason: str = "stop"
    status: int = 200
    delay_s: float = 0.0
    trickle_s: float = 0.0  # send the body in pieces over this long: a slow but live answer
    reasoning: str | None = None
    raw: str | None = None
    echo_headers: bool = False  # the body is the request's headers, as some proxies' error pages are
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] = field(
        default_factory=lambda: {"prompt_tokens": 1300, "completion_tokens": 40, "total_tokens": 1340}
    )


def structured(caption: str = "A red bicycle leans against a brick wall.", **fields: Any) -> str:
    body = {
        "caption": caption,
        "keywords": ["bicycle", "wall", "brick", "street", "red"],
        "visible_text": [],
        "brands": [],
        "colors": ["red"],
        "headline": "Red bicycle against a brick wall",
        "alt_text": "A red bicycle leaning on a brick wall.",
    }
    body.update(fields)
    return json.dumps(body)


@dataclass
class FakeOpenAI:
    name: str
    default: Reply = field(default_factory=Reply)
    script: deque[Reply] = field(default_factory=deque)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    closed_early: list[int] = field(default_factory=list)  # indexes into ``requests``
    health_calls: int = 0
    health_delay_s: float = 0.0
    healthy: bool = True
    port: int = 0
    in_flight: int = 0
    max_in_flight: int = 0  # the most chat requests it was answering at once since the last reset
    generation: int = 0  # bumped by reset: a request from an earlier test still sleeping is not counted

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self, default: Reply | None = None) -> None:
        self.default = default or Reply()
        self.script.clear()
        self.requests.clear()
        self.headers.clear()
        self.closed_early.clear()
        self.health_calls = 0
        self.health_delay_s = 0.0
        self.healthy = True
        self.generation += 1
        self.in_flight = self.max_in_flight = 0

    def then(self, *replies: Reply) -> None:
        self.script.extend(replies)

    async def _chat(self, request: Request) -> Response:
        generation = self.generation
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            if generation == self.generation:
                self.in_flight -= 1

    async def _answer(self, request: Request) -> Response:
        self.requests.append(await request.json())
        self.headers.append(dict(request.headers))
        index = len(self.requests) - 1
        reply = self.script.popleft() if self.script else self.default
        if reply.delay_s and await _client_left_within(request, reply.delay_s):
            self.closed_early.append(index)  # as vLLM does: a closed connection aborts the generation
            return Response(status_code=499)
        if reply.echo_headers:
            return JSONResponse({"error": {"message": json.dumps(dict(request.headers))}}, reply.status)
        if reply.trickle_s:
            return StreamingResponse(_trickle(json.dumps(self._completion(reply)).encode(), reply.trickle_s))
        if reply.raw is not None:
            return PlainTextResponse(reply.raw, status_code=reply.status, headers=reply.headers)
        if reply.status != 200:
            error = {"error": {"message": f"fake {reply.status}", "type": "error", "code": reply.status}}
            return JSONResponse(error, status_code=reply.status, headers=reply.headers)
        return JSONResponse(self._completion(reply), headers=reply.headers)

    def _completion(self, reply: Reply) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.reasoning is not None:
            message["reasoning"] = reply.reasoning
            message["reasoning_content"] = reply.reasoning
        model = self.requests[-1].get("model", "fake")
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": reply.usage,
        }

    async def _health(self, request: Request) -> Response:
        self.health_calls += 1
        if self.health_delay_s:
            await asyncio.sleep(self.health_delay_s)
        return Response(status_code=200 if self.healthy else 503)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/health", self._health, methods=["GET"]),
            ]
        )


async def _client_left_within(request: Request, seconds: float) -> bool:
    """Waits ``seconds``; True as soon as the client closes the connection (the body is read by now, so
    the next ASGI message is the disconnect)."""
    try:
        async with asyncio.timeout(seconds):
            while (await request.receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        return False
    return True


async def _trickle(body: bytes, seconds: float, pieces: int = 10) -> AsyncIterator[bytes]:
    size = -(-len(body) // pieces)
    for start in range(0, len(body), size):
        await asyncio.sleep(seconds / pieces)
        yield body[start : start + size]


class FakeServer:
    """Runs a ``FakeOpenAI`` with uvicorn inside the test's event loop."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        fake.port = free_port()
        config = uvicorn.Config(
            fake.app(), host="127.0.0.1", port=fake.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task:
            await self._task
