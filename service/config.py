"""Settings read from the environment once, validated at start-up."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Self

Environment = Literal["development", "testing", "production"]

DEFAULT_SQLITE_PATH = Path("instance") / "service.db"
# Values a deployment must never run with: the Flask-era fallbacks and the
# examples from .env.example.
PLACEHOLDER_SECRETS = frozenset(
    {
        "",
        "changeme",
        "change-me",
        "changethis",
        "secret",
        "dev-secret-key-change-me-0123456789",
        "dev-jwt-secret-key-change-me-0123456789",
        "development-secret-key-not-for-production",
        "development-jwt-secret-key-not-for-production",
    }
)
DEV_SECRET_KEY = "development-secret-key-not-for-production"
DEV_JWT_SECRET_KEY = "development-jwt-secret-key-not-for-production"


class ConfigError(RuntimeError):
    """The environment describes a configuration the service refuses to run."""


def normalize_database_url(url: str) -> str:
    """Accept the Flask service's sync URLs and pick the async driver for them."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite://") and not url.startswith("sqlite+"):
        return "sqlite+aiosqlite://" + url[len("sqlite://") :]
    return url


def default_database_url() -> str:
    return f"sqlite+aiosqlite:///{DEFAULT_SQLITE_PATH.resolve()}"


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    url = (os.environ if environ is None else environ).get("DATABASE_URL", "").strip()
    return normalize_database_url(url) if url else None


def prepare_sqlite_file(url: str) -> None:
    """Create the folder of a SQLite database file: the embedded default just runs."""
    prefix = "sqlite+aiosqlite:///"
    path = url[len(prefix) :].split("?")[0] if url.startswith(prefix) else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class Settings:
    env: Environment = "development"
    database_url: str = field(default_factory=default_database_url)
    secret_key: str = DEV_SECRET_KEY
    jwt_secret_key: str = DEV_JWT_SECRET_KEY
    access_token_expires: int = 15 * 60
    refresh_token_expires: int = 30 * 24 * 60 * 60
    db_pool_size: int = 10
    db_max_overflow: int = 10
    db_pool_timeout: float = 10.0
    db_statement_cache: bool = True
    db_connect_timeout: float = 5.0
    db_command_timeout: float = 5.0
    db_pool_pre_ping: bool = False
    readiness_timeout: float = 2.0
    password_hash_threads: int = field(default_factory=lambda: os.cpu_count() or 2)
    password_hash_nice: int = 5
    max_content_length: int = 1024 * 1024
    log_level: str = "INFO"
    log_format: str = "json"
    metrics_token: str | None = None
    # Sessions and revocation.
    revocation_check: bool = True
    refresh_rotation: bool = False
    refresh_grace_seconds: int = 10
    session_touch_interval: int = 60
    # Login throttling: failures per account and per client IP within the window.
    redis_url: str | None = None
    login_max_failures: int = 10
    login_max_failures_per_ip: int = 100
    login_window_seconds: int = 15 * 60
    trusted_proxies: tuple[str, ...] = ()
    # Password reset mail.
    smtp_url: str | None = None
    mail_from: str = "no-reply@localhost"
    password_reset_url: str = "http://127.0.0.1:8000/reset-password?token={token}"
    password_reset_expires: int = 60 * 60
    cors_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        name = env.get("APP_ENV", "development").strip().lower()
        if name not in ("development", "testing", "production"):
            raise ConfigError(
                f"APP_ENV must be development, testing or production, not {name!r}"
            )
        values: dict[str, Any] = {"env": name}
        if url := database_url_from_env(env):
            values["database_url"] = url
        elif name == "production":
            raise ConfigError("DATABASE_URL is required in production")
        for key, attr in (
            ("SECRET_KEY", "secret_key"),
            ("JWT_SECRET_KEY", "jwt_secret_key"),
        ):
            if key in env:
                values[attr] = env[key]
        for key, attr, kind in _NUMERIC:
            if raw := env.get(key, "").strip():
                try:
                    values[attr] = kind(raw)
                except ValueError:
                    raise ConfigError(f"{key} must be a number, not {raw!r}") from None
                if values[attr] < 0:
                    raise ConfigError(f"{key} must not be negative")
        for key, attr in _BOOLEAN:
            if raw := env.get(key, "").strip():
                values[attr] = raw.lower() not in ("0", "false", "no", "off")
        for key, attr in (
            ("TRUSTED_PROXIES", "trusted_proxies"),
            ("CORS_ORIGINS", "cors_origins"),
        ):
            if raw := env.get(key, "").strip():
                values[attr] = tuple(
                    item.strip() for item in raw.split(",") if item.strip()
                )
        for key, attr in _TEXT:
            if raw := env.get(key, "").strip():
                values[attr] = raw
        if raw := env.get("LOG_LEVEL", "").strip():
            values["log_level"] = raw.upper()
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for proxy in self.trusted_proxies:
            try:
                ipaddress.ip_network(proxy, strict=False)
            except ValueError:
                raise ConfigError(
                    f"TRUSTED_PROXIES: {proxy!r} is not an IP or network"
                ) from None
        if self.log_format not in ("json", "text"):
            raise ConfigError("LOG_FORMAT must be json or text")
        if "{token}" not in self.password_reset_url:
            raise ConfigError("PASSWORD_RESET_URL must contain {token}")
        if "*" in self.cors_origins:
            raise ConfigError("CORS_ORIGINS lists origins; '*' is not allowed")
        if self.env != "production":
            return
        for name, value in (
            ("SECRET_KEY", self.secret_key),
            ("JWT_SECRET_KEY", self.jwt_secret_key),
        ):
            if value.strip().lower() in PLACEHOLDER_SECRETS:
                raise ConfigError(
                    f"{name} is missing or a placeholder; set a real secret"
                )
            if len(value) < 32:
                raise ConfigError(f"{name} must be at least 32 characters long")

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    def quart_config(self) -> dict[str, Any]:
        return {
            "SECRET_KEY": self.secret_key,
            "MAX_CONTENT_LENGTH": self.max_content_length,
            "TESTING": self.env == "testing",
            "PROPAGATE_EXCEPTIONS": False,
        }


