"""New uploads to captions (not a test): the time from an S3 upload to its catalogue row, through the real
emitter, in one run.

    .venv/bin/python -m benchmarks.bench_events [--uploads 200] [--workers 2 --workers 8] [--skip postgresql]

SeaweedFS (its filer webhook pointed at the gateway), the fake backend in its own process (100 ms per
caption, a GPU-like answer time) and ``florence-tagger serve`` as a subprocess, with an SQLite catalogue and
then a real PostgreSQL (Debian's, started here). ``--uploads`` small JPEGs are PUT as fast as one client
can; the catalogue is read until every one has its row. Prints, per engine and ``EVENT_WORKERS``: upload to
row p50 / p95 / max, captions per second, and the model calls made (each upload exactly once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python benchmarks/bench_events.py`
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.support.batch import small_images  # noqa: E402
from tests.support.events import EVENTS_BUCKET_PREFIX, session_webhook, webhook_port  # noqa: E402
from tests.support.postgres import PostgresServer, start_postgres  # noqa: E402
from tests.support.processes import Procs, free_port, gateway_command  # noqa: E402
from tests.support.s3_server import S3Server, start_s3_server_when_free  # noqa: E402

DELAY_MS = 100
TIMEOUT_S = 600.0


def run(s3: S3Server, database_url: str | None, workers: int, uploads: int) -> dict[str, Any]:
    assert s3.webhook is not None
    procs = Procs(Path(tempfile.mkdtemp(prefix="florence-bench-events-")))
    bucket = f"{EVENTS_BUCKET_PREFIX}bench-{int(time.time() * 1000) % 10**9}"
    try:
        s3.create_bucket(bucket)
        backend_port = free_port()
        command = [sys.executable, str(ROOT / "benchmarks" / "fake_backend.py"), "--port", str(backend_port)]
        backend = procs.spawn("backend", [*command, "--delay-ms", str(DELAY_MS)], backend_port, cwd=ROOT)
        backend.wait_ready("/health")
        port = webhook_port(s3.webhook)
        env = {
            **os.environ, **s3.env(), "VLM_BASE_URL": backend.url + "/v1", "LOG_LEVEL": "warning",
            "DATA_DIR": str(procs.workdir / "data"), "EVENTS_TOKEN": s3.webhook.token,
            "EVENT_WORKERS": str(workers), **({"DATABASE_URL": database_url} if database_url else {}),
        }  # fmt: skip
        gateway = procs.spawn("gateway", gateway_command(port, workers=1), port, env, cwd=ROOT)
        gateway.wait_ready("/livez")
        return _measure(s3, bucket, gateway.url, uploads) | {"workers": workers}
    finally:
        procs.close()


def _measure(s3: S3Server, bucket: str, url: str, uploads: int) -> dict[str, Any]:
    client: Any = s3.client()
    uploaded: dict[str, datetime] = {}
    started = time.monotonic()
    for i in range(uploads):
        key = f"burst/{i:04d}.jpg"
        client.put_object(Bucket=bucket, Key=key, Body=small_images()[i % 10])
        uploaded[f"s3://{bucket}/{key}"] = datetime.now(UTC)
    upload_s = time.monotonic() - started
    rows = _wait_for_rows(url, bucket, uploads)
    done_s = time.monotonic() - started
    with httpx.Client(base_url=url) as http:
        metrics = http.get("/metrics").text
    latency = sorted(
        (datetime.fromisoformat(r["created_at"]) - uploaded[r["s3_uri"]]).total_seconds() for r in rows
    )
    return {
        "uploads": uploads,
        "rows": len(rows),
        "distinct": len({r["s3_uri"] for r in rows}),
        "upload_s": round(upload_s, 2),
        "all_rows_s": round(done_s, 2),
        "captions_per_s": round(uploads / done_s, 1),
        "p50_s": round(statistics.median(latency), 2),
        "p95_s": round(latency[max(0, int(0.95 * len(latency)) - 1)], 2),
        "max_s": round(latency[-1], 2),
        "captioned": _metric(metrics, 'florence_events_processed_total{outcome="captioned"}'),
    }


def _wait_for_rows(url: str, bucket: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + TIMEOUT_S
    with httpx.Client(base_url=url, timeout=30) as http:
        while True:
            rows = _all_rows(http, f"s3://{bucket}/")
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.25)


def _all_rows(http: httpx.Client, prefix: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {
            "s3_prefix": prefix,
            "source": "event",
            "limit": 200,
            **({"cursor": cursor} if cursor else {}),
        }
        page = http.get("/v1/captions", params=params).json()
        rows += page["items"]
        if not (cursor := page.get("next_cursor")):
            return rows


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        "| catalogue | EVENT_WORKERS | uploads (PUT in) | upload to row p50 / p95 / max | captions/s "
        "| model calls |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['workers']} | {r['uploads']} ({r['upload_s']} s) | "
            f"**{r['p50_s']} / {r['p95_s']}** / {r['max_s']} s | {r['captions_per_s']} | "
            f"{r['captioned']:g} for {r['distinct']} rows |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument(
        "--workers", type=int, action="append", help="EVENT_WORKERS (repeatable; default 2 and 8)"
    )
    parser.add_argument("--skip", action="append", default=[], choices=["sqlite", "postgresql"])
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "events.json")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    s3 = start_s3_server_when_free(webhook=session_webhook())
    postgres: PostgresServer | None = None
    results: list[dict[str, Any]] = []
    try:
        engines: list[tuple[str, str | None]] = []
        if "sqlite" not in args.skip:
            engines.append(("sqlite", None))
        if "postgresql" not in args.skip:
            postgres = start_postgres()
            engines.append(("postgresql", postgres.create_database("bench_events")))
        for engine, url in engines:
            for workers in args.workers or [2, 8]:
                print(f"- {engine}, EVENT_WORKERS={workers}: {args.uploads} uploads ...", flush=True)
                results.append({"engine": engine, **run(s3, url, workers, args.uploads)})
    finally:
        if postgres is not None:
            postgres.close()
        s3.stop()
    output = {"loadavg_at_start": load_start, "loadavg_at_end": os.getloadavg(), "runs": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    print(table(results))
    print(f"load average at start / end: {load_start[0]:.1f} / {os.getloadavg()[0]:.1f}\nJSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
