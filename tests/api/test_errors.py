"""Every error the issue lists, produced for real: one envelope, the right status, a stable code."""

from __future__ import annotations

import time

import pytest

from gateway.pipeline import CaptionPipeline
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import BUCKET, GatewayFactory
from tests.support.processes import free_port
from tests.support.s3_server import SECRET_KEY

URI = f"s3://{BUCKET}/in-budget.jpg"


def assert_envelope(response_json: dict[str, object], code: str) -> None:
    assert set(response_json) == {"error"}
    error = response_json["error"]
    assert isinstance(error, dict)
    assert set(error) == {"message", "type", "code"}
    assert error["code"] == code
    assert error["message"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({}, "invalid_request"),
        ({"s3_uri": "https://example.com/a.jpg"}, "invalid_s3_uri"),
        ({"s3_uri": "s3://bucket-only"}, "invalid_s3_uri"),
        ({"s3_uri": URI, "detailed": "very"}, "invalid_request"),
        ({"s3_uri": URI, "style": "baroque"}, "unknown_style"),
        ({"s3_uri": URI, "language": "xx"}, "unsupported_language"),
        ({"s3_uri": URI, "prompt": "x" * 1001}, "invalid_request"),
        # Keys S3 clients would not send as written (dot segments are resolved away), or cannot sign.
        ({"s3_uri": f"s3://{BUCKET}/a/../in-budget.jpg"}, "invalid_s3_uri"),
        ({"s3_uri": f"s3://{BUCKET}/./in-budget.jpg"}, "invalid_s3_uri"),
        ({"s3_uri": f"s3://{BUCKET}/.."}, "invalid_s3_uri"),
        ({"s3_uri": f"s3://{BUCKET}/in\x00budget.jpg"}, "invalid_s3_uri"),
        ({"s3_uri": f"s3://{BUCKET}/in\nbudget.jpg"}, "invalid_s3_uri"),
        ({"s3_uri": f"s3://{BUCKET}/" + "k" * 1025}, "invalid_s3_uri"),
    ],
)
async def test_bad_requests_are_422(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, body: dict[str, object], code: str
) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json=body)
    assert response.status_code == 422
    assert_envelope(response.json(), code)
    assert fake_vlm.requests == []


async def test_unknown_style_lists_valid_ones(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI, "style": "baroque"})
    assert "alt_text" in response.json()["error"]["message"]