_NUMERIC: tuple[tuple[str, str, type[int] | type[float]], ...] = (
    ("JWT_ACCESS_TOKEN_EXPIRES", "access_token_expires", int),
    ("JWT_REFRESH_TOKEN_EXPIRES", "refresh_token_expires", int),
    ("DB_POOL_SIZE", "db_pool_size", int),
    ("DB_MAX_OVERFLOW", "db_max_overflow", int),
    ("DB_POOL_TIMEOUT", "db_pool_timeout", float),
    ("DB_CONNECT_TIMEOUT", "db_connect_timeout", float),
    ("DB_COMMAND_TIMEOUT", "db_command_timeout", float),
    ("READINESS_TIMEOUT", "readiness_timeout", float),
    ("PASSWORD_HASH_THREADS", "password_hash_threads", int),
    ("PASSWORD_HASH_NICE", "password_hash_nice", int),
    ("MAX_CONTENT_LENGTH", "max_content_length", int),
    ("REFRESH_GRACE_SECONDS", "refresh_grace_seconds", int),
    ("SESSION_TOUCH_INTERVAL", "session_touch_interval", int),
    ("LOGIN_MAX_FAILURES", "login_max_failures", int),
    ("LOGIN_MAX_FAILURES_PER_IP", "login_max_failures_per_ip", int),
    ("LOGIN_WINDOW_SECONDS", "login_window_seconds", int),
    ("PASSWORD_RESET_EXPIRES", "password_reset_expires", int),
)
_TEXT: tuple[tuple[str, str], ...] = (
    ("REDIS_URL", "redis_url"),
    ("SMTP_URL", "smtp_url"),
    ("MAIL_FROM", "mail_from"),
    ("PASSWORD_RESET_URL", "password_reset_url"),
    ("METRICS_TOKEN", "metrics_token"),
    ("LOG_FORMAT", "log_format"),
)
_BOOLEAN: tuple[tuple[str, str], ...] = (
    ("DB_STATEMENT_CACHE", "db_statement_cache"),
    ("DB_POOL_PRE_PING", "db_pool_pre_ping"),
    ("REVOCATION_CHECK", "revocation_check"),
    ("REFRESH_TOKEN_ROTATION", "refresh_rotation"),
)
