"""GET /v1/captions and /v1/captions/{id}: the catalogue searched over HTTP, errors in the envelope."""

from __future__ import annotations

import pytest

from tests.support.fake_openai import FakeOpenAI, Reply, structured
from tests.support.gateway import BUCKET, GatewayFactory

ITEM_KEYS = {"id", "s3_uri", "etag", "status", "created_at", "caption", "keywords", "source", "params"}


async def test_search_finds_captions_by_their_words_and_reads_one_back(
    gateway: GatewayFactory, catalogue_url: str, fake_vlm: FakeOpenAI
) -> None:
    fake_vlm.script.extend(
        [
            Reply(content=structured("A red umbrella on a wet street.", keywords=["umbrella"])),
            Reply(
                content=structured("A harbour at dawn.", keywords=["harbour", "boat"], visible_text=["FERRY"])
            ),
        ]
    )
    async with gateway(DATABASE_URL=catalogue_url) as client:
        for key in ("in-budget.jpg", "rotated.jpg"):
            assert (await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/{key}"})).status_code == 200
        umbrella = await client.get("/v1/captions", params={"q": "red umbrella"})
        ferry = await client.get("/v1/captions", params={"q": "ferry", "status": "pending", "source": "api"})
        nothing = await client.get("/v1/captions", params={"q": "bicycle"})
        newest = await client.get("/v1/captions", params={"limit": 1})
        second = await client.get("/v1/captions", params={"limit": 1, "cursor": newest.json()["next_cursor"]})
        one = await client.get(f"/v1/captions/{umbrella.json()['items'][0]['id']}")
    assert [i["s3_uri"] for i in umbrella.json()["items"]] == [f"s3://{BUCKET}/in-budget.jpg"]
    assert umbrella.json()["items"][0].keys() >= ITEM_KEYS
    assert umbrella.json()["next_cursor"] is None
    assert [i["caption"] for i in ferry.json()["items"]] == ["A harbour at dawn."]
    assert nothing.json() == {"items": [], "next_cursor": None}
    assert [i["s3_uri"] for i in newest.json()["items"] + second.json()["items"]] == [
        f"s3://{BUCKET}/rotated.jpg",
        f"s3://{BUCKET}/in-budget.jpg",
    ]
    assert second.json()["next_cursor"] is None
    assert one.json() == umbrella.json()["items"][0]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/v1/captions/99999", 404, "caption_not_found"),
        ("/v1/captions?limit=201", 422, "invalid_request"),
        ("/v1/captions?cursor=forged", 422, "invalid_cursor"),
        ("/v1/captions?q=%21%21", 422, "invalid_query"),
        ("/v1/captions?status=lost", 422, "invalid_request"),
        ("/v1/captions?s3_prefix=https://example.com/", 422, "invalid_s3_uri"),
    ],
)
async def test_bad_requests_get_the_envelope(
    gateway: GatewayFactory, path: str, status: int, code: str
) -> None:
    async with gateway() as client:
        response = await client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_the_catalogue_needs_a_key_when_api_keys_is_set(gateway: GatewayFactory) -> None:
    async with gateway(API_KEYS="k1") as client:
        refused = [await client.get(path) for path in ("/v1/captions", "/v1/captions/1")]
        allowed = await client.get("/v1/captions", headers={"Authorization": "Bearer k1"})
    assert [r.status_code for r in refused] == [401, 401]
    assert refused[0].json()["error"]["code"] == "invalid_api_key"
    assert allowed.status_code == 200


async def test_the_openapi_schema_declares_the_catalogue_routes_and_their_errors(
    gateway: GatewayFactory,
) -> None:
    # With API_KEYS set: the schema declares the key, and its 401, only when the gateway enforces it.
    async with gateway(API_KEYS="k-one") as client:
        schema = (await client.get("/openapi.json")).json()
    for path in ("/v1/captions", "/v1/captions/{caption_id}"):
        responses = schema["paths"][path]["get"]["responses"]
        assert {"200", "401", "404", "422", "503"} <= responses.keys()
        assert schema["paths"][path]["get"]["security"] == [{"HTTPBearer": []}]
        assert responses["503"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }
    assert "cached" in schema["components"]["schemas"]["CaptionOut"]["properties"]
    assert "refresh" in schema["components"]["schemas"]["CaptionIn"]["properties"]
