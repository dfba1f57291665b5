"""Structured captions and the grounded enhancer, through the API with fake backends."""

from __future__ import annotations

import json

import pytest

from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import BUCKET, GatewayFactory, json_enhancement, sent_texts

URI = f"s3://{BUCKET}/in-budget.jpg"
STUDIO = "A photographer holds a camera in a studio with softbox lighting."


def studio_vlm(fake_vlm: FakeOpenAI, **fields: object) -> None:
    fake_vlm.reset(Reply(content=structured(STUDIO, **fields)))


async def test_structured_keys_and_schema_request(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    studio_vlm(
        fake_vlm,
        keywords=["Studio", "camera", "studio"],
        visible_text=["CANON"],
        alt_text="A photographer with a camera in a studio.",
        headline="Studio shoot",
    )
    async with gateway() as client:
        body = (await client.post("/caption", json={"s3_uri": URI})).json()
    assert body["keywords"] == ["studio", "camera"]
    assert body["alt_text"] == "A photographer with a camera in a studio."
    assert body["headline"] == "Studio shoot"
    assert list(body)[: list(body).index("usage") + 1] == [  # the old keys first, in their old order
        *("caption", "enhanced", "s3_uri", "truncated", "style", "keywords", "visible_text", "brands"),
        *("colors", "models", "usage"),
    ]
    assert body["visible_text"] == ["CANON"]
    assert body["brands"] == []
    assert body["colors"] == ["red"]
    sent = fake_vlm.requests[0]
    schema = sent["response_format"]["json_schema"]["schema"]
    assert sent["response_format"]["type"] == "json_schema"
    assert set(schema["properties"]) == {
        *("caption", "keywords", "visible_text", "brands", "colors", "headline", "alt_text"),
    }
    assert schema["properties"]["alt_text"]["maxLength"] == 125  # IPTC's recommendation (at most 250)
    assert schema["properties"]["headline"]["maxLength"] == 80
    assert sent["max_tokens"] > 1100  # above the schema's worst case


async def test_invented_brand_is_refused_and_vlm_caption_kept(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> None:
    studio_vlm(fake_vlm)
    invented = "A photographer holds a camera in a studio lit by Profoto A1X flash units."
    fake_enhancer.reset(
        Reply(
            content=json_enhancement(invented, added_terms=[{"term": "Profoto A1X", "evidence": "typical"}])
        )
    )
    async with gateway() as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})).json()
    assert body["enhanced"] is False
    assert body["caption"] == STUDIO
    assert "Profoto A1X" in body["enhancement_error"]
    evidence = json.loads(
        fake_enhancer.requests[0]["messages"][-1]["content"].split("Evidence: ")[1].split("\n")[0]
    )
    assert evidence == {"visible_text": [], "brands": []}


async def test_unlisted_model_number_is_refused(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> None:
    studio_vlm(fake_vlm)
    fake_enhancer.reset(Reply(content=json_enhancement("A photographer holds an EOS R5 camera in a studio.")))
    async with gateway() as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})).json()
    assert body["enhanced"] is False
    assert "R5" in body["enhancement_error"]


async def test_grounded_terms_are_accepted(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> None:
    studio_vlm(
        fake_vlm,
        visible_text=["Canon EOS R5"],
        brands=[{"name": "Canon", "evidence": "logo on the camera"}],
    )
    enhanced = "A photographer holds a Canon EOS R5 camera in a studio with softbox lighting."
    terms = [{"term": "Canon EOS R5", "evidence": "visible text on the body"}]
    fake_enhancer.reset(Reply(content=json_enhancement(enhanced, added_terms=terms)))
    async with gateway() as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})).json()
    assert body["enhanced"] is True
    assert body["caption"] == enhanced
    assert body["original_caption"] == STUDIO
    assert body["added_terms"] == terms
    assert body["brands"] == [{"name": "Canon", "evidence": "logo on the camera"}]


