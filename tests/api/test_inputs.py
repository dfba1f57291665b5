"""POST /caption's three inputs beside s3_uri: a multipart upload, base64 in JSON, an image URL; against real
S3 (for the catalogue's sake), a loopback web server and the fake VLM."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import pytest

from tests.support import images
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import BUCKET, GatewayFactory, sent_image, url_settings
from tests.support.loopback import Connections
from tests.support.web_server import WebServer

PHOTO = images.photo(448, 336)
DIGEST = hashlib.sha256(PHOTO).hexdigest()


@pytest.fixture
async def web() -> AsyncIterator[WebServer]:
    async with WebServer(image=PHOTO) as server:
        yield server


async def test_an_upload_is_captioned_and_a_repeat_is_served_from_the_catalogue(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    async with gateway() as client:
        first = await client.post(
            "/caption", files={"file": ("photo.jpg", PHOTO, "image/jpeg")}, data={"style": "short"}
        )
        again = await client.post(
            "/caption",
            files={"file": ("other-name.jpg", PHOTO, "application/octet-stream")},
            data={"style": "short"},
        )
        listed = (await client.get("/v1/captions")).json()["items"]
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["caption"] == "A red bicycle leans against a brick wall."
    assert (body["image_sha256"], body["style"], body["cached"]) == (DIGEST, "short", False)
    assert "s3_uri" not in body and "image_url" not in body
    assert sent_image(fake_vlm, 0)[0] == PHOTO  # in budget: forwarded as it was uploaded
    assert again.json()["cached"] is True  # the same bytes, whatever the file's name or type
    assert len(fake_vlm.requests) == 1
    assert [(item["image_sha256"], item.get("s3_uri")) for item in listed] == [(DIGEST, None)]


async def test_base64_raw_or_as_a_data_url_is_the_same_image(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    encoded = base64.b64encode(PHOTO).decode()
    async with gateway() as client:
        raw = await client.post("/caption", json={"image_base64": encoded, "detailed": False})
        data_url = await client.post(
            "/caption", json={"image_base64": f"data:image/jpeg;base64,{encoded}", "detailed": False}
        )
        wrapped = "\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))  # MIME line breaks
        refreshed = await client.post(
            "/caption", json={"image_base64": wrapped, "detailed": False, "refresh": True}
        )
    assert raw.status_code == 200, raw.text
    assert raw.json()["image_sha256"] == DIGEST
    assert data_url.json()["cached"] is True
    assert refreshed.json()["cached"] is False
    assert len(fake_vlm.requests) == 2
    assert sent_image(fake_vlm, 0)[0] == PHOTO


async def test_an_image_url_is_fetched_captioned_and_echoed(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, web: WebServer, connections: Connections
) -> None:
    url = web.url("/photo.jpg")
    async with gateway(**url_settings(web)) as client:
        first = await client.post("/caption", json={"image_url": url, "style": "short"})
        again = await client.post("/caption", json={"image_url": url + "?v=2", "style": "short"})
        uploaded = await client.post("/caption", files={"file": ("p.jpg", PHOTO)}, data={"style": "short"})
    assert first.status_code == 200, first.text
    assert (first.json()["image_url"], first.json()["image_sha256"]) == (url, DIGEST)
    # A URL is fetched every time (what it serves can change), and its bytes are the catalogue's key.
    assert again.json()["cached"] is True
    assert again.json()["image_url"] == url + "?v=2"
    assert uploaded.json()["cached"] is True and "image_url" not in uploaded.json()
    assert len(web.requests) == 2
    assert len(fake_vlm.requests) == 1
    assert {host for host, _ in connections.attempted} == {"127.0.0.1"}


async def test_image_urls_are_off_unless_enabled(
    gateway: GatewayFactory, web: WebServer, connections: Connections
) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"image_url": web.url("/photo.jpg")})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "image_url_disabled"
    assert web.connections == []


async def test_a_url_to_the_gateways_own_backend_or_inside_the_network_is_refused(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, web: WebServer, connections: Connections
) -> None:
    vlm_port = int(fake_vlm.base_url.rsplit(":", 1)[1].split("/")[0])
    settings = url_settings(web) | {"IMAGE_URL_ALLOWED_PORTS": f"{web.port},{vlm_port},80"}
    async with gateway(**settings) as client:
        backend = await client.post("/caption", json={"image_url": f"http://127.0.0.1:{vlm_port}/v1/models"})
        metadata = await client.post(
            "/caption", json={"image_url": "http://169.254.169.254/latest/meta-data/"}
        )
    for response in (backend, metadata):
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "image_url_forbidden"
    assert "backends" in backend.json()["error"]["message"]
    assert connections.attempted == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"detailed": True}, "invalid_request"),
        (
            {"s3_uri": f"s3://{BUCKET}/in-budget.jpg", "image_url": "https://example.com/a.jpg"},
            "invalid_request",
        ),
        ({"s3_uri": f"s3://{BUCKET}/in-budget.jpg", "image_base64": "AAAA"}, "invalid_request"),
        ({"s3_uri": ""}, "invalid_s3_uri"),
        ({"image_base64": "not base64!"}, "invalid_image_base64"),
        ({"image_base64": "data:text/html;base64,PGh0bWw+"}, "invalid_image_base64"),
        ({"image_url": "not a url"}, "invalid_image_url"),
    ],
)
async def test_exactly_one_well_formed_image_per_request(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, body: dict[str, object], code: str
) -> None:
    async with gateway(IMAGE_URL_ENABLED="true") as client:
        response = await client.post("/caption", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    assert fake_vlm.requests == []


async def test_uploads_and_base64_over_the_cap_or_not_images_are_refused(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    big = images.photo(1600, 1200, quality=98)
    async with gateway(MAX_IMAGE_BYTES=len(big) - 1) as client:
        upload = await client.post("/caption", files={"file": ("big.jpg", big)})
        encoded = await client.post("/caption", json={"image_base64": base64.b64encode(big).decode()})
        text = await client.post("/caption", files={"file": ("photo.jpg", b"<html>" + bytes(100_000))})
        nothing = await client.post("/caption", files={"file": ("empty.jpg", b"")})
        no_file = await client.post("/caption", files={"photo": ("a.jpg", PHOTO)})
        also_s3 = await client.post("/caption", files={"file": ("a.jpg", PHOTO)}, data={"s3_uri": "s3://b/k"})
    assert (upload.status_code, upload.json()["error"]["code"]) == (413, "image_too_large")
    assert (encoded.status_code, encoded.json()["error"]["code"]) == (413, "image_too_large")
    assert (text.status_code, text.json()["error"]["code"]) == (415, "unsupported_image")
    assert (nothing.status_code, nothing.json()["error"]["code"]) == (415, "image_empty")
    assert (no_file.status_code, no_file.json()["error"]["code"]) == (422, "invalid_upload")
    assert (also_s3.status_code, also_s3.json()["error"]["code"]) == (422, "invalid_request")
    assert fake_vlm.requests == []


async def test_the_openapi_schema_documents_the_three_inputs(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/caption"]["post"]
    content = operation["requestBody"]["content"]
    assert content["application/json"]["schema"] == {"$ref": "#/components/schemas/CaptionIn"}
    assert content["multipart/form-data"]["schema"] == {"$ref": "#/components/schemas/CaptionForm"}
    json_body = schema["components"]["schemas"]["CaptionIn"]
    assert {"s3_uri", "image_base64", "image_url", "style", "refresh"} <= json_body["properties"].keys()
    assert json_body["oneOf"] == [
        {"required": ["s3_uri"]},
        {"required": ["image_base64"]},
        {"required": ["image_url"]},
    ]
    form = schema["components"]["schemas"]["CaptionForm"]
    assert form["properties"]["file"]["format"] == "binary"
    assert form["required"] == ["file"]
    assert {"413", "415", "422", "502", "504"} <= operation["responses"].keys()
    assert "image_sha256" in schema["components"]["schemas"]["CaptionOut"]["properties"]
