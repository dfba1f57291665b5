"""The benchmarks' load generator: a raw asyncio HTTP/1.1 keep-alive client.

Cheap (~0.4 ms of CPU per request, a fraction of httpx's), so that on a machine the load generator shares
with the server under test, the server is what is measured. Every run is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

REQUEST_TIMEOUT_S = 120.0


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next(
            int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"
        )
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run_load(
    port: int, path: str, bodies: list[bytes], concurrency: int, total: int, max_seconds: float
) -> LoadResult:
    counter = iter(range(total))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    deadline = time.monotonic() + max_seconds

    async def worker() -> None:
        nonlocal errors
        conn = Connection(port)
        try:
            for i in counter:  # shared: all workers together send `total` requests
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(
                        conn.request(path, bodies[i % len(bodies)]), REQUEST_TIMEOUT_S
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError, StopIteration, ValueError):
                    errors += 1
                    conn.close()
                    conn = Connection(port)
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200:
                    errors += 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(len(latencies), errors, time.perf_counter() - start, latencies, statuses)
