"""deploy/k8s: every manifest validates against the Kubernetes API schemas, and the parts agree."""

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from litestar import Litestar

from backend.app import create_app
from backend.config import load_settings
from tests.deploy.conftest import DEPLOY

MANIFESTS = sorted((DEPLOY / "k8s").glob("*.yaml"))
# The oldest Kubernetes release still in common managed offerings, and the newest the validator
# knows; strict: a misspelled field is an error, not silently dropped as kubectl would.
VERSIONS = ("1.30.0", kubernetes_validate.latest_version())


def _resources() -> list[dict[str, Any]]:
    return [
        doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc is not None
    ]


def _by_kind(kind: str) -> list[dict[str, Any]]:
    return [r for r in _resources() if r["kind"] == kind]


def _one(kind: str) -> dict[str, Any]:
    (resource,) = _by_kind(kind)
    return resource


def test_the_manifests_hold_what_the_issue_asks_for() -> None:
    kinds = sorted(r["kind"] for r in _resources())
    for kind in ("Deployment", "Service", "Job", "Secret", "PodDisruptionBudget"):
        assert kind in kinds


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version: str) -> None:
    for resource in _resources():
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_validator_rejects_a_misspelled_field() -> None:
    deployment = copy.deepcopy(_one("Deployment"))
    probe = deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    probe["httpGet"]["paht"] = probe["httpGet"].pop("path")
    with pytest.raises(kubernetes_validate.ValidationError, match="paht"):
        kubernetes_validate.validate(deployment, VERSIONS[-1], strict=True)


def _pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"]["labels"]
    return labels


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_selectors_pick_the_api_pods_and_not_the_migration_job() -> None:
    deployment, job = _one("Deployment"), _one("Job")
    api_labels, job_labels = _pod_labels(deployment), _pod_labels(job)
    selectors = [
        deployment["spec"]["selector"]["matchLabels"],
        _one("Service")["spec"]["selector"],
        _one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
    ]
    for selector in selectors:
        assert _selects(selector, api_labels)
        assert not _selects(selector, job_labels)
    # A budget of one available pod only protects anything with more than one replica.
    assert deployment["spec"]["replicas"] > _one("PodDisruptionBudget")["spec"]["minAvailable"]


def _containers() -> list[dict[str, Any]]:
    return [
        container
        for workload in (_one("Deployment"), _one("Job"))
        for container in workload["spec"]["template"]["spec"]["containers"]
    ]


def test_pods_read_the_secret_and_config_that_exist() -> None:
    secret, config_map = _one("Secret"), _one("ConfigMap")
    for container in _containers():
        refs = container["envFrom"]
        assert {"secretRef": {"name": secret["metadata"]["name"]}} in refs
        assert {"configMapRef": {"name": config_map["metadata"]["name"]}} in refs
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    # Key material lives in the Secret only, never in the ConfigMap.
    assert not {"INTERLUDE_KEK", "INTERLUDE_BLIND_INDEX_KEY", "INTERLUDE_TOKEN_SIGNING_KEY"} & set(
        config_map["data"]
    )
    # The settings loader (which refuses unknown INTERLUDE_* names) accepts what they set.
    settings = load_settings({**config_map["data"], **secret["stringData"]})
    assert settings.is_production
    assert not settings.auto_migrate


def _app_paths(app: Litestar) -> set[str]:
    return {route.path for route in app.routes}


def test_probes_point_at_routes_the_app_serves_on_the_container_port(tmp_path: Path) -> None:
    deployment = _one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    config_map = _one("ConfigMap")["data"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert str(port) == config_map["INTERLUDE_PORT"]
    app = create_app(
        load_settings(
            {
                "INTERLUDE_DATA_DIR": str(tmp_path),
                "INTERLUDE_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}",
            }
        )
    )
    paths = _app_paths(app)
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] == "http"


def test_replicas_share_one_data_volume_for_export_archives() -> None:
    # A finished export is a file in the data directory; its download may reach any replica.
    spec = _one("Deployment")["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    dockerfile = (DEPLOY / "docker" / "Dockerfile").read_text()
    (mount,) = [
        m for m in container["volumeMounts"] if f"INTERLUDE_DATA_DIR={m['mountPath']}" in dockerfile
    ]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    claim = _one("PersistentVolumeClaim")
    assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert "ReadWriteMany" in claim["spec"]["accessModes"]


def test_termination_grace_covers_the_pre_stop_pause_and_the_graceful_stop() -> None:
    spec = _one("Deployment")["spec"]["template"]["spec"]
    # preStop sleeps 5 s, uvicorn drains up to 20 s, timers finish up to 10 s (cli.py, timers.py).
    assert spec["terminationGracePeriodSeconds"] > 5 + 20 + 10
