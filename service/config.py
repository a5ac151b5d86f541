"""Settings read from the environment once, validated at start-up."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Self
from urllib.parse import parse_qs, unquote, urlsplit

import dotenv

from service.security.cpu import cpu_share

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
# Outside production, TOTP secrets are sealed under this when MFA_ENCRYPTION_KEY
# is unset; production refuses to start without a real key.
DEV_MFA_ENCRYPTION_KEY = "development-mfa-encryption-key-not-for-production"
DEV_PASSWORD_RESET_URL = "http://127.0.0.1:8000/reset-password?token={token}"
DEV_EMAIL_VERIFY_URL = "http://127.0.0.1:8000/verify-email?token={token}"
DEV_EMAIL_CHANGE_URL = "http://127.0.0.1:8000/confirm-email?token={token}"
MAIL_BACKENDS = ("smtp", "log")
# MFA_REQUIRED: who needs a session that used a second factor.
MFA_POLICIES = ("off", "admins", "all")
SMTP_PORTS = {"smtp": 25, "smtps": 465}
STARTTLS_CHOICES = {"": True, "on": True, "off": False}
# The relying party a development machine's browser reaches (`make run`'s address).
DEV_WEBAUTHN_RP_ID = "localhost"
DEV_WEBAUTHN_ORIGINS = ("http://localhost:8000",)


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


def load_env_file() -> None:
    """Put .env's variables into the environment, where it does not set them already.

    Every entry point reads its settings from os.environ through here
    (Settings.from_env for hypercorn and the CLI, database_url_from_env for
    alembic), so each sees the same values. The file is found as the quart CLI
    finds it: in the working directory or the nearest folder above. ENV_FILE
    names another file; set empty, no file is read (the test suite's choice).
    """
    path = os.environ.get("ENV_FILE")
    if path is None:
        path = dotenv.find_dotenv(".env", usecwd=True)
    if path:
        dotenv.load_dotenv(path, override=False, encoding="utf-8")


def database_url_from_env(environ: Mapping[str, str] | None = None) -> str | None:
    if environ is None:
        load_env_file()
    url = (os.environ if environ is None else environ).get("DATABASE_URL", "").strip()
    return normalize_database_url(url) if url else None


def prepare_sqlite_file(url: str) -> None:
    """Create the folder of a SQLite database file: the embedded default just runs."""
    prefix = "sqlite+aiosqlite:///"
    path = url[len(prefix) :].split("?")[0] if url.startswith(prefix) else ""
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class SmtpEndpoint:
    """Where SMTP_URL sends mail, and how the connection is protected.

    `smtp://` requires STARTTLS (no upgrade offered: nothing is sent);
    `smtps://` is TLS from the first byte; `smtp://…?starttls=off` is the
    explicit choice of cleartext, for a relay on the same host.
    """

    hostname: str
    port: int
    username: str | None
    password: str | None
    implicit_tls: bool
    starttls: bool


def smtp_endpoint(url: str) -> SmtpEndpoint:
    parts = urlsplit(url)
    if parts.scheme not in SMTP_PORTS:
        raise ConfigError("SMTP_URL must start with smtp:// or smtps://")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError("SMTP_URL has an invalid port") from None
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"starttls"})
    if unknown:
        raise ConfigError(f"SMTP_URL: unknown parameter {unknown[0]!r}")
    [choice] = query.get("starttls", ["on"])[-1:]
    if choice.lower() not in STARTTLS_CHOICES:
        raise ConfigError("SMTP_URL: starttls is on or off")
    starttls = STARTTLS_CHOICES[choice.lower()]
    if parts.scheme == "smtps" and "starttls" in query:
        raise ConfigError("SMTP_URL: smtps:// is TLS from the start; drop starttls")
    return SmtpEndpoint(
        hostname=parts.hostname or "localhost",
        port=port or SMTP_PORTS[parts.scheme],
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        implicit_tls=parts.scheme == "smtps",
        starttls=parts.scheme == "smtp" and starttls,
    )


Parser = Callable[[str, str], Any]


def var(name: str, parse: Parser, *, exact: bool = False) -> dict[str, Any]:
    """A Settings field's metadata: the environment variable it is read from, and
    how its text (`parse(name, text)`) becomes the field's value.

    Blank or unset leaves the default, unless `exact`: then the text is taken as
    it is, even empty (secrets: validate() refuses the empty ones).
    """
    return {"env": name, "parse": parse, "exact": exact}


def number(kind: type[int] | type[float]) -> Parser:
    def parse(key: str, raw: str) -> int | float:
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{key} must be a number, not {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{key} must not be negative")
        return value

    return parse


integer, decimal = number(int), number(float)
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def boolean(key: str, raw: str) -> bool:
    # Strict: `DB_STATEMENT_CACHE=disable` must not leave the cache on.
    word = raw.lower()
    if word not in _TRUE | _FALSE:
        raise ConfigError(
            f"{key} must be true or false (or 1/0, yes/no, on/off), not {raw!r}"
        )
    return word in _TRUE


def text(_key: str, raw: str) -> str:
    return raw


def lowercase(_key: str, raw: str) -> str:
    return raw.lower()


def uppercase(_key: str, raw: str) -> str:
    return raw.upper()


def items(_key: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list; blank items are dropped."""
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def sqlalchemy_url(_key: str, raw: str) -> str:
    return normalize_database_url(raw)


def sqlalchemy_urls(key: str, raw: str) -> tuple[str, ...]:
    return tuple(map(normalize_database_url, items(key, raw)))


def origin_host(origin: str) -> str | None:
    """The host of an origin (`scheme://host[:port]`, nothing after), else None."""
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path or parts.query or parts.fragment or parts.username:
        return None
    try:
        parts.port  # noqa: B018 (a port that is not a number raises here)
    except ValueError:
        return None
    return parts.hostname


def is_localhost_origin(origin: str) -> bool:
    host = origin_host(origin) or ""
    return host == "localhost" or host.endswith(".localhost")


def validate_webauthn(rp_id: str, origins: tuple[str, ...]) -> None:
    """Each origin must be the relying party's domain or under it, as browsers
    require of the RP ID they are given; plain http only for localhost."""
    if not rp_id or "/" in rp_id or ":" in rp_id:
        raise ConfigError(f"WEBAUTHN_RP_ID must be a domain name, not {rp_id!r}")
    if not origins:
        raise ConfigError("WEBAUTHN_ORIGINS must list at least one origin")
    for origin in origins:
        host = origin_host(origin)
        if host is None:
            raise ConfigError(
                f"WEBAUTHN_ORIGINS: {origin!r} is not an origin "
                "(scheme://host[:port], nothing after)"
            )
        if host != rp_id and not host.endswith(f".{rp_id}"):
            raise ConfigError(
                f"WEBAUTHN_ORIGINS: {origin!r} is not on WEBAUTHN_RP_ID {rp_id!r} "
                "or a subdomain of it"
            )
        if origin.startswith("http://") and not is_localhost_origin(origin):
            raise ConfigError(
                f"WEBAUTHN_ORIGINS: {origin!r} must be https:// (browsers offer "
                "passkeys over plain http only to localhost)"
            )


@dataclass(frozen=True, slots=True)
class Settings:
    env: Environment = field(default="development", metadata=var("APP_ENV", lowercase))
    database_url: str = field(
        default_factory=default_database_url,
        metadata=var("DATABASE_URL", sqlalchemy_url),
    )
    secret_key: str = field(
        default=DEV_SECRET_KEY, metadata=var("SECRET_KEY", text, exact=True)
    )
    jwt_secret_key: str = field(
        default=DEV_JWT_SECRET_KEY, metadata=var("JWT_SECRET_KEY", text, exact=True)
    )
    # Older keys while they are rotated out (comma-separated, as Flask 3.1's
    # SECRET_KEY_FALLBACKS): they verify, never sign (docs/deployment.md).
    secret_key_fallbacks: tuple[str, ...] = field(
        default=(), metadata=var("SECRET_KEY_FALLBACKS", items)
    )
    jwt_secret_key_fallbacks: tuple[str, ...] = field(
        default=(), metadata=var("JWT_SECRET_KEY_FALLBACKS", items)
    )
    access_token_expires: int = field(
        default=15 * 60, metadata=var("JWT_ACCESS_TOKEN_EXPIRES", integer)
    )
    refresh_token_expires: int = field(
        default=30 * 24 * 3600, metadata=var("JWT_REFRESH_TOKEN_EXPIRES", integer)
    )
    db_pool_size: int = field(default=10, metadata=var("DB_POOL_SIZE", integer))
    db_max_overflow: int = field(default=10, metadata=var("DB_MAX_OVERFLOW", integer))
    db_pool_timeout: float = field(
        default=10.0, metadata=var("DB_POOL_TIMEOUT", decimal)
    )
    db_statement_cache: bool = field(
        default=True, metadata=var("DB_STATEMENT_CACHE", boolean)
    )
    db_connect_timeout: float = field(
        default=5.0, metadata=var("DB_CONNECT_TIMEOUT", decimal)
    )
    db_command_timeout: float = field(
        default=5.0, metadata=var("DB_COMMAND_TIMEOUT", decimal)
    )
    db_pool_pre_ping: bool = field(
        default=False, metadata=var("DB_POOL_PRE_PING", boolean)
    )
    readiness_timeout: float = field(
        default=2.0, metadata=var("READINESS_TIMEOUT", decimal)
    )
    # Set by the image's entrypoint: while this file exists the replica is
    # stopping and /readyz answers 503, so the load balancer sends it nothing new.
    drain_file: str | None = field(default=None, metadata=var("DRAIN_FILE", text))
    password_hash_threads: int = field(
        default_factory=cpu_share,
        metadata=var("PASSWORD_HASH_THREADS", integer),
    )
    password_hash_nice: int = field(
        default=5, metadata=var("PASSWORD_HASH_NICE", integer)
    )
    password_hash_queue: int = field(
        default=64, metadata=var("PASSWORD_HASH_QUEUE", integer)
    )
    max_content_length: int = field(
        default=1024 * 1024, metadata=var("MAX_CONTENT_LENGTH", integer)
    )
    log_level: str = field(default="INFO", metadata=var("LOG_LEVEL", uppercase))
    log_format: str = field(default="json", metadata=var("LOG_FORMAT", text))
    metrics_token: str | None = field(default=None, metadata=var("METRICS_TOKEN", text))
    # Sessions and revocation.
    revocation_check: bool = field(
        default=True, metadata=var("REVOCATION_CHECK", boolean)
    )
    # Flask-era tokens carry no session; true until every client has logged in anew.
    accept_legacy_tokens: bool = field(
        default=True, metadata=var("ACCEPT_LEGACY_TOKENS", boolean)
    )
    refresh_rotation: bool = field(
        default=False, metadata=var("REFRESH_TOKEN_ROTATION", boolean)
    )
    refresh_grace_seconds: int = field(
        default=10, metadata=var("REFRESH_GRACE_SECONDS", integer)
    )
    session_touch_interval: int = field(
        default=60, metadata=var("SESSION_TOUCH_INTERVAL", integer)
    )
    # How long a login, a second factor or POST /auth/fresh keeps a session
    # fresh: what the routes that change an account's security need.
    fresh_session_seconds: int = field(
        default=600, metadata=var("FRESH_SESSION_SECONDS", integer)
    )
    # Second factors: the key TOTP secrets are sealed under (and older ones that
    # still open them while they are rotated out); the issuer authenticator apps
    # show; who needs a second factor (off, admins, all).
    mfa_encryption_key: str | None = field(
        default=None, metadata=var("MFA_ENCRYPTION_KEY", text)
    )
    mfa_encryption_key_fallbacks: tuple[str, ...] = field(
        default=(), metadata=var("MFA_ENCRYPTION_KEY_FALLBACKS", items)
    )
    mfa_issuer: str = field(default="service", metadata=var("MFA_ISSUER", text))
    mfa_required: str = field(default="off", metadata=var("MFA_REQUIRED", lowercase))
    # Login throttling: failures per account and per client IP within the window.
    redis_url: str | None = field(default=None, metadata=var("REDIS_URL", text))
    redis_key_prefix: str = field(default="", metadata=var("REDIS_KEY_PREFIX", text))
    login_max_failures: int = field(
        default=10, metadata=var("LOGIN_MAX_FAILURES", integer)
    )
    login_max_failures_per_ip: int = field(
        default=100, metadata=var("LOGIN_MAX_FAILURES_PER_IP", integer)
    )
    login_window_seconds: int = field(
        default=15 * 60, metadata=var("LOGIN_WINDOW_SECONDS", integer)
    )
    # Routes that hash or mail: requests per window, 0 for no limit.
    registration_max_per_ip: int = field(
        default=10, metadata=var("REGISTRATION_MAX_PER_IP", integer)
    )
    password_reset_max_per_address: int = field(
        default=3, metadata=var("PASSWORD_RESET_MAX_PER_ADDRESS", integer)
    )
    password_reset_max_per_ip: int = field(
        default=10, metadata=var("PASSWORD_RESET_MAX_PER_IP", integer)
    )
    rate_limit_window_seconds: int = field(
        default=3600, metadata=var("RATE_LIMIT_WINDOW_SECONDS", integer)
    )
    trusted_proxies: tuple[str, ...] = field(
        default=(), metadata=var("TRUSTED_PROXIES", items)
    )
    # Password reset mail: SMTP, or the log (the default only outside production).
    smtp_url: str | None = field(default=None, metadata=var("SMTP_URL", text))
    mail_backend: str | None = field(
        default=None, metadata=var("MAIL_BACKEND", lowercase)
    )
    mail_from: str = field(
        default="no-reply@localhost", metadata=var("MAIL_FROM", text)
    )
    # CA certificates (PEM) the mail server's certificate is checked against,
    # instead of the system's.
    smtp_ca_file: str | None = field(default=None, metadata=var("SMTP_CA_FILE", text))
    # Mail goes out through a bounded queue after the answer; a send that fails
    # for a reason that may pass is tried again MAIL_RETRIES times, the first
    # after MAIL_RETRY_DELAY seconds, each next one after twice as long.
    mail_retries: int = field(default=5, metadata=var("MAIL_RETRIES", integer))
    mail_retry_delay: float = field(
        default=2.0, metadata=var("MAIL_RETRY_DELAY", decimal)
    )
    mail_queue_size: int = field(default=1000, metadata=var("MAIL_QUEUE_SIZE", integer))
    password_reset_url: str = field(
        default=DEV_PASSWORD_RESET_URL, metadata=var("PASSWORD_RESET_URL", text)
    )
    password_reset_expires: int = field(
        default=60 * 60, metadata=var("PASSWORD_RESET_EXPIRES", integer)
    )
    # Account security: the owner is mailed of password, address and factor
    # changes; each account's security events are kept this many days (0: always).
    # Which new passwords are refused (security/password_policy.py).
    password_policy: str = field(
        default="length", metadata=var("PASSWORD_POLICY", lowercase)
    )
    pwned_passwords_url: str | None = field(
        default=None, metadata=var("PWNED_PASSWORDS_URL", text)
    )
    pwned_passwords_timeout: float = field(
        default=2.0, metadata=var("PWNED_PASSWORDS_TIMEOUT", decimal)
    )
    # Address verification and change: the links mailed, their lifetime, and
    # whether a login needs a verified address.
    email_verify_url: str = field(
        default=DEV_EMAIL_VERIFY_URL, metadata=var("EMAIL_VERIFY_URL", text)
    )
    email_change_url: str = field(
        default=DEV_EMAIL_CHANGE_URL, metadata=var("EMAIL_CHANGE_URL", text)
    )
    email_verify_expires: int = field(
        default=24 * 3600, metadata=var("EMAIL_VERIFY_EXPIRES", integer)
    )
    require_verified_email: bool = field(
        default=False, metadata=var("REQUIRE_VERIFIED_EMAIL", boolean)
    )
    security_notifications: bool = field(
        default=True, metadata=var("SECURITY_NOTIFICATIONS", boolean)
    )
    security_events_days: int = field(
        default=90, metadata=var("SECURITY_EVENTS_DAYS", integer)
    )
    cors_origins: tuple[str, ...] = field(
        default=(), metadata=var("CORS_ORIGINS", items)
    )
    docs_enabled: bool = field(default=True, metadata=var("DOCS_ENABLED", boolean))
    # PostgreSQL hot standbys for reads that decide nothing (service/db/replicas.py).
    database_replica_urls: tuple[str, ...] = field(
        default=(), metadata=var("DATABASE_REPLICA_URL", sqlalchemy_urls)
    )
    db_replica_max_lag: float = field(
        default=5.0, metadata=var("DB_REPLICA_MAX_LAG", decimal)
    )
    db_replica_status_ttl: float = field(
        default=0.005, metadata=var("DB_REPLICA_STATUS_TTL", decimal)
    )
    # Passkeys (services/passkeys.py): the relying party's domain, its name as
    # authenticators show it, and the origins its pages are served from.
    webauthn_rp_id: str = field(
        default=DEV_WEBAUTHN_RP_ID, metadata=var("WEBAUTHN_RP_ID", lowercase)
    )
    webauthn_rp_name: str = field(
        default="service", metadata=var("WEBAUTHN_RP_NAME", text)
    )
    webauthn_origins: tuple[str, ...] = field(
        default=DEV_WEBAUTHN_ORIGINS, metadata=var("WEBAUTHN_ORIGINS", items)
    )
    # OpenTelemetry traces (telemetry/tracing.py): on when the endpoint is set;
    # the exporter reads the other OTEL_EXPORTER_OTLP_* variables itself.
    otel_exporter_otlp_endpoint: str | None = field(
        default=None, metadata=var("OTEL_EXPORTER_OTLP_ENDPOINT", text)
    )
    otel_service_name: str = field(
        default="service", metadata=var("OTEL_SERVICE_NAME", text)
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        if environ is None:
            load_env_file()
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for each in fields(cls):
            key: str = each.metadata["env"]  # every field has one
            raw = env.get(key)
            if raw is not None and not each.metadata["exact"]:
                raw = raw.strip() or None
            if raw is not None:
                values[each.name] = each.metadata["parse"](key, raw)
        # A Flask deployment's FLASK_ENV still selects the configuration.
        source = "APP_ENV"
        if "env" not in values and (flask_env := env.get("FLASK_ENV", "").strip()):
            source, values["env"] = "FLASK_ENV", flask_env.lower()
        name = values.setdefault("env", "development")
        if name not in ("development", "testing", "production"):
            raise ConfigError(
                f"{source} must be development, testing or production, not {name!r}"
            )
        if "database_url" not in values and name == "production":
            raise ConfigError("DATABASE_URL is required in production")
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
        for name, key in (
            ("MFA_ENCRYPTION_KEY", self.mfa_encryption_key),
            *(
                ("MFA_ENCRYPTION_KEY_FALLBACKS", k)
                for k in self.mfa_encryption_key_fallbacks
            ),
        ):
            if key is not None and len(key) < 32:
                raise ConfigError(f"{name}: each key must be at least 32 characters")
        if self.mfa_required not in MFA_POLICIES:
            raise ConfigError(
                f"MFA_REQUIRED must be off, admins or all, not {self.mfa_required!r}"
            )
        if self.fresh_session_seconds < 1:
            raise ConfigError("FRESH_SESSION_SECONDS must be at least 1")
        if self.log_format not in ("json", "text"):
            raise ConfigError("LOG_FORMAT must be json or text")
        if "{token}" not in self.password_reset_url:
            raise ConfigError("PASSWORD_RESET_URL must contain {token}")
        if "*" in self.cors_origins:
            raise ConfigError("CORS_ORIGINS lists origins; '*' is not allowed")
        if self.mail_backend not in (None, *MAIL_BACKENDS):
            raise ConfigError("MAIL_BACKEND must be smtp or log")
        if self.mail_backend == "smtp" and not self.smtp_url:
            raise ConfigError("MAIL_BACKEND=smtp needs SMTP_URL")
        if self.mail_backend == "log" and self.smtp_url:
            raise ConfigError("MAIL_BACKEND=log and SMTP_URL are both set; choose one")
        if self.smtp_url:
            smtp_endpoint(self.smtp_url)
        if self.smtp_ca_file and not Path(self.smtp_ca_file).is_file():
            raise ConfigError(f"SMTP_CA_FILE: no file at {self.smtp_ca_file}")
        for name, url in (
            ("EMAIL_VERIFY_URL", self.email_verify_url),
            ("EMAIL_CHANGE_URL", self.email_change_url),
        ):
            if "{token}" not in url:
                raise ConfigError(f"{name} must contain {{token}}")
        if self.password_policy not in ("length", "common"):
            raise ConfigError("PASSWORD_POLICY must be length or common")
        if self.pwned_passwords_url and not self.pwned_passwords_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError("PWNED_PASSWORDS_URL must be an http:// or https:// URL")
        if self.mail_queue_size < 1:
            raise ConfigError("MAIL_QUEUE_SIZE must be at least 1")
        if self.database_replica_urls and self.is_sqlite:
            raise ConfigError("DATABASE_REPLICA_URL needs a PostgreSQL DATABASE_URL")
        for url in self.database_replica_urls:
            if not url.startswith("postgresql+asyncpg://"):
                raise ConfigError("DATABASE_REPLICA_URL lists postgresql:// URLs")
        validate_webauthn(self.webauthn_rp_id, self.webauthn_origins)
        if self.env != "production":
            return
        for name, value in (
            ("SECRET_KEY", self.secret_key),
            ("JWT_SECRET_KEY", self.jwt_secret_key),
            *(("SECRET_KEY_FALLBACKS", key) for key in self.secret_key_fallbacks),
            *(
                ("JWT_SECRET_KEY_FALLBACKS", key)
                for key in self.jwt_secret_key_fallbacks
            ),
        ):
            if value.strip().lower() in PLACEHOLDER_SECRETS:
                raise ConfigError(
                    f"{name} is missing or a placeholder; set a real secret"
                )
            if len(value) < 32:
                raise ConfigError(f"{name} must be at least 32 characters long")
        if (
            self.mfa_encryption_key is None
            or self.mfa_encryption_key.strip().lower() in PLACEHOLDER_SECRETS
            or self.mfa_encryption_key == DEV_MFA_ENCRYPTION_KEY
        ):
            raise ConfigError(
                "MFA_ENCRYPTION_KEY is required in production (at least 32 "
                "characters): TOTP secrets are encrypted under it"
            )
        if not self.revocation_check:
            raise ConfigError(
                "REVOCATION_CHECK=false is refused in production: tokens of "
                "logged-out sessions and deleted users would keep working"
            )
        if not self.smtp_url and self.mail_backend != "log":
            raise ConfigError(
                "SMTP_URL is required in production to send password-reset mail; "
                "MAIL_BACKEND=log writes it to the log instead, its token masked"
            )
        # The mailed links' routes exist whatever else is set: each link must
        # reach the deployment's page, not a developer's port.
        links = (
            (
                "PASSWORD_RESET_URL",
                "reset",
                self.password_reset_url,
                DEV_PASSWORD_RESET_URL,
            ),
            (
                "EMAIL_VERIFY_URL",
                "verification",
                self.email_verify_url,
                DEV_EMAIL_VERIFY_URL,
            ),
            (
                "EMAIL_CHANGE_URL",
                "address-change",
                self.email_change_url,
                DEV_EMAIL_CHANGE_URL,
            ),
        )
        for name, page, url, development_default in links:
            if url == development_default:
                raise ConfigError(
                    f"{name} is the development default; set your {page} "
                    "page's address, with {token} where the token goes"
                )

        # Unset, they are a developer's browser on `make run`: a deployment names
        # its own (localhost too, for a stack on one machine, if it says so).
        if self.webauthn_origins == DEV_WEBAUTHN_ORIGINS:
            raise ConfigError(
                "WEBAUTHN_ORIGINS is the development default (http://localhost:8000); "
                "set the origins of the pages that use passkeys, and WEBAUTHN_RP_ID "
                "to their domain"
            )

    @property
    def mfa_keys(self) -> tuple[str, tuple[str, ...]]:
        """The key TOTP secrets are sealed under, and the fallbacks that open them."""
        key = self.mfa_encryption_key or DEV_MFA_ENCRYPTION_KEY
        return key, self.mfa_encryption_key_fallbacks

    @property
    def mails_to_log(self) -> bool:
        return self.mail_backend == "log" or not self.smtp_url

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
