"""Write-back: JSON sidecars, merged S3 tags, XMP sidecars read back by exiftool (a second XMP reader)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.writeback.tags import tag_value
from tests.support.batch import BatchBucket, RunBatch

DARKTABLE_XMP = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" xmlns:dc="http://purl.org/dc/elements/1.1/"
 darktable:xmp_version="5"><dc:subject><rdf:Bag><rdf:li>stale</rdf:li></rdf:Bag></dc:subject></rdf:Description>
</rdf:RDF></x:xmpmeta>"""


def exiftool(path: Path) -> dict[str, Any]:
    found = shutil.which("exiftool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("exiftool is missing: apt-get install libimage-exiftool-perl")
        pytest.skip("exiftool is not installed (apt-get install libimage-exiftool-perl)")
    out = subprocess.run([found, "-j", "-struct", "-XMP:all", str(path)], capture_output=True, check=True)
    return dict(json.loads(out.stdout)[0])


async def test_sidecar_tags_and_xmp(bucket: BatchBucket, run: RunBatch, tmp_path: Path) -> None:
    (uri,) = bucket.seed("w/", 1)
    key = uri.split("/", 3)[3]
    image_before = bucket.get(key)
    bucket.client.put_object_tagging(
        Bucket=bucket.name,
        Key=key,
        Tagging={
            "TagSet": [{"Key": "project", "Value": "spring"}, {"Key": "florence:caption", "Value": "old"}]
        },
    )
    dest = tmp_path / "out.jsonl"
    modes = frozenset({"sidecar", "tags", "xmp"})
    assert await run(f"s3://{bucket.name}/w/", str(dest), write_back=modes) == 0
    line = json.loads(dest.read_text())

    assert json.loads(bucket.get(key + ".json")) == line
    tags = {
        t["Key"]: t["Value"] for t in bucket.client.get_object_tagging(Bucket=bucket.name, Key=key)["TagSet"]
    }
    assert tags["project"] == "spring"  # the object's own tags survive the merge
    assert tags["florence:caption"] == "A red bicycle leans against a brick wall."
    assert tags["florence:keywords"] == " / ".join(line["keywords"])
    assert tags["florence:etag"] == line["etag"]
    assert set(tags) == {"project"} | {
        f"florence:{f}" for f in ("caption", "keywords", "colors", "model")
    } | {
        "florence:etag",
        "florence:captioned-at",
    }

    xmp_path = tmp_path / "img.xmp"
    xmp_path.write_bytes(bucket.get(key + ".xmp"))
    read = exiftool(xmp_path)
    assert read["Description"] == line["caption"]
    assert read["Subject"] == line["keywords"]
    assert read["CreatorTool"] == "florence-tagger"
    assert bucket.get(key) == image_before  # write-back never touches the image
    assert sorted(bucket.keys("w/")) == sorted([key, key + ".json", key + ".xmp"])


async def test_xmp_merges_into_an_existing_sidecar(
    bucket: BatchBucket, run: RunBatch, tmp_path: Path
) -> None:
    (uri,) = bucket.seed("x/", 1)
    key = uri.split("/", 3)[3]
    bucket.put(key + ".xmp", DARKTABLE_XMP)
    sidecars = f"s3://{bucket.name}/captions/"
    modes = frozenset({"xmp", "sidecar"})
    assert (
        await run(
            f"s3://{bucket.name}/x/", str(tmp_path / "o.jsonl"), write_back=modes, sidecar_prefix=sidecars
        )
        == 0
    )
    xmp_path = tmp_path / "merged.xmp"
    xmp_path.write_bytes(bucket.get(key + ".xmp"))
    read = exiftool(xmp_path)
    assert read["Subject"] != ["stale"] and "bicycle" in read["Subject"]
    assert str(read.get("Xmp_version", read.get("XmpVersion"))) == "5"  # darktable's field survives
    assert json.loads(bucket.get(f"captions/{key}.json"))["s3_uri"] == uri


def test_tag_values_fit_s3_rules() -> None:
    assert tag_value('A "quoted", comma; caption') == "A quoted comma caption"
    long = tag_value("word " * 100)
    assert len(long) <= 256 and long.endswith("...")
    assert re.fullmatch(r"[\w\s+\-=.:/@]*", long)  # only the characters AWS allows in tag values
