"""The whole service on one machine without a GPU: S3, the tiny-model vLLM stack and the gateway.

Run through ``scripts/local-service``. Starts SeaweedFS as S3 (bucket ``demo`` with one sample photo),
the two vLLM CPU servers (tiny random models under the production ids) and ``florence-tagger serve`` on
127.0.0.1:8000, prints a curl that captions the sample and the review page's URL, and stops everything on
Ctrl-C. The captions are gibberish (random weights); the protocol, the image path and every error are real.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.images import photo  # noqa: E402
from tests.support.processes import Procs, gateway_command, run_until_one_exits  # noqa: E402
from tests.support.s3_server import start_s3_server  # noqa: E402
from tests.support.vllm_stack import CpuStack  # noqa: E402

BUCKET = "demo"
GATEWAY_PORT = int(os.environ.get("PORT", "8000"))


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)
    s3 = start_s3_server()
    procs = Procs(Path(tempfile.mkdtemp(prefix="florence-local-")))
    try:
        client: Any = s3.client()
        s3.create_bucket(BUCKET)
        client.put_object(Bucket=BUCKET, Key="sample.jpg", Body=photo(1600, 1200))
        print(f"S3       {s3.endpoint_url}  bucket '{BUCKET}' with sample.jpg", flush=True)
        stack = CpuStack.create()
        print(f"starting the vLLM CPU stack (about 1-2 minutes); logs in {stack.work_dir}", flush=True)
        with stack.running():
            env = {**os.environ, **stack.gateway_env(), **s3.env()}
            gateway = procs.spawn("gateway", gateway_command(GATEWAY_PORT), GATEWAY_PORT, env, cwd=REPO)
            gateway.wait_ready("/health")
            print(f"gateway log: {gateway.log_path}", flush=True)
            body = f'{{"s3_uri": "s3://{BUCKET}/sample.jpg", "use_gpt_oss": true}}'
            print(f"\nready: gateway on {gateway.url}; try", flush=True)
            print(f"  curl -s -X POST {gateway.url}/caption -H 'Content-Type: application/json' -d '{body}'")
            # Every caption is kept in the catalogue, so what the curl makes is on the review page.
            print(f"  open {gateway.url}/review   (the review page: captions beside their images)")
            print("Ctrl-C stops everything.", flush=True)
            run_until_one_exits([gateway.alive, *(server.is_running for server in stack.servers)])
            print("a process exited; stopping", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopping", flush=True)
        return 0
    finally:
        procs.close()
        s3.stop()


if __name__ == "__main__":
    sys.exit(main())
