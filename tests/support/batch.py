"""Batch helpers: a fresh bucket seeded with small images, and ``florence-tagger batch`` as a subprocess.

In-process runs call ``run_batch`` (the ``run`` fixture of tests/batch); SIGKILL, Ctrl-C and Ray runs use
the CLI, which reaches the fake VLM served from the test's event loop while the test awaits.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from tests.support import images
from tests.support.s3_server import S3Server

CLI = str(Path(sys.executable).with_name("florence-tagger"))
RunBatch = Callable[..., Awaitable[int]]


@cache
def small_images() -> tuple[bytes, ...]:
    """Ten distinct small JPEGs, cycled: real decode work, tiny uploads."""
    return tuple(images.photo(96 + 8 * i, 64, quality=80) for i in range(10))


@dataclass
class BatchBucket:
    name: str
    client: Any

    def put(self, key: str, body: bytes) -> None:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)

    def seed(self, prefix: str, count: int) -> list[str]:
        keys = [f"{prefix}img-{i:04d}.jpg" for i in range(count)]
        for i, key in enumerate(keys):
            self.put(key, small_images()[i % 10])
        return [f"s3://{self.name}/{key}" for key in keys]

    def get(self, key: str) -> bytes:
        return bytes(self.client.get_object(Bucket=self.name, Key=key)["Body"].read())

    def keys(self, prefix: str = "") -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def remove(self) -> None:
        """Deletes every object, then the bucket itself (S3 refuses to delete a bucket that holds any)."""
        for key in self.keys():
            self.client.delete_object(Bucket=self.name, Key=key)
        self.client.delete_bucket(Bucket=self.name)


def new_bucket(s3_server: S3Server, prefix: str = "batch") -> BatchBucket:
    """A fresh, empty bucket on the test S3 server."""
    client: Any = s3_server.client()
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    s3_server.create_bucket(name)
    return BatchBucket(name, client)


async def start_cli(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        CLI,
        "batch",
        *args,
        env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_cli(env: dict[str, str], *args: str, timeout_s: float = 120) -> tuple[int, str, str]:
    process = await start_cli(env, *args)
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
