"""docker-compose.yml and the ROCm override: structure, start scripts, and compose's own view."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import Settings
from tests.deploy.deploy_compose import (
    COMPOSE,
    HELM_VALUES,
    ROCM_OVERRIDE,
    ROOT,
    container_script,
    interpolate,
    load,
    need_binary,
    resolved_environment,
)

pytestmark = pytest.mark.deploy

SECRET_NAME = re.compile(r"(KEY|KEYS|KEY_ID|TOKEN|SECRET|PASSWORD)$")


def test_no_top_level_name() -> None:
    # Debian's docker-compose 1.29 rejects it.
    for path in (COMPOSE, ROCM_OVERRIDE):
        assert "name" not in load(path), path


def test_profiles() -> None:
    services = load()["services"]
    assert "profiles" not in services["vlm"] and "profiles" not in services["gateway"]
    assert services["gpt-oss"]["profiles"] == ["gpt-oss"]
    assert services["s3"]["profiles"] == ["s3"] and services["s3-init"]["profiles"] == ["s3"]
    assert services["gateway"]["depends_on"] == {"vlm": {"condition": "service_healthy"}}
    assert services["s3-init"]["depends_on"] == {"s3": {"condition": "service_healthy"}}


def test_images_are_pinned_and_vllm_versions_agree() -> None:
    images = {
        (path.name, name): interpolate(spec["image"], {})
        for path in (COMPOSE, ROCM_OVERRIDE)
        for name, spec in load(path)["services"].items()
        if "image" in spec and name != "gateway"  # the gateway's is the one built here
    }
    for where, image in images.items():
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{where}: pin {image}"
    values = yaml.safe_load(HELM_VALUES.read_text())
    versions = {
        interpolate(load(COMPOSE)["services"]["vlm"]["image"], {}).split(":")[1],
        interpolate(load(ROCM_OVERRIDE)["services"]["vlm"]["image"], {}).split(":")[1],
        values["vllm"]["image"]["tag"],
    }
    assert len(versions) == 1, f"move the vLLM pins together: {versions}"
    assert images[("docker-compose.yml", "gpt-oss")] == images[("docker-compose.yml", "vlm")]


def test_model_server_ports_are_loopback_by_default() -> None:
    services = load()["services"]
    for name in ("vlm", "gpt-oss", "s3"):
        for port in services[name]["ports"]:
            assert interpolate(port, {}).startswith("127.0.0.1:"), f"{name}: {port}"
    assert [interpolate(p, {}) for p in services["vlm"]["ports"]] == ["127.0.0.1:8001:8000"]
    assert [interpolate(p, {}) for p in services["gpt-oss"]["ports"]] == ["127.0.0.1:8002:8000"]
    assert [interpolate(p, {}) for p in services["gateway"]["ports"]] == ["0.0.0.0:8000:8000"]
    # widening is one variable
    assert interpolate(services["vlm"]["ports"][0], {"VLM_BIND": "0.0.0.0"}) == "0.0.0.0:8001:8000"


def test_no_secret_values_in_the_files() -> None:
    for path in (COMPOSE, ROCM_OVERRIDE):
        for name, spec in load(path)["services"].items():
            for key, value in (spec.get("environment") or {}).items():
                if SECRET_NAME.search(key):
                    # pass-through, or a variable with an empty default
                    assert value is None or interpolate(str(value), {}) == "", f"{path.name} {name}.{key}"


def test_healthchecks() -> None:
    services = load()["services"]
    for name in ("vlm", "gpt-oss"):
        assert "http://127.0.0.1:8000/health" in " ".join(services[name]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["s3"]["healthcheck"]["test"])
    # the gateway's own healthcheck is the Dockerfile's HEALTHCHECK on /livez
    assert "healthcheck" not in services["gateway"]


def test_hf_cache_and_token() -> None:
    services = load()["services"]
    for name in ("vlm", "gpt-oss"):
        assert any(v.endswith(":/root/.cache/huggingface") for v in services[name]["volumes"])
        assert resolved_environment(name)["HF_TOKEN"] is None, "passed through from the host when set"


# --- the start scripts, run by /bin/sh with a stand-in `vllm` that prints its arguments -----------------


def run_script(service: str, env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    fake = tmp_path / "vllm"
    fake.write_text('#!/usr/bin/env python3\nimport json, sys\nprint("ARGV=" + json.dumps(sys.argv[1:]))\n')
    fake.chmod(0o755)
    base = {k: v for k, v in resolved_environment(service).items() if v is not None}
    full = {"PATH": f"{tmp_path}:{os.environ['PATH']}", **base, **env}
    return subprocess.run(
        ["/bin/sh", "-ec", container_script(service)], env=full, capture_output=True, text=True, timeout=30
    )


def argv(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("ARGV=")]
    parsed: list[str] = json.loads(line[5:])
    return parsed


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_vlm_command(tmp_path: Path) -> None:
    args = argv(run_script("vlm", {}, tmp_path))
    defaults = Settings()
    assert args[:2] == ["serve", defaults.vlm_model_id]
    assert json.loads(flag(args, "--limit-mm-per-prompt")) == {"image": 1, "video": 0}
    assert "--enable-prefix-caching" in args  # the gateway's prompt order relies on it
    assert json.loads(flag(args, "--mm-processor-kwargs")) == {
        "max_pixels": defaults.vlm_max_pixels,
        "min_pixels": defaults.vlm_min_pixels,
    }
    assert int(flag(args, "--max-model-len")) <= 16384
    assert 0 < float(flag(args, "--gpu-memory-utilization")) < 1
    assert "--quantization" not in args
    assert "--api-key" not in args, "the key travels as VLLM_API_KEY, never in argv"


@pytest.mark.parametrize("value", ["true", "True", "1"])
def test_vlm_8bit_is_fp8(value: str, tmp_path: Path) -> None:
    args = argv(run_script("vlm", {"VLM_LOAD_8BIT": value}, tmp_path))
    assert flag(args, "--quantization") == "fp8"


def test_vlm_follows_the_pixel_budget(tmp_path: Path) -> None:
    args = argv(run_script("vlm", {"VLM_MAX_PIXELS": "501760", "VLM_MIN_PIXELS": "784"}, tmp_path))
    assert json.loads(flag(args, "--mm-processor-kwargs")) == {"max_pixels": 501760, "min_pixels": 784}


@pytest.mark.parametrize("service", ["vlm", "gpt-oss"])
def test_wide_bind_needs_a_key(service: str, tmp_path: Path) -> None:
    refused = run_script(service, {"PUBLISHED_ON": "0.0.0.0"}, tmp_path)
    assert refused.returncode == 64 and "API_KEY first" in refused.stderr
    assert argv(run_script(service, {"PUBLISHED_ON": "0.0.0.0", "VLLM_API_KEY": "k"}, tmp_path))
    assert argv(run_script(service, {"PUBLISHED_ON": "127.0.0.1"}, tmp_path))


def test_gpt_oss_command(tmp_path: Path) -> None:
    args = argv(run_script("gpt-oss", {"GPT_OSS_TP": "2"}, tmp_path))
    assert args[:2] == ["serve", Settings().gpt_oss_model_id]
    assert flag(args, "--reasoning-parser") == "openai_gptoss"
    assert flag(args, "--tensor-parallel-size") == "2"
    assert float(flag(args, "--gpu-memory-utilization")) >= 0.9, "gpt-oss-120b fits 80 GB only when high"


def test_s3_demo_requires_credentials() -> None:
    script = container_script("s3")
    assert "${AWS_ACCESS_KEY_ID:?" in script and "${AWS_SECRET_ACCESS_KEY:?" in script
    result = subprocess.run(
        ["/bin/sh", "-ec", script.replace("exec weed", "echo weed")],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert result.returncode != 0 and "AWS_ACCESS_KEY_ID" in result.stderr


# --- Debian's docker-compose 1.29: substitution, references and profiles, as a user runs them ------------


def compose_config(tmp_path: Path, env: dict[str, str], *args: str) -> dict[str, Any]:
    binary = need_binary("docker-compose")
    empty = tmp_path / "empty.env"  # keep a developer's .env out of it
    empty.write_text("")
    result = subprocess.run(
        [binary, "--env-file", str(empty), *args, "config"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_config_defaults(tmp_path: Path) -> None:
    config = compose_config(tmp_path, {})
    # 1.29 lists profiled services too; `up` starts them only with --profile
    assert {n for n, s in config["services"].items() if "profiles" not in s} == {"vlm", "gateway"}
    gateway = config["services"]["gateway"]["environment"]
    assert gateway["VLM_BASE_URL"] == "http://vlm:8000/v1" and gateway["VLM_MAX_PIXELS"] == "1003520"


def test_compose_config_all_profiles(tmp_path: Path) -> None:
    env = {
        "VLM_LOAD_8BIT": "true",
        "VLM_API_KEY": "vk",
        "GPT_OSS_API_KEY": "gk",
        "GPT_OSS_TP": "2",
        "GPT_OSS_GPUS": "1,2",
        "VLM_BIND": "0.0.0.0",
        "USE_GPT_OSS": "true",
        "S3_ENDPOINT_URL": "http://s3:8333",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo-secret",
        "POSTGRES_PASSWORD": "pg-secret",
        "DATABASE_URL": "postgresql+asyncpg://florence:pg-secret@postgres:5432/florence",
    }
    profiles = ("--profile", "gpt-oss", "--profile", "s3", "--profile", "postgres")
    services = compose_config(tmp_path, env, *profiles)["services"]
    assert set(services) == {"vlm", "gpt-oss", "gateway", "s3", "s3-init", "postgres"}
    assert services["gateway"]["environment"]["DATABASE_URL"] == env["DATABASE_URL"]
    assert services["gateway"]["environment"]["DATA_DIR"] == "/data"  # the catalogue-data volume
    assert "catalogue-data:/data:rw" in services["gateway"]["volumes"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "pg-secret"
    assert services["vlm"]["environment"]["VLLM_API_KEY"] == "vk"
    assert services["gateway"]["environment"]["VLM_API_KEY"] == "vk"
    assert services["gpt-oss"]["environment"]["NVIDIA_VISIBLE_DEVICES"] == "1,2"
    assert services["s3"]["environment"]["AWS_ACCESS_KEY_ID"] == "demo"
    assert services["gateway"]["environment"]["AWS_ACCESS_KEY_ID"] == "demo"
    assert services["vlm"]["ports"] == ["0.0.0.0:8001:8000/tcp"]


def test_compose_config_rocm(tmp_path: Path) -> None:
    services = compose_config(
        tmp_path,
        {"GPT_OSS_GPUS": "0"},
        "-f",
        "docker-compose.yml",
        "-f",
        str(ROCM_OVERRIDE),
        "--profile",
        "gpt-oss",
    )["services"]
    for name in ("vlm", "gpt-oss"):
        spec = services[name]
        assert spec["image"].startswith("vllm/vllm-openai-rocm:")
        assert spec["runtime"] == "runc", "the override must replace the nvidia runtime"
        assert sorted(spec["devices"]) == ["/dev/dri", "/dev/kfd"]
        assert spec["group_add"] == ["video"] and spec["ipc"] == "host"
    assert services["vlm"]["environment"]["HIP_VISIBLE_DEVICES"] == "0"
    assert services["gpt-oss"]["environment"]["HIP_VISIBLE_DEVICES"] == "0"
    # everything else is the base file's
    assert services["vlm"]["entrypoint"] == ["/bin/sh", "-ec"]
    assert services["gateway"]["depends_on"] == {"vlm": {"condition": "service_healthy"}}


def test_env_example_names_real_variables_with_their_defaults() -> None:
    example = (ROOT / "deploy" / "compose.env.example").read_text()
    text = COMPOSE.read_text() + ROCM_OVERRIDE.read_text()
    defaults = dict(re.findall(r"\$\{([A-Z0-9_]+):-([^}]*)\}", text))
    known = set(re.findall(r"\$\{([A-Z0-9_]+)", text)) | {
        key
        for spec in load()["services"].values()
        for key, v in (spec.get("environment") or {}).items()
        if v is None
    }
    seen: set[str] = set()
    for key, value in re.findall(r"^# ([A-Z0-9_]+)=(\S*)", example, flags=re.MULTILINE):
        assert key in known, f"compose.env.example mentions {key}, which docker-compose.yml does not read"
        if key not in seen and value and defaults.get(key):
            assert value == defaults[key], (
                f"compose.env.example shows {key}={value}, the default is {defaults[key]}"
            )
        seen.add(key)
    assert {"VLM_GPU", "GPT_OSS_GPUS", "VLM_API_KEY", "S3_ENDPOINT_URL"} <= seen
