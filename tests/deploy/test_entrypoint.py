"""deploy/docker-entrypoint.py: secrets from files, the password into the URL, PORT."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.engine import make_url

from tests.system.stack import ROOT, load_compose, load_yaml


def load_entrypoint() -> ModuleType:
    path = ROOT / "deploy" / "docker-entrypoint.py"
    spec = importlib.util.spec_from_file_location("docker_entrypoint", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = load_entrypoint()
HYPERCORN = ["hypercorn", "-c", "hypercorn.toml", "service.asgi:app"]


def file_variables_set_by_deployments() -> set[str]:
    """Every NAME_FILE that compose's services and the k8s ConfigMap hand the image."""
    names = {
        name
        for service in load_compose()["services"].values()
        if isinstance(service.get("environment"), dict)
        for name in service["environment"]
    }
    names |= set(load_yaml(ROOT / "deploy" / "k8s" / "configmap.yaml")["data"])
    return {name.removesuffix("_FILE") for name in names if name.endswith("_FILE")}


def test_every_secret_file_a_deployment_sets_is_read_by_the_entrypoint() -> None:
    # A NAME_FILE the entrypoint does not read leaves NAME unset: production then
    # refuses to start (MFA_ENCRYPTION_KEY) or runs without it.
    images_own = {"POSTGRES_PASSWORD"}  # read by the postgres image, not ours
    wanted = file_variables_set_by_deployments() - images_own
    assert wanted, "found no NAME_FILE in compose.yaml or the ConfigMap"
    assert wanted <= set(entrypoint.FILE_VARIABLES)


@pytest.mark.parametrize("password", ["p@ss:w/rd#1", "plain", "100%?&= é"])
def test_database_password_reaches_the_driver_intact(password: str) -> None:
    env = {
        "DATABASE_URL": "postgresql://service@pgbouncer:6432/service",
        "DATABASE_PASSWORD": password,
    }

    entrypoint.with_database_password(env)

    url = make_url(env["DATABASE_URL"])
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "service",
        password,
        "pgbouncer",
        6432,
        "service",
    )
    assert "DATABASE_PASSWORD" not in env


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://service:already@db/service",
        "postgresql://db/service",
        "",
    ],
)
def test_database_password_refuses_a_url_it_cannot_complete(url: str) -> None:
    env = {"DATABASE_URL": url, "DATABASE_PASSWORD": "x"}

    with pytest.raises(entrypoint.EntrypointError):
        entrypoint.with_database_password(env)


def test_secret_files_set_their_variable_without_the_newline(tmp_path: Path) -> None:
    secret = tmp_path / "jwt"
    secret.write_text("s3cret with spaces\n")
    env = {"JWT_SECRET_KEY_FILE": str(secret), "UNRELATED_FILE": "/etc/passwd"}

    entrypoint.read_secret_files(env)

    assert env == {
        "JWT_SECRET_KEY": "s3cret with spaces",
        "UNRELATED_FILE": "/etc/passwd",
    }


def test_secret_file_and_value_together_are_refused(tmp_path: Path) -> None:
    secret = tmp_path / "key"
    secret.write_text("a")
    env = {"SECRET_KEY": "b", "SECRET_KEY_FILE": str(secret)}

    with pytest.raises(entrypoint.EntrypointError, match="both"):
        entrypoint.read_secret_files(env)


def test_a_missing_secret_file_is_a_clear_error(tmp_path: Path) -> None:
    env = {"SECRET_KEY_FILE": str(tmp_path / "missing")}

    with pytest.raises(entrypoint.EntrypointError, match="SECRET_KEY_FILE"):
        entrypoint.read_secret_files(env)


def test_port_sets_hypercorns_bind() -> None:
    assert entrypoint.with_port(HYPERCORN, {"PORT": "8080"}) == [
        *HYPERCORN,
        "--bind",
        "0.0.0.0:8080",
    ]
    # Unset: hypercorn.toml's bind, 5000.
    assert entrypoint.with_port(HYPERCORN, {}) == HYPERCORN
    # An explicit bind wins; other commands are left alone.
    explicit = [*HYPERCORN, "-b", "127.0.0.1:1"]
    assert entrypoint.with_port(explicit, {"PORT": "8080"}) == explicit
    assert entrypoint.with_port(["alembic", "upgrade"], {"PORT": "1"}) == [
        "alembic",
        "upgrade",
    ]


