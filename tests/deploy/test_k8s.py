"""deploy/k8s/ against the Kubernetes API schemas, and what the issue asks of it."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.system.stack import ROOT, hypercorn_port, hypercorn_settings, image_user

K8S = ROOT / "deploy" / "k8s"
# kubernetes-validate (dev group) carries the schemas; it has no type stubs.
kubernetes_validate = importlib.import_module("kubernetes_validate")
yaml = importlib.import_module("yaml")
# What each feature the manifests use needs (on by default from that version).
FEATURE_VERSIONS = {"lifecycle.preStop.sleep": (1, 30)}


def minimum_version() -> str:
    """The minimum Kubernetes version kustomization.yaml states."""
    text = (K8S / "kustomization.yaml").read_text()
    match = re.search(r"Kubernetes (\d+\.\d+) or later", text)
    assert match is not None, "kustomization.yaml states no minimum version"
    return match[1]


def manifests(folder: Path = K8S) -> dict[str, dict[str, Any]]:
    """Every manifest under `folder`, as `path:Kind/name`."""
    return {
        f"{path.relative_to(folder)}:{doc['kind']}/{doc['metadata']['name']}": doc
        for path in sorted(folder.rglob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }


def app_manifests() -> dict[str, dict[str, Any]]:
    """The service's own: deploy/k8s and its one-off Job, not the backing services."""
    return {
        name: doc
        for name, doc in manifests().items()
        if not name.startswith("backing/")
    }


def of_kind(kind: str) -> dict[str, Any]:
    (found,) = [m for m in app_manifests().values() if m["kind"] == kind]
    return found


@pytest.mark.parametrize("name", sorted(manifests()))
def test_manifest_validates_against_the_minimum_kubernetes_schema(name: str) -> None:
    kubernetes_validate.validate(manifests()[name], minimum_version(), strict=True)


def test_minimum_version_has_every_feature_the_manifests_use() -> None:
    (container,) = of_kind("Deployment")["spec"]["template"]["spec"]["containers"]
    minimum = tuple(int(part) for part in minimum_version().split("."))

    assert "sleep" in container["lifecycle"]["preStop"]
    assert minimum >= FEATURE_VERSIONS["lifecycle.preStop.sleep"]
    # The schema check sees it: before 1.29 the field does not exist.
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(of_kind("Deployment"), "1.28", strict=True)


@pytest.mark.parametrize("folder", [K8S, K8S / "backing"])
def test_kustomization_lists_every_manifest_of_its_folder(folder: Path) -> None:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    files = {
        path.name for path in folder.glob("*.yaml") if path.name != "kustomization.yaml"
    }

    assert sorted(kustomization["resources"]) == sorted(files)


def test_image_reference_names_a_registry_kustomize_sets() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    (image,) = kustomization["images"]
    pod = of_kind("Deployment")["spec"]["template"]["spec"]
    job = of_kind("Job")["spec"]["template"]["spec"]

    assert {c["image"] for c in pod["initContainers"] + pod["containers"]} == {
        image["name"]
    }
    assert "/" in image["newName"], "the image's registry"
    assert [c["image"] for c in job["containers"]] == [
        f"{image['newName']}:{image['newTag']}"
    ]


def test_the_services_the_settings_name_are_provided() -> None:
    config = of_kind("ConfigMap")["data"]
    pod = of_kind("Deployment")["spec"]["template"]["spec"]
    (migrate,) = pod["initContainers"]
    migrate_env = {item["name"]: item["value"] for item in migrate["env"]}
    hosts = {
        urlsplit(url).hostname
        for url in (
            config["DATABASE_URL"],
            config["REDIS_URL"],
            migrate_env["DATABASE_URL"],
        )
    }
    provided = {
        doc["metadata"]["name"]
        for doc in manifests(K8S / "backing").values()
        if doc["kind"] == "Service"
    }

    assert hosts == provided == {"postgres", "pgbouncer", "redis"}


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


