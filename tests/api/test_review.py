"""The review API without a browser: PATCH /v1/captions/{id}, POST /v1/captions/review, the write-back an
approval makes (read back from S3 and by exiftool), its failure and retry, errors and keys."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.batch import BatchBucket
from tests.support.exiftool import exiftool_x
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import GatewayFactory
from tests.support.review import caption_scenes, catalogue_ids
from tests.support.scenes import SCENES

HARBOUR, CAFE, UMBRELLA = SCENES[0], SCENES[1], SCENES[2]
TOO_MANY = list(range(1, 202))  # a page is at most 200


@pytest.fixture
def bucket(scene_bucket: BatchBucket) -> BatchBucket:
    return scene_bucket


async def catalogued(client: httpx.AsyncClient, fake_vlm: FakeOpenAI, bucket: BatchBucket) -> list[int]:
    """The three scenes captioned; their catalogue ids in scene order."""
    await caption_scenes(client, fake_vlm, bucket.name, [HARBOUR, CAFE, UMBRELLA])
    ids = await catalogue_ids(client)
    return [ids[f"s3://{bucket.name}/{scene.key}"] for scene in (HARBOUR, CAFE, UMBRELLA)]


async def test_an_approved_edit_is_written_back_and_a_rejection_writes_nothing(
    gateway: GatewayFactory, catalogue_url: str, fake_vlm: FakeOpenAI, bucket: BatchBucket, tmp_path: Path
) -> None:
    edit = {
        "caption": "A ketch moored in Honfleur harbour at dawn.",
        "keywords": ["ketch", "Honfleur"],
        "alt_text": "Sailing boat on a calm sea at sunrise.",
    }
    async with gateway(DATABASE_URL=catalogue_url, REVIEW_WRITE_BACK="sidecar,xmp") as client:
        harbour, cafe, _ = await catalogued(client, fake_vlm, bucket)
        edited = await client.patch(f"/v1/captions/{harbour}", json=edit)
        assert edited.status_code == 200, edited.text
        assert edited.json()["status"] == "edited"
        assert edited.json()["caption"] == HARBOUR.caption  # the model's text, kept beside the edit
        assert edited.json()["edited"] == edit
        assert edited.json().get("write_back") is None
        assert bucket.keys(HARBOUR.key + ".") == []  # an edit alone writes nothing

        approved = (await client.patch(f"/v1/captions/{harbour}", json={"status": "approved"})).json()
        rejected = (await client.patch(f"/v1/captions/{cafe}", json={"status": "rejected"})).json()
        found = (await client.get("/v1/captions", params={"q": "honfleur"})).json()["items"]

    assert approved["status"] == "approved"
    assert approved["write_back"]["status"] == "done"
    assert approved["write_back"]["modes"] == ["sidecar", "xmp"]
    sidecar = json.loads(bucket.get(HARBOUR.key + ".json"))
    assert (sidecar["caption"], sidecar["keywords"]) == (edit["caption"], edit["keywords"])
    xmp = tmp_path / "harbour.xmp"
    xmp.write_bytes(bucket.get(HARBOUR.key + ".xmp"))
    read = exiftool_x(xmp)
    assert read["XMP-dc:Description"] == edit["caption"]
    assert read["XMP-dc:Subject"] == edit["keywords"]
    assert (
        read["XMP-iptcCore:AltTextAccessibility"] == edit["alt_text"]
    )  # an edited alt text, in IPTC's field
    assert rejected["status"] == "rejected" and rejected.get("write_back") is None
    assert bucket.keys(CAFE.key + ".") == []
    assert [item["id"] for item in found] == [harbour]


async def test_a_page_is_decided_at_once_or_not_at_all(
    gateway: GatewayFactory, catalogue_url: str, fake_vlm: FakeOpenAI, bucket: BatchBucket
) -> None:
    async with gateway(DATABASE_URL=catalogue_url, REVIEW_WRITE_BACK="sidecar") as client:
        ids = await catalogued(client, fake_vlm, bucket)
        unknown = await client.post(
            "/v1/captions/review", json={"ids": [ids[0], 99999], "status": "approved"}
        )
        still = (await client.get("/v1/captions", params={"status": "pending"})).json()["items"]
        decided = await client.post("/v1/captions/review", json={"ids": ids[1:], "status": "approved"})
        pending = (await client.get("/v1/captions", params={"status": "pending"})).json()["items"]

    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "caption_not_found"
    assert "99999" in unknown.json()["error"]["message"]
    assert len(still) == 3  # nothing was decided
    assert bucket.keys(HARBOUR.key + ".") == []
    assert decided.status_code == 200
    assert [(e["id"], e["status"], e["write_back"]["status"]) for e in decided.json()["items"]] == [
        (ids[1], "approved", "done"),
        (ids[2], "approved", "done"),
    ]
    assert json.loads(bucket.get(UMBRELLA.key + ".json"))["caption"] == UMBRELLA.caption
    assert [item["id"] for item in pending] == [ids[0]]


async def test_a_failed_write_back_shows_on_the_entry_and_can_be_retried(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, bucket: BatchBucket
) -> None:
    own_tags = [{"Key": f"owner-{i}", "Value": "x"} for i in range(10)]  # S3's limit: no room for ours
    bucket.client.put_object_tagging(Bucket=bucket.name, Key=HARBOUR.key, Tagging={"TagSet": own_tags})
    async with gateway(REVIEW_WRITE_BACK="tags") as client:
        harbour, cafe, _ = await catalogued(client, fake_vlm, bucket)
        failed = (await client.patch(f"/v1/captions/{harbour}", json={"status": "approved"})).json()
        kept = (await client.get(f"/v1/captions/{harbour}")).json()
        unapproved = await client.post(f"/v1/captions/{cafe}/write-back")
        bucket.client.delete_object_tagging(Bucket=bucket.name, Key=HARBOUR.key)
        retried = await client.post(f"/v1/captions/{harbour}/write-back")

    assert failed["status"] == "approved"  # the decision stands; the write-back is what failed
    assert failed["write_back"]["status"] == "failed"
    assert failed["write_back"]["error"].startswith("s3_tags_full:")
    assert kept["write_back"] == failed["write_back"]
    assert unapproved.status_code == 409
    assert unapproved.json()["error"]["code"] == "caption_not_approved"
    assert retried.status_code == 200
    assert retried.json()["write_back"]["status"] == "done"
    tags = bucket.client.get_object_tagging(Bucket=bucket.name, Key=HARBOUR.key)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags}["florence:caption"].startswith("A sailing boat rests")


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("PATCH", "/v1/captions/99999", {"status": "approved"}, 404, "caption_not_found"),
        ("PATCH", "/v1/captions/{id}", {}, 422, "invalid_request"),
        ("PATCH", "/v1/captions/{id}", {"status": "edited"}, 422, "invalid_request"),
        ("PATCH", "/v1/captions/{id}", {"caption": "   "}, 422, "invalid_request"),
        ("PATCH", "/v1/captions/{id}", {"alt_text": "x" * 251}, 422, "invalid_request"),
        ("PATCH", "/v1/captions/{id}", {"captoin": "typo"}, 422, "invalid_request"),
        ("PATCH", "/v1/captions/{id}", {"keywords": ["ok", ""]}, 422, "invalid_request"),
        ("POST", "/v1/captions/review", {"ids": [], "status": "approved"}, 422, "invalid_request"),
        ("POST", "/v1/captions/review", {"ids": TOO_MANY, "status": "rejected"}, 422, "invalid_request"),
        ("POST", "/v1/captions/review", {"ids": [1], "status": "maybe"}, 422, "invalid_request"),
        ("POST", "/v1/captions/99999/write-back", None, 404, "caption_not_found"),
        ("POST", "/v1/captions/{id}/write-back", None, 409, "caption_not_approved"),
    ],
)  # fmt: skip
async def test_bad_review_requests_get_the_envelope(
    gateway: GatewayFactory,
    fake_vlm: FakeOpenAI,
    bucket: BatchBucket,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    code: str,
) -> None:
    async with gateway() as client:
        await caption_scenes(client, fake_vlm, bucket.name, [HARBOUR])
        (caption_id,) = (await catalogue_ids(client)).values()
        response = await client.request(method, path.format(id=caption_id), json=body)
        entry = (await client.get(f"/v1/captions/{caption_id}")).json()
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert entry["status"] == "pending"


async def test_a_retry_with_nothing_to_write_says_so(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, bucket: BatchBucket
) -> None:
    async with gateway() as client:  # no REVIEW_WRITE_BACK, and nothing was written for the image
        await caption_scenes(client, fake_vlm, bucket.name, [HARBOUR])
        (caption_id,) = (await catalogue_ids(client)).values()
        approved = (await client.patch(f"/v1/captions/{caption_id}", json={"status": "approved"})).json()
        retry = await client.post(f"/v1/captions/{caption_id}/write-back")
    assert approved["status"] == "approved" and approved.get("write_back") is None
    assert retry.status_code == 409
    assert retry.json()["error"]["code"] == "nothing_to_write_back"


async def test_review_needs_a_key_when_api_keys_is_set(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, bucket: BatchBucket
) -> None:
    key = {"Authorization": "Bearer k1"}
    async with gateway(API_KEYS="k1") as client:
        await caption_scenes(client, fake_vlm, bucket.name, [HARBOUR], headers=key)
        (caption_id,) = (await catalogue_ids(client, headers=key)).values()
        calls = [
            ("PATCH", f"/v1/captions/{caption_id}", {"status": "approved"}),
            ("POST", "/v1/captions/review", {"ids": [caption_id], "status": "approved"}),
            ("POST", f"/v1/captions/{caption_id}/write-back", None),
        ]
        refused = [await client.request(m, p, json=b) for m, p, b in calls]
        wrong = await client.request(*calls[0][:2], json=calls[0][2], headers={"Authorization": "Bearer k2"})
        entry = (await client.get(f"/v1/captions/{caption_id}", headers=key)).json()
        allowed = await client.request(*calls[0][:2], json=calls[0][2], headers=key)
    assert [r.status_code for r in [*refused, wrong]] == [401, 401, 401, 401]
    assert {r.json()["error"]["code"] for r in refused} == {"invalid_api_key"}
    assert entry["status"] == "pending"  # nothing refused reached the catalogue
    assert allowed.status_code == 200 and allowed.json()["status"] == "approved"


async def test_the_openapi_schema_declares_the_review_routes(gateway: GatewayFactory) -> None:
    async with gateway(API_KEYS="k-one") as client:  # 401 is declared only where a key is enforced
        schema = (await client.get("/openapi.json")).json()
    operations = {
        ("/v1/captions/{caption_id}", "patch"),
        ("/v1/captions/review", "post"),
        ("/v1/captions/{caption_id}/write-back", "post"),
    }
    for path, method in operations:
        responses = schema["paths"][path][method]["responses"]
        assert {"200", "401", "404", "409", "422", "503"} <= responses.keys(), path
        assert responses["409"]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorEnvelope"
        }
    assert "409" not in schema["paths"]["/caption"]["post"]["responses"]
    entry = schema["components"]["schemas"]["CatalogueEntry"]["properties"]
    assert {"edited", "write_back", "status"} <= entry.keys()
    assert "/review" not in schema["paths"]  # the page is HTML, not an API
