"""`florence-tagger batch` over a file of image URLs (mixed with S3 URIs): fetched under the URL rules, lines
keyed by URL, refusals reported per image, URLs in DEST skipped on resume."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from gateway.batch.job import BatchOptions
from gateway.batch.local import run_batch
from gateway.settings import Settings
from tests.support.batch import BatchBucket
from tests.support.fake_openai import FakeOpenAI
from tests.support.gateway import url_settings
from tests.support.loopback import Connections
from tests.support.web_server import WebServer


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_a_list_of_urls_is_captioned_and_resumed(
    bucket: BatchBucket,
    batch_env: dict[str, str],
    fake_vlm: FakeOpenAI,
    tmp_path: Path,
    connections: Connections,
) -> None:
    async with WebServer() as web:
        (s3_uri,) = bucket.seed("photos/", 1)
        photo, hop, missing = web.url("/photo.jpg"), web.url("/hop/1"), web.url("/missing.jpg")
        listed = tmp_path / "urls.txt"
        listed.write_text(
            f"# images from the CDN\n{photo}\n{hop}\nhttp://169.254.169.254/latest/meta-data/\n{s3_uri}\n"
            + json.dumps({"image_url": missing})
            + "\n"
        )
        # IMAGE_URL_ENABLED is left off: it governs the API; a batch fetches what its operator listed.
        settings = Settings(**{**batch_env, **url_settings(web), "IMAGE_URL_ENABLED": "false"})  # type: ignore[arg-type]
        dest = tmp_path / "out.jsonl"
        status = await run_batch(BatchOptions(source=str(listed), out=str(dest), concurrency=2), settings)
        fetched = len(web.requests)
        again = await run_batch(BatchOptions(source=str(listed), out=str(dest), mode="resume"), settings)
        refetched = [r.path for r in web.requests[fetched:]]
    assert status == 2  # some images failed
    done = {str(line.get("image_url") or line.get("s3_uri")): line for line in lines(dest)}
    assert set(done) == {photo, hop, s3_uri}
    digest = hashlib.sha256(web.image).hexdigest()
    assert done[photo]["image_sha256"] == digest and "s3_uri" not in done[photo] and "etag" not in done[photo]
    assert done[s3_uri]["etag"] and "image_url" not in done[s3_uri]
    failures = {str(f.get("image_url")): f for f in lines(Path(f"{dest}.errors.jsonl"))}
    assert failures["http://169.254.169.254/latest/meta-data/"]["reason"] == "image_url_forbidden"
    assert failures[missing]["reason"] == "image_url_bad_status"
    assert all("s3_uri" not in f for f in failures.values())
    # Resume: the URLs in DEST are not fetched again; the failure is retried.
    assert again == 2
    assert refetched == ["/missing.jpg"]
    assert {host for host, _ in connections.attempted} == {"127.0.0.1"}
