"""The VLM (Qwen2.5-VL on vLLM): prompts, the structured-output schema, and reading its answer.

Two call shapes: the default asks for JSON constrained by a bounded JSON schema through vLLM's structured
outputs (``response_format: json_schema``), so captions come with keywords, visible text, brands and
colours; ``VLM_STRUCTURED=false`` asks for plain text, for servers without structured outputs.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from gateway.backends.caption_schema import caption_schema, structured_max_tokens, worst_case_tokens
from gateway.backends.openai_chat import ChatClient, ChatResult
from gateway.context import context_block
from gateway.errors import BackendBadResponse
from gateway.imaging import PreparedImage
from gateway.languages import LANGUAGES
from gateway.records import ContextRecord
from gateway.styles import ALT_TEXT_STYLE, Style
from gateway.text import clean, cut_to_last_sentence, loads_lenient, strip_preamble
from gateway.vocabularies import Vocabulary

__all__ = ["CaptionSpec", "VlmBackend", "VlmCaption", "caption_schema", "worst_case_tokens"]
WARM_UP_PROMPT = "Warm-up request: compile the caption grammar."
SYSTEM_PROMPT = (
    "You are a meticulous image describer for a photo library's search index. Describe only what is "
    "visible. Never start with 'This image shows' or a similar preamble."
)


@dataclass(frozen=True)
class CaptionSpec:
    """What kind of caption to ask for."""

    style: Style
    language: str = "en"
    custom_prompt: str | None = None
    vocabulary: Vocabulary | None = None
    context: bool = False  # describe with the facts of the image's own metadata

    @property
    def vocabulary_key(self) -> str | None:
        """``name@sha256-prefix``: part of a caption's parameters (an edited list gives other captions)."""
        return self.vocabulary.key if self.vocabulary else None


@dataclass(frozen=True)
class Brand:
    name: str
    evidence: str


@dataclass(frozen=True)
class VlmCaption:
    caption: str
    truncated: bool = False
    structured: bool = False
    keywords: list[str] = field(default_factory=list)
    visible_text: list[str] = field(default_factory=list)
    brands: list[Brand] = field(default_factory=list)
    colors: list[str] = field(default_factory=list)
    alt_text: str | None = None
    headline: str | None = None
    keywords_free: list[str] | None = None  # only with a vocabulary that allows free keywords
    usage: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] | None = field(default=None, repr=False)  # the JSON as the VLM sent it, for eval


def build_prompt(spec: CaptionSpec, structured: bool) -> str:
    """What is the same for every request of a style, language and vocabulary (per-request text is apart)."""
    parts = [spec.style.instructions]
    language = LANGUAGES.get(spec.language, "English")
    if structured:
        parts.append(_json_fields(spec))
    else:
        parts.append("Answer with the description only.")
    if spec.language != "en":
        parts.append(f"Write the caption and keywords in {language}.")
    return "\n".join(parts)


def _json_fields(spec: CaptionSpec) -> str:
    vocabulary = spec.vocabulary
    keywords = (
        "keywords (lower-case search terms)"
        if vocabulary is None
        else "keywords (only terms of the library's controlled vocabulary that apply)"
    )
    if vocabulary is not None and vocabulary.allow_free:
        keywords += "; keywords_free (important concepts the vocabulary lacks, lower-case)"
    style = spec.style
    alt_text = (
        f"; alt_text (alt text for a screen-reader user, at most {style.alt_text_max_chars} characters)"
    )
    if style.name == ALT_TEXT_STYLE:  # its caption is the alt text
        alt_text = ""
    return (
        f"Answer as JSON: caption; {keywords}; visible_text (text legible in the image, verbatim, empty if "
        "none); brands (only names shown by legible text or a clearly recognisable logo, each with its "
        "evidence); colors (dominant colours by name); headline (a short news-style headline, at most "
        f"{style.headline_max_chars} characters){alt_text}."
    )


def request_text(spec: CaptionSpec, context: ContextRecord | None) -> str | None:
    """Per-request text, after the image: the caller's extra instructions and the metadata context."""
    parts = []
    if spec.custom_prompt:
        # The operator's or user's words shape the content; the schema (enforced by vLLM) keeps the shape.
        parts.append(f"Additional instructions: {spec.custom_prompt}")
    if context is not None and not context.is_empty():
        parts.append(context_block(context))
    return "\n".join(parts) or None


