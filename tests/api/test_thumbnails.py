"""GET /v1/thumbnails: a small upright JPEG, cacheable (ETag, Cache-Control), revalidated with a 304, refused
like a caption's image when it is too big, not an image, missing, or asked without a key."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.support import images
from tests.support.gateway import BUCKET, GatewayFactory
from tests.support.s3_server import S3Server


async def test_a_preview_is_small_upright_and_revalidated(
    gateway: GatewayFactory, s3_server: S3Server
) -> None:
    async with gateway() as client:
        big = await client.get("/v1/thumbnails", params={"s3_uri": f"s3://{BUCKET}/photo-24mp.jpg"})
        rotated = await client.get(
            "/v1/thumbnails", params={"s3_uri": f"s3://{BUCKET}/rotated.jpg", "size": 100}
        )
        etag = big.headers["etag"]
        again = await client.get(
            "/v1/thumbnails",
            params={"s3_uri": f"s3://{BUCKET}/photo-24mp.jpg"},
            headers={"If-None-Match": etag},
        )
        other_size = await client.get(
            "/v1/thumbnails",
            params={"s3_uri": f"s3://{BUCKET}/photo-24mp.jpg", "size": 128},
            headers={"If-None-Match": etag},
        )
        s3_server.client().put_object(Bucket=BUCKET, Key="changing.jpg", Body=images.photo(300, 200))  # type: ignore[attr-defined]
        before = await client.get("/v1/thumbnails", params={"s3_uri": f"s3://{BUCKET}/changing.jpg"})
        s3_server.client().put_object(Bucket=BUCKET, Key="changing.jpg", Body=images.photo(200, 300))  # type: ignore[attr-defined]
        after = await client.get(
            "/v1/thumbnails",
            params={"s3_uri": f"s3://{BUCKET}/changing.jpg"},
            headers={"If-None-Match": before.headers["etag"]},
        )

    assert big.status_code == 200
    assert big.headers["content-type"] == "image/jpeg"
    assert big.headers["cache-control"] == "private, max-age=300"
    preview = Image.open(io.BytesIO(big.content))
    assert preview.format == "JPEG"
    assert preview.size == (256, 171)  # 6000x4000 fitted in 256 px
    assert len(big.content) < 40_000
    upright = Image.open(io.BytesIO(rotated.content))
    assert upright.size == (50, 100)  # stored 400x200 with EXIF orientation 6: shown portrait
    assert upright.convert("RGB").getpixel((25, 10))[0] > 150  # red on top, as a viewer shows it
    assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag)
    assert other_size.status_code == 200 and other_size.headers["etag"] != etag
    assert after.status_code == 200  # a new version of the object is a new preview
    assert after.headers["etag"] != before.headers["etag"]
    assert Image.open(io.BytesIO(after.content)).size == (171, 256)


@pytest.mark.parametrize(
    ("params", "settings", "status", "code"),
    [
        ({"s3_uri": f"s3://{BUCKET}/in-budget.jpg", "size": 513}, {}, 422, "invalid_request"),
        ({"s3_uri": f"s3://{BUCKET}/in-budget.jpg", "size": 8}, {}, 422, "invalid_request"),
        ({"size": 64}, {}, 422, "invalid_request"),
        ({"s3_uri": "https://example.com/a.jpg"}, {}, 422, "invalid_s3_uri"),
        ({"s3_uri": f"s3://{BUCKET}/missing.jpg"}, {}, 404, "s3_not_found"),
        ({"s3_uri": f"s3://{BUCKET}/text.jpg"}, {}, 415, "unsupported_image"),
        ({"s3_uri": f"s3://{BUCKET}/truncated.jpg"}, {}, 415, "image_corrupt"),
        ({"s3_uri": f"s3://{BUCKET}/bomb.png"}, {}, 413, "image_too_many_pixels"),
        ({"s3_uri": f"s3://{BUCKET}/in-budget.jpg"}, {"MAX_IMAGE_BYTES": 10_000}, 413, "image_too_large"),
        ({"s3_uri": f"s3://{BUCKET}/in-budget.jpg"}, {"API_KEYS": "k1"}, 401, "invalid_api_key"),
    ],
)
async def test_what_cannot_be_previewed_is_refused_in_the_envelope(
    gateway: GatewayFactory, params: dict[str, object], settings: dict[str, object], status: int, code: str
) -> None:
    async with gateway(**settings) as client:
        response = await client.get("/v1/thumbnails", params=params)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_a_key_opens_previews_when_api_keys_is_set(gateway: GatewayFactory) -> None:
    async with gateway(API_KEYS="k1") as client:
        response = await client.get(
            "/v1/thumbnails",
            params={"s3_uri": f"s3://{BUCKET}/image.webp"},
            headers={"Authorization": "Bearer k1"},
        )
    assert response.status_code == 200
    assert Image.open(io.BytesIO(response.content)).size == (256, 192)
