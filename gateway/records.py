"""The one shape of a caption result: as the API serves it, a batch writes it, write-back and the catalogue
store it. Plain pydantic, no HTTP: ``api/schemas.py`` declares these as the response, ``batch/`` encodes
them as JSONL lines, ``writeback/`` reads their fields by name.

The field order is the order of the keys in every JSON form (responses, JSONL lines, sidecars); the original
service's keys (``caption``, ``enhanced``, ``original_caption``, ``s3_uri``) are a contract: never rename.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ReasoningLevel = Literal["low", "medium", "high"]
REASONING_LEVELS: tuple[ReasoningLevel, ...] = ("low", "medium", "high")
Origin = Literal["api", "batch", "event"]
ORIGINS: tuple[Origin, ...] = ("api", "batch", "event")
ReviewStatus = Literal["pending", "approved", "rejected", "edited"]
REVIEW_STATUSES: tuple[ReviewStatus, ...] = ("pending", "approved", "rejected", "edited")
Decision = Literal["pending", "approved", "rejected"]  # what a person sets; "edited" follows from an edit
WriteBackStatus = Literal["deferred", "done", "failed"]


class CaptionParams(BaseModel):
    """Everything besides the image version that decides a caption: equal params on the same version give
    an interchangeable result, so they key the catalogue's cache. Enhancer fields are None unless enhanced."""

    model_config = ConfigDict(frozen=True)

    style: str
    language: str
    prompt: str | None = None
    use_gpt_oss: bool
    reasoning_level: ReasoningLevel | None = None
    vlm_model: str
    enhancer_model: str | None = None
    grounding: str | None = None
    max_pixels: int
    min_pixels: int
    structured: bool
    vocabulary: str | None = None  # name@content-hash: an edited list is another parameter
    context: bool = False  # the image's own metadata given to the VLM

    def key(self) -> str:
        """A stable digest of the params. Sorted keys, so field order never changes it; defaults left out,
        so a parameter added later (at its default) leaves every existing entry's key as it was."""
        fields = self.model_dump(exclude_defaults=True)
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class BrandRecord(BaseModel):
    name: str
    evidence: str


class AddedTermRecord(BaseModel):
    term: str
    evidence: str


class ContextRecord(BaseModel):
    """What the VLM was told (``context_used`` in a result); empty when the file had nothing to say."""

    date: str | None = None
    gps: str | None = None
    title: str | None = None
    keywords: list[str] | None = None
    location: list[str] | None = None

    def is_empty(self) -> bool:
        return not any(self.model_dump(exclude_none=True).values())


class CaptionRecord(BaseModel):
    caption: str
    enhanced: bool
    s3_uri: str | None = Field(None, description="The S3 object captioned, when the image came from S3")
    original_caption: str | None = Field(None, description="The VLM's caption, when enhanced")
    enhancement_error: str | None = Field(None, description="Why enhancement was asked for but not applied")
    truncated: bool = Field(False, description="The VLM hit its token limit; cut to the last full sentence")
    style: str
    keywords: list[str] | None = None
    visible_text: list[str] | None = None
    brands: list[BrandRecord] | None = None
    colors: list[str] | None = None
    added_terms: list[AddedTermRecord] | None = None
    models: dict[str, str | None]
    usage: dict[str, dict[str, int]]
    # Added after the original and earlier keys, so lines and responses keep their old keys in order.
    alt_text: str | None = Field(None, description="IPTC alt text (AltTextAccessibility), at most 250 chars")
    headline: str | None = Field(None, description="A headline (photoshop:Headline), at most 80 chars")
    keywords_free: list[str] | None = Field(
        None, description="With a vocabulary that allows it: concepts its list lacks"
    )
    context_used: ContextRecord | None = Field(
        None, description='With "context": the facts from the image\'s metadata the VLM was given'
    )
    image_url: str | None = Field(None, description="The URL captioned, when the image came from a URL")
    image_sha256: str | None = Field(
        None, description="SHA-256 of the image's bytes as received (hex): the same bytes, the same digest"
    )

    @property
    def source_uri(self) -> str:
        """What was captioned, as batch lines are keyed: the S3 URI, or the URL."""
        return self.s3_uri or self.image_url or ""


def encode_line(record: BaseModel) -> bytes:
    """One compact JSONL line, without ``null`` keys, non-ASCII kept as UTF-8."""
    return _json_line(record.model_dump(exclude_none=True))


def _json_line(data: dict[str, object]) -> bytes:
    # The standard encoder, as every earlier release wrote lines: outputs stay byte-compatible.
    return (json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


class CaptionLine(CaptionRecord):
    """A batch output line and a JSON sidecar: the record plus the version it describes and its timings."""

    etag: str | None = None  # S3's version; an uploaded or fetched image's version is its image_sha256
    timings: dict[str, float] = Field(default_factory=dict)

    @classmethod
    def of(cls, record: CaptionRecord, etag: str | None, timings: dict[str, float]) -> CaptionLine:
        return cls(**dict(record), etag=etag, timings=timings)

    def encode(self) -> bytes:
        return encode_line(self)


class FailureLine(BaseModel):
    """A batch error line: which image (its S3 URI, or its URL), which version when known, the error code
    and message."""

    s3_uri: str | None
    etag: str | None
    reason: str
    message: str
    timings: dict[str, float] = Field(default_factory=dict)
    image_url: str | None = None

    def encode(self) -> bytes:
        # ``etag: null`` is kept: a URI list does not know the version that failed. A URL's line has
        # ``image_url`` instead of ``s3_uri``; an S3 line has no ``image_url`` key, as before.
        line = self.model_dump()
        for key in ("s3_uri", "image_url"):
            if line[key] is None:
                del line[key]
        return _json_line(line)


class EditedFields(BaseModel):
    """A person's corrections, kept beside the model's own text (review)."""

    caption: str | None = None
    alt_text: str | None = None
    keywords: list[str] | None = None


class WriteBackState(BaseModel):
    """What was written beside the image for this entry, or is waiting for a person's approval."""

    status: WriteBackStatus = Field(
        description="deferred: waits for approval (REVIEW_REQUIRED); done: written; failed: see error"
    )
    modes: list[str] = Field(description="sidecar, tags, xmp: what was (or will be) written")
    at: datetime | None = Field(None, description="When it was written or failed")
    error: str | None = Field(None, description="Why it failed (code: message)")


class CatalogueEntry(CaptionLine):
    """A record as the catalogue keeps and serves it: the batch line (record, ETag, timings), then its id,
    where its review stands, where it came from, when, and what made it. ``GET /v1/captions`` answers these;
    ``db export`` writes them as lines (a batch line with more keys)."""

    id: int
    status: ReviewStatus
    source: Origin
    created_at: datetime
    updated_at: datetime
    params: CaptionParams
    edited: EditedFields | None = None
    write_back: WriteBackState | None = None

    def approved_line(self) -> CaptionLine:
        """The line write-back writes on approval: the model's record with a person's edits in place."""
        line = CaptionLine.model_validate(self.model_dump(include=set(CaptionLine.model_fields)))
        if self.edited is None:
            return line
        # Only the fields a line has: an alt-text edit reaches write-back once records carry alt text.
        edits = self.edited.model_dump(exclude_none=True)
        return line.model_copy(update={k: v for k, v in edits.items() if k in CaptionLine.model_fields})
