"""The image, built from the Dockerfile as it is and run as it is deployed.

Built once per run by deploy/image/build.sh (Docker's format; the base pulled,
or made from Debian's packages where no registry answers), then run with
podman under the k8s Deployment's hardening: its migrate command and
create-admin against a PostgreSQL of the test's own that checks passwords,
the Flask deployment's variables on port 5000, its HEALTHCHECK, and two
replicas behind deploy/haproxy.cfg stopped and replaced under load. What
tests/system/test_replicas_behind_lb.py imitates in a virtualenv, this runs
for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import tomllib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests import backends
from tests.support import FLASK_DDL, LOGIN, ME, RESET_MAIL, bearer
from tests.system.harness import PostgresCluster, run
from tests.system.harness import check as succeeded
from tests.system.podman import (
    IMAGE,
    MISSING,
    PODMAN,
    STAND_IN_LABEL,
    Containers,
    ImageFleet,
    base_image,
    build,
    compose_command,
    compose_environment,
    grace_period,
    inspect,
    podman,
    writable_paths,
    write_secret,
)
from tests.system.stack import (
    HAPROXY,
    HEALTHZ_PROBE,
    ROOT,
    STOP_AFTER,
    Fleet,
    Load,
    assert_retiring_drops_no_request,
    assert_stopping_drops_no_request,
    deployment_secrets,
    dockerfile_stages,
    exec_form,
    fetch,
    healthcheck_command,
    hypercorn_port,
    hypercorn_settings,
    image_user,
    make_workdir,
    wait_until_every_replica_serves,
)

pytestmark = pytest.mark.skipif(PODMAN is None, reason=MISSING)

# What the runtime layer (everything above the base) may weigh: the locked
# runtime packages with their bytecode, the migrations and three files. It measured
# 92 MB before the account-security packages, 123.6 MB with them: cryptography
# (AES-GCM for TOTP secrets, py_webauthn's signatures) 16 MB, pyasn1 and
# pyasn1-modules 3.4, zxcvbn 1.7, cbor2 1.4, httpx and httpcore 1.5, webauthn,
# pyopenssl and pyotp 1.3. The budget catches what should never be there (the dev
# group, a build tool, a cache), not the packages the features need.
RUNTIME_LAYER_BUDGET = 130 * 1000**2
# The image's /app: what the Dockerfile's runtime stage copies, nothing else.
APP_FILES = {
    ".venv",
    "migrations",
    "pyproject.toml",
    "hypercorn.toml",
    "docker-entrypoint.py",
}
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
# Development tools that must not be in the runtime venv (the dev group's).
DEV_TOOLS = {"pytest", "mypy", "ruff", "hypothesis", "uv", "coverage", "schemathesis"}


@dataclass(frozen=True)
class Built:
    tag: str
    seconds: float


@pytest.fixture(scope="session")
def built() -> Built:
    return Built(IMAGE, build(IMAGE))


@pytest.fixture(scope="module")
def secrets() -> dict[str, str]:
    return deployment_secrets()


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    folder = make_workdir("systemtest-")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
async def cluster(secrets: dict[str, str]) -> AsyncIterator[PostgresCluster]:
    """A PostgreSQL on the host where the role `service` must give its password."""
    server = PostgresCluster(password_roles=("service",))
    try:
        await asyncio.to_thread(server.start)
        admin = await asyncpg.connect(server.dsn())
        try:
            password = secrets["POSTGRES_PASSWORD"].replace("'", "''")
            await admin.execute(f"CREATE ROLE service LOGIN PASSWORD '{password}'")
            await admin.execute("CREATE DATABASE service OWNER service")
        finally:
            await admin.close()
        yield server
    finally:
        await asyncio.to_thread(server.remove)


@pytest.fixture(scope="module")
def containers(
    built: Built, workdir: Path, secrets: dict[str, str]
) -> Iterator[Containers]:
    folder = workdir / "secrets"
    files = {
        name: write_secret(folder, name, secrets[name.upper()])
        for name in (
            "postgres_password",
            "jwt_secret_key",
            "secret_key",
            "metrics_token",
            "mfa_encryption_key",
            "admin_password",
        )
    }
    group = Containers(built.tag, files)
    yield group
    group.remove()


def with_host_services(env: dict[str, str], cluster: PostgresCluster) -> dict[str, str]:
    """compose's service names made this host's addresses; nothing else. (The
    suite's Redis asks for no password: compose's REDIS_PASSWORD_FILE goes.)"""
    return {
        **{key: value for key, value in env.items() if key != "REDIS_PASSWORD_FILE"},
        "DATABASE_URL": f"postgresql://service@127.0.0.1:{cluster.port}/service",
        "REDIS_URL": backends.redis_url(),
        "TRUSTED_PROXIES": "127.0.0.1/32",
    }


@dataclass(frozen=True)
class Migrated:
    first: subprocess.CompletedProcess[str]
    again: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def migrated(
    containers: Containers, cluster: PostgresCluster, secrets: dict[str, str]
) -> Migrated:
    """compose's migrate service, run twice as every `up` runs it."""
    env = with_host_services(compose_environment("migrate", secrets), cluster)
    first = containers.run(compose_command("migrate"), env)
    again = containers.run(compose_command("migrate"), env)
    return Migrated(first, again)


