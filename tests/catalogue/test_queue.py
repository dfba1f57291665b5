"""The S3 event queue in the catalogue's database, on SQLite and on a real PostgreSQL server: durable rows,
repeated deliveries collapsed, one claim per row however many workers ask, leases that outlive a dead
worker and nothing else."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from gateway.catalogue import Catalogue, EventQueue, ObjectVersion, open_catalogue
from gateway.catalogue.queue import now_utc
from gateway.records import CaptionLine, CaptionParams
from gateway.settings import Settings

PARAMS = CaptionParams(
    style="detailed", language="en", use_gpt_oss=False, vlm_model="qwen", max_pixels=1003520, min_pixels=3136,
    structured=True,
)  # fmt: skip
KEY = PARAMS.key()


def obj(key: str, etag: str | None = "e1", bucket: str = "photos") -> ObjectVersion:
    return ObjectVersion(bucket, key, etag)


@pytest.fixture
async def catalogue(catalogue_url: str) -> AsyncIterator[Catalogue]:
    async with open_catalogue(Settings(DATABASE_URL=catalogue_url)) as opened:  # type: ignore[call-arg]
        yield opened


@pytest.fixture
def queue(catalogue: Catalogue) -> EventQueue:
    return EventQueue(catalogue.database)


async def drain(queue: EventQueue, owner: str = "w") -> list[str]:
    keys = []
    while (event := await queue.claim(owner, 30)) is not None:
        keys.append(event.object.key)
        await queue.complete(event.id, owner)
    return keys


async def test_a_repeated_delivery_collapses_onto_one_row(queue: EventQueue) -> None:
    first = await queue.enqueue([obj("a.jpg"), obj("a.jpg"), obj("b.jpg", None)], KEY, "req-1")
    again = await queue.enqueue([obj("a.jpg"), obj("b.jpg", None)], KEY, "req-2")
    assert (first.accepted, again.accepted) == (2, 2)  # each delivery is taken care of...
    assert (await queue.stats()).counts["queued"] == 2  # ...by one row per object version
    assert sorted(await drain(queue)) == ["a.jpg", "b.jpg"]
    assert await queue.enqueue([obj("a.jpg", "e2")], KEY, "req-3") == type(first)(accepted=1, catalogued=0)


async def test_an_object_already_catalogued_at_that_etag_and_params_is_not_queued(
    queue: EventQueue, catalogue: Catalogue
) -> None:
    caption = CaptionLine(
        caption="A red umbrella.", enhanced=False, s3_uri="s3://photos/a.jpg", style="detailed",
        models={"vlm": "qwen"}, usage={}, etag="e1",
    )  # fmt: skip
    await catalogue.store(caption, PARAMS, "api")
    other_params = PARAMS.model_copy(update={"language": "de"}).key()
    done = await queue.enqueue([obj("a.jpg", "e1")], KEY, None)
    assert (done.accepted, done.catalogued) == (0, 1)
    changed = await queue.enqueue([obj("a.jpg", "e2")], KEY, None)  # a new version
    german = await queue.enqueue([obj("a.jpg", "e1")], other_params, None)  # other parameters
    unknown = await queue.enqueue([obj("a.jpg", None)], KEY, None)  # the store did not say
    assert (changed.accepted, german.accepted, unknown.accepted) == (1, 1, 1)


async def test_workers_asking_at_once_each_get_a_different_row(queue: EventQueue) -> None:
    await queue.enqueue([obj(f"{i}.jpg") for i in range(6)], KEY, None)
    claims = await asyncio.gather(*(queue.claim(f"worker-{n}", 30) for n in range(10)))
    got = [c for c in claims if c is not None]
    assert len(got) == 6
    assert len({c.id for c in got}) == 6
    assert (await queue.stats()).counts == {"queued": 0, "retry": 0, "running": 6, "failed": 0}


async def test_a_dead_workers_row_comes_back_after_its_lease_and_only_then(queue: EventQueue) -> None:
    await queue.enqueue([obj("a.jpg")], KEY, "req-1")
    dead = await queue.claim("dead", 0.5)
    alive = await queue.claim("alive", 0.5)
    assert dead is not None and dead.attempts == 1 and dead.request_id == "req-1"
    assert alive is None  # leased: nobody else may take it
    await queue.renew("alive", {dead.id}, 30)  # not alive's lease to renew
    await asyncio.sleep(0.7)
    taken = await queue.claim("alive", 30)
    assert taken is not None and taken.id == dead.id and taken.attempts == 2
    await queue.complete(dead.id, "dead")  # the dead worker's late finish changes nothing
    assert (await queue.stats()).counts["running"] == 1
    await queue.complete(taken.id, "alive")
    assert sum((await queue.stats()).counts.values()) == 0


async def test_a_renewed_lease_keeps_the_row(queue: EventQueue) -> None:
    await queue.enqueue([obj("a.jpg")], KEY, None)
    held = await queue.claim("slow", 0.5)
    assert held is not None
    for _ in range(3):
        await asyncio.sleep(0.3)
        await queue.renew("slow", {held.id}, 0.5)
        assert await queue.claim("other", 30) is None


async def test_a_retry_waits_for_its_time_and_a_failure_stays_until_delivered_again(
    queue: EventQueue,
) -> None:
    await queue.enqueue([obj("retry.jpg"), obj("fail.jpg")], KEY, None)
    first, second = await queue.claim("w", 30), await queue.claim("w", 30)
    assert first is not None and second is not None
    await queue.retry(first.id, "w", "vlm_unavailable", "the VLM is down", now_utc() + timedelta(seconds=0.6))
    await queue.fail(second.id, "w", "unsupported_image", "not an image")
    stats = await queue.stats()
    assert stats.counts == {"queued": 0, "retry": 1, "running": 0, "failed": 1}
    assert stats.last_error is not None and stats.last_error.code == "unsupported_image"
    assert stats.last_error.s3_uri == f"s3://photos/{second.object.key}"
    assert await queue.claim("w", 30) is None  # neither is due
    await asyncio.sleep(0.7)
    again = await queue.claim("w", 30)
    assert again is not None and again.id == first.id and again.attempts == 2
    redelivered = await queue.enqueue([second.object], KEY, None)  # a re-upload of the same bytes
    assert redelivered.accepted == 1
    retaken = await queue.claim("w", 30)
    assert retaken is not None and retaken.id == second.id and retaken.attempts == 1


async def test_a_clean_shutdown_gives_its_rows_back_uncounted(queue: EventQueue) -> None:
    await queue.enqueue([obj("a.jpg"), obj("b.jpg")], KEY, None)
    held = [await queue.claim("stopping", 300) for _ in range(2)]
    assert all(held)
    assert await queue.release("stopping") == 2
    back = await queue.claim("next", 30)
    assert back is not None and back.attempts == 1


async def test_stats_report_the_oldest_waiting_event(queue: EventQueue) -> None:
    empty = await queue.stats()
    assert empty.oldest_age_s is None and empty.last_error is None
    await queue.enqueue([obj("a.jpg")], KEY, None)
    await asyncio.sleep(0.3)
    await queue.enqueue([obj("b.jpg")], KEY, None)
    stats = await queue.stats()
    assert stats.oldest_age_s is not None and 0.3 <= stats.oldest_age_s < 30