@pytest.mark.parametrize("port", ["0", "65536", "http", "-1"])
def test_a_port_that_is_not_a_port_is_refused(port: str) -> None:
    with pytest.raises(entrypoint.EntrypointError, match="PORT"):
        entrypoint.with_port(HYPERCORN, {"PORT": port})


@pytest.mark.parametrize("password", ["p@ss:w/rd#1", "plain"])
def test_redis_password_joins_the_redis_url_as_the_default_users(
    password: str,
) -> None:
    env = {"REDIS_URL": "redis://redis:6379/0", "REDIS_PASSWORD": password}

    entrypoint.with_redis_password(env)

    url = make_url(env["REDIS_URL"])
    assert (url.username, url.password, url.host, url.port) == (
        "",
        password,
        "redis",
        6379,
    )
    assert "REDIS_PASSWORD" not in env


def test_redis_password_refuses_a_url_with_one_already() -> None:
    env = {"REDIS_URL": "redis://:already@redis:6379/0", "REDIS_PASSWORD": "x"}

    with pytest.raises(entrypoint.EntrypointError, match="REDIS_URL has a password"):
        entrypoint.with_redis_password(env)


FAKE_HYPERCORN = """#!{python}
import os, signal, sys, time
report = os.environ["REPORT"]
def on_term(signum, frame):
    drain_file = os.environ.get("DRAIN_FILE", "")
    with open(report, "a") as out:
        out.write(f"sigterm {{time.monotonic()}} {{os.path.exists(drain_file)}}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
with open(report, "a") as out:
    out.write(f"serving {{os.getpid()}}\\n")
while True:
    time.sleep(0.05)
"""


def start_with_fake_hypercorn(
    tmp_path: Path, drain_seconds: str
) -> tuple[subprocess.Popen[bytes], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "hypercorn"
    fake.write_text(FAKE_HYPERCORN.format(python=sys.executable))
    fake.chmod(0o755)
    report = tmp_path / "report"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "REPORT": str(report),
        "SHUTDOWN_DRAIN_SECONDS": drain_seconds,
    }
    entrypoint_script = ROOT / "deploy" / "docker-entrypoint.py"
    process = subprocess.Popen(  # noqa: S603 (this interpreter, the repo's entrypoint)
        [sys.executable, str(entrypoint_script), "hypercorn"], env=env
    )
    deadline = time.monotonic() + 10
    while not (report.exists() and "serving" in report.read_text()):
        assert time.monotonic() < deadline, "the fake hypercorn never started"
        time.sleep(0.02)
    return process, report


def test_sigterm_drains_before_hypercorn_is_told_to_stop(tmp_path: Path) -> None:
    process, report = start_with_fake_hypercorn(tmp_path, "1.5")
    (served,) = report.read_text().split()[1:2]
    assert int(served) != process.pid  # a child: the entrypoint stays to drain

    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    status = process.wait(timeout=10)

    word, at, drain_file_existed = report.read_text().splitlines()[-1].split()
    assert word == "sigterm"
    assert float(at) - signalled >= 1.5
    assert drain_file_existed == "True"  # /readyz answered 503 all along
    assert status == 0  # hypercorn's own status
    assert not list(Path(tempfile.gettempdir()).glob(f"draining-{process.pid}"))


def test_no_drain_execs_hypercorn_in_place(tmp_path: Path) -> None:
    process, report = start_with_fake_hypercorn(tmp_path, "0")
    (served,) = report.read_text().split()[1:2]

    process.send_signal(signal.SIGTERM)

    assert process.wait(timeout=10) == 0
    assert int(served) == process.pid


@pytest.mark.parametrize("value", ["soon", "-1", "600"])
def test_a_drain_that_is_not_0_to_60_seconds_is_refused(value: str) -> None:
    with pytest.raises(entrypoint.EntrypointError, match="SHUTDOWN_DRAIN_SECONDS"):
        entrypoint.drain_seconds({"SHUTDOWN_DRAIN_SECONDS": value})
