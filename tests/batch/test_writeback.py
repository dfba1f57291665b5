"""Write-back: JSON sidecars, merged S3 tags, XMP sidecars read back by exiftool (a second XMP reader)."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from gateway.batch.job import BatchOptions
from gateway.batch.local import run_batch
from gateway.pipeline import CaptionRequest
from gateway.settings import Settings
from gateway.writeback.tags import tag_value
from tests.support import images
from tests.support.batch import BatchBucket, RunBatch, small_images
from tests.support.exiftool import exiftool_json as exiftool
from tests.support.exiftool import exiftool_x

DARKTABLE_XMP = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:darktable="http://darktable.sf.net/" xmlns:dc="http://purl.org/dc/elements/1.1/"
 darktable:xmp_version="5"><dc:subject><rdf:Bag><rdf:li>stale</rdf:li></rdf:Bag></dc:subject></rdf:Description>
</rdf:RDF></x:xmpmeta>"""


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
    assert tags["florence:headline"] == line["headline"] == "Red bicycle against a brick wall"
    assert tags["florence:alt-text"] == line["alt_text"] == "A red bicycle leaning on a brick wall."
    assert set(tags) == {"project"} | {
        f"florence:{f}" for f in ("caption", "keywords", "headline", "alt-text", "colors", "model")
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


# --- the IPTC fields, read back by exiftool -X (its own group:tag names, -lang for a language) --------------
USER_SIDECAR = b"""<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/"
 xmlns:photoshop="http://ns.adobe.com/photoshop/1.0/" xmp:Rating="4" photoshop:Headline="My own headline">
<dc:title><rdf:Alt><rdf:li xml:lang="x-default">Harbour at dawn</rdf:li></rdf:Alt></dc:title>
<dc:description><rdf:Alt><rdf:li xml:lang="x-default">stale caption</rdf:li></rdf:Alt></dc:description>
</rdf:Description></rdf:RDF></x:xmpmeta>"""
CAPTION = "A red bicycle leans against a brick wall."
ALT = "A red bicycle leaning on a brick wall."
HEADLINE = "Red bicycle against a brick wall"


def xmp_of(bucket: BatchBucket, key: str, tmp_path: Path) -> dict[str, str | list[str]]:
    path = tmp_path / (key.replace("/", "_") + ".read.xmp")
    path.write_bytes(bucket.get(key))
    return exiftool_x(path)


async def test_every_field_with_its_language_in_a_fresh_sidecar(
    bucket: BatchBucket, run: RunBatch, tmp_path: Path
) -> None:
    (uri,) = bucket.seed("f/", 1)
    key = uri.split("/", 3)[3]
    dest = tmp_path / "o.jsonl"
    assert await run(f"s3://{bucket.name}/f/", str(dest), write_back=frozenset({"xmp"})) == 0
    read = xmp_of(bucket, key + ".xmp", tmp_path)
    for tag, text in [
        ("XMP-dc:Description", CAPTION),
        ("XMP-iptcCore:AltTextAccessibility", ALT),
        ("XMP-iptcCore:ExtDescrAccessibility", CAPTION),  # the long description: the caption
    ]:
        assert read[tag] == text  # x-default
        assert read[f"{tag}-en"] == text  # and the caption's language
    assert read["XMP-photoshop:Headline"] == HEADLINE  # plain Text in its schema: no language
    assert read["XMP-dc:Subject"] == ["bicycle", "wall", "brick", "street", "red"]
    assert "XMP-lr:HierarchicalSubject" not in read  # flat keywords


async def test_merged_sidecar_keeps_the_users_rating_and_title(
    bucket: BatchBucket, run: RunBatch, tmp_path: Path
) -> None:
    (uri,) = bucket.seed("m/", 1)
    key = uri.split("/", 3)[3]
    bucket.put(key + ".xmp", USER_SIDECAR)
    dest = tmp_path / "o.jsonl"
    request = CaptionRequest(s3_uri="", language="de")
    assert await run(f"s3://{bucket.name}/m/", str(dest), write_back=frozenset({"xmp"}), request=request) == 0
    read = xmp_of(bucket, key + ".xmp", tmp_path)
    assert read["XMP-xmp:Rating"] == "4"  # the user's own fields survive
    assert read["XMP-dc:Title"] == "Harbour at dawn"
    assert read["XMP-dc:Description"] == read["XMP-dc:Description-de"] == CAPTION  # ours replaced
    assert read["XMP-iptcCore:AltTextAccessibility-de"] == ALT
    assert read["XMP-photoshop:Headline"] == HEADLINE


async def test_xmp_fields_leave_the_others_to_the_user(
    bucket: BatchBucket, batch_env: dict[str, str], tmp_path: Path
) -> None:
    (uri,) = bucket.seed("s/", 1)
    key = uri.split("/", 3)[3]
    bucket.put(key + ".xmp", USER_SIDECAR)
    settings = Settings(**{**batch_env, "XMP_FIELDS": "description,alt_text"})  # type: ignore[arg-type]
    options = BatchOptions(source=f"s3://{bucket.name}/s/", out=str(tmp_path / "o.jsonl"))
    assert await run_batch(replace(options, write_back=frozenset({"xmp"})), settings) == 0
    read = xmp_of(bucket, key + ".xmp", tmp_path)
    assert read["XMP-dc:Description"] == CAPTION
    assert read["XMP-iptcCore:AltTextAccessibility"] == ALT
    assert read["XMP-photoshop:Headline"] == "My own headline"  # not ours to write: the user's survives
    assert "XMP-dc:Subject" not in read and "XMP-iptcCore:ExtDescrAccessibility" not in read


# --- sidecar naming: KEY.xmp or the stem's --------------------------------------------------------------
async def test_stem_naming_and_a_shared_stem_is_reported_not_overwritten(
    bucket: BatchBucket, run: RunBatch, tmp_path: Path
) -> None:
    bucket.put("n/IMG_1234.jpg", small_images()[0])
    bucket.put("n/IMG_1234.png", images.png_alpha())
    bucket.put("n/IMG_2000.jpg", small_images()[1])
    dest = tmp_path / "o.jsonl"
    status = await run(f"s3://{bucket.name}/n/", str(dest), write_back=frozenset({"xmp"}), xmp_name="stem")
    assert status == 2  # one image failed: reported, as a failure line
    assert sorted(k for k in bucket.keys("n/") if k.endswith(".xmp")) == ["n/IMG_1234.xmp", "n/IMG_2000.xmp"]
    (failure,) = [json.loads(line) for line in Path(f"{dest}.errors.jsonl").read_text().splitlines()]
    assert failure["reason"] == "xmp_name_collision"
    loser = failure["s3_uri"].rsplit("/", 1)[1]
    winner = ({"IMG_1234.jpg", "IMG_1234.png"} - {loser}).pop()
    assert winner in failure["message"] and "--xmp-name full" in failure["message"]
    assert xmp_of(bucket, "n/IMG_1234.xmp", tmp_path)["XMP-florence:SourceImage"] == winner  # untouched
    done = {json.loads(line)["s3_uri"] for line in dest.read_text().splitlines()}
    assert done == {f"s3://{bucket.name}/n/{winner}", f"s3://{bucket.name}/n/IMG_2000.jpg"}


async def test_a_sidecar_of_another_tool_is_merged_and_a_rerun_is_no_collision(
    bucket: BatchBucket, batch_env: dict[str, str], tmp_path: Path
) -> None:
    bucket.put("l/IMG_7.jpg", small_images()[0])
    bucket.put("l/IMG_7.xmp", USER_SIDECAR)  # Lightroom's, say: it names no image of ours
    settings = Settings(**{**batch_env, "XMP_NAME": "stem"})  # type: ignore[arg-type]
    options = BatchOptions(source=f"s3://{bucket.name}/l/", out=str(tmp_path / "o.jsonl"))
    options = replace(options, write_back=frozenset({"xmp"}))
    assert await run_batch(options, settings) == 0  # XMP_NAME=stem is the default without --xmp-name
    assert await run_batch(replace(options, mode="overwrite"), settings) == 0
    read = xmp_of(bucket, "l/IMG_7.xmp", tmp_path)
    assert read["XMP-xmp:Rating"] == "4" and read["XMP-dc:Description"] == CAPTION
    assert "l/IMG_7.jpg.xmp" not in bucket.keys("l/")
    full = replace(options, mode="overwrite", xmp_name="full")  # the batch flag overrides the setting
    assert await run_batch(full, settings) == 0
    assert "l/IMG_7.jpg.xmp" in bucket.keys("l/")
