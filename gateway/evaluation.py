"""``florence-tagger eval``: a labelled set through the running model servers, measured.

Each JSONL line names an image and what a person read in it:
``{"s3_uri": ..., "visible_text": [...], "brands": [...]}``. The report gives schema compliance (the VLM's raw
JSON against the style's schema), keyword counts, visible-text recall, and the rate of brands in enhanced
captions that the labels do not contain: the enhancer's invention rate. On the tiny-model CPU stack only the
plumbing is measured (compliance must be 100%: the constraint is vLLM's, not the model's); on GPUs it
measures the models.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator

from gateway.backends.vlm import caption_schema
from gateway.errors import GatewayError
from gateway.grounding import specific_tokens
from gateway.pipeline import CaptionPipeline, CaptionRequest, CaptionResult


@dataclass(frozen=True)
class Label:
    s3_uri: str
    visible_text: list[str]
    brands: list[str]


@dataclass
class Report:
    images: int = 0
    captioned: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    schema_valid: int = 0
    keywords: int = 0
    text_expected: int = 0
    text_found: int = 0
    enhanced: int = 0
    enhanced_brands: int = 0
    unlabelled_brands: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        done = max(self.captioned, 1)
        return {
            "images": self.images,
            "captioned": self.captioned,
            "errors": dict(self.errors),
            "schema_compliance": round(self.schema_valid / done, 4),
            "keywords_mean": round(self.keywords / done, 2),
            "visible_text_recall": round(self.text_found / self.text_expected, 4)
            if self.text_expected
            else None,
            "enhanced": self.enhanced,
            "enhanced_brand_mentions": self.enhanced_brands,
            "unlabelled_brand_rate": (
                round(len(self.unlabelled_brands) / self.enhanced_brands, 4) if self.enhanced_brands else 0.0
            ),
            "unlabelled_brands": self.unlabelled_brands[:50],
        }


def read_labels(path: Path) -> list[Label]:
    labels = []
    for number, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            labels.append(
                Label(row["s3_uri"], list(row.get("visible_text", [])), list(row.get("brands", [])))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not a label line ({exc})") from None
    return labels


def _fold(text: str) -> str:
    return " ".join(text.casefold().split())


def score(report: Report, label: Label, result: CaptionResult, schema: dict[str, Any]) -> None:
    report.captioned += 1
    vlm = result.vlm
    if vlm.raw is not None and Draft202012Validator(schema).is_valid(vlm.raw):
        report.schema_valid += 1
    report.keywords += len(vlm.keywords)
    seen = [_fold(t) for t in vlm.visible_text]
    for expected in label.visible_text:
        report.text_expected += 1
        report.text_found += any(_fold(expected) in s for s in seen)
    if result.enhanced and result.original_caption is not None:
        report.enhanced += 1
        _score_enhanced(report, label, result)


def _score_enhanced(report: Report, label: Label, result: CaptionResult) -> None:
    # A "brand mention" is any specific the enhancer introduced: listed terms plus proper-noun-like tokens
    # absent from the VLM's caption. It is unlabelled when no label brand or text contains it.
    original = _fold(result.original_caption or "")
    mentions = {t.term for t in result.added_terms}
    mentions |= {tok for tok in specific_tokens(result.caption, "en") if _fold(tok) not in original}
    truth = [_fold(x) for x in (*label.brands, *label.visible_text)]
    for mention in sorted(mentions):
        report.enhanced_brands += 1
        if not any(_fold(mention) in t for t in truth):
            report.unlabelled_brands.append(mention)


async def evaluate(
    pipeline: CaptionPipeline, labels: list[Label], template: CaptionRequest, concurrency: int
) -> Report:
    report = Report(images=len(labels))
    gate = asyncio.Semaphore(concurrency)
    spec = pipeline.spec_for(template)  # the schema every answer is checked against
    schema = caption_schema(spec.style, spec.vocabulary)

    async def one(label: Label) -> None:
        async with gate:
            request = replace(template, s3_uri=label.s3_uri)
            try:
                result = await pipeline.caption(request)
            except GatewayError as exc:
                report.errors[exc.code] += 1
                return
            score(report, label, result, schema)

    await asyncio.gather(*(one(label) for label in labels))
    return report
