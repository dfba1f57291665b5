"""The local engine over real S3 and the fake VLM: every image once, failures reported, exit codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from gateway.pipeline import CaptionRequest
from tests.support import images
from tests.support.batch import BatchBucket, RunBatch, run_cli
from tests.support.fake_openai import FakeOpenAI, Reply


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def errors(path: Path) -> list[dict[str, Any]]:
    return lines(path.with_name(path.name + ".errors.jsonl"))


async def test_prefix_every_image_exactly_once(
    bucket: BatchBucket, run: RunBatch, fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    uris = bucket.seed("photos/", 120)
    bucket.seed("elsewhere/", 3)
    bucket.put("photos/notes.txt", b"not listed: not an image name")
    dest = tmp_path / "out.jsonl"
    status = await run(f"s3://{bucket.name}/photos/", str(dest), concurrency=16, page_size=25)
    assert status == 0
    got = lines(dest)
    assert sorted(r["s3_uri"] for r in got) == sorted(uris)
    first = got[0]
    assert first["caption"] == "A red bicycle leans against a brick wall."
    assert first["enhanced"] is False
    assert "bicycle" in first["keywords"]
    assert first["etag"] and set(first["timings"]) >= {"s3", "image", "vlm"}
    assert len(fake_vlm.requests) == 120
    assert errors(dest) == []


async def test_bad_images_are_reported_and_the_run_goes_on(
    bucket: BatchBucket, run: RunBatch, tmp_path: Path
) -> None:
    good = bucket.seed("mixed/", 5)
    bucket.put("mixed/text.jpg", images.NOT_AN_IMAGE)
    bucket.put("mixed/truncated.jpg", images.truncated_jpeg())
    bucket.put("mixed/empty.png", b"")
    dest = tmp_path / "out.jsonl"
    assert await run(f"s3://{bucket.name}/mixed/", str(dest)) == 2
    assert sorted(r["s3_uri"] for r in lines(dest)) == sorted(good)
    failed = {r["s3_uri"].rsplit("/", 1)[1]: r for r in errors(dest)}
    assert set(failed) == {"text.jpg", "truncated.jpg", "empty.png"}
    assert {name: r["reason"] for name, r in failed.items()} == {
        "text.jpg": "unsupported_image",
        "truncated.jpg": "image_corrupt",
        "empty.png": "image_empty",
    }
    assert all(r["message"] and r["etag"] for r in failed.values())


async def test_empty_prefix_is_zero_images_not_a_failure(
    bucket: BatchBucket, batch_env: dict[str, str], tmp_path: Path
) -> None:
    dest = tmp_path / "out.jsonl"
    status, out, _ = await run_cli(batch_env, f"s3://{bucket.name}/nothing-here/", "--out", str(dest))
    assert status == 0
    assert "0 captioned, 0 skipped (already in DEST), 0 failed" in out
    assert dest.read_text() == ""


async def test_existing_dest_refuses_without_resume(
    bucket: BatchBucket, batch_env: dict[str, str], fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    bucket.seed("a/", 2)
    dest = tmp_path / "out.jsonl"
    dest.write_text("")
    status, _, err = await run_cli(batch_env, f"s3://{bucket.name}/a/", "--out", str(dest))
    assert status == 1
    assert "--resume" in err
    assert fake_vlm.requests == []


async def test_unwritable_dest_fails_before_any_model_call(
    bucket: BatchBucket, batch_env: dict[str, str], fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    bucket.seed("a/", 2)
    source = f"s3://{bucket.name}/a/"
    status, _, err = await run_cli(batch_env, source, "--out", str(tmp_path / "missing" / "out.jsonl"))
    assert status == 1
    assert "not a directory" in err
    status, _, err = await run_cli(batch_env, source, "--out", "s3://no-such-bucket-here/out/")
    assert status == 1
    assert "cannot use s3://no-such-bucket-here/out/" in err
    assert fake_vlm.requests == []


async def test_resume_skips_done_and_recaptions_changed_images(
    bucket: BatchBucket, run: RunBatch, fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    uris = bucket.seed("r/", 20)
    dest = tmp_path / "out.jsonl"
    fake_vlm.then(Reply(status=400))  # the first image fails for good (4xx is not retried)
    assert await run(f"s3://{bucket.name}/r/", str(dest), concurrency=1) == 2
    assert len(errors(dest)) == 1
    before = {r["s3_uri"]: r["etag"] for r in lines(dest)}
    bucket.put("r/img-0003.jpg", images.photo(200, 100))  # new content, new ETag
    fake_vlm.requests.clear()
    assert await run(f"s3://{bucket.name}/r/", str(dest), mode="resume") == 0
    assert len(fake_vlm.requests) == 2  # the failure retried, the changed image captioned again
    after = lines(dest)
    assert sorted(r["s3_uri"] for r in after) == sorted(uris)  # once each: the old line is gone
    changed = f"s3://{bucket.name}/r/img-0003.jpg"
    assert {r["s3_uri"]: r["etag"] for r in after}[changed] != before[changed]
    assert errors(dest) == []


async def test_modified_since_takes_only_newer_objects(
    bucket: BatchBucket, run: RunBatch, tmp_path: Path
) -> None:
    bucket.seed("m/", 3)
    newest = max(o["LastModified"] for o in bucket.client.list_objects_v2(Bucket=bucket.name)["Contents"])
    dest = tmp_path / "out.jsonl"
    assert await run(f"s3://{bucket.name}/m/", str(dest), modified_since=newest) == 0
    assert lines(dest) == []


async def test_uri_list_source_and_its_resume(
    bucket: BatchBucket, run: RunBatch, fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    uris = bucket.seed("u/", 4)
    listing = tmp_path / "uris.txt"
    listing.write_text(f"# a comment\n{uris[0]}\n{json.dumps({'s3_uri': uris[1]})}\n\n{uris[2]}\n{uris[3]}\n")
    dest = tmp_path / "out.jsonl"
    assert await run(str(listing), str(dest)) == 0
    assert sorted(r["s3_uri"] for r in lines(dest)) == sorted(uris)
    fake_vlm.requests.clear()
    assert await run(str(listing), str(dest), mode="resume") == 0  # ETags asked with HEAD
    assert fake_vlm.requests == []
    assert len(lines(dest)) == 4


async def test_s3_dest_resume_supersedes_changed_images_and_overwrite_starts_over(
    bucket: BatchBucket, run: RunBatch, fake_vlm: FakeOpenAI
) -> None:
    uris = bucket.seed("s/", 12)
    source, dest = f"s3://{bucket.name}/s/", f"s3://{bucket.name}/out/"
    assert await run(source, dest) == 0
    assert bucket.keys("out/") == ["out/part-00001.jsonl"]
    bucket.put("s/img-0001.jpg", images.photo(120, 90))
    fake_vlm.requests.clear()
    assert await run(source, dest, mode="resume") == 0
    assert len(fake_vlm.requests) == 1
    assert bucket.keys("out/") == ["out/part-00001.jsonl", "out/part-00002.jsonl"]
    got = [json.loads(line) for key in bucket.keys("out/") for line in bucket.get(key).decode().splitlines()]
    assert sorted(r["s3_uri"] for r in got) == sorted(uris)  # the superseded line was compacted away
    assert await run(source, dest, mode="overwrite") == 0
    assert bucket.keys("out/") == ["out/part-00001.jsonl"]


@pytest.mark.parametrize("request_", [{"style": "baroque"}, {"vocabulary": "no-such-list"}])
async def test_unknown_style_stops_before_any_image(
    bucket: BatchBucket, run: RunBatch, fake_vlm: FakeOpenAI, tmp_path: Path, request_: dict[str, str]
) -> None:
    bucket.seed("photos/", 3)
    dest = tmp_path / "out.jsonl"
    dest.write_text('{"s3_uri": "s3://earlier/run.jpg"}\n')
    request = CaptionRequest(s3_uri="", **request_)
    status = await run(f"s3://{bucket.name}/photos/", str(dest), request=request, mode="overwrite")
    assert status == 1
    assert fake_vlm.requests == []
    assert "earlier/run.jpg" in dest.read_text()  # a typo must not cost the earlier output


async def test_unreadable_uri_list_ends_the_run_instead_of_hanging(
    run: RunBatch, fake_vlm: FakeOpenAI, tmp_path: Path
) -> None:
    uris = tmp_path / "uris.txt"
    uris.write_bytes(b"s3://bucket/a.jpg\n\xff\xfe not utf-8\n")
    status = await asyncio.wait_for(run(str(uris), str(tmp_path / "out.jsonl"), concurrency=2), 60)
    assert status == 1
