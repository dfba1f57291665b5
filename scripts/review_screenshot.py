"""Takes the README's screenshot of the review page (docs/review-page.png) from a real session.

    unshare --net sh -c 'ip link set lo up && exec .venv/bin/python scripts/review_screenshot.py'

(a private network namespace, as for the tests). It puts the drawn scenes of tests/support/scenes.py in a
local S3, captions them through the gateway (the fake VLM answers with each scene's caption; one is
enhanced by the fake gpt-oss), reviews a few as a person would (an approval written back as XMP, an edit, a
rejection, one card open in the editor), and photographs the page in Debian's Chromium.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.async_api import expect  # noqa: E402

from gateway.app import create_app  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.support.browser import launch_chromium  # noqa: E402
from tests.support.fake_openai import FakeOpenAI, FakeServer, Reply  # noqa: E402
from tests.support.gateway import serving  # noqa: E402
from tests.support.review import caption_scenes, catalogue_ids, put_scenes  # noqa: E402
from tests.support.s3_server import start_s3_server  # noqa: E402
from tests.support.scenes import SCENES  # noqa: E402

BUCKET = "photos"
OUT = REPO / "docs" / "review-page.png"
VIEWPORT = {"width": 1360, "height": 900}
EDITED_UMBRELLA = "A red umbrella stands open on the wet cobbles of Rue Mouffetard, Paris, in the rain."
ENHANCED = {
    "caption": "A green sign for Café Luna, open from eight to six, hangs above two warmly lit windows.",
    "added_terms": [{"term": "Café Luna", "evidence": "visible text CAFÉ LUNA"}],
}


async def session(served: str, fake_vlm: FakeOpenAI, fake_enhancer: FakeOpenAI) -> None:
    async with httpx.AsyncClient(base_url=served, timeout=30) as client:
        # Newest first on the page: caption in reverse so the grid reads in SCENES order.
        ordered = list(reversed(SCENES))
        cafe = next(s for s in ordered if "cafe" in s.key)
        await caption_scenes(client, fake_vlm, BUCKET, [s for s in ordered if s is not cafe][:3])
        fake_enhancer.then(Reply(content=json.dumps(ENHANCED)))
        await caption_scenes(client, fake_vlm, BUCKET, [cafe], use_gpt_oss=True)
        await caption_scenes(client, fake_vlm, BUCKET, [s for s in ordered if s is not cafe][3:])
        ids = await catalogue_ids(client)
        uri = {scene.key.split("/")[-1].split(".")[0]: f"s3://{BUCKET}/{scene.key}" for scene in SCENES}
        await client.patch(f"/v1/captions/{ids[uri['harbour-dawn']]}", json={"status": "approved"})
        await client.patch(f"/v1/captions/{ids[uri['red-umbrella']]}", json={"caption": EDITED_UMBRELLA})
        await client.patch(f"/v1/captions/{ids[uri['city-night']]}", json={"status": "rejected"})


async def photograph(url: str) -> bytes:
    async with launch_chromium() as browser:
        context = await browser.new_context(viewport=VIEWPORT, color_scheme="light")
        page = await context.new_page()
        await page.goto(f"{url}/review?status=")
        # Locators, not wait_for_function: the page's CSP forbids the eval that one needs.
        await expect(page.locator(".thumb.loaded")).to_have_count(len(SCENES), timeout=30_000)
        for key in ("j", "j", "e"):  # the third card, open for editing with the keyboard
            await page.keyboard.press(key)
        await page.keyboard.press("End")
        await page.keyboard.type(" Late snow on the peaks.")
        await page.wait_for_timeout(400)
        png = await page.screenshot(full_page=True)
        await context.close()
        return png


async def main() -> None:
    s3 = start_s3_server()
    servers: list[FakeServer] = []
    try:
        client: Any = s3.client()
        s3.create_bucket(BUCKET)
        put_scenes(client, BUCKET, SCENES)
        fake_vlm, fake_enhancer = FakeOpenAI("vlm"), FakeOpenAI("enhancer")
        servers = [FakeServer(fake_vlm), FakeServer(fake_enhancer)]
        for server in servers:
            await server.start()
        os.environ.update(s3.env())  # the gateway's S3 credentials come from the normal AWS chain
        with tempfile.TemporaryDirectory() as data_dir:
            settings = Settings(  # type: ignore[call-arg]
                DATA_DIR=data_dir,
                VLM_BASE_URL=fake_vlm.base_url,
                GPT_OSS_BASE_URL=fake_enhancer.base_url,
                REVIEW_WRITE_BACK="xmp",
            )
            async with serving(create_app(settings)) as url:
                await session(url, fake_vlm, fake_enhancer)
                png = await photograph(url)
    finally:
        for server in servers:
            await server.stop()
        s3.stop()
    # 256 colours: the page's flat colours and text come out the same, in a fraction of the bytes.
    image = Image.open(io.BytesIO(png)).convert("RGB").quantize(256, dither=Image.Dither.FLOYDSTEINBERG)
    OUT.parent.mkdir(exist_ok=True)
    image.save(OUT, optimize=True)
    print(f"wrote {OUT.relative_to(REPO)} ({OUT.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    asyncio.run(main())