@pytest.fixture(scope="module")
async def fleet(
    containers: Containers,
    cluster: PostgresCluster,
    secrets: dict[str, str],
    migrated: Migrated,
    workdir: Path,
) -> AsyncIterator[ImageFleet]:
    if HAPROXY is None:
        pytest.skip("no haproxy (.ci/run installs Debian's haproxy)")
    assert migrated.first.returncode == 0, migrated.first.stderr
    env = with_host_services(compose_environment("api", secrets), cluster)
    stack = ImageFleet(workdir, containers=containers, env=env)
    try:
        # A cold container imports the whole service on a busy machine.
        await asyncio.to_thread(stack.ensure_replicas)
        await asyncio.to_thread(stack.start_lb)
        yield stack
    finally:
        await asyncio.to_thread(stack.stop)


@pytest.fixture
async def serving(fleet: ImageFleet) -> ImageFleet:
    await asyncio.to_thread(fleet.ensure_replicas)
    await wait_until_every_replica_serves(fleet)
    return fleet


async def admin_token(fleet: Fleet, secrets: dict[str, str]) -> str:
    reply = await fetch(
        fleet.lb_port,
        "POST",
        LOGIN,
        json_body={
            "email": secrets["ADMIN_EMAIL"],
            "password": secrets["ADMIN_PASSWORD"],
        },
    )
    assert reply.status == 200, reply.body
    token: str = reply.json()["access_token"]
    return token


# ------------------------------------------------------------ the build


def test_image_builds_in_docker_format_keeping_the_healthcheck(
    built: Built, measurements: list[str]
) -> None:
    image = inspect(built.tag)
    config = image["Config"]
    runtime = dockerfile_stages()[-1]
    (healthcheck,) = runtime.arguments("HEALTHCHECK")
    measurements.append(f"deploy/image/build.sh took {built.seconds:.1f} s")

    # OCI's image format has no health check: podman drops it there.
    assert image["ManifestType"] == DOCKER_MANIFEST
    assert image["Healthcheck"]["Test"] == ["CMD", *healthcheck_command(healthcheck)]
    assert image["Healthcheck"]["Interval"] == 10 * 10**9
    assert config["User"] == runtime.arguments("USER")[-1]
    assert config["Entrypoint"] == exec_form(runtime.arguments("ENTRYPOINT")[-1])
    assert config["Cmd"] == exec_form(runtime.arguments("CMD")[-1])
    assert config["ExposedPorts"] == {f"{hypercorn_port()}/tcp": {}}


def image_root(tag: str) -> Iterator[Path]:
    """The image's files, mounted read-only on the host for the block."""
    path = Path(podman("image", "mount", tag).stdout.strip())
    try:
        yield path
    finally:
        podman("image", "unmount", tag, check=False)


@pytest.fixture(scope="module")
def root(built: Built) -> Iterator[Path]:
    yield from image_root(built.tag)


def locked_runtime_packages(python_full_version: str) -> set[str]:
    """The names uv.lock resolves for the runtime (no dev group) on that Python,
    normalised: uv export keeps every marker (async-timeout below 3.11.3, one
    Quart per Python), uv sync in the image applies them."""
    uv = ROOT / ".tools" / "bin" / "uv"
    exported = run(
        [
            uv if uv.exists() else "uv",
            "export",
            "--frozen",
            "--no-dev",
            "--no-hashes",
            "--no-emit-project",
            "--no-header",
            "--no-annotate",
        ],
        cwd=ROOT,
        timeout=60,
    )
    succeeded(exported)
    environment = {
        "python_full_version": python_full_version,
        "python_version": ".".join(python_full_version.split(".")[:2]),
    }
    requirements = [
        Requirement(line)
        for line in exported.stdout.splitlines()
        if line and not line.startswith(("#", " "))
    ]
    return {
        canonicalize_name(requirement.name)
        for requirement in requirements
        if requirement.marker is None or requirement.marker.evaluate(environment)
    }


