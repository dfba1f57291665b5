"""Request and response models of the HTTP API. The original service's keys are a contract: never rename."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.pipeline import CaptionRequest, CaptionResult
from gateway.settings import ReasoningLevel

PROMPT_MAX_CHARS = 1000


class CaptionIn(BaseModel):
    # Unknown keys are ignored, as the original service did: old clients may send more than we read.
    model_config = ConfigDict(extra="ignore")

    s3_uri: str = Field(description="s3://bucket/key of the image", examples=["s3://your-bucket/image.jpg"])
    detailed: bool = Field(True, description="Rich multi-sentence caption (true) or one sentence (false)")
    use_gpt_oss: bool | None = Field(None, description="Enhance with gpt-oss; default: USE_GPT_OSS")
    reasoning_level: ReasoningLevel | None = Field(None, description="Overrides GPT_OSS_REASONING_LEVEL")
    style: str | None = Field(None, description="A named style (wins over `detailed`): see GET /styles")
    language: str | None = Field(None, description="Caption language (ISO 639-1 code), default en")
    prompt: str | None = Field(None, max_length=PROMPT_MAX_CHARS, description="Extra instructions")

    def to_request(self) -> CaptionRequest:
        return CaptionRequest(**self.model_dump())


class BrandOut(BaseModel):
    name: str
    evidence: str


class AddedTermOut(BaseModel):
    term: str
    evidence: str


class CaptionOut(BaseModel):
    caption: str
    enhanced: bool
    s3_uri: str
    original_caption: str | None = Field(None, description="The VLM's caption, when enhanced")
    enhancement_error: str | None = Field(None, description="Why enhancement was asked for but not applied")
    truncated: bool = Field(False, description="The VLM hit its token limit; cut to the last full sentence")
    style: str
    keywords: list[str] | None = None
    visible_text: list[str] | None = None
    brands: list[BrandOut] | None = None
    colors: list[str] | None = None
    added_terms: list[AddedTermOut] | None = None
    models: dict[str, str | None]
    usage: dict[str, dict[str, int]]

    @classmethod
    def from_result(cls, result: CaptionResult) -> CaptionOut:
        vlm = result.vlm
        structured = vlm.structured
        return cls(
            caption=result.caption,
            enhanced=result.enhanced,
            s3_uri=result.s3_uri,
            original_caption=result.original_caption,
            enhancement_error=result.enhancement_error,
            truncated=vlm.truncated,
            style=result.style,
            keywords=vlm.keywords if structured else None,
            visible_text=vlm.visible_text if structured else None,
            brands=[BrandOut(name=b.name, evidence=b.evidence) for b in vlm.brands] if structured else None,
            colors=vlm.colors if structured else None,
            added_terms=(
                [AddedTermOut(term=t.term, evidence=t.evidence) for t in result.added_terms]
                if result.enhanced and structured
                else None
            ),
            models=result.models,
            usage=result.usage,
        )


class BackendStatus(BaseModel):
    ok: bool | None = Field(description="Answers its /health; null when not checked (disabled)")
    enabled: bool
    model: str


class HealthOut(BaseModel):
    ok: bool
    backend: str
    device: str
    gpt_oss_enabled: bool
    gpt_oss_model: str
    gpt_oss_reasoning_level: ReasoningLevel
    vlm_load_8bit: bool
    backends: dict[str, BackendStatus]


class LiveOut(BaseModel):
    status: Literal["alive"] = "alive"


class StylesOut(BaseModel):
    styles: dict[str, str]
    languages: dict[str, str]
