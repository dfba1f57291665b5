"""The two batch engines are one job: the same inputs give the same lines, error records and exit status.

Each case runs ``florence-tagger batch`` as a user would, once with ``--engine local`` and once with
``--engine ray`` (a local Ray cluster), against real S3 and the fake VLM.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from gateway.catalogue import open_catalogue
from gateway.settings import Settings
from tests.support import images
from tests.support.batch import BatchBucket, new_bucket, run_cli, start_cli
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.s3_fault_proxy import S3FaultProxy
from tests.support.s3_server import S3Server

if not os.environ.get("CI"):  # CI installs the extra (scripts/test): there a missing Ray must fail, not skip
    pytest.importorskip("ray.data", reason="--engine ray needs the `ray` extra")


@pytest.fixture(
    params=[
        pytest.param(("--engine", "local"), id="local"),
        # A Ray cluster takes 10-30 s to start on a busy 2-core machine.
        pytest.param(("--engine", "ray", "--ray-num-cpus", "2"), id="ray", marks=pytest.mark.slow),
    ]
)
def engine(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """The command-line arguments that choose an engine."""
    return tuple(request.param)


def read(path: Path) -> list[dict[str, Any]]:
    """The lines of a JSONL file without their timings (which differ run to run), in S3 URI order."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(
        ({k: v for k, v in row.items() if k != "timings"} for row in rows), key=lambda r: r["s3_uri"]
    )


async def test_a_uri_list_with_bad_entries_then_its_resume(
    engine: tuple[str, ...],
    bucket: BatchBucket,
    batch_env: dict[str, str],
    fake_vlm: FakeOpenAI,
    tmp_path: Path,
) -> None:
    good = bucket.seed("list/", 3)
    bucket.put("list/corrupt.jpg", images.NOT_AN_IMAGE)
    missing = f"s3://{bucket.name}/list/never-uploaded.jpg"
    uris = tmp_path / "uris.txt"
    uris.write_text("\n".join([*good, f"s3://{bucket.name}/list/corrupt.jpg", missing]) + "\n")
    dest = tmp_path / "out.jsonl"
    errors = tmp_path / "out.jsonl.errors.jsonl"

    status, _, err = await run_cli(batch_env, str(uris), "--out", str(dest), *engine, timeout_s=300)
    assert status == 2, err
    assert [row["s3_uri"] for row in read(dest)] == sorted(good)
    assert all(row["etag"] and row["caption"] for row in read(dest))
    assert [(r["s3_uri"].rsplit("/", 1)[1], r["reason"], r["etag"]) for r in read(errors)] == [
        ("corrupt.jpg", "unsupported_image", None),  # a URI list does not know the version that failed
        ("never-uploaded.jpg", "s3_not_found", None),
    ]
    first_lines = read(dest)
    # Every captioned line is in the catalogue too (on Ray the driver writes it), marked as batch work.
    async with open_catalogue(Settings(DATA_DIR=batch_env["DATA_DIR"])) as catalogue:  # type: ignore[call-arg]
        kept = [entry async for entry in catalogue.export()]
    assert len(kept) == 3, err
    assert sorted((e.s3_uri, e.etag, e.source) for e in kept) == [
        (r["s3_uri"], r["etag"], "batch") for r in first_lines
    ]

    # The resume asks S3 (HEAD) for the ETag of each URI DEST holds: unchanged ones are skipped, the
    # failures are tried again and fail again.
    fake_vlm.requests.clear()
    status, out, err = await run_cli(
        batch_env, str(uris), "--out", str(dest), "--resume", *engine, timeout_s=300
    )
    assert status == 2, err
    assert "0 captioned, 3 skipped" in out
    assert fake_vlm.requests == []
    assert read(dest) == first_lines
    assert [r["reason"] for r in read(errors)] == ["unsupported_image", "s3_not_found"]


async def test_an_unwritable_dest_refuses_to_start(
    engine: tuple[str, ...],
    tmp_path: Path,
    bucket: BatchBucket,
    batch_env: dict[str, str],
    fake_vlm: FakeOpenAI,
) -> None:
    bucket.seed("a/", 2)
    dest = tmp_path / "no-such-dir" / "out.jsonl"
    status, _, err = await run_cli(batch_env, f"s3://{bucket.name}/a/", "--out", str(dest), *engine)
    assert status == 1
    assert "not a directory" in err
    assert fake_vlm.requests == []


async def test_a_dest_that_stops_accepting_lines_stops_the_run_and_says_so(
    engine: tuple[str, ...],
    bucket: BatchBucket,
    s3_server: S3Server,
    batch_env: dict[str, str],
    fake_vlm: FakeOpenAI,
) -> None:
    fake_vlm.reset(Reply(content=structured(), delay_s=0.05))
    bucket.seed("in/", 40)
    dest = new_bucket(s3_server, "dest")
    proxy = S3FaultProxy(s3_server.endpoint_url)
    await proxy.start()
    try:
        env = {**batch_env, "S3_ENDPOINT_URL": proxy.endpoint_url}
        args = (f"s3://{bucket.name}/in/", "--out", f"s3://{dest.name}/out/", "--concurrency", "2", *engine)
        process = await start_cli(env, *args)
        for _ in range(3000):  # until captioning is under way (Ray takes a while to start)
            if fake_vlm.requests:
                break
            await asyncio.sleep(0.1)
        # From now on every line written to DEST is refused, as a full disk or revoked permission would.
        proxy.refuse(lambda request: request.method == "PUT" and request.path.startswith(f"/{dest.name}/"))
        _, err = await asyncio.wait_for(process.communicate(), 300)
    finally:
        await proxy.stop()
    assert process.returncode == 1, err.decode()
    assert proxy.refused
    assert f"stopped: cannot write s3://{dest.name}/out/" in err.decode()
    assert "cannot list" not in err.decode()
