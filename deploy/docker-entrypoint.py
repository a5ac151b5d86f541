"""The image's ENTRYPOINT: secrets from files, the port from PORT, then the command.

- `NAME_FILE=/run/secrets/x` sets NAME to the file's content (compose and
  Kubernetes mount secrets as files), for the names in FILE_VARIABLES only.
- `DATABASE_PASSWORD` (usually from DATABASE_PASSWORD_FILE) goes into
  DATABASE_URL percent-encoded, so `@ : / #` in a password are just characters;
  `REDIS_PASSWORD` (REDIS_PASSWORD_FILE) into REDIS_URL the same way.
- Hypercorn without `-b`/`--bind` binds 0.0.0.0:$PORT (hypercorn.toml's 5000
  when PORT is unset, the Flask image's port).

Then it execs the command: the process is the container's, signals included.
Standard library only: it runs before anything else of the image.
"""

from __future__ import annotations

import os
import sys
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


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("docker-entrypoint: no command")
    env = dict(os.environ)
    try:
        read_secret_files(env)
        with_database_password(env)
        with_redis_password(env)
        command = with_port(argv, env)
    except EntrypointError as error:
        sys.exit(f"docker-entrypoint: {error}")
    os.execvpe(command[0], command, env)  # noqa: S606 (the image's own command)


if __name__ == "__main__":
    main(sys.argv[1:])
