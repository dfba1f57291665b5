"""Shared fixtures: a real S3 server seeded with generated images, two fake OpenAI backends, the gateway.

The gateway runs in-process (its real lifespan, real clients) and is reached through httpx's ASGI
transport; S3 and the backends are real HTTP servers on 127.0.0.1. Helpers that tests import live in
``tests/support/`` (never import this file).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.batch import BatchBucket, new_bucket
from tests.support.events import session_webhook
from tests.support.fake_openai import FakeOpenAI, FakeServer, Reply, structured
from tests.support.gateway import (
    BUCKET,
    SEED,
    GatewayFactory,
    ServedGatewayFactory,
    ServerFactory,
    gateway_factory,
    gateway_server_factory,
    json_enhancement,
    served_gateway_factory,
)
from tests.support.loopback import Connections, guard_connections
from tests.support.review import put_scenes
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, S3Server, start_s3_server
from tests.support.scenes import SCENES

if TYPE_CHECKING:  # imported by pytest_plugins below; importing it here first would skip assert rewriting
    from tests.support.postgres import PostgresServer

# Real-service fixtures that live beside their harness: ``postgres`` and ``browser``/``page``.
pytest_plugins = ("tests.support.postgres", "tests.support.browser")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    # Its filer announces changes in events-* buckets to a port a webhook test serves a gateway on.
    server = start_s3_server(webhook=session_webhook())
    # The gateway finds credentials through the normal AWS chain, here the environment.
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
    try:
        client: Any = server.client()
        server.create_bucket(BUCKET)
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


@pytest.fixture(params=["sqlite", "postgresql"])
def catalogue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty catalogue database: an SQLite file, or a new database on the session's real
    PostgreSQL server (started only when a test asks for this engine)."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'catalogue.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


def _against_fakes(s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI) -> dict[str, Any]:
    return {
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "VLM_BASE_URL": fake_vlm.base_url,
        "GPT_OSS_BASE_URL": fake_enhancer.base_url,
        "S3_TIMEOUT_S": 5,
    }


@pytest.fixture
def gateway(s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI) -> GatewayFactory:
    """``async with gateway(SETTING=value, ...) as client``: the app with its lifespan, against the fakes."""
    return gateway_factory(_against_fakes(s3_server, fake_vlm, fake_enhancer))


@pytest.fixture
def gateway_server(s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI) -> ServerFactory:
    """``async with gateway_server(SETTING=value, ...) as served``: the same app on a real 127.0.0.1 port,
    for a browser (``served.url``) and plain HTTP (``served.client``)."""
    return gateway_server_factory(_against_fakes(s3_server, fake_vlm, fake_enhancer))


@pytest.fixture
def served_gateway(
    s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> ServedGatewayFactory:
    """``async with served_gateway(SETTING=value, ...) as url``: the same app behind a real uvicorn."""
    return served_gateway_factory(_against_fakes(s3_server, fake_vlm, fake_enhancer))


@pytest.fixture
def scene_bucket(s3_server: S3Server) -> Iterator[BatchBucket]:
    """A fresh bucket holding the drawn scenes (``tests/support/scenes.py``): what a review writes beside an
    image is this test's alone."""
    bucket = new_bucket(s3_server, prefix="review")
    put_scenes(bucket.client, bucket.name, SCENES)
    yield bucket
    bucket.remove()


@pytest.fixture
def connections() -> Iterator[Connections]:
    """Every httpcore connection the test makes, recorded; any beyond loopback refused before its socket."""
    with guard_connections() as seen:
        yield seen
