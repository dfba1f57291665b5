"""An outside view: Schemathesis generates requests from the OpenAPI schema, valid and invalid, against the
served gateway, with and without ``API_KEYS``. No 5xx, only documented statuses, responses as declared,
invalid data refused, auth enforced where declared, wrong methods a 405.

``positive_data_acceptance`` is left out (the checks are chosen in ``CONFIG``): a valid request for an
object that is not in the bucket is rightly a 404. A bounded run is in the fast tier; a ~1,000-case run per
configuration in the slow one.
"""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from tests.support.gateway import ServedGatewayFactory

KEY = "st-key-1"


# A form cannot carry every shape JSON Schema can negate: a field generated as an empty array is sent as no
# field at all, a valid upload. So POST /caption's negative cases are left to its own tests (tests/api/
# test_inputs.py); every other check still runs on it.
CONFIG = """
[checks]
enabled = true
positive_data_acceptance.enabled = false

[[operations]]
include-path = "/caption"
include-method = "POST"
checks.negative_data_rejection.enabled = false
"""


async def schemathesis(url: str, report_dir: Path, max_examples: int, *extra: str) -> tuple[int, str]:
    config = report_dir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(Path(sys.executable).with_name("schemathesis")), "--config-file", str(config),
        "run", f"{url}/openapi.json",
        "--max-examples", str(max_examples), "--seed", "14", "--workers", "1",
        "--generation-database", "none", "--no-color", "--request-timeout", "30",
        "--report", "junit", "--report-dir", str(report_dir), *extra,
    ]  # fmt: skip
    # Awaited, not run blocking: the fake backends serve from this test's event loop.
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=report_dir
    )  # in report_dir: Schemathesis keeps a cache of crashes in its working directory
    output, _ = await process.communicate()
    return process.returncode or 0, output.decode("utf-8", "replace")


def cases(output: str) -> int:
    found = re.search(r"(\d+) generated", output)
    return int(found.group(1)) if found else 0


@pytest.mark.parametrize("with_keys", [False, True], ids=["open", "api-keys"])
async def test_a_bounded_schemathesis_run_finds_nothing(
    served_gateway: ServedGatewayFactory, tmp_path: Path, with_keys: bool
) -> None:
    settings = {"API_KEYS": KEY} if with_keys else {}
    headers = ["--header", f"Authorization: Bearer {KEY}"] if with_keys else []
    async with served_gateway(**settings) as url:
        code, output = await schemathesis(url, tmp_path, 12, *headers)
    assert code == 0, output[-6000:]
    assert cases(output) >= 30, output[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("with_keys", [False, True], ids=["open", "api-keys"])
async def test_a_long_schemathesis_run_finds_nothing(
    served_gateway: ServedGatewayFactory, tmp_path: Path, with_keys: bool
) -> None:
    settings = {"API_KEYS": KEY} if with_keys else {}
    headers = ["--header", f"Authorization: Bearer {KEY}"] if with_keys else []
    async with served_gateway(**settings) as url:
        code, output = await schemathesis(url, tmp_path, 1000, *headers)
    assert code == 0, output[-6000:]
    assert cases(output) >= 1000, output[-2000:]
