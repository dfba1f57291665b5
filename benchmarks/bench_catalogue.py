"""The catalogue's figures in one run (not a test): a cached answer's added latency, and search at scale.

    .venv/bin/python -m benchmarks.bench_catalogue [--rows 1000000] [--skip cached|sqlite|postgresql]

1. **Cached answer.** SeaweedFS, the fake backend (0 ms) and ``florence-tagger serve`` with an SQLite
   catalogue; one caption is computed, then ``--requests`` repeats are answered from the catalogue. Their
   latency is compared with ``GET /livez`` on the same keep-alive connection, interleaved; the cache-hit
   count proves no model call was made (target: p50 at most 5 ms above /livez).
2. **Search.** ``--rows`` synthetic catalogue entries (captions, keywords and visible text drawn from a
   Zipf-distributed vocabulary, as real captions are) on SQLite and on a real PostgreSQL (Debian's, started
   here); then two-word queries taken from stored captions, ``limit=50``, through ``Catalogue.search``
   (target: p95 at most 50 ms). Prints p50/p95/p99, the matches per query and the database size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python benchmarks/bench_catalogue.py`
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import func, insert, select, text  # noqa: E402

from gateway.catalogue import CaptionQuery, Catalogue, open_catalogue  # noqa: E402
from gateway.catalogue.schema import captions  # noqa: E402
from gateway.records import CaptionParams  # noqa: E402
from gateway.settings import Settings  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.postgres import start_postgres  # noqa: E402
from tests.support.processes import Procs, free_port, gateway_command  # noqa: E402
from tests.support.s3_server import start_s3_server_when_free  # noqa: E402

VOCABULARY = 6000
INSERT_BATCH = 5000
QUERIES = 300
PARAMS = CaptionParams(
    style="detailed", language="en", use_gpt_oss=False, vlm_model="Qwen/Qwen2.5-VL-7B-Instruct",
    max_pixels=1003520, min_pixels=3136, structured=True,
)  # fmt: skip


# --- 1. a cached answer ------------------------------------------------------------------------------
def bench_cached(requests: int) -> dict[str, Any]:
    s3 = start_s3_server_when_free()
    procs = Procs(Path(tempfile.mkdtemp(prefix="florence-bench-cat-")))
    try:
        s3.create_bucket("bench")
        s3.client().put_object(Bucket="bench", Key="photo.jpg", Body=photo(640, 480))  # type: ignore[attr-defined]
        port = free_port()
        command = [sys.executable, str(ROOT / "benchmarks" / "fake_backend.py"), "--port", str(port)]
        backend = procs.spawn("backend", [*command, "--delay-ms", "0"], port, cwd=ROOT)
        backend.wait_ready("/health")
        gateway_port = free_port()
        env = {**os.environ, **s3.env(), "VLM_BASE_URL": backend.url + "/v1", "LOG_LEVEL": "warning",
               "DATA_DIR": str(procs.workdir / "data")}  # fmt: skip
        gateway = procs.spawn(
            "gateway", gateway_command(gateway_port, workers=1), gateway_port, env, cwd=ROOT
        )
        gateway.wait_ready("/livez")
        return _measure_cached(gateway.url, requests)
    finally:
        procs.close()
        s3.stop()


def _measure_cached(url: str, requests: int) -> dict[str, Any]:
    body = {"s3_uri": "s3://bench/photo.jpg"}
    with httpx.Client(base_url=url, timeout=30) as client:
        first = client.post("/caption", json=body).json()
        assert first["cached"] is False, first
        cached_ms, livez_ms = [], []
        for _ in range(requests):  # interleaved, so machine noise hits both alike
            start = time.perf_counter()
            answer = client.post("/caption", json=body)
            cached_ms.append((time.perf_counter() - start) * 1000)
            assert answer.json()["cached"] is True
            start = time.perf_counter()
            client.get("/livez")
            livez_ms.append((time.perf_counter() - start) * 1000)
        metrics = client.get("/metrics").text
    hits = _metric(metrics, 'florence_cache_requests_total{outcome="hit"}')
    return {
        "requests": requests,
        "cached_p50_ms": _pct(cached_ms, 0.5),
        "cached_p99_ms": _pct(cached_ms, 0.99),
        "livez_p50_ms": _pct(livez_ms, 0.5),
        "livez_p99_ms": _pct(livez_ms, 0.99),
        "added_p50_ms": round(_pct(cached_ms, 0.5) - _pct(livez_ms, 0.5), 2),
        "added_p99_ms": round(_pct(cached_ms, 0.99) - _pct(livez_ms, 0.99), 2),
        "cache_hits": hits,
        "model_calls_after_the_first": 0 if hits == requests else f"{requests - hits} not cached",
    }


def _metric(text_: str, name: str) -> int:
    line = next((line for line in text_.splitlines() if line.startswith(name)), f"{name} 0")
    return int(float(line.rsplit(" ", 1)[1]))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)


# --- 2. search over many rows ---------------------------------------------------------------------------
def vocabulary() -> tuple[list[str], list[float]]:
    """Pronounceable words with Zipf weights: a few very common, most rare, as in real captions."""
    rng = random.Random(7)
    syllables = ["ba", "ko", "ri", "tan", "mel", "sor", "vi", "do", "lu", "pe", "gra", "shi", "nor", "fe"]
    words = sorted({"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(VOCABULARY * 2)})
    rng.shuffle(words)
    words = words[:VOCABULARY]
    return words, [1 / (rank + 1) for rank in range(len(words))]


def rows(count: int, seed: int = 11) -> Iterator[dict[str, Any]]:
    words, weights = vocabulary()
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        caption = " ".join(rng.choices(words, weights, k=rng.randint(14, 28))).capitalize() + "."
        keywords = rng.choices(words, weights, k=8)
        visible = rng.choices(words, k=rng.choice((0, 0, 1, 2)))
        uri = f"s3://library/{i // 1000:04d}/{i:07d}.jpg"
        record = {"caption": caption, "enhanced": False, "s3_uri": uri, "style": "detailed",
                  "keywords": keywords, "visible_text": visible, "models": {"vlm": PARAMS.vlm_model},
                  "usage": {}}  # fmt: skip
        when = start + timedelta(seconds=i)
        yield {"identity": f"{uri}@etag{i}", "params_key": PARAMS.key(), "s3_uri": uri, "bucket": "library",
               "key": uri[13:], "etag": f"etag{i}", "params": PARAMS.model_dump(), "record": record,
               "timings": {}, "caption": caption, "keywords": " ".join(keywords),
               "visible_text": " ".join(visible), "source": "batch", "status": "pending", "created_at": when,
               "updated_at": when}  # fmt: skip


async def fill(catalogue: Catalogue, count: int) -> float:
    started = time.perf_counter()
    batch: list[dict[str, Any]] = []
    for row in rows(count):
        batch.append(row)
        if len(batch) == INSERT_BATCH:
            await _insert(catalogue, batch)
            batch = []
    if batch:
        await _insert(catalogue, batch)
    return time.perf_counter() - started


async def _insert(catalogue: Catalogue, batch: list[dict[str, Any]]) -> None:
    async with catalogue.database.begin(600) as connection:
        await connection.execute(insert(captions), batch)


def queries(count: int) -> dict[str, list[str]]:
    """Two words a person might type. "specific": both from one stored caption, skipping the 30 commonest
    words (few matches). "common": two of the commonest 30-200 words (thousands of matches to rank)."""
    words, _ = vocabulary()
    rng = random.Random(5)
    specific: list[str] = []
    for row in rows(count * 3, seed=11):
        candidates = {w.lower().strip(".") for w in row["caption"].split()} - set(words[:30])
        if len(candidates) >= 2:
            specific.append(" ".join(rng.sample(sorted(candidates), 2)))
        if len(specific) == count:
            break
    common = [" ".join(rng.sample(words[30:200], 2)) for _ in range(count)]
    return {"specific": specific, "common": common}


async def bench_search(url: str, count: int, engine: str) -> dict[str, Any]:
    settings = Settings(DATABASE_URL=url, DATABASE_TIMEOUT_S=30)  # type: ignore[call-arg]
    async with open_catalogue(settings) as catalogue:
        reused = await catalogue.count() >= count  # a database kept from an earlier run (--sqlite-file, ...)
        fill_s = 0.0 if reused else await fill(catalogue, count)
        if not reused:
            await _analyze(catalogue)
        results = {kind: await _time_queries(catalogue, asked) for kind, asked in queries(QUERIES).items()}
        size = await _size(catalogue, url)
    mb = round(size / 1e6, 1)
    return {"engine": engine, "rows": count, "insert_s": round(fill_s, 1), "database_mb": mb, **results}


async def _time_queries(catalogue: Catalogue, asked: list[str]) -> dict[str, Any]:
    for q in asked[:20]:  # warm the caches, as a running service's are
        await catalogue.search(CaptionQuery(q=q, limit=50))
    timings, cpu, items = [], [], []
    for q in asked:
        start, start_cpu = time.perf_counter(), time.process_time()
        page = await catalogue.search(CaptionQuery(q=q, limit=50))
        timings.append((time.perf_counter() - start) * 1000)
        # This process's CPU, all threads: SQLite's whole query (aiosqlite's thread), PostgreSQL's client.
        cpu.append((time.process_time() - start_cpu) * 1000)
        items.append(len(page.items))
    return {"queries": len(timings), "p50_ms": _pct(timings, 0.5), "p95_ms": _pct(timings, 0.95),
            "p99_ms": _pct(timings, 0.99), "cpu_p95_ms": _pct(cpu, 0.95),
            "median_items": statistics.median(items)}  # fmt: skip


async def _analyze(catalogue: Catalogue) -> None:
    async with catalogue.database.begin(600) as connection:
        if catalogue.engine_name == "sqlite":
            await connection.execute(text("INSERT INTO captions_fts(captions_fts) VALUES ('optimize')"))
        await connection.execute(text("ANALYZE"))


async def _size(catalogue: Catalogue, url: str) -> int:
    if catalogue.engine_name == "sqlite":
        path = Path(url.split("///", 1)[1])
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    async with catalogue.database.connect() as connection:
        return int(
            (await connection.execute(select(func.pg_database_size(func.current_database())))).scalar_one()
        )


def table(results: dict[str, Any]) -> str:
    lines = ["| measure (one run) | value | target |", "| --- | --- | --- |"]
    if c := results.get("cached"):
        lines.append(
            f"| cached POST /caption vs GET /livez, p50 / p99 ({c['requests']} each, interleaved) | "
            f"{c['cached_p50_ms']} / {c['cached_p99_ms']} ms vs {c['livez_p50_ms']} / {c['livez_p99_ms']} ms:"
            " "
            f"**+{c['added_p50_ms']} ms** p50, +{c['added_p99_ms']} ms p99; {c['cache_hits']} hits, no model "
            "call | p50 ≤ +5 ms |"
        )
    for engine in ("sqlite", "postgresql"):
        if found := results.get(engine):
            lines.append(
                f"| {engine}, {found['rows']:,} rows: database size, time to fill | "
                f"{found['database_mb']} MB, {found['insert_s']} s | |"
            )
            for kind in ("specific", "common"):
                q = found[kind]
                lines.append(
                    f"| {engine}: two-word query ({kind} words), limit 50, p50 / p95 / p99 | "
                    f"{q['p50_ms']} / **{q['p95_ms']}** / {q['p99_ms']} ms (CPU p95 {q['cpu_p95_ms']} ms), "
                    f"{q['median_items']:g} items median | p95 ≤ 50 ms |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--skip", action="append", default=[], choices=["cached", "sqlite", "postgresql"])
    parser.add_argument("--sqlite-file", type=Path, help="keep (or reuse) the SQLite catalogue here")
    parser.add_argument("--postgresql-url", help="a PostgreSQL to fill (or reuse) instead of starting one")
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks" / "results" / "catalogue.json")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"loadavg_at_start": os.getloadavg()}
    if "cached" not in args.skip:
        print("- a cached answer's added latency ...", flush=True)
        results["cached"] = bench_cached(args.requests)
    if "sqlite" not in args.skip:
        print(f"- search over {args.rows:,} rows on SQLite ...", flush=True)
        if args.sqlite_file:
            url = f"sqlite+aiosqlite:///{args.sqlite_file.resolve()}"
            results["sqlite"] = asyncio.run(bench_search(url, args.rows, "sqlite"))
        else:
            with tempfile.TemporaryDirectory(prefix="florence-bench-sqlite-") as tmp:
                url = f"sqlite+aiosqlite:///{tmp}/c.db"
                results["sqlite"] = asyncio.run(bench_search(url, args.rows, "sqlite"))
    if "postgresql" not in args.skip:
        print(f"- search over {args.rows:,} rows on PostgreSQL ...", flush=True)
        if args.postgresql_url:
            results["postgresql"] = asyncio.run(bench_search(args.postgresql_url, args.rows, "postgresql"))
        else:
            server = start_postgres()
            try:
                results["postgresql"] = asyncio.run(bench_search(server.url, args.rows, "postgresql"))
            finally:
                server.close()
    results["loadavg_at_end"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(table(results))
    print(f"\nJSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
