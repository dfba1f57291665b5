"""Request and response models of the HTTP API. The original service's keys are a contract: never rename.

The caption itself has one shape everywhere (``gateway.records``); this module adds what only HTTP has."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import BaseModel, ConfigDict, Field, model_validator

from gateway.records import CaptionRecord, ReasoningLevel
from gateway.requests import ONE_INPUT, CaptionRequest
from gateway.sources.url import MAX_URL_CHARS

PROMPT_MAX_CHARS = 1000
# s3:// + a 63-character bucket + / + S3's 1,024-byte key; style and language names are short.
S3_URI_MAX_CHARS = 1100
NAME_MAX_CHARS = 100
S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]/.+$"
# Ids are the databases' 64-bit integers: a larger number names no row, and a query with it would fail in
# the driver, not as a 404.
MAX_CAPTION_ID = 2**63 - 1
CaptionIdPath = Annotated[int, Path(ge=1, le=MAX_CAPTION_ID, description="A catalogue entry's id")]


class CaptionFields(BaseModel):
    """Everything about a caption request but the image: the JSON body's and the upload form's fields."""

    # Unknown keys are ignored, as the original service did: old clients may send more than we read.
    model_config = ConfigDict(extra="ignore")

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

    def to_request(self, **image: Any) -> CaptionRequest:
        fields = self.model_dump(include=set(CaptionFields.model_fields) - {"refresh"})
        return CaptionRequest(**fields, **image)


IMAGE_FIELDS = ("s3_uri", "image_base64", "image_url")
ONE_OF_IMAGES: dict[str, Any] = {"oneOf": [{"required": [name]} for name in IMAGE_FIELDS]}


class CaptionIn(CaptionFields):
    """The JSON body: exactly one of ``s3_uri``, ``image_base64``, ``image_url``, and the caption's fields."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=ONE_OF_IMAGES)

    s3_uri: str | None = Field(
        None,
        description="s3://bucket/key of the image",
        examples=["s3://your-bucket/image.jpg"],
        max_length=S3_URI_MAX_CHARS,
        # Declared for clients, checked by the gateway (s3_uri.py) so that a bad URI is `invalid_s3_uri`.
        json_schema_extra={"pattern": S3_URI_PATTERN},
    )
    image_base64: str | None = Field(
        None,
        description="The image's bytes in base64, raw or as a data URL (data:image/jpeg;base64,...); at most "
        "MAX_IMAGE_BYTES once decoded",
    )
    image_url: str | None = Field(
        None,
        max_length=MAX_URL_CHARS,
        description="An https URL the gateway fetches under its URL rules (IMAGE_URL_ENABLED, README)",
        examples=["https://images.example.com/photo.jpg"],
    )

    @model_validator(mode="after")
    def _one_image(self) -> CaptionIn:
        given = [name for name in IMAGE_FIELDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(ONE_INPUT + (f"; got {', '.join(given)}" if given else ""))
        return self


class CaptionForm(CaptionFields):
    """The multipart/form-data body (documentation only: ``api/uploads.py`` streams it): the image as the
    ``file`` part, the caption's fields as form fields."""

    file: bytes = Field(
        description="The image (JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF, AVIF); at most MAX_IMAGE_BYTES",
        json_schema_extra={"format": "binary", "type": "string"},
    )


# The route reads its body itself (``api/inputs.py``), so its two content types are declared here, and the
# two schemas added to the document's components by ``app.py`` (FastAPI adds only the models it parses).
BODY_SCHEMAS: dict[str, type[BaseModel]] = {"CaptionIn": CaptionIn, "CaptionForm": CaptionForm}
CAPTION_REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/CaptionIn"}},
            "multipart/form-data": {"schema": {"$ref": "#/components/schemas/CaptionForm"}},
        },
    }
}


def add_body_schemas(openapi: dict[str, Any]) -> dict[str, Any]:
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for name, model in BODY_SCHEMAS.items():
        schemas[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
    return openapi


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
