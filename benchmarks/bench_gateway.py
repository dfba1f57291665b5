"""Benchmark of the gateway's own cost (issue 5): image preparation, throughput, CPU and memory.

    .venv/bin/python -m benchmarks.bench_gateway          # or: python benchmarks/bench_gateway.py

Starts a real S3 server (SeaweedFS ``weed mini``), two fake OpenAI-compatible backends in their own
processes (0 ms and 100 ms latency, raw asyncio, see ``benchmarks/fake_backend.py``) and the gateway
(``florence-tagger serve`` as a subprocess), then measures:

1. image preparation per image, naive Pillow (full decode, LANCZOS resize, JPEG re-encode) vs
   ``gateway.imaging.prepare_image``: 24 MP JPEG, 1 MP JPEG (in budget: forwarded byte-identical), 12 MP PNG;
2. with the 100 ms backend at concurrency 16: requests/s through the gateway vs straight to the backend
   with the very payload the gateway sent (recorded by the backend), and the latency the gateway adds;
3. with the 0 ms backend: requests/s of one worker and the gateway's CPU per request (from /proc);
4. peak RSS (VmHWM) of a fresh gateway under 64 concurrent ~20 MB JPEGs.

The machine has two cores shared by S3, the backends, the load generator and the gateway. To make the
throughput ratio measure the gateway and not the machine, the load uses small in-budget JPEGs (448x336,
forwarded as they are, so image work is ~0.3 ms), the load generator is a raw asyncio HTTP/1.1 client
(keep-alive, a fraction of httpx's CPU), and direct/gateway rounds are interleaved so that other jobs on
the machine hit both alike; the ratio is the median over rounds.

Writes ``benchmarks/results/latest.json`` and prints a table. Only 127.0.0.1; every process it starts is
stopped in ``finally``; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python benchmarks/bench_gateway.py`
    sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402

from gateway.imaging import PATCH, PixelBudget, fit_to_grid, prepare_image  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.processes import Proc, Procs, free_port, gateway_command  # noqa: E402
from tests.support.s3_server import S3Server, start_s3_server_when_free  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
BUCKET = "bench"
BUDGET = PixelBudget(1280 * PATCH * PATCH, 4 * PATCH * PATCH, 100_000_000)
CLK_TCK = os.sysconf("SC_CLK_TCK")
SMALL_SIZE = (448, 336)  # in budget: passed through; its proof-of-wholeness decode costs well under 1 ms
SMALL_OBJECTS = 16
BIG_OBJECTS = 4
REQUEST_TIMEOUT_S = 120.0

TARGETS = {
    "prep_24mp_ratio_max": 0.25,
    "throughput_ratio_min": 0.95,
    "added_p50_ms_max": 10.0,
    "cpu_ms_per_request_max": 3.0,
    "peak_rss_mb_max": 600.0,
}


# --------------------------------------------------------------------------------------------------
# image preparation
# --------------------------------------------------------------------------------------------------


def naive_prepare(data: bytes) -> bytes:
    """What a plain Pillow gateway does: decode everything, LANCZOS to the budget, re-encode."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
    target = fit_to_grid(*rgb.size, BUDGET)
    if rgb.size != target:
        rgb = rgb.resize(target, Image.Resampling.LANCZOS)
    out = io.BytesIO()
    rgb.save(out, format="JPEG", quality=92)
    return out.getvalue()


def ours_prepare(data: bytes) -> bytes:
    return prepare_image(data, BUDGET).jpeg