async def test_malformed_json_body_is_422(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        response = await client.post(
            "/caption", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    assert_envelope(response.json(), "invalid_request")


@pytest.mark.parametrize(
    ("uri", "status", "code"),
    [
        (f"s3://{BUCKET}/no-such-key.jpg", 404, "s3_not_found"),
        ("s3://no-such-bucket-florence/a.jpg", 404, "s3_not_found"),
        (f"s3://{BUCKET}/text.jpg", 415, "unsupported_image"),
        (f"s3://{BUCKET}/truncated.jpg", 415, "image_corrupt"),
        (f"s3://{BUCKET}/empty.jpg", 415, "image_empty"),
        (f"s3://{BUCKET}/bomb.png", 413, "image_too_many_pixels"),
    ],
)
async def test_source_and_image_errors(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, uri: str, status: int, code: str
) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": uri})
    assert response.status_code == status
    assert_envelope(response.json(), code)
    assert fake_vlm.requests == []


async def test_object_over_byte_limit_is_413(gateway: GatewayFactory) -> None:
    async with gateway(MAX_IMAGE_BYTES=10_000) as client:
        response = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/photo-24mp.jpg"})
    assert response.status_code == 413
    assert_envelope(response.json(), "image_too_large")
    assert "MAX_IMAGE_BYTES" in response.json()["error"]["message"]


async def test_pixels_over_limit_is_413(gateway: GatewayFactory) -> None:
    async with gateway(MAX_IMAGE_PIXELS=1_000_000) as client:
        response = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/photo-24mp.jpg"})
    assert response.status_code == 413
    assert_envelope(response.json(), "image_too_many_pixels")


async def test_wrong_credentials_are_403_without_secrets(
    gateway: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value")
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 403
    assert_envelope(response.json(), "s3_access_denied")
    assert "credentials" in response.json()["error"]["message"]
    assert "wrong-secret-value" not in response.text
    assert SECRET_KEY not in response.text


async def test_s3_unreachable_is_503_with_retry_after(gateway: GatewayFactory) -> None:
    async with gateway(S3_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}", S3_TIMEOUT_S=2) as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 503
    assert_envelope(response.json(), "s3_unavailable")
    assert int(response.headers["retry-after"]) >= 1


async def test_vlm_500_then_200_is_retried(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    fake_vlm.then(Reply(status=500), Reply(status=502))
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 200
    assert len(fake_vlm.requests) == 3


async def test_vlm_429_after_retries_is_503_with_retry_after(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(Reply(status=429, headers={"Retry-After": "0"}))
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 503
    assert_envelope(response.json(), "vlm_unavailable")
    assert response.headers["retry-after"]
    assert len(fake_vlm.requests) == 3


async def test_vlm_other_4xx_is_502_and_not_retried(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    fake_vlm.reset(Reply(status=400))
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 502
    assert_envelope(response.json(), "vlm_rejected")
    assert "HTTP 400" in response.json()["error"]["message"]
    assert "fake 400" not in response.text  # the backend's own words stay in the log
    assert len(fake_vlm.requests) == 1


async def test_backend_error_bodies_never_reach_the_client(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    """A backend (or a proxy in front of it) whose error page echoes the request's headers: the gateway's
    Authorization header must not come back to the client, nor the backend's address."""
    fake_vlm.reset(Reply(status=400, echo_headers=True))
    async with gateway(VLM_API_KEY="sk-vlm-secret-marker", GPT_OSS_API_KEY="sk-enh-secret-marker") as client:
        refused = await client.post("/caption", json={"s3_uri": URI})
        fake_vlm.reset(Reply(content=structured()))
        fake_enhancer.reset(Reply(status=500, echo_headers=True))
        enhanced = await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})
    assert refused.status_code == 502
    assert enhanced.status_code == 200 and enhanced.json()["enhancement_error"].startswith(
        "enhancer_unavailable"
    )
    for response in (refused, enhanced):
        assert "secret-marker" not in response.text
        assert "authorization" not in response.text.lower()
        assert "127.0.0.1" not in response.text
    assert "vlm server answered HTTP 400" in caplog.text  # the body is in the log (whose filter masks keys)


async def test_vlm_connection_refused_is_503(gateway: GatewayFactory) -> None:
    port = free_port()
    async with gateway(VLM_BASE_URL=f"http://user:pw@127.0.0.1:{port}/v1") as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 503
    assert_envelope(response.json(), "vlm_unavailable")
    assert "pw@" not in response.text
    assert str(port) not in response.text  # internal addresses are for the log


async def test_vlm_timeout_is_504_within_the_timeout(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    fake_vlm.reset(Reply(delay_s=5))
    async with gateway(VLM_TIMEOUT_S=0.5) as client:
        start = time.monotonic()
        response = await client.post("/caption", json={"s3_uri": URI})
        elapsed = time.monotonic() - start
    assert response.status_code == 504
    assert_envelope(response.json(), "vlm_timeout")
    assert len(fake_vlm.requests) == 1  # not retried: the GPU may still be working on it
    assert elapsed < 4.5  # well before the fake's 5 s answer


async def test_vlm_garbage_is_502(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    fake_vlm.reset(Reply(raw="<html>proxy error</html>"))
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 502
    assert_envelope(response.json(), "vlm_bad_response")


async def test_unknown_route_uses_the_envelope(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        response = await client.get("/nope")
    assert response.status_code == 404
    assert_envelope(response.json(), "not_found")


async def test_a_bug_is_a_500_in_the_envelope_with_the_request_id(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: CaptionPipeline, request: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(CaptionPipeline, "spec_for", broken)
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI}, headers={"X-Request-ID": "bug-1"})
    assert response.status_code == 500
    assert_envelope(response.json(), "internal_error")
    assert "a bug" not in response.text  # no internals to the client
    assert response.headers["x-request-id"] == "bug-1"
