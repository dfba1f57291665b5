"""Run the real vLLM CPU stack: two ``vllm serve`` processes on tiny random models.

Production runs Qwen/Qwen2.5-VL-7B-Instruct (port 8001) and openai/gpt-oss-120b (port 8002) on GPUs.
Here the same vLLM code serves miniatures of both (``deploy/cpu-stack/build_models.py``) under the
production model ids, so the gateway's defaults, ``/health`` and request shapes hold unchanged.

This module is imported by the gateway's pytest venv, which has neither vllm nor torch: it uses only
the standard library and httpx, and reaches vLLM through subprocesses in the separate vLLM venv
(``scripts/setup-cpu-stack``). It is also the implementation behind ``scripts/dev-stack``
(``python tests/support/vllm_stack.py serve``).

    stack = CpuStack.create()          # sets up the venv and builds the models if needed
    stack.start(); stack.wait_ready()  # or: with stack.running(): ...
    stack.vlm_url                      # "http://127.0.0.1:PORT/v1"
    stack.vlm.restart()                # stop (SIGTERM, then SIGKILL) and start again
    stack.stop()
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tests.support.processes import HOST, free_port, run_until_one_exits, stop_group, tail, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
SETUP_SCRIPT = REPO_ROOT / "scripts" / "setup-cpu-stack"
STACK_DIR = REPO_ROOT / "deploy" / "cpu-stack"
BUILD_SCRIPT = STACK_DIR / "build_models.py"
LAUNCHER = STACK_DIR / "vllm_launcher.py"

VLM_MODEL_ID = "Qwen/Qwen2.5-VL-7B-Instruct"
GPT_OSS_MODEL_ID = "openai/gpt-oss-120b"
DEFAULT_VLM_PORT = 8001
DEFAULT_GPT_OSS_PORT = 8002

# Production's serving flags, sized for a 2-core CPU box.
COMMON_SERVE_ARGS = (
    "--dtype", "bfloat16",
    "--max-model-len", "4096",
    "--max-num-seqs", "4",
    "--max-num-batched-tokens", "4096",
    "--enforce-eager",
)  # fmt: skip
# Compact JSON for structured outputs, as in production (docker-compose.yml): xgrammar's default grammar
# lets a model emit whitespace between JSON tokens until max_tokens (the tiny models do, at temperature 0).
STRUCTURED_ARGS = ("--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}')
# Prefix caching as in production (on by default in vLLM 0.32 for this model; named, as compose does).
VLM_SERVE_ARGS = (
    "--limit-mm-per-prompt",
    '{"image": 1, "video": 0}',
    "--enable-prefix-caching",
    *STRUCTURED_ARGS,
)
# vLLM 0.32's name for gpt-oss's harmony reasoning parser (fills message.reasoning).
GPT_OSS_SERVE_ARGS = ("--reasoning-parser", "openai_gptoss", *STRUCTURED_ARGS)

SETUP_TIMEOUT_S = 1800.0  # a fresh venv downloads ~3.5 GB of wheels
BUILD_TIMEOUT_S = 600.0
READY_TIMEOUT_S = 300.0  # ~50-100 s for both on 2 cores
STOP_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 60


class StackError(RuntimeError):
    """The CPU stack could not be set up, started or reached; the message says why."""


def venv_dir() -> Path:
    return Path(os.environ.get("CPU_STACK_VENV", REPO_ROOT / ".venv-vllm"))


def venv_python() -> Path:
    return venv_dir() / "bin" / "python"


def _run(command: Sequence[str], what: str, timeout: float) -> str:
    """Run a setup step; raise StackError with its output's tail when it fails."""
    try:
        result = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout, check=False, cwd=REPO_ROOT
        )
    except subprocess.TimeoutExpired as exc:
        raise StackError(f"{what} timed out after {timeout:.0f} s: {' '.join(command)}") from exc
    except OSError as exc:
        raise StackError(f"{what} could not run: {exc}") from exc
    if result.returncode != 0:
        raise StackError(
            f"{what} failed (exit {result.returncode}): {' '.join(command)}\n"
            + "\n".join((result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
        )
    return result.stdout


def ensure_venv(timeout: float = SETUP_TIMEOUT_S) -> Path:
    """Create the vLLM venv unless it is already current (instant then); return its python."""
    _run(["bash", str(SETUP_SCRIPT)], "scripts/setup-cpu-stack", timeout)
    return venv_python()


@dataclass(frozen=True)
class ModelDirs:
    vlm: Path
    gpt_oss: Path


def ensure_models(cache_root: Path | None = None, timeout: float = BUILD_TIMEOUT_S) -> ModelDirs:
    """Build the tiny models unless cached (keyed on the build script); return their directories."""
    command = [str(venv_python()), str(BUILD_SCRIPT), "--json"]
    if cache_root is not None:
        command += ["--cache-root", str(cache_root)]
    output = _run(command, "deploy/cpu-stack/build_models.py", timeout)
    paths = json.loads(output.strip().splitlines()[-1])
    return ModelDirs(vlm=Path(paths["vlm"]), gpt_oss=Path(paths["gpt_oss"]))


def server_env(cache_dir: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a vLLM server: offline, CPU, small KV cache, no telemetry, no writes to ~/.cache."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "VLLM_TARGET_DEVICE": "cpu",
            "VLLM_CPU_KVCACHE_SPACE": "1",
            "VLLM_CACHE_ROOT": str(cache_dir / "vllm"),
            "HF_HOME": str(cache_dir / "huggingface"),
            "XDG_CACHE_HOME": str(cache_dir),
            "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # The gateway's venv must not leak into the vLLM venv's interpreter.
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    return env


class VllmServer:
    """One ``vllm serve`` process group, logging to a file; restartable on the same port."""

    def __init__(
        self,
        name: str,
        model_dir: Path,
        served_model_name: str,
        port: int,
        log_dir: Path,
        cache_dir: Path,
        extra_args: Sequence[str] = (),
        host: str = HOST,
    ) -> None:
        self.name = name
        self.model_dir = model_dir
        self.served_model_name = served_model_name
        self.port = port
        self.host = host
        self.extra_args = tuple(extra_args)
        self.log_path = log_dir / f"{name}.log"
        self.cache_dir = cache_dir
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def root_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """OpenAI base URL, e.g. http://127.0.0.1:8001/v1."""
        return f"{self.root_url}/v1"

    @property
    def health_url(self) -> str:
        return f"{self.root_url}/health"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def command(self) -> list[str]:
        return [
            str(venv_python()), str(LAUNCHER), "serve", str(self.model_dir),
            "--served-model-name", self.served_model_name,
            "--host", self.host,
            "--port", str(self.port),
            *COMMON_SERVE_ARGS,
            *self.extra_args,
        ]  # fmt: skip

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.is_running():
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log_path.open("ab")
        self._log_file.write(
            f"\n===== {time.strftime('%H:%M:%S')} start: {' '.join(self.command())}\n".encode()
        )
        self._log_file.flush()
        # A new session makes the API server, its EngineCore and its worker one process group,
        # so stop() can signal them together and nothing outlives the test run.
        self._process = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=server_env(self.cache_dir),
            cwd=REPO_ROOT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Block until GET /health answers 200; return the seconds waited.

        Raises StackError with the log's tail at once if the process exits, or after ``timeout``.
        """
        try:
            return wait_until_ready(
                self.health_url, alive=self.is_running, what=f"{self.name} vLLM server", timeout_s=timeout
            )
        except RuntimeError as exc:
            raise StackError(f"{str(exc).strip()}\n{self.describe()}") from None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM the whole process group, then SIGKILL whatever is left after ``timeout``."""
        process, self._process = self._process, None
        if process is not None:
            stop_group(process, timeout)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def restart(self, timeout: float = READY_TIMEOUT_S) -> float:
        self.stop()
        self.start()
        return self.wait_ready(timeout)

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return tail(self.log_path, lines)

    def describe(self) -> str:
        command = " ".join(self.command())
        return f"command: {command}\nlog: {self.log_path}\n--- last lines ---\n{self.log_tail()}"

    def __repr__(self) -> str:
        return f"VllmServer({self.name!r}, {self.url}, running={self.is_running()})"


class CpuStack:
    """Both servers: ``vlm`` (Qwen2.5-VL) and ``gpt_oss``, with their OpenAI base URLs."""

    def __init__(self, vlm: VllmServer, gpt_oss: VllmServer, work_dir: Path) -> None:
        self.vlm = vlm
        self.gpt_oss = gpt_oss
        self.work_dir = work_dir

    @classmethod
    def create(
        cls,
        work_dir: Path | None = None,
        vlm_port: int | None = None,
        gpt_oss_port: int | None = None,
        model_cache_root: Path | None = None,
        vlm_args: Sequence[str] = (),
    ) -> CpuStack:
        """Set up the venv and models (cached), and prepare, without starting, both servers.

        Ports default to free ones; ``work_dir`` (default: a new temp dir) holds logs and vLLM's caches;
        ``vlm_args`` are extra ``vllm serve`` flags for the VLM (e.g. ``--block-size 16``).
        """
        ensure_venv()
        models = ensure_models(model_cache_root)
        work_dir = Path(tempfile.mkdtemp(prefix="cpu-stack-")) if work_dir is None else work_dir
        cache_dir = work_dir / "cache"

        def server(
            name: str, model_dir: Path, model_id: str, port: int | None, args: Sequence[str]
        ) -> VllmServer:
            port = free_port() if port is None else port
            return VllmServer(name, model_dir, model_id, port, work_dir, cache_dir, args)

        return cls(
            vlm=server("vlm", models.vlm, VLM_MODEL_ID, vlm_port, (*VLM_SERVE_ARGS, *vlm_args)),
            gpt_oss=server("gpt-oss", models.gpt_oss, GPT_OSS_MODEL_ID, gpt_oss_port, GPT_OSS_SERVE_ARGS),
            work_dir=work_dir,
        )

    @property
    def servers(self) -> tuple[VllmServer, VllmServer]:
        return (self.vlm, self.gpt_oss)

    @property
    def vlm_url(self) -> str:
        return self.vlm.url

    @property
    def gpt_oss_url(self) -> str:
        return self.gpt_oss.url

    def gateway_env(self) -> dict[str, str]:
        """The gateway settings that point it at this stack."""
        return {
            "VLM_BASE_URL": self.vlm_url,
            "VLM_MODEL_ID": self.vlm.served_model_name,
            "GPT_OSS_BASE_URL": self.gpt_oss_url,
            "GPT_OSS_MODEL_ID": self.gpt_oss.served_model_name,
        }

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> float:
        """Wait for both (they start in parallel); stop both and raise if either fails."""
        started = time.monotonic()
        try:
            for server in self.servers:
                server.wait_ready(max(1.0, timeout - (time.monotonic() - started)))
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    @contextlib.contextmanager
    def running(self, timeout: float = READY_TIMEOUT_S) -> Iterator[CpuStack]:
        self.start()
        try:
            self.wait_ready(timeout)
            yield self
        finally:
            self.stop()


def _interrupt(signum: int, frame: object) -> None:
    """Turn SIGTERM into the same clean shutdown as Ctrl-C."""
    raise KeyboardInterrupt


def _serve(args: argparse.Namespace) -> int:
    """scripts/dev-stack: start both servers, print where they are, run until Ctrl-C."""
    stack = CpuStack.create(
        work_dir=args.work_dir,
        vlm_port=args.vlm_port,
        gpt_oss_port=args.gpt_oss_port,
        model_cache_root=args.model_cache,
    )
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"starting vLLM servers; logs in {stack.work_dir}", flush=True)
    try:
        with stack.running(args.timeout):
            print(f"VLM      {stack.vlm.served_model_name:32} {stack.vlm_url}", flush=True)
            print(f"gpt-oss  {stack.gpt_oss.served_model_name:32} {stack.gpt_oss_url}", flush=True)
            print("gateway env:", " ".join(f"{k}={v}" for k, v in stack.gateway_env().items()), flush=True)
            print("ready; Ctrl-C stops both", flush=True)
            run_until_one_exits(server.is_running for server in stack.servers)
            dead = next(server for server in stack.servers if not server.is_running())
            print(f"{dead.name} server exited\n{dead.describe()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopping", flush=True)
        return 0
    except StackError as exc:
        print(exc, file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Real vLLM CPU stack (tiny models).")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="start both servers and wait for Ctrl-C")
    serve.add_argument("--vlm-port", type=int, default=int(os.environ.get("VLM_PORT", DEFAULT_VLM_PORT)))
    serve.add_argument(
        "--gpt-oss-port", type=int, default=int(os.environ.get("GPT_OSS_PORT", DEFAULT_GPT_OSS_PORT))
    )
    serve.add_argument(
        "--work-dir", type=Path, default=None, help="logs and vLLM caches (default: a temp dir)"
    )
    serve.add_argument(
        "--model-cache", type=Path, default=None, help="tiny model cache (default: <repo>/.cache)"
    )
    serve.add_argument("--timeout", type=float, default=READY_TIMEOUT_S, help="seconds to wait for /health")
    sub.add_parser("setup", help="set up the venv and build the models, then print their directories")
    args = parser.parse_args(argv)
    if args.command == "setup":
        ensure_venv()
        print(ensure_models())
        return 0
    return _serve(args)


if __name__ == "__main__":
    sys.exit(main())
