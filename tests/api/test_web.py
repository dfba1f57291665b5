"""GET /review and its files: public (they hold no data), complete, and sent with a strict policy."""

from __future__ import annotations

import re

import pytest

from gateway.api.web import load_web_files
from tests.support.gateway import GatewayFactory


async def test_the_page_and_every_file_it_loads_are_served_without_a_key(gateway: GatewayFactory) -> None:
    async with gateway(API_KEYS="k1") as client:
        page = await client.get("/review")
        # What the page loads, and what its modules import in turn.
        wanted = set(re.findall(r'"(/review/static/[\w.-]+)"', page.text))
        for name, file in load_web_files().items():
            if name.endswith(".js"):
                wanted |= {
                    f"/review/static/{m}" for m in re.findall(r'from "\./([\w.-]+)"', file.body.decode())
                }
        served = {path: await client.get(path) for path in sorted(wanted)}

    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert {"/review/static/review.js", "/review/static/review.css", "/review/static/api.js"} <= wanted
    for path, response in served.items():
        assert response.status_code == 200, path
        assert "charset=utf-8" in response.headers["content-type"] or path.endswith(".svg")
    assert served["/review/static/review.js"].headers["content-type"].startswith("text/javascript")


async def test_the_page_is_sent_with_a_strict_content_security_policy(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        responses = [await client.get(path) for path in ("/review", "/review/static/review.js")]
    for response in responses:
        policy = dict(
            directive.strip().split(" ", 1)
            for directive in response.headers["content-security-policy"].split(";")
        )
        assert policy["script-src"] == "'self'"
        assert policy["style-src"] == "'self'"
        assert policy["default-src"] == "'none'"
        assert policy["frame-ancestors"] == "'none'"
        assert "unsafe-inline" not in response.headers["content-security-policy"]
        assert "unsafe-eval" not in response.headers["content-security-policy"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
    # No inline script or style for the policy to have to allow.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", responses[0].text)
    assert "<style" not in responses[0].text and " style=" not in responses[0].text
    assert not re.search(r"<[^>]+\son\w+=", responses[0].text)  # nor inline event handlers


@pytest.mark.parametrize(
    "path", ["/review/static/nope.js", "/review/static/__init__.py", "/review/static/index.html"]
)
async def test_only_the_pages_own_files_are_served(gateway: GatewayFactory, path: str) -> None:
    async with gateway() as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


async def test_a_file_the_browser_has_is_not_sent_again(gateway: GatewayFactory) -> None:
    async with gateway() as client:
        first = await client.get("/review/static/review.css")
        again = await client.get(
            "/review/static/review.css", headers={"If-None-Match": first.headers["etag"]}
        )
    assert first.headers["cache-control"] == "no-cache"  # always revalidated: an upgrade shows at once
    assert (again.status_code, again.content) == (304, b"")
