"""The gateway under test: the seeded bucket, the app opened in-process with its real lifespan, and how to
read what it sent to a fake backend. Fixtures live in ``tests/conftest.py``; tests import these names."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from PIL import Image
from starlette.types import ASGIApp

from gateway.api.server import uvicorn_options
from gateway.app import create_app
from gateway.settings import Settings
from gateway.sources.url import UrlHooks
from tests.support import images
from tests.support.fake_openai import FakeOpenAI
from tests.support.processes import HOST, free_port

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
    "bilevel-100mp.png": images.bilevel_png,
    "rgba-400mb.png": lambda: images.rgba_png_header(10_000, 10_000),
    "strip-2000-to-1.jpg": images.long_strip,
}

# The app under test shares its event loop with the test (and with the fake backends): how late that loop
# runs says nothing about the gateway, so the lag part of admission control is off unless a test sets it
# (tests/test_admission.py tests it directly; a served gateway in its own process keeps the default).
IN_PROCESS = {"MAX_LOOP_LAG_MS": 0}
GatewayFactory = Callable[..., AbstractAsyncContextManager[httpx.AsyncClient]]
ServedGatewayFactory = Callable[..., AbstractAsyncContextManager[str]]


def gateway_factory(base: dict[str, Any]) -> GatewayFactory:
    """``async with factory(SETTING=value, ...) as client``: the app with its lifespan, on ``base`` settings.

    Swapping the fakes for real vLLM servers is one change: pass VLM_BASE_URL / GPT_OSS_BASE_URL.
    ``url_hooks`` puts a test resolver (or TLS trust) under the image-URL client.
    """

    @asynccontextmanager
    async def open_gateway(
        url_hooks: UrlHooks | None = None, **overrides: Any
    ) -> AsyncIterator[httpx.AsyncClient]:
        # A fresh catalogue (SQLite under a new DATA_DIR) for every gateway: no test sees another's captions.
        with tempfile.TemporaryDirectory(prefix="florence-gateway-") as data_dir:
            settings = Settings(**{"DATA_DIR": data_dir, **IN_PROCESS, **base, **overrides})
            app = create_app(settings, url_hooks=url_hooks)
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                    yield client

    return open_gateway


@dataclass(frozen=True)
class ServedGateway:
    """The gateway on a real 127.0.0.1 port (a browser needs one); ``client`` talks to the same port."""

    url: str
    client: httpx.AsyncClient
    settings: Settings


ServerFactory = Callable[..., AbstractAsyncContextManager[ServedGateway]]


@asynccontextmanager
async def serving(app: ASGIApp, settings: Settings) -> AsyncIterator[str]:
    """``app`` served by uvicorn in this event loop, with the options ``florence-tagger serve`` uses (its
    lifespan included), on a free port: its base URL."""
    port = free_port()
    config = uvicorn.Config(app, host=HOST, port=port, lifespan="on", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started (see the log above)")
        await asyncio.sleep(0.01)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        await task


def gateway_server_factory(base: dict[str, Any]) -> ServerFactory:
    """``async with factory(SETTING=value, ...) as served``: like ``gateway_factory``, over a real port."""

    @asynccontextmanager
    async def open_server(**overrides: Any) -> AsyncIterator[ServedGateway]:
        with tempfile.TemporaryDirectory(prefix="florence-gateway-") as data_dir:
            settings = Settings(**{"DATA_DIR": data_dir, **IN_PROCESS, **base, **overrides})
            async with serving(create_app(settings), settings) as url:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    yield ServedGateway(url, client, settings)

    return open_server


def served_gateway_factory(base: dict[str, Any]) -> ServedGatewayFactory:
    """``async with factory(SETTING=value, ...) as url``: the same, for tests that bring their own client
    (disconnects, slow clients, raw HTTP)."""
    open_server = gateway_server_factory(base)

    @asynccontextmanager
    async def serve(**overrides: Any) -> AsyncIterator[str]:
        async with open_server(**overrides) as served:
            yield served.url

    return serve


def json_enhancement(
    caption: str = "A red bicycle leans against a weathered brick wall.", **extra: Any
) -> str:
    return json.dumps({"caption": caption, "added_terms": [], **extra})


def sent_image(fake: FakeOpenAI, index: int = -1) -> tuple[bytes, Image.Image]:
    """The JPEG the gateway put into its chat request, decoded."""
    content = fake.requests[index]["messages"][-1]["content"]
    url = next(part["image_url"]["url"] for part in content if part["type"] == "image_url")
    prefix = "data:image/jpeg;base64,"
    assert url.startswith(prefix)
    data = base64.b64decode(url[len(prefix) :])
    return data, Image.open(io.BytesIO(data))


def sent_texts(fake: FakeOpenAI, index: int = -1) -> list[str]:
    """The text parts of the user message the gateway sent, in order (the image part left out)."""
    content = fake.requests[index]["messages"][-1]["content"]
    return [part["text"] for part in content if part["type"] == "text"]


def sent_parts(fake: FakeOpenAI, index: int = -1) -> list[str]:
    """The user message's parts in order, as ``"image"`` or their text: where each piece sits."""
    content = fake.requests[index]["messages"][-1]["content"]
    return ["image" if part["type"] == "image_url" else part["text"] for part in content]


def url_settings(*servers: Any) -> dict[str, str]:
    """Image URLs on, for test web servers on 127.0.0.1 (plain http on their own ports) and nothing else."""
    return {
        "IMAGE_URL_ENABLED": "true",
        "IMAGE_URL_SCHEMES": "http,https",
        "IMAGE_URL_ALLOWED_PORTS": ",".join(str(server.port) for server in servers),
        "IMAGE_URL_ALLOW_HOSTS": "127.0.0.1/32",
    }