class VlmBackend:
    def __init__(
        self, chat: ChatClient, *, model: str, temperature: float, max_tokens: int, structured: bool
    ) -> None:
        self.chat = chat
        self.model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self.structured = structured

    def build_request(
        self, image: PreparedImage, spec: CaptionSpec, context: ContextRecord | None = None
    ) -> dict[str, Any]:
        data_url = "data:image/jpeg;base64," + base64.b64encode(image.jpeg).decode("ascii")
        # Same for every request of a style first (system prompt, instructions, schema, language), then the
        # image, then what is this request's own: vLLM's prefix cache reuses KV blocks of an identical
        # prompt prefix only, so the style's text is prefilled once, not after every image again.
        content: list[dict[str, Any]] = [
            {"type": "text", "text": build_prompt(spec, self.structured)},
            {"type": "image_url", "image_url": {"url": data_url}},
        ]
        extra = request_text(spec, context)
        if extra:
            content.append({"type": "text", "text": extra})
        return self._payload(content, spec)

    def _payload(self, content: list[dict[str, Any]], spec: CaptionSpec) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self.model,
            "temperature": self._temperature,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}],
        }
        if self.structured:
            schema = caption_schema(spec.style, spec.vocabulary)
            payload["max_tokens"] = structured_max_tokens(spec.style, spec.vocabulary)
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "caption", "schema": schema, "strict": True},
            }
        else:
            payload["max_tokens"] = self._max_tokens
        return payload

    async def health(self) -> bool:
        return await self.chat.health()

    async def warm(self, spec: CaptionSpec) -> None:
        """One tiny request with the spec's exact schema: vLLM compiles its grammar now and caches it, so
        the first caption that uses it does not wait (33 s for a 50,000-term vocabulary)."""
        payload = self._payload([{"type": "text", "text": WARM_UP_PROMPT}], spec)
        payload["max_tokens"] = 1
        await self.chat.complete(payload)

    async def describe(
        self, image: PreparedImage, spec: CaptionSpec, context: ContextRecord | None = None
    ) -> VlmCaption:
        result = await self.chat.complete(self.build_request(image, spec, context))
        return parse_structured(result, spec.vocabulary) if self.structured else parse_text(result)


def parse_text(result: ChatResult) -> VlmCaption:
    caption = strip_preamble(clean(result.content or ""))
    truncated = result.finish_reason == "length"
    if truncated:
        caption = cut_to_last_sentence(caption)
    if not caption:
        raise BackendBadResponse("vlm", "the VLM answered with an empty caption", code="empty_caption")
    return VlmCaption(caption=caption, truncated=truncated, usage=result.usage)


def parse_structured(result: ChatResult, vocabulary: Vocabulary | None = None) -> VlmCaption:
    if result.finish_reason == "length":
        raise BackendBadResponse(
            "vlm", "the VLM's JSON answer was cut off at its token limit", code="output_truncated"
        )
    try:
        data = loads_lenient(result.content or "")
    except ValueError:
        raise BackendBadResponse("vlm", "the VLM's answer is not valid JSON", code="bad_output") from None
    if not isinstance(data, dict) or not isinstance(data.get("caption"), str):
        raise BackendBadResponse("vlm", "the VLM's JSON answer has no caption string", code="bad_output")
    caption = strip_preamble(clean(data["caption"]))
    if not caption:
        raise BackendBadResponse("vlm", "the VLM answered with an empty caption", code="empty_caption")
    keywords = _keywords(data.get("keywords")) if vocabulary is None else _terms(data, vocabulary)
    free = _keywords(data.get("keywords_free")) if vocabulary and vocabulary.allow_free else None
    return VlmCaption(
        caption=caption,
        structured=True,
        keywords=keywords,
        visible_text=_strings(data.get("visible_text")),
        brands=_brands(data.get("brands")),
        colors=[c.lower() for c in _strings(data.get("colors"))],
        alt_text=_text(data.get("alt_text")),
        headline=_text(data.get("headline")),
        keywords_free=None if free is None else [k for k in free if k.casefold() not in _folded(keywords)],
        usage=result.usage,
        raw=data,
    )


def _terms(data: dict[str, Any], vocabulary: Vocabulary) -> list[str]:
    """Labels back to the vocabulary's terms, hierarchy restored (``Paris`` -> ``Places|Europe|Paris``).

    The grammar admits only labels; anything else (a server without structured outputs) is dropped."""
    terms = (vocabulary.term_for(label) for label in _strings(data.get("keywords")))
    return list(dict.fromkeys(term for term in terms if term is not None))


def _folded(terms: list[str]) -> set[str]:
    return {part.casefold() for term in terms for part in term.split("|")}


def _text(value: Any) -> str | None:
    return (clean(value) or None) if isinstance(value, str) else None


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    cleaned = (clean(item) for item in value if isinstance(item, str))
    return [item for item in cleaned if item]


def _keywords(value: Any) -> list[str]:
    # Lower-case and deduplicated, first occurrence wins (models list the most important first).
    return list(dict.fromkeys(item.lower() for item in _strings(value)))


def _brands(value: Any) -> list[Brand]:
    if not isinstance(value, list):
        return []
    brands = []
    for item in value:
        if isinstance(item, dict):
            name, evidence = clean(str(item.get("name", ""))), clean(str(item.get("evidence", "")))
            if name:
                brands.append(Brand(name, evidence))
    return brands
