"""Benchmark of the gateway's own cost (issues 5 and 16): image preparation, throughput, CPU, memory, prompts.

    .venv/bin/python -m benchmarks.bench_gateway [--before REF]     # or: python benchmarks/bench_gateway.py

Starts a real S3 server (SeaweedFS ``weed mini``), fake OpenAI-compatible backends in their own processes
(0 ms and 100 ms latency, raw asyncio, ``benchmarks/fake_backend.py``) and the gateway (``florence-tagger
serve`` as a subprocess), then measures, each section skippable with ``--skip``:

1. ``prep``: image preparation per image, naive Pillow (full decode, LANCZOS resize, JPEG re-encode) vs
   ``gateway.imaging.prepare_image``: 24 MP JPEG, 1 MP JPEG (in budget: forwarded byte-identical), 12 MP PNG;
2. ``throughput``: with the 100 ms backend at concurrency 16, requests/s through the gateway vs straight to
   the backend with the very payload the gateway sent (recorded by the backend), and the latency added;
3. ``cpu``: with the 0 ms backend, requests/s and the gateway's CPU per request (from /proc, image work
   taken out), with one worker and with ``--workers 2``;
4. ``rss``: peak RSS (VmHWM) of a fresh gateway under 64 concurrent ~20 MB JPEGs;
5. ``prefix``: vLLM's prefix-cache hits for 20 captions of one style on the real CPU vLLM server, the old
   prompt layout (image first) and the new (``benchmarks/prefix_cache.py``).

``--before REF`` also runs the gateway as it was at git commit REF (its ``gateway`` package unpacked into a
temp dir, same environment) in sections 2 and 3, interleaved with this tree's, and prints both side by side.

The machine has two cores shared by S3, the backends, the load generator and the gateway. To make the
throughput ratio measure the gateway and not the machine, the load uses small in-budget JPEGs (448x336,
forwarded as they are), the load generator is a raw asyncio HTTP/1.1 client (``benchmarks/load.py``), and
direct and gateway rounds are interleaved so that other jobs on the machine hit all alike; ratios are
medians over rounds. The load average is recorded at the start and the end of each section.

Writes ``benchmarks/results/latest.json`` and prints a table. Only 127.0.0.1; every process it starts is
stopped in ``finally``; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # also runnable as `python benchmarks/bench_gateway.py`
    sys.path.insert(0, str(ROOT))

from benchmarks.image_prep import bench_image_prep, image_cpu_ms, png_of  # noqa: E402
from benchmarks.load import LoadResult, run_load  # noqa: E402
from benchmarks.report import publish, table  # noqa: E402
from benchmarks.stack import (  # noqa: E402
    BUCKET,
    Stack,
    children,
    cpu_seconds,
    machine_ticks,
    seed,
    start_backend,
    start_gateway,
    status_kb,
    tree_at,
)
from tests.support.images import photo  # noqa: E402
from tests.support.processes import Proc, Procs  # noqa: E402
from tests.support.s3_server import start_s3_server_when_free  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "latest.json"
SMALL_SIZE = (448, 336)  # in budget: passed through; its proof-of-wholeness decode costs well under 1 ms
SMALL_OBJECTS = 16
BIG_OBJECTS = 4
SECTIONS = ("prep", "throughput", "cpu", "rss", "prefix")
CPU_ROUNDS = 3

TARGETS = {  # issue 16's (throughput, latency, CPU, prefix cache) and issue 5's (prep, memory)
    "prep_24mp_ratio_max": 0.25,
    "throughput_ratio_min": 0.90,
    "added_p50_ms_max": 15.0,
    "cpu_ms_per_request_max": 3.0,
    "peak_rss_mb_max": 600.0,
}
Variants = dict[str, Path | None]  # "now" -> this tree; "before" -> an older commit's gateway package


DISTINCT_REQUESTS = 20_000  # more than any section sends, so no two requests are alike


def caption_bodies(keys: list[str], count: int = DISTINCT_REQUESTS) -> list[bytes]:
    """Every request different (its own ``prompt``): identical concurrent requests share one computation
    (gateway/caching.py), which would measure coalescing, not the pipeline, and flatter every figure."""
    return [
        json.dumps({"s3_uri": f"s3://{BUCKET}/{keys[i % len(keys)]}", "prompt": f"request {i}"}).encode()
        for i in range(count)
    ]


def load(
    port: int, path: str, bodies: list[bytes], concurrency: int, total: int, seconds: float
) -> LoadResult:
    return asyncio.run(run_load(port, path, bodies, concurrency, total, seconds))


# --------------------------------------------------------------------------------------------------
# throughput and added latency, 100 ms backend
# --------------------------------------------------------------------------------------------------


def bench_throughput(
    stack: Stack, keys: list[str], concurrency: int, per_round: int, rounds: int, variants: Variants
) -> dict[str, Any]:
    record = stack.workdir / "vlm-request.json"
    backend = start_backend(stack, 100, record)
    gateways: dict[str, Proc] = {}
    try:
        bodies = caption_bodies(keys)
        for name, source in variants.items():
            gateways[name] = start_gateway(stack, f"gateway-100ms-{name}", backend, source=source)
            warm = load(gateways[name].port, "/caption", bodies, concurrency, 4 * concurrency, 60)
            assert warm.errors == 0, f"warm-up of {name} failed: {warm.statuses}"
        vlm_payload = record.read_bytes()  # exactly what the (first) gateway sent the backend
        direct = "/v1/chat/completions"
        load(backend.port, direct, [vlm_payload], concurrency, 64, 30)
        runs: dict[str, list[LoadResult]] = {"direct": [], **{name: [] for name in gateways}}
        for _ in range(rounds):  # interleaved: other jobs on the machine hit every variant alike
            runs["direct"].append(load(backend.port, direct, [vlm_payload], concurrency, per_round, 120))
            for name, gateway in gateways.items():
                runs[name].append(load(gateway.port, "/caption", bodies, concurrency, per_round, 120))
        return {
            "backend_latency_ms": 100,
            "concurrency": concurrency,
            "requests_per_round": per_round,
            "rounds": rounds,
            "image": f"{SMALL_SIZE[0]}x{SMALL_SIZE[1]} JPEG, {SMALL_OBJECTS} objects, passed through",
            "vlm_payload_bytes": len(vlm_payload),
            "direct_rps": [round(r.rps, 1) for r in runs["direct"]],
            "direct_p50_ms": round(merged(runs["direct"]).pct(0.5), 2),
            "variants": {name: versus_direct(runs[name], runs["direct"]) for name in gateways},
        }
    finally:
        for gateway in gateways.values():
            stack.stop(gateway)
        stack.stop(backend)


def merged(results: list[LoadResult]) -> LoadResult:
    latencies = [x for r in results for x in r.latencies_ms]
    return LoadResult(len(latencies), sum(r.errors for r in results), 1, latencies, {})


def versus_direct(gateway: list[LoadResult], direct: list[LoadResult]) -> dict[str, Any]:
    ratios = [g.rps / d.rps for g, d in zip(gateway, direct, strict=True)]
    g_all, d_all = merged(gateway), merged(direct)
    return {
        "gateway_rps": [round(r.rps, 1) for r in gateway],
        "ratio_per_round": [round(r, 3) for r in ratios],
        "ratio": round(statistics.median(ratios), 3),
        "gateway_p50_ms": round(g_all.pct(0.5), 2),
        "gateway_p99_ms": round(g_all.pct(0.99), 2),
        "added_p50_ms": round(g_all.pct(0.5) - d_all.pct(0.5), 2),
        "added_p99_ms": round(g_all.pct(0.99) - d_all.pct(0.99), 2),
        "errors": g_all.errors,
    }


# --------------------------------------------------------------------------------------------------
# requests/s and CPU per request, 0 ms backend
# --------------------------------------------------------------------------------------------------


def bench_cpu(
    stack: Stack, keys: list[str], small_jpeg: bytes, concurrency: int, total: int, variants: Variants
) -> dict[str, Any]:
    """Every gateway started at once and loaded in turn, round after round, so that what else runs on the
    machine weighs on each alike; CPU is summed over the rounds, requests/s is the median round."""
    backend = start_backend(stack, 0)
    runs = {name: CpuRun(stack, backend, f"w1-{name}", source=source) for name, source in variants.items()}
    # Two workers on two cores that S3, the backend and the load generator share too.
    runs["workers_2"] = CpuRun(stack, backend, "w2-now", workers=2)
    try:
        bodies = caption_bodies(keys)
        for run in runs.values():
            run.warm(bodies, concurrency)
        for _ in range(CPU_ROUNDS):
            for run in runs.values():
                run.round(bodies, concurrency, total // CPU_ROUNDS)
        image_ms = image_cpu_ms(small_jpeg)
        figures = {name: run.figures(image_ms) for name, run in runs.items()}
    finally:
        for run in runs.values():
            stack.stop(run.gateway)
        stack.stop(backend)
    two = figures.pop("workers_2")
    return {
        "backend_latency_ms": 0,
        "concurrency": concurrency,
        "rounds": CPU_ROUNDS,
        "image_cpu_ms_per_request": round(image_ms, 3),
        "variants": figures,
        "workers_2": two,
        "workers_2_over_1_rps": round(two["rps"] / figures["now"]["rps"], 2),
    }


class CpuRun:
    """One gateway under the 0 ms backend: its CPU (all worker processes) and the load generator's."""

    def __init__(
        self, stack: Stack, backend: Proc, name: str, *, workers: int = 1, source: Path | None = None
    ) -> None:
        self.workers = workers
        self.backend = backend
        self.gateway = start_gateway(stack, f"gateway-0ms-{name}", backend, workers=workers, source=source)
        self.s3_pid = stack.s3.process.pid if stack.s3 is not None else 0
        self.results: list[LoadResult] = []
        self.cpu = self.backend_cpu = self.loadgen_cpu = self.s3_cpu = 0.0
        self.busy = self.ticks = 0

    def warm(self, bodies: list[bytes], concurrency: int) -> None:
        warm = load(self.gateway.port, "/caption", bodies, concurrency, 200, 60)
        assert warm.errors == 0, f"warm-up failed: {warm.statuses}"

    def _pids(self) -> list[int]:
        pid = self.gateway.process.pid
        return children(pid) if self.workers > 1 else [pid]

    def round(self, bodies: list[bytes], concurrency: int, requests: int) -> None:
        pids, backend_pid = self._pids(), self.backend.process.pid
        cpu, backend, s3 = sum(map(cpu_seconds, pids)), cpu_seconds(backend_pid), cpu_seconds(self.s3_pid)
        loadgen, (busy, ticks) = time.process_time(), machine_ticks()
        self.results.append(load(self.gateway.port, "/caption", bodies, concurrency, requests, 120))
        self.cpu += sum(map(cpu_seconds, pids)) - cpu
        self.backend_cpu += cpu_seconds(backend_pid) - backend
        self.s3_cpu += cpu_seconds(self.s3_pid) - s3
        self.loadgen_cpu += time.process_time() - loadgen
        busy_after, ticks_after = machine_ticks()
        self.busy, self.ticks = self.busy + busy_after - busy, self.ticks + ticks_after - ticks

    def figures(self, image_ms: float) -> dict[str, Any]:
        everything = merged(self.results)
        per_request = self.cpu * 1000 / everything.requests
        return {
            "workers": self.workers,
            "requests": everything.requests,
            "errors": everything.errors,
            "rps_per_round": [round(r.rps, 1) for r in self.results],
            "rps": round(statistics.median(r.rps for r in self.results), 1),
            "p50_ms": round(everything.pct(0.5), 2),
            "p99_ms": round(everything.pct(0.99), 2),
            "gateway_cpu_ms_per_request_total": round(per_request, 3),
            "gateway_cpu_ms_per_request": round(per_request - image_ms, 3),
            "backend_cpu_ms_per_request": round(self.backend_cpu * 1000 / everything.requests, 3),
            "s3_server_cpu_ms_per_request": round(self.s3_cpu * 1000 / everything.requests, 3),
            "loadgen_cpu_ms_per_request": round(self.loadgen_cpu * 1000 / everything.requests, 3),
            # Of the machine's cores, how many were busy during the rounds, with anyone's work.
            "machine_busy_cores": round(self.busy / max(1, self.ticks) * (os.cpu_count() or 1), 2),
        }


