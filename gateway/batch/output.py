"""Resumable JSONL output: one whole line per image, durable in small batches, exactly once after resume.

The invariant that makes SIGKILL safe: a line reaches DEST only as a whole (one ``write`` of the whole
line on an O_APPEND file, or one atomic S3 PUT of a whole part), and only after the image's write-back is
done. Resume reads DEST back, ignores a torn trailing line, and skips every (key, etag) it finds.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from gateway.errors import CannotStart
from gateway.records import CaptionLine, FailureLine

Mode = Literal["new", "resume", "overwrite"]
FSYNC_EVERY_LINES = 32
FSYNC_EVERY_S = 1.0


@dataclass
class DoneIndex:
    """What DEST already holds: the ETag of the latest line per S3 URI."""

    etags: dict[str, str] = field(default_factory=dict)
    # Set when DEST holds a line that a later one supersedes (ETag changed, torn or foreign line):
    # the output is compacted at close so that every image appears once.
    stale: bool = False

    def add_line(self, raw: bytes) -> None:
        uri = uri_of(raw)
        if uri is None:
            self.stale = True  # not ours to understand; compaction drops it
            return
        self.add(uri, str(json.loads(raw).get("etag") or ""))

    def add(self, uri: str, etag: str) -> None:
        if uri in self.etags:
            self.stale = True
        self.etags[uri] = etag

    def is_done(self, uri: str, etag: str) -> bool:
        return self.etags.get(uri) == etag


def uri_of(raw: bytes) -> str | None:
    """What a line captioned: its S3 URI, or the URL of a URL list's image."""
    try:
        record = json.loads(raw)
        return str(record.get("s3_uri") or record["image_url"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def last_positions(lines: Iterable[tuple[Any, bytes]]) -> dict[str, Any]:
    """The position of the last line per S3 URI: that line wins, earlier ones are superseded."""
    return {uri: position for position, raw in lines if (uri := uri_of(raw)) is not None}


class Output(Protocol):
    """Where lines go. ``prepare`` runs before the pipeline opens, so a bad DEST fails before GPU work."""

    description: str

    async def prepare(self, mode: Mode) -> DoneIndex: ...

    async def write(self, line: CaptionLine) -> None: ...

    async def fail(self, line: FailureLine) -> None: ...

    async def close(self) -> None: ...


class AppendFile:
    """An O_APPEND file written one whole line per ``os.write``, fsynced every few lines or seconds."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def append(self, line: bytes) -> None:
        view = memoryview(line)
        while view:  # a regular file takes the whole line at once; the loop covers a signal's short write
            view = view[os.write(self._fd, view) :]
        self._unsynced += 1
        if self._unsynced >= FSYNC_EVERY_LINES or time.monotonic() - self._synced_at >= FSYNC_EVERY_S:
            self.sync()

    def sync(self) -> None:
        if self._unsynced:
            os.fsync(self._fd)
        self._unsynced = 0
        self._synced_at = time.monotonic()

    def close(self) -> None:
        self.sync()
        os.close(self._fd)


class LocalJsonl:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors_path = path.with_name(path.name + ".errors.jsonl")
        self.description = str(path)
        self._out: AppendFile | None = None
        self._errors: AppendFile | None = None
        self._done = DoneIndex()

    async def prepare(self, mode: Mode) -> DoneIndex:
        if self.path.exists() and mode == "new":
            raise CannotStart(
                f"{self.path} exists; pass --resume to continue it or --overwrite to replace it"
            )
        if not self.path.parent.is_dir():
            raise CannotStart(f"cannot write {self.path}: {self.path.parent} is not a directory")
        try:
            if mode == "resume" and self.path.exists():
                self._done = self._read_back()
            elif self.path.exists():
                self.path.unlink()
            self._out = AppendFile(self.path)
            self.errors_path.unlink(missing_ok=True)  # the errors of this run; earlier ones are retried
            self._errors = AppendFile(self.errors_path)
        except OSError as exc:
            raise CannotStart(f"cannot write {self.path}: {exc.strerror or exc}") from None
        return self._done

    def _read_back(self) -> DoneIndex:
        done = DoneIndex()
        with self.path.open("r+b") as file:
            whole_until = 0
            for raw in file:
                if not raw.endswith(b"\n"):
                    break  # torn by a crash mid-write: never counted, captioned again
                whole_until += len(raw)
                done.add_line(raw)
            file.truncate(whole_until)
            os.fsync(file.fileno())
        return done

    async def write(self, line: CaptionLine) -> None:
        assert self._out is not None, "prepare() first"
        self._out.append(line.encode())
        self._done.add(line.source_uri, line.etag or "")

    async def fail(self, line: FailureLine) -> None:
        assert self._errors is not None, "prepare() first"
        self._errors.append(line.encode())

    async def close(self) -> None:
        for file in (self._out, self._errors):
            if file is not None:
                file.close()
        self._out = self._errors = None
        if self._done.stale:
            self._compact()

    def _compact(self) -> None:
        # Rewritten beside DEST and renamed over it: a crash leaves the old file or the new, both valid.
        # Two streamed passes, so only the index (not DEST) is held in memory.
        with self.path.open("rb") as lines:
            last = last_positions(enumerate(lines))
        temp = self.path.with_name(self.path.name + ".compact")
        with self.path.open("rb") as lines, temp.open("wb") as file:
            file.writelines(raw for i, raw in enumerate(lines) if last.get(uri_of(raw) or "") == i)
            file.flush()
            os.fsync(file.fileno())
        temp.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
