"""No log line at any level carries a credential or a signature, and no request can forge a log line.

Marker values for every secret, the real libraries at LOG_LEVEL=debug: the gateway as ``florence-tagger
serve`` (aiobotocore and aiohttp for S3, httpx for the backends, uvicorn), and boto3 (botocore, urllib3) and
httpx fetching a presigned URL in-process, as the tests' and issue 16's code paths do.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.logs import configure_logging, redact
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.gateway import BUCKET
from tests.support.processes import Procs, free_port, gateway_command
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, S3Server

VLM_KEY = "sk-vlm-MARKER-1f3a9c"
API_KEY = "api-MARKER-77e2b0"
SIGNATURE = re.compile(r"(?i)signature[=:\s'\"]*[0-9a-f]{32,}")


def assert_no_secrets(text: str) -> None:
    for marker in (VLM_KEY, API_KEY, ACCESS_KEY, SECRET_KEY, "MARKER"):
        assert marker not in text, marker
    assert not SIGNATURE.search(text), SIGNATURE.search(text)
    assert "AWS4-HMAC-SHA256 Credential=florence" not in text


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """The gateway's own logging configuration at debug, written to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_level, saved_handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    configure_logging("debug", [VLM_KEY, API_KEY], stream)
    try:
        yield stream
    finally:
        for handler in list(root.handlers):
            if handler not in saved_handlers:
                root.removeHandler(handler)
        root.setLevel(saved_level)
        logging.getLogger("httpx").setLevel(logging.WARNING)


def test_boto3_and_httpx_at_debug_leave_no_credentials(debug_log: io.StringIO, s3_server: S3Server) -> None:
    client: Any = s3_server.client()
    client.put_object(Bucket=BUCKET, Key="log-probe.txt", Body=b"x")
    url = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "log-probe.txt"})
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # were a URL logged, as issue 16's presigned GETs may
    assert httpx.get(url).status_code == 200
    text = debug_log.getvalue()
    assert "botocore" in text and "urllib3" in text and "httpx" in text  # they did log, at debug
    assert "***" in text  # and something was masked
    assert_no_secrets(text)


@pytest.mark.parametrize(
    "line",
    [
        "headers={'Authorization': b'AWS4-HMAC-SHA256 "
        "Credential=AKIDEXAMPLE/20250101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature="
        + "ab" * 32
        + "', 'X-Amz-Security-Token': b'FQoGZXIvYXdzEJr'}",
        "GET /b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F2025&X-Amz-Signature="
        + "cd" * 32,
        "Signature:\n" + "ef" * 32,
        "x-amz-security-token:FQoGZXIvYXdzEJr\nhost:s3",
        "Authorization: Bearer sk-abcdef0123456789",
    ],
)
def test_credentials_are_masked_by_shape(line: str) -> None:
    masked = redact(line)
    for secret in ("AKIDEXAMPLE", "ab" * 32, "cd" * 32, "ef" * 32, "FQoGZXIvYXdzEJr", "sk-abcdef"):
        assert secret not in masked, (secret, masked)
    assert "\n" not in masked


async def test_the_served_gateway_at_debug_leaves_no_credentials(
    s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI, tmp_path: Path
) -> None:
    procs = Procs(tmp_path)
    port = free_port()
    env = {
        **os.environ,
        **s3_server.env(),
        "VLM_BASE_URL": fake_vlm.base_url,
        "GPT_OSS_BASE_URL": fake_enhancer.base_url,
        "VLM_API_KEY": VLM_KEY,
        "API_KEYS": API_KEY,
        "LOG_LEVEL": "debug",
        "DATA_DIR": str(tmp_path / "data"),
        "CACHE": "off",  # the second request must reach the VLM, not the catalogue
    }
    gateway = procs.spawn("gateway", gateway_command(port), port, env)
    try:
        gateway.wait_ready("/livez")
        auth = {"Authorization": f"Bearer {API_KEY}"}
        async with httpx.AsyncClient(base_url=gateway.url, headers=auth, timeout=30) as client:
            ok = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/in-budget.jpg"})
            fake_vlm.reset(Reply(status=400, echo_headers=True))  # its answer carries our Authorization
            refused = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/in-budget.jpg"})
            forged = await client.get("/nope%0A2099-01-01 INFO gateway.access forged=1")
    finally:
        procs.close()
    assert (ok.status_code, refused.status_code, forged.status_code) == (200, 502, 404)
    text = gateway.log_path.read_text("utf-8", "replace")
    assert "aiobotocore" in text and "botocore.auth" in text  # debug was on for the S3 client
    assert "***" in text
    assert_no_secrets(text)
    assert not any(line.startswith("2099-01-01") for line in text.splitlines())  # no forged line
    assert "/nope\\n2099-01-01" in text  # the path is logged, its newline escaped
