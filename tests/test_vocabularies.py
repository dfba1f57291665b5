"""Vocabulary files: plain text and CSV, hierarchy, labels, options, and the size limit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.backends.openai_chat import ChatResult
from gateway.backends.vlm import caption_schema, parse_structured, worst_case_tokens
from gateway.styles import load_styles
from gateway.vocabularies import VocabularyError, load_vocabularies, unique_labels

PLACES = """# places we shoot
Places|Europe|France|Paris
Places|North America|USA|Texas|Paris
Places|Europe|Italy|Rome
Places|Europe|France|Paris
Dog
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, "utf-8")
    return path


def test_plain_text_terms_hierarchy_and_unique_labels(tmp_path: Path) -> None:
    write(tmp_path, "places.txt", PLACES)
    vocabulary = load_vocabularies(tmp_path, 100)["places"]
    assert vocabulary.terms == (  # comments and repeats dropped, file order kept
        "Places|Europe|France|Paris",
        "Places|North America|USA|Texas|Paris",
        "Places|Europe|Italy|Rome",
        "Dog",
    )
    assert vocabulary.labels == ("France|Paris", "Texas|Paris", "Rome", "Dog")  # the leaf, or a unique tail
    assert vocabulary.term_for("Texas|Paris") == "Places|North America|USA|Texas|Paris"
    assert vocabulary.hierarchical is True
    assert vocabulary.key.startswith("places@") and len(vocabulary.sha256) == 64


def test_csv_rows_are_hierarchy_levels(tmp_path: Path) -> None:
    write(tmp_path, "products.csv", "Shoes,Running,Trail\nShoes,Running,Road\n# note\n\nBags\n")
    (vocabulary,) = load_vocabularies(tmp_path, 100).values()
    assert vocabulary.name == "products"
    assert vocabulary.terms == ("Shoes|Running|Trail", "Shoes|Running|Road", "Bags")
    assert vocabulary.labels == ("Trail", "Road", "Bags")


def test_a_leaf_that_is_also_a_whole_term_gets_a_longer_label() -> None:
    assert unique_labels(["Paris", "Places|Europe|Paris"]) == ["Paris", "Europe|Paris"]


def test_options_file_and_content_hash(tmp_path: Path) -> None:
    write(tmp_path, "stock.txt", "beach\nsunset\n")
    plain = load_vocabularies(tmp_path, 100)["stock"]
    write(tmp_path, "stock.json", json.dumps({"allow_free": True, "free_max": 3}))
    free = load_vocabularies(tmp_path, 100)["stock"]
    assert (plain.allow_free, free.allow_free, free.free_max) == (False, True, 3)
    assert plain.sha256 != free.sha256  # the options change the captions, so they change the key


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"big.txt": "\n".join(f"term {i}" for i in range(11))}, "11 terms, over the limit of 10"),
        ({"empty.txt": "# nothing\n"}, "holds no terms"),
        ({"a.txt": "x\n", "a.csv": "y\n"}, "two files define the vocabulary 'a'"),
        ({"bad.txt": "Places||Paris\n"}, "empty hierarchy level"),
        ({"o.txt": "x\n", "o.json": '{"allow_fre": true}'}, "unknown options"),
        ({"long.txt": "x" * 81 + "\n"}, "over 80 characters"),
    ],
)
def test_a_bad_vocabulary_refuses_to_load(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        write(tmp_path, name, text)
    with pytest.raises(VocabularyError, match=message):
        load_vocabularies(tmp_path, 10)


def test_schema_enum_and_restored_hierarchy(tmp_path: Path) -> None:
    write(tmp_path, "places.txt", PLACES)
    write(tmp_path, "places.json", '{"allow_free": true, "free_max": 4}')
    vocabulary = load_vocabularies(tmp_path, 100)["places"]
    style = load_styles()["detailed"]
    schema = caption_schema(style, vocabulary)
    keywords = schema["properties"]["keywords"]
    assert keywords["items"] == {"type": "string", "enum": list(vocabulary.labels)}
    assert (keywords["minItems"], keywords["maxItems"]) == (4, 4)  # the style's 5-12, within 4 terms
    assert schema["properties"]["keywords_free"]["maxItems"] == 4
    assert worst_case_tokens(schema) < worst_case_tokens(caption_schema(style))  # labels are short here
    answer = {
        "caption": "A dog in Paris.",
        "keywords": ["France|Paris", "Dog", "France|Paris", "Eiffel Tower"],  # a repeat, an unlisted term
        "keywords_free": ["Eiffel tower", "dog", "spring"],
    }
    parsed = parse_structured(ChatResult(json.dumps(answer), "stop", {}), vocabulary)
    assert parsed.keywords == ["Places|Europe|France|Paris", "Dog"]
    assert parsed.keywords_free == ["eiffel tower", "spring"]  # lower-case, not repeating a listed term
