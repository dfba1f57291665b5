"""Named caption styles, loaded from a JSON data file an operator can replace (``STYLES_FILE``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULT_STYLE_DETAILED = "detailed"
DEFAULT_STYLE_SHORT = "short"
ALT_TEXT_STYLE = "alt_text"  # its caption is the alt text
ALT_TEXT_MAX_CHARS = 250  # IPTC Photo Metadata 2021.1: AltTextAccessibility, at most 250 characters
HEADLINE_MAX_CHARS = 80


@dataclass(frozen=True)
class Style:
    name: str
    description: str
    instructions: str
    caption_max_chars: int
    keywords_min: int
    keywords_max: int
    keyword_max_chars: int
    visible_text_max_items: int
    brands_max_items: int
    colors_max_items: int
    # Every result's IPTC alt text (~125 characters recommended, at most 250) and headline (<= 80).
    alt_text_max_chars: int = 125
    headline_max_chars: int = 80
    vocabulary: str | None = None  # a VOCABULARIES_DIR name this style's keywords are constrained to


def load_styles(path: Path | None = None) -> MappingProxyType[str, Style]:
    """The shipped styles, or the operator's file; a malformed file fails at start-up, not per request."""
    text = (
        path.read_text("utf-8")
        if path
        else resources.files(__package__).joinpath("styles.json").read_text("utf-8")
    )
    raw = json.loads(text)
    styles = {name: _style(name, spec) for name, spec in raw.items() if not name.startswith("_")}
    for required in (DEFAULT_STYLE_DETAILED, DEFAULT_STYLE_SHORT):
        if required not in styles:
            raise ValueError(f"styles file must define the {required!r} style")
    return MappingProxyType(styles)


def _style(name: str, spec: dict[str, Any]) -> Style:
    try:
        kw_min, kw_max = spec["keywords"]
        style = Style(
            name=name,
            description=str(spec.get("description", "")),
            instructions=str(spec["instructions"]),
            caption_max_chars=int(spec["caption_max_chars"]),
            keywords_min=int(kw_min),
            keywords_max=int(kw_max),
            keyword_max_chars=int(spec.get("keyword_max_chars", 20)),
            visible_text_max_items=int(spec.get("visible_text_max_items", 4)),
            brands_max_items=int(spec.get("brands_max_items", 2)),
            colors_max_items=int(spec.get("colors_max_items", 4)),
            alt_text_max_chars=int(spec.get("alt_text_max_chars", 125)),
            headline_max_chars=int(spec.get("headline_max_chars", 80)),
            vocabulary=str(spec["vocabulary"]) if spec.get("vocabulary") else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"style {name!r} is malformed: {exc!r}") from None
    if (
        not 0 <= style.keywords_min <= style.keywords_max
        or style.caption_max_chars < 20
        or not 10 <= style.alt_text_max_chars <= ALT_TEXT_MAX_CHARS
        or not 10 <= style.headline_max_chars <= HEADLINE_MAX_CHARS
    ):
        raise ValueError(f"style {name!r} has inconsistent bounds")
    return style
