"""The whole service on one machine without a GPU: S3, the tiny-model vLLM stack and the gateway.

Run through ``scripts/local-service``. Starts SeaweedFS as S3 (bucket ``demo`` with one sample photo),
the two vLLM CPU servers (tiny random models under the production ids) and ``florence-tagger serve`` on
127.0.0.1:8000, prints a curl that captions the sample, and stops everything on Ctrl-C. The captions are
gibberish (random weights); the protocol, the image path and every error are real.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.images import photo  # noqa: E402
from tests.support.s3_server import ACCESS_KEY, SECRET_KEY, start_s3_server  # noqa: E402
from tests.support.vllm_stack import CpuStack  # noqa: E402

BUCKET = "demo"
GATEWAY_PORT = int(os.environ.get("PORT", "8000"))
READY_TIMEOUT_S = 60.0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def wait_for_gateway(process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{GATEWAY_PORT}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # not listening yet; the deadline bounds the wait
        time.sleep(0.5)
    raise RuntimeError(f"the gateway did not become ready in {READY_TIMEOUT_S:g} s")


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    s3 = start_s3_server()
    gateway: subprocess.Popen[bytes] | None = None
    try:
        client: Any = s3.client()
        client.create_bucket(Bucket=BUCKET)
        client.put_object(Bucket=BUCKET, Key="sample.jpg", Body=photo(1600, 1200))
        print(f"S3       {s3.endpoint_url}  bucket '{BUCKET}' with sample.jpg", flush=True)
        stack = CpuStack.create()
        print(f"starting the vLLM CPU stack (about 1-2 minutes); logs in {stack.work_dir}", flush=True)
        with stack.running():
            env = {
                **os.environ,
                **stack.gateway_env(),
                "S3_ENDPOINT_URL": s3.endpoint_url,
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            }
            command = [str(Path(sys.executable).with_name("florence-tagger")), "serve", "--host", "127.0.0.1"]
            gateway = subprocess.Popen([*command, "--port", str(GATEWAY_PORT)], env=env)  # noqa: S603
            wait_for_gateway(gateway)
            url = f"http://127.0.0.1:{GATEWAY_PORT}"
            body = f'{{"s3_uri": "s3://{BUCKET}/sample.jpg", "use_gpt_oss": true}}'
            print(f"\nready: gateway on {url}; try", flush=True)
            print(f"  curl -s -X POST {url}/caption -H 'Content-Type: application/json' -d '{body}'")
            print("Ctrl-C stops everything.", flush=True)
            while gateway.poll() is None and all(s.is_running() for s in stack.servers):
                time.sleep(1.0)
            print("a process exited; stopping", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopping", flush=True)
        return 0
    finally:
        try:
            if gateway is not None and gateway.poll() is None:
                gateway.terminate()
                gateway.wait(timeout=15)
        except subprocess.TimeoutExpired:
            gateway.kill()
        finally:
            s3.stop()


if __name__ == "__main__":
    sys.exit(main())
