"""POST /caption in front of the catalogue: a repeat costs no GPU, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from gateway.catalogue import database
from tests.support import images
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import BUCKET, GatewayFactory
from tests.support.postgres import PostgresServer
from tests.support.s3_server import S3Server

URI = f"s3://{BUCKET}/in-budget.jpg"


def fresh_object(s3_server: S3Server, body: bytes) -> str:
    """A key no other test captions, so only this test's requests touch its catalogue rows."""
    key = f"cache/{uuid.uuid4().hex}.jpg"
    client: Any = s3_server.client()
    client.put_object(Bucket=BUCKET, Key=key, Body=body)
    return f"s3://{BUCKET}/{key}"


async def test_a_repeat_is_answered_from_the_catalogue_without_a_model_call(
    gateway: GatewayFactory, catalogue_url: str, fake_vlm: FakeOpenAI
) -> None:
    async with gateway(DATABASE_URL=catalogue_url) as client:
        first = await client.post("/caption", json={"s3_uri": URI})
        again = await client.post("/caption", json={"s3_uri": URI})
        metrics = (await client.get("/metrics")).text
    assert first.status_code == again.status_code == 200
    assert len(fake_vlm.requests) == 1
    assert first.json()["cached"] is False
    assert again.json()["cached"] is True
    assert {k: v for k, v in again.json().items() if k != "cached"} == {
        k: v for k, v in first.json().items() if k != "cached"
    }
    assert 'florence_cache_requests_total{outcome="hit"} 1.0' in metrics
    assert 'florence_cache_requests_total{outcome="miss"} 1.0' in metrics


async def test_a_changed_object_or_other_parameters_are_captioned_again(
    gateway: GatewayFactory, catalogue_url: str, fake_vlm: FakeOpenAI, s3_server: S3Server
) -> None:
    uri = fresh_object(s3_server, images.photo(320, 240))
    async with gateway(DATABASE_URL=catalogue_url) as client:
        assert (await client.post("/caption", json={"s3_uri": uri})).json()["cached"] is False
        german = await client.post("/caption", json={"s3_uri": uri, "language": "de"})
        short = await client.post("/caption", json={"s3_uri": uri, "detailed": False})
        client_of_s3: Any = s3_server.client()
        client_of_s3.put_object(Bucket=BUCKET, Key=uri.split("/", 3)[3], Body=images.photo(336, 252))
        changed = await client.post("/caption", json={"s3_uri": uri})
        changed_again = await client.post("/caption", json={"s3_uri": uri})
    assert [r.json()["cached"] for r in (german, short, changed, changed_again)] == [
        False,
        False,
        False,
        True,
    ]
    assert len(fake_vlm.requests) == 4


async def test_refresh_asks_the_model_again_and_replaces_the_entry(
    gateway: GatewayFactory, catalogue_url: str, fake_vlm: FakeOpenAI
) -> None:
    async with gateway(DATABASE_URL=catalogue_url) as client:
        await client.post("/caption", json={"s3_uri": URI})
        fake_vlm.reset(Reply(content=structured("A blue bicycle by a wall.")))
        refreshed = await client.post("/caption", json={"s3_uri": URI, "refresh": True})
        served = await client.post("/caption", json={"s3_uri": URI})
        listed = (await client.get("/v1/captions")).json()["items"]
    assert refreshed.json()["cached"] is False
    assert served.json() == {**refreshed.json(), "cached": True}
    assert served.json()["caption"] == "A blue bicycle by a wall."
    assert len(fake_vlm.requests) == 1  # the reset cleared the first; the refresh made one
    assert [item["caption"] for item in listed] == ["A blue bicycle by a wall."]


async def test_ten_identical_requests_at_once_make_one_model_call(
    gateway: GatewayFactory, catalogue_url: str, fake_vlm: FakeOpenAI, s3_server: S3Server
) -> None:
    fake_vlm.reset(Reply(content=structured(), delay_s=0.5))
    uri = fresh_object(s3_server, images.photo(320, 240))
    async with gateway(DATABASE_URL=catalogue_url) as client:
        answers = await asyncio.gather(*(client.post("/caption", json={"s3_uri": uri}) for _ in range(10)))
        metrics = (await client.get("/metrics")).text
    assert [a.status_code for a in answers] == [200] * 10
    assert {a.json()["caption"] for a in answers} == {"A red bicycle leans against a brick wall."}
    assert len(fake_vlm.requests) == 1
    assert 'florence_cache_requests_total{outcome="coalesced"} 9.0' in metrics


async def test_with_cache_off_every_request_is_computed_and_still_kept(
    gateway: GatewayFactory, catalogue_url: str, fake_vlm: FakeOpenAI
) -> None:
    async with gateway(DATABASE_URL=catalogue_url, CACHE="off") as client:
        answers = [await client.post("/caption", json={"s3_uri": URI}) for _ in range(2)]
        listed = (await client.get("/v1/captions")).json()["items"]
    assert [a.json()["cached"] for a in answers] == [False, False]
    assert len(fake_vlm.requests) == 2
    assert [item["s3_uri"] for item in listed] == [URI]


async def test_a_failed_caption_is_not_kept(gateway: GatewayFactory, catalogue_url: str) -> None:
    async with gateway(DATABASE_URL=catalogue_url) as client:
        failed = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/text.jpg"})
        listed = (await client.get("/v1/captions")).json()["items"]
    assert failed.status_code == 415
    assert listed == []


async def test_a_stopped_database_costs_no_caption_and_the_cache_comes_back(
    gateway: GatewayFactory, postgres: PostgresServer, fake_vlm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "BREAKER_OPEN_S", 0.5)  # the breaker's pause, shortened for the test
    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    async with gateway(DATABASE_URL=url) as client:
        assert (await client.post("/caption", json={"s3_uri": URI})).json()["cached"] is False
        postgres.stop()
        try:
            down = [await client.post("/caption", json={"s3_uri": URI}) for _ in range(3)]
            health = await client.get("/health")
            search = await client.get("/v1/captions", params={"q": "bicycle"})
        finally:
            postgres.start()
        await asyncio.sleep(0.6)
        back = [await client.post("/caption", json={"s3_uri": URI}) for _ in range(2)]
    assert [r.status_code for r in down] == [200, 200, 200]
    assert [r.json()["cached"] for r in down] == [False, False, False]  # computed, never lost
    assert health.status_code == 200
    assert health.json()["ok"] is True
    assert health.json()["backends"]["catalogue"] == {"ok": False, "enabled": True, "engine": "postgresql"}
    assert search.status_code == 503
    assert search.json()["error"]["code"] == "catalogue_unavailable"
    assert search.headers["Retry-After"]
    assert [r.json()["cached"] for r in back] == [True, True]  # the first request's row survived
    assert len(fake_vlm.requests) == 4


async def test_health_reports_the_catalogue(gateway: GatewayFactory, catalogue_url: str) -> None:
    async with gateway(DATABASE_URL=catalogue_url) as client:
        body = (await client.get("/health")).json()
    engine = catalogue_url.split("+", 1)[0]
    assert body["backends"]["catalogue"] == {"ok": True, "enabled": True, "engine": engine}
