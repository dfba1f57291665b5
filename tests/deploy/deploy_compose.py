"""Helpers for the deploy tests: read the compose files, fill in variables as compose does, find tools."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ROCM_OVERRIDE = ROOT / "deploy" / "rocm" / "docker-compose.rocm.yml"
DOCKERFILE = ROOT / "Dockerfile"
HELM_VALUES = ROOT / "deploy" / "helm" / "florence-tagger" / "values.yaml"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}; `$$` is a literal `$`.
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}")


class MissingVariable(ValueError):
    pass


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution (the subset this project uses) against ``env``."""

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, colon, kind, arg = match.groups()
        value = env.get(name)
        missing = value is None or (colon == ":" and value == "")
        if kind == "-" and missing:
            return arg
        if kind == "?" and missing:
            raise MissingVariable(f"{name}: {arg}")
        return value or ""

    return _VARIABLE.sub(substitute, text)


def load(path: Path = COMPOSE) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


def resolved_environment(service: str, env: dict[str, str] | None = None) -> dict[str, str | None]:
    """A service's environment after substitution; None marks a pass-through entry (``KEY:`` alone)."""
    raw = load()["services"][service].get("environment") or {}
    assert isinstance(raw, dict), f"{service}: write `environment` as a mapping"
    return {k: None if v is None else interpolate(str(v), env or {}) for k, v in raw.items()}


def container_script(service: str) -> str:
    """The shell script a service runs (entrypoint `sh -ec`, command: [script]), with `$$` turned into `$`."""
    spec = load()["services"][service]
    assert spec["entrypoint"][:2] == ["/bin/sh", "-ec"], spec["entrypoint"]
    (script,) = spec["command"]
    return interpolate(script, {})


def strict() -> bool:
    """scripts/check-deploy sets this: a missing tool is then a failure, not a skip."""
    return os.environ.get("DEPLOY_CHECKS_STRICT") == "1"


def need_binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        if strict():
            pytest.fail(f"{name} is not installed (scripts/check-deploy installs it)")
        pytest.skip(f"{name} is not installed; scripts/check-deploy installs it")
    return path


def need_module(name: str) -> Any:
    if strict():
        return __import__(name)
    return pytest.importorskip(name, reason=f"{name} is not installed; scripts/check-deploy installs it")
