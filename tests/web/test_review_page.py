"""The review page in a real browser (Debian's Chromium through Playwright), against the gateway on a real
port, the real S3 server and the fake VLM: cards, keyboard review and its write-back, XSS, and API keys."""

from __future__ import annotations

import json
from pathlib import Path

from playwright.async_api import ConsoleMessage, Dialog, Page, Request, expect

from tests.support.batch import BatchBucket
from tests.support.exiftool import exiftool_json
from tests.support.fake_openai import FakeOpenAI, Reply
from tests.support.gateway import ServerFactory
from tests.support.review import caption_scenes, catalogue_ids
from tests.support.scenes import SCENES

XSS = "<img src=x onerror=alert(1)>"


def name_of(key: str) -> str:
    return key.rsplit("/", 1)[1]


async def test_every_catalogued_image_gets_a_card_with_its_preview_and_facts(
    gateway_server: ServerFactory, fake_vlm: FakeOpenAI, scene_bucket: BatchBucket, page: Page
) -> None:
    scenes = SCENES[:5]
    async with gateway_server() as served:
        await caption_scenes(served.client, fake_vlm, scene_bucket.name, scenes)
        await page.goto(f"{served.url}/review")
        cards = page.locator("#cards .card")
        await expect(cards).to_have_count(len(scenes))
        await expect(page.locator("#cards .thumb.loaded")).to_have_count(len(scenes))  # every preview shown
        names = await page.locator("#cards .name").all_text_contents()
        cafe = cards.filter(has_text="cafe-luna.jpg")
        await expect(cafe.locator(".caption")).to_have_text(SCENES[1].caption)
        await expect(cafe.locator(".facts .quoted li")).to_have_text(SCENES[1].visible_text)
        await expect(cafe.locator(".facts")).to_contain_text("Café Luna — name on the sign above the windows")
        await expect(cafe.locator(".badge")).to_have_text("Pending")
        await expect(cafe.locator(".meta")).to_contain_text("Source api")
        shown = await page.locator("#cards .thumb img").evaluate_all("imgs => imgs.map(i => i.naturalWidth)")
    assert names == [name_of(s.key) for s in reversed(scenes)]  # newest first
    assert shown == [320] * len(scenes)  # 320 CSS px at device scale 1; decoded JPEGs, not broken images


async def test_keyboard_review_writes_the_edited_caption_to_xmp_and_a_rejection_writes_nothing(
    gateway_server: ServerFactory, fake_vlm: FakeOpenAI, scene_bucket: BatchBucket, page: Page, tmp_path: Path
) -> None:
    harbour, cafe = SCENES[0], SCENES[1]
    edited = "A ketch at anchor in Honfleur's outer harbour, first light."
    async with gateway_server(REVIEW_WRITE_BACK="xmp") as served:
        await caption_scenes(served.client, fake_vlm, scene_bucket.name, [cafe, harbour])  # harbour is newest
        await page.goto(f"{served.url}/review")
        first, second = page.locator("#cards .card").nth(0), page.locator("#cards .card").nth(1)
        await expect(first).to_be_focused()  # the first card is ready for the keyboard
        await page.keyboard.press("j")
        await expect(second).to_be_focused()
        await page.keyboard.press("k")
        await expect(first).to_be_focused()

        await page.keyboard.press("e")  # an edit, cancelled with Esc, changes nothing
        caption_box = first.locator("form.edit textarea[name=caption]")
        await expect(caption_box).to_be_focused()
        await expect(first.locator(".caption")).to_be_hidden()  # the form takes the text's place
        await expect(first.get_by_role("button", name="Approve")).to_be_hidden()
        await page.keyboard.press("Control+a")
        await page.keyboard.type("A draft nobody saves.")
        await page.keyboard.press("Escape")
        await expect(first).to_be_focused()
        await expect(first.locator(".caption")).to_have_text(harbour.caption)

        await page.keyboard.press("e")
        await expect(caption_box).to_be_focused()
        await page.keyboard.press("Control+a")
        await page.keyboard.type(edited)
        await page.keyboard.press("Control+Enter")
        await expect(first.locator(".badge")).to_have_text("Edited")
        await expect(first.locator(".caption")).to_have_text(edited)
        await expect(first.locator(".model")).to_contain_text(harbour.caption)  # the model's, beside it
        await expect(first).to_be_focused()
        await page.keyboard.press("a")
        await expect(first.locator(".badge")).to_have_text("Approved")
        await expect(first.locator(".write-back")).to_contain_text("Written back (xmp)")
        await expect(page.locator("#status")).to_contain_text("Approved harbour-dawn.jpg. Written back: xmp.")
        await expect(second).to_be_focused()  # on to the next card
        await page.keyboard.press("r")
        await expect(second.locator(".badge")).to_have_text("Rejected")

        ids = await catalogue_ids(served.client)
        entries = [(await served.client.get(f"/v1/captions/{i}")).json() for i in ids.values()]

    xmp = tmp_path / "harbour.xmp"
    xmp.write_bytes(scene_bucket.get(harbour.key + ".xmp"))
    assert exiftool_json(xmp)["Description"] == edited
    assert scene_bucket.keys(cafe.key + ".") == []  # the rejection wrote nothing
    by_status = {e["status"]: e for e in entries}
    assert by_status["approved"]["edited"]["caption"] == edited
    assert by_status["approved"]["caption"] == harbour.caption
    assert by_status["rejected"].get("write_back") is None


