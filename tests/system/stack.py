"""The deployment files read as data, and the image's stack run without Docker.

No Docker engine exists on these machines, so `Deployment` does what the image
and compose.yaml do, step by step, from the same files: the Dockerfile's build
commands into a fresh virtualenv, its runtime layout, ENV, USER and CMD,
compose's environment and migrate command, and deploy/haproxy.cfg in front,
finding the replicas through a DNS server the tests control (tests/system/dns.py).
What differs is only what one shared host forces (addresses, ports, paths),
and each difference is named where it is made.

`Fleet` is the part both ways of running the image share: replicas (harness
Servers, each on its own 127.0.0.x), the DNS that names them and the load
balancer, and the traffic a test sends through it (`Load`, request ids).
`Deployment` is a Fleet of processes; tests/system/podman.py's `ImageFleet`
one of containers of the image itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from tests.ports import free_port, free_port_on_every_loopback
from tests.system.dns import LoopbackDNS, Zone
from tests.system.harness import (
    Process,
    Server,
    check,
    listens,
    responds,
    run,
    run_as,
)

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "compose.yaml"
HYPERCORN_TOML = ROOT / "hypercorn.toml"
HAPROXY_CFG = ROOT / "deploy" / "haproxy.cfg"
HAPROXY_ERRORS = ROOT / "deploy" / "haproxy-errors"
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")


def haproxy_version() -> tuple[int, int]:
    assert HAPROXY is not None
    version = run([HAPROXY, "-v"], timeout=10)
    check(version)
    banner = version.stdout
    match = re.search(r"version (\d+)\.(\d+)", banner)
    assert match is not None, banner
    return int(match[1]), int(match[2])


# ---------------------------------------------------------------- Dockerfile


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def arguments(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]

    def workdir(self) -> str:
        workdirs = self.arguments("WORKDIR")
        return workdirs[-1] if workdirs else "/"

    def env(self, base: Mapping[str, str]) -> dict[str, str]:
        """The stage's ENV lines applied over `base`, `$VAR` expanded as Docker does."""
        env = dict(base)
        for arguments in self.arguments("ENV"):
            words = shlex.split(arguments)
            if "=" not in words[0]:  # the legacy `ENV KEY value` form
                words = [f"{words[0]}={' '.join(words[1:])}"]
            for word in words:
                key, _, value = word.partition("=")
                env[key] = _expand(value, env)
        return env

    def copies(self) -> list[Copy]:
        return [_parse_copy(arguments) for arguments in self.arguments("COPY")]


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None


def _expand(value: str, env: Mapping[str, str]) -> str:
    return re.sub(
        r"\$\{(\w+)\}|\$(\w+)",
        lambda match: env.get(match[1] or match[2], ""),
        value,
    )


def _parse_copy(arguments: str) -> Copy:
    words = shlex.split(arguments)
    flags = [word for word in words if word.startswith("--")]
    paths = [word for word in words if not word.startswith("--")]
    if paths and paths[0].startswith("["):
        paths = json.loads(" ".join(paths))
    from_stage = next(
        (flag.partition("=")[2] for flag in flags if flag.startswith("--from=")),
        None,
    )
    return Copy(tuple(paths[:-1]), paths[-1], from_stage)


def parse_dockerfile(text: str) -> list[Stage]:
    """Stages with their instructions; continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].strip() + " "
            continue
        lines.append(pending + line)
        pending = ""
    if pending:
        lines.append(pending.strip())
    stages: list[Stage] = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        keyword, arguments = keyword.upper(), arguments.strip()
        if keyword == "FROM":
            words = [word for word in arguments.split() if not word.startswith("--")]
            name = words[2] if len(words) == 3 and words[1].lower() == "as" else None
            stages.append(Stage(words[0], name))
        elif stages:
            stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


def dockerfile_stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def exec_form(arguments: str) -> list[str]:
    """An exec-form CMD/HEALTHCHECK command; raises for the shell form."""
    command = json.loads(arguments)
    if not isinstance(command, list) or not all(isinstance(w, str) for w in command):
        raise ValueError(f"not an exec-form command: {arguments}")
    return command


def healthcheck_command(arguments: str) -> list[str]:
    _, separator, command = arguments.partition(" CMD ")
    if not separator:
        raise ValueError(f"HEALTHCHECK without CMD: {arguments}")
    return exec_form(command.strip())


# ------------------------------------------------------------- .dockerignore


def dockerignore_patterns() -> list[str]:
    return [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    pattern = pattern.strip("/").removeprefix("./")
    parts = re.split(r"(\*\*/?|\*|\?)", pattern)
    regex = "".join(
        ".*"
        if part in ("**", "**/")
        else "[^/]*"
        if part == "*"
        else "[^/]"
        if part == "?"
        else re.escape(part)
        for part in parts
    )
    return re.compile(regex)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves `path` (relative to the context) out of the context.

    The last matching pattern wins, `!` re-includes, and a pattern that matches
    a parent directory excludes everything under it.
    """
    parts = Path(path).parts
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        regex = _pattern_regex(pattern.removeprefix("!"))
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return excluded


