"""Where the gateway's own CPU goes: ``florence-tagger serve`` profiled over N requests (issue 16).

    .venv/bin/python -m benchmarks.profile_gateway [--requests 1000] [--sampler py-spy|cprofile] [--top 25]

Starts the benchmark's stack (SeaweedFS, the 0 ms fake backend in its own process) and the gateway, warms it
up, sends ``--requests`` captions of small in-budget JPEGs at concurrency 16 and prints the gateway's CPU by
library (the package of the innermost Python frame: its own time) and its top functions.

* ``--sampler py-spy`` (default; ``pip install py-spy``): samples the running process from outside at
  ``--rate`` Hz, counting samples that hold the GIL (Python at work; C code that releases the GIL, such
  as Pillow's decoder or a socket write, is not counted). Close to the real costs.
* ``--sampler cprofile``: the gateway runs under cProfile with a CPU clock; every call is counted, which
  slows Python code several times over and inflates many-small-calls code: read its shares, not its ms.

``bench_gateway`` measures the absolute figures; this says where they come from.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import pstats
import re
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_gateway import SMALL_OBJECTS, SMALL_SIZE, caption_bodies  # noqa: E402
from benchmarks.load import run_load  # noqa: E402
from benchmarks.stack import Stack, seed, start_backend, start_gateway  # noqa: E402
from tests.support.images import photo  # noqa: E402
from tests.support.processes import Proc, Procs  # noqa: E402
from tests.support.s3_server import start_s3_server_when_free  # noqa: E402

WARM_UP = 100
_SITE = re.compile(r"(?:site-packages|dist-packages)/([^/]+)/")
_STDLIB = re.compile(r"/lib/python3\.\d+/([^/]+?)(?:\.py|/)")
_PYSPY_FRAME = re.compile(r"^(.*) \((.*):(\d+)\)$")


def library_of(filename: str) -> str:
    """The package a frame belongs to, from its file name."""
    if match := _SITE.search(filename):
        return match.group(1)
    if "/gateway/" in filename:
        return "gateway"
    if match := _STDLIB.search(filename):
        return match.group(1)
    return "builtins" if filename == "~" else "other"


def share_table(
    title: str, totals: Counter[str], per_request: float, unit: str, rows: int = 20, total: float = 0
) -> list[str]:
    total = total or sum(totals.values()) or 1
    lines = [title]
    for name, value in totals.most_common(rows):
        lines.append(f"  {name:40} {value * per_request:8.3f} {unit}/request  {value / total:6.1%}")
    return lines


# --------------------------------------------------------------------------------------------------
# py-spy
# --------------------------------------------------------------------------------------------------


def pyspy_report(raw: Path, requests: int, rate: int, top: int) -> str:
    """Own samples by library and by function, and inclusive samples by function, from py-spy's raw file."""
    own_lib: Counter[str] = Counter()
    own_fn: Counter[str] = Counter()
    incl_fn: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = [_PYSPY_FRAME.match(f) for f in stack.split(";")]
        names = [(m.group(1), m.group(2)) for m in frames if m]
        if not names:
            continue
        count = int(count_text)
        function, filename = names[-1]
        own_lib[library_of(filename)] += count
        own_fn[f"{function} ({_short(filename)})"] += count
        for seen in {f"{fn} ({_short(path)})" for fn, path in names}:
            incl_fn[seen] += count
    ms = 1000 / rate / requests
    samples = sum(own_lib.values())
    title = f"CPU by library, own time (py-spy at {rate} Hz, GIL held, {samples * ms:.2f} ms/request sampled)"
    lines = share_table(title, own_lib, ms, "ms")
    lines += ["", *share_table(f"top {top} functions, own time", own_fn, ms, "ms", top)]
    lines += ["", *share_table(f"top {top} functions, inclusive", incl_fn, ms, "ms", top, samples)]
    return "\n".join(lines)


def _short(filename: str) -> str:
    if match := _SITE.search(filename):
        return filename[match.start(1) :]
    return filename.split("/issue-", 1)[-1].split("/", 1)[-1] if "/gateway/" in filename else filename


