"""The Helm chart, linted and rendered offline by the Helm SDK (PyPI helm-python-sdk)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from gateway.settings import Settings
from tests.deploy import deploy_helm
from tests.deploy.deploy_compose import need_module

pytestmark = pytest.mark.deploy


@pytest.fixture(autouse=True)
def _helm_sdk() -> None:
    need_module("helm_python")


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {
        d["metadata"]["name"].removeprefix("tagger-florence-tagger-"): d for d in docs if d["kind"] == kind
    }


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("scenario", list(deploy_helm.SCENARIOS))
def test_lint_is_clean(scenario: str) -> None:
    assert deploy_helm.lint(deploy_helm.SCENARIOS[scenario]) == []


def test_defaults() -> None:
    docs = deploy_helm.documents()
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"gateway", "vlm"}, "gpt-oss is off by default"
    assert set(by_kind(docs, "Service")) == {"gateway", "vlm"}
    assert set(by_kind(docs, "HorizontalPodAutoscaler")) == {"gateway"}
    assert "replicas" not in deployments["gateway"]["spec"], "the HPA owns the count"
    gateway = container(deployments["gateway"])
    assert gateway["readinessProbe"]["httpGet"]["path"] == "/health"
    assert gateway["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert gateway["securityContext"]["readOnlyRootFilesystem"] is True
    pod = deployments["gateway"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] == 10001
    (secret,) = by_kind(docs, "Secret").values()
    assert not secret.get("data"), "no key set, no key stored"


def test_vlm_server_matches_the_gateway() -> None:
    deployments = by_kind(deploy_helm.documents(), "Deployment")
    vlm = container(deployments["vlm"])
    defaults = Settings()
    assert vlm["command"] == ["vllm", "serve"] and vlm["args"][0] == defaults.vlm_model_id
    assert json.loads(flag(vlm["args"], "--limit-mm-per-prompt")) == {"image": 1, "video": 0}
    assert "--enable-prefix-caching" in vlm["args"]  # the gateway's prompt order relies on it
    assert json.loads(flag(vlm["args"], "--mm-processor-kwargs")) == {
        "max_pixels": defaults.vlm_max_pixels,
        "min_pixels": defaults.vlm_min_pixels,
    }
    assert "--quantization" not in vlm["args"]
    assert vlm["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert {p["httpGet"]["path"] for p in (vlm["startupProbe"], vlm["readinessProbe"])} == {"/health"}
    env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in vlm["env"]}
    assert env["VLLM_API_KEY"]["key"] == "VLM_API_KEY" and env["VLLM_API_KEY"]["optional"] is True


def test_full() -> None:
    docs = deploy_helm.documents(deploy_helm.SCENARIOS["full"])
    deployments = by_kind(docs, "Deployment")
    assert "HorizontalPodAutoscaler" not in {d["kind"] for d in docs}
    assert deployments["gateway"]["spec"]["replicas"] == 2
    assert deployments["vlm"]["spec"]["replicas"] == 3
    vlm = container(deployments["vlm"])
    assert flag(vlm["args"], "--quantization") == "fp8"
    assert vlm["args"][-2:] == ["--max-num-seqs", "64"]
    gpt = container(deployments["gpt-oss"])
    assert gpt["args"][0] == Settings().gpt_oss_model_id
    assert flag(gpt["args"], "--reasoning-parser") == "openai_gptoss"
    assert flag(gpt["args"], "--tensor-parallel-size") == "2"
    assert gpt["resources"]["limits"]["nvidia.com/gpu"] == 2
    (secret,) = by_kind(docs, "Secret").values()
    decoded = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert decoded == {"API_KEYS": "k1,k2", "VLM_API_KEY": "v", "GPT_OSS_API_KEY": "g", "HF_TOKEN": "h"}
    (configmap,) = by_kind(docs, "ConfigMap").values()
    assert (
        configmap["data"]["USE_GPT_OSS"] == "true"
        and configmap["data"]["S3_ENDPOINT_URL"] == "http://s3:8333"
    )
    assert not {"API_KEYS", "VLM_API_KEY", "GPT_OSS_API_KEY"} & configmap["data"].keys()
    volumes = {v["name"]: v for v in deployments["vlm"]["spec"]["template"]["spec"]["volumes"]}
    assert volumes["hf-cache"]["persistentVolumeClaim"]["claimName"] == "hf-cache"


def test_existing_secret_and_rocm() -> None:
    docs = deploy_helm.documents(deploy_helm.SCENARIOS["existing-secret-rocm"])
    assert "Secret" not in {d["kind"] for d in docs} and "ServiceAccount" not in {d["kind"] for d in docs}
    deployments = by_kind(docs, "Deployment")
    for name in ("gateway", "vlm", "gpt-oss"):
        refs = [
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container(deployments[name])["env"]
            if "valueFrom" in e
        ]
        assert refs and set(refs) == {"tagger-keys"}, name
    assert container(deployments["vlm"])["image"].startswith("vllm/vllm-openai-rocm:")
    assert container(deployments["vlm"])["resources"]["limits"]["amd.com/gpu"] == 1


def test_notes_render() -> None:
    notes = deploy_helm.render()["florence-tagger/templates/NOTES.txt"]
    assert "kubectl port-forward svc/tagger-florence-tagger-gateway" in notes
    assert "set secrets.API_KEYS" in notes


def test_the_catalogue_is_sqlite_on_a_pod_volume_unless_a_postgresql_is_named() -> None:
    docs = deploy_helm.documents()
    gateway = by_kind(docs, "Deployment")["gateway"]
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container(gateway)["volumeMounts"]}
    (configmap,) = by_kind(docs, "ConfigMap").values()
    assert mounts["data"] == configmap["data"]["DATA_DIR"] == "/data"
    assert "emptyDir" in volumes["data"]
    notes = deploy_helm.render()["florence-tagger/templates/NOTES.txt"]
    assert "every gateway pod keeps its own SQLite catalogue" in notes

    shared = deploy_helm.documents(
        {
            "secrets": {"DATABASE_URL": "postgresql+asyncpg://u:p@db:5432/florence"},
            "gateway": {"data": {"existingClaim": "cat"}},
        }
    )
    gateway = by_kind(shared, "Deployment")["gateway"]
    env = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["key"]
        for e in container(gateway)["env"]
        if "valueFrom" in e
    }
    assert env["DATABASE_URL"] == "DATABASE_URL"
    (secret,) = by_kind(shared, "Secret").values()
    assert (
        base64.b64decode(secret["data"]["DATABASE_URL"]).decode()
        == "postgresql+asyncpg://u:p@db:5432/florence"
    )
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"]["claimName"] == "cat"
    (configmap,) = by_kind(shared, "ConfigMap").values()
    assert "DATABASE_URL" not in configmap["data"], "a URL with a password stays in the Secret"


def test_event_workers_are_a_deployment_on_the_gateways_settings_and_queue() -> None:
    docs = deploy_helm.documents(deploy_helm.SCENARIOS["events-worker"])
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"gateway", "vlm", "worker"}
    assert deployments["worker"]["spec"]["replicas"] == 2
    worker, gateway = container(deployments["worker"]), container(deployments["gateway"])
    assert worker["command"] == ["florence-tagger", "worker"]
    assert worker["image"] == gateway["image"]
    assert worker["envFrom"] == gateway["envFrom"], "one ConfigMap: the same EVENTS_* settings"
    secret_env = {e["name"] for e in worker["env"] if "valueFrom" in e}
    assert {"DATABASE_URL", "VLM_API_KEY"} <= secret_env
    assert "EVENTS_TOKEN" not in secret_env, "only the gateway receives deliveries"
    assert {e["name"] for e in gateway["env"] if "valueFrom" in e} >= {"EVENTS_TOKEN", "DATABASE_URL"}
    (secret,) = by_kind(docs, "Secret").values()
    assert base64.b64decode(secret["data"]["EVENTS_TOKEN"]).decode() == "t"
    (configmap,) = by_kind(docs, "ConfigMap").values()
    assert configmap["data"]["EVENT_WORKERS"] == "0" and "EVENTS_TOKEN" not in configmap["data"]
    notes = deploy_helm.render(deploy_helm.SCENARIOS["events-worker"])["florence-tagger/templates/NOTES.txt"]
    assert "florence-tagger worker" in notes


def test_event_workers_without_a_shared_postgresql_are_refused() -> None:
    assert "worker" not in by_kind(deploy_helm.documents(), "Deployment"), "off by default"
    with pytest.raises(Exception, match=r"worker\.enabled needs the PostgreSQL"):
        deploy_helm.render({"worker": {"enabled": True}})
