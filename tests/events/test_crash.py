"""Crash safety: 50 events queued (202), the gateway SIGKILLed mid-way, restarted; on SQLite and PostgreSQL.

``florence-tagger serve`` runs as a subprocess (a SIGKILL must kill a real process); the fake VLM (200 ms an
answer) runs in this test's loop and records every request, and every image is distinct bytes the gateway
forwards unchanged, so each model call is counted against its key.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from tests.support import images
from tests.support.batch import BatchBucket, new_bucket
from tests.support.events import s3_notification, wait_until
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import sent_image
from tests.support.processes import Proc, Procs, free_port, gateway_command
from tests.support.s3_server import S3Server

COUNT = 50
WORKERS = 2
TOKEN = "crash-test-token"


def start(procs: Procs, env: dict[str, str], name: str) -> Proc:
    port = free_port()
    return procs.spawn(name, gateway_command(port), port, env={**os.environ, **env, "PORT": str(port)})


async def rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (
        await client.get("/v1/captions", params={"source": "event", "limit": 200})
    ).json()["items"]
    return items


async def test_a_gateway_killed_mid_queue_loses_nothing_and_repeats_only_what_was_in_flight(
    s3_server: S3Server, fake_vlm: FakeOpenAI, catalogue_url: str, tmp_path: Path
) -> None:
    fake_vlm.reset(Reply(content=structured(), delay_s=0.2))
    bucket: BatchBucket = new_bucket(s3_server, prefix="crash")
    key_of: dict[str, str] = {}  # sha256 of an image's bytes -> its key
    for i in range(COUNT):
        body = images.photo(96, 64, quality=80)  # noise: every one distinct
        key_of[hashlib.sha256(body).hexdigest()] = f"img-{i:02d}.jpg"
        bucket.put(f"img-{i:02d}.jpg", body)
    assert len(key_of) == COUNT
    env = {
        **s3_server.env(),
        "VLM_BASE_URL": fake_vlm.base_url,
        "DATABASE_URL": catalogue_url,
        "DATA_DIR": str(tmp_path / "data"),
        "EVENTS_TOKEN": TOKEN,
        "EVENT_WORKERS": str(WORKERS),
        "EVENTS_LEASE_S": "2",  # a dead worker's rows come back after this
        "LOG_LEVEL": "info",
    }
    procs = Procs(tmp_path)
    try:
        first = start(procs, env, "gateway-1")
        await asyncio.to_thread(first.wait_ready, "/livez")
        async with httpx.AsyncClient(
            base_url=first.url, headers={"Authorization": f"Bearer {TOKEN}"}
        ) as client:
            answers = await asyncio.gather(
                *(
                    client.post("/v1/events/s3", json=s3_notification(bucket.name, key))
                    for key in sorted(key_of.values())
                )
            )
        assert [a.status_code for a in answers] == [202] * COUNT
        await wait_until(lambda: _calls_at_least(fake_vlm, COUNT // 3), what="a third of the captions")
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait()
        procs.procs.remove(first)
        calls_before_kill = len(fake_vlm.requests)

        second = start(procs, env, "gateway-2")
        await asyncio.to_thread(second.wait_ready, "/livez")
        async with httpx.AsyncClient(base_url=second.url) as client:
            await wait_until(lambda: _has_rows(client, COUNT), timeout_s=90, what="every image's row")
            await asyncio.sleep(0.5)  # anything captioned twice would land now
            kept = await rows(client)
            state = (await client.get("/v1/events/queue")).json()
    finally:
        procs.close()
    assert COUNT // 3 <= calls_before_kill < COUNT, "the kill came mid-way"
    assert sorted(r["s3_uri"].rsplit("/", 1)[1] for r in kept) == sorted(key_of.values())  # each once
    calls = Counter(
        key_of[hashlib.sha256(sent_image(fake_vlm, i)[0]).hexdigest()] for i in range(len(fake_vlm.requests))
    )
    assert set(calls) == set(key_of.values())
    repeated = {key: n for key, n in calls.items() if n > 1}
    assert all(n == 2 for n in repeated.values()), repeated
    assert len(repeated) <= WORKERS, (
        f"only the images in flight at the kill may be captioned twice: {repeated}"
    )
    assert state["counts"] == {"queued": 0, "retry": 0, "running": 0, "failed": 0}


async def _calls_at_least(fake: FakeOpenAI, count: int) -> bool:
    return len(fake.requests) >= count


async def _has_rows(client: httpx.AsyncClient, count: int) -> bool:
    return len(await rows(client)) >= count
