"""The image itself, built and run with podman as an operator would run it.

- built by deploy/image/build.sh, as CI and docs/deployment.md build it (Docker's
  format; the FROM image pulled, or its stand-in from Debian's packages);
- run with the k8s Deployment's hardening (read-only root, /tmp its only
  writable folder, no capabilities, no privilege escalation), the image's own
  USER, compose's environment and secrets as files under /run/secrets;
- on the host's network (each container binds its own 127.0.0.x address, as
  each has its own address under Docker), runc, and ulimits no higher than
  this machine's (deploy/image/podman.sh says why).

Replicas are containers in a tests/system/stack.py Fleet: the same HAProxy,
DNS and load as the virtualenv imitation there (Deployment). podman runs them
as tests/system/harness.py runs every process: each attached `podman run` is
a harness Server, ready once the container's /healthz answers.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.system.harness import check as succeeded
from tests.system.harness import run
from tests.system.stack import (
    ROOT,
    SECRETS_TARGET,
    Fleet,
    Replica,
    StackError,
    dockerfile_stages,
    exec_form,
    image_user,
    interpolate,
    load_compose,
    load_yaml,
)

PODMAN = shutil.which("podman")
MISSING = "podman is not installed (package: podman; .ci/run installs podman and runc)"
BUILD_SCRIPT = ROOT / "deploy" / "image" / "build.sh"
K8S_DEPLOYMENT = ROOT / "deploy" / "k8s" / "deployment.yaml"
# One tag per machine: a rebuild of unchanged sources is all cache hits.
IMAGE = "localhost/service:system-test"
STAND_IN_LABEL = "io.service.stand-in"


def command() -> list[str]:
    """podman, with runc where it is installed (crun fails on cgroup v1)."""
    assert PODMAN is not None, MISSING
    return [PODMAN, "--runtime", "runc"] if shutil.which("runc") else [PODMAN]


def limits() -> list[str]:
    """`--ulimit` for files and processes at most this process's hard limits
    (deploy/image/podman.sh: podman's defaults for root exceed them here)."""

    def capped(limit: int, ceiling: int) -> int:
        return ceiling if limit == resource.RLIM_INFINITY else min(limit, ceiling)

    files = capped(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 65536)
    processes = capped(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return [
        "--ulimit",
        f"nofile={files}:{files}",
        "--ulimit",
        f"nproc={processes}:{processes}",
    ]


def podman(
    *arguments: str, timeout: float = 120, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = run([*command(), *arguments], timeout=timeout)
    if check:
        succeeded(result)
    return result


def build(tag: str = IMAGE) -> float:
    """deploy/image/build.sh: the seconds it took (base included when cold)."""
    started = time.monotonic()
    result = run([BUILD_SCRIPT, tag], timeout=1200)
    if result.returncode != 0:
        raise StackError(f"build.sh failed:\n{result.stdout[-4000:]}{result.stderr}")
    return time.monotonic() - started


def inspect(reference: str) -> dict[str, Any]:
    (document,) = json.loads(podman("image", "inspect", reference).stdout)
    assert isinstance(document, dict)
    return document


def base_image() -> str:
    """The runtime stage's FROM, qualified as podman stores it."""
    image = dockerfile_stages()[-1].image
    if "/" not in image:
        return f"docker.io/library/{image}"
    return image if image.count("/") > 1 else f"docker.io/{image}"


def image_command() -> list[str]:
    """The Dockerfile's CMD (the ENTRYPOINT stays the image's)."""
    return exec_form(dockerfile_stages()[-1].arguments("CMD")[-1])


def k8s_container() -> tuple[dict[str, Any], dict[str, Any]]:
    """The Deployment's pod spec and its one container."""
    pod = load_yaml(K8S_DEPLOYMENT)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return pod, container


def writable_paths() -> list[str]:
    """Where the Deployment mounts an emptyDir: what its container may write."""
    pod, container = k8s_container()
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    return [
        mount["mountPath"]
        for mount in container["volumeMounts"]
        if "emptyDir" in volumes[mount["name"]]
    ]


def hardening() -> list[str]:
    """The k8s Deployment's container settings, as podman options."""
    _, container = k8s_container()
    security = container["securityContext"]
    options = []
    if security.get("readOnlyRootFilesystem"):
        # podman would add writable /tmp, /var/tmp and /run on its own.
        options += ["--read-only", "--read-only-tmpfs=false"]
    for path in writable_paths():
        options += ["--tmpfs", f"{path}:rw,nosuid,nodev,mode=1777"]
    for capability in security.get("capabilities", {}).get("drop", []):
        options += ["--cap-drop", capability]
    if security.get("allowPrivilegeEscalation") is False:
        options += ["--security-opt", "no-new-privileges"]
    return options


def write_secret(folder: Path, name: str, value: str) -> Path:
    """A secret file as the kubelet mounts one with fsGroup: root's, readable
    by the image's group only."""
    folder.mkdir(mode=0o755, exist_ok=True)
    path = folder / name
    path.write_text(value + "\n")
    path.chmod(0o440)
    if os.geteuid() == 0:
        os.chown(path, 0, image_user()[1])
    return path


# Container names unique in this process (a pid's names never meet).
_numbers = itertools.count()


@dataclass
class Containers:
    """Containers of the image, removed together; their output kept."""

    image: str
    secrets: dict[str, Path] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)

    def options(
        self,
        env: dict[str, str],
        network: str = "host",
        secrets: Mapping[str, Path] | None = None,
    ) -> list[str]:
        # The secrets its *_FILE variables name, as compose mounts them.
        files = {**self.secrets, **(secrets or {})}
        mounts = [
            option
            for name, path in sorted(files.items())
            if f"{SECRETS_TARGET}{name}" in env.values()
            for option in ("-v", f"{path}:{SECRETS_TARGET}{name}:ro")
        ]
        variables = [
            option
            for key, value in sorted(env.items())
            for option in ("-e", f"{key}={value}")
        ]
        return [
            f"--network={network}",
            *limits(),
            *hardening(),
            *mounts,
            *variables,
        ]

    def new_name(self) -> str:
        name = f"service-system-{os.getpid()}-{next(_numbers)}"
        self.names.append(name)
        return name

    def run(
        self,
        argv: list[str],
        env: dict[str, str],
        secrets: Mapping[str, Path] | None = None,
        timeout: float = 180,
    ) -> subprocess.CompletedProcess[str]:
        """A one-off command through the image's ENTRYPOINT (`compose run`),
        with `secrets` in place of some of the group's."""
        name = self.new_name()
        return podman(
            "run",
            "--name",
            name,
            # It serves nothing; podman would also complain on stderr that
            # it has no systemd to schedule the checks with.
            "--no-healthcheck",
            *self.options(env, secrets=secrets),
            self.image,
            *argv,
            timeout=timeout,
            check=False,
        )

    def start(
        self,
        env: dict[str, str],
        argv: list[str] | None = None,
        network: str = "host",
    ) -> str:
        """A detached container of the image's CMD (or `argv`): its name."""
        name = self.new_name()
        podman(
            "run",
            "--detach",
            "--name",
            name,
            *self.options(env, network),
            self.image,
            *(argv or []),
        )
        return name

    def host_pids(self, name: str) -> list[int]:
        lines = podman("top", name, "hpid").stdout.split()[1:]
        return [int(pid) for pid in lines]

    def logs(self, name: str) -> list[str]:
        """What the container wrote to stdout and stderr, line by line."""
        result = podman("logs", name, check=False)
        return (result.stdout + result.stderr).splitlines()

    def remove(self) -> None:
        for name in self.names:
            podman("rm", "--force", "--time", "0", name, check=False)


@dataclass
class ImageFleet(Fleet):
    """Replicas that are containers of the image, each on its own 127.0.0.x."""

    containers: Containers = field(kw_only=True)
    env: dict[str, str] = field(kw_only=True)

    def replica_at(self, host: str) -> Replica:
        name = self.containers.new_name()
        return self.replica_of(
            [
                *command(),
                "run",
                # Attached: the container's stdout is podman's, its exit code
                # too. Started again after a stop, under its name.
                "--replace",
                "--name",
                name,
                *self.containers.options(self.env),
                self.containers.image,
                *image_command(),
                # The only addition to the image's CMD: every container shares
                # the host's network here, where each has its own address.
                "--bind",
                f"{host}:{self.fleet_port}",
            ],
            host,
            env=os.environ,
            cwd=self.workdir,
            # A cold container imports the whole service, on a busy machine.
            timeout=90,
            name=name,
        )

    def terminate(self, replica: Replica) -> None:
        """`docker stop`: SIGTERM, SIGKILL after the grace period; returns once
        the container has exited."""
        podman("stop", "--time", str(int(grace_period())), replica.name, check=False)

    def serving_logs(self) -> dict[str, list[str]]:
        return {
            replica.name: self.containers.logs(replica.name)
            for replica in self.replicas
        }


def grace_period() -> float:
    """The k8s Deployment's terminationGracePeriodSeconds."""
    pod, _ = k8s_container()
    return float(pod["terminationGracePeriodSeconds"])


def compose_environment(service: str, values: dict[str, str]) -> dict[str, str]:
    """compose's environment for `service`, variables from `values`."""
    environment = interpolate(
        load_compose()["services"][service]["environment"], values
    )
    return {key: str(value) for key, value in environment.items()}


def compose_command(service: str) -> list[str]:
    command_ = load_compose()["services"][service]["command"]
    assert isinstance(command_, list), command_
    return [str(word) for word in command_]
