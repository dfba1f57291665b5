"""The gateway's Dockerfile: small, non-root, healthy on /livez, started as the README says."""

from __future__ import annotations

import json
import re

import pytest

from tests.deploy.deploy_compose import DOCKERFILE, ROOT

pytestmark = pytest.mark.deploy


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (k, _) in enumerate(steps) if k == "FROM")
    return steps[last_from:]


def test_multi_stage_on_slim_python() -> None:
    froms = [rest for k, rest in instructions() if k == "FROM"]
    assert len(froms) == 2 and froms[0].endswith("AS builder")
    default_base = dict(re.findall(r"ARG (\w+)=(\S+)", DOCKERFILE.read_text()))["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11-slim(-\w+)?", default_base)


def test_no_compilers_or_package_manager_runs_in_the_final_stage() -> None:
    runs = " ".join(rest for k, rest in final_stage() if k == "RUN")
    assert not re.search(r"apt-get|gcc|build-essential|pip install", runs)
    copies = [rest for k, rest in final_stage() if k == "COPY"]
    assert copies == ["--from=builder /opt/venv /opt/venv"], "only the built virtualenv reaches the image"


def test_runs_as_non_root() -> None:
    users = [rest for k, rest in final_stage() if k == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"


def test_healthcheck_port_and_command() -> None:
    stage = dict(final_stage())
    assert "/livez" in stage["HEALTHCHECK"] and "urllib" in stage["HEALTHCHECK"]
    assert stage["EXPOSE"] == "8000"
    assert json.loads(stage["CMD"]) == ["florence-tagger", "serve"]
    assert "ENTRYPOINT" not in stage


def test_only_the_package_is_copied() -> None:
    # Configuration comes from the environment alone: no config file, .env or key is baked in.
    copied = [rest for k, rest in instructions() if k in {"COPY", "ADD"}]
    assert copied == [
        "pyproject.toml README.md ./",
        "gateway ./gateway",
        "--from=builder /opt/venv /opt/venv",
    ]


def test_dockerignore_is_an_allow_list() -> None:
    lines = [
        x.strip() for x in (ROOT / ".dockerignore").read_text().splitlines() if x.strip() and x[0] != "#"
    ]
    assert lines[0] == "*"
    assert {"!pyproject.toml", "!README.md", "!gateway/"} <= set(lines)
    assert not [
        x for x in lines if x.startswith("!") and x not in {"!pyproject.toml", "!README.md", "!gateway/"}
    ]
