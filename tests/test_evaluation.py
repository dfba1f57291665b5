"""florence-tagger eval: compliance, recall and the enhancer's invention rate, over real S3 and the fakes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.evaluation import evaluate, read_labels
from gateway.pipeline import CaptionRequest
from gateway.settings import Settings
from gateway.wiring import open_pipeline
from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import BUCKET
from tests.support.s3_server import S3Server


def settings_for(s3: S3Server, vlm: FakeOpenAI, enhancer: FakeOpenAI, **extra: str) -> Settings:
    values = {
        "S3_ENDPOINT_URL": s3.endpoint_url,
        "VLM_BASE_URL": vlm.base_url,
        "GPT_OSS_BASE_URL": enhancer.base_url,
        **extra,
    }
    return Settings(**values)  # type: ignore[arg-type]


async def test_eval_reports_compliance_recall_and_invented_brands(
    tmp_path: Path, s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> None:
    labels = tmp_path / "labels.jsonl"
    rows = [
        {"s3_uri": f"s3://{BUCKET}/in-budget.jpg", "visible_text": ["OPEN"], "brands": ["Acme"]},
        {"s3_uri": f"s3://{BUCKET}/image.webp", "visible_text": ["CLOSED"], "brands": []},
        {"s3_uri": f"s3://{BUCKET}/text.jpg", "visible_text": [], "brands": []},
    ]
    labels.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fake_vlm.reset(Reply(content=structured("A shop front.", visible_text=["OPEN"])))
    # The enhancer invents a brand; grounding is off so the eval sees what the enhancer would have shipped.
    fake_enhancer.reset(Reply(content="A shop front with a Profoto sign."))
    settings = settings_for(s3_server, fake_vlm, fake_enhancer, GROUNDING="off")
    template = CaptionRequest(s3_uri="", use_gpt_oss=True)
    async with open_pipeline(settings) as pipeline:
        summary = (await evaluate(pipeline, read_labels(labels), template, concurrency=2)).summary()
    assert summary["images"] == 3
    assert summary["captioned"] == 2
    assert summary["errors"] == {"unsupported_image": 1}
    assert summary["schema_compliance"] == 1.0
    assert summary["visible_text_recall"] == 0.5
    assert summary["enhanced"] == 2
    assert summary["unlabelled_brands"] == ["Profoto", "Profoto"]
    assert summary["unlabelled_brand_rate"] == 1.0


async def test_noncompliant_answer_lowers_compliance(
    tmp_path: Path, s3_server: S3Server, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"s3_uri": f"s3://{BUCKET}/in-budget.jpg"}) + "\n")
    fake_vlm.reset(Reply(content=json.dumps({"caption": "A shop.", "keywords": [], "extra": 1})))
    async with open_pipeline(settings_for(s3_server, fake_vlm, fake_enhancer)) as pipeline:
        summary = (await evaluate(pipeline, read_labels(labels), CaptionRequest(s3_uri=""), 1)).summary()
    assert summary["captioned"] == 1
    assert summary["schema_compliance"] == 0.0


def test_bad_label_file_names_the_line(tmp_path: Path) -> None:
    labels = tmp_path / "labels.jsonl"
    labels.write_text('{"s3_uri": "s3://b/k.jpg"}\n{"nope": 1}\n')
    with pytest.raises(ValueError, match=r"labels\.jsonl:2"):
        read_labels(labels)
