"""The catalogue itself, on SQLite and on a real PostgreSQL server: keeping, finding, searching, paging."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.catalogue import CaptionQuery, Catalogue, identity_of, open_catalogue
from gateway.errors import CaptionNotFound, CatalogueUnavailable, InvalidInput
from gateway.records import CaptionLine, CaptionParams, CatalogueEntry, EditedFields
from gateway.settings import Settings

PARAMS = CaptionParams(
    style="detailed", language="en", use_gpt_oss=False, vlm_model="qwen", max_pixels=1003520, min_pixels=3136,
    structured=True,
)  # fmt: skip


def line(
    key: str,
    caption: str,
    *,
    etag: str = "e1",
    keywords: tuple[str, ...] = (),
    visible_text: tuple[str, ...] = (),
    bucket: str = "photos",
) -> CaptionLine:
    return CaptionLine(
        caption=caption, enhanced=False, s3_uri=f"s3://{bucket}/{key}", style="detailed",
        keywords=list(keywords), visible_text=list(visible_text), models={"vlm": "qwen", "enhancer": None},
        usage={"vlm": {"prompt_tokens": 10}}, etag=etag, timings={"vlm": 12.5},
    )  # fmt: skip


@pytest.fixture
async def catalogue(catalogue_url: str) -> AsyncIterator[Catalogue]:
    async with open_catalogue(Settings(DATABASE_URL=catalogue_url)) as opened:  # type: ignore[call-arg]
        yield opened


async def search(catalogue: Catalogue, q: str | None = None, **filters: object) -> list[str]:
    page = await catalogue.search(CaptionQuery(q=q, **filters))  # type: ignore[arg-type]
    return [entry.s3_uri.rsplit("/", 1)[1] for entry in page.items]


async def test_a_result_is_found_again_only_for_the_same_version_and_parameters(catalogue: Catalogue) -> None:
    first = await catalogue.store(line("a.jpg", "A red umbrella on a wet street."), PARAMS, "api")
    found = await catalogue.lookup(identity_of("s3://photos/a.jpg", "e1"), PARAMS)
    assert found is not None and found.id == first
    assert found.caption == "A red umbrella on a wet street."
    assert (found.status, found.source, found.etag, found.timings) == ("pending", "api", "e1", {"vlm": 12.5})
    assert await catalogue.lookup(identity_of("s3://photos/a.jpg", "e2"), PARAMS) is None  # a new version
    german = PARAMS.model_copy(update={"language": "de"})
    assert await catalogue.lookup(identity_of("s3://photos/a.jpg", "e1"), german) is None  # other parameters
    assert (await catalogue.get(first)).s3_uri == "s3://photos/a.jpg"
    with pytest.raises(CaptionNotFound):
        await catalogue.get(first + 1000)


async def test_a_repeat_replaces_the_model_text_but_never_a_persons_edit(catalogue: Catalogue) -> None:
    first = await catalogue.store(line("a.jpg", "A red umbrella."), PARAMS, "api")
    again = await catalogue.store(line("a.jpg", "A crimson umbrella."), PARAMS, "batch")
    assert again == first  # one row per (version, parameters)
    entry = await catalogue.get(first)
    assert (entry.caption, entry.source, entry.status) == ("A crimson umbrella.", "batch", "pending")

    edited = entry.model_copy(
        update={"status": "edited", "edited": EditedFields(caption="A red golf umbrella.")}
    )
    await catalogue.restore(edited)
    await catalogue.store(line("a.jpg", "A scarlet umbrella."), PARAMS, "api")
    entry = await catalogue.get(first)
    assert entry.caption == "A scarlet umbrella."  # the model's own text, kept beside the person's
    assert entry.edited == EditedFields(caption="A red golf umbrella.")
    assert entry.status == "edited"
    assert await search(catalogue, "golf") == ["a.jpg"]  # search finds what the person wrote
    assert await search(catalogue, "scarlet") == []


async def test_an_approved_caption_whose_text_changes_goes_back_to_review(catalogue: Catalogue) -> None:
    first = await catalogue.store(line("a.jpg", "A red umbrella."), PARAMS, "api")
    await catalogue.restore((await catalogue.get(first)).model_copy(update={"status": "approved"}))
    await catalogue.store(line("a.jpg", "A blue umbrella."), PARAMS, "api")
    assert (await catalogue.get(first)).status == "pending"


async def test_search_needs_every_word_and_ranks_the_caption_first(catalogue: Catalogue) -> None:
    await catalogue.store(
        line("text.jpg", "A shop window.", visible_text=("RED", "UMBRELLA SALE")), PARAMS, "api"
    )
    await catalogue.store(line("caption.jpg", "A red umbrella in the rain."), PARAMS, "api")
    await catalogue.store(
        line("keywords.jpg", "A rainy street.", keywords=("red", "umbrella")), PARAMS, "api"
    )
    await catalogue.store(line("red-only.jpg", "A red car."), PARAMS, "api")
    assert await search(catalogue, "red umbrella") == ["caption.jpg", "keywords.jpg", "text.jpg"]
    assert await search(catalogue, "umbrell*") == ["caption.jpg", "keywords.jpg", "text.jpg"]
    assert await search(catalogue, "umbrell") == []  # a word is a word: no prefix without the star
    assert await search(catalogue, "RED car!") == ["red-only.jpg"]  # case and punctuation do not matter


async def test_words_in_other_languages_match_as_words(catalogue: Catalogue) -> None:
    german = PARAMS.model_copy(update={"language": "de"})
    await catalogue.store(line("de.jpg", "Ein roter Regenschirm auf der Straße."), german, "api")
    await catalogue.store(line("jp.jpg", "雨の中の赤い傘。", keywords=("傘", "雨")), PARAMS, "api")
    assert await search(catalogue, "regenschirm") == ["de.jpg"]
    assert await search(catalogue, "roter") == ["de.jpg"]
    assert await search(catalogue, "rot") == []  # no stemmer: an English one would mangle German
    assert await search(catalogue, "straße") == ["de.jpg"]
    assert await search(catalogue, "傘") == ["jp.jpg"]


async def test_filters_and_newest_first_paging_see_every_entry_once(catalogue: Catalogue) -> None:
    for i in range(7):
        source = "batch" if i % 2 else "api"
        await catalogue.store(line(f"2024/{i}.jpg", f"Photo number {i}."), PARAMS, source)
    await catalogue.store(line("2025/x.jpg", "Photo from another year."), PARAMS, "api")
    await catalogue.store(line("2024/y.jpg", "Elsewhere.", bucket="other"), PARAMS, "api")
    seen: list[str] = []
    cursor = None
    while True:
        page = await catalogue.search(CaptionQuery(s3_prefix="s3://photos/2024/", limit=3, cursor=cursor))
        seen += [e.s3_uri for e in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"s3://photos/2024/{i}.jpg" for i in reversed(range(7))]
    assert await search(catalogue, source="batch", s3_prefix="s3://photos/") == ["5.jpg", "3.jpg", "1.jpg"]
    assert len(await search(catalogue, status="pending", limit=200)) == 9
    assert await search(catalogue, status="approved") == []
    future = datetime.now(UTC) + timedelta(minutes=5)
    assert await search(catalogue, since=future) == []
    assert len(await search(catalogue, since=future - timedelta(hours=1), limit=200)) == 9


async def test_ranked_results_page_too(catalogue: Catalogue) -> None:
    for i in range(5):
        await catalogue.store(line(f"{i}.jpg", f"A harbour at dawn, boat {i}."), PARAMS, "api")
    first = await catalogue.search(CaptionQuery(q="harbour", limit=3))
    rest = await catalogue.search(CaptionQuery(q="harbour", limit=3, cursor=first.next_cursor))
    assert rest.next_cursor is None
    assert sorted(e.id for e in first.items + rest.items) == sorted({e.id for e in first.items + rest.items})
    assert len(first.items + rest.items) == 5


async def test_a_cursor_it_did_not_hand_out_is_refused(catalogue: Catalogue) -> None:
    await catalogue.store(line("a.jpg", "A harbour."), PARAMS, "api")
    listing = await catalogue.search(CaptionQuery(limit=1))
    for cursor in ("not-a-cursor", "eyJ4IjoxfQ"):
        with pytest.raises(InvalidInput) as refused:
            await catalogue.search(CaptionQuery(limit=1, cursor=cursor))
        assert refused.value.code == "invalid_cursor"
    # A listing's cursor does not fit a search, and the reverse.
    with pytest.raises(InvalidInput):
        await catalogue.search(CaptionQuery(q="harbour", limit=1, cursor=listing.next_cursor or "eyJ0IjoxfQ"))
    with pytest.raises(InvalidInput) as empty:
        await catalogue.search(CaptionQuery(q="!!!"))
    assert empty.value.code == "invalid_query"


def test_an_exported_entry_reads_back_as_a_batch_line() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    entry = CatalogueEntry(
        **line("a.jpg", "A harbour.").model_dump(), id=1, status="approved", source="batch", created_at=when,
        updated_at=when, params=PARAMS,
    )  # fmt: skip
    exported = entry.model_dump_json(exclude_none=True)
    assert CaptionLine.model_validate_json(exported) == line("a.jpg", "A harbour.")
    assert CatalogueEntry.model_validate_json(exported) == entry


async def test_many_results_stored_at_once_are_all_kept(catalogue: Catalogue) -> None:
    """A batch's workers store concurrently; none may be turned away as 'database is locked'."""
    lines = [line(f"{i}.jpg", f"Photo {i}.") for i in range(64)]
    await asyncio.gather(*(catalogue.store(each, PARAMS, "batch") for each in lines))
    assert await catalogue.count() == 64