async def test_a_caption_that_is_html_is_shown_as_text_and_runs_nothing(
    gateway_server: ServerFactory, fake_vlm: FakeOpenAI, scene_bucket: BatchBucket, page: Page
) -> None:
    dialogs: list[str] = []
    console: list[str] = []

    async def dismiss(dialog: Dialog) -> None:
        dialogs.append(dialog.message)
        await dialog.dismiss()

    page.on("dialog", dismiss)
    page.on("console", lambda message: _note(message, console))
    page.on("pageerror", lambda error: console.append(f"pageerror: {error}"))
    answer = {
        "caption": XSS,
        "keywords": [XSS],
        "visible_text": [XSS],
        "brands": [{"name": XSS, "evidence": XSS}],
        "colors": [],
    }
    async with gateway_server() as served:
        fake_vlm.then(Reply(content=json.dumps(answer)))
        response = await served.client.post(
            "/caption", json={"s3_uri": f"s3://{scene_bucket.name}/{SCENES[0].key}"}
        )
        assert response.status_code == 200
        await page.goto(f"{served.url}/review")
        card = page.locator("#cards .card")
        await expect(card).to_have_count(1)
        await expect(card.locator(".caption")).to_have_text(XSS)
        await expect(card.locator(".chips li")).to_have_text([XSS, XSS])  # keywords, visible text
        await expect(card.locator(".facts")).to_contain_text(f"{XSS} — {XSS}")  # the brand and its evidence
        await expect(card.locator(".thumb.loaded")).to_have_count(1)
        await page.keyboard.press("e")  # and in the editor, as the text box's value
        await expect(card.locator("textarea[name=caption]")).to_have_value(XSS)
        await page.keyboard.press("Escape")
        injected = await page.locator("img[src='x'], #cards script").count()
        images = await page.locator("#cards img").count()
        await page.wait_for_timeout(300)  # time for an onerror to fire, were there an element to fire it
    assert injected == 0
    assert images == 1  # the preview only
    assert dialogs == []
    # Not even a Content-Security-Policy refusal: nothing was parsed as HTML for the policy to stop.
    assert console == []


def _note(message: ConsoleMessage, seen: list[str]) -> None:
    if message.type in ("error", "warning"):
        seen.append(f"{message.type}: {message.text}")


async def test_with_api_keys_the_page_asks_once_and_every_api_call_needs_the_key(
    gateway_server: ServerFactory, fake_vlm: FakeOpenAI, scene_bucket: BatchBucket, page: Page
) -> None:
    key = "k1-7c2b0f"
    requests: list[Request] = []
    page.on("request", lambda request: requests.append(request))
    headers = {"Authorization": f"Bearer {key}"}
    async with gateway_server(API_KEYS=key) as served:
        await caption_scenes(served.client, fake_vlm, scene_bucket.name, SCENES[:2], headers=headers)
        (caption_id, _) = (await catalogue_ids(served.client, headers=headers)).values()
        await page.goto(f"{served.url}/review")
        dialog = page.locator("#key-dialog")
        await expect(dialog).to_be_visible()
        await expect(page.locator("#key-input")).to_be_focused()
        await page.keyboard.type("not-the-key")
        await page.keyboard.press("Enter")
        await expect(page.locator("#key-error")).to_have_text("That key was refused; try another.")
        await page.keyboard.type(key)
        await page.keyboard.press("Enter")
        await expect(dialog).to_be_hidden()
        await expect(page.locator("#cards .card")).to_have_count(2)
        await expect(page.locator("#cards .thumb.loaded")).to_have_count(2)
        await page.keyboard.press("a")
        await expect(page.locator("#cards .card").first.locator(".badge")).to_have_text("Approved")
        await page.reload()  # the key is the tab's: no second question
        await expect(page.locator("#cards .card")).to_have_count(1)  # the one still pending
        await expect(dialog).to_be_hidden()

        public = [await served.client.get(p) for p in ("/review", "/review/static/review.js")]
        without = [
            await served.client.request(method, path, json=body)
            for method, path, body in (
                ("GET", "/v1/captions", None),
                ("GET", f"/v1/captions/{caption_id}", None),
                ("PATCH", f"/v1/captions/{caption_id}", {"status": "rejected"}),
                ("POST", "/v1/captions/review", {"ids": [caption_id], "status": "rejected"}),
                ("POST", f"/v1/captions/{caption_id}/write-back", None),
                ("GET", f"/v1/thumbnails?s3_uri=s3://{scene_bucket.name}/{SCENES[0].key}", None),
            )
        ]
        api_calls = [r for r in requests if "/v1/" in r.url]
        sent = [(await r.all_headers()).get("authorization") for r in api_calls]

    assert [r.status_code for r in public] == [200, 200]  # the page and its files hold no data
    assert [r.status_code for r in without] == [401] * 6
    assert {r.json()["error"]["code"] for r in without} == {"invalid_api_key"}
    assert {"/v1/captions", "/v1/thumbnails"} <= {r.url.split("?")[0].split(served.url)[1] for r in api_calls}
    assert all(key not in r.url and "not-the-key" not in r.url for r in requests)  # never in an address
    assert sent[0] is None  # the first try, before the page knew a key
    assert set(sent[1:]) == {f"Bearer {key}", "Bearer not-the-key"}


