"""Vocabularies through the API: the enum the VLM is held to, hierarchy restored, 422s, start-up warm-up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.vocabularies import VocabularyError
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import BUCKET, GatewayFactory

URI = f"s3://{BUCKET}/in-budget.jpg"
PLACES = "Places|Europe|France|Paris\nPlaces|North America|USA|Texas|Paris\nPlaces|Europe|Italy|Rome\nDog\n"


@pytest.fixture
def vocabularies(tmp_path: Path) -> Path:
    (tmp_path / "places.txt").write_text(PLACES)
    (tmp_path / "stock.txt").write_text("beach\nsunset\nsea\nsand\nsky\n")
    (tmp_path / "stock.json").write_text('{"allow_free": true, "free_max": 3}')
    return tmp_path


def caption_requests(fake: FakeOpenAI) -> list[dict[str, Any]]:
    """What captions sent, without the start-up warm-up requests (text only, one token)."""
    return [r for r in fake.requests if r["max_tokens"] > 1]


async def warmed(client: httpx.AsyncClient) -> dict[str, Any]:
    for _ in range(200):
        body: dict[str, Any] = (await client.get("/health")).json()
        if all(v["state"] != "pending" for v in body["vocabularies"].values()):
            return body
        await asyncio.sleep(0.05)
    raise AssertionError(f"vocabularies still pending: {body['vocabularies']}")


async def test_keywords_are_held_to_the_list_and_come_back_as_full_terms(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, vocabularies: Path
) -> None:
    fake_vlm.reset(Reply(content=structured(keywords=["Texas|Paris", "Dog", "bicycle"])))
    async with gateway(VOCABULARIES_DIR=str(vocabularies)) as client:
        await warmed(client)
        response = await client.post("/caption", json={"s3_uri": URI, "vocabulary": "places"})
    assert response.status_code == 200, response.text
    body = response.json()
    # The grammar admits only labels; "bicycle" (a fake's answer, not vLLM's) is dropped.
    assert body["keywords"] == ["Places|North America|USA|Texas|Paris", "Dog"]
    assert "keywords_free" not in body
    (sent,) = caption_requests(fake_vlm)
    keywords = sent["response_format"]["json_schema"]["schema"]["properties"]["keywords"]
    assert keywords["items"]["enum"] == ["France|Paris", "Texas|Paris", "Rome", "Dog"]


async def test_free_keywords_when_the_vocabulary_allows_them(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, vocabularies: Path
) -> None:
    fake_vlm.reset(Reply(content=structured(keywords=["sea", "beach"], keywords_free=["Surfer", "sea"])))
    async with gateway(VOCABULARIES_DIR=str(vocabularies)) as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "vocabulary": "stock"})).json()
    assert body["keywords"] == ["sea", "beach"]
    assert body["keywords_free"] == ["surfer"]
    schema = caption_requests(fake_vlm)[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["keywords_free"]["maxItems"] == 3


async def test_unknown_vocabulary_is_a_422_before_any_model_call(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, vocabularies: Path
) -> None:
    async with gateway(VOCABULARIES_DIR=str(vocabularies)) as client:
        await warmed(client)
        response = await client.post("/caption", json={"s3_uri": URI, "vocabulary": "plaecs"})
        styles = (await client.get("/styles")).json()
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown_vocabulary"
    assert "places" in error["message"] and "stock" in error["message"]
    assert caption_requests(fake_vlm) == []
    assert styles["vocabularies"] == {"places": 4, "stock": 5}


async def test_a_style_can_name_its_vocabulary(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, vocabularies: Path, tmp_path: Path
) -> None:
    styles = json.loads((Path("gateway/styles/styles.json")).read_text())
    styles["agency"] = {**styles["stock"], "vocabulary": "stock", "description": "the agency's list"}
    styles_file = tmp_path / "styles.json"
    styles_file.write_text(json.dumps(styles))
    fake_vlm.reset(Reply(content=structured(keywords=["sky"], keywords_free=[])))
    async with gateway(VOCABULARIES_DIR=str(vocabularies), STYLES_FILE=str(styles_file)) as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "style": "agency"})).json()
    assert body["keywords"] == ["sky"]
    schema = caption_requests(fake_vlm)[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["keywords"]["items"]["enum"] == ["beach", "sunset", "sea", "sand", "sky"]


async def test_each_vocabulary_is_warmed_at_start_up_and_reported(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, vocabularies: Path
) -> None:
    async with gateway(VOCABULARIES_DIR=str(vocabularies)) as client:
        body = await warmed(client)
        await client.post("/caption", json={"s3_uri": URI, "vocabulary": "places", "style": "short"})
    assert body["ok"] is True
    assert {name: v["state"] for name, v in body["vocabularies"].items()} == {
        "places": "warmed",
        "stock": "warmed",
    }
    assert body["vocabularies"]["places"]["terms"] == 4
    warm_ups = [r for r in fake_vlm.requests if r["max_tokens"] == 1]
    assert len(warm_ups) == 2 * 5  # one per vocabulary and style: each style's schema is its own grammar
    assert all(part["type"] == "text" for r in warm_ups for part in r["messages"][-1]["content"])
    # The exact schema a caption with that vocabulary and style sends: what vLLM's grammar cache keys on.
    caption = caption_requests(fake_vlm)[-1]["response_format"]
    assert any(r["response_format"] == caption for r in warm_ups)


async def test_a_failed_warm_up_is_reported_without_flipping_ok(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, vocabularies: Path
) -> None:
    fake_vlm.reset(Reply(status=400))  # e.g. a server whose grammar backend refuses the schema
    async with gateway(VOCABULARIES_DIR=str(vocabularies)) as client:
        body = await warmed(client)
    assert body["ok"] is True
    assert body["vocabularies"]["places"]["state"] == "failed"
    assert body["vocabularies"]["places"]["error"]


async def test_a_vocabulary_over_the_limit_refuses_to_start(
    gateway: GatewayFactory, vocabularies: Path
) -> None:
    with pytest.raises(VocabularyError, match=r"places.txt: 4 terms, over the limit of 3"):
        async with gateway(VOCABULARIES_DIR=str(vocabularies), VOCABULARY_MAX_TERMS=3):
            pass
