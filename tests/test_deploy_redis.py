"""The Redis the deployment files ship keeps its data across restarts (issue 23 item 2): a Redis without
persistence comes back empty, and replicas started afterwards would begin from the empty store.

Static checks of deploy/docker-compose.yml and deploy/kubernetes/redis/ (no Docker, no cluster);
`kubectl kustomize` runs where kubectl or kustomize is installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
REDIS_K8S = DEPLOY / "kubernetes" / "redis"


def _docs(path: Path) -> list[Any]:
    with path.open() as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def _assert_persistent(argv: list[str], mounted: set[str], where: str) -> None:
    assert argv[0] == "redis-server", where
    assert _flag(argv, "--appendonly") == "yes", f"{where}: Redis without the append-only file loses writes"
    assert _flag(argv, "--appendfsync") in ("everysec", "always"), where
    save = _flag(argv, "--save")
    assert save not in (None, "", '""'), f"{where}: `--save ''` turns snapshots off"
    directory = _flag(argv, "--dir")
    assert directory in mounted, f"{where}: --dir {directory} is not on a volume ({sorted(mounted)})"


def test_compose_redis_persists_on_a_named_volume() -> None:
    compose = _docs(DEPLOY / "docker-compose.yml")[0]
    redis = compose["services"]["redis"]
    mounts = {}
    for volume in redis["volumes"]:
        source, target = volume.split(":")[:2]
        mounts[target] = source
    _assert_persistent(redis["command"], set(mounts), "compose redis")
    assert mounts[_flag(redis["command"], "--dir")] in compose["volumes"], "the data must be a named volume"
    # The gateways use this service.
    for name, svc in compose["services"].items():
        if name.startswith("gateway"):
            url = urlparse(svc["environment"]["GATEWAY_STORE_URL"])
            assert url.hostname == "redis" and url.port == 6379


def test_kubernetes_redis_persists_on_a_volume_claim() -> None:
    kust = _docs(REDIS_K8S / "kustomization.yaml")[0]
    objects = {d["kind"]: d for name in kust["resources"] for d in _docs(REDIS_K8S / name)}
    sts, svc = objects["StatefulSet"], objects["Service"]
    pod = sts["spec"]["template"]["spec"]
    [container] = pod["containers"]
    claims = {c["metadata"]["name"] for c in sts["spec"]["volumeClaimTemplates"]}
    mounted = {m["mountPath"] for m in container["volumeMounts"] if m["name"] in claims}
    assert not any("emptyDir" in v for v in pod.get("volumes", [])), "an emptyDir is lost with the pod"
    _assert_persistent(container["args"], mounted, "kubernetes redis")
    # The gateway's Deployment reaches it by the Service's name and port.
    deployment = _docs(DEPLOY / "kubernetes" / "deployment.yaml")[0]
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    url = urlparse(env["GATEWAY_STORE_URL"])
    assert url.hostname == svc["metadata"]["name"] and url.port == svc["spec"]["ports"][0]["port"]
    assert svc["spec"]["selector"].items() <= sts["spec"]["template"]["metadata"]["labels"].items()
    # Only the gateway's pods may reach a Redis without a password.
    policy = objects["NetworkPolicy"]
    gateway_labels = deployment["spec"]["template"]["metadata"]["labels"]
    [rule] = policy["spec"]["ingress"]
    assert rule["from"][0]["podSelector"]["matchLabels"].items() <= gateway_labels.items()


def test_kubernetes_redis_kustomize_build() -> None:
    if shutil.which("kustomize"):
        cmd = ["kustomize", "build", str(REDIS_K8S)]
    elif shutil.which("kubectl"):
        cmd = ["kubectl", "kustomize", str(REDIS_K8S)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert {d["kind"] for d in yaml.safe_load_all(out.stdout)} == {"StatefulSet", "Service", "NetworkPolicy"}
