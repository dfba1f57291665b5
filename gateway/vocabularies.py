"""Controlled vocabularies: a library's own keyword lists, loaded once from ``VOCABULARIES_DIR``.

A vocabulary is a plain-text file (one term per line) or a CSV file (one term per row, one hierarchy level
per cell), named by its file stem; ``Places|Europe|Paris`` (or the row ``Places,Europe,Paris``) is a
hierarchical term. An optional ``NAME.json`` beside it holds options (``allow_free``, ``free_max``).

The VLM is not asked to "pick from this list" in prose: the JSON schema's keyword items become an ``enum`` of
the vocabulary's labels, so vLLM's grammar cannot emit anything else. A label is a term's leaf (``Paris``),
or, where two terms share a leaf, the shortest unique tail of its path (``Europe|Paris``, ``Texas|Paris``);
``term_for`` maps a label back to the full term. The grammar is compiled on the first request that uses it
(33 s for 50,000 terms, measured by ``benchmarks/bench_vocabulary.py``), hence the size limit and the
warm-up at start-up.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from gateway.styles import Style

SEPARATOR = "|"
TERM_MAX_CHARS = 80  # per label: it bounds the schema's worst case, hence the VLM's token budget
FREE_MAX_DEFAULT = 5
FREE_MAX_LIMIT = 20
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FORMATS = (".txt", ".csv")


class VocabularyError(ValueError):
    """A vocabulary that cannot be loaded: the gateway refuses to start, naming the file and the reason."""


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: loaded once, used as a cache key
class Vocabulary:
    name: str
    terms: tuple[str, ...]  # as written, hierarchy joined by "|"
    allow_free: bool = False
    free_max: int = FREE_MAX_DEFAULT
    labels: tuple[str, ...] = field(init=False)
    sha256: str = field(init=False)
    _by_label: Mapping[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        labels = unique_labels(self.terms)
        set_ = object.__setattr__  # frozen: derived fields are computed once, here
        set_(self, "labels", tuple(labels))
        set_(self, "_by_label", MappingProxyType(dict(zip(labels, self.terms, strict=True))))
        options = json.dumps({"allow_free": self.allow_free, "free_max": self.free_max})
        digest = hashlib.sha256("\n".join((*self.terms, options)).encode("utf-8")).hexdigest()
        set_(self, "sha256", digest)

    @property
    def hierarchical(self) -> bool:
        return any(SEPARATOR in term for term in self.terms)

    @property
    def key(self) -> str:
        """Name and content hash: what a cache of captions keys on (an edited list is another vocabulary)."""
        return f"{self.name}@{self.sha256[:16]}"

    def term_for(self, label: str) -> str | None:
        return self._by_label.get(label)


def unique_labels(terms: Iterable[str]) -> list[str]:
    """Each term's shortest path tail that no other term shares (usually its leaf)."""
    paths = [term.split(SEPARATOR) for term in terms]
    depth = dict.fromkeys(range(len(paths)), 1)
    while True:
        seen: dict[str, list[int]] = {}
        for index, path in enumerate(paths):
            seen.setdefault(SEPARATOR.join(path[-depth[index] :]), []).append(index)
        clashes = [group for group in seen.values() if len(group) > 1]
        if not clashes:
            return [SEPARATOR.join(path[-depth[i] :]) for i, path in enumerate(paths)]
        for group in clashes:
            for index in group:
                depth[index] += 1  # terms are unique, so lengthening the tails ends every clash


def parse_terms(text: str, suffix: str) -> list[str]:
    """Terms in file order, cleaned and deduplicated; ``#`` starts a comment line in both formats."""
    if suffix == ".csv":
        rows = csv.reader(io.StringIO(text))
        raw = [SEPARATOR.join(c.strip() for c in row if c.strip()) for row in rows if row]
    else:
        raw = text.splitlines()
    terms = []
    for line in raw:
        levels = [" ".join(level.split()) for level in line.split(SEPARATOR)]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not all(levels):
            raise VocabularyError(f"empty hierarchy level in {line!r}")
        terms.append(SEPARATOR.join(levels))
    return list(dict.fromkeys(terms))


def load_vocabulary(path: Path, max_terms: int) -> Vocabulary:
    name = path.stem
    if not _NAME.fullmatch(name):
        raise VocabularyError(f"{path}: a vocabulary name is letters, digits, '.', '_' or '-'")
    try:
        terms = parse_terms(path.read_text("utf-8-sig"), path.suffix.lower())
        options = _options(path.with_suffix(".json"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VocabularyError(f"{path}: cannot be read: {exc}") from None
    except VocabularyError as exc:
        raise VocabularyError(f"{path}: {exc}") from None
    if not terms:
        raise VocabularyError(f"{path}: holds no terms")
    if len(terms) > max_terms:
        raise VocabularyError(
            f"{path}: {len(terms)} terms, over the limit of {max_terms} (VOCABULARY_MAX_TERMS): the VLM "
            "server compiles a vocabulary's grammar on its first use, which grows steeply with its size "
            "(README, Vocabularies)"
        )
    vocabulary = Vocabulary(name, tuple(terms), **options)  # type: ignore[arg-type]
    longest = max(vocabulary.labels, key=len)
    if len(longest) > TERM_MAX_CHARS:
        raise VocabularyError(f"{path}: the term {longest[:40]!r}... is over {TERM_MAX_CHARS} characters")
    return vocabulary


def _options(path: Path) -> dict[str, object]:
    if not path.exists():
        return {}
    try:
        raw = json.loads(path.read_text("utf-8"))
    except ValueError as exc:
        raise VocabularyError(f"{path.name} is not valid JSON: {exc}") from None
    unknown = set(raw) - {"allow_free", "free_max", "description"} if isinstance(raw, dict) else {"?"}
    if unknown:
        raise VocabularyError(f"{path.name}: unknown options {sorted(unknown)}; known: allow_free, free_max")
    allow_free, free_max = raw.get("allow_free", False), raw.get("free_max", FREE_MAX_DEFAULT)
    bounded = isinstance(free_max, int) and 0 < free_max <= FREE_MAX_LIMIT
    if not isinstance(allow_free, bool) or not bounded:
        raise VocabularyError(f"{path.name}: allow_free is true/false, free_max 1-{FREE_MAX_LIMIT}")
    return {"allow_free": allow_free, "free_max": free_max}


def load_vocabularies(directory: Path | None, max_terms: int) -> MappingProxyType[str, Vocabulary]:
    """Every vocabulary in the directory; any bad one stops the start-up (not a 500 on first use)."""
    if directory is None:
        return MappingProxyType({})
    if not directory.is_dir():
        raise VocabularyError(f"VOCABULARIES_DIR {directory} is not a directory")
    found: dict[str, Vocabulary] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() not in _FORMATS or not path.is_file():
            continue
        vocabulary = load_vocabulary(path, max_terms)
        if vocabulary.name in found:
            raise VocabularyError(f"{directory}: two files define the vocabulary {vocabulary.name!r}")
        found[vocabulary.name] = vocabulary
    return MappingProxyType(found)


def check_style_vocabularies(styles: Mapping[str, Style], vocabularies: Mapping[str, Vocabulary]) -> None:
    """A style naming a vocabulary that is not there fails the start-up, not its first request."""
    for style in styles.values():
        if style.vocabulary is not None and style.vocabulary not in vocabularies:
            raise VocabularyError(
                f"style {style.name!r} names the vocabulary {style.vocabulary!r}, which VOCABULARIES_DIR "
                f"does not hold (known: {', '.join(sorted(vocabularies)) or 'none'})"
            )
