"""A review session to test or show: scenes put in S3, captioned through the gateway by the fake VLM, so the
catalogue holds them as any caption would be held. Used by the review tests and scripts/review_screenshot.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import httpx

from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.scenes import Scene


def put_scenes(s3_client: Any, bucket: str, scenes: Sequence[Scene]) -> None:
    for scene in scenes:
        s3_client.put_object(Bucket=bucket, Key=scene.key, Body=scene.jpeg, ContentType="image/jpeg")


async def caption_scenes(
    client: httpx.AsyncClient,
    fake_vlm: FakeOpenAI,
    bucket: str,
    scenes: Sequence[Scene],
    headers: dict[str, str] | None = None,
    **request: Any,
) -> list[dict[str, Any]]:
    """Each scene captioned with its own answer (one at a time, so the scripted replies pair up)."""
    answers = []
    for scene in scenes:
        fake_vlm.then(Reply(content=json.dumps(scene.vlm_answer())))
        response = await client.post(
            "/caption", json={"s3_uri": f"s3://{bucket}/{scene.key}", **request}, headers=headers
        )
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


async def catalogue_ids(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> dict[str, int]:
    """s3_uri -> catalogue id, for every entry (a test's catalogue is small)."""
    page = await client.get("/v1/captions", params={"limit": 200}, headers=headers)
    assert page.status_code == 200, page.text
    return {item["s3_uri"]: item["id"] for item in page.json()["items"]}
