"""Make PyPI's (CUDA-built) torchvision importable next to the CPU-only torch.

PyPI's Linux torchvision wheel links its ``_C`` extension against CUDA torch, so with
``torch==2.13.0+cpu`` the extension does not load and ``import torchvision`` dies in
``torchvision/_meta_registrations.py``: two bare ``@torch.library.register_fake(...)``
decorators (``nms``/``qnms``) refer to operators that only the extension defines. Every
other registration in that file is already guarded by ``torchvision.extension._has_ops()``.
We add the same guard to these two, which leaves the pure-Python transforms (all that
Qwen2.5-VL's image processor uses) working. No CPU torchvision wheel matching torch 2.13
exists on PyPI or in this machine's local wheels, hence the patch.

Idempotent; run with the vLLM venv's python:  python patch_torchvision.py [--check]
Exit status 0 when torchvision imports afterwards.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

MARKER = "# florence-tagger cpu-stack: guarded nms/qnms fakes"
GUARD = f"""
{MARKER}
def _register_fake_if_ops(op_name):
    def wrapper(fn):
        if torchvision.extension._has_ops():
            return torch.library.register_fake(op_name)(fn)
        return fn

    return wrapper
"""
UNGUARDED = re.compile(r'^@torch\.library\.register_fake\("(torchvision::q?nms)"\)$', re.MULTILINE)
ANCHOR = "import torchvision.extension  # noqa: F401\n"


def meta_registrations_path() -> Path:
    # find_spec on a top-level package locates it without executing its __init__.
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("torchvision is not installed in this environment")
    return Path(next(iter(spec.submodule_search_locations))) / "_meta_registrations.py"


def patched_source(source: str) -> str:
    if MARKER in source:
        return source
    if ANCHOR not in source or not UNGUARDED.search(source):
        raise SystemExit("torchvision/_meta_registrations.py has an unexpected layout; patch not applied")
    source = source.replace(ANCHOR, ANCHOR + GUARD, 1)
    return UNGUARDED.sub(r'@_register_fake_if_ops("\1")', source)


def torchvision_imports(report: bool) -> bool:
    result = subprocess.run(
        [sys.executable, "-c", "import torchvision.transforms.v2.functional"],
        capture_output=True,
        text=True,
        check=False,
    )
    if report and result.returncode != 0:
        sys.stderr.write(result.stderr[-2000:])
    return result.returncode == 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="only report whether torchvision imports")
    args = parser.parse_args()
    if not args.check and not torchvision_imports(report=False):
        path = meta_registrations_path()
        path.write_text(patched_source(path.read_text()))
        print(f"patched {path}")
    ok = torchvision_imports(report=True)
    print("torchvision imports" if ok else "torchvision still fails to import", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
