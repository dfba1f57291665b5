"""A real browser for tests: Debian's Chromium, headless, driven by Playwright's async API.

    async with launch_chromium() as browser:   # a playwright.async_api.Browser
        page = await browser.new_page()

Fixtures (tests/conftest.py registers this module with ``pytest_plugins``):

* ``browser`` (session scope): the launched ``Browser``; Playwright gives it a fresh temporary profile
  (``--user-data-dir``) and removes it at the end.
* ``page`` (per test): a ``Page`` in its own context (cookies, storage), closed after the test.

Playwright's own browser downloads are never used (``playwright install`` cannot reach its CDN here, and
CI need not): ``chromium`` and a font come from apt (scripts/test installs them). The async API runs in
the session's event loop beside the servers a test starts there (uvicorn in-process); the sync API
would block that loop, and refuses to run inside one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import Error as PlaywrightError

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",  # root in CI, and no user namespaces in containers
    "--disable-gpu",
    # Without these Chromium phones home at start; the closed network refuses it and start-up stalls.
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Containers give /dev/shm 64 MB, which crashes renderers; Debian's launcher adds this only when its
    # check of /dev/shm works.
    "--disable-dev-shm-usage",
)
LAUNCH_TIMEOUT_MS = 60_000


class BrowserError(RuntimeError):
    """Chromium is missing or would not start; the message says why."""


@contextlib.asynccontextmanager
async def launch_chromium(executable: Path = CHROMIUM) -> AsyncIterator[Browser]:
    if not executable.exists():
        raise BrowserError(f"{executable} is missing: apt-get install chromium (scripts/test installs it)")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(executable),
            args=list(CHROMIUM_ARGS),
            headless=True,
            timeout=LAUNCH_TIMEOUT_MS,
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with contextlib.AsyncExitStack() as stack:
        try:
            launched = await stack.enter_async_context(launch_chromium())
        except (BrowserError, PlaywrightError) as exc:
            failure = f"Chromium could not be started:\n{exc}"
        else:
            failure = ""
        # Failed outside the except block, so the report shows the reason once, without a chained traceback.
        if failure:
            pytest.fail(failure, pytrace=False)
        yield launched


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    try:
        yield await context.new_page()
    finally:
        await context.close()
