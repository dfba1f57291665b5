"""The ``florence-tagger`` command: ``serve`` (the HTTP gateway), ``batch``, ``worker``, ``eval``, ``db``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import uvicorn
from pydantic import ValidationError

from gateway.api.server import uvicorn_options
from gateway.batch.cli import add_batch_parser
from gateway.catalogue.cli import add_db_parser
from gateway.catalogue.open import open_catalogue
from gateway.errors import CatalogueRefused, CatalogueUnavailable, XmpUnavailable
from gateway.events.cli import add_worker_parser, startable
from gateway.logs import configure_logging
from gateway.records import REASONING_LEVELS
from gateway.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.wiring import check_review_settings

    try:
        check_review_settings(settings)
    except XmpUnavailable as exc:
        print(f"florence-tagger serve: REVIEW_WRITE_BACK=xmp: {exc.message}", file=sys.stderr)
        return 1
    if not startable(settings, "serve"):
        return 1
    try:  # once, before any worker starts, so a database that cannot be used stops here with its reason
        asyncio.run(_migrate(settings))
    except (CatalogueRefused, CatalogueUnavailable) as exc:
        print(f"florence-tagger serve: cannot open the catalogue: {exc.message}", file=sys.stderr)
        return 1
    workers = args.workers or settings.workers
    if workers > 1 and not settings.prometheus_multiproc_dir:
        # prometheus-client's multiprocess mode: each worker writes its values to files in this folder.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="florence-metrics-")
    uvicorn.run(
        "gateway.app:app_from_env",
        factory=True,
        host=args.host or settings.host,
        port=args.port or settings.port,
        workers=workers,
        **uvicorn_options(settings),
    )
    return 0


async def _migrate(settings: Settings) -> None:
    async with open_catalogue(settings):
        pass


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.evaluation import evaluate, read_labels
    from gateway.pipeline import CaptionRequest
    from gateway.wiring import open_pipeline

    try:
        labels = read_labels(Path(args.labels))
    except (OSError, ValueError) as exc:
        print(f"florence-tagger eval: {exc}", file=sys.stderr)
        return 1
    template = CaptionRequest(
        s3_uri="", use_gpt_oss=args.use_gpt_oss, reasoning_level=args.reasoning_level, style=args.style
    )

    async def run() -> dict[str, object]:
        async with open_pipeline(settings) as pipeline:
            report = await evaluate(pipeline, labels, template, args.concurrency)
        return report.summary()

    summary = asyncio.run(run())
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    if args.out:
        Path(args.out).write_text(text + "\n", "utf-8")
    print(text)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="florence-tagger", description="Self-hosted image captioning gateway"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP gateway (POST /caption, GET /health)")
    serve.add_argument("--host", help="listen address (HOST, default 0.0.0.0)")
    serve.add_argument("--port", type=int, help="listen port (PORT, default 8000)")
    serve.add_argument("--workers", type=int, help="worker processes (WORKERS, default 1); one per core")
    serve.set_defaults(handler=_serve)
    add_batch_parser(sub)
    add_worker_parser(sub)
    add_db_parser(sub)
    evaluation = sub.add_parser(
        "eval", help="run a labelled JSONL set through the model servers and score it"
    )
    evaluation.add_argument("labels", help='JSONL: {"s3_uri": ..., "visible_text": [...], "brands": [...]}')
    evaluation.add_argument("--style", help="caption style (default: detailed)")
    evaluation.add_argument(
        "--use-gpt-oss",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="enhance (default: USE_GPT_OSS)",
    )
    evaluation.add_argument("--reasoning-level", choices=REASONING_LEVELS)
    evaluation.add_argument("--concurrency", type=int, default=4)
    evaluation.add_argument("--out", help="also write the JSON report here")
    evaluation.set_defaults(handler=_eval)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        # Refuse to start with a clear message rather than a traceback.
        for err in exc.errors():
            name = ".".join(str(p) for p in err["loc"])
            print(f"florence-tagger: invalid setting {name}: {err['msg']}", file=sys.stderr)
        return 1  # "could not start", as the batch command defines it (2 there means some images failed)
    configure_logging(settings.log_level, settings.secret_values)
    handler = args.handler
    result: int = handler(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