async def test_results_stored_at_once_are_all_kept_each_caller_with_its_own_row(catalogue: Catalogue) -> None:
    """Group commit: 40 results stored together share transactions, and each caller gets its own row."""
    lines = [line(f"burst-{i}.jpg", f"Photo number {i} of a busy street.") for i in range(40)]
    ids = await asyncio.gather(*(catalogue.store(one, PARAMS, "api") for one in lines))
    assert len(set(ids)) == 40
    for one, caption_id in zip(lines, ids, strict=True):
        assert (await catalogue.get(caption_id)).caption == one.caption
    # The same version twice in one burst is one row, holding the later text.
    again = [line("twice.jpg", "First text."), line("twice.jpg", "Second text.")]
    first, second = await asyncio.gather(*(catalogue.store(one, PARAMS, "api") for one in again))
    assert first == second
    assert (await catalogue.get(first)).caption == "Second text."


async def test_a_caller_that_leaves_does_not_take_the_others_rows_with_it(catalogue: Catalogue) -> None:
    stores = [asyncio.ensure_future(catalogue.store(line(f"left-{i}.jpg", "A quiet harbour."), PARAMS, "api"))
              for i in range(10)]  # fmt: skip
    await asyncio.sleep(0)
    stores[0].cancel()  # its client went away while its row waited for the transaction
    kept = await asyncio.gather(*stores[1:])
    assert len(set(kept)) == 9
    await asyncio.sleep(0.5)  # the cancelled caller's row is written anyway: the caption was made
    assert await catalogue.lookup(identity_of("s3://photos/left-0.jpg", "e1"), PARAMS) is not None


async def test_a_database_that_goes_away_fails_every_waiting_store_none_hangs(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'kept.db'}"
    async with open_catalogue(Settings(DATABASE_URL=url, DATABASE_TIMEOUT_S=1)) as catalogue:  # type: ignore[call-arg]
        await catalogue.store(line("before.jpg", "Kept."), PARAMS, "api")
        database = catalogue.database
        kept_engine = database.engine
        # The fault: the database's file is out of reach (its directory is gone), so no write can start.
        database.engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'gone' / 'gone.db'}")
        try:
            async with asyncio.timeout(20):
                outcomes = await asyncio.gather(
                    *(catalogue.store(line(f"after-{i}.jpg", "Lost."), PARAMS, "api") for i in range(10)),
                    return_exceptions=True,
                )
        finally:
            await database.engine.dispose()
            database.engine = kept_engine
    assert all(isinstance(outcome, CatalogueUnavailable) for outcome in outcomes), outcomes
