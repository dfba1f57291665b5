"""The JSON schema a structured caption is constrained by (vLLM's ``response_format: json_schema``).

Every string and array is bounded, so generation always ends and ``max_tokens`` can be derived from the
schema's worst case. With a vocabulary, keyword items are an ``enum`` of its labels: the grammar admits
nothing else, and ``keywords_free`` (bounded) takes what the list lacks when the vocabulary allows it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from gateway.styles import ALT_TEXT_STYLE, Style
from gateway.vocabularies import Vocabulary

VISIBLE_TEXT_MAX_CHARS = 40
BRAND_NAME_MAX_CHARS = 30
BRAND_EVIDENCE_MAX_CHARS = 40
COLOR_MAX_CHARS = 12
STRUCTURED_MARGIN_TOKENS = 64


def _strings(max_items: int, max_chars: int, min_items: int = 0) -> dict[str, Any]:
    items = {"type": "string", "minLength": 1, "maxLength": max_chars}
    return {"type": "array", "items": items, "minItems": min_items, "maxItems": max_items}


def _keywords(style: Style, vocabulary: Vocabulary | None) -> dict[str, Any]:
    if vocabulary is None:
        return _strings(style.keywords_max, style.keyword_max_chars, style.keywords_min)
    # At most as many as the list holds: a grammar cannot express uniqueItems, duplicates are dropped later.
    most = min(style.keywords_max, len(vocabulary.labels))
    return {
        "type": "array",
        "items": {"type": "string", "enum": list(vocabulary.labels)},
        "minItems": min(style.keywords_min, most),
        "maxItems": most,
    }


@cache  # per (style, vocabulary): derived state, built once; vLLM caches the compiled grammar per schema
def caption_schema(style: Style, vocabulary: Vocabulary | None = None) -> dict[str, Any]:
    """The schema for one style (and vocabulary). Shared and cached: treat the returned dict as read-only."""
    brand = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "evidence"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": BRAND_NAME_MAX_CHARS},
            "evidence": {"type": "string", "minLength": 1, "maxLength": BRAND_EVIDENCE_MAX_CHARS},
        },
    }
    properties: dict[str, Any] = {
        "caption": {"type": "string", "minLength": 1, "maxLength": style.caption_max_chars},
        "keywords": _keywords(style, vocabulary),
    }
    if vocabulary is not None and vocabulary.allow_free:
        properties["keywords_free"] = _strings(vocabulary.free_max, style.keyword_max_chars)
    properties |= {
        "visible_text": _strings(style.visible_text_max_items, VISIBLE_TEXT_MAX_CHARS),
        "brands": {"type": "array", "items": brand, "maxItems": style.brands_max_items},
        "colors": _strings(style.colors_max_items, COLOR_MAX_CHARS),
        "headline": {"type": "string", "minLength": 1, "maxLength": style.headline_max_chars},
    }
    if style.name != ALT_TEXT_STYLE:  # that style's caption is the alt text already
        properties["alt_text"] = {"type": "string", "minLength": 1, "maxLength": style.alt_text_max_chars}
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
        if "enum" in schema:
            return max(len(value) for value in schema["enum"]) + 2
        return int(schema["maxLength"]) + 2
    if kind == "array":
        return 2 + int(schema["maxItems"]) * (worst_case_tokens(schema["items"]) + 1)
    if kind == "object":
        props = schema["properties"]
        return 2 + sum(len(name) + 4 + worst_case_tokens(sub) for name, sub in props.items())
    raise ValueError(f"unbounded schema node: {schema!r}")


@cache
def structured_max_tokens(style: Style, vocabulary: Vocabulary | None = None) -> int:
    return worst_case_tokens(caption_schema(style, vocabulary)) + STRUCTURED_MARGIN_TOKENS
