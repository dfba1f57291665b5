"""Review in the catalogue, on SQLite and on a real PostgreSQL: edits beside the model's text, decisions
all-or-nothing, write-back state, and a repeat that never undoes a person's work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.catalogue import CaptionQuery, Catalogue, ReviewStore, open_catalogue
from gateway.catalogue.migrate import alembic_config
from gateway.errors import CaptionNotFound
from gateway.records import CaptionLine, CaptionParams, EditedFields, WriteBackState
from gateway.settings import Settings

PARAMS = CaptionParams(
    style="detailed", language="en", use_gpt_oss=False, vlm_model="qwen", max_pixels=1003520, min_pixels=3136,
    structured=True,
)  # fmt: skip


def line(key: str, caption: str, keywords: tuple[str, ...] = ("umbrella", "street")) -> CaptionLine:
    return CaptionLine(
        caption=caption, enhanced=False, s3_uri=f"s3://photos/{key}", style="detailed",
        keywords=list(keywords), models={"vlm": "qwen"}, usage={}, etag="e1", timings={},
    )  # fmt: skip


@pytest.fixture
async def catalogue(catalogue_url: str) -> AsyncIterator[Catalogue]:
    async with open_catalogue(Settings(DATABASE_URL=catalogue_url)) as opened:  # type: ignore[call-arg]
        yield opened


async def found(catalogue: Catalogue, q: str) -> list[str]:
    return [e.s3_uri.rsplit("/", 1)[1] for e in (await catalogue.search(CaptionQuery(q=q))).items]


async def test_an_edit_is_kept_beside_the_models_text_and_waits_for_approval(catalogue: Catalogue) -> None:
    review = ReviewStore(catalogue.database)
    first = await catalogue.store(line("a.jpg", "A red umbrella on a street."), PARAMS, "batch")

    entry = await review.edit(first, {"caption": "A red golf umbrella in Paris.", "keywords": ["golf"]})
    assert entry.status == "edited"
    assert entry.caption == "A red umbrella on a street."  # the model's words are untouched
    assert entry.edited == EditedFields(caption="A red golf umbrella in Paris.", keywords=["golf"])
    assert entry.approved_line().caption == "A red golf umbrella in Paris."
    assert entry.approved_line().keywords == ["golf"]
    assert await found(catalogue, "paris") == ["a.jpg"]  # search follows the person's text
    assert await found(catalogue, "street") == []

    approved = await review.edit(first, {}, "approved")
    assert (approved.status, approved.edited) == ("approved", entry.edited)
    unchanged = await review.edit(first, {"keywords": ["golf"]})
    assert unchanged.status == "approved"  # an edit that changes nothing undoes no decision

    reverted = await review.edit(first, {"caption": None, "keywords": None})
    assert (reverted.status, reverted.edited) == ("pending", None)  # back to the model's text, to review
    assert await found(catalogue, "street") == ["a.jpg"]


async def test_a_decision_on_many_is_all_or_nothing(catalogue: Catalogue) -> None:
    review = ReviewStore(catalogue.database)
    ids = [await catalogue.store(line(f"{i}.jpg", f"Caption {i}."), PARAMS, "api") for i in range(3)]
    await review.edit(ids[2], {"alt_text": "Three."})

    with pytest.raises(CaptionNotFound, match=str(ids[2] + 100)):
        await review.decide([ids[0], ids[2] + 100], "approved")
    assert [(await catalogue.get(i)).status for i in ids] == ["pending", "pending", "edited"]

    decided = await review.decide([ids[2], ids[0], ids[2]], "rejected")
    assert [(e.id, e.status) for e in decided] == [(ids[2], "rejected"), (ids[0], "rejected")]
    back = await review.decide(ids, "pending")
    # Undecided again: the edited one still has an edit waiting for approval.
    assert [e.status for e in back] == ["pending", "pending", "edited"]


async def test_write_back_state_is_kept_and_a_repeat_keeps_decisions_on_the_same_text(
    catalogue: Catalogue,
) -> None:
    review = ReviewStore(catalogue.database)
    deferred = WriteBackState(status="deferred", modes=["xmp"])
    first = await catalogue.store(line("a.jpg", "A red umbrella."), PARAMS, "batch", write_back=deferred)
    assert (await catalogue.get(first)).write_back == deferred

    await review.decide([first], "approved")
    done = WriteBackState(status="done", modes=["sidecar", "xmp"], at=datetime.now(UTC))
    assert (await review.record_write_back(first, done)).write_back == done

    await catalogue.store(line("a.jpg", "A red umbrella."), PARAMS, "batch")  # a re-run, the same words
    entry = await catalogue.get(first)
    assert (entry.status, entry.write_back) == ("approved", done)
    await catalogue.store(line("a.jpg", "A blue umbrella."), PARAMS, "batch")  # new words: review again
    entry = await catalogue.get(first)
    assert (entry.status, entry.write_back) == ("pending", done)
    with pytest.raises(CaptionNotFound):
        await review.record_write_back(first + 100, done)
    with pytest.raises(CaptionNotFound):
        await review.edit(first + 100, {"caption": "x"})


async def test_a_catalogue_from_before_review_upgrades_with_its_entries(catalogue_url: str) -> None:
    engine = create_async_engine(catalogue_url)
    async with engine.begin() as connection:
        await connection.run_sync(_upgrade_to, "0002")  # the revision before review
        await connection.execute(
            text(
                "INSERT INTO captions (identity, params_key, s3_uri, bucket, key, etag, params, record,"
                " timings, caption, keywords, visible_text, source, status, created_at, updated_at) VALUES ("
                "'s3://photos/old.jpg@e1', :key, 's3://photos/old.jpg', 'photos', 'old.jpg', 'e1', :params,"
                " :record, '{}', 'An old caption.', '', '', 'api', 'approved', :now, :now)"
            ),
            {
                "key": PARAMS.key(),
                "params": PARAMS.model_dump_json(),
                "record": line("old.jpg", "An old caption.").model_dump_json(exclude={"etag", "timings"}),
                "now": datetime.now(UTC),
            },
        )
    await engine.dispose()
    async with open_catalogue(Settings(DATABASE_URL=catalogue_url)) as catalogue:  # type: ignore[call-arg]
        (entry,) = [e async for e in catalogue.export()]
    assert (entry.caption, entry.status, entry.write_back) == ("An old caption.", "approved", None)


def _upgrade_to(connection: object, revision: str) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)
