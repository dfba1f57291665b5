"""What a caption is asked for: the image (exactly one of an S3 object, bytes held, a URL) and the
parameters, validated before any backend (or batch output) is touched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from gateway.backends.vlm import CaptionSpec
from gateway.errors import InvalidInput
from gateway.languages import LANGUAGES
from gateway.records import ReasoningLevel
from gateway.sources.held import HeldImage
from gateway.styles import DEFAULT_STYLE_DETAILED, DEFAULT_STYLE_SHORT, Style
from gateway.text import quoted
from gateway.vocabularies import Vocabulary

InputKind = Literal["s3", "bytes", "url"]
ONE_INPUT = "give exactly one image: s3_uri, image_base64, image_url, or a multipart file"


@dataclass(frozen=True)
class CaptionRequest:
    s3_uri: str = ""
    detailed: bool = True
    use_gpt_oss: bool | None = None
    reasoning_level: ReasoningLevel | None = None
    style: str | None = None
    language: str | None = None
    prompt: str | None = None
    vocabulary: str | None = None  # a VOCABULARIES_DIR name; default: the style's own, if it names one
    context: bool = False  # give the VLM the facts of the image's own metadata
    image: HeldImage | None = None  # bytes the caller already holds (an upload, base64), with their slot
    image_url: str | None = None  # fetched by the gateway under the URL rules (sources/url.py)

    def input_kind(self) -> InputKind:
        """Which one image this request names; more or fewer than one is a 422."""
        given: list[InputKind] = []
        if self.s3_uri:
            given.append("s3")
        if self.image is not None:
            given.append("bytes")
        if self.image_url is not None:
            given.append("url")
        if len(given) != 1:
            raise InvalidInput(ONE_INPUT + (f"; got {', '.join(given)}" if given else ""))
        return given[0]


def caption_spec(
    styles: Mapping[str, Style], request: CaptionRequest, vocabularies: Mapping[str, Vocabulary] | None = None
) -> CaptionSpec:
    """Validates the request's style, language and vocabulary before any backend (or batch output) is
    touched."""
    name = request.style or (DEFAULT_STYLE_DETAILED if request.detailed else DEFAULT_STYLE_SHORT)
    if name not in styles:
        raise InvalidInput(
            f"unknown style {quoted(name)}; valid styles: {', '.join(sorted(styles))}", code="unknown_style"
        )
    language = (request.language or "en").lower()
    if language not in LANGUAGES:
        raise InvalidInput(
            f"unsupported language {quoted(request.language)}; supported: {', '.join(LANGUAGES)}",
            code="unsupported_language",
        )
    style = styles[name]
    vocabulary = _vocabulary(request.vocabulary or style.vocabulary, vocabularies or {})
    return CaptionSpec(style, language, request.prompt, vocabulary, request.context)


def _vocabulary(name: str | None, vocabularies: Mapping[str, Vocabulary]) -> Vocabulary | None:
    if name is None:
        return None
    if name not in vocabularies:
        known = ", ".join(sorted(vocabularies)) or "none (VOCABULARIES_DIR is not set)"
        raise InvalidInput(f"unknown vocabulary {quoted(name)}; known: {known}", code="unknown_vocabulary")
    return vocabularies[name]