# ------------------------------------------------------------------- compose


class MissingVariableError(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name


_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_]\w*)"
    r"(?:(?P<operator>:?[-?+])(?P<argument>[^}]*))?\}|(?P<plain>[A-Za-z_]\w*))"
)


def compose_variables(text: str) -> list[tuple[str, str | None]]:
    """Every `${NAME...}` / `$NAME` in compose text with its operator (`:?`...)."""
    return [
        (match["braced"] or match["plain"], match["operator"])
        for match in _VARIABLE.finditer(text)
        if not match["escaped"]
    ]


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation over a loaded document."""
    if isinstance(value, str):
        return _VARIABLE.sub(lambda match: _substitute(match, env), value)
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    return value


def _substitute(match: re.Match[str], env: Mapping[str, str]) -> str:
    if match["escaped"]:
        return "$"
    name = match["braced"] or match["plain"]
    operator, argument = match["operator"] or "", match["argument"] or ""
    value = env.get(name)
    unset = value is None or (operator.startswith(":") and value == "")
    if operator.endswith("?"):
        if unset:
            raise MissingVariableError(name, argument)
        return value or ""
    if operator.endswith("-"):
        return argument if unset else value or ""
    if operator.endswith("+"):
        return "" if unset else argument
    return value or ""


def load_yaml(path: Path) -> Any:
    # PyYAML comes with the dev group's tools (jsonschema-path, schemathesis),
    # without type stubs: a plain import would fail mypy --strict.
    yaml = importlib.import_module("yaml")
    return yaml.safe_load(path.read_text())


def load_compose() -> dict[str, Any]:
    document = load_yaml(COMPOSE)
    assert isinstance(document, dict)
    return document


def volume_mounts(service: Mapping[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) for short and long volume syntax."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source, target, *mode = volume.split(":")
            mounts.append((source, target, "ro" in ",".join(mode).split(",")))
        else:
            mounts.append(
                (volume["source"], volume["target"], bool(volume.get("read_only")))
            )
    return mounts


def seconds(duration: str | int | float) -> float:
    """A compose duration ("1m30s", "20s", "500ms") in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    if not parts or "".join(a + b for a, b in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    return sum(float(amount) * units[unit] for amount, unit in parts)


def network_ranges(
    compose: Mapping[str, Any], network: str
) -> list[tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]]:
    """(subnet, range Docker allocates dynamic addresses from) per ipam config."""
    configs = compose["networks"][network].get("ipam", {}).get("config", [])
    return [
        (
            ipaddress.IPv4Network(config["subnet"]),
            ipaddress.IPv4Network(config.get("ip_range", config["subnet"])),
        )
        for config in configs
    ]


# ----------------------------------------------------------------- hypercorn


def hypercorn_settings() -> dict[str, Any]:
    return tomllib.loads(HYPERCORN_TOML.read_text())


def hypercorn_port() -> int:
    (bind,) = hypercorn_settings()["bind"]
    return int(bind.rpartition(":")[2])


# ------------------------------------------------------------------ HAProxy

_HAPROXY_NAMESERVER = re.compile(
    r"^(?P<indent>[ \t]*)nameserver[ \t]+(?P<name>\S+)[ \t]+\S+:53[ \t]*$", re.M
)
_HAPROXY_BIND = re.compile(r"^(?P<indent>[ \t]*)bind[ \t]+:(?P<port>\d+)[ \t]*$", re.M)
_HAPROXY_TEMPLATE = re.compile(
    r"^(?P<indent>[ \t]*)server-template[ \t]+(?P<prefix>\S+)[ \t]+(?P<slots>\d+)"
    r"[ \t]+(?P<name>[\w.-]+):(?P<port>\d+)(?P<parameters>[^\n]*)$",
    re.M,
)
_HAPROXY_ERRORFILE = re.compile(r"(?<=errorfile )(?P<code>\d{3}) (?P<path>\S+)")


def haproxy_template(text: str) -> re.Match[str]:
    """deploy/haproxy.cfg's one `server-template PREFIX SLOTS NAME:PORT` line."""
    matches = list(_HAPROXY_TEMPLATE.finditer(text))
    if len(matches) != 1:
        raise ValueError(f"expected one server-template line, found {len(matches)}")
    return matches[0]


def haproxy_listen_port(text: str) -> int:
    (match,) = _HAPROXY_BIND.finditer(text)
    return int(match["port"])


def haproxy_errorfiles(text: str) -> dict[int, Path]:
    """Status code -> the container path of its errorfile."""
    return {
        int(match["code"]): Path(match["path"])
        for match in _HAPROXY_ERRORFILE.finditer(text)
    }


