"""The browser harness (tests/support/browser.py) proves itself: a page served from the test's own event
loop loads, a click runs its script, and text reaches the pixels of a screenshot."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import uvicorn
from PIL import Image
from playwright.async_api import Page
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from tests.support.browser import BrowserError, launch_chromium
from tests.support.s3_server import free_port

HTML = """<!doctype html>
<html><body style="background: white; color: black; font: 32px sans-serif">
<button id="go" onclick="document.getElementById('out').textContent = 'clicked'">Go</button>
<p id="out">waiting</p>
</body></html>"""


@asynccontextmanager
async def served(html: str) -> AsyncIterator[str]:
    """The page from uvicorn in this event loop: a blocked loop would show as a page that never loads."""

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(html)

    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/", index)]), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.should_exit = True
        await task


async def test_a_click_runs_the_pages_script_and_text_renders(page: Page, tmp_path: Path) -> None:
    async with served(HTML) as url:
        await page.goto(url)
        assert await page.text_content("#out") == "waiting"
        await page.click("#go")
        await page.wait_for_function("document.getElementById('out').textContent === 'clicked'")
        shot = await page.locator("#out").screenshot(path=tmp_path / "out.png")
    assert _dark_pixels(shot) > 50, "the screenshot of the text has no glyphs: is a font installed?"


def _dark_pixels(png: bytes) -> int:
    histogram = Image.open(io.BytesIO(png)).convert("L").histogram()
    return sum(histogram[:128])


async def test_a_missing_chromium_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BrowserError, match="apt-get install chromium"):
        async with launch_chromium(tmp_path / "chromium"):
            pass