def png_of(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    with Image.open(io.BytesIO(jpeg)) as image:
        image.save(out, format="PNG", compress_level=6)
    return out.getvalue()


def median_ms(func: Callable[[bytes], bytes], data: bytes, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func(data)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def bench_image_prep(images: dict[str, bytes], repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for name, data in images.items():
        ours_prepare(data), naive_prepare(data)  # warm caches and lazy imports
        naive_runs, ours_runs = [], []
        for _ in range(repeats):  # interleaved, so load from other jobs hits both alike
            naive_runs.append(median_ms(naive_prepare, data, 1))
            ours_runs.append(median_ms(ours_prepare, data, 1))
        prepared = prepare_image(data, BUDGET)
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
        naive_ms, ours_ms = statistics.median(naive_runs), statistics.median(ours_runs)
        results[name] = {
            "source": f"{size[0]}x{size[1]} {Image.open(io.BytesIO(data)).format}",
            "source_bytes": len(data),
            "output": f"{prepared.width}x{prepared.height}",
            "output_bytes": len(prepared.jpeg),
            "passed_through": prepared.passed_through,
            "byte_identical": prepared.jpeg == data,
            "naive_ms": round(naive_ms, 2),
            "ours_ms": round(ours_ms, 2),
            "ratio": round(ours_ms / naive_ms, 3),
            "repeats": repeats,
        }
    return results


def image_cpu_ms(data: bytes, repeats: int = 200) -> float:
    """CPU of the gateway's image work for one small in-budget JPEG, to take out of CPU per request."""
    start = time.thread_time()
    for _ in range(repeats):
        prepare_image(data, BUDGET)
    return (time.thread_time() - start) * 1000 / repeats


# --------------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------------


@dataclass
class Stack:
    """The benchmark's processes and its S3 server, stopped together."""

    procs: Procs
    s3: S3Server | None = None

    @property
    def workdir(self) -> Path:
        return self.procs.workdir

    def stop(self, proc: Proc) -> None:
        self.procs.stop(proc)

    def close(self) -> None:
        self.procs.close()
        if self.s3 is not None:
            self.s3.stop()
            self.s3 = None


def start_backend(stack: Stack, delay_ms: float, record: Path | None = None) -> Proc:
    port = free_port()
    command = [sys.executable, str(ROOT / "benchmarks" / "fake_backend.py"), "--port", str(port)]
    command += ["--delay-ms", str(delay_ms)]
    if record is not None:
        command += ["--record", str(record)]
    proc = stack.procs.spawn(f"backend-{delay_ms:g}ms", command, port, cwd=ROOT)
    proc.wait_ready("/health")
    return proc


def start_gateway(stack: Stack, name: str, backend: Proc, extra_env: dict[str, str] | None = None) -> Proc:
    assert stack.s3 is not None
    port = free_port()
    env = {
        **os.environ,
        **stack.s3.env(),
        "VLM_BASE_URL": backend.url + "/v1",
        "GPT_OSS_BASE_URL": backend.url + "/v1",
        "USE_GPT_OSS": "false",
        # Every request here repeats a few objects: with the catalogue's cache on they would measure cache
        # hits (benchmarks/bench_catalogue.py measures those), not the pipeline.
        "CACHE": "off",
        "DATA_DIR": str(stack.workdir / f"{name}-data"),
        # This benchmark measures the gateway's cost, so it admits everything; shedding is bench_shedding's.
        "MAX_INFLIGHT": "100000",
        "MAX_QUEUED": "0",
        "MAX_LOOP_LAG_MS": "0",
        **(extra_env or {}),
    }
    proc = stack.procs.spawn(name, gateway_command(port, workers=1), port, env, cwd=ROOT)
    proc.wait_ready("/livez")
    return proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


# --------------------------------------------------------------------------------------------------
# load generator: raw asyncio HTTP/1.1 keep-alive client (cheap, so the gateway is what is measured)
# --------------------------------------------------------------------------------------------------


class Connection:
    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        head = (
            f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{self.port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        ).encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = next(
            int(v) for k, _, v in (x.partition(":") for x in lines[1:]) if k.lower() == "content-length"
        )
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@dataclass
class LoadResult:
    requests: int
    errors: int
    seconds: float
    latencies_ms: list[float]
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


async def run_load(
    port: int, path: str, bodies: list[bytes], concurrency: int, total: int, max_seconds: float
) -> LoadResult:
    counter = iter(range(total))
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    deadline = time.monotonic() + max_seconds

    async def worker() -> None:
        nonlocal errors
        conn = Connection(port)
        try:
            for i in counter:  # shared: all workers together send `total` requests
                if time.monotonic() > deadline:
                    return
                start = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(
                        conn.request(path, bodies[i % len(bodies)]), REQUEST_TIMEOUT_S
                    )
                except (OSError, asyncio.IncompleteReadError, TimeoutError, StopIteration, ValueError):
                    errors += 1
                    conn.close()
                    conn = Connection(port)
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
                if status != 200:
                    errors += 1
        finally:
            conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(len(latencies), errors, time.perf_counter() - start, latencies, statuses)


def caption_bodies(keys: list[str]) -> list[bytes]:
    return [json.dumps({"s3_uri": f"s3://{BUCKET}/{key}"}).encode() for key in keys]


# --------------------------------------------------------------------------------------------------
# the scenarios
# --------------------------------------------------------------------------------------------------


def bench_throughput(
    stack: Stack, small_keys: list[str], concurrency: int, per_round: int, rounds: int
) -> dict[str, Any]:
    record = stack.workdir / "vlm-request.json"
    backend = start_backend(stack, 100, record)
    gateway = start_gateway(stack, "gateway-100ms", backend)
    try:
        bodies = caption_bodies(small_keys)
        warm = asyncio.run(run_load(gateway.port, "/caption", bodies, concurrency, 4 * concurrency, 60))
        assert warm.errors == 0, f"warm-up failed: {warm.statuses}"
        vlm_payload = record.read_bytes()  # exactly what the gateway sent the backend
        direct_runs, gateway_runs = [], []
        asyncio.run(run_load(backend.port, "/v1/chat/completions", [vlm_payload], concurrency, 64, 30))
        for _ in range(rounds):
            direct_runs.append(
                asyncio.run(
                    run_load(backend.port, "/v1/chat/completions", [vlm_payload], concurrency, per_round, 120)
                )
            )
            gateway_runs.append(
                asyncio.run(run_load(gateway.port, "/caption", bodies, concurrency, per_round, 120))
            )
        ratios = [g.rps / d.rps for g, d in zip(gateway_runs, direct_runs, strict=True)]
        direct_lat = [x for r in direct_runs for x in r.latencies_ms]
        gateway_lat = [x for r in gateway_runs for x in r.latencies_ms]
        d_all = LoadResult(len(direct_lat), 0, 1, direct_lat, {})
        g_all = LoadResult(len(gateway_lat), 0, 1, gateway_lat, {})
        return {
            "backend_latency_ms": 100,
            "concurrency": concurrency,
            "requests_per_round": per_round,
            "rounds": rounds,
            "image": f"{SMALL_SIZE[0]}x{SMALL_SIZE[1]} JPEG, {SMALL_OBJECTS} objects, passed through",
            "vlm_payload_bytes": len(vlm_payload),
            "direct_rps": [round(r.rps, 1) for r in direct_runs],
            "gateway_rps": [round(r.rps, 1) for r in gateway_runs],
            "ratio_per_round": [round(r, 3) for r in ratios],
            "ratio": round(statistics.median(ratios), 3),
            "direct_p50_ms": round(d_all.pct(0.5), 2),
            "direct_p99_ms": round(d_all.pct(0.99), 2),
            "gateway_p50_ms": round(g_all.pct(0.5), 2),
            "gateway_p99_ms": round(g_all.pct(0.99), 2),
            "added_p50_ms": round(g_all.pct(0.5) - d_all.pct(0.5), 2),
            "added_p99_ms": round(g_all.pct(0.99) - d_all.pct(0.99), 2),
            "errors": sum(r.errors for r in direct_runs + gateway_runs),
        }
    finally:
        stack.stop(gateway)
        stack.stop(backend)


def bench_cpu(
    stack: Stack, small_keys: list[str], small_jpeg: bytes, concurrency: int, total: int
) -> dict[str, Any]:
    backend = start_backend(stack, 0)
    gateway = start_gateway(stack, "gateway-0ms", backend)
    try:
        bodies = caption_bodies(small_keys)
        warm = asyncio.run(run_load(gateway.port, "/caption", bodies, concurrency, 200, 60))
        assert warm.errors == 0, f"warm-up failed: {warm.statuses}"
        pid = gateway.process.pid
        cpu_before, backend_before = cpu_seconds(pid), cpu_seconds(backend.process.pid)
        loadgen_before = time.process_time()
        result = asyncio.run(run_load(gateway.port, "/caption", bodies, concurrency, total, 120))
        gateway_cpu = cpu_seconds(pid) - cpu_before
        backend_cpu = cpu_seconds(backend.process.pid) - backend_before
        loadgen_cpu = time.process_time() - loadgen_before
        image_ms = image_cpu_ms(small_jpeg)
        per_request = gateway_cpu * 1000 / result.requests
        return {
            "backend_latency_ms": 0,
            "workers": 1,
            "concurrency": concurrency,
            "requests": result.requests,
            "errors": result.errors,
            "rps": round(result.rps, 1),
            "p50_ms": round(result.pct(0.5), 2),
            "p99_ms": round(result.pct(0.99), 2),
            "gateway_cpu_ms_per_request_total": round(per_request, 3),
            "image_cpu_ms_per_request": round(image_ms, 3),
            "gateway_cpu_ms_per_request": round(per_request - image_ms, 3),
            "backend_cpu_ms_per_request": round(backend_cpu * 1000 / result.requests, 3),
            "loadgen_cpu_ms_per_request": round(loadgen_cpu * 1000 / result.requests, 3),
        }
    finally:
        stack.stop(gateway)
        stack.stop(backend)


def bench_rss(stack: Stack, big_keys: list[str], clients: int, big_bytes: int) -> dict[str, Any]:
    backend = start_backend(stack, 0)
    gateway = start_gateway(stack, "gateway-rss", backend)
    try:
        pid = gateway.process.pid
        asyncio.run(run_load(gateway.port, "/caption", caption_bodies(big_keys[:1]), 1, 1, 60))
        idle_kb = status_kb(pid, "VmHWM")
        start = time.perf_counter()
        result = asyncio.run(
            run_load(gateway.port, "/caption", caption_bodies(big_keys), clients, clients, 300)
        )
        seconds = time.perf_counter() - start
        peak_kb = status_kb(pid, "VmHWM")
        return {
            "clients": clients,
            "image": f"6000x4000 JPEG, {big_bytes / 1e6:.1f} MB, {len(big_keys)} objects",
            "requests": result.requests,
            "errors": result.errors,
            "statuses": {str(k): v for k, v in result.statuses.items()},
            "seconds": round(seconds, 2),
            "rss_after_one_image_mb": round(idle_kb / 1024, 1),
            "peak_rss_mb": round(peak_kb / 1024, 1),
        }
    finally:
        stack.stop(gateway)
        stack.stop(backend)


# --------------------------------------------------------------------------------------------------


def seed(s3: S3Server, objects: dict[str, bytes]) -> None:
    client: Any = s3.client()
    s3.create_bucket(BUCKET)
    for key, data in objects.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/jpeg")


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    print(f"- {name} ...", flush=True)
    start = time.perf_counter()
    yield
    print(f"  done in {time.perf_counter() - start:.1f} s", flush=True)


def table(results: dict[str, Any]) -> str:
    t = results["targets"]
    rows = [("measure", "value", "target", "met")]
    for name, r in results["image_prep"].items():
        extra = " (byte-identical)" if r["byte_identical"] else ""
        rows.append(
            (
                f"prep {name}: naive / ours",
                f"{r['naive_ms']:.1f} / {r['ours_ms']:.1f} ms = {r['ratio']:.2f}x{extra}",
                "<= 0.25x" if name == "24MP JPEG" else ("byte-identical" if name == "1MP JPEG" else "-"),
                _met(
                    r["ratio"] <= t["prep_24mp_ratio_max"]
                    if name == "24MP JPEG"
                    else (r["byte_identical"] if name == "1MP JPEG" else None)
                ),
            )
        )
    if "throughput" in results:
        th = results["throughput"]
        rows.append(
            (
                f"req/s c={th['concurrency']} 100 ms backend: gateway / direct",
                f"{statistics.median(th['gateway_rps']):.1f} / {statistics.median(th['direct_rps']):.1f}"
                f" = {th['ratio']:.3f}",
                ">= 0.95",
                _met(th["ratio"] >= t["throughput_ratio_min"]),
            )
        )
        rows.append(
            (
                "added latency p50 / p99",
                f"{th['added_p50_ms']:.1f} / {th['added_p99_ms']:.1f} ms",
                "p50 <= 10 ms",
                _met(th["added_p50_ms"] <= t["added_p50_ms_max"]),
            )
        )
    if "cpu" in results:
        c = results["cpu"]
        rows.append((f"req/s 1 worker c={c['concurrency']} 0 ms backend", f"{c['rps']:.0f}", "-", ""))
        rows.append(
            (
                "gateway CPU/request excl. image work",
                f"{c['gateway_cpu_ms_per_request']:.2f} ms"
                f" (total {c['gateway_cpu_ms_per_request_total']:.2f})",
                "<= 3 ms",
                _met(c["gateway_cpu_ms_per_request"] <= t["cpu_ms_per_request_max"]),
            )
        )
    if "rss" in results:
        m = results["rss"]
        rows.append(
            (
                f"peak RSS, {m['clients']} x {m['image'].split(',')[1].strip()} JPEGs",
                f"{m['peak_rss_mb']:.0f} MB, {m['errors']} failed",
                "<= 600 MB, 0 failed",
                _met(m["peak_rss_mb"] <= t["peak_rss_mb_max"] and m["errors"] == 0),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows)


def _met(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "NO")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and requests (a smoke run)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved direct/gateway rounds")
    parser.add_argument("--skip", action="append", default=[], choices=["prep", "throughput", "cpu", "rss"])
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quick = args.quick
    repeats = 3 if quick else 9
    per_round = 160 if quick else 800
    cpu_total = 500 if quick else 3000

    results: dict[str, Any] = {
        "command": "python -m benchmarks.bench_gateway" + (" --quick" if quick else ""),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "targets": TARGETS,
    }
    print("Generating images ...", flush=True)
    big = photo(6000, 4000)  # 24 MP, ~19.5 MB of noise: the "20 MB JPEG" of the memory test
    camera = photo(6000, 4000, blur=1)  # 24 MP, ~6.4 MB: the entropy of a camera photo, for image prep
    one_mp = photo(1120, 840)  # 0.94 MP: within the 1280*28*28 budget
    png_12mp = png_of(photo(4000, 3000))
    small = [photo(*SMALL_SIZE, quality=85 + i % 8) for i in range(SMALL_OBJECTS)]

    if "prep" not in args.skip:
        with stage("image preparation, naive Pillow vs ours"):
            results["image_prep"] = bench_image_prep(
                {"24MP JPEG": camera, "24MP JPEG, noise": big, "1MP JPEG": one_mp, "12MP PNG": png_12mp},
                repeats,
            )
    else:
        results["image_prep"] = {}

    with tempfile.TemporaryDirectory(prefix="florence-bench-") as workdir:
        stack = Stack(Procs(Path(workdir)))
        try:
            if {"throughput", "cpu", "rss"} - set(args.skip):
                with stage("starting the S3 server and seeding it"):
                    stack.s3 = start_s3_server_when_free()
                    small_keys = [f"small-{i}.jpg" for i in range(SMALL_OBJECTS)]
                    big_keys = [f"big-{i}.jpg" for i in range(BIG_OBJECTS)]
                    seed(stack.s3, dict(zip(small_keys, small, strict=True)) | dict.fromkeys(big_keys, big))
            if "throughput" not in args.skip:
                with stage(f"throughput, 100 ms backend, concurrency {args.concurrency}"):
                    results["throughput"] = bench_throughput(
                        stack, small_keys, args.concurrency, per_round, args.rounds
                    )
            if "cpu" not in args.skip:
                with stage("requests/s and CPU per request, 0 ms backend"):
                    results["cpu"] = bench_cpu(stack, small_keys, small[0], args.concurrency, cpu_total)
            if "rss" not in args.skip:
                with stage("peak RSS under 64 concurrent 20 MB JPEGs"):
                    results["rss"] = bench_rss(stack, big_keys, 64, len(big))
        finally:
            stack.close()

    results["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print()
    print(table(results))
    print(f"\nJSON: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
