"""The end-to-end tier: real vLLM servers (tiny random models on the CPU), started once per session.

Every test under ``tests/e2e`` is marked ``slow`` and ``e2e`` (``pytest -m 'not slow'`` skips them).

Fixture ``cpu_stack`` (session scope) is a running ``tests.support.vllm_stack.CpuStack``:

* ``cpu_stack.vlm_url``      ``"http://127.0.0.1:PORT/v1"``, serving ``Qwen/Qwen2.5-VL-7B-Instruct``
* ``cpu_stack.gpt_oss_url``  ``"http://127.0.0.1:PORT/v1"``, serving ``openai/gpt-oss-120b``
  (reasoning parser on: reasoning lands in ``message.reasoning``)
* ``cpu_stack.gateway_env()`` ``{"VLM_BASE_URL": ..., "VLM_MODEL_ID": ..., "GPT_OSS_BASE_URL": ...,
  "GPT_OSS_MODEL_ID": ...}``: the settings that point the gateway at the stack
* ``cpu_stack.vlm`` / ``cpu_stack.gpt_oss``: ``VllmServer`` objects with ``stop()``, ``start()``,
  ``wait_ready(timeout)`` and ``restart()`` (same port), e.g. to watch the gateway's ``/health`` go
  503 and back; a test that stops a server must bring it back (``restart()``, about 30-90 s).

Ports are free ones picked at start (``CPU_STACK_VLM_PORT`` / ``CPU_STACK_GPT_OSS_PORT`` pin them).
Server logs are in the session's pytest temp dir, ``cpu-stack*/{vlm,gpt-oss}.log``.
When the stack cannot be set up or started, every test that uses it fails with the reason and the
server's log tail: this tier is what proves the gateway against vLLM, so it never skips quietly.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.vllm_stack import CpuStack, StackError

E2E_DIR = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A conftest's collection hook sees the whole session's items, so only mark this directory's.
    for item in items:
        if item.path.is_relative_to(E2E_DIR):
            item.add_marker(pytest.mark.slow)
            item.add_marker(pytest.mark.e2e)


def _port_from_env(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


def _started_stack(work_dir: Path) -> CpuStack:
    stack = CpuStack.create(
        work_dir=work_dir,
        vlm_port=_port_from_env("CPU_STACK_VLM_PORT"),
        gpt_oss_port=_port_from_env("CPU_STACK_GPT_OSS_PORT"),
    )
    stack.start()
    stack.wait_ready()  # stops both servers itself if either fails
    return stack


@pytest.fixture(scope="session")
def cpu_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CpuStack]:
    try:
        stack = _started_stack(tmp_path_factory.mktemp("cpu-stack"))
    except StackError as exc:
        failure = f"the real-vLLM CPU stack could not be started:\n{exc}"
    else:
        failure = ""
    # Failed outside the except block, so the report shows the reason once, without a chained traceback.
    if failure:
        pytest.fail(failure, pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()
