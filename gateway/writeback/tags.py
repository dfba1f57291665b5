"""S3 object tags for a caption: eight of them, values cut to what S3 accepts."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from gateway.records import CaptionLine

TAG_PREFIX = "florence:"
TAG_VALUE_MAX = 256
# The characters AWS documents for tag values; anything else (commas, quotes) becomes a space.
_TAG_UNSAFE = re.compile(r"[^\w +\-=.:/@]+")


def tag_value(text: str) -> str:
    clean = " ".join(_TAG_UNSAFE.sub(" ", text).split())
    if len(clean) <= TAG_VALUE_MAX:
        return clean
    cut = clean[: TAG_VALUE_MAX - 3]
    # "..." and not "…": AWS allows only letters, digits, spaces and + - = . _ : / @ in tag values.
    return (cut.rsplit(" ", 1)[0] if " " in cut else cut) + "..."


def tags_for(line: CaptionLine, now: datetime | None = None) -> dict[str, str]:
    """Up to eight tags, most useful first, so an object already carrying tags of its own (S3 allows 10 in
    all) keeps the best ones. Hierarchical keywords are tagged by their leaf (``|`` is not allowed)."""
    models = line.models
    leaves = dict.fromkeys(keyword.rsplit("|", 1)[-1] for keyword in line.keywords or [])
    extra = {"headline": line.headline, "alt-text": line.alt_text}
    return {
        f"{TAG_PREFIX}caption": tag_value(line.caption),
        f"{TAG_PREFIX}keywords": tag_value(" / ".join(leaves)),
        **{f"{TAG_PREFIX}{name}": tag_value(text) for name, text in extra.items() if text},
        f"{TAG_PREFIX}colors": tag_value(" / ".join(line.colors or [])),
        f"{TAG_PREFIX}model": tag_value(str(models.get("enhancer") or models.get("vlm") or "")),
        f"{TAG_PREFIX}etag": tag_value(line.etag or ""),
        f"{TAG_PREFIX}captioned-at": (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
