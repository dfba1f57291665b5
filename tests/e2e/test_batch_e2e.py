"""``florence-tagger batch`` end to end on the real vLLM CPU stack: the local engine and ``--engine ray``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.support.batch import BatchBucket, new_bucket, run_cli
from tests.support.s3_server import S3Server
from tests.support.vllm_stack import CpuStack


@pytest.fixture
def stack_bucket(s3_server: S3Server) -> BatchBucket:
    return new_bucket(s3_server, "e2e-batch")


def stack_env(s3_server: S3Server, cpu_stack: CpuStack, data_dir: Path) -> dict[str, str]:
    # DATA_DIR: the batch keeps its catalogue there; the test's own, not ./data in the work tree.
    return {
        **cpu_stack.gateway_env(),
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "LOG_LEVEL": "warning",
        "DATA_DIR": str(data_dir),
    }


def read_lines(dest: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in dest.read_text().splitlines()]


@pytest.mark.parametrize("engine", ["local", "ray"])
async def test_batch_captions_a_prefix_through_real_vllm(
    stack_bucket: BatchBucket, s3_server: S3Server, cpu_stack: CpuStack, tmp_path: Path, engine: str
) -> None:
    if engine == "ray" and not os.environ.get("CI"):
        pytest.importorskip(
            "ray.data", reason="--engine ray needs the `ray` extra (scripts/test installs it)"
        )
    uris = stack_bucket.seed("shots/", 6)
    dest = tmp_path / "captions.jsonl"
    args = [
        f"s3://{stack_bucket.name}/shots/",
        "--out",
        str(dest),
        "--concurrency",
        "4",
        "--write-back",
        "xmp",
    ]
    if engine == "ray":
        args += ["--engine", "ray", "--ray-num-cpus", "2"]
    env = stack_env(s3_server, cpu_stack, tmp_path / "data")
    status, _out, err = await run_cli(env, *args, timeout_s=600)
    assert status == 0, err
    lines = read_lines(dest)
    assert sorted(line["s3_uri"] for line in lines) == sorted(uris)  # each image exactly once
    for line in lines:
        assert line["caption"]
        assert line["models"]["vlm"] == "Qwen/Qwen2.5-VL-7B-Instruct"
        assert line["usage"]["vlm"]["prompt_tokens"] > 0
        assert line["etag"]
    assert b"dc:description" in stack_bucket.get("shots/img-0000.jpg.xmp")
