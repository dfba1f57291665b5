"""Photo-like scenes for the review page's tests and its screenshot: drawn, so nothing is downloaded, and
each with the caption, keywords and visible text a VLM would give it (``SCENES``).

They are not photographs, but they have what a reviewer looks at: a subject, colour, light, legible text.
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

SIZE = (960, 720)
FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf")  # fonts-dejavu-core (scripts/test)
Colour = tuple[int, int, int]


def _gradient(top: Colour, bottom: Colour, size: tuple[int, int] = SIZE) -> Image.Image:
    height = size[1]
    column = Image.new("RGB", (1, height))
    for y in range(height):
        t = y / max(1, height - 1)
        column.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return column.resize(size)


def _grain(image: Image.Image, amount: int = 10, seed: int = 1) -> Image.Image:
    """Sensor-like noise and a slight softness, so the result encodes and looks like a photo."""
    noise = Image.effect_noise(image.size, amount * 4).convert("RGB")
    mixed = Image.blend(image, noise, amount / 255)
    random.seed(seed)
    return mixed.filter(ImageFilter.GaussianBlur(0.6))


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(str(FONT), size) if FONT.exists() else ImageFont.load_default()


def harbour() -> Image.Image:
    image = _gradient((250, 170, 120), (120, 150, 200))
    draw = ImageDraw.Draw(image)
    draw.ellipse((600, 250, 700, 350), fill=(255, 226, 170))
    draw.rectangle((0, 430, 960, 720), fill=(40, 70, 110))
    for y in range(440, 720, 14):  # light on the water
        draw.line((560 + (y % 50), y, 740 - (y % 40), y), fill=(240, 190, 150), width=3)
    draw.polygon([(180, 470), (420, 470), (390, 520), (210, 520)], fill=(30, 30, 38))
    draw.line((300, 470, 300, 300), fill=(30, 30, 38), width=6)
    draw.polygon([(305, 310), (305, 460), (400, 460)], fill=(235, 230, 220))
    return _grain(image, seed=2)


def umbrella() -> Image.Image:
    image = _gradient((150, 155, 165), (60, 62, 70))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 470, 960, 720), fill=(45, 47, 55))
    for x in range(0, 960, 80):  # wet cobbles
        draw.line((x, 470, x - 120, 720), fill=(70, 72, 82), width=2)
    draw.pieslice((330, 180, 650, 440), 180, 360, fill=(210, 30, 40))
    draw.line((490, 310, 490, 560), fill=(25, 25, 25), width=8)
    draw.arc((460, 530, 500, 580), 0, 180, fill=(25, 25, 25), width=8)
    draw.ellipse((450, 560, 540, 600), fill=(30, 30, 35))
    draw.polygon([(360, 640), (620, 640), (560, 700), (420, 700)], fill=(120, 30, 40))  # reflection
    return _grain(image, seed=3)


def mountains() -> Image.Image:
    image = _gradient((110, 170, 235), (215, 235, 250))
    draw = ImageDraw.Draw(image)
    draw.polygon([(0, 460), (260, 150), (470, 460)], fill=(95, 105, 125))
    draw.polygon([(300, 460), (600, 110), (900, 460)], fill=(80, 90, 110))
    draw.polygon(
        [(540, 180), (600, 110), (660, 180), (620, 170), (600, 190), (575, 172)], fill=(245, 248, 252)
    )
    draw.polygon([(215, 205), (260, 150), (305, 205), (262, 195)], fill=(245, 248, 252))
    draw.rectangle((0, 460, 960, 720), fill=(50, 110, 150))
    for x in range(0, 960, 38):  # a line of pines on the shore
        draw.polygon([(x, 470), (x + 19, 380 + (x * 7) % 40), (x + 38, 470)], fill=(25, 70, 40))
    return _grain(image, seed=4)


def city_night() -> Image.Image:
    image = _gradient((10, 20, 55), (40, 35, 80))
    draw = ImageDraw.Draw(image)
    draw.ellipse((780, 70, 850, 140), fill=(245, 240, 210))
    rng = random.Random(5)
    x = 0
    while x < 960:
        width, height = rng.randint(70, 140), rng.randint(220, 520)
        draw.rectangle((x, 720 - height, x + width - 6, 720), fill=(22, 24, 36))
        for wy in range(720 - height + 16, 700, 28):
            for wx in range(x + 10, x + width - 20, 22):
                if rng.random() < 0.55:
                    draw.rectangle((wx, wy, wx + 10, wy + 14), fill=(250, 210, 110))
        x += width
    return _grain(image, amount=8, seed=5)


def fruit() -> Image.Image:
    image = _gradient((235, 225, 205), (200, 185, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 470, 960, 720), fill=(120, 80, 50))
    draw.ellipse((240, 420, 720, 560), fill=(230, 230, 235))
    for box, colour in (
        ((300, 330, 420, 450), (240, 140, 30)),
        ((400, 310, 520, 430), (200, 30, 40)),
        ((500, 340, 620, 460), (240, 150, 40)),
        ((440, 380, 540, 480), (120, 170, 50)),
    ):
        draw.ellipse(box, fill=colour)
    draw.pieslice((240, 380, 720, 560), 0, 180, fill=(245, 245, 248))
    return _grain(image, seed=6)


def cafe_sign() -> Image.Image:
    image = _gradient((170, 120, 90), (110, 70, 50))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 960, 720), outline=None)
    draw.rounded_rectangle(
        (150, 160, 810, 400), radius=18, fill=(25, 60, 55), outline=(210, 180, 110), width=8
    )
    draw.text((480, 250), "CAFÉ LUNA", font=_font(96), fill=(240, 225, 180), anchor="mm")
    draw.text((480, 340), "open 8-18", font=_font(40), fill=(210, 200, 170), anchor="mm")
    draw.rectangle((200, 460, 760, 720), fill=(60, 40, 30))
    draw.rectangle((230, 490, 470, 700), fill=(250, 220, 150))
    draw.rectangle((490, 490, 730, 700), fill=(250, 220, 150))
    return _grain(image, seed=7)


def sunflowers() -> Image.Image:
    image = _gradient((90, 160, 230), (180, 215, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 380, 960, 720), fill=(60, 120, 40))
    rng = random.Random(8)
    for _ in range(70):
        x, y = rng.randint(-20, 980), rng.randint(390, 740)
        r = 10 + (y - 380) // 12
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(250, 200, 30))
        draw.ellipse((x - r // 2, y - r // 2, x + r // 2, y + r // 2), fill=(110, 70, 20))
    return _grain(image, seed=8)


def bicycle() -> Image.Image:
    image = Image.new("RGB", SIZE, (150, 70, 55))
    draw = ImageDraw.Draw(image)
    for row, y in enumerate(range(0, 560, 40)):  # brick courses
        draw.line((0, y, 960, y), fill=(200, 190, 180), width=4)
        for x in range((row % 2) * 60, 960, 120):
            draw.line((x, y, x, y + 40), fill=(200, 190, 180), width=4)
    draw.rectangle((0, 560, 960, 720), fill=(110, 110, 115))
    for cx in (330, 630):
        draw.ellipse((cx - 110, 400, cx + 110, 620), outline=(20, 20, 20), width=12)
    red = (210, 25, 35)
    for line in ((330, 510, 460, 400), (460, 400, 630, 510), (460, 400, 560, 390), (420, 510, 460, 400)):
        draw.line(line, fill=red, width=14)
    draw.line((330, 510, 420, 510), fill=red, width=14)
    draw.line((560, 390, 630, 510), fill=red, width=14)
    return _grain(image, seed=9)


@dataclass(frozen=True)
class Scene:
    key: str
    draw: Callable[[], Image.Image]
    caption: str
    keywords: list[str]
    visible_text: list[str] = field(default_factory=list)
    brands: list[dict[str, str]] = field(default_factory=list)
    colors: list[str] = field(default_factory=list)

    @cached_property
    def jpeg(self) -> bytes:
        """Drawn once per run (a few tens of milliseconds each)."""
        out = io.BytesIO()
        self.draw().save(out, format="JPEG", quality=88)
        return out.getvalue()

    def vlm_answer(self) -> dict[str, object]:
        """What a structured VLM reply for this scene holds (the fake backend sends it as JSON)."""
        return {
            "caption": self.caption,
            "keywords": self.keywords,
            "visible_text": self.visible_text,
            "brands": self.brands,
            "colors": self.colors,
        }


SCENES = [
    Scene("2024/harbour-dawn.jpg", harbour, "A sailing boat rests in a calm harbour at dawn, the low sun "
          "lighting a path across the water.", ["harbour", "sailing boat", "dawn", "sea", "sunrise"],
          colors=["orange", "blue"]),
    Scene("2024/cafe-luna.jpg", cafe_sign, "A green shop sign reading CAFÉ LUNA above two lit windows.",
          ["cafe", "shop sign", "storefront", "evening"], visible_text=["CAFÉ LUNA", "open 8-18"],
          brands=[{"name": "Café Luna", "evidence": "name on the sign above the windows"}],
          colors=["green", "gold"]),
    Scene("2024/red-umbrella.jpg", umbrella, "A red umbrella stands open on a wet cobbled street in the "
          "rain.", ["umbrella", "rain", "street", "cobblestones", "red"], colors=["red", "grey"]),
    Scene("2024/alpine-lake.jpg", mountains, "Snow-capped peaks rise above a pine-lined alpine lake under a "
          "clear sky.", ["mountains", "lake", "pine trees", "snow", "landscape"], colors=["blue", "green"]),
    Scene("2024/city-night.jpg", city_night, "Office towers with lit windows stand against a night sky "
          "with a full moon.", ["city", "night", "skyline", "moon", "windows"], colors=["navy", "yellow"]),
    Scene("2024/fruit-bowl.jpg", fruit, "Oranges, a red apple and a green apple sit in a white bowl on a "
          "wooden table.", ["fruit", "bowl", "still life", "oranges", "apples"], colors=["orange", "white"]),
    Scene("2024/sunflowers.jpg", sunflowers, "A field of sunflowers stretches to the horizon under a blue "
          "summer sky.", ["sunflowers", "field", "summer", "agriculture"], colors=["yellow", "green"]),
    Scene("2024/red-bicycle.jpg", bicycle, "A red bicycle leans against a weathered brick wall.",
          ["bicycle", "brick wall", "street", "red"], colors=["red", "brown"]),
]  # fmt: skip
