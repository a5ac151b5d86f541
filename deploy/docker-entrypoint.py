"""The image's ENTRYPOINT: secrets from files, the port from PORT, then the command.

- `NAME_FILE=/run/secrets/x` sets NAME to the file's content (compose and
  Kubernetes mount secrets as files), for the names in FILE_VARIABLES only.
- `DATABASE_PASSWORD` (usually from DATABASE_PASSWORD_FILE) goes into
  DATABASE_URL percent-encoded, so `@ : / #` in a password are just characters;
  `REDIS_PASSWORD` (REDIS_PASSWORD_FILE) into REDIS_URL the same way.
- Hypercorn without `-b`/`--bind` binds 0.0.0.0:$PORT (hypercorn.toml's 5000
  when PORT is unset, the Flask image's port).

Then it execs the command: the process is the container's, signals included.
Hypercorn is the exception when SHUTDOWN_DRAIN_SECONDS (default 5) is above 0:
the entrypoint stays, Hypercorn runs as its child, and a SIGTERM first drains:
DRAIN_FILE appears, /readyz answers 503, the load balancer takes the replica out
(deploy/haproxy.cfg: within 2.5 s), and only then is Hypercorn sent SIGTERM.
Closing keep-alive connections the balancer may be sending a request on would
fail that request, and a write (POST, PATCH, DELETE) is never retried for it.
Its exit status is Hypercorn's. Standard library only: it runs before anything
else of the image.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import MutableMapping
from urllib.parse import quote, urlsplit, urlunsplit

FILE_VARIABLES = (
    "SECRET_KEY",
    "JWT_SECRET_KEY",
    "SECRET_KEY_FALLBACKS",
    "JWT_SECRET_KEY_FALLBACKS",
    "DATABASE_URL",
    "DATABASE_PASSWORD",
    "REDIS_URL",
    "REDIS_PASSWORD",
    "METRICS_TOKEN",
    "SMTP_URL",
    "ADMIN_PASSWORD",
    "MFA_ENCRYPTION_KEY",
    "MFA_ENCRYPTION_KEY_FALLBACKS",
)


class EntrypointError(Exception):
    pass


def read_secret_files(env: MutableMapping[str, str]) -> None:
    for name in FILE_VARIABLES:
        path = env.pop(f"{name}_FILE", "")
        if not path:
            continue
        if env.get(name):
            raise EntrypointError(f"both {name} and {name}_FILE are set")
        try:
            with open(path, encoding="utf-8") as secret:
                # Editors and `echo` end files with a newline; no secret does.
                env[name] = secret.read().rstrip("\r\n")
        except OSError as error:
            raise EntrypointError(f"{name}_FILE: {error}") from error


def with_database_password(env: MutableMapping[str, str]) -> None:
    with_password(env, "DATABASE_PASSWORD", "DATABASE_URL", user_required=True)


def with_redis_password(env: MutableMapping[str, str]) -> None:
    # Redis's `requirepass` is the default user's: redis://:PASSWORD@host.
    with_password(env, "REDIS_PASSWORD", "REDIS_URL", user_required=False)


def with_password(
    env: MutableMapping[str, str], name: str, url_name: str, *, user_required: bool
) -> None:
    password = env.pop(name, "")
    if not password:
        return
    url = env.get(url_name, "")
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        raise EntrypointError(f"{name} needs a {url_name} with a host")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if user_required and (not at or not userinfo):
        raise EntrypointError(f"{name} needs a user in {url_name}")
    if ":" in userinfo:
        raise EntrypointError(f"{url_name} has a password and {name} too")
    netloc = f"{userinfo}:{quote(password, safe='')}@{hostport}"
    env[url_name] = urlunsplit(parts._replace(netloc=netloc))


def with_port(argv: list[str], env: MutableMapping[str, str]) -> list[str]:
    if os.path.basename(argv[0]) != "hypercorn":
        return argv
    if any(word in ("-b", "--bind") or word.startswith("--bind=") for word in argv):
        return argv
    port = env.get("PORT", "").strip()
    if not port:
        return argv
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EntrypointError(f"PORT: {port!r} is not a TCP port")
    return [*argv, "--bind", f"0.0.0.0:{int(port)}"]


def drain_seconds(env: MutableMapping[str, str]) -> float:
    value = env.get("SHUTDOWN_DRAIN_SECONDS", "").strip() or "5"
    try:
        seconds = float(value)
    except ValueError:
        raise EntrypointError(
            f"SHUTDOWN_DRAIN_SECONDS: {value!r} is not a number"
        ) from None
    if not 0 <= seconds <= 60:
        raise EntrypointError(f"SHUTDOWN_DRAIN_SECONDS: {value} is not 0 to 60")
    return seconds


def serve_draining(command: list[str], env: dict[str, str], seconds: float) -> int:
    """Hypercorn as a child; SIGTERM drains `seconds`, then reaches it."""
    drain_file = os.path.join(tempfile.gettempdir(), f"draining-{os.getpid()}")
    env["DRAIN_FILE"] = drain_file
    stopping = threading.Event()

    def on_stop(signum: int, _frame: object) -> None:
        if signum == signal.SIGINT:  # Ctrl-C at a terminal: no balancer to wait for
            child.send_signal(signal.SIGINT)
        stopping.set()

    child = subprocess.Popen(command, env=env)  # noqa: S603 (the image's own command)
    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    try:
        while child.poll() is None and not stopping.wait(0.2):
            pass
        if child.poll() is None:
            with open(drain_file, "w", encoding="utf-8"):
                pass
            try:
                child.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                child.send_signal(signal.SIGTERM)
        status = child.wait()
    finally:
        if os.path.exists(drain_file):
            os.unlink(drain_file)
    return 128 - status if status < 0 else status


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("docker-entrypoint: no command")
    env = dict(os.environ)
    try:
        read_secret_files(env)
        with_database_password(env)
        with_redis_password(env)
        command = with_port(argv, env)
        seconds = drain_seconds(env)
    except EntrypointError as error:
        sys.exit(f"docker-entrypoint: {error}")
    if os.path.basename(command[0]) == "hypercorn" and seconds > 0:
        sys.exit(serve_draining(command, env, seconds))
    os.execvpe(command[0], command, env)  # noqa: S606 (the image's own command)


if __name__ == "__main__":
    main(sys.argv[1:])