async def test_filters_pages_and_a_whole_page_approved_at_once(
    gateway_server: ServerFactory, fake_vlm: FakeOpenAI, scene_bucket: BatchBucket, page: Page
) -> None:
    scenes = SCENES[:3]
    async with gateway_server(REVIEW_WRITE_BACK="sidecar") as served:
        await caption_scenes(served.client, fake_vlm, scene_bucket.name, scenes)
        await page.goto(f"{served.url}/review?limit=2")
        names = page.locator("#cards .name")
        await expect(names).to_have_text([name_of(scenes[2].key), name_of(scenes[1].key)])
        await page.get_by_role("button", name="Next page").click()
        await expect(names).to_have_text([name_of(scenes[0].key)])
        await page.get_by_role("button", name="Previous page").click()
        await expect(names).to_have_text([name_of(scenes[2].key), name_of(scenes[1].key)])

        await page.get_by_role("button", name="Approve all on page").click()
        await expect(page.locator("#status")).to_contain_text("Approved 2 captions. 2 written back.")
        await expect(page.locator("#cards .badge")).to_have_text(["Approved", "Approved"])

        await page.get_by_label("Status").select_option("pending")
        await page.get_by_role("button", name="Apply").click()
        await expect(names).to_have_text([name_of(scenes[0].key)])
        await page.get_by_label("Status").select_option("")
        await page.get_by_label("Search").fill("umbrella")
        await page.keyboard.press("Enter")
        await expect(names).to_have_text([name_of(scenes[2].key)])
        assert "q=umbrella" in page.url and "status=" in page.url  # a view that can be bookmarked
        await page.get_by_label("S3 prefix").fill("not-a-prefix")
        await page.get_by_role("button", name="Apply").click()
        await expect(page.locator("#alert")).to_contain_text("invalid_s3_uri")

    assert sorted(scene_bucket.keys("2024/")) == sorted(
        [s.key for s in SCENES] + [scenes[1].key + ".json", scenes[2].key + ".json"]
    )


async def test_a_failed_write_back_shows_on_its_card_and_is_retried_from_there(
    gateway_server: ServerFactory, fake_vlm: FakeOpenAI, scene_bucket: BatchBucket, page: Page
) -> None:
    key = SCENES[0].key
    own_tags = [{"Key": f"owner-{i}", "Value": "x"} for i in range(10)]  # S3's limit: no room for ours
    scene_bucket.client.put_object_tagging(Bucket=scene_bucket.name, Key=key, Tagging={"TagSet": own_tags})
    async with gateway_server(REVIEW_WRITE_BACK="tags") as served:
        await caption_scenes(served.client, fake_vlm, scene_bucket.name, [SCENES[0]])
        await page.goto(f"{served.url}/review")
        card = page.locator("#cards .card")
        await expect(card).to_be_focused()
        await page.keyboard.press("a")
        await expect(card.locator(".badge")).to_have_text("Approved")
        await expect(card.locator(".write-back")).to_contain_text("Write-back (tags) failed")
        await expect(card.locator(".write-back")).to_contain_text("s3_tags_full")
        await expect(page.locator("#status")).to_contain_text("Write-back failed: s3_tags_full")
        scene_bucket.client.delete_object_tagging(Bucket=scene_bucket.name, Key=key)
        retry = card.get_by_role("button", name="Retry write-back")
        await retry.focus()
        await page.keyboard.press("Enter")
        await expect(card.locator(".write-back")).to_contain_text("Written back (tags)")
        await expect(retry).to_be_hidden()
    tags = scene_bucket.client.get_object_tagging(Bucket=scene_bucket.name, Key=key)["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags}["florence:caption"].startswith("A sailing boat rests")
