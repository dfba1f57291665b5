"""Request and response models of the HTTP API. The original service's keys are a contract: never rename.

The caption itself has one shape everywhere (``gateway.records``); this module adds what only HTTP has."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.pipeline import CaptionRequest
from gateway.records import CaptionRecord, ReasoningLevel

PROMPT_MAX_CHARS = 1000
# s3:// + a 63-character bucket + / + S3's 1,024-byte key; style and language names are short.
S3_URI_MAX_CHARS = 1100
NAME_MAX_CHARS = 100
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.+$"


class CaptionIn(BaseModel):
    # Unknown keys are ignored, as the original service did: old clients may send more than we read.
    model_config = ConfigDict(extra="ignore")

    s3_uri: str = Field(
        description="s3://bucket/key of the image",
        examples=["s3://your-bucket/image.jpg"],
        max_length=S3_URI_MAX_CHARS,
        # Declared for clients, checked by the gateway (s3_uri.py) so that a bad URI is `invalid_s3_uri`.
        json_schema_extra={"pattern": S3_URI_PATTERN},
    )
    detailed: bool = Field(True, description="Rich multi-sentence caption (true) or one sentence (false)")
    use_gpt_oss: bool | None = Field(None, description="Enhance with gpt-oss; default: USE_GPT_OSS")
    reasoning_level: ReasoningLevel | None = Field(None, description="Overrides GPT_OSS_REASONING_LEVEL")
    style: str | None = Field(
        None, max_length=NAME_MAX_CHARS, description="A named style (wins over `detailed`): see GET /styles"
    )
    language: str | None = Field(
        None, max_length=NAME_MAX_CHARS, description="Caption language (ISO 639-1 code), default en"
    )
    prompt: str | None = Field(None, max_length=PROMPT_MAX_CHARS, description="Extra instructions")
    refresh: bool = Field(False, description="Caption again even if the catalogue holds this version")
    vocabulary: str | None = Field(
        None,
        max_length=NAME_MAX_CHARS,
        description="Constrain keywords to a named vocabulary (VOCABULARIES_DIR); default: the style's",
    )
    context: bool = Field(
        False, description="Give the VLM the facts of the image's own EXIF/XMP/IPTC metadata"
    )

    def to_request(self) -> CaptionRequest:
        return CaptionRequest(**self.model_dump(exclude={"refresh"}))


class CaptionOut(CaptionRecord):
    """The record, as ``POST /caption`` answers it (``records.CaptionRecord``: the one shape)."""

    cached: bool = Field(False, description="Answered from the catalogue: this version, these parameters")


class BackendStatus(BaseModel):
    ok: bool | None = Field(description="Answers its /health; null when not checked (disabled)")
    enabled: bool
    model: str


class CatalogueStatus(BaseModel):
    ok: bool = Field(description="The catalogue's database answers; when false, captions are uncached")
    enabled: bool = True
    engine: str = Field(description="sqlite or postgresql")


class VocabularyStatus(BaseModel):
    state: Literal["pending", "warmed", "failed"] = Field(
        description="Whether the VLM server has compiled this vocabulary's grammars (warmed at start-up)"
    )
    terms: int
    sha256: str
    error: str | None = None


class HealthOut(BaseModel):
    ok: bool
    backend: str
    device: str
    gpt_oss_enabled: bool
    gpt_oss_model: str
    gpt_oss_reasoning_level: ReasoningLevel
    vlm_load_8bit: bool
    backends: dict[str, BackendStatus | CatalogueStatus]
    vocabularies: dict[str, VocabularyStatus] = Field(
        default_factory=dict, description="Each configured vocabulary's warm-up; never flips `ok`"
    )


class LiveOut(BaseModel):
    status: Literal["alive"] = "alive"


class StylesOut(BaseModel):
    styles: dict[str, str]
    languages: dict[str, str]
    vocabularies: dict[str, int] = Field(default_factory=dict, description="Name: number of terms")
