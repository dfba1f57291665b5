"""The enhancer (gpt-oss on vLLM): rewrites the VLM's caption, never seeing the image.

With ``GROUNDING=strict`` (the default) it gets the VLM's evidence and answers JSON listing every specific it
added; ``grounding.py`` then refuses any specific the evidence does not support. ``GROUNDING=off`` is the
original service's free rewrite. Any failure here is an ``EnhancementFailed``: the caller keeps the VLM's
caption, so a second stage can never lose the first stage's work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gateway.backends.openai_chat import ChatClient, ChatResult
from gateway.backends.vlm import VlmCaption
from gateway.errors import EnhancementFailed, GatewayError
from gateway.grounding import AddedTerm, ungrounded_terms
from gateway.languages import LANGUAGES
from gateway.records import ReasoningLevel
from gateway.text import clean, loads_lenient, strip_preamble

ADDED_TERMS_MAX = 10
HARMONY_MARKUP = ("<|channel|>", "<|message|>", "<|start|>", "<|end|>", "<|return|>")
SYSTEM_FREE = (
    "You polish image captions for a creative team's search index. Rewrite the caption to be more precise "
    "and professional. Keep every fact. Answer with the caption only."
)
SYSTEM_GROUNDED = (
    "You polish image captions for a creative team's search index. You cannot see the image: you get the "
    "caption and the evidence another model read from it (legible text, recognised brands). Rewrite the "
    "caption to be clearer and more specific using only that evidence. Never add a brand, product, model "
    "number or proper name that is not in the caption or the evidence. List every such specific you add in "
    "added_terms with the evidence that supports it."
)


@dataclass(frozen=True)
class Enhancement:
    caption: str
    added_terms: list[AddedTerm] = field(default_factory=list)
    usage: dict[str, int] = field(default_factory=dict)


def enhancement_schema(max_chars: int) -> dict[str, Any]:
    term = {
        "type": "object",
        "additionalProperties": False,
        "required": ["term", "evidence"],
        "properties": {
            "term": {"type": "string", "minLength": 1, "maxLength": 60},
            "evidence": {"type": "string", "minLength": 1, "maxLength": 80},
        },
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["caption", "added_terms"],
        "properties": {
            "caption": {"type": "string", "minLength": 1, "maxLength": max_chars},
            "added_terms": {"type": "array", "items": term, "maxItems": ADDED_TERMS_MAX},
        },
    }


class EnhancerBackend:
    def __init__(self, chat: ChatClient, *, model: str, max_tokens: int, grounded: bool) -> None:
        self.chat = chat
        self.model = model
        self._max_tokens = max_tokens
        self.grounded = grounded

    def build_request(
        self, vlm: VlmCaption, level: ReasoningLevel, language: str, max_chars: int
    ) -> dict[str, Any]:
        # gpt-oss reasons before it answers, and the reasoning spends from the same max_tokens budget.
        payload: dict[str, Any] = {
            "model": self.model,
            "reasoning_effort": level,
            "max_tokens": self._max_tokens,
            "messages": [
                {"role": "system", "content": SYSTEM_GROUNDED if self.grounded else SYSTEM_FREE},
                {"role": "user", "content": self._user_prompt(vlm, language)},
            ],
        }
        if self.grounded:
            payload["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "enhancement",
                    "schema": enhancement_schema(max_chars),
                    "strict": True,
                },
            }
        return payload

    def _user_prompt(self, vlm: VlmCaption, language: str) -> str:
        lines = [f"Caption: {vlm.caption}"]
        if self.grounded:
            evidence = {
                "visible_text": vlm.visible_text,
                "brands": [{"name": b.name, "evidence": b.evidence} for b in vlm.brands],
            }
            lines.append(f"Evidence: {json.dumps(evidence, ensure_ascii=False)}")
        lines.append(f"Write the caption in {LANGUAGES.get(language, 'English')}.")
        return "\n".join(lines)

    async def health(self) -> bool:
        return await self.chat.health()

    async def enhance(
        self, vlm: VlmCaption, level: ReasoningLevel, language: str = "en", max_chars: int = 600
    ) -> Enhancement:
        try:
            result = await self.chat.complete(self.build_request(vlm, level, language, max_chars))
        except GatewayError as exc:
            raise EnhancementFailed(exc.message, code=exc.code) from None
        try:
            enhancement = self._parse(result)
        except EnhancementFailed:
            raise
        except Exception as exc:
            # Whatever an odd answer makes parsing raise, the VLM's caption must survive it.
            raise EnhancementFailed(
                f"the enhancer's answer is unusable ({type(exc).__name__})", code="enhancer_bad_output"
            ) from None
        if self.grounded:
            self._check_grounding(vlm, enhancement, language)
        return enhancement

    def _parse(self, result: ChatResult) -> Enhancement:
        # Only message.content is an answer; message.reasoning (reasoning_content) is never read.
        if result.finish_reason == "length":
            raise EnhancementFailed(
                "the enhancer hit its token limit before finishing its answer (GPT_OSS_MAX_TOKENS)",
                code="enhancer_output_truncated",
            )
        content = result.content or ""
        if any(marker in content for marker in HARMONY_MARKUP):
            # vLLM returns the raw harmony stream when its parser cannot finish: reasoning, not an answer.
            raise EnhancementFailed(
                "the enhancer answered with raw reasoning output", code="enhancer_bad_output"
            )
        if not self.grounded:
            caption = strip_preamble(clean(content))
            if not caption:
                raise EnhancementFailed("the enhancer returned an empty answer", code="enhancer_empty")
            return Enhancement(caption, usage=result.usage)
        return _parse_grounded(content, result.usage)

    def _check_grounding(self, vlm: VlmCaption, enhancement: Enhancement, language: str) -> None:
        unsupported = ungrounded_terms(
            original=vlm.caption,
            enhanced=enhancement.caption,
            added_terms=enhancement.added_terms,
            visible_text=vlm.visible_text,
            brand_names=[b.name for b in vlm.brands],
            language=language,
        )
        if unsupported:
            raise EnhancementFailed(
                "the enhancement added terms the image does not support: " + ", ".join(unsupported[:5]),
                code="enhancement_ungrounded",
            )


def _parse_grounded(content: str, usage: dict[str, int]) -> Enhancement:
    try:
        data = loads_lenient(content)
    except ValueError:
        raise EnhancementFailed(
            "the enhancer's answer is not valid JSON", code="enhancer_bad_output"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("caption"), str):
        raise EnhancementFailed("the enhancer's JSON answer has no caption", code="enhancer_bad_output")
    caption = strip_preamble(clean(data["caption"]))
    if not caption:
        raise EnhancementFailed("the enhancer returned no caption", code="enhancer_empty")
    listed = data.get("added_terms")
    terms = [
        AddedTerm(clean(str(t.get("term", ""))), clean(str(t.get("evidence", ""))))
        for t in (listed if isinstance(listed, list) else [])
        if isinstance(t, dict) and str(t.get("term", "")).strip()
    ]
    return Enhancement(caption, terms, usage)
