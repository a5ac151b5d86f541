"""The container files checked without Docker: lint, shape, compose schema, HAProxy."""

from __future__ import annotations

import importlib
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.system.stack import (
    COMPOSE,
    DOCKERFILE,
    HAPROXY,
    HAPROXY_CFG,
    HAPROXY_ERRORS,
    ROOT,
    compose_variables,
    dockerfile_stages,
    dockerignore_patterns,
    dockerignored,
    exec_form,
    haproxy_errorfiles,
    haproxy_errors_target,
    haproxy_listen_port,
    haproxy_template,
    healthcheck_command,
    hypercorn_port,
    hypercorn_settings,
    interpolate,
    load_compose,
    load_yaml,
    local_haproxy_cfg,
    run_haproxy_check,
    seconds,
    volume_mounts,
)

SECRETS = [
    "JWT_SECRET_KEY",
    "SECRET_KEY",
    "POSTGRES_PASSWORD",
    "ADMIN_PASSWORD",
    "METRICS_TOKEN",
]
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


def test_the_image_serves_on_the_python_the_suite_runs_on() -> None:
    """The Dockerfile's Python is .python-version's, the one .venv and CI use."""
    runtime = dockerfile_stages()[-1]
    version = re.fullmatch(r"python:(\d+\.\d+)[.-].*", runtime.image)
    pinned = (ROOT / ".python-version").read_text().strip()

    assert version is not None, runtime.image
    assert version[1] == pinned
    assert pinned == "3.13"


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
    assert from_context == {
        "migrations",
        "pyproject.toml",
        "hypercorn.toml",
        "deploy/docker-entrypoint.py",
    }


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

    assert exec_form(runtime.arguments("ENTRYPOINT")[-1]) == [
        "python",
        "/app/docker-entrypoint.py",
    ]
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

    # The port PORT sets, else hypercorn.toml's, the Flask image's 5000.
    assert '127.0.0.1:{os.environ.get("PORT") or 5000}/healthz' in command
    assert hypercorn_port() == 5000
    assert runtime.arguments("EXPOSE") == [str(hypercorn_port())]


def test_keep_alive_ladder_client_then_lb_then_hypercorn() -> None:
    # Each hop closes an idle connection before the hop behind it does
    # (docs/operations.md, "Keep-alive"); the client rung is that page's 8 s.
    text = HAPROXY_CFG.read_text()
    lb = re.search(r"^\s*timeout http-keep-alive (\d+)s$", text, re.M)
    guide = (ROOT / "docs" / "operations.md").read_text()
    client = re.search(r"clients keep idle connections (?:at most )?(\d+) s", guide)

    assert lb is not None
    assert client is not None
    assert int(client[1]) < int(lb[1]) < hypercorn_settings()["keep_alive_timeout"]
    # Shared idle server connections would outlive any timeout (HAProxy 2.6).
    assert re.search(r"^\s*http-reuse never$", text, re.M)


def test_hypercorn_runs_one_worker_with_a_graceful_timeout() -> None:
    # Several workers drop in-flight requests on SIGTERM (docs/operations.md:
    # one Hypercorn worker per container).
    settings = hypercorn_settings()

    assert settings["workers"] in (0, 1)
    assert settings["graceful_timeout"] >= 5


# ------------------------------------------------------------- .dockerignore


