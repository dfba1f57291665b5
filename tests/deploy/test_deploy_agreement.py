"""The gateway's settings, docker-compose.yml and the Helm chart agree on every variable's name and default.

A setting added to gateway/settings.py must be added to docker-compose.yml's gateway service and to the
chart's values (gateway.env, or secrets for keys) with the same default, or these tests fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import yaml

from gateway.settings import Settings
from tests.deploy import deploy_helm
from tests.deploy.deploy_compose import HELM_VALUES, need_module, resolved_environment

pytestmark = pytest.mark.deploy

ALIASES: dict[str, str] = {
    name: str(field.alias) for name, field in Settings.model_fields.items() if field.alias is not None
}
# These point at the services the compose file and the chart start, or at the volume they mount for the
# catalogue, so their values differ by design.
SERVICE_URLS = {"VLM_BASE_URL", "GPT_OSS_BASE_URL", "S3_ENDPOINT_URL", "DATA_DIR"}
# Read by the AWS SDK's credential chain, not by Settings.
AWS_CHAIN = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
HELM_SECRET_KEYS = {"API_KEYS", "VLM_API_KEY", "GPT_OSS_API_KEY", "DATABASE_URL", "EVENTS_TOKEN"}

SettingsFrom = Callable[[dict[str, str]], Settings]


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> SettingsFrom:
    """Settings as the gateway would read them from exactly this environment."""

    def build(env: dict[str, str]) -> Settings:
        for alias in ALIASES.values():
            monkeypatch.delenv(alias, raising=False)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        return Settings()

    return build


def assert_defaults(settings: Settings, defaults: Settings, where: str) -> None:
    wrong = {
        alias: (getattr(settings, name), getattr(defaults, name))
        for name, alias in ALIASES.items()
        if alias not in SERVICE_URLS and getattr(settings, name) != getattr(defaults, name)
    }
    assert not wrong, f"{where} differs from gateway/settings.py (value, default): {wrong}"


def test_settings_have_aliases() -> None:
    assert len(ALIASES) == len(Settings.model_fields), "every setting is read under an explicit env name"


def test_compose_gateway_names_every_setting() -> None:
    env = resolved_environment("gateway")
    missing = set(ALIASES.values()) - env.keys()
    assert not missing, f"docker-compose.yml's gateway service lacks {sorted(missing)}"
    unknown = env.keys() - set(ALIASES.values()) - AWS_CHAIN
    assert not unknown, (
        f"docker-compose.yml's gateway service sets variables Settings does not read: {unknown}"
    )


def test_compose_gateway_defaults_match(settings_from: SettingsFrom) -> None:
    # An empty host environment: every ${VAR:-default} falls back to its default; pass-through entries
    # (`KEY:` with no value) stay unset.
    env = {k: v for k, v in resolved_environment("gateway").items() if v is not None}
    assert_defaults(settings_from(env), settings_from({}), "docker-compose.yml (gateway)")


def test_compose_gateway_urls_point_at_services() -> None:
    env = resolved_environment("gateway")
    assert env["VLM_BASE_URL"] == "http://vlm:8000/v1"
    assert env["GPT_OSS_BASE_URL"] == "http://gpt-oss:8000/v1"
    assert env["S3_ENDPOINT_URL"] == "", "AWS S3 unless the user points it at the s3 profile"


@pytest.mark.parametrize(
    ("service", "names"),
    [
        ("vlm", ["VLM_MODEL_ID", "VLM_MAX_PIXELS", "VLM_MIN_PIXELS", "VLM_LOAD_8BIT"]),
        ("gpt-oss", ["GPT_OSS_MODEL_ID"]),
    ],
)
def test_model_servers_share_the_gateways_defaults(
    service: str, names: list[str], settings_from: SettingsFrom
) -> None:
    """The model id, pixel budget and 8-bit switch come from the same variables with the same defaults."""
    server_env = resolved_environment(service)
    gateway_env = resolved_environment("gateway")
    for name in names:
        assert server_env[name] == gateway_env[name], name
        assert server_env[name] is not None
    parsed = settings_from({n: str(server_env[n]) for n in names})
    assert_defaults(parsed, settings_from({}), f"docker-compose.yml ({service})")


def helm_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(HELM_VALUES.read_text())
    return values


def test_helm_values_name_every_setting() -> None:
    values = helm_values()
    env, secrets = values["gateway"]["env"], values["secrets"]
    assert secrets.keys() >= HELM_SECRET_KEYS
    assert not HELM_SECRET_KEYS & env.keys(), "keys belong in secrets, not in the ConfigMap"
    missing = set(ALIASES.values()) - env.keys() - HELM_SECRET_KEYS
    assert not missing, f"values.yaml gateway.env lacks {sorted(missing)}"
    unknown = env.keys() - set(ALIASES.values())
    assert not unknown, f"values.yaml gateway.env sets variables Settings does not read: {unknown}"
    assert all(isinstance(v, str) for v in env.values()), "environment values are strings: quote them"


def test_helm_values_defaults_match(settings_from: SettingsFrom) -> None:
    values = helm_values()
    # As the ConfigMap and Secret templates do: an empty value leaves the variable unset.
    merged = {**values["gateway"]["env"], **{k: values["secrets"][k] for k in HELM_SECRET_KEYS}}
    env = {k: str(v) for k, v in merged.items() if str(v) != ""}
    assert_defaults(settings_from(env), settings_from({}), "values.yaml")


def test_helm_rendered_configmap_matches(settings_from: SettingsFrom) -> None:
    need_module("helm_python")
    docs = deploy_helm.documents()
    (configmap,) = [d for d in docs if d["kind"] == "ConfigMap"]
    env = dict(configmap["data"])
    assert_defaults(settings_from(env), settings_from({}), "the rendered ConfigMap")
    assert env["VLM_BASE_URL"] == "http://tagger-florence-tagger-vlm:8000/v1"
    assert env["GPT_OSS_BASE_URL"] == "http://tagger-florence-tagger-gpt-oss:8000/v1"
    assert "S3_ENDPOINT_URL" not in env and "PROMETHEUS_MULTIPROC_DIR" not in env, "empty values stay unset"
