"""The benchmarks' processes: S3 (SeaweedFS), fake backends, and gateways, this tree's or an older commit's.

Processes start with the tests' helpers (``tests/support/processes.py``) and stop together in ``close``.
A gateway can run from another source tree (``tree_at(ref)`` unpacks a commit's ``gateway`` package):
``python -m gateway.cli`` puts its working directory first on ``sys.path``, so that tree's code runs in
this environment, and "before" and "now" are measured in one run, on the same machine, under the same load.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import Proc, Procs, free_port, gateway_command
from tests.support.s3_server import S3Server

ROOT = Path(__file__).resolve().parents[1]
BUCKET = "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def start_gateway(
    stack: Stack,
    name: str,
    backend: Proc,
    extra_env: dict[str, str] | None = None,
    *,
    workers: int = 1,
    source: Path | None = None,
    profile_to: Path | None = None,
) -> Proc:
    """``florence-tagger serve`` on the benchmark's S3 and ``backend``, from ``source`` (default: this tree);
    under cProfile with ``profile_to``."""
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
    command = gateway_command(port, workers=workers)
    if profile_to is not None:
        # [python, -m, gateway.cli, serve, ...] -> the same serve under cProfile (profile_gateway.py)
        profiled = [command[0], "-m", "benchmarks.profile_gateway", "--serve-profiled", str(profile_to)]
        command = [*profiled, *command[3:]]
    proc = stack.procs.spawn(name, command, port, env, cwd=source or ROOT)
    proc.wait_ready("/livez")
    return proc


def tree_at(ref: str, into: Path) -> Path:
    """The ``gateway`` package as it was at ``ref``, unpacked under ``into`` (no checkout, no worktree)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", ref, "gateway"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (fields 14 and 15 of /proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_ticks() -> tuple[int, int]:
    """(busy, all) CPU ticks of the whole machine since boot, every process of every user (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def children(pid: int) -> list[int]:
    """A process's child processes (uvicorn's workers)."""
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def seed(s3: S3Server, objects: dict[str, bytes]) -> None:
    client: Any = s3.client()
    s3.create_bucket(BUCKET)
    for key, data in objects.items():
        client.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/jpeg")
