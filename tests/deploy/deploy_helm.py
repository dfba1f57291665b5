"""Lint and render the Helm chart offline, through the Helm SDK bundled in the PyPI package helm-python-sdk.

Used by scripts/check-deploy (``python tests/deploy/deploy_helm.py OUTDIR``) and by the deploy tests.
No helm binary, cluster or network is involved.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "florence-tagger"
KUBE_VERSION = "v1.30.0"

# Value sets rendered and validated: the defaults, and every optional branch switched the other way.
SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "full": {
        "gateway": {
            "autoscaling": {"enabled": False},
            "env": {"USE_GPT_OSS": "true", "VLM_LOAD_8BIT": "true", "S3_ENDPOINT_URL": "http://s3:8333"},
            "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}},
            "extraEnv": [
                {"name": "AWS_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": "aws", "key": "id"}}}
            ],
            "nodeSelector": {"kubernetes.io/os": "linux"},
        },
        "vlm": {"replicaCount": 3, "extraArgs": ["--max-num-seqs", "64"]},
        "gptOss": {
            "enabled": True,
            "tensorParallelSize": 2,
            "tolerations": [{"key": "gpu", "operator": "Exists"}],
        },
        "vllm": {"hfCacheClaim": "hf-cache"},
        "secrets": {"API_KEYS": "k1,k2", "VLM_API_KEY": "v", "GPT_OSS_API_KEY": "g", "HF_TOKEN": "h"},
    },
    "events-worker": {
        "worker": {"enabled": True, "replicaCount": 2},
        "gateway": {"env": {"EVENT_WORKERS": "0", "EVENTS_WRITE_BACK": "sidecar,tags"}},
        "secrets": {"DATABASE_URL": "postgresql+asyncpg://florence:p@db:5432/florence", "EVENTS_TOKEN": "t"},
    },
    "existing-secret-rocm": {
        "secrets": {"existingSecret": "tagger-keys"},
        "gateway": {"serviceAccount": {"create": False}},
        "vllm": {"image": {"repository": "vllm/vllm-openai-rocm"}, "gpuResource": "amd.com/gpu"},
        "gptOss": {"enabled": True},
    },
}


def lint(values: dict[str, Any] | None = None) -> list[str]:
    """Helm lint (strict: warnings count) against KUBE_VERSION; returns the findings, empty when clean."""
    import helm_python as helm

    report = helm.lint(str(CHART), values, strict=True, kube_version=KUBE_VERSION)
    findings = [
        f"{m.get('path', '')}: {m.get('error', '')}"
        for m in report.get("messages") or []
        if m.get("severity", 0) >= 2
    ]
    return findings + [str(e) for e in report.get("errors") or []]


def render(values: dict[str, Any] | None = None, release: str = "tagger") -> dict[str, str]:
    """Template path -> rendered manifest text, for non-empty templates (NOTES.txt included)."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        rendered = chart.render(values=values or {}, name=release, namespace="captioning", is_install=True)
    return {path: text for path, text in rendered.items() if text.strip()}


def documents(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders, parsed."""
    import yaml

    docs: list[dict[str, Any]] = []
    for path, text in render(values).items():
        if path.endswith(".yaml"):
            docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def main(outdir: str) -> int:
    """Lint each scenario and write its manifests to OUTDIR/<scenario>.yaml for kubernetes-validate."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for scenario, values in SCENARIOS.items():
        findings = lint(values)
        for finding in findings:
            print(f"helm lint [{scenario}] {finding}", file=sys.stderr)
        failed |= bool(findings)
        rendered = render(values)
        manifests = [text for path, text in sorted(rendered.items()) if path.endswith(".yaml")]
        (out / f"{scenario}.yaml").write_text("---\n".join(manifests))
        kinds = sum(text.count("\nkind: ") + text.startswith("kind: ") for text in manifests)
        print(f"helm [{scenario}] lint {'FAILED' if findings else 'ok'}; rendered {kinds} objects")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
