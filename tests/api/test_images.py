"""What reaches the VLM: every accepted format, upright, sRGB, within the pixel budget, on the 28-px grid."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import BUCKET, GatewayFactory, sent_image
from tests.support.s3_server import S3Server

BUDGET = 1280 * 28 * 28


def close_to(pixel: Any, expected: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(int(a) - b) <= tolerance for a, b in zip(pixel, expected, strict=False))


@pytest.mark.parametrize(
    "key",
    [
        "rotated.jpg", "cmyk.jpg", "alpha.png", "image.webp", "animated.gif",
        "image.heic", "image.avif", "image.bmp", "image.tiff", "photo-24mp.jpg",
    ],
)  # fmt: skip
async def test_every_format_reaches_the_vlm_as_budgeted_jpeg(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, key: str
) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/{key}"})
    assert response.status_code == 200, response.text
    _, image = sent_image(fake_vlm)
    assert image.format == "JPEG"
    assert image.mode == "RGB"
    assert image.width * image.height <= BUDGET
    assert image.width % 28 == 0
    assert image.height % 28 == 0


async def test_exif_orientation_is_applied(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/rotated.jpg"})
    _, image = sent_image(fake_vlm)
    assert image.height > image.width  # stored landscape, shown portrait
    assert close_to(image.getpixel((image.width // 2, 10)), (220, 30, 30))  # red on top
    assert close_to(image.getpixel((image.width // 2, image.height - 10)), (30, 30, 220))


async def test_cmyk_becomes_rgb_with_the_same_colour(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/cmyk.jpg"})
    _, image = sent_image(fake_vlm)
    red, green, blue = image.getpixel((image.width // 2, image.height // 2))  # type: ignore[misc]
    assert red > 200
    assert green < 60
    assert blue < 60


async def test_transparency_becomes_white(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/alpha.png"})
    _, image = sent_image(fake_vlm)
    assert close_to(image.getpixel((image.width - 5, image.height // 2)), (255, 255, 255), 10)
    assert close_to(image.getpixel((5, image.height // 2)), (30, 200, 30))


async def test_gif_sends_its_first_frame(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/animated.gif"})
    _, image = sent_image(fake_vlm)
    assert close_to(image.getpixel((50, 50)), (30, 200, 30))


async def test_24mp_photo_is_cut_to_the_budget(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/photo-24mp.jpg"})
    _, image = sent_image(fake_vlm)
    assert image.width * image.height > 0.9 * BUDGET  # fills the budget, keeps the 3:2 shape
    assert abs(image.width / image.height - 1.5) < 0.03


async def test_smaller_budget_is_honoured(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway(VLM_MAX_PIXELS=256 * 28 * 28) as client:
        await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/photo-24mp.jpg"})
    _, image = sent_image(fake_vlm)
    assert image.width * image.height <= 256 * 28 * 28


async def test_jpeg_within_budget_is_forwarded_byte_identical(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, s3_server: S3Server
) -> None:
    original = s3_server.client().get_object(Bucket=BUCKET, Key="in-budget.jpg")["Body"].read()  # type: ignore[attr-defined]
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/in-budget.jpg"})
    data, _ = sent_image(fake_vlm)
    assert data == original


@pytest.mark.parametrize("key", ["wide-gamut.jpg", "wide-gamut-alpha.png"])
async def test_embedded_icc_profile_is_converted_to_srgb(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI, key: str
) -> None:
    # Stored as red under a profile whose red colorant is sRGB's green: converted, it must be green.
    async with gateway() as client:
        await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/{key}"})
    _, image = sent_image(fake_vlm)
    assert close_to(image.getpixel((10, image.height // 2)), (25, 221, 25))
    if key.endswith(".png"):
        assert close_to(image.getpixel((image.width - 10, image.height // 2)), (255, 255, 255), 10)


async def test_malformed_exif_still_orients_the_image(gateway: GatewayFactory, fake_vlm: FakeOpenAI) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/broken-exif.jpg"})
    assert response.status_code == 200, response.text
    _, image = sent_image(fake_vlm)
    assert image.height > image.width  # orientation 6 applied despite the broken EXIF block


async def test_a_small_bilevel_png_of_100_mp_is_captioned(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    """12 KB on disk, 100 MP decoded: reduced in its own mode, strip by strip, never a whole RGB copy."""
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/bilevel-100mp.png"})
    assert response.status_code == 200, response.text
    _, image = sent_image(fake_vlm)
    assert image.size == (980, 980)
    assert close_to(image.getpixel((5, 490)), (255, 255, 255))  # the white frame...
    assert close_to(image.getpixel((490, 490)), (0, 0, 0))  # ...around black


async def test_an_image_too_large_to_decode_is_413_from_its_header(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/rgba-400mb.png"})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "image_decode_too_large"
    assert "MAX_DECODE_BYTES" in error["message"]
    assert fake_vlm.requests == []


async def test_beyond_200_to_1_the_image_is_padded_whole(
    gateway: GatewayFactory, fake_vlm: FakeOpenAI
) -> None:
    """Qwen2.5-VL's processor refuses more than 200:1; a 2000:1 strip arrives padded, all of it kept."""
    async with gateway() as client:
        response = await client.post("/caption", json={"s3_uri": f"s3://{BUCKET}/strip-2000-to-1.jpg"})
    assert response.status_code == 200, response.text
    _, image = sent_image(fake_vlm)
    assert max(image.size) / min(image.size) <= 200
    assert image.width % 28 == 0 and image.height % 28 == 0
    assert image.width * image.height <= BUDGET
    middle = image.height // 2
    assert close_to(image.getpixel((image.width // 2, 0)), (255, 255, 255))  # padding above
    for x in (2, image.width // 2, image.width - 3):  # the band spans the whole width: nothing cut off
        assert close_to(image.getpixel((x, middle)), (20, 20, 20)), x
