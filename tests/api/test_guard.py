"""The request guard: the API key decided from the headers, the body cap, HEAD, and every status declared."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI

from gateway.app import create_app
from gateway.settings import Settings
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import BUCKET, GatewayFactory

URI = f"s3://{BUCKET}/in-budget.jpg"
KEY = {"Authorization": "Bearer k-one"}


def assert_envelope(body: dict[str, object], code: str) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert isinstance(error, dict) and set(error) == {"message", "type", "code"}
    assert error["code"] == code, error


class CountingBody:
    """A request body that counts how many chunks the server pulled."""

    def __init__(self, chunks: int, chunk: bytes) -> None:
        self.chunks, self.chunk, self.pulled = chunks, chunk, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield self.chunk


@pytest.mark.parametrize(
    "body",
    [b"{not json", b'{"s3_uri": "s3://a-b/\xff\xfe.jpg"}', b"[" * 5000 + b"]" * 5000, b"x" * 100],
)
async def test_without_a_key_any_body_is_a_401_before_parsing(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, body: bytes
) -> None:
    async with gateway(API_KEYS="k-one") as client:
        response = await client.post("/caption", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 401
    assert_envelope(response.json(), "invalid_api_key")
    assert response.headers["www-authenticate"] == "Bearer"
    assert fake_vlm.requests == []


async def test_an_unauthenticated_100_mb_body_is_never_read(gateway: GatewayFactory) -> None:
    body = CountingBody(100, b"x" * 1_048_576)
    async with gateway(API_KEYS="k-one") as client:
        response = await client.post("/caption", content=body)
    assert response.status_code == 401
    assert body.pulled == 0


async def test_a_body_over_the_cap_is_refused_from_its_content_length(gateway: GatewayFactory) -> None:
    async with gateway(MAX_REQUEST_BYTES=4096) as client:
        response = await client.post("/v1/captions/review", json={"ids": [1] * 3000, "status": "approved"})
    assert response.status_code == 413
    assert_envelope(response.json(), "request_too_large")
    assert "MAX_REQUEST_BYTES" in response.json()["error"]["message"]


async def test_the_caption_routes_cap_follows_max_image_bytes(gateway: GatewayFactory) -> None:
    """POST /caption carries an image as base64 or an upload: MAX_REQUEST_BYTES alone would refuse one."""
    image = b"\xff" * 900_000
    async with gateway(MAX_REQUEST_BYTES=4096, MAX_IMAGE_BYTES=1_000_000) as client:
        taken = await client.post("/caption", json={"image_base64": base64.b64encode(image).decode()})
        over = await client.post("/caption", json={"image_base64": "A" * 1_500_000})
    assert taken.status_code == 415  # read whole and judged as an image: not one
    assert over.status_code == 413
    assert_envelope(over.json(), "request_too_large")
    assert "MAX_IMAGE_BYTES" in over.json()["error"]["message"]


async def test_a_body_without_length_is_cut_off_at_the_cap(gateway: GatewayFactory) -> None:
    body = CountingBody(1000, b" " * 65536)  # 64 MB of whitespace, sent chunked
    async with gateway(MAX_REQUEST_BYTES=1_048_576) as client:
        response = await client.post("/v1/captions/review", content=body, headers=KEY)
    assert response.status_code == 413
    assert_envelope(response.json(), "request_too_large")
    assert body.pulled <= 17  # the cap is 16 chunks; reading stopped right after it
    assert response.headers["connection"] == "close"


async def test_the_default_cap_still_takes_a_normal_request(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    async with gateway(API_KEYS="k-one") as client:
        response = await client.post("/caption", json={"s3_uri": URI, "prompt": "x" * 1000}, headers=KEY)
    assert response.status_code == 200
    assert len(fake_vlm.requests) == 1


@pytest.mark.parametrize(
    "body",
    [
        b'{"s3_uri": "s3://test-bucket/\xff\xfe.jpg"}',  # not UTF-8
        b"[" * 1000 + b"]" * 1000,  # valid JSON, nested 1,000 deep
        b'{"s3_uri": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    ],
)
async def test_bodies_json_cannot_parse_are_422_not_400(gateway: GatewayFactory, body: bytes) -> None:
    async with gateway() as client:
        response = await client.post("/caption", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    assert_envelope(response.json(), "invalid_request")


async def test_a_huge_field_is_not_echoed_whole(gateway: GatewayFactory) -> None:
    huge = "x" * 1_000_000
    async with gateway(MAX_REQUEST_BYTES=2_000_000) as client:
        for body in ({"s3_uri": huge}, {"s3_uri": URI, "style": huge}, {"s3_uri": URI, "language": huge}):
            response = await client.post("/caption", json=body)
            assert response.status_code == 422
            assert len(response.json()["error"]["message"]) < 1100, body.keys()


async def test_public_routes_need_no_key_and_every_other_path_does(gateway: GatewayFactory) -> None:
    async with gateway(API_KEYS="k-one") as client:
        for path in ("/health", "/livez", "/styles", "/metrics", "/openapi.json", "/docs"):
            assert (await client.get(path)).status_code in (200, 503), path
        unknown = await client.get("/no-such-route")
        known_with_key = await client.get("/no-such-route", headers=KEY)
        wrong_method = await client.get("/caption")
    assert unknown.status_code == 401  # no route tells nothing to those without a key
    assert known_with_key.status_code == 404
    assert_envelope(known_with_key.json(), "not_found")
    assert wrong_method.status_code == 405
    assert_envelope(wrong_method.json(), "method_not_allowed")


async def test_a_route_added_later_is_protected_too(gateway: GatewayFactory) -> None:
    """What issue 11's and 12's routes will rely on: no route escapes the key by being new."""
    async with gateway(API_KEYS="k-one") as client:
        app = client._transport.app  # type: ignore[attr-defined]
        assert isinstance(app, FastAPI)

        @app.get("/v1/new-thing")
        async def new_thing() -> dict[str, str]:
            return {"ok": "yes"}

        without = await client.get("/v1/new-thing")
        with_key = await client.get("/v1/new-thing", headers=KEY)
    assert without.status_code == 401
    assert with_key.status_code == 200


@pytest.mark.parametrize("path", ["/livez", "/health", "/styles"])
async def test_head_is_answered_wherever_get_is(gateway: GatewayFactory, path: str) -> None:
    async with gateway() as client:
        get = await client.get(path)
        head = await client.head(path)
    assert head.status_code == get.status_code
    assert head.content == b""
    assert head.headers["content-length"] == get.headers["content-length"]


def test_every_status_is_declared_with_the_envelope() -> None:
    schema = create_app(Settings(API_KEYS="k")).openapi()
    caption = schema["paths"]["/caption"]["post"]
    declared = {int(code) for code in caption["responses"]}
    assert {400, 401, 403, 404, 408, 413, 415, 422, 429, 431, 500, 502, 503, 504} <= declared
    for code in declared - {200}:
        ref = caption["responses"][str(code)]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorEnvelope"), code
    assert caption["security"] == [{"HTTPBearer": []}]
    for path in ("/health", "/livez", "/styles"):
        assert "security" not in schema["paths"][path]["get"], path
        assert {"400", "408", "413", "431"} <= set(schema["paths"][path]["get"]["responses"]), path
    # The request's own limits are declared too, so a client can validate before sending.
    fields = schema["components"]["schemas"]["CaptionIn"]["properties"]
    for name in ("s3_uri", "style", "language", "prompt"):
        variants = fields[name].get("anyOf", [fields[name]])
        assert any(v.get("maxLength") for v in variants), name
