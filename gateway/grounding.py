"""Checks that an enhanced caption adds nothing the image does not show.

A text-only enhancer never saw the image, so every specific it adds (a brand, a model number, a proper
noun) must be traceable to the VLM's evidence: text legible in the image or a brand it recognised. A term
the enhancer listed and a specific it slipped in without listing are checked alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Languages where a capital letter inside a sentence marks a proper noun. German capitalises every noun and
# many scripts have no case, so there only model-number-like tokens are checked.
_CASED_PROPER_NOUNS = frozenset({"en", "fr", "es", "pt", "it", "nl", "sv", "pl", "tr", "id", "vi", "sw"})
# Punctuation stripped from a token's ends, typographic quotes included.
_TOKEN_EDGES = "\"'.,;:!?()[]{}\u00ab\u00bb\u201c\u201d\u2018\u2019"  # noqa: S105 - not a password
_COMMON_OPENERS = frozenset(
    (
        "a an the this that these those there here it its in on at by of for from with within without "
        "into onto under over above below behind beside between near inside outside along across through "
        "during after before while when where as and but or one two three four five six seven eight nine "
        "ten several many some each every both all few most no close-up closeup overhead aerial view "
        "portrait photo image picture shot scene detail"
    ).split()
)
_SENTENCE_START = re.compile(r"(?:^|[.!?]\s+)$")


@dataclass(frozen=True)
class AddedTerm:
    term: str
    evidence: str


def _norm(text: str) -> str:
    return " ".join(text.casefold().split())


def _grounded(term: str, sources: Iterable[str]) -> bool:
    # Whole words only: "Apple" is not supported by "pineapple", nor "Canon" by "CANONICAL".
    needle = _norm(term)
    if not needle:
        return False
    pattern = re.compile(rf"(?<!\w){re.escape(needle)}(?!\w)")
    return any(pattern.search(_norm(source)) for source in sources)


def _tokens(caption: str) -> list[tuple[str, bool]]:
    """Each word with its edge punctuation stripped, and whether it opens a sentence."""
    found = []
    for match in re.finditer(r"\S+", caption):
        token = match.group().strip(_TOKEN_EDGES)
        if token:
            found.append((token, bool(_SENTENCE_START.search(caption[: match.start()]))))
    return found


def specific_tokens(caption: str, language: str) -> list[str]:
    """Proper-noun-like and model-number-like tokens: 'Profoto', 'A1X', 'EOS', 'R5', '24-70mm'."""
    tokens = _tokens(caption)
    cased = language in _CASED_PROPER_NOUNS
    # Capitalised inside a sentence: a proper noun. At a sentence's start a capital proves nothing
    # ("Golden light bathes...", "Des vagues..."), so there a word counts only when it is capitalised
    # inside a sentence elsewhere too, or has an inner capital (iPhone, PlayStation).
    proper = {t for t, start in tokens if cased and not start and t[0].isupper() and len(t) > 1}
    found = []
    for token, start in tokens:
        has_digit = any(c.isdigit() for c in token)
        has_alpha = any(c.isalpha() for c in token)
        model_number = has_digit and has_alpha
        acronym = has_alpha and len(token) > 1 and token.isupper()
        inner_capital = cased and any(c.isupper() for c in token[1:])
        proper_noun = token in proper and (not start or token.casefold() not in _COMMON_OPENERS)
        if model_number or acronym or proper_noun or (start and inner_capital):
            found.append(token)
    return found


def ungrounded_terms(
    *,
    original: str,
    enhanced: str,
    added_terms: list[AddedTerm],
    visible_text: list[str],
    brand_names: list[str],
    language: str = "en",
) -> list[str]:
    """The specifics of ``enhanced`` that neither the original caption nor the evidence supports."""
    # What the VLM said or saw: a term already in its caption is not an addition.
    sources = [original, *visible_text, *brand_names]
    unsupported = [t.term for t in added_terms if not _grounded(t.term, sources)]
    for token in specific_tokens(enhanced, language):
        if not _grounded(token, sources) and token not in unsupported:
            unsupported.append(token)
    return unsupported
