"""The container files checked without Docker: lint, shape, compose schema, nginx."""

from __future__ import annotations

import importlib
import ipaddress
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.stack import (
    COMPOSE,
    DOCKERFILE,
    NGINX,
    NGINX_CONF,
    ROOT,
    MissingVariableError,
    compose_variables,
    dockerfile_stages,
    dockerignore_patterns,
    dockerignored,
    exec_form,
    healthcheck_command,
    hypercorn_port,
    hypercorn_settings,
    interpolate,
    load_compose,
    local_nginx_conf,
    network_ranges,
    nginx_listen_port,
    nginx_upstream_port,
    run_nginx_test,
    seconds,
    volume_mounts,
)

SECRETS = ["JWT_SECRET_KEY", "SECRET_KEY", "POSTGRES_PASSWORD", "ADMIN_PASSWORD"]
# Every variable compose.yaml requires, so that one can be left out at a time.
REQUIRED_ENV = dict.fromkeys([*SECRETS, "ADMIN_EMAIL"], "x" * 40)
HADOLINT = Path(sys.executable).parent / "hadolint"
# jsonschema (dev group) ships no type stubs; mypy --strict rejects a plain import.
jsonschema = importlib.import_module("jsonschema")


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run(  # noqa: S603
        [str(HADOLINT), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_in_one_stage_and_runs_from_the_same_slim_python() -> None:
    stages = dockerfile_stages()
    build, runtime = stages[0], stages[-1]

    assert len(stages) >= 2
    assert re.fullmatch(r"python:\d+\.\d+(\.\d+)?-slim(-\w+)?", runtime.image)
    # The venv copied across points at the build stage's interpreter path.
    assert build.image == runtime.image


def test_runtime_stage_copies_the_venv_and_only_the_runtime_files() -> None:
    stages = dockerfile_stages()
    runtime = stages[-1]
    copies = runtime.copies()
    from_build = [copy for copy in copies if copy.from_stage is not None]
    from_context = {
        source for copy in copies if copy.from_stage is None for source in copy.sources
    }

    assert [(c.from_stage, c.sources) for c in from_build] == [
        (stages[0].name, ("/app/.venv",))
    ]
    assert from_context == {"migrations", "pyproject.toml", "hypercorn.toml"}


@pytest.mark.parametrize(
    "tool",
    [
        r"\buv\b",
        r"\bpip install\b",
        r"\bapt-get install\b",
        r"\bgcc\b",
        "build-essential",
    ],
)
def test_runtime_stage_installs_no_build_tools(tool: str) -> None:
    runtime = dockerfile_stages()[-1]

    assert not [i for i in runtime.instructions if re.search(tool, i.arguments)]


def test_runtime_user_is_a_fixed_non_root_uid() -> None:
    runtime = dockerfile_stages()[-1]
    (user,) = runtime.arguments("USER")

    assert re.fullmatch(r"\d+(:\d+)?", user), "a numeric uid[:gid], not a name"
    assert int(user.partition(":")[0]) != 0
    # USER comes after every COPY and RUN, which need root.
    keywords = [i.keyword for i in runtime.instructions]
    assert keywords.index("USER") > max(
        index for index, keyword in enumerate(keywords) if keyword in ("COPY", "RUN")
    )


def test_image_command_is_exec_form_hypercorn_with_its_settings_file() -> None:
    runtime = dockerfile_stages()[-1]

    assert exec_form(runtime.arguments("CMD")[-1]) == [
        "hypercorn",
        "-c",
        "hypercorn.toml",
        "service.asgi:app",
    ]


def test_image_runs_production_settings_unbuffered_from_the_venv() -> None:
    env = dockerfile_stages()[-1].env({"PATH": "/usr/bin"})

    assert env["APP_ENV"] == "production"
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"].split(":")[0] == "/app/.venv/bin"


def test_healthcheck_probes_healthz_on_the_served_port() -> None:
    runtime = dockerfile_stages()[-1]
    (healthcheck,) = runtime.arguments("HEALTHCHECK")
    command = " ".join(healthcheck_command(healthcheck))

    assert f"127.0.0.1:{hypercorn_port()}/healthz" in command
    assert runtime.arguments("EXPOSE") == [str(hypercorn_port())]


def test_hypercorn_runs_one_worker_with_a_graceful_timeout() -> None:
    # Several workers drop in-flight requests on SIGTERM (STACK.md §6).
    settings = hypercorn_settings()

    assert settings["workers"] in (0, 1)
    assert settings["graceful_timeout"] >= 5


# ------------------------------------------------------------- .dockerignore


@pytest.mark.parametrize(
    "path",
    [".git/config", ".venv/bin/python", ".env", ".env.production", "tests/conftest.py"],
)
def test_dockerignore_keeps_path_out_of_the_build_context(path: str) -> None:
    assert dockerignored(path, dockerignore_patterns())


def test_dockerignore_keeps_every_file_the_dockerfile_copies() -> None:
    patterns = dockerignore_patterns()
    sources = [
        source
        for stage in dockerfile_stages()
        for copy in stage.copies()
        if copy.from_stage is None
        for source in copy.sources
    ]
    files = [
        path.relative_to(ROOT).as_posix()
        for source in sources
        for path in [ROOT / source, *sorted((ROOT / source).rglob("*"))]
        if path.is_file() and "__pycache__" not in path.parts
    ]

    assert sources
    assert [path for path in files if dockerignored(path, patterns)] == []


# ------------------------------------------------------------------- compose


def test_compose_file_validates_against_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests" / "data" / "compose-spec.json").read_text())
    # The vendored schema declares draft 2019-09 (with a trailing "#" that
    # jsonschema's auto-detection does not recognise).
    jsonschema.Draft201909Validator.check_schema(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft201909Validator(schema).iter_errors(load_compose())
    ]

    assert errors == []


def test_compose_interpolates_with_every_required_variable_set() -> None:
    compose = interpolate(load_compose(), REQUIRED_ENV)

    assert compose["services"]["api"]["environment"]["JWT_SECRET_KEY"] == "x" * 40


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_secret_is_required_and_never_defaulted(secret: str) -> None:
    uses = [op for name, op in compose_variables(COMPOSE.read_text()) if name == secret]
    environment = {k: v for k, v in REQUIRED_ENV.items() if k != secret}

    assert uses, f"{secret} is not used"
    assert set(uses) == {":?"}
    with pytest.raises(MissingVariableError) as missing:
        interpolate(load_compose(), environment)
    assert missing.value.name == secret


def test_compose_database_is_a_pinned_postgres_with_healthcheck_and_volume() -> None:
    compose = load_compose()
    db = compose["services"]["db"]
    named_volumes = compose.get("volumes") or {}

    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-\w+)?", db["image"])
    assert "pg_isready" in " ".join(db["healthcheck"]["test"])
    assert [
        (source, target)
        for source, target, _ in volume_mounts(db)
        if source in named_volumes
    ] == [("pgdata", "/var/lib/postgresql/data")]


def test_compose_runs_redis_for_the_shared_login_throttle() -> None:
    services = load_compose()["services"]

    assert services["redis"]["image"].startswith("redis:")
    assert "redis://redis:6379" in services["api"]["environment"]["REDIS_URL"]


def test_compose_migrate_upgrades_then_creates_the_admin_from_the_environment() -> None:
    services = load_compose()["services"]
    migrate = services["migrate"]
    command = migrate["command"]
    script = command[-1] if isinstance(command, list) else command

    assert script.index("alembic upgrade head") < script.index("create-admin")
    assert "&&" in script, "create-admin must not run after a failed migration"
    # create-admin reads ADMIN_EMAIL / ADMIN_PASSWORD when given no arguments.
    assert shlex.split(script.partition("create-admin")[2]) == []
    assert {"ADMIN_EMAIL", "ADMIN_PASSWORD"} <= set(migrate["environment"])
    assert (
        migrate["environment"]["DATABASE_URL"]
        == (services["api"]["environment"]["DATABASE_URL"])
    )
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    assert migrate["image"] == services["api"]["image"]


def test_compose_api_runs_replicas_only_after_a_successful_migration() -> None:
    api = load_compose()["services"]["api"]

    assert api["deploy"]["replicas"] >= 2
    assert api["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert "ports" not in api
    assert "container_name" not in api


def test_compose_api_is_stopped_after_hypercorn_graceful_timeout() -> None:
    api = load_compose()["services"]["api"]

    assert api.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert seconds(api["stop_grace_period"]) > hypercorn_settings()["graceful_timeout"]


def test_compose_load_balancer_is_nginx_with_the_repo_config_on_one_port() -> None:
    services = load_compose()["services"]
    lb = services["lb"]
    (published,) = lb["ports"]
    container_port = int(str(published).rpartition(":")[2])

    assert lb["image"].startswith("nginx:")
    assert ("./deploy/nginx.conf", "/etc/nginx/nginx.conf", True) in volume_mounts(lb)
    assert container_port == nginx_listen_port(NGINX_CONF.read_text())
    assert [name for name, service in services.items() if "ports" in service] == ["lb"]
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_trusts_only_the_load_balancer_as_a_proxy() -> None:
    # The api believes X-Forwarded-For from TRUSTED_PROXIES. Anything wider than
    # nginx's own address (the bridge gateway that docker-proxy connects from,
    # any other container) could forge a client address for the login throttle.
    compose = load_compose()
    lb_address = compose["services"]["lb"]["networks"]["backend"]["ipv4_address"]
    trusted = compose["services"]["api"]["environment"]["TRUSTED_PROXIES"]

    assert [ipaddress.ip_network(item.strip()) for item in trusted.split(",")] == [
        ipaddress.ip_network(f"{lb_address}/32")
    ]


def test_compose_load_balancer_address_is_outside_the_dynamic_range() -> None:
    # A static address inside the range Docker hands out can be taken by a
    # replica recreated first: nginx then fails with "Address already in use".
    compose = load_compose()
    lb_address = ipaddress.IPv4Address(
        compose["services"]["lb"]["networks"]["backend"]["ipv4_address"]
    )
    ranges = network_ranges(compose, "backend")

    assert any(lb_address in subnet for subnet, _ in ranges)
    assert not any(lb_address in dynamic for _, dynamic in ranges)


# --------------------------------------------------------------------- nginx


def test_nginx_upstream_targets_the_port_hypercorn_binds() -> None:
    assert nginx_upstream_port(NGINX_CONF.read_text()) == hypercorn_port()


@pytest.mark.skipif(NGINX is None, reason="no nginx (.ci/run installs it)")
def test_nginx_accepts_the_config_with_local_upstreams(tmp_path: Path) -> None:
    config = tmp_path / "nginx.conf"
    config.write_text(
        local_nginx_conf(
            NGINX_CONF.read_text(),
            upstreams=["127.0.0.1:18001", "127.0.0.1:18002"],
            listen_port=18000,
            state_dir=tmp_path,
        )
    )

    result = run_nginx_test(config)

    assert result.returncode == 0, result.stderr
