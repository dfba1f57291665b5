"""Batch throughput against a 100 ms backend: images/s at --concurrency 1, 8 and 32 (issue 7; not a test).

    .venv/bin/python benchmarks/bench_batch.py [--images 200]

Starts a real S3 server (SeaweedFS), the fake backend of ``benchmarks/fake_backend.py`` in its own process
with 100 ms latency, seeds small JPEGs, and runs ``florence-tagger batch`` as a subprocess per level.
With a fixed 100 ms backend the ceiling is concurrency / 0.1 s, so the ratio to that ceiling shows what the
batch engine itself costs. Everything it starts is stopped in ``finally``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.support.images import photo  # noqa: E402
from tests.support.processes import Procs, free_port  # noqa: E402
from tests.support.s3_server import start_s3_server_when_free  # noqa: E402

LEVELS = (1, 8, 32)
DELAY_MS = 100


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=200)
    args = parser.parse_args()
    s3 = start_s3_server_when_free()
    tmp = tempfile.mkdtemp(prefix="florence-bench-batch-")
    procs = Procs(Path(tmp))
    try:
        port = free_port()
        command = [sys.executable, str(ROOT / "benchmarks" / "fake_backend.py"), "--port", str(port)]
        backend = procs.spawn("backend", [*command, "--delay-ms", str(DELAY_MS)], port, cwd=ROOT)
        backend.wait_ready("/health")
        client: Any = s3.client()
        s3.create_bucket("bench")
        blobs = [photo(320 + 8 * i, 240, quality=85) for i in range(10)]
        for i in range(args.images):
            client.put_object(Bucket="bench", Key=f"in/{i:05d}.jpg", Body=blobs[i % 10])
        env = {**os.environ, **s3.env(), "VLM_BASE_URL": backend.url + "/v1", "LOG_LEVEL": "warning"}
        cli = str(Path(sys.executable).with_name("florence-tagger"))
        print(f"{args.images} images, {DELAY_MS} ms backend")
        print(f"{'concurrency':>11} {'images/s':>9} {'ceiling':>8} {'of ceiling':>10} {'wall img/s':>9}")
        for level in LEVELS:
            out = Path(tmp) / f"c{level}.jsonl"
            started = time.perf_counter()
            done = subprocess.run(
                [cli, "batch", "s3://bench/in/", "--out", str(out), "--concurrency", str(level)],
                env=env,
                check=True,
                capture_output=True,
            )
            wall = args.images / (time.perf_counter() - started)  # process start-up included
            # The summary's rate: from the first listing to the last line, without interpreter start-up.
            rate = float(done.stdout.decode().rsplit(" images/s", 1)[0].rsplit(" ", 1)[1])
            ceiling = level * 1000 / DELAY_MS
            print(f"{level:>11} {rate:>9.1f} {ceiling:>8.0f} {rate / ceiling:>10.0%} {wall:>9.1f}")
    finally:
        procs.close()
        s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