def haproxy_errors_target(text: str) -> Path:
    """The folder compose mounts deploy/haproxy-errors at."""
    (folder,) = {path.parent for path in haproxy_errorfiles(text).values()}
    return folder


def local_haproxy_cfg(
    text: str, *, nameserver_port: int, replica_port: int, listen_port: int
) -> str:
    """deploy/haproxy.cfg with what Docker provides replaced by this host's equivalents.

    - the nameserver (Docker's DNS at 127.0.0.11:53) is the test's DNS server
      on 127.0.0.1 and a free port: only root binds port 53;
    - the replicas' port is the free one every local replica binds on its own
      127.0.0.x address (each container has its own address and port 5000);
    - `bind :PORT` binds a free loopback port: compose publishes one port;
    - errorfiles come from deploy/haproxy-errors, which compose mounts.
    """
    haproxy_template(text)
    haproxy_listen_port(text)
    text = _HAPROXY_NAMESERVER.sub(
        lambda match: (
            f"{match['indent']}nameserver {match['name']} 127.0.0.1:{nameserver_port}"
        ),
        text,
    )
    text = _HAPROXY_TEMPLATE.sub(
        lambda match: (
            f"{match['indent']}server-template {match['prefix']} {match['slots']} "
            f"{match['name']}:{replica_port}{match['parameters']}"
        ),
        text,
    )
    text = _HAPROXY_BIND.sub(
        lambda match: f"{match['indent']}bind 127.0.0.1:{listen_port}", text
    )
    return _HAPROXY_ERRORFILE.sub(
        lambda match: f"{match['code']} {HAPROXY_ERRORS / Path(match['path']).name}",
        text,
    )


def run_haproxy_check(config: Path) -> subprocess.CompletedProcess[str]:
    assert HAPROXY is not None
    return run([HAPROXY, "-c", "-q", "-f", config], timeout=30)


# ------------------------------------------------------------------ HTTP


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def json_or_text(self) -> Any:
        """The JSON body, or its text when it is not JSON (for readable diffs)."""
        try:
            return self.json()
        except ValueError:
            return self.body.decode(errors="replace")


class HTTPConnection:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams.

    Small on purpose: the load test needs to see every status and every
    dropped connection, with nothing retrying behind its back.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        body = b"" if json_body is None else json.dumps(json_body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if json_body is not None:
            lines.append("Content-Type: application/json")
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
        try:
            if self._writer is None:
                self._reader, self._writer = await asyncio.open_connection(
                    self.host, self.port
                )
            assert self._reader is not None
            self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            await self._writer.drain()
            reply = await self._read_reply(self._reader)
        except BaseException:
            # A failed exchange leaves the connection in an unknown state.
            await self.close()
            raise
        if reply.headers.get("connection", "").lower() == "close":
            await self.close()
        return reply

    @staticmethod
    async def _read_reply(reader: asyncio.StreamReader) -> Reply:
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionError("connection closed before a response")
        status = int(status_line.split()[1])
        headers: dict[str, str] = {}
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = await reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await reader.readline()).split(b";")[0], 16):
                body += await reader.readexactly(size)
                await reader.readline()
            await reader.readline()
        else:
            body = await reader.read()
        return Reply(status, headers, body)

    @property
    def reader(self) -> asyncio.StreamReader:
        """The open connection's stream, to watch it while idle."""
        assert self._reader is not None
        return self._reader

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def fetch(
    port: int,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """One request on its own connection."""
    connection = HTTPConnection(port)
    try:
        async with asyncio.timeout(30):
            return await connection.request(
                method, path, json_body=json_body, headers=headers
            )
    finally:
        await connection.close()


def log_time(entry: Mapping[str, Any]) -> float:
    """A service log line's time as a Unix timestamp."""
    stamp = str(entry["time"]).removesuffix("Z")
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


# ----------------------------------------------------------------- processes


class StackError(RuntimeError):
    pass


SECRETS_TARGET = "/run/secrets/"

# What the python:3.X-slim base image sets before the Dockerfile's own ENV.
BASE_IMAGE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
}


# Run inside a container's network: exits 0 once its /healthz answers 200.
HEALTHZ_PROBE = (
    "import sys, time, urllib.request\n"
    "for _ in range(600):\n"
    "    try:\n"
    "        url = 'http://127.0.0.1:{port}/healthz'\n"
    "        with urllib.request.urlopen(url, timeout=1) as r:\n"
    "            sys.exit(0 if r.status == 200 else 1)\n"
    "    except OSError:\n"
    "        time.sleep(0.1)\n"
    "sys.exit(2)\n"
)


def image_user() -> tuple[int, int]:
    """The runtime stage's `USER uid:gid`."""
    uid, _, gid = dockerfile_stages()[-1].arguments("USER")[-1].partition(":")
    return int(uid), int(gid or uid)


