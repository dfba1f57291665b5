"""Slow and odd clients against the real server: every connection ends, with an answer in the envelope.

Raw sockets on a real uvicorn with the options ``florence-tagger serve`` uses (gateway/api/server.py). The
bounds asserted are generous multiples of the configured timeouts: they prove that the connection is
closed at all (it used to stay open for good), not how fast.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from urllib.parse import urlsplit

from tests.support.gateway import ServedGatewayFactory

FAST = {"CLIENT_HEADER_TIMEOUT_S": 0.5, "CLIENT_BODY_TIMEOUT_S": 0.5, "KEEPALIVE_TIMEOUT_S": 1}


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    parts = urlsplit(url)
    return await asyncio.open_connection(parts.hostname, parts.port)


async def trickle(writer: asyncio.StreamWriter, data: bytes, every_s: float) -> None:
    """Sends ``data`` a byte at a time until it is sent or the server closes the connection."""
    with contextlib.suppress(ConnectionError):
        for byte in data:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(every_s)


async def answer_and_close(
    reader: asyncio.StreamReader, within_s: float = 8.0
) -> tuple[int, dict[str, object]]:
    """The one response the server sends before it closes the connection (EOF within ``within_s``)."""
    async with asyncio.timeout(within_s):
        raw = await reader.read()  # to EOF: the server closed the connection
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


async def test_headers_trickled_a_byte_at_a_time_are_cut_off(served_gateway: ServedGatewayFactory) -> None:
    async with served_gateway(**FAST) as url:
        reader, writer = await connect(url)
        started = time.monotonic()
        sender = asyncio.create_task(
            trickle(writer, b"POST /caption HTTP/1.1\r\nX-Slow: " + b"a" * 200, 0.05)
        )
        status, body = await answer_and_close(reader)
        sender.cancel()
        writer.close()
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert time.monotonic() - started < 8  # the trickle alone would have taken 10 s


async def test_a_connection_that_sends_nothing_is_closed(served_gateway: ServedGatewayFactory) -> None:
    async with served_gateway(**FAST) as url:
        reader, writer = await connect(url)
        status, body = await answer_and_close(reader)
        writer.close()
    assert status == 408
    assert body["error"]["code"] == "request_timeout"


async def test_a_body_trickled_a_byte_at_a_time_is_cut_off(served_gateway: ServedGatewayFactory) -> None:
    async with served_gateway(**FAST) as url:
        reader, writer = await connect(url)
        writer.write(b"POST /caption HTTP/1.1\r\nHost: t\r\nContent-Length: 500\r\n\r\n")
        # A few bytes, then nothing: bytes still arriving after the server's 408 and close would make the
        # client's kernel answer them with a reset, which can discard the 408 before the test reads it.
        sender = asyncio.create_task(trickle(writer, b'{"s3_', 0.05))
        status, body = await answer_and_close(reader)
        sender.cancel()
        writer.close()
    assert status == 408
    assert body["error"]["code"] == "request_timeout"
    assert "CLIENT_BODY_TIMEOUT_S" in body["error"]["message"]


async def test_headers_over_64_kib_are_431(served_gateway: ServedGatewayFactory) -> None:
    async with served_gateway(**FAST) as url:
        reader, writer = await connect(url)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: t\r\n" + b"X-Big: " + b"b" * 70_000 + b"\r\n")
        await writer.drain()
        status, body = await answer_and_close(reader)
        writer.close()
    assert status == 431
    assert body["error"]["code"] == "headers_too_large"


async def test_garbage_gets_a_400_in_the_envelope(served_gateway: ServedGatewayFactory) -> None:
    async with served_gateway(**FAST) as url:
        reader, writer = await connect(url)
        writer.write(b"NOT HTTP AT ALL\x00\r\n\r\n")
        status, body = await answer_and_close(reader)
        writer.close()
    assert status == 400
    assert body["error"]["code"] == "invalid_http_request"


async def test_an_idle_keep_alive_connection_is_closed(served_gateway: ServedGatewayFactory) -> None:
    async with served_gateway(**FAST) as url:
        reader, writer = await connect(url)
        writer.write(b"GET /livez HTTP/1.1\r\nHost: t\r\n\r\n")
        async with asyncio.timeout(8):
            head = await reader.readuntil(b"\r\n\r\n")
            await reader.read()  # the body, then EOF once KEEPALIVE_TIMEOUT_S passed
        writer.close()
    assert head.startswith(b"HTTP/1.1 200")


async def test_an_unauthenticated_100_mb_upload_is_refused_from_its_headers(
    served_gateway: ServedGatewayFactory,
) -> None:
    async with served_gateway(API_KEYS="k-one", **FAST) as url:
        reader, writer = await connect(url)
        writer.write(b"POST /caption HTTP/1.1\r\nHost: t\r\nContent-Length: 104857600\r\n\r\n" + b"x" * 1024)
        status, body = await answer_and_close(reader)  # answered with 99.99 MB still unsent
        writer.close()
    assert status == 401
    assert body["error"]["code"] == "invalid_api_key"
