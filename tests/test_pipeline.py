"""The caption pipeline as a library (what the API, batch and Ray call), against real S3 and the fakes."""

from __future__ import annotations

import pytest

from gateway.errors import GatewayBusy
from gateway.pipeline import CaptionRequest
from gateway.settings import Settings
from gateway.wiring import open_pipeline
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import BUCKET
from tests.support.s3_server import S3Server


async def test_a_request_waiting_too_long_for_an_image_slot_is_told_to_come_back(
    s3_server: S3Server, fake_vlm: FakeOpenAI
) -> None:
    settings = Settings(  # type: ignore[call-arg]
        S3_ENDPOINT_URL=s3_server.endpoint_url, VLM_BASE_URL=fake_vlm.base_url, MAX_CONCURRENT_IMAGES=1
    )
    async with open_pipeline(settings, slot_wait_s=0.2) as pipeline:
        lease = await pipeline.lease()  # another request holds the only slot
        with pytest.raises(GatewayBusy) as busy:
            await pipeline.caption(CaptionRequest(s3_uri=f"s3://{BUCKET}/in-budget.jpg"))
        lease.release()
        assert busy.value.retry_after
        result = await pipeline.caption(CaptionRequest(s3_uri=f"s3://{BUCKET}/in-budget.jpg"))
    assert result.caption
    assert fake_vlm.requests  # the second call went through once the slot was free