@pytest.mark.parametrize(
    "path",
    [
        ".git/config",
        ".venv/bin/python",
        ".env",
        ".env.production",
        "tests/conftest.py",
        "clients/node_modules/typescript/package.json",
    ],
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
    schema = json.loads((ROOT / "tests" / "deploy" / "compose-spec.json").read_text())
    # The vendored schema declares draft 2019-09 (with a trailing "#" that
    # jsonschema's auto-detection does not recognise).
    jsonschema.Draft201909Validator.check_schema(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in jsonschema.Draft201909Validator(schema).iter_errors(load_compose())
    ]

    assert errors == []


def test_compose_needs_no_variable_so_ps_logs_and_down_just_work() -> None:
    # `${VAR:?}` fails every compose command, `ps` and `down` included.
    required = [
        name for name, op in compose_variables(COMPOSE.read_text()) if op == ":?"
    ]

    assert required == []
    assert interpolate(load_compose(), {})["services"]["api"]


@pytest.mark.parametrize("secret", SECRETS)
def test_compose_secret_comes_from_a_file_never_a_variable(secret: str) -> None:
    compose = load_compose()
    name = secret.lower()

    assert secret not in {name for name, _ in compose_variables(COMPOSE.read_text())}
    assert compose["secrets"][name]["file"] == f"./secrets/{name}"
    users = [
        service
        for service in compose["services"].values()
        if name in (service.get("secrets") or [])
    ]
    assert users, f"no service reads the {name} secret"
    # The app's services name the file in a *_FILE variable (PgBouncer and
    # Prometheus read theirs in their own config).
    assert any(
        f"/run/secrets/{name}"
        in [str(value) for value in (service.get("environment") or {}).values()]
        for service in users
    )


def test_compose_database_password_is_never_written_into_a_url() -> None:
    services = interpolate(load_compose(), {})["services"]
    for name in ("api", "migrate"):
        environment = services[name]["environment"]
        url = environment["DATABASE_URL"]

        assert re.fullmatch(r"postgresql://service@[\w-]+:\d+/service", url), url
        assert environment["DATABASE_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert services["db"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/secrets/postgres_password"
    )


def test_compose_images_are_current_pinned_versions() -> None:
    images = {
        name: service["image"]
        for name, service in load_compose()["services"].items()
        if "build" not in service and "image" in service and name != "api"
    }
    minimum = {
        "postgres": (17,),
        "redis": (8,),
        "haproxy": (3, 2),
        "prom/prometheus": (3,),
    }

    for name, image in images.items():
        repository, _, tag = image.partition(":")
        version = re.match(r"v?(\d+)\.(\d+)", tag)
        assert version, f"{name}: {image} is not pinned to a version"
        assert (
            tuple(map(int, version.groups()))[: len(minimum[repository])]
            >= (minimum[repository])
        ), image


def test_compose_builds_every_image_it_builds_instead_of_pulling_it() -> None:
    services = load_compose()["services"]
    built = {service["image"] for service in services.values() if "build" in service}

    for name, service in services.items():
        if service.get("image") in built:
            assert service.get("pull_policy") == "build", name


def test_compose_trusts_only_the_load_balancers_network() -> None:
    # One place names it: the api's TRUSTED_PROXIES is the `edge` subnet, the
    # only fixed one; no service has a fixed address.
    compose = load_compose()
    trusted = compose["x-api-environment"]["TRUSTED_PROXIES"]
    subnets = {
        name: [entry["subnet"] for entry in network["ipam"]["config"]]
        for name, network in compose["networks"].items()
        if "ipam" in (network or {})
    }

    assert subnets == {"edge": [trusted]}
    assert trusted.startswith("${EDGE_SUBNET:-")
    assert "," not in trusted
    assert "edge" in compose["services"]["lb"]["networks"]
    for service in compose["services"].values():
        networks = service.get("networks") or []
        if isinstance(networks, dict):
            for settings in networks.values():
                assert "ipv4_address" not in (settings or {})


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


def test_compose_redis_requires_a_password_from_a_secret_file() -> None:
    compose = load_compose()
    services = compose["services"]
    redis = services["redis"]

    assert '--requirepass "$$(cat /run/secrets/redis_password)"' in redis["command"][-1]
    assert redis["secrets"] == ["redis_password"]
    assert "REDISCLI_AUTH" in redis["healthcheck"]["test"][-1]
    for name in ("api", "migrate"):
        environment = services[name]["environment"]
        assert environment["REDIS_PASSWORD_FILE"] == "/run/secrets/redis_password"
        assert "redis_password" in services[name]["secrets"]
    assert compose["secrets"]["redis_password"] == {"file": "./secrets/redis_password"}
    assert "redis_password" in (ROOT / "deploy" / "make-secrets.sh").read_text()


def test_compose_migrate_upgrades_then_creates_the_admin_from_the_environment() -> None:
    services = load_compose()["services"]
    migrate = services["migrate"]
    command = migrate["command"]
    script = command[-1] if isinstance(command, list) else command

    # The deploy path's `alembic upgrade head`, adopting a Flask database.
    assert script.index("quart --app service.asgi migrate") < script.index(
        "create-admin"
    )
    assert "&&" in script, "create-admin must not run after a failed migration"
    # create-admin reads ADMIN_EMAIL / ADMIN_PASSWORD when given no arguments,
    # and bootstraps: once any admin existed, a rollout changes nothing.
    assert shlex.split(script.partition("create-admin")[2]) == ["--bootstrap"]
    assert {"ADMIN_EMAIL", "ADMIN_PASSWORD_FILE"} <= set(migrate["environment"])
    # DDL goes straight to PostgreSQL, not through the transaction pooler.
    assert "@db:5432/" in interpolate(migrate["environment"], {})["DATABASE_URL"]
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


def test_compose_api_has_cpu_and_memory_limits() -> None:
    limits = load_compose()["services"]["api"]["deploy"]["resources"]["limits"]

    assert float(limits["cpus"]) >= 1
    assert re.fullmatch(r"\d+M", limits["memory"])
    # One scrypt hash takes 32 MiB per hash thread (one per core).
    assert int(limits["memory"][:-1]) >= 128 + 32 * float(limits["cpus"])


def test_compose_api_is_stopped_after_hypercorn_graceful_timeout() -> None:
    api = load_compose()["services"]["api"]

    assert api.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert seconds(api["stop_grace_period"]) > hypercorn_settings()["graceful_timeout"]


def test_compose_load_balancer_is_haproxy_with_the_repo_config_on_one_port() -> None:
    services = load_compose()["services"]
    lb = services["lb"]
    (published,) = lb["ports"]
    container_port = int(str(published).rpartition(":")[2])
    text = HAPROXY_CFG.read_text()

    assert lb["image"].startswith("haproxy:")
    mounts = volume_mounts(lb)
    assert (
        "./deploy/haproxy.cfg",
        "/usr/local/etc/haproxy/haproxy.cfg",
        True,
    ) in mounts
    assert (
        "./deploy/haproxy-errors",
        str(haproxy_errors_target(text)),
        True,
    ) in mounts
    assert container_port == haproxy_listen_port(text)
    public = [
        name
        for name, service in services.items()
        if any(
            not str(port).startswith("127.0.0.1:") for port in service.get("ports", [])
        )
    ]
    assert public == ["lb"]
    assert lb["depends_on"]["api"]["condition"] == "service_healthy"


def test_compose_api_is_reachable_only_by_the_load_balancer() -> None:
    # TRUSTED_PROXIES names the `edge` network, not an address (no fixed
    # IPs): that is safe only if nothing but HAProxy (and Prometheus, which
    # sends no X-Forwarded-For) shares it with the api.
    compose = load_compose()
    services = compose["services"]
    api_networks = set(services["api"]["networks"])

    for network in api_networks:
        assert compose["networks"][network]["internal"] is True
    neighbours = {
        name
        for name, service in services.items()
        if name != "api" and api_networks & set(service.get("networks") or [])
    }
    edge = {
        name
        for name, service in services.items()
        if "edge" in (service.get("networks") or [])
    }
    assert edge == {"api", "lb", "prometheus"}
    assert "lb" in neighbours


def test_compose_connection_budget_fits_postgres() -> None:
    # docs/operations.md, "Connection budget": replicas x pool <= PgBouncer's clients,
    # PgBouncer's server pool <= max_db_connections < max_connections.
    services = load_compose()["services"]
    api = services["api"]["environment"]
    per_replica = int(api["DB_POOL_SIZE"]) + int(api["DB_MAX_OVERFLOW"])
    replicas = int(haproxy_template(HAPROXY_CFG.read_text())["slots"])
    ini = (ROOT / "deploy" / "pgbouncer" / "pgbouncer.ini").read_text()
    settings = dict(re.findall(r"^(\w+) = (.*)$", ini, re.M))
    max_connections = int(
        next(
            word.partition("=")[2]
            for word in services["db"]["command"]
            if word.startswith("max_connections=")
        )
    )

    assert api["DB_STATEMENT_CACHE"] == "false"
    assert "@pgbouncer:6432/" in api["DATABASE_URL"]
    assert settings["pool_mode"] == "transaction"
    assert replicas * per_replica <= int(settings["max_client_conn"])
    assert int(settings["default_pool_size"]) + int(
        settings["reserve_pool_size"]
    ) <= int(settings["max_db_connections"])
    # Room left for migrate, psql and PostgreSQL's superuser reserve.
    assert int(settings["max_db_connections"]) + 10 <= max_connections


def test_prometheus_scrapes_each_replica_by_dns_never_the_load_balancer() -> None:
    config = load_yaml(ROOT / "deploy" / "prometheus.yml")
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]

    assert discovery["names"] == ["api"]
    assert discovery["type"] == "A"
    assert discovery["port"] == hypercorn_port()
    assert "static_configs" not in job
    assert job["authorization"]["credentials_file"] == "/run/secrets/metrics_token"


