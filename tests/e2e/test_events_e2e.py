"""New uploads end to end on real services only: SeaweedFS's filer webhook announces an upload to the gateway
(uvicorn on the webhook's port), whose event worker captions it through the real vLLM CPU stack, keeps it in
the catalogue and writes the XMP sidecar back; the sidecar's own announcement makes no second caption."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from gateway.settings import Settings
from tests.support.batch import new_bucket
from tests.support.events import EVENTS_BUCKET_PREFIX, serve_gateway, wait_until, webhook_port
from tests.support.images import photo
from tests.support.s3_server import S3Server
from tests.support.vllm_stack import CpuStack


async def test_an_upload_is_captioned_by_the_real_vlm_and_written_back_once(
    s3_server: S3Server, cpu_stack: CpuStack, tmp_path: Path
) -> None:
    assert s3_server.webhook is not None
    bucket = new_bucket(s3_server, prefix=EVENTS_BUCKET_PREFIX.rstrip("-"))
    settings = Settings(  # type: ignore[call-arg]
        **cpu_stack.gateway_env(),
        S3_ENDPOINT_URL=s3_server.endpoint_url,
        DATA_DIR=str(tmp_path),
        EVENTS_TOKEN=s3_server.webhook.token,
        EVENTS_WRITE_BACK="xmp",
        EVENTS_STYLE="short",
    )
    async with (
        serve_gateway(settings, webhook_port(s3_server.webhook)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as client,
    ):
        await asyncio.to_thread(bucket.put, "new/harbour.jpg", photo(640, 480))

        async def sidecar_echo_ignored() -> bool:
            metrics = (await client.get("/metrics")).text
            return bool(re.search(r'florence_events_received_total\{outcome="own_output"\} [1-9]', metrics))

        await wait_until(sidecar_echo_ignored, timeout_s=300, what="the caption, its sidecar and the echo")
        await asyncio.sleep(1)  # a second caption, had the echo been queued, would be under way now
        rows = (await client.get("/v1/captions", params={"source": "event"})).json()["items"]
        metrics = (await client.get("/metrics")).text
    assert [r["s3_uri"] for r in rows] == [f"s3://{bucket.name}/new/harbour.jpg"]
    row = rows[0]
    assert row["caption"] and row["style"] == "short"
    assert row["models"]["vlm"] == "Qwen/Qwen2.5-VL-7B-Instruct"
    assert row["usage"]["vlm"]["prompt_tokens"] > 0
    assert b"dc:description" in bucket.get("new/harbour.jpg.xmp")
    assert 'florence_events_processed_total{outcome="captioned"} 1.0' in metrics
