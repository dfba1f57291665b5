"""Processes the tests, benchmarks and scripts start: free ports, readiness, logs, stopping, supervising.

One set of helpers, so a server started by a test, a benchmark or ``scripts/local-service`` is started,
awaited and stopped the same way.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

HOST = "127.0.0.1"
READY_TIMEOUT_S = 60.0
LOG_TAIL_LINES = 30


def free_port(below: int = 55535) -> int:
    """A free TCP port on 127.0.0.1; SeaweedFS adds 10000 for gRPC, so stay below 55535."""
    while True:
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port < below:
            return port


def gateway_command(port: int, *, workers: int | None = None) -> list[str]:
    """``florence-tagger serve`` on 127.0.0.1 from this interpreter's environment."""
    command = [sys.executable, "-m", "gateway.cli", "serve", "--host", HOST, "--port", str(port)]
    return command + (["--workers", str(workers)] if workers else [])


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


def stop_group(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM a process started with ``start_new_session``, and its children, then SIGKILL what is left."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout_s)
    # The leader may be gone while its children linger: kill the group anyway.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a log file, for an error message."""
    try:
        with path.open("rb") as handle:
            last = collections.deque(handle, maxlen=lines)
    except OSError:
        return "(no log)"
    return b"".join(last).decode("utf-8", "replace")


def wait_until_ready(
    url: str,
    *,
    alive: Callable[[], bool],
    what: str,
    timeout_s: float = READY_TIMEOUT_S,
    log: Path | None = None,
) -> float:
    """Poll ``url`` until it answers 200; fail at once when ``alive()`` turns false. Returns the seconds."""
    started = time.monotonic()
    with httpx.Client(timeout=2.0) as client:
        while True:
            if not alive():
                raise RuntimeError(f"{what} exited before it was ready\n{tail(log) if log else ''}")
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise RuntimeError(f"{what} not ready after {timeout_s:g} s\n{tail(log) if log else ''}")
            time.sleep(0.2)


def run_until_one_exits(alive: Iterable[Callable[[], bool]], poll_s: float = 1.0) -> None:
    """Blocks while every process is alive (Ctrl-C raises KeyboardInterrupt out of the sleep)."""
    checks = list(alive)
    while all(check() for check in checks):
        time.sleep(poll_s)


@dataclass
class Proc:
    """A process with its log file and port, started in its own session (its children stop with it)."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, path: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        wait_until_ready(
            self.url + path, alive=self.alive, what=self.name, timeout_s=timeout_s, log=self.log_path
        )

    def stop(self) -> None:
        stop_group(self.process)


@dataclass
class Procs:
    """Processes started together and stopped together, last first, whatever happens."""

    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def spawn(
        self,
        name: str,
        command: Sequence[str],
        port: int,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Proc:
        log_path = self.workdir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
            )
        proc = Proc(name, process, port, log_path)
        self.procs.append(proc)
        return proc

    def stop(self, proc: Proc) -> None:
        proc.stop()
        if proc in self.procs:
            self.procs.remove(proc)

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
