"""A minimal OpenAI-compatible backend for the benchmark: raw asyncio HTTP/1.1, a fixed latency, little CPU.

Run as its own process (``python benchmarks/fake_backend.py --port P --delay-ms 100``) so it never shares
the gateway's interpreter. ``POST /v1/chat/completions`` answers a valid structured caption after
``--delay-ms``; ``GET /health`` answers 200. ``--record FILE`` writes the first chat request's body to
FILE, so the benchmark can send the backend exactly what the gateway sent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024

CONTENT = json.dumps(
    {
        "caption": "A red bicycle leans against a brick wall.",
        "keywords": ["bicycle", "wall"],
        "visible_text": [],
        "brands": [],
        "colors": ["red"],
    }
)
COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "model": "Qwen/Qwen2.5-VL-7B-Instruct",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": CONTENT}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1300, "completion_tokens": 40, "total_tokens": 1340},
    }
).encode()


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        "connection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


CHAT_RESPONSE = _response("200 OK", COMPLETION)
HEALTH_RESPONSE = _response("200 OK", b"{}")
NOT_FOUND = _response("404 Not Found", b'{"error": {"message": "not found"}}')


class Backend:
    def __init__(self, delay_s: float, record: Path | None) -> None:
        self.delay_s = delay_s
        self.record = record

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # one keep-alive connection; ends when the client closes it
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                    return
                request_line, _, header_text = head.decode("latin-1").partition("\r\n")
                length = 0
                for line in header_text.split("\r\n"):
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length > MAX_BODY_BYTES:
                    return
                body = await reader.readexactly(length) if length else b""
                method, path = request_line.split(" ")[:2]
                if method == "POST" and path.endswith("/chat/completions"):
                    if self.record is not None:
                        self.record.write_bytes(body)
                        self.record = None
                    if self.delay_s:
                        await asyncio.sleep(self.delay_s)
                    writer.write(CHAT_RESPONSE)
                elif method == "GET" and path == "/health":
                    writer.write(HEALTH_RESPONSE)
                else:
                    writer.write(NOT_FOUND)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


async def serve(port: int, delay_s: float, record: Path | None) -> None:
    backend = Backend(delay_s, record)
    server = await asyncio.start_server(
        backend.handle, "127.0.0.1", port, limit=MAX_HEADER_BYTES, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--record", type=Path)
    args = parser.parse_args()
    try:
        from uvloop import run
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        from asyncio import run
    run(serve(args.port, args.delay_ms / 1000, args.record))


if __name__ == "__main__":
    main()
