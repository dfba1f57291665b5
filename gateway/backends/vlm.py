"""The VLM (Qwen2.5-VL on vLLM): prompts, the structured-output schema, and reading its answer.

Two call shapes: the default asks for JSON constrained by a bounded JSON schema through vLLM's structured
outputs (``response_format: json_schema``), so captions come with keywords, visible text, brands and
colours; ``VLM_STRUCTURED=false`` asks for plain text, for servers without structured outputs.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from gateway.backends.openai_chat import ChatClient, ChatResult
from gateway.errors import BackendBadResponse
from gateway.imaging import PreparedImage
from gateway.languages import LANGUAGES
from gateway.styles import Style
from gateway.text import clean, cut_to_last_sentence, loads_lenient, strip_preamble

VISIBLE_TEXT_MAX_CHARS = 40
BRAND_NAME_MAX_CHARS = 30
BRAND_EVIDENCE_MAX_CHARS = 40
COLOR_MAX_CHARS = 12
STRUCTURED_MARGIN_TOKENS = 64
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
    usage: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] | None = field(default=None, repr=False)  # the JSON as the VLM sent it, for eval


@cache  # per style: it is derived state, built once rather than on every request
def caption_schema(style: Style) -> dict[str, Any]:
    """The JSON schema for one style: every string and array bounded, so generation always ends.

    Shared and cached: treat the returned dict as read-only."""

    def strings(max_items: int, max_chars: int, min_items: int = 0) -> dict[str, Any]:
        items = {"type": "string", "minLength": 1, "maxLength": max_chars}
        return {"type": "array", "items": items, "minItems": min_items, "maxItems": max_items}

    brand = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "evidence"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": BRAND_NAME_MAX_CHARS},
            "evidence": {"type": "string", "minLength": 1, "maxLength": BRAND_EVIDENCE_MAX_CHARS},
        },
    }
    properties = {
        "caption": {"type": "string", "minLength": 1, "maxLength": style.caption_max_chars},
        "keywords": strings(style.keywords_max, style.keyword_max_chars, style.keywords_min),
        "visible_text": strings(style.visible_text_max_items, VISIBLE_TEXT_MAX_CHARS),
        "brands": {"type": "array", "items": brand, "maxItems": style.brands_max_items},
        "colors": strings(style.colors_max_items, COLOR_MAX_CHARS),
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": list(properties),
        "properties": properties,
    }


def worst_case_tokens(schema: dict[str, Any]) -> int:
    """Tokens of the longest JSON the schema admits, at one token per character (ASCII, no escapes)."""
    kind = schema.get("type")
    if kind == "string":
        return int(schema["maxLength"]) + 2
    if kind == "array":
        return 2 + int(schema["maxItems"]) * (worst_case_tokens(schema["items"]) + 1)
    if kind == "object":
        props = schema["properties"]
        return 2 + sum(len(name) + 4 + worst_case_tokens(sub) for name, sub in props.items())
    raise ValueError(f"unbounded schema node: {schema!r}")


@cache
def structured_max_tokens(style: Style) -> int:
    return worst_case_tokens(caption_schema(style)) + STRUCTURED_MARGIN_TOKENS


def build_prompt(spec: CaptionSpec, structured: bool) -> str:
    parts = [spec.style.instructions]
    if spec.custom_prompt:
        # The operator's or user's words shape the content; the schema (enforced by vLLM) keeps the shape.
        parts.append(f"Additional instructions: {spec.custom_prompt}")
    language = LANGUAGES.get(spec.language, "English")
    if structured:
        parts.append(
            "Answer as JSON: caption; keywords (lower-case search terms); visible_text (text legible in "
            "the image, verbatim, empty if none); brands (only names shown by legible text or a clearly "
            "recognisable logo, each with its evidence); colors (dominant colours by name)."
        )
    else:
        parts.append("Answer with the description only.")
    if spec.language != "en":
        parts.append(f"Write the caption and keywords in {language}.")
    return "\n".join(parts)


class VlmBackend:
    def __init__(
        self, chat: ChatClient, *, model: str, temperature: float, max_tokens: int, structured: bool
    ) -> None:
        self.chat = chat
        self.model = model
        self._temperature = temperature
        self._max_tokens = max_tokens
        self.structured = structured

    def build_request(self, image: PreparedImage, spec: CaptionSpec) -> dict[str, Any]:
        data_url = "data:image/jpeg;base64," + base64.b64encode(image.jpeg).decode("ascii")
        payload: dict[str, Any] = {
            "model": self.model,
            "temperature": self._temperature,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": data_url}},
                        {"type": "text", "text": build_prompt(spec, self.structured)},
                    ],
                },
            ],
        }
        if self.structured:
            schema = caption_schema(spec.style)
            payload["max_tokens"] = structured_max_tokens(spec.style)
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "caption", "schema": schema, "strict": True},
            }
        else:
            payload["max_tokens"] = self._max_tokens
        return payload

    async def health(self) -> bool:
        return await self.chat.health()

    async def describe(self, image: PreparedImage, spec: CaptionSpec) -> VlmCaption:
        result = await self.chat.complete(self.build_request(image, spec))
        return parse_structured(result) if self.structured else parse_text(result)


def parse_text(result: ChatResult) -> VlmCaption:
    caption = strip_preamble(clean(result.content or ""))
    truncated = result.finish_reason == "length"
    if truncated:
        caption = cut_to_last_sentence(caption)
    if not caption:
        raise BackendBadResponse("vlm", "the VLM answered with an empty caption", code="empty_caption")
    return VlmCaption(caption=caption, truncated=truncated, usage=result.usage)


def parse_structured(result: ChatResult) -> VlmCaption:
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
    return VlmCaption(
        caption=caption,
        structured=True,
        keywords=_keywords(data.get("keywords")),
        visible_text=_strings(data.get("visible_text")),
        brands=_brands(data.get("brands")),
        colors=[c.lower() for c in _strings(data.get("colors"))],
        usage=result.usage,
        raw=data,
    )


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