# ------------------------------------------------------------------- HAProxy


def test_haproxy_template_targets_the_service_and_port_hypercorn_binds() -> None:
    template = haproxy_template(HAPROXY_CFG.read_text())

    (defaults,) = re.findall(r"^\s*default-server (.*)$", HAPROXY_CFG.read_text(), re.M)

    assert template["name"] == "api"
    assert int(template["port"]) == hypercorn_port()
    assert "resolvers" in defaults.split()
    assert "check" in defaults.split()


def test_haproxy_health_checks_replicas_on_readyz() -> None:
    text = HAPROXY_CFG.read_text()

    assert re.search(r"^\s*option httpchk GET /readyz$", text, re.M)
    assert re.search(r"^\s*nameserver \w+ 127\.0\.0\.11:53$", text, re.M)


def test_haproxy_never_retries_on_a_timeout() -> None:
    (retry_on,) = re.findall(r"^\s*retry-on (.*)$", HAPROXY_CFG.read_text(), re.M)

    assert set(retry_on.split()) == {"conn-failure", "empty-response"}


def test_haproxy_retries_empty_responses_of_get_and_head_only() -> None:
    # Connection failures for every method; a write whose replica died after
    # it committed is never replayed (tests/system/test_haproxy_retries.py).
    backend = HAPROXY_CFG.read_text().partition("\nbackend api\n")[2]
    lines = [line.strip() for line in backend.splitlines()]

    assert "http-request disable-l7-retry if !METH_GET !METH_HEAD" in lines