def venv_python_version(venv: Path) -> str:
    """The full version uv recorded for the venv's interpreter (pyvenv.cfg)."""
    config = dict(
        line.split(" = ", 1)
        for line in (venv / "pyvenv.cfg").read_text().splitlines()
        if " = " in line
    )
    return config["version_info"]


def installed_packages(site_packages: Path) -> set[str]:
    return {
        canonicalize_name(path.name.removesuffix(".dist-info").rsplit("-", 1)[0])
        for path in site_packages.glob("*.dist-info")
    }


def test_image_holds_the_runtime_packages_and_files_only(root: Path) -> None:
    (site_packages,) = (root / "app" / ".venv" / "lib").glob("python3*/site-packages")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    installed = installed_packages(site_packages)
    compilers = [
        path.relative_to(root).as_posix()
        for folder in ("usr/bin", "usr/local/bin", "app/.venv/bin")
        for name in ("gcc", "cc", "c++", "g++", "clang", "make", "uv", "uvx")
        if (path := root / folder / name).exists()
    ]
    under_app = {path.name for path in (root / "app").iterdir()}
    leaks = [
        path.relative_to(root).as_posix()
        for path in (root / "app").rglob("*")
        if path.name in (".git", "tests", ".env", "secrets", "uv.lock")
        and "site-packages" not in path.parts
    ]

    locked = locked_runtime_packages(venv_python_version(root / "app" / ".venv"))

    assert installed == locked | {canonicalize_name(project)}
    assert not installed & DEV_TOOLS
    assert compilers == []
    assert under_app == APP_FILES
    assert leaks == []


def test_runtime_layer_fits_its_budget(built: Built, measurements: list[str]) -> None:
    image, base = inspect(built.tag), inspect(base_image())
    runtime_layer = image["Size"] - base["Size"]
    stand_in = STAND_IN_LABEL in (base["Config"].get("Labels") or {})
    measurements.append(
        f"image {image['Size'] / 1e6:.0f} MB on {base_image()} "
        f"({'the stand-in from Debian' if stand_in else 'the registry'}'s, "
        f"{base['Size'] / 1e6:.0f} MB); runtime layer {runtime_layer / 1e6:.1f} MB "
        f"(budget {RUNTIME_LAYER_BUDGET / 1e6:.0f} MB)"
    )

    assert 0 < runtime_layer <= RUNTIME_LAYER_BUDGET


def test_nothing_of_the_builder_reaches_the_image(built: Built) -> None:
    # The build steps saw this machine's trust store (build.sh mounts it);
    # the image holds the base's, and the build stage's settings stay there.
    changed = podman("image", "diff", "--format", "json", built.tag, base_image())
    paths = {
        path for kind in json.loads(changed.stdout).values() for path in kind or []
    }
    env = dict(item.split("=", 1) for item in inspect(built.tag)["Config"]["Env"] or [])
    base_env = dict(
        item.split("=", 1) for item in inspect(base_image())["Config"]["Env"] or []
    )

    assert not [
        p for p in paths if p.startswith(("/etc/ssl", "/usr/local/share/ca", "/root"))
    ]
    assert not [key for key in env if key.startswith(("UV_", "PIP_", "SSL_"))]
    assert set(env) - set(base_env) == {
        "PATH",
        "PYTHONUNBUFFERED",
        "PYTHONDONTWRITEBYTECODE",
        "APP_ENV",
    } - set(base_env)


# ------------------------------------------------------------ migrate


async def test_migrate_and_create_admin_run_from_the_image_with_file_secrets(
    migrated: Migrated, cluster: PostgresCluster, secrets: dict[str, str]
) -> None:
    connection = await asyncpg.connect(cluster.dsn("service"))
    try:
        version = await connection.fetchval("SELECT version_num FROM alembic_version")
        admin = await connection.fetchrow(
            "SELECT is_admin, password_hash FROM users WHERE email = $1",
            secrets["ADMIN_EMAIL"],
        )
    finally:
        await connection.close()
    heads = sorted(
        path.name.split("_", 1)[0]
        for path in (ROOT / "migrations" / "versions").glob("0*.py")
    )

    assert migrated.first.returncode == 0, migrated.first.stderr
    assert version == heads[-1]
    assert admin is not None
    assert admin["is_admin"] is True
    assert secrets["ADMIN_PASSWORD"] not in admin["password_hash"]
    # compose runs it on every `up`, over a migrated database: --bootstrap
    # finds the admin and does nothing.
    assert migrated.again.returncode == 0, migrated.again.stderr
    assert "nothing to bootstrap" in migrated.again.stdout


