"""Schema migrations and the ``db`` command, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.catalogue import identity_of, open_catalogue
from gateway.catalogue.migrate import head_revision
from gateway.errors import CatalogueRefused
from gateway.records import CaptionLine, CaptionParams, EditedFields
from gateway.settings import Settings

CLI = str(Path(sys.executable).with_name("florence-tagger"))
PARAMS = CaptionParams(
    style="short", language="en", use_gpt_oss=True, reasoning_level="high", vlm_model="qwen",
    enhancer_model="gpt-oss", grounding="strict", max_pixels=1003520, min_pixels=3136, structured=True,
)  # fmt: skip


async def florence_tagger(*args: str, database_url: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        CLI, *args, env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_processes_starting_together_migrate_once_and_all_start(catalogue_url: str) -> None:
    results = await asyncio.gather(
        *(florence_tagger("db", "upgrade", database_url=catalogue_url) for _ in range(3))
    )
    assert [status for status, _, _ in results] == [0, 0, 0], results
    assert all(f"schema revision {head_revision()}" in out for _, out, _ in results)


async def test_a_database_a_newer_release_migrated_is_refused_untouched(catalogue_url: str) -> None:
    async with open_catalogue(Settings(DATABASE_URL=catalogue_url)):  # type: ignore[call-arg]
        pass
    engine = create_async_engine(catalogue_url)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = '9999_from_the_future'"))
    await engine.dispose()

    with pytest.raises(CatalogueRefused) as refused:
        async with open_catalogue(Settings(DATABASE_URL=catalogue_url)):  # type: ignore[call-arg]
            pass
    assert "9999_from_the_future" in refused.value.message
    for command in (("serve", "--port", "1"), ("db", "upgrade")):
        status, _, err = await florence_tagger(*command, database_url=catalogue_url)
        assert status == 1
        assert "newer release" in err and "Traceback" not in err
    engine = create_async_engine(catalogue_url)
    async with engine.connect() as connection:
        revision = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar_one()
    await engine.dispose()
    assert revision == "9999_from_the_future"


async def test_export_then_import_moves_a_catalogue_between_engines(
    catalogue_url: str, tmp_path: Path
) -> None:
    source_url = f"sqlite+aiosqlite:///{tmp_path / 'source.db'}"
    async with open_catalogue(Settings(DATABASE_URL=source_url)) as source:  # type: ignore[call-arg]
        for i in range(3):
            line = CaptionLine(
                caption=f"Ein Hafen im Morgenlicht, Nummer {i}.", enhanced=True, s3_uri=f"s3://bkt/{i}.jpg",
                original_caption="A harbour.", style="short", keywords=["hafen"], models={"vlm": "qwen"},
                usage={}, etag=f"etag-{i}", timings={"vlm": 1.5},
            )  # fmt: skip
            last = await source.store(line, PARAMS, "batch")
        edited = (await source.get(last)).model_copy(
            update={"status": "edited", "edited": EditedFields(caption="Der Hamburger Hafen.")}
        )
        await source.restore(edited)
    export = tmp_path / "catalogue.jsonl"
    assert (await florence_tagger("db", "export", "--out", str(export), database_url=source_url))[0] == 0
    lines = [json.loads(raw) for raw in export.read_text().splitlines()]
    assert [entry["s3_uri"] for entry in lines] == ["s3://bkt/0.jpg", "s3://bkt/1.jpg", "s3://bkt/2.jpg"]
    assert {"caption", "enhanced", "s3_uri", "etag", "timings"} <= lines[0].keys()  # a batch line, and more

    status, _, err = await florence_tagger("db", "import", str(export), database_url=catalogue_url)
    assert status == 0, err
    async with open_catalogue(Settings(DATABASE_URL=catalogue_url)) as target:  # type: ignore[call-arg]
        moved = [entry async for entry in target.export()]
        assert await target.lookup(identity_of("s3://bkt/1.jpg", "etag-1"), PARAMS) is not None
    # Everything but the ids (the target numbers its own rows) comes back as it was exported.
    assert [json.loads(e.model_dump_json(exclude={"id"}, exclude_none=True)) for e in moved] == [
        {k: v for k, v in entry.items() if k != "id"} for entry in lines
    ]
    assert moved[2].edited == EditedFields(caption="Der Hamburger Hafen.")
    assert moved[2].status == "edited"
    assert [e.created_at for e in moved] == sorted(e.created_at for e in moved)
