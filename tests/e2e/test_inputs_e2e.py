"""The three inputs beside s3_uri, once each, through the gateway to the real vLLM server: a multipart upload,
base64 in JSON, and an image URL fetched from a loopback web server. One gateway, so the catalogue also shows
that the same bytes are captioned once whichever way they come."""

from __future__ import annotations

import base64
import hashlib

from tests.support import images
from tests.support.gateway import GatewayFactory, url_settings
from tests.support.loopback import Connections
from tests.support.vllm_stack import CpuStack
from tests.support.web_server import WebServer


async def test_upload_base64_and_url_are_captioned_by_the_real_vlm(
    gateway: GatewayFactory, cpu_stack: CpuStack, connections: Connections
) -> None:
    photo, other = images.photo(640, 480), images.photo(448, 336, quality=85)
    async with WebServer(image=images.webp()) as web:
        url = web.url("/photo.jpg")
        settings = {**cpu_stack.gateway_env(), **url_settings(web)}
        async with gateway(**settings) as client:
            upload = await client.post(
                "/caption", files={"file": ("photo.jpg", photo)}, data={"style": "short"}
            )
            encoded = base64.b64encode(other).decode()
            inline = await client.post("/caption", json={"image_base64": f"data:image/jpeg;base64,{encoded}"})
            fetched = await client.post("/caption", json={"image_url": url})
            repeat = await client.post(
                "/caption", json={"image_base64": base64.b64encode(photo).decode(), "style": "short"}
            )
    for response, image in ((upload, photo), (inline, other), (fetched, web.image)):
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["caption"].strip()
        assert body["usage"]["vlm"]["prompt_tokens"] > 0  # the image went through Qwen's processor
        assert body["image_sha256"] == hashlib.sha256(image).hexdigest()
        assert body["cached"] is False
    assert fetched.json()["image_url"] == url
    assert repeat.json()["cached"] is True
    assert repeat.json()["caption"] == upload.json()["caption"]
    assert {host for host, _ in connections.attempted} == {"127.0.0.1"}