def as_image_user() -> dict[str, Any]:
    """Popen arguments that drop root to the image's user (none when not root)."""
    return run_as(*image_user())


def give_to_image_user(path: Path) -> None:
    if os.geteuid() == 0:
        os.chown(path, *image_user())


SHARED_PYTHONS = Path(tempfile.gettempdir()) / "service-tests-python"


def shared_interpreter(version: str) -> str:
    """pyenv's python{version}, copied once where the image's user can run it.

    The image's Python is the base image's; where the machine has no such system
    Python (Debian 12 ships 3.11, the image serves 3.13) pyenv's stands in, but
    it lives under /root (mode 700), out of reach of the unprivileged user the
    replicas run as. pyenv builds a shared libpython and names its folder by
    absolute path in the executable's RUNPATH; the copy's names it relative to
    itself ($ORIGIN, padded to the same length), so the copy needs nothing of
    /root and no LD_LIBRARY_PATH.
    """
    root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = sorted(root.glob(f"{version}.*/bin/python{version}"))
    runnable = [
        path for path in candidates if run([path, "-c", "pass"]).returncode == 0
    ]
    if not runnable:
        raise StackError(f"no system or pyenv python{version}, the image's Python")
    prefix = runnable[-1].parent.parent
    copy = SHARED_PYTHONS / prefix.name
    executable = copy / "bin" / f"python{version}"
    if copy.exists():
        return str(executable)
    SHARED_PYTHONS.mkdir(parents=True, exist_ok=True)
    SHARED_PYTHONS.chmod(0o755)
    # Made under a unique name and renamed: concurrent suites never see half.
    partial = Path(tempfile.mkdtemp(dir=SHARED_PYTHONS))
    shutil.copytree(
        prefix,
        partial / "prefix",
        symlinks=True,
        ignore=lambda folder, _: (
            ["test"] if folder.endswith(f"python{version}") else []
        ),
    )
    binary = partial / "prefix" / "bin" / f"python{version}"
    absolute = str(prefix / "lib").encode() + b"\0"
    relative = b"$ORIGIN/../lib".ljust(len(absolute), b"\0")
    content = binary.read_bytes()
    if content.count(absolute) != 1 or len(relative) > len(absolute):
        raise StackError(f"{binary}: no single RUNPATH {absolute!r} to make relative")
    binary.write_bytes(content.replace(absolute, relative))
    for path in [partial, *partial.rglob("*")]:
        if not path.is_symlink():
            readable = 0o555 if path.is_dir() else 0o444
            path.chmod(path.stat().st_mode | readable)
    with contextlib.suppress(OSError):  # another suite renamed its copy first
        (partial / "prefix").rename(copy)
    shutil.rmtree(partial, ignore_errors=True)
    return str(executable)


def make_workdir(prefix: str) -> Path:
    """A temp dir the image's user can read (mkdtemp makes it 0700)."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    workdir.chmod(0o755)
    return workdir


class HAProxy(Process):
    """The real HAProxy running deploy/haproxy.cfg, its DNS being a test's server."""

    def __init__(self, workdir: Path, nameserver_port: int, replica_port: int) -> None:
        assert HAPROXY is not None
        self.workdir = workdir
        self.nameserver_port, self.replica_port = nameserver_port, replica_port
        self.port = free_port()
        self.config = workdir / "haproxy.cfg"
        super().__init__(
            # -db: in the foreground, as the image's CMD runs it.
            [HAPROXY, "-db", "-f", str(self.config)],
            env={"PATH": BASE_IMAGE_ENV["PATH"]},
            cwd=workdir,
            out=workdir / "haproxy.out",
            err=workdir / "haproxy.err",
            ready=listens(self.port),
            timeout=15,
            user=as_image_user(),
        )

    def config_text(self) -> str:
        return local_haproxy_cfg(
            HAPROXY_CFG.read_text(),
            nameserver_port=self.nameserver_port,
            replica_port=self.replica_port,
            listen_port=self.port,
        )

    def start(self) -> Self:
        self.config.write_text(self.config_text())
        return super().start()

    def log(self) -> list[dict[str, str]]:
        """Its request log lines (`lb key=value ...`) as dicts."""
        entries = []
        for line in self.out.read_text(errors="replace").splitlines():
            if not line.startswith("lb "):
                continue
            head, _, path = line.partition(" path=")
            entry = dict(word.split("=", 1) for word in head.split()[1:])
            entry["path"] = path.strip('"')
            entry["request_id"] = entry.get("request_id", "").strip("{}")
            entries.append(entry)
        return entries


@contextlib.contextmanager
def load_balancer(hosts: list[str], port: int) -> Iterator[HAProxy]:
    """deploy/haproxy.cfg in front of `hosts` (addresses), each serving on `port`,
    DNS answering the config's service name with them."""
    workdir = make_workdir("lb-")
    zone = Zone()
    zone.set(haproxy_template(HAPROXY_CFG.read_text())["name"], hosts)
    dns = LoopbackDNS(zone)
    dns.start()
    lb = HAProxy(workdir, dns.port, port)
    try:
        lb.start()
        yield lb
    finally:
        lb.stop()
        dns.stop()
        shutil.rmtree(workdir, ignore_errors=True)


