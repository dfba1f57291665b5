"""The grounding check: specifics the image does not support are refused, listed or not."""

from __future__ import annotations

from gateway.grounding import AddedTerm, ungrounded_terms

ORIGINAL = "A photographer holds a camera in a studio with softbox lighting."


def check(enhanced: str, added: list[AddedTerm], visible: list[str], brands: list[str]) -> list[str]:
    return ungrounded_terms(
        original=ORIGINAL, enhanced=enhanced, added_terms=added, visible_text=visible, brand_names=brands
    )


def test_invented_brand_and_model_are_refused() -> None:
    enhanced = "A photographer holds a Canon EOS R5 in a studio lit by Profoto A1X flash units."
    found = check(enhanced, [AddedTerm("Profoto A1X", "looks like one")], [], [])
    assert "Profoto A1X" in found
    assert {"Canon", "EOS", "R5"} <= set(found)  # not listed by the enhancer, caught anyway


def test_terms_backed_by_visible_text_or_brands_pass() -> None:
    enhanced = "A photographer holds a Canon EOS R5 camera in a studio with softbox lighting."
    added = [AddedTerm("Canon EOS R5", "text on the camera body")]
    assert check(enhanced, added, ["Canon EOS R5"], ["Canon"]) == []


def test_plain_rewording_passes() -> None:
    assert check("In a studio, a photographer holds a camera under softbox light.", [], [], []) == []


def test_german_nouns_are_not_proper_nouns() -> None:
    found = ungrounded_terms(
        original="Ein Fotograf im Studio.",
        enhanced="Ein Fotograf hält eine Kamera im Studio.",
        added_terms=[],
        visible_text=[],
        brand_names=[],
        language="de",
    )
    assert found == []


def test_substrings_do_not_ground_a_brand() -> None:
    found = check("A pineapple beside an Apple laptop.", [AddedTerm("Apple", "a logo")], ["CANONICAL"], [])
    assert "Apple" in found
    assert "Canon" in check("A Canon camera.", [], ["CANONICAL"], [])


def test_brand_at_the_start_of_a_sentence_is_checked_when_it_reads_as_one() -> None:
    found = check("Nikon camera on a desk. A second Nikon beside it. PlayStation box behind.", [], [], [])
    assert found == ["Nikon", "PlayStation"]


def test_an_ordinary_sentence_opener_is_not_a_brand() -> None:
    original = "A dog runs on a beach at sunset."
    english = "Golden light bathes a dog running along the beach. Waves roll in behind it."
    assert (
        ungrounded_terms(original=original, enhanced=english, added_terms=[], visible_text=[], brand_names=[])
        == []
    )
    french = "Un chien court sur une plage. Des vagues roulent derrière lui."
    assert (
        ungrounded_terms(
            original=original, enhanced=french, added_terms=[], visible_text=[], brand_names=[], language="fr"
        )
        == []
    )
