"""The VLM's answers: plain text cut to whole sentences, structured JSON bounded and cleaned."""

from __future__ import annotations

import pytest

from gateway.backends.openai_chat import ChatResult
from gateway.backends.vlm import caption_schema, parse_structured, parse_text, worst_case_tokens
from gateway.errors import BackendBadResponse
from gateway.styles import load_styles


def result(content: str | None, finish: str = "stop") -> ChatResult:
    return ChatResult(content, finish, {"prompt_tokens": 10})


def test_truncated_text_is_cut_to_the_last_sentence() -> None:
    caption = parse_text(result("A dog runs on a beach. The sky is clear. Waves break over the", "length"))
    assert caption.caption == "A dog runs on a beach. The sky is clear."
    assert caption.truncated is True


def test_truncated_text_without_a_sentence_end_is_kept() -> None:
    caption = parse_text(result("a dog runs along the wet sand towards", "length"))
    assert caption.caption == "a dog runs along the wet sand towards"
    assert caption.truncated is True


def test_preamble_and_control_characters_are_removed() -> None:
    caption = parse_text(result("This image shows a\x07 red\x00 car.\n"))
    assert caption.caption == "A red car."


@pytest.mark.parametrize("content", ["", "   ", None, "\x00\x01"])
def test_empty_text_is_a_502(content: str | None) -> None:
    with pytest.raises(BackendBadResponse) as info:
        parse_text(result(content))
    assert info.value.code == "vlm_empty_caption"


def test_structured_answer_with_raw_control_characters_parses() -> None:
    raw = '{"caption": "A shop\tfront\x01", "keywords": ["Shop", "shop", "street"], "visible_text": ["OPEN"],'
    raw += ' "brands": [{"name": "Acme", "evidence": "sign reads ACME"}], "colors": ["Red"]}'
    caption = parse_structured(result(raw))
    assert caption.caption == "A shop front"
    assert caption.keywords == ["shop", "street"]
    assert caption.visible_text == ["OPEN"]
    assert caption.brands[0].name == "Acme"
    assert caption.colors == ["red"]


def test_cut_off_json_is_an_error_not_a_partial() -> None:
    with pytest.raises(BackendBadResponse) as info:
        parse_structured(result('{"caption": "A shop', "length"))
    assert info.value.code == "vlm_output_truncated"


@pytest.mark.parametrize("raw", ["not json", "[1, 2]", '{"keywords": []}'])
def test_malformed_json_is_a_502(raw: str) -> None:
    with pytest.raises(BackendBadResponse) as info:
        parse_structured(result(raw))
    assert info.value.code == "vlm_bad_output"


@pytest.mark.parametrize("style", sorted(load_styles()))
def test_every_shipped_style_fits_the_token_budget(style: str) -> None:
    schema = caption_schema(load_styles()[style])
    # A 4,096-token context (the CPU stack's) holds ~1,300 visual tokens, ~400 of prompt and this answer;
    # the alt text and headline share the caption's one call and one budget.
    assert worst_case_tokens(schema) <= 1500
    assert schema["additionalProperties"] is False
