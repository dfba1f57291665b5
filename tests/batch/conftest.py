"""Batch fixtures: a fresh bucket per test, seeded with small generated images, and ways to run the command.

In-process runs call ``run_batch`` directly; SIGKILL and Ctrl-C tests run ``florence-tagger batch`` as a
subprocess, which reaches the fake VLM served from this test's event loop while the test awaits.
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

import pytest

from gateway.batch.runner import BatchOptions, run_batch
from gateway.settings import Settings
from tests.support import images
from tests.support.fake_openai import FakeOpenAI
from tests.support.s3_server import S3Server

CLI = str(Path(sys.executable).with_name("florence-tagger"))


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


def new_bucket(s3_server: S3Server, prefix: str = "batch") -> BatchBucket:
    """A fresh, empty bucket on the test S3 server."""
    client: Any = s3_server.client()
    name = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return BatchBucket(name, client)


@pytest.fixture
def bucket(s3_server: S3Server) -> BatchBucket:
    return new_bucket(s3_server)


@pytest.fixture
def batch_env(s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI) -> dict[str, str]:
    return {
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "VLM_BASE_URL": fake_vlm.base_url,
        "GPT_OSS_BASE_URL": fake_enhancer.base_url,
        "S3_TIMEOUT_S": "5",
        "LOG_LEVEL": "warning",
    }


RunBatch = Callable[..., Awaitable[int]]


@pytest.fixture
def run(batch_env: dict[str, str]) -> RunBatch:
    """``await run(source, out, mode=..., ...)``: the local engine in-process, against the fakes."""

    async def go(source: str, out: str, **options: Any) -> int:
        settings = Settings(**batch_env)  # type: ignore[arg-type]
        return await run_batch(BatchOptions(source=source, out=out, **options), settings)

    return go


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
