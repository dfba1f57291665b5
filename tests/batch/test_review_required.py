"""Batch write-back and review. With REVIEW_REQUIRED nothing is written beside an image until a person
approves it, and then what the batch asked for is written; without it, an approved edit replaces what the
batch wrote."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.batch.job import BatchOptions
from gateway.batch.local import run_batch
from gateway.settings import Settings
from tests.support.batch import BatchBucket
from tests.support.exiftool import exiftool_json
from tests.support.gateway import GatewayFactory

MODES = frozenset({"sidecar", "xmp"})


async def batch(
    bucket: BatchBucket, env: dict[str, str], out: Path, **settings: str
) -> list[dict[str, object]]:
    options = BatchOptions(source=f"s3://{bucket.name}/r/", out=str(out), write_back=MODES)
    assert await run_batch(options, Settings(**{**env, **settings})) == 0  # type: ignore[arg-type]
    return [json.loads(line) for line in out.read_text().splitlines()]


def catalogue_of(env: dict[str, str]) -> str:
    return f"sqlite+aiosqlite:///{Path(env['DATA_DIR']).resolve() / 'florence-tagger.db'}"


async def test_with_review_required_only_an_approval_writes_back(
    bucket: BatchBucket, batch_env: dict[str, str], gateway: GatewayFactory, tmp_path: Path
) -> None:
    first, second = (uri.split("/", 3)[3] for uri in bucket.seed("r/", 2))
    lines = await batch(bucket, batch_env, tmp_path / "out.jsonl", REVIEW_REQUIRED="true")
    assert len(lines) == 2  # DEST has every line, as without review
    assert sorted(bucket.keys("r/")) == sorted([first, second])  # nothing beside the images yet

    async with gateway(DATABASE_URL=catalogue_of(batch_env)) as client:  # no REVIEW_WRITE_BACK of its own
        entries = {e["s3_uri"]: e for e in (await client.get("/v1/captions")).json()["items"]}
        waiting = entries[f"s3://{bucket.name}/{first}"]
        approved = await client.patch(f"/v1/captions/{waiting['id']}", json={"status": "approved"})

    assert {e["write_back"]["status"] for e in entries.values()} == {"deferred"}
    assert waiting["write_back"]["modes"] == ["sidecar", "xmp"]
    assert approved.json()["write_back"]["status"] == "done"
    assert sorted(bucket.keys("r/")) == sorted([first, first + ".json", first + ".xmp", second])


async def test_without_review_required_an_approved_edit_replaces_what_the_batch_wrote(
    bucket: BatchBucket, batch_env: dict[str, str], gateway: GatewayFactory, tmp_path: Path
) -> None:
    (key,) = (uri.split("/", 3)[3] for uri in bucket.seed("r/", 1))
    (line,) = await batch(bucket, batch_env, tmp_path / "out.jsonl")
    assert json.loads(bucket.get(key + ".json"))["caption"] == line["caption"]  # written at once, as before

    async with gateway(DATABASE_URL=catalogue_of(batch_env)) as client:
        (entry,) = (await client.get("/v1/captions")).json()["items"]
        edit = {"caption": "A red road bike against the bakery's wall.", "status": "approved"}
        approved = (await client.patch(f"/v1/captions/{entry['id']}", json=edit)).json()

    assert entry["write_back"]["status"] == "done"  # the catalogue knows what the batch wrote
    assert approved["write_back"]["modes"] == ["sidecar", "xmp"]
    assert json.loads(bucket.get(key + ".json"))["caption"] == edit["caption"]
    xmp = tmp_path / "image.xmp"
    xmp.write_bytes(bucket.get(key + ".xmp"))
    assert exiftool_json(xmp)["Description"] == edit["caption"]
