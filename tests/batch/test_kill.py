"""SIGKILL mid-run, then --resume: every image exactly once in DEST, local file and S3 parts alike.

The command runs as a subprocess; the fake VLM (100 ms per answer) runs in this test's event loop.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.support.batch import BatchBucket, run_cli, start_cli
from tests.support.fake_openai import FakeOpenAI, Reply, structured

COUNT = 150
SLOW = Reply(content=structured(), delay_s=0.1)


async def wait_for(condition: Callable[[], Awaitable[bool] | bool], timeout_s: float = 60) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            outcome = condition()
            if await outcome if isinstance(outcome, Awaitable) else outcome:
                return
            await asyncio.sleep(0.05)


def uris_in(text: str) -> list[str]:
    return [json.loads(line)["s3_uri"] for line in text.splitlines()]


async def test_sigkill_then_resume_local(
    bucket: BatchBucket, batch_env: dict[str, str], fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    fake_vlm.reset(SLOW)
    uris = bucket.seed("k/", COUNT)
    dest = tmp_path / "out.jsonl"
    args = (f"s3://{bucket.name}/k/", "--out", str(dest), "--concurrency", "8")
    process = await start_cli(batch_env, *args)
    await wait_for(lambda: dest.exists() and dest.read_text().count("\n") >= 30)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    with dest.open("ab") as file:
        file.write(b'{"s3_uri": "s3://torn/li')  # what a crash mid-write would leave
    written = len(uris_in(dest.read_text().rsplit("\n", 1)[0]))
    assert 30 <= written < COUNT
    status, out, err = await run_cli(batch_env, *args, "--resume")
    assert status == 0, err
    assert f"{COUNT - written} captioned, {written} skipped" in out
    got = uris_in(dest.read_text())
    assert sorted(got) == sorted(uris)  # each exactly once, the torn line gone


async def test_sigkill_then_resume_s3_parts(
    bucket: BatchBucket, batch_env: dict[str, str], fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(SLOW)
    uris = bucket.seed("k/", COUNT)
    dest = f"s3://{bucket.name}/out/"
    args = (f"s3://{bucket.name}/k/", "--out", dest, "--concurrency", "16")
    process = await start_cli(batch_env, *args)
    await wait_for(lambda: len(bucket.keys("out/part-")) >= 1)
    process.send_signal(signal.SIGKILL)
    await process.wait()
    parts_before = bucket.keys("out/part-")
    status, _, err = await run_cli(batch_env, *args, "--resume")
    assert status == 0, err
    parts = bucket.keys("out/part-")
    assert parts[: len(parts_before)] == parts_before  # a resume continues with the next part number
    assert len(parts) > len(parts_before)
    got = [uri for key in parts for uri in uris_in(bucket.get(key).decode())]
    assert sorted(got) == sorted(uris)


async def test_ctrl_c_exits_130_without_a_partial_line(
    bucket: BatchBucket, batch_env: dict[str, str], fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    fake_vlm.reset(SLOW)
    uris = bucket.seed("c/", 60)
    dest = tmp_path / "out.jsonl"
    args = (f"s3://{bucket.name}/c/", "--out", str(dest), "--concurrency", "4")
    process = await start_cli(batch_env, *args)
    await wait_for(lambda: dest.exists() and dest.read_text().count("\n") >= 5)
    process.send_signal(signal.SIGINT)
    stdout, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 130
    assert "batch interrupted" in stdout.decode()
    text = dest.read_text()
    assert text.endswith("\n")
    assert len(uris_in(text)) < 60
    status, _, _ = await run_cli(batch_env, *args, "--resume")
    assert status == 0
    assert sorted(uris_in(dest.read_text())) == sorted(uris)