def test_pods_migrate_before_serving_as_compose_does_then_the_job_adds_the_admin() -> (
    None
):
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    script = compose["services"]["migrate"]["command"][-1]
    pod = of_kind("Deployment")["spec"]["template"]["spec"]
    (migrate,) = pod["initContainers"]
    (admin,) = of_kind("Job")["spec"]["template"]["spec"]["containers"]
    steps = [step.strip() for step in script.split("&&")]

    # compose's migrate service, split: each pod migrates (idempotent, one at
    # a time), the Job creates the admin once; both through the entrypoint.
    assert [shlex.join(migrate["args"]), shlex.join(admin["args"])] == steps
    for container in (migrate, admin):
        assert container["command"] == ["python", "/app/docker-entrypoint.py"]
    assert migrate["securityContext"] == pod["containers"][0]["securityContext"]


def test_pods_that_read_secret_files_can_as_the_images_user() -> None:
    # Secret files are root's: without fsGroup, uid 10001 cannot read them.
    for kind in ("Deployment", "Job"):
        security = of_kind(kind)["spec"]["template"]["spec"]["securityContext"]
        assert security["fsGroup"] == image_user()[1], kind


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


def test_trusted_proxies_are_named_once_and_are_not_the_private_ranges() -> None:
    config = of_kind("ConfigMap")["data"]
    named = [
        name
        for name, manifest in manifests().items()
        if "TRUSTED_PROXIES" in yaml.safe_dump(manifest)
    ]
    trusted = config["TRUSTED_PROXIES"].split(",")

    assert named == [
        next(n for n, m in manifests().items() if m["kind"] == "ConfigMap")
    ]
    for broad in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert broad not in trusted


def network_policies() -> dict[str, dict[str, Any]]:
    return {
        policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/name"]: policy
        for policy in manifests().values()
        if policy["kind"] == "NetworkPolicy"
    }


def allowed_sources(policy: dict[str, Any]) -> set[str]:
    sources = set()
    for rule in policy["spec"]["ingress"]:
        for peer in rule["from"]:
            if "namespaceSelector" in peer:
                labels = peer["namespaceSelector"]["matchLabels"]
                sources.add("namespace:" + labels["kubernetes.io/metadata.name"])
            selector = peer.get("podSelector", {})
            sources |= set(selector.get("matchLabels", {}).values())
            for expression in selector.get("matchExpressions", []):
                assert expression["operator"] == "In"
                sources |= set(expression["values"])
    return sources


def test_network_policies_let_the_ingress_reach_the_api_and_the_api_the_rest() -> None:
    policies = network_policies()
    job = of_kind("Job")["spec"]["template"]["metadata"]["labels"]

    assert {name: allowed_sources(policy) for name, policy in policies.items()} == {
        "service": {"namespace:ingress-nginx"},
        "pgbouncer": {"service", job["app.kubernetes.io/name"]},
        "redis": {"service", job["app.kubernetes.io/name"]},
        "postgres": {"pgbouncer"},
    }
    for policy in policies.values():
        assert policy["spec"]["policyTypes"] == ["Ingress"]


def test_network_policies_open_only_the_ports_their_pods_serve() -> None:
    deployments = {
        doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]: doc
        for doc in manifests().values()
        if doc["kind"] in ("Deployment", "StatefulSet")
    }
    for name, policy in network_policies().items():
        (container, *_) = deployments[name]["spec"]["template"]["spec"]["containers"]
        served = {port["name"] for port in container["ports"]}
        opened = {
            port["port"] for rule in policy["spec"]["ingress"] for port in rule["ports"]
        }
        assert opened <= served, name


def test_redis_requires_the_password_from_the_secret_file() -> None:
    redis = next(
        doc
        for doc in manifests().values()
        if doc["kind"] == "Deployment" and doc["metadata"]["name"] == "redis"
    )
    pod = redis["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    (volume,) = pod["volumes"]
    command = " ".join(container["command"] + container["args"])
    config = of_kind("ConfigMap")["data"]

    assert '--requirepass "$(cat /run/secrets/redis/password)"' in command
    assert volume["secret"]["secretName"] == "service-secrets"
    assert volume["secret"]["items"] == [{"key": "redis-password", "path": "password"}]
    assert "REDISCLI_AUTH" in " ".join(container["readinessProbe"]["exec"]["command"])
    assert config["REDIS_PASSWORD_FILE"] == "/run/secrets/service/redis-password"
