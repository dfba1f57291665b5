"""Vocabularies, IPTC fields and metadata context on the real vLLM CPU stack (tiny random models).

A random model's free output would be anything; held by vLLM's grammar to a vocabulary's enum, every keyword
it returns is a listed term. A small style keeps each answer short, so 100 requests stay cheap in CI.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.batch import BatchBucket, new_bucket, run_cli, small_images
from tests.support.exiftool import exiftool_x, items
from tests.support.gateway import BUCKET, GatewayFactory
from tests.support.images import jpeg_with_metadata, xmp_packet
from tests.support.s3_server import S3Server
from tests.support.vllm_stack import CpuStack

# Ten of the session bucket's images, every format: small, so preparing them costs little.
IMAGES = ("in-budget.jpg", "rotated.jpg", "cmyk.jpg", "alpha.png", "image.webp", "animated.gif", "image.heic")
IMAGES += ("image.avif", "image.bmp", "wide-gamut.jpg")
REQUESTS = 100
CONCURRENCY = 8  # the stack's vLLM batches 4 sequences; 8 in flight keeps it full
# Bounds small enough that a random model's answer is ~200 tokens; the keyword enum is what is under test.
TINY_STYLE = {
    "description": "e2e: short answers",
    "instructions": "Describe this image in a few words.",
    "caption_max_chars": 24,
    "keywords": [3, 6],
    "visible_text_max_items": 1,
    "brands_max_items": 1,
    "colors_max_items": 1,
    "alt_text_max_chars": 16,
    "headline_max_chars": 12,
}
PLACES = [
    f"Places|{continent}|{country}|{city}"
    for continent, country, cities in [
        ("Europe", "France", ["Paris", "Lyon", "Nice"]),
        ("Europe", "Italy", ["Rome", "Milan"]),
        ("North America", "USA", ["Paris", "Austin"]),
    ]
    for city in cities
] + ["Subjects|Animals|Dog", "Subjects|Animals|Cat", "Subjects|Bicycle"]


def random_terms(count: int) -> list[str]:
    rng = random.Random(200)
    terms: dict[str, None] = {}
    while len(terms) < count:
        terms["".join(rng.choices(string.ascii_lowercase, k=rng.randint(4, 10)))] = None
    return list(terms)


@pytest.fixture(scope="module")
def setup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("vocab-e2e")
    (root / "vocabularies").mkdir()
    (root / "vocabularies" / "tags.txt").write_text("\n".join(random_terms(200)) + "\n")
    (root / "vocabularies" / "places.txt").write_text("\n".join(PLACES) + "\n")
    styles = json.loads(Path("gateway/styles/styles.json").read_text())
    (root / "styles.json").write_text(json.dumps({**styles, "tiny": TINY_STYLE}))
    return root


def stack_settings(cpu_stack: CpuStack, setup_dir: Path, **extra: Any) -> dict[str, Any]:
    return {
        **cpu_stack.gateway_env(),
        "VOCABULARIES_DIR": str(setup_dir / "vocabularies"),
        "STYLES_FILE": str(setup_dir / "styles.json"),
        **extra,
    }


async def warmed(client: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(600):  # a real server compiles each style's grammar: a few seconds on two cores
        body: dict[str, Any] = (await client.get("/health")).json()
        if all(v["state"] != "pending" for v in body["vocabularies"].values()):
            return body
        await asyncio.sleep(0.5)
    raise AssertionError(f"vocabularies still pending: {body['vocabularies']}")


async def test_every_keyword_is_a_listed_term_over_100_requests(
    gateway: GatewayFactory, cpu_stack: CpuStack, s3_server: S3Server, setup_dir: Path
) -> None:
    uris = [f"s3://{BUCKET}/{key}" for key in IMAGES]
    listed = set(random_terms(200))
    gate = asyncio.Semaphore(CONCURRENCY)
    # Temperature 1: answers differ from request to request, so the enum is exercised, not one answer.
    async with gateway(**stack_settings(cpu_stack, setup_dir, VLM_TEMPERATURE=1.0)) as client:
        health = await warmed(client)  # the start-up warm-up was accepted by vLLM for every schema
        assert {name: v["state"] for name, v in health["vocabularies"].items()} == {
            "tags": "warmed",
            "places": "warmed",
        }

        async def one(i: int) -> dict[str, Any]:
            body = {"s3_uri": uris[i % len(uris)], "style": "tiny", "vocabulary": "tags"}
            async with gate:
                response = await client.post("/caption", json=body)
            assert response.status_code == 200, response.text
            answer: dict[str, Any] = response.json()
            return answer

        bodies = await asyncio.gather(*(one(i) for i in range(REQUESTS)))
    returned = [keyword for body in bodies for keyword in body["keywords"]]
    assert len(returned) >= 3 * REQUESTS  # the style asks for 3-6 per image
    assert set(returned) <= listed
    assert len(set(returned)) > 20  # a range of the list, not one memorised answer
    for body in bodies:
        assert 0 < len(body["alt_text"]) <= 16 and 0 < len(body["headline"]) <= 12


async def test_hierarchical_vocabulary_lands_in_lr_hierarchical_subject(
    cpu_stack: CpuStack, s3_server: S3Server, setup_dir: Path, tmp_path: Path
) -> None:
    bucket: BatchBucket = new_bucket(s3_server, "e2e-vocab")
    bucket.put("trip/IMG_1.jpg", small_images()[0])
    xmp = xmp_packet("Quai de Seine", ("Paris", "river"), city="Paris")
    bucket.put("trip/IMG_2.jpg", jpeg_with_metadata(xmp=xmp))
    dest = tmp_path / "out.jsonl"
    env = {
        **{k: str(v) for k, v in stack_settings(cpu_stack, setup_dir).items()},
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "LOG_LEVEL": "warning",
    }
    args = ["--out", str(dest), "--style", "tiny", "--vocabulary", "places", "--context"]
    args += ["--write-back", "xmp", "--xmp-name", "stem", "--concurrency", "2"]
    status, _out, err = await run_cli(env, f"s3://{bucket.name}/trip/", *args, timeout_s=600)
    assert status == 0, err
    lines = {
        json.loads(line)["s3_uri"].rsplit("/", 1)[1]: json.loads(line)
        for line in dest.read_text().splitlines()
    }
    assert lines["IMG_2.jpg"]["context_used"]["location"] == ["Paris"]  # real vLLM took the context block
    for name, line in lines.items():
        assert line["keywords"] and set(line["keywords"]) <= set(PLACES)
        path = tmp_path / f"{name}.xmp"
        path.write_bytes(bucket.get(f"trip/{name.removesuffix('.jpg')}.xmp"))
        read = exiftool_x(path)
        assert items(read["XMP-lr:HierarchicalSubject"]) == line["keywords"]
        assert items(read["XMP-dc:Subject"]) == list(
            dict.fromkeys(k.rsplit("|", 1)[1] for k in line["keywords"])
        )
        assert read["XMP-iptcCore:AltTextAccessibility"] == line["alt_text"]
        assert read["XMP-photoshop:Headline"] == line["headline"]
