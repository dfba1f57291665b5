"""The ``batch`` subcommand's arguments; ``gateway/cli.py`` only registers it."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, datetime
from typing import Any

from gateway.batch.job import EXIT_INTERRUPTED, BatchOptions
from gateway.batch.local import run_batch
from gateway.batch.output import Mode
from gateway.pipeline import CaptionRequest
from gateway.records import REASONING_LEVELS
from gateway.settings import Settings
from gateway.writeback import XMP_NAMES, parse_modes

DEFAULT_CONCURRENCY = 32  # enough requests in flight for vLLM's continuous batching to stay full


def _timestamp(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 timestamp: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _write_back(text: str) -> frozenset[str]:
    try:
        return parse_modes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_batch_parser(sub: Any) -> None:
    batch = sub.add_parser("batch", help="caption every image under an S3 prefix (or in a list of URIs)")
    batch.add_argument("source", help="s3://bucket/prefix/, or a text/JSONL file of S3 URIs")
    batch.add_argument("--out", required=True, help="a local .jsonl file or an s3://bucket/prefix/")
    again = batch.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="skip images already in DEST (same ETag)")
    again.add_argument("--overwrite", action="store_true", help="replace an existing DEST")
    batch.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY, help="images in flight")
    batch.add_argument("--modified-since", type=_timestamp, help="only objects changed after this time")
    batch.add_argument("--style", help="caption style (default: detailed)")
    batch.add_argument("--short", action="store_true", help="one-sentence captions (detailed=false)")
    batch.add_argument("--language", help="caption language (ISO 639-1), default en")
    batch.add_argument("--prompt", help="extra instructions for every image")
    batch.add_argument(
        "--use-gpt-oss", action=argparse.BooleanOptionalAction, default=None, help="default: USE_GPT_OSS"
    )
    batch.add_argument("--reasoning-level", choices=REASONING_LEVELS)
    batch.add_argument("--write-back", type=_write_back, default=frozenset(), help="sidecar,tags,xmp")
    batch.add_argument("--sidecar-prefix", help="s3://bucket/prefix/ for KEY.json (default: beside)")
    batch.add_argument(
        "--xmp-name",
        choices=XMP_NAMES,
        help="XMP sidecar name: full = KEY.xmp (digiKam, darktable), stem = extension replaced, IMG_1.xmp "
        "(Lightroom, Capture One); default: XMP_NAME",
    )
    batch.add_argument("--vocabulary", help="constrain keywords to this VOCABULARIES_DIR vocabulary")
    batch.add_argument(
        "--context", action="store_true", help="give the VLM the facts of each image's own metadata"
    )
    batch.add_argument("--engine", choices=("local", "ray"), default="local")
    batch.add_argument("--ray-actors", type=int, default=2, help="--engine ray: actors in the pool")
    batch.add_argument("--ray-num-cpus", type=float, help="--engine ray: CPUs of a local cluster")
    batch.add_argument(
        "--ray-window",
        type=int,
        default=50_000,
        help="--engine ray: images listed into one Ray dataset at a time (bounds the driver's memory)",
    )
    batch.add_argument("--log-every", type=int, default=100, help="log line every N images (no terminal)")
    batch.set_defaults(handler=run_batch_command)


def options_from_args(args: argparse.Namespace) -> BatchOptions:
    mode: Mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    request = CaptionRequest(
        s3_uri="",
        detailed=not args.short,
        use_gpt_oss=args.use_gpt_oss,
        reasoning_level=args.reasoning_level,
        style=args.style,
        language=args.language,
        prompt=args.prompt,
        vocabulary=args.vocabulary,
        context=args.context,
    )
    return BatchOptions(
        source=args.source,
        out=args.out,
        mode=mode,
        concurrency=max(args.concurrency, 1),
        request=request,
        write_back=args.write_back,
        sidecar_prefix=args.sidecar_prefix,
        xmp_name=args.xmp_name,
        modified_since=args.modified_since,
        log_every=args.log_every,
        ray_actors=max(args.ray_actors, 1),
        ray_num_cpus=args.ray_num_cpus,
        ray_window=max(args.ray_window, 1),
    )


def run_batch_command(args: argparse.Namespace, settings: Settings) -> int:
    options = options_from_args(args)
    try:
        if args.engine == "ray":
            from gateway.batch.ray_engine import run_ray_batch

            return run_ray_batch(options, settings)
        return asyncio.run(run_batch(options, settings))
    except KeyboardInterrupt:  # Ctrl-C before the run installed its own handler (start-up)
        return EXIT_INTERRUPTED