def sample_with_pyspy(gateway: Proc, out: Path, rate: int) -> subprocess.Popen[bytes]:
    command = ["py-spy", "record", "--pid", str(gateway.process.pid), "--format", "raw", "--output", str(out)]
    # --gil: only samples holding the GIL, i.e. Python running; a thread in a socket write, the event loop
    # in epoll or a pool thread waiting for work would otherwise count as busy.
    command += ["--rate", str(rate), "--full-filenames", "--gil"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_pyspy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
    _, err = spy.communicate(timeout=60)
    if spy.returncode not in (0, -signal.SIGINT):
        raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")


# --------------------------------------------------------------------------------------------------
# cProfile
# --------------------------------------------------------------------------------------------------


def cprofile_report(prof_path: Path, requests: int, top: int) -> str:
    stats = pstats.Stats(str(prof_path))
    own: Counter[str] = Counter()
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        own[library_of(filename)] += tottime
    lines = share_table("CPU by library, own time (cProfile, CPU clock)", own, 1000 / requests, "ms")
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(str(prof_path), stream=out).sort_stats(key).print_stats(top)
        lines.append(f"\n--- top {top} by {key} ---")
        lines.append(out.getvalue().split("\n\n", 2)[-1].rstrip())
    return "\n".join(lines)


def serve_profiled(prof_path: Path, serve_argv: list[str]) -> int:
    """``florence-tagger serve`` under cProfile. Uvicorn re-raises SIGTERM after its graceful shutdown; the
    handler installed first turns that into SystemExit, so the profile is written before the process ends."""
    import cProfile
    import time

    from gateway.cli import main as cli_main

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    # CPU time, not cProfile's default wall clock: a write to a loopback socket that wakes the S3 server
    # on a shared core would otherwise look like milliseconds of the gateway's work.
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    try:
        return cli_main(serve_argv)
    except SystemExit:
        return 0
    finally:
        profiler.disable()
        profiler.dump_stats(prof_path)


# --------------------------------------------------------------------------------------------------


def profile(args: argparse.Namespace, out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="florence-profile-") as workdir:
        stack = Stack(Procs(Path(workdir)))
        try:
            stack.s3 = start_s3_server_when_free()
            keys = [f"small-{i}.jpg" for i in range(SMALL_OBJECTS)]
            images = [photo(*SMALL_SIZE, quality=85 + i % 8) for i in range(SMALL_OBJECTS)]
            seed(stack.s3, dict(zip(keys, images, strict=True)))
            backend = start_backend(stack, 0)
            cprofile = args.sampler == "cprofile"
            gateway = start_gateway(stack, "gateway-profiled", backend, profile_to=out if cprofile else None)
            bodies = caption_bodies(keys)
            warm = asyncio.run(run_load(gateway.port, "/caption", bodies, args.concurrency, WARM_UP, 60))
            assert warm.errors == 0, f"warm-up failed: {warm.statuses}"
            spy = None if cprofile else sample_with_pyspy(gateway, out, args.rate)
            load = run_load(gateway.port, "/caption", bodies, args.concurrency, args.requests, 300)
            result = asyncio.run(load)
            assert result.errors == 0, f"profiled run failed: {result.statuses}"
            if spy is not None:
                stop_pyspy(spy)
            stack.stop(gateway)  # SIGTERM: uvicorn shuts down, cProfile writes its file
        finally:
            stack.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve-profiled"]:
        return serve_profiled(Path(argv[1]), argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sampler", choices=["py-spy", "cprofile"], default="py-spy")
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path, default=None, help="keep the raw profile here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="florence-prof-") as tmp:
        out = args.out or Path(tmp) / ("gateway.prof" if args.sampler == "cprofile" else "gateway.pyspy")
        profile(args, out)
        if args.sampler == "cprofile":
            print(cprofile_report(out, args.requests + WARM_UP, args.top))
        else:
            print(pyspy_report(out, args.requests, args.rate, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