@pytest.mark.parametrize("status", [400, 408, 413, 500, 502, 503, 504])
def test_haproxy_errorfile_is_the_services_json(status: int) -> None:
    path = haproxy_errorfiles(HAPROXY_CFG.read_text())[status]
    raw = (HAPROXY_ERRORS / path.name).read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode().split("\r\n")
    headers = {
        name.lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines)
    }

    assert status_line.startswith(f"HTTP/1.1 {status} ")
    assert headers["content-type"] == "application/json"
    assert int(headers["content-length"]) == len(body)
    assert set(json.loads(body)) == {"error"}
    assert body.endswith(b"}\n")
    assert b"haproxy" not in raw.lower()


@pytest.mark.skipif(HAPROXY is None, reason="no haproxy (.ci/run installs it)")
def test_haproxy_accepts_the_config_with_local_addresses(tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(
        local_haproxy_cfg(
            HAPROXY_CFG.read_text(),
            nameserver_port=15353,
            replica_port=18001,
            listen_port=18000,
        )
    )

    result = run_haproxy_check(config)

    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_on_an_existing_database_starts_no_db_and_reaches_it() -> None:
    # compose.existing-db.yaml merged over compose.yaml, as `-f a -f b` does:
    # `!reset` empties a key, other mappings merge, lists are replaced.
    yaml = importlib.import_module("yaml")

    # A loader of its own: the tag added to yaml.SafeLoader would be global.
    loader: Any = type("ResetLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("!reset", lambda loader, node: None)
    override = yaml.load((ROOT / "compose.existing-db.yaml").read_text(), Loader=loader)
    base = load_compose()
    environment = {"DATABASE_HOST": "flask-db.internal", "DATABASE_NAME": "app"}
    for name, changes in override["services"].items():
        base["services"][name].update(changes)
    services = interpolate(base, environment)["services"]
    internal = {name for name, net in base["networks"].items() if net.get("internal")}

    assert services["db"]["profiles"] == ["own-database"]
    assert [
        name for name, s in services.items() if "db" in (s.get("depends_on") or {})
    ] == []
    assert services["migrate"]["environment"]["DATABASE_URL"] == (
        "postgresql://service@flask-db.internal:5432/app"
    )
    assert services["pgbouncer"]["environment"]["DATABASE_HOST"] == "flask-db.internal"
    for name in ("migrate", "pgbouncer"):
        assert set(services[name]["networks"]) - internal, name