class Replica(Server):
    """One replica of the image on its own 127.0.0.x address: a process of the
    image's layout (Deployment) or a container of the image (ImageFleet); its
    JSON log on stdout, over every start."""

    def access_log(self, containing: str = "") -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.log_lines(containing)
            if entry.get("logger") == "service.access"
        ]


def deployment_secrets() -> dict[str, str]:
    """compose's secrets (and the admin's address), fresh for one deployment."""
    return {
        "JWT_SECRET_KEY": os.urandom(20).hex(),
        "SECRET_KEY": os.urandom(20).hex(),
        # What breaks a password pasted into a URL: the entrypoint encodes it.
        "POSTGRES_PASSWORD": "p@ss:w/rd#" + os.urandom(8).hex(),
        # Unique: login throttle counters live in the shared Redis.
        "ADMIN_EMAIL": f"ops-{os.urandom(4).hex()}@example.com",
        "ADMIN_PASSWORD": "ops-password-" + os.urandom(4).hex(),
        "METRICS_TOKEN": os.urandom(16).hex(),
        "MFA_ENCRYPTION_KEY": os.urandom(20).hex(),
        # Written as compose writes it; the suite's shared Redis asks for none
        # (runtime_env drops REDIS_PASSWORD_FILE).
        "REDIS_PASSWORD": os.urandom(16).hex(),
    }


@dataclass
class Fleet:
    """Replicas of the image behind deploy/haproxy.cfg, found through a test's DNS.

    What a replica runs is the subclass's (`replica_at`): a process in the
    image's layout (Deployment) or a container of the image itself
    (tests/system/podman.py's ImageFleet); either is a harness Server.
    """

    workdir: Path
    replica_count: int = field(default=2, kw_only=True)
    replicas: list[Replica] = field(default_factory=list, kw_only=True)
    lb: HAProxy | None = field(default=None, kw_only=True)
    dns: LoopbackDNS | None = field(default=None, kw_only=True)
    zone: Zone = field(default_factory=Zone, kw_only=True)
    # Every replica binds this port on its own 127.0.0.x address, as each
    # container binds the image's port on its own address.
    fleet_port: int = field(default_factory=free_port_on_every_loopback, kw_only=True)
    next_host: int = field(default=10, kw_only=True)
    logs: Path = field(init=False)

    def __post_init__(self) -> None:
        self.logs = self.workdir / "logs"

    @property
    def lb_port(self) -> int:
        assert self.lb is not None
        return self.lb.port

    def replica_at(self, host: str) -> Replica:
        """A replica (not started) serving the fleet's port on `host`."""
        raise NotImplementedError

    def replica_of(self, argv: list[str], host: str, **options: Any) -> Replica:
        """`argv` as the replica at `host`, ready once its /healthz answers 200;
        its output in the fleet's logs folder."""
        self.logs.mkdir(exist_ok=True)
        number = host.rpartition(".")[2]
        return Replica(
            argv,
            host=host,
            port=self.fleet_port,
            out=self.logs / f"replica-{number}.out",
            err=self.logs / f"replica-{number}.err",
            ready=responds(f"http://{host}:{self.fleet_port}/healthz"),
            **options,
        )

    def add_replica(self) -> Replica:
        """A new replica slot at the next unused 127.0.0.x address (not started)."""
        self.next_host += 1
        replica = self.replica_at(f"127.0.0.{self.next_host}")
        self.replicas.append(replica)
        return replica

    def start_replica(self, replica: Replica) -> None:
        if not replica.running:
            replica.spawn()

    def wait_replica(self, replica: Replica, timeout: float | None = None) -> None:
        """Until the replica serves; `timeout` in place of its own."""
        if timeout is not None:
            replica.timeout = timeout
        replica.wait_ready()

    def new_replica(self) -> Replica:
        """A replica at the next unused address, started and serving."""
        replica = self.add_replica()
        self.start_replica(replica)
        self.wait_replica(replica)
        return replica

    def ensure_replicas(self) -> bool:
        """Start the replicas (again, after a test stopped one) and wait for them.

        True when one had to be started.
        """
        stopped = [replica for replica in self.replicas if not replica.running]
        while len(self.replicas) < self.replica_count:
            self.add_replica()
        for replica in self.replicas:
            self.start_replica(replica)
        for replica in self.replicas:
            self.wait_replica(replica)
        self.publish()
        return bool(stopped)

    def terminate(self, replica: Replica) -> None:
        """What `docker stop` sends first: SIGTERM to the replica's main process
        (through compose's init), not to its process group."""
        assert replica.process is not None
        os.kill(replica.process.pid, signal.SIGTERM)

    def retire(self, replica: Replica) -> int:
        """What `docker compose up --scale` and a rolling update do to a replica
        they drop: out of the DNS answers, then `docker stop`. Its exit code."""
        process = replica.process
        assert process is not None
        self.publish([other for other in self.replicas if other is not replica])
        self.replicas.remove(replica)
        self.terminate(replica)
        return process.wait(hypercorn_settings()["graceful_timeout"] + 5)

    def stop_replica(self, replica: Replica) -> None:
        replica.stop()

    def publish(self, replicas: list[Replica] | None = None) -> None:
        """What Docker's DNS answers for `api`: the running replicas' addresses."""
        chosen = self.replicas if replicas is None else replicas
        self.zone.set(self.service_name, [replica.host for replica in chosen])

    @property
    def service_name(self) -> str:
        return haproxy_template(HAPROXY_CFG.read_text())["name"]

    def start_lb(self) -> None:
        self.dns = LoopbackDNS(self.zone)
        self.dns.start()
        self.publish()
        self.lb = HAProxy(self.workdir, self.dns.port, self.fleet_port)
        self.lb.start()

    def stop(self) -> None:
        if self.lb is not None:
            self.lb.stop()
        if self.dns is not None:
            self.dns.stop()
        for replica in self.replicas:
            self.stop_replica(replica)


