"""JSONL output under an S3 prefix as rolling part objects, each written whole by one PUT.

Multipart uploads are invisible until completed and need 5 MiB parts, so they cannot make a few hundred
lines durable; small whole objects can. A resume reads the parts back and continues with the next number.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from gateway.batch.output import DoneIndex, Mode, last_positions, uri_of
from gateway.errors import CannotStart, GatewayError
from gateway.records import CaptionLine, FailureLine
from gateway.sources.s3 import S3Source
from gateway.sources.s3_uri import S3Location, parse_prefix
from gateway.sources.s3_writes import S3Writer

PART_LINES = 100
PART_SECONDS = 5.0
_PART = re.compile(r"part-(\d{5,})\.jsonl$")
JSONL = "application/x-ndjson"
PART_MAX_BYTES = 1024 * 1024 * 1024  # a part read back on resume; 100 lines are far below this


class S3Parts:
    def __init__(
        self, source: S3Source, writer: S3Writer, dest: str, *, part_lines: int = PART_LINES
    ) -> None:
        self._source = source
        self._s3 = writer
        self._where = parse_prefix(dest if dest.endswith("/") else dest + "/")
        self.description = self._where.uri
        self._part_lines = part_lines
        self._parts: list[int] = []
        self._buffer: list[bytes] = []
        self._errors: list[bytes] = []
        self._flushed_at = time.monotonic()
        self._lock = asyncio.Lock()
        self._done = DoneIndex()

    def _location(self, name: str) -> S3Location:
        return S3Location(self._where.bucket, self._where.key + name)

    def _part(self, number: int) -> S3Location:
        return self._location(f"part-{number:05d}.jsonl")

    async def prepare(self, mode: Mode) -> DoneIndex:
        try:
            existing = [o.location async for o in self._source.list(self._where.bucket, self._where.key)]
            ours = [loc for loc in existing if self._is_ours(loc)]
            if ours and mode == "new":
                raise CannotStart(f"{self.description} already holds output; pass --resume or --overwrite")
            await self._probe()
            if mode == "overwrite":
                for location in ours:
                    await self._s3.delete(location)
            elif mode == "resume":
                self._parts = sorted(int(m[1]) for loc in ours if (m := _PART.search(loc.key)))
                await self._read_back()
                # Earlier failures are retried by this run; the file will list only what fails again.
                await self._s3.delete(self._location("errors.jsonl"))
        except GatewayError as exc:
            raise CannotStart(f"cannot use {self.description}: {exc.message}") from None
        return self._done

    def _is_ours(self, location: S3Location) -> bool:
        name = location.key[len(self._where.key) :]
        return bool(_PART.fullmatch(name)) or name == "errors.jsonl"

    async def _probe(self) -> None:
        # Fails now, before any model call, when the bucket is missing or the credentials cannot write.
        probe = self._location(".florence-tagger-write-probe")
        await self._s3.put(probe, b"", "text/plain")
        await self._s3.delete(probe)

    async def _read_back(self) -> None:
        for number in self._parts:  # one part in memory at a time
            for raw in await self._lines(number):
                self._done.add_line(raw)

    async def write(self, line: CaptionLine) -> None:
        self._buffer.append(line.encode())
        self._done.add(line.source_uri, line.etag or "")
        if len(self._buffer) >= self._part_lines or time.monotonic() - self._flushed_at >= PART_SECONDS:
            await self.flush()

    async def fail(self, line: FailureLine) -> None:
        self._errors.append(line.encode())

    async def flush(self) -> None:
        async with self._lock:
            lines, self._buffer = self._buffer, []
            self._flushed_at = time.monotonic()
            if lines:
                number = (self._parts[-1] if self._parts else 0) + 1
                self._parts.append(number)
                await self._s3.put(self._part(number), b"".join(lines), JSONL)
            if self._errors:
                # The failures of this run, rewritten whole; they are few, and retried on resume.
                await self._s3.put(self._location("errors.jsonl"), b"".join(self._errors), JSONL)

    async def close(self) -> None:
        await self.flush()
        if self._done.stale:
            await self._compact()

    async def _compact(self) -> None:
        """Drops superseded lines part by part; each re-put is atomic and the newest line always lives in
        a later position, so a crash mid-way loses nothing and the next resume finishes the job."""
        last: dict[str, Any] = {}
        for number in self._parts:  # two passes, one part in memory at a time
            last.update(last_positions(((number, i), raw) for i, raw in enumerate(await self._lines(number))))
        for number in self._parts:
            lines = await self._lines(number)
            kept = [raw for i, raw in enumerate(lines) if last.get(uri_of(raw) or "") == (number, i)]
            if len(kept) != len(lines):
                await self._s3.put(self._part(number), b"".join(kept), JSONL)

    async def _lines(self, number: int) -> list[bytes]:
        return (await self._source.read(self._part(number), PART_MAX_BYTES) or b"").splitlines(keepends=True)
