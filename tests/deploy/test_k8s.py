"""deploy/k8s/ against the Kubernetes API schemas, and what the issue asks of it."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.stack import ROOT, hypercorn_port, hypercorn_settings, image_user

K8S = ROOT / "deploy" / "k8s"
# kubernetes-validate (dev group) carries the schemas; it has no type stubs.
kubernetes_validate = importlib.import_module("kubernetes_validate")
yaml = importlib.import_module("yaml")
KUBERNETES_VERSION = "1.33"


def manifests() -> dict[str, dict[str, Any]]:
    return {
        path.relative_to(K8S).as_posix(): yaml.safe_load(path.read_text())
        for path in sorted(K8S.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
    }


def of_kind(kind: str) -> dict[str, Any]:
    (found,) = [m for m in manifests().values() if m["kind"] == kind]
    return found


@pytest.mark.parametrize("name", sorted(manifests()))
def test_manifest_validates_against_the_kubernetes_schema(name: str) -> None:
    kubernetes_validate.validate(manifests()[name], KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())

    assert sorted(kustomization["resources"]) == sorted(manifests())
    assert all((K8S / Path(name)).exists() for name in kustomization["resources"])


def test_deployment_probes_drain_and_hardening() -> None:
    deployment = of_kind("Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]

    assert deployment["spec"]["replicas"] >= 2
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["ports"][0]["containerPort"] == hypercorn_port()
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > (
        pause + hypercorn_settings()["graceful_timeout"]
    )
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == image_user()[0]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False


def test_service_pdb_and_hpa_select_the_deployment() -> None:
    labels = of_kind("Deployment")["spec"]["template"]["metadata"]["labels"]
    hpa = of_kind("HorizontalPodAutoscaler")["spec"]
    (metric,) = hpa["metrics"]

    assert of_kind("Service")["spec"]["selector"].items() <= labels.items()
    assert (
        of_kind("PodDisruptionBudget")["spec"]["selector"]["matchLabels"].items()
        <= labels.items()
    )
    assert hpa["scaleTargetRef"]["name"] == of_kind("Deployment")["metadata"]["name"]
    assert hpa["minReplicas"] >= 2
    assert metric["resource"]["name"] == "cpu"


def test_migrate_job_runs_compose_migrate_command_through_the_entrypoint() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    (container,) = of_kind("Job")["spec"]["template"]["spec"]["containers"]

    assert container["command"] == ["python", "/app/docker-entrypoint.py"]
    assert container["args"] == compose["services"]["migrate"]["command"]


def test_secrets_and_settings_are_references_never_values() -> None:
    config = of_kind("ConfigMap")["data"]
    mounted = {
        volume["secret"]["secretName"]
        for manifest in (of_kind("Deployment"), of_kind("Job"))
        for volume in manifest["spec"]["template"]["spec"]["volumes"]
        if "secret" in volume
    }

    assert not [m for m in manifests().values() if m["kind"] == "Secret"]
    assert mounted == {"service-secrets"}
    assert ":" not in config["DATABASE_URL"].partition("//")[2].partition("@")[0]
    assert all(
        config[key].startswith("/run/secrets/service/")
        for key in config
        if key.endswith("_FILE")
    )