@dataclass
class Deployment(Fleet):
    """The image built into `workdir` and its compose stack run from there."""

    database_url: str
    redis_url: str
    stages: list[Stage] = field(init=False)
    compose: dict[str, Any] = field(init=False)
    uv: str = field(init=False)
    python: str = field(init=False)
    secrets: dict[str, str] = field(init=False)
    redis_key_prefix: str = field(init=False)
    context: Path = field(init=False)
    app: Path = field(init=False)
    venv: Path = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        # The build context, the runtime WORKDIR (/app) and its venv.
        self.context = self.workdir / "build"
        self.app = self.workdir / "app"
        self.venv = self.app / ".venv"
        self.stages = dockerfile_stages()
        self.compose = load_compose()
        uv = ROOT / ".tools" / "bin" / "uv"
        found = str(uv) if uv.exists() else shutil.which("uv")
        if found is None:
            raise StackError("uv is missing: run `make install`")
        self.uv = found
        # The base image's python3.X is the system's python3.X here: one the
        # image's user can run (not a pyenv or uv-managed one under /root).
        version = re.fullmatch(r"python:(\d+\.\d+)[.-].*", self.build_stage.image)
        assert version is not None, self.build_stage.image
        python = shutil.which(f"python{version[1]}", path="/usr/local/bin:/usr/bin")
        if python is None:
            python = shared_interpreter(version[1])
        self.python = python
        self.secrets = deployment_secrets()
        self.redis_key_prefix = f"deploy-{os.urandom(4).hex()}:"

    # -- layout

    @property
    def build_stage(self) -> Stage:
        return self.stages[0]

    @property
    def runtime(self) -> Stage:
        return self.stages[-1]

    def _host_path(self, value: str) -> str:
        """The runtime WORKDIR (/app) is `self.app` here."""
        workdir = re.escape(self.runtime.workdir().rstrip("/"))
        return re.sub(rf"(?<![\w/]){workdir}(?=/|:|$)", str(self.app), value)

    def _copy_context(self, stage: Stage, target: Path) -> None:
        """The stage's COPY lines from the build context, WORKDIR being `target`."""
        workdir = stage.workdir()
        for copy in stage.copies():
            if copy.from_stage is not None:
                continue
            relative = os.path.relpath(os.path.join(workdir, copy.destination), workdir)
            destination = target / relative
            for source in copy.sources:
                origin = ROOT / source
                if origin.is_dir():
                    # Docker copies a directory's contents, not the directory.
                    shutil.copytree(
                        origin,
                        destination,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                        dirs_exist_ok=True,
                    )
                else:
                    destination.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(origin, destination / origin.name)

    # -- the Dockerfile's build stage

    def build(self) -> None:
        self.context.mkdir()
        self.app.mkdir()
        self.logs.mkdir()
        self._copy_context(self.build_stage, self.context)
        env = {
            key: value
            for key, value in os.environ.items()
            if key != "VIRTUAL_ENV" and not key.startswith("UV_")
        }
        env.update(self.build_stage.env({}))
        # The build stage makes /app/.venv and the runtime stage copies it to
        # the same path; here it is made where it runs.
        env["UV_PROJECT_ENVIRONMENT"] = str(self.venv)
        env["UV_PYTHON"] = self.python
        dist = self.workdir / "dist"
        self._run(
            [self.uv, "sync", "--frozen", "--no-dev", "--no-install-project"], env
        )
        self._run([self.uv, "build", "--wheel", "--out-dir", str(dist)], env)
        (wheel,) = dist.glob("*.whl")
        python = str(self.venv / "bin" / "python")
        self._run(
            [self.uv, "pip", "install", "--python", python, "--no-deps", str(wheel)],
            env,
        )
        self._copy_context(self.runtime, self.app)

    def _run(self, argv: list[str], env: Mapping[str, str]) -> None:
        result = run(list(argv), cwd=self.context, env=env, timeout=300)
        if result.returncode != 0:
            raise StackError(f"{shlex.join(argv)} failed:\n{result.stderr}")

    # -- the runtime stage with compose's environment

    def runtime_env(self, service: str = "api") -> dict[str, str]:
        env = self.runtime.env(BASE_IMAGE_ENV)
        env = {key: self._host_path(value) for key, value in env.items()}
        # Docker sets HOME from the user's passwd entry (--home-dir /app).
        env["HOME"] = str(self.app)
        compose_env = interpolate(
            self.compose["services"][service]["environment"], self.secrets
        )
        env.update({key: str(value) for key, value in compose_env.items()})
        # compose mounts each secret at /run/secrets/NAME; here they are files
        # under the workdir, readable by the image's user only.
        for key, value in list(env.items()):
            if key.endswith("_FILE") and value.startswith(SECRETS_TARGET):
                env[key] = str(self.secret_file(value.removeprefix(SECRETS_TARGET)))
        # The suite's Redis, shared with other suites, asks for no password:
        # compose's REDIS_PASSWORD_FILE has no counterpart here.
        env.pop("REDIS_PASSWORD_FILE", None)
        # The only host-specific values: compose's service names and network
        # become this host's addresses.
        for key, value in {
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "TRUSTED_PROXIES": "127.0.0.1/32",
        }.items():
            if key not in env:
                raise StackError(f"compose's {service} environment lacks {key}")
            env[key] = value
        # Every client here is 127.0.0.1 on a Redis other suites share: route
        # budgets of a key space of the stack's own.
        env["REDIS_KEY_PREFIX"] = self.redis_key_prefix
        return env

    def secret_file(self, name: str) -> Path:
        """compose's secret `name`, its value from `self.secrets`, as a file."""
        folder = self.workdir / "secrets"
        folder.mkdir(mode=0o700, exist_ok=True)
        give_to_image_user(folder)
        path = folder / name
        if not path.exists():
            path.write_text(self.secrets[name.upper()] + "\n")
            path.chmod(0o600)
            give_to_image_user(path)
        return path

    def run_as_app(
        self,
        argv: list[str],
        service: str = "api",
        timeout: float = 60,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A one-off command in the runtime layout, as the image's user, run by
        the image's ENTRYPOINT as `docker compose run` does."""
        return run(
            [*self.entrypoint(), *argv],
            cwd=self.app,
            env=dict(env) if env is not None else self.runtime_env(service),
            timeout=timeout,
            **as_image_user(),
        )

    def migrate(self) -> subprocess.CompletedProcess[str]:
        """compose's one-shot `migrate` service: its command, its environment."""
        command = self.compose["services"]["migrate"]["command"]
        argv = command if isinstance(command, list) else shlex.split(command)
        return self.run_as_app([str(word) for word in argv], service="migrate")

    def entrypoint(self) -> list[str]:
        """The Dockerfile's ENTRYPOINT, its /app paths made local."""
        return [
            self._host_path(word)
            for word in exec_form(self.runtime.arguments("ENTRYPOINT")[-1])
        ]

    def image_argv(self) -> list[str]:
        """The Dockerfile's ENTRYPOINT followed by its CMD."""
        return [*self.entrypoint(), *exec_form(self.runtime.arguments("CMD")[-1])]

    def replica_at(self, host: str) -> Replica:
        return self.replica_of(
            # `-b` is the only addition: the replicas share one host here, where
            # each container has its own address and port.
            [*self.image_argv(), "-b", f"{host}:{self.fleet_port}"],
            host,
            env=self.runtime_env(),
            cwd=self.app,
            user=as_image_user(),
            name=f"the replica at {host}",
        )


# ------------------------------------------------------------ fleet traffic


def request_id() -> str:
    return f"deploytest-{uuid.uuid4().hex}"


def served_by(
    fleet: Fleet, rid: str, within: float = 5
) -> list[tuple[int, dict[str, Any]]]:
    """(replica index, log line) for each access-log line with that request id,
    for a request that was answered: its line is written by the replica's log
    thread (a QueueHandler's listener) just after the answer, so it is waited for."""
    deadline = time.monotonic() + within
    while True:
        found = [
            (index, entry)
            for index, replica in enumerate(fleet.replicas)
            for entry in replica.access_log(containing=rid)
            if entry.get("request_id") == rid
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


async def wait_until_every_replica_serves(fleet: Fleet, within: float = 15) -> None:
    """A (re)started replica is in rotation after its next /readyz check."""
    seen: set[int] = set()
    deadline = time.monotonic() + within
    while seen != set(range(len(fleet.replicas))):
        assert time.monotonic() < deadline, f"only replicas {seen} served"
        rid = request_id()
        await fetch(fleet.lb_port, "GET", "/healthz", headers={"X-Request-ID": rid})
        seen |= {index for index, _ in served_by(fleet, rid)}
        await asyncio.sleep(0.02)


async def wait_exit(
    process: subprocess.Popen[bytes], signalled: float, within: float
) -> tuple[int | None, float]:
    """The exit code and the seconds from the signal to the exit."""
    try:
        code = await asyncio.to_thread(process.wait, within)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - signalled
    return code, time.monotonic() - signalled


@dataclass
class Load:
    """Steady requests through the load balancer, each connection one after another."""

    port: int
    method: str
    path: str
    headers: dict[str, str]
    json_body: Any = None
    sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    signalled_at: float | None = None
    ok_after_signal: int = 0
    seconds: float = 0.0
    connections: int = 0

    async def run(self, seconds: float, connections: int) -> None:
        self.seconds, self.connections = seconds, connections
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(self._client(stop_at) for _ in range(connections)))

    async def _client(self, stop_at: float) -> None:
        connection = HTTPConnection(self.port)
        try:
            while time.monotonic() < stop_at:
                self.sent += 1
                try:
                    async with asyncio.timeout(15):
                        reply = await connection.request(
                            self.method,
                            self.path,
                            json_body=self.json_body,
                            headers=self.headers,
                        )
                except (OSError, EOFError, ValueError) as error:
                    self.errors.append(repr(error))
                    continue
                self.statuses[reply.status] += 1
                if reply.status == 200 and self.signalled_at is not None:
                    self.ok_after_signal += 1
        finally:
            await connection.close()

    @property
    def failed(self) -> int:
        return len(self.errors) + sum(
            count for status, count in self.statuses.items() if status != 200
        )

    def assert_nothing_dropped(self) -> None:
        """Every request answered 200, some of them after the signal."""
        assert (self.failed, self.errors) == (0, []), self.summary()
        assert self.ok_after_signal > 0, self.summary()

    def summary(self) -> str:
        return (
            f"{self.method} {self.path}: {self.sent} requests over "
            f"{self.seconds:.0f} s from {self.connections} connections, "
            f"{self.failed} failed (statuses {dict(self.statuses)}, errors "
            f"{self.errors[:3]}), {self.ok_after_signal} answered 200 after the signal"
        )


# A graceful stop's load: how long, from how many connections, and how far in
# the replica is stopped.
LOAD_SECONDS = 6.0
LOAD_CONNECTIONS = 20
STOP_AFTER = 2.0


async def assert_stopping_drops_no_request(
    fleet: Fleet, load: Load, victim: Replica, measurements: list[str]
) -> None:
    """`docker stop` of the victim STOP_AFTER seconds into the load fails no
    request, and the victim exits 0 within hypercorn's graceful timeout while
    the others go on answering."""
    graceful_timeout = hypercorn_settings()["graceful_timeout"]
    process = victim.process
    assert process is not None, f"{victim.name} is not running"

    async def stop_victim() -> tuple[int | None, float]:
        await asyncio.sleep(STOP_AFTER)
        load.signalled_at = time.monotonic()
        stopping = asyncio.create_task(asyncio.to_thread(fleet.terminate, victim))
        exited = await wait_exit(process, load.signalled_at, graceful_timeout + 5)
        await stopping
        return exited

    (exit_code, exit_seconds), _ = await asyncio.gather(
        stop_victim(), load.run(LOAD_SECONDS, LOAD_CONNECTIONS)
    )
    measurements.append(
        f"stopping {victim.name} under {load.summary()}: it exited {exit_code} "
        f"after {exit_seconds:.2f} s"
    )

    load.assert_nothing_dropped()
    assert exit_code == 0, f"{victim.name} exited {exit_code}"
    assert exit_seconds < graceful_timeout, f"{victim.name} took {exit_seconds} s"


async def assert_retiring_drops_no_request(
    fleet: Fleet,
    load: Load,
    replica: Replica,
    measurements: list[str],
    what: str,
    after: float = STOP_AFTER,
) -> None:
    """`after` seconds into the load the replica is retired (out of the DNS
    answers, then `docker stop`): no request fails, and the replica exits 0."""

    async def retire() -> int:
        await asyncio.sleep(after)
        load.signalled_at = time.monotonic()
        return await asyncio.to_thread(fleet.retire, replica)

    exit_code, _ = await asyncio.gather(
        retire(), load.run(LOAD_SECONDS, LOAD_CONNECTIONS)
    )
    measurements.append(f"{what} under {load.summary()}")

    load.assert_nothing_dropped()
    assert exit_code == 0, f"{replica.name} exited {exit_code}"