# --------------------------------------------------------------------------------------------------
# peak memory
# --------------------------------------------------------------------------------------------------


def bench_rss(stack: Stack, big_keys: list[str], clients: int, big_bytes: int) -> dict[str, Any]:
    backend = start_backend(stack, 0)
    gateway = start_gateway(stack, "gateway-rss", backend)
    try:
        pid = gateway.process.pid
        load(gateway.port, "/caption", caption_bodies(big_keys[:1]), 1, 1, 60)
        idle_kb = status_kb(pid, "VmHWM")
        start = time.perf_counter()
        result = load(gateway.port, "/caption", caption_bodies(big_keys), clients, clients, 300)
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


@contextlib.contextmanager
def stage(results: dict[str, Any], key: str, title: str) -> Iterator[None]:
    print(f"- {title} ...", flush=True)
    start, load_start = time.perf_counter(), os.getloadavg()[0]
    yield
    loads = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    results["loadavg_1min"][key] = loads
    print(
        f"  done in {time.perf_counter() - start:.1f} s (load average {loads[0]} -> {loads[1]})", flush=True
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and requests (a smoke run)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved direct/gateway rounds")
    parser.add_argument("--before", metavar="REF", help="also measure the gateway at this git commit")
    parser.add_argument("--skip", action="append", default=[], choices=SECTIONS)
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def run_sections(args: argparse.Namespace, results: dict[str, Any], workdir: Path) -> None:
    quick, skip = args.quick, set(args.skip)
    small = [photo(*SMALL_SIZE, quality=85 + i % 8) for i in range(SMALL_OBJECTS)]
    big = photo(6000, 4000)  # 24 MP, ~19.5 MB of noise: the "20 MB JPEG" of the memory test
    if "prep" not in skip:
        camera = photo(6000, 4000, blur=1)  # 24 MP, ~6.4 MB: the entropy of a camera photo
        images = {"24MP JPEG": camera, "24MP JPEG, noise": big, "1MP JPEG": photo(1120, 840)}
        images["12MP PNG"] = png_of(photo(4000, 3000))
        with stage(results, "prep", "image preparation, naive Pillow vs ours"):
            results["image_prep"] = bench_image_prep(images, 3 if quick else 9)
    variants: Variants = {"now": None}
    if args.before:
        variants["before"] = tree_at(args.before, workdir / "before")
    if "prefix" not in skip:  # first, and stopped after: vLLM must not share the cores with what follows
        from benchmarks.prefix_cache import bench_prefix_cache

        with stage(results, "prefix", "vLLM prefix cache, 20 captions of one style, CPU stack"):
            results["prefix_cache"] = bench_prefix_cache(10 if quick else 20)
    if not {"throughput", "cpu", "rss"} - skip:
        return
    stack = Stack(Procs(workdir))
    try:
        stack.s3 = start_s3_server_when_free()
        keys = [f"small-{i}.jpg" for i in range(SMALL_OBJECTS)]
        big_keys = [f"big-{i}.jpg" for i in range(BIG_OBJECTS)]
        seed(stack.s3, dict(zip(keys, small, strict=True)) | dict.fromkeys(big_keys, big))
        if "throughput" not in skip:
            with stage(results, "throughput", f"throughput, 100 ms backend, concurrency {args.concurrency}"):
                per_round = 160 if quick else 800
                results["throughput"] = bench_throughput(
                    stack, keys, args.concurrency, per_round, args.rounds, variants
                )
        if "cpu" not in skip:
            with stage(results, "cpu", "requests/s and CPU per request, 0 ms backend, 1 and 2 workers"):
                total = 500 if quick else 3000
                results["cpu"] = bench_cpu(stack, keys, small[0], args.concurrency, total, variants)
        if "rss" not in skip:
            with stage(results, "rss", "peak RSS under 64 concurrent 20 MB JPEGs"):
                results["rss"] = bench_rss(stack, big_keys, 64, len(big))
    finally:
        stack.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    given = sys.argv[1:] if argv is None else argv
    results: dict[str, Any] = {
        "command": " ".join(["python -m benchmarks.bench_gateway", *given]),
        "before": args.before,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "loadavg_1min": {"start": round(os.getloadavg()[0], 2)},
        "targets": TARGETS,
    }
    with tempfile.TemporaryDirectory(prefix="florence-bench-") as workdir:
        run_sections(args, results, Path(workdir))
    results["loadavg_1min"]["end"] = round(os.getloadavg()[0], 2)
    publish(results, args.output, table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
