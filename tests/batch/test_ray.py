"""``--engine ray``: the actor pool on a local Ray cluster (num_cpus=2), against real S3 and the fake VLM.

Runs as a subprocess, as a user would; skipped where Ray is not installed (the `ray` extra is not in dev).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest

from tests.support import images
from tests.support.batch import BatchBucket, run_cli, start_cli
from tests.support.fake_openai import FakeOpenAI, Reply, structured

if not os.environ.get("CI"):  # CI installs the extra (scripts/test): there a missing Ray must fail, not skip
    pytest.importorskip("ray.data", reason="--engine ray needs the `ray` extra")
pytestmark = pytest.mark.slow  # a Ray cluster takes 10-30 s to start on a busy 2-core machine


async def test_ray_engine_captions_every_image_once_and_resumes(
    bucket: BatchBucket, batch_env: dict[str, str], fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    uris = bucket.seed("ray/", 30)
    bucket.put("ray/broken.jpg", images.NOT_AN_IMAGE)
    dest = tmp_path / "out.jsonl"
    # A window of 8: the 30 images go through four Ray datasets, as a 5-million-key prefix would in windows.
    args = (
        f"s3://{bucket.name}/ray/",
        "--out",
        str(dest),
        "--engine",
        "ray",
        "--ray-num-cpus",
        "2",
        "--ray-window",
        "8",
    )
    status, out, err = await run_cli(
        batch_env, *args, "--concurrency", "8", "--write-back", "sidecar", timeout_s=300
    )
    assert status == 2, err
    got = [json.loads(line) for line in dest.read_text().splitlines()]
    assert sorted(r["s3_uri"] for r in got) == sorted(uris)
    assert json.loads(bucket.get("ray/img-0000.jpg.json"))["caption"] == got[0]["caption"]
    failed = [json.loads(line) for line in Path(f"{dest}.errors.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in failed] == ["unsupported_image"]
    assert "30 captioned" in out

    fake_vlm.requests.clear()
    status, out, err = await run_cli(batch_env, *args, "--resume", timeout_s=300)
    assert status == 2, err  # the non-image is retried and fails again
    assert "0 captioned, 30 skipped" in out
    assert len(fake_vlm.requests) == 0


async def test_ray_engine_ctrl_c_exits_130_and_resumes(
    bucket: BatchBucket, batch_env: dict[str, str], fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    fake_vlm.reset(Reply(content=structured(), delay_s=0.3))
    uris = bucket.seed("c/", 60)
    dest = tmp_path / "out.jsonl"
    args = (f"s3://{bucket.name}/c/", "--out", str(dest), "--engine", "ray", "--ray-num-cpus", "2")
    process = await start_cli(batch_env, *args, "--concurrency", "2")
    for _ in range(1200):  # until the first lines are written (Ray takes a while to start)
        if len(fake_vlm.requests) >= 6:
            break
        await asyncio.sleep(0.1)
    process.send_signal(signal.SIGINT)
    stdout, _ = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 130
    assert "interrupted" in stdout.decode()
    status, _, err = await run_cli(batch_env, *args, "--resume", timeout_s=300)
    assert status == 0, err
    lines = [json.loads(line) for line in dest.read_text().splitlines()]
    assert sorted(r["s3_uri"] for r in lines) == sorted(uris)