async def test_grounding_off_accepts_free_rewrites(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI
) -> None:
    studio_vlm(fake_vlm)
    fake_enhancer.reset(Reply(content="A photographer with a Canon EOS R5 under Profoto A1X flash units."))
    async with gateway(GROUNDING="off") as client:
        body = (await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})).json()
    assert body["enhanced"] is True
    assert "Profoto A1X" in body["caption"]
    assert "response_format" not in fake_enhancer.requests[0]


@pytest.mark.parametrize("raw", ['{"caption": "A photog', "not json at all", '{"added_terms": []}'])
async def test_malformed_enhancer_json_falls_back(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI, raw: str
) -> None:
    studio_vlm(fake_vlm)
    fake_enhancer.reset(Reply(content=raw))
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI, "use_gpt_oss": True})
    assert response.status_code == 200
    assert response.json()["caption"] == STUDIO
    assert response.json()["enhancement_error"].startswith("enhancer_bad_output")


@pytest.mark.parametrize(
    ("reply", "code"),
    [
        (Reply(content='{"caption": "A shop front with', finish_reason="length"), "vlm_output_truncated"),
        (Reply(content="A plain sentence, not JSON."), "vlm_bad_output"),
        (Reply(content='{"caption": ""}'), "vlm_bad_output"),
    ],
)
async def test_malformed_vlm_json_is_a_clear_502(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, reply: Reply, code: str
) -> None:
    fake_vlm.reset(reply)
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": URI})
    assert response.status_code == 502
    assert response.json()["error"]["code"] in {code, "vlm_empty_caption"}


async def test_style_prompt_and_language_reach_the_vlm(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    request = {
        "s3_uri": URI,
        "detailed": True,
        "style": "stock",
        "language": "de",
        "prompt": "Mention the mood.",
    }
    async with gateway() as client:
        body = (await client.post("/caption", json=request)).json()
    text = "\n".join(sent_texts(fake_vlm, 0))
    schema = fake_vlm.requests[0]["response_format"]["json_schema"]["schema"]
    assert body["style"] == "stock"
    assert "stock-photo description" in text
    assert "German" in text
    assert "Mention the mood." in text
    assert schema["properties"]["keywords"]["minItems"] == 25


async def test_what_a_style_always_says_precedes_the_image(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    """vLLM's prefix cache reuses only an identical prefix: the style's text must come before the image,
    the request's own words after it."""
    requests = [
        {"s3_uri": URI, "style": "stock", "language": "de"},
        {
            "s3_uri": f"s3://{BUCKET}/rotated.jpg",
            "style": "stock",
            "language": "de",
            "prompt": "Mention the mood.",
        },
    ]
    async with gateway() as client:
        for request in requests:
            assert (await client.post("/caption", json=request)).status_code == 200
    first, second = ([m["content"] for m in r["messages"]] for r in fake_vlm.requests)
    kinds = [part["type"] for part in second[1]]
    assert kinds == ["text", "image_url", "text"]
    assert second[1][2]["text"] == "Additional instructions: Mention the mood."
    assert [part["type"] for part in first[1]] == ["text", "image_url"]
    assert first[0] == second[0] and first[1][0] == second[1][0]  # system prompt and style text: identical
    assert first[1][1] != second[1][1]  # the images differ
    assert "stock-photo description" in first[1][0]["text"]
    assert "German" in first[1][0]["text"]


async def test_plain_text_mode_keeps_the_original_behaviour(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.reset(
        Reply(content="A dog runs on a beach. The sky is clear. Waves break over", finish_reason="length")
    )
    async with gateway(VLM_STRUCTURED=False) as client:
        body = (await client.post("/caption", json={"s3_uri": URI})).json()
    assert body["caption"] == "A dog runs on a beach. The sky is clear."
    assert body["truncated"] is True
    assert "keywords" not in body
    assert "response_format" not in fake_vlm.requests[0]


async def test_styles_endpoint_lists_styles_and_languages(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        body = (await client.get("/styles")).json()
    assert {"detailed", "short", "alt_text", "stock", "dataset"} <= set(body["styles"])
    assert len(body["languages"]) >= 20
