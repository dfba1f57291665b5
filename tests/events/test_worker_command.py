"""``florence-tagger worker``: the queue drained by separate processes, the gateway only receiving
(``EVENT_WORKERS=0``). Two worker processes share one queue (PostgreSQL: ``FOR UPDATE SKIP LOCKED``;
SQLite: one file, writes serialised by its lock) and caption every event exactly once between them."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import pytest

from gateway.cli import main
from tests.support.batch import CLI, new_bucket, small_images
from tests.support.events import s3_notification, wait_until
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import GatewayFactory
from tests.support.s3_server import S3Server

COUNT = 24
TOKEN = "worker-test-token"


async def test_two_worker_processes_share_the_queue_and_caption_each_event_once(
    gateway: GatewayFactory, s3_server: S3Server, fake_vlm: FakeOpenAI, catalogue_url: str, tmp_path: Path
) -> None:
    fake_vlm.reset(Reply(content=structured(), delay_s=0.1))
    bucket = new_bucket(s3_server, prefix="workers")
    keys = [f"w/{i:02d}.jpg" for i in range(COUNT)]
    for i, key in enumerate(keys):
        bucket.put(key, small_images()[i % 10])
    data_dir = tmp_path / "data"
    env = {
        **os.environ,
        **s3_server.env(),
        "VLM_BASE_URL": fake_vlm.base_url,
        "DATABASE_URL": catalogue_url,
        "DATA_DIR": str(data_dir),
        "EVENT_WORKERS": "2",
        "LOG_LEVEL": "info",
    }
    logs = [tmp_path / f"worker-{n}.log" for n in range(2)]
    workers = [
        subprocess.Popen([CLI, "worker"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        for log in logs
    ]
    try:
        async with gateway(
            DATABASE_URL=catalogue_url, DATA_DIR=str(data_dir), EVENT_WORKERS=0, EVENTS_TOKEN=TOKEN
        ) as client:
            headers = {"Authorization": f"Bearer {TOKEN}"}
            for key in keys:
                answer = await client.post(
                    "/v1/events/s3", json=s3_notification(bucket.name, key), headers=headers
                )
                assert answer.status_code == 202

            async def all_kept() -> bool:
                page = (await client.get("/v1/captions", params={"source": "event", "limit": 200})).json()
                return len(page["items"]) == COUNT

            await wait_until(all_kept, timeout_s=60, what=f"{COUNT} captions made by the worker processes")
            await asyncio.sleep(0.5)
            state = (await client.get("/v1/events/queue")).json()
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(timeout=30) for worker in workers]
    assert codes == [0, 0]  # SIGTERM is a clean stop
    assert len(fake_vlm.requests) == COUNT  # never twice
    assert state["counts"] == {"queued": 0, "retry": 0, "running": 0, "failed": 0}
    per_worker = [log.read_text().count("outcome=captioned") for log in logs]
    assert sum(per_worker) == COUNT
    assert all(per_worker), f"both processes took events: {per_worker}"


@pytest.mark.parametrize(
    ("setting", "value", "said"),
    [
        ("EVENTS_STYLE", "no-such-style", "unknown style"),
        ("EVENTS_LANGUAGE", "xx", "unsupported language"),
        ("EVENTS_WRITE_BACK", "sidecar,fax", "EVENTS_WRITE_BACK"),
        ("EVENTS_SIDECAR_PREFIX", "sidecars/", "EVENTS_SIDECAR_PREFIX"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_bad_events_setting_refuses_to_start_with_its_reason(
    command: str,
    setting: str,
    value: str,
    said: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(setting, value)
    assert main([command]) == 1  # before the catalogue, S3 or a model server is touched
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err
