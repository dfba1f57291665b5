"""``florence-tagger db``: migrate the catalogue, export it as JSONL, import an export (any engine to any).

A one-shot command: nothing else runs on its event loop, so plain blocking file I/O is fine here.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.catalogue.migrate import head_revision
from gateway.catalogue.open import open_catalogue
from gateway.errors import CatalogueRefused, CatalogueUnavailable
from gateway.records import CatalogueEntry
from gateway.settings import Settings


def add_db_parser(sub: Any) -> None:
    db = sub.add_parser("db", help="the caption catalogue: upgrade its schema, export or import it")
    actions = db.add_subparsers(dest="db_command", required=True)
    actions.add_parser("upgrade", help="migrate the schema to this release (serve and batch also do it)")
    export = actions.add_parser("export", help="write every entry as JSONL (batch output lines, more keys)")
    export.add_argument("--out", required=True, help="a .jsonl file ('-' for stdout)")
    restore = actions.add_parser("import", help="read an export into DATABASE_URL (entries are upserted)")
    restore.add_argument("file", help="a file written by `db export`")
    db.set_defaults(handler=run_db_command)


def run_db_command(args: argparse.Namespace, settings: Settings) -> int:
    try:
        return asyncio.run(_COMMANDS[args.db_command](args, settings))
    except (CatalogueRefused, CatalogueUnavailable) as exc:
        print(f"florence-tagger db: {exc.message}", file=sys.stderr)
        return 1


async def _upgrade(args: argparse.Namespace, settings: Settings) -> int:
    async with open_catalogue(settings) as catalogue:
        print(f"catalogue {catalogue.database.description} is at schema revision {head_revision()}")
    return 0


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    out = sys.stdout.buffer if args.out == "-" else Path(args.out).open("wb")  # noqa: SIM115, ASYNC230
    written = 0
    try:
        async with open_catalogue(settings) as catalogue:
            async for entry in catalogue.export():
                out.write(entry.model_dump_json(exclude_none=True).encode("utf-8") + b"\n")
                written += 1
    finally:
        if out is not sys.stdout.buffer:
            out.close()
    print(f"exported {written} entries", file=sys.stderr)
    return 0


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    imported = 0
    async with open_catalogue(settings) as catalogue:
        with Path(args.file).open("rb") as lines:  # noqa: ASYNC230
            for number, raw in enumerate(lines, 1):
                if not raw.strip():
                    continue
                try:
                    entry = CatalogueEntry.model_validate_json(raw)
                except ValidationError as exc:
                    print(
                        f"florence-tagger db import: {args.file}:{number}: not an export line: {exc}",
                        file=sys.stderr,
                    )
                    return 1
                await catalogue.restore(entry)
                imported += 1
    print(f"imported {imported} entries", file=sys.stderr)
    return 0


_COMMANDS = {"upgrade": _upgrade, "export": _export, "import": _import}
