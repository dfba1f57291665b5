"""The ``florence-tagger`` command: ``serve`` today; ``batch`` and ``eval`` build on the same pipeline."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Sequence

import uvicorn
from pydantic import ValidationError

from gateway.settings import Settings


def _serve(args: argparse.Namespace, settings: Settings) -> int:
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
        log_level=settings.log_level,
        access_log=False,  # our middleware logs one line per request, with its request id and timings
        proxy_headers=True,
    )
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
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    handler = args.handler
    result: int = handler(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
