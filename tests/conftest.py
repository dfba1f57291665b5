"""Shared fixtures: a real S3 server seeded with generated images, two fake OpenAI backends, the gateway.

The gateway runs in-process (its real lifespan, real clients) and is reached through httpx's ASGI
transport; S3 and the backends are real HTTP servers on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from gateway.settings import Settings
from tests.support import images
from tests.support.fake_openai import FakeOpenAI, FakeServer, Reply, structured
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, S3Server, start_s3_server

BUCKET = "test-bucket"
SEED: dict[str, Callable[[], bytes]] = {
    "rotated.jpg": images.jpeg_rotated,
    "cmyk.jpg": images.jpeg_cmyk,
    "alpha.png": images.png_alpha,
    "image.webp": images.webp,
    "animated.gif": images.gif_animated,
    "image.heic": images.heic,
    "image.avif": images.avif,
    "image.bmp": images.bmp,
    "image.tiff": images.tiff,
    "photo-24mp.jpg": lambda: images.photo(6000, 4000),
    "in-budget.jpg": lambda: images.photo(1148, 868),
    "bomb.png": images.pixel_bomb,
    "text.jpg": lambda: images.NOT_AN_IMAGE,
    "truncated.jpg": images.truncated_jpeg,
    "empty.jpg": lambda: b"",
    "wide-gamut.jpg": images.jpeg_wide_gamut,
    "wide-gamut-alpha.png": images.png_wide_gamut_alpha,
    "broken-exif.jpg": images.jpeg_broken_exif,
}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    server = start_s3_server()
    # The gateway finds credentials through the normal AWS chain, here the environment.
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        client: Any = server.client()
        client.create_bucket(Bucket=BUCKET)
        for key, make in SEED.items():
            client.put_object(Bucket=BUCKET, Key=key, Body=make())
        yield server
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
async def fake_servers() -> AsyncIterator[tuple[FakeOpenAI, FakeOpenAI]]:
    vlm, enhancer = FakeOpenAI("vlm"), FakeOpenAI("enhancer")
    servers = [FakeServer(vlm), FakeServer(enhancer)]
    for server in servers:
        await server.start()
    yield vlm, enhancer
    for server in servers:
        await server.stop()


@pytest.fixture
def fake_vlm(fake_servers: tuple[FakeOpenAI, FakeOpenAI]) -> FakeOpenAI:
    fake = fake_servers[0]
    fake.reset(Reply(content=structured()))
    return fake


@pytest.fixture
def fake_enhancer(fake_servers: tuple[FakeOpenAI, FakeOpenAI]) -> FakeOpenAI:
    fake = fake_servers[1]
    fake.reset(Reply(content=json_enhancement()))
    return fake


def json_enhancement(
    caption: str = "A red bicycle leans against a weathered brick wall.", **extra: Any
) -> str:
    return json.dumps({"caption": caption, "added_terms": [], **extra})


GatewayFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def gateway(s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI) -> GatewayFactory:
    """``async with gateway(SETTING=value, ...) as client``: the app with its lifespan, against the fakes.

    Swapping the fakes for real vLLM servers is one change: pass VLM_BASE_URL / GPT_OSS_BASE_URL.
    """

    @asynccontextmanager
    async def open_gateway(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        settings = Settings(
            **{  # type: ignore[arg-type]
                "S3_ENDPOINT_URL": s3_server.endpoint_url,
                "VLM_BASE_URL": fake_vlm.base_url,
                "GPT_OSS_BASE_URL": fake_enhancer.base_url,
                "S3_TIMEOUT_S": 5,
                **{k: v for k, v in overrides.items()},
            }
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with app.router.lifespan_context(app):
            async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                yield client

    return open_gateway
