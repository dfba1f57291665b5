"""Text clean-up shared by the backends: what a model emits is not always what a caption should hold."""

from __future__ import annotations

import json
import re
from typing import Any

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\ufeff\ufffd]")
_SPACES = re.compile(r"\s+")
_PREAMBLE = re.compile(
    r"^\s*(?:this|the)\s+(?:image|picture|photo(?:graph)?)\s+(?:shows|depicts|features|displays|captures"
    r"|presents|contains|is of)\s*:?\s*",
    re.IGNORECASE,
)
_SENTENCE_END = re.compile(r"[.!?\u3002\uff01\uff1f][\"'\u201d\u2019)\]]*(?=\s|$)")


def clean(text: str) -> str:
    """Drop control characters (random or confused models emit them) and collapse whitespace."""
    return _SPACES.sub(" ", _CONTROL.sub(" ", text)).strip()


def strip_preamble(caption: str) -> str:
    """'This image shows a dog' -> 'A dog': the prompt asks for no preamble; this catches the rest."""
    stripped = _PREAMBLE.sub("", caption, count=1)
    if stripped is caption or not stripped:
        return caption
    return stripped[0].upper() + stripped[1:]


def cut_to_last_sentence(text: str) -> str:
    """A caption cut off mid-sentence is shortened to its last complete sentence, where it has one."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[: ends[-1].end()].strip() if ends else text.strip()


def loads_lenient(text: str) -> Any:
    """JSON that may hold raw control characters inside strings (vLLM's grammar lets them through)."""
    return json.loads(text, strict=False)


ECHO_MAX_CHARS = 200


def quoted(value: object, limit: int = ECHO_MAX_CHARS) -> str:
    """A client's input as an error message echoes it: repr'd (control characters escaped) and cut to
    ``limit`` characters, so a 1 MB field never comes back whole."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