async def test_a_wrong_database_password_file_is_refused(
    containers: Containers,
    cluster: PostgresCluster,
    secrets: dict[str, str],
    workdir: Path,
) -> None:
    # The password really travels from the file to PostgreSQL, which checks it.
    wrong = write_secret(workdir / "wrong", "postgres_password", "not-the-password")
    env = with_host_services(compose_environment("migrate", secrets), cluster)
    result = await asyncio.to_thread(
        containers.run,
        compose_command("migrate"),
        env,
        {"postgres_password": wrong},
    )

    assert result.returncode != 0
    assert "password authentication failed" in result.stderr


async def database_of(cluster: PostgresCluster, name: str, *ddl: str) -> None:
    """A database `name` of the role `service`, holding `ddl`'s tables."""
    admin = await asyncpg.connect(cluster.dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}" OWNER service')
    finally:
        await admin.close()
    connection = await asyncpg.connect(cluster.dsn(name))
    try:
        # The tables are the service role's, as the Flask service's were its.
        await connection.execute("SET ROLE service")
        for statement in ddl:
            await connection.execute(statement)
    finally:
        await connection.close()


@pytest.mark.parametrize(
    ("ddl", "code", "says"),
    [
        (FLASK_DDL, 0, "Adopted the Flask service's database"),
        (("CREATE TABLE customers (id integer)",), 1, "Error: the database has tables"),
    ],
    ids=["flask-database", "foreign-database"],
)
async def test_migrate_adopts_a_flask_database_or_stops_in_one_line(
    containers: Containers,
    cluster: PostgresCluster,
    secrets: dict[str, str],
    ddl: tuple[str, ...],
    code: int,
    says: str,
) -> None:
    # compose.existing-db.yaml's case: migrate pointed at a database it did
    # not make. Its tables stay what they were when it refuses.
    name = f"existing_{len(ddl)}"
    await database_of(cluster, name, *ddl)
    env = with_host_services(compose_environment("migrate", secrets), cluster)
    env["DATABASE_URL"] = env["DATABASE_URL"].rpartition("/")[0] + f"/{name}"

    result = await asyncio.to_thread(containers.run, compose_command("migrate"), env)
    connection = await asyncpg.connect(cluster.dsn(name))
    try:
        tables = {
            row["tablename"]
            for row in await connection.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    finally:
        await connection.close()

    assert result.returncode == code, result.stdout + result.stderr
    if code:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        (line,) = lines
        assert line.startswith(says), line
        assert tables == {"customers"}
    else:
        assert says in result.stdout
        assert "alembic_version" in tables


# ------------------------------------------------------------ one container


@pytest.fixture(scope="module")
def flask_container(containers: Containers, secrets: dict[str, str]) -> Iterator[str]:
    """`docker run -e FLASK_ENV=production -e DATABASE_URL=... -e SECRET_KEY=...
    -e JWT_SECRET_KEY=... image` plus production's reset mail settings, in a
    network of its own: port 5000 of this shared host may be anyone's."""
    env = {
        "FLASK_ENV": "production",
        "DATABASE_URL": "postgresql://app:pw@db:5432/app",
        "SECRET_KEY": secrets["SECRET_KEY"],
        "JWT_SECRET_KEY": secrets["JWT_SECRET_KEY"],
        **RESET_MAIL,
    }
    name = containers.start(env, network="none")
    yield name
    podman("stop", "--time", "10", name, check=False)


def in_container(name: str, script: str) -> subprocess.CompletedProcess[str]:
    return podman("exec", name, "python", "-c", script, check=False, timeout=60)


def test_flask_deployments_variables_serve_on_5000_in_production(
    flask_container: str,
) -> None:
    served = in_container(flask_container, HEALTHZ_PROBE.format(port=5000))
    mode = in_container(
        flask_container,
        "from service.config import Settings; print(Settings.from_env().env)",
    )

    assert served.returncode == 0, served.stdout + served.stderr
    assert (mode.returncode, mode.stdout.strip()) == (0, "production"), mode.stderr


def test_healthcheck_passes_serving_and_fails_with_the_process_stopped(
    flask_container: str, containers: Containers
) -> None:
    # podman schedules HEALTHCHECK through systemd, which CI lacks: run it.
    assert (
        in_container(flask_container, HEALTHZ_PROBE.format(port=5000)).returncode == 0
    )
    serving = podman("healthcheck", "run", flask_container, check=False)
    pids = containers.host_pids(flask_container)
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        stopped = podman("healthcheck", "run", flask_container, check=False)
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    back = podman("healthcheck", "run", flask_container, check=False)

    assert serving.returncode == 0, serving.stdout + serving.stderr
    assert (stopped.returncode, stopped.stdout.strip()) == (1, "unhealthy")
    assert back.returncode == 0, back.stdout + back.stderr


def test_container_runs_as_the_fixed_uid_with_only_tmp_writable(
    flask_container: str,
) -> None:
    script = (
        "import json, os\n"
        "writable = []\n"
        "for folder, dirs, files in os.walk('/'):\n"
        "    if folder == '/':\n"
        "        dirs[:] = [d for d in dirs if d not in ('proc', 'sys', 'dev')]\n"
        "    if os.access(folder, os.W_OK):\n"
        "        writable.append(folder)\n"
        "        dirs[:] = []\n"
        "        continue\n"
        "    writable += [os.path.join(folder, f) for f in files\n"
        "                 if os.access(os.path.join(folder, f), os.W_OK)]\n"
        "print(json.dumps({'ids': [os.getuid(), os.getgid()], 'writable': writable}))\n"
    )
    result = in_container(flask_container, script)
    found = json.loads(result.stdout)

    assert found["ids"] == list(image_user())
    assert image_user()[0] != 0
    # The Deployment's emptyDir mounts: /tmp.
    assert found["writable"] == writable_paths()


# ------------------------------------------------------------ behind HAProxy


async def test_login_through_the_load_balancer_to_the_containers(
    serving: ImageFleet, secrets: dict[str, str]
) -> None:
    token = await admin_token(serving, secrets)
    me = await fetch(serving.lb_port, "GET", ME, headers=bearer(token))

    assert me.status == 200, me.body
    assert me.json()["email"] == secrets["ADMIN_EMAIL"]


async def test_sigterm_under_load_drops_no_request_and_exits_0_in_time(
    serving: ImageFleet, secrets: dict[str, str], measurements: list[str]
) -> None:
    load = Load(serving.lb_port, "GET", ME, bearer(await admin_token(serving, secrets)))

    await assert_stopping_drops_no_request(
        serving, load, serving.replicas[0], measurements
    )
    # The exit came within hypercorn's graceful timeout, itself within the
    # grace period before podman (or the kubelet) sends SIGKILL.
    assert hypercorn_settings()["graceful_timeout"] < grace_period()


async def test_replacing_a_container_under_load_fails_no_request(
    serving: ImageFleet, secrets: dict[str, str], measurements: list[str]
) -> None:
    # A rolling update: the new container started and healthy, then, under
    # load, put in the DNS answers, and the old one taken out and stopped.
    load = Load(serving.lb_port, "GET", ME, bearer(await admin_token(serving, secrets)))
    old = serving.replicas[0]
    new = await asyncio.to_thread(serving.new_replica)

    async def publish_the_new_one() -> None:
        await asyncio.sleep(STOP_AFTER / 2)
        serving.publish()

    await asyncio.gather(
        publish_the_new_one(),
        assert_retiring_drops_no_request(
            serving,
            load,
            old,
            measurements,
            "one container replaced",
            after=STOP_AFTER * 1.5,
        ),
    )

    assert [entry for entry in new.access_log() if entry["path"] == ME]


# ------------------------------------------------------------ logs


def test_every_line_the_serving_containers_log_is_json(
    serving: ImageFleet, flask_container: str, containers: Containers
) -> None:
    logs = {**serving.serving_logs(), flask_container: containers.logs(flask_container)}
    not_json = []
    for name, lines in logs.items():
        for line in lines:
            try:
                entry: Any = json.loads(line)
            except ValueError:
                entry = None
            if not isinstance(entry, dict):
                not_json.append(f"{name}: {line}")

    assert all(logs.values())
    assert not_json == []
