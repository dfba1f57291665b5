"""``florence-tagger serve`` as it runs in production: worker processes on uvloop and httptools."""

from __future__ import annotations

import os
from pathlib import Path

from tests.support.processes import Procs, free_port, gateway_command


def children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def loaded_extensions(pid: int) -> str:
    """The shared objects a process has mapped: which C extensions it actually imported."""
    return Path(f"/proc/{pid}/maps").read_text()


def test_serve_workers_run_on_uvloop_and_httptools(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "VLM_BASE_URL": "http://127.0.0.1:9/v1", "S3_ENDPOINT_URL": "http://127.0.0.1:9"}
    procs = Procs(tmp_path)
    try:
        server = procs.spawn("gateway", gateway_command(port, workers=2), port, env)
        server.wait_ready("/livez")
        workers = children(server.process.pid)
        maps = [loaded_extensions(pid) for pid in workers]
    finally:
        procs.close()
    assert len(workers) >= 2  # two workers (a multiprocessing helper may be a child too)
    serving = [m for m in maps if "/uvloop/" in m]
    assert len(serving) == 2, "each worker runs uvloop's event loop"
    assert all("/httptools/" in m for m in serving), "each worker parses HTTP with httptools"
