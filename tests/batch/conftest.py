"""Batch fixtures: a fresh bucket per test, the environment that points a run at the fakes, an in-process run.

Helpers that tests import (``BatchBucket``, ``run_cli``...) live in ``tests/support/batch.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.batch.job import BatchOptions
from gateway.batch.local import run_batch
from gateway.settings import Settings
from tests.support.batch import BatchBucket, RunBatch, new_bucket
from tests.support.fake_openai import FakeOpenAI
from tests.support.s3_server import S3Server


@pytest.fixture
def bucket(s3_server: S3Server) -> BatchBucket:
    return new_bucket(s3_server)


@pytest.fixture
def batch_env(
    s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI, tmp_path: Path
) -> dict[str, str]:
    return {
        **s3_server.env(),
        "DATA_DIR": str(tmp_path / "data"),  # this test's own catalogue
        "VLM_BASE_URL": fake_vlm.base_url,
        "GPT_OSS_BASE_URL": fake_enhancer.base_url,
        "S3_TIMEOUT_S": "5",
        "LOG_LEVEL": "warning",
    }


@pytest.fixture
def run(batch_env: dict[str, str]) -> RunBatch:
    """``await run(source, out, mode=..., ...)``: the local engine in-process, against the fakes."""

    async def go(source: str, out: str, **options: Any) -> int:
        settings = Settings(**batch_env)  # type: ignore[arg-type]
        return await run_batch(BatchOptions(source=source, out=out, **options), settings)

    return go
