"""Settings: each field is read from the variable it names; strict booleans."""

from __future__ import annotations

from dataclasses import fields
from importlib.metadata import version
from typing import Any

import pytest

from service import create_app
from service.config import ConfigError, Settings

# A valid value per field type, unlike every default, and what it reads as.
SAMPLES: dict[str, tuple[str, Any]] = {
    "int": ("7", 7),
    "float": ("2.5", 2.5),
    "bool": ("no", False),
    "str": ("sample-{token}", "sample-{token}"),
    "str | None": ("redis://127.0.0.1:1/0", "redis://127.0.0.1:1/0"),
    "tuple[str, ...]": ("10.0.0.1, 10.0.0.2", ("10.0.0.1", "10.0.0.2")),
}
SPECIAL: dict[str, tuple[str, Any]] = {
    "env": ("testing", "testing"),
    "database_url": ("postgres://db/x", "postgresql+asyncpg://db/x"),
    "log_level": ("debug", "DEBUG"),
    "log_format": ("text", "text"),
    "secret_key": (" kept as is ", " kept as is "),
    "jwt_secret_key": (" kept as is ", " kept as is "),
    "cors_origins": ("https://a.example", ("https://a.example",)),
    "mail_backend": ("LOG", "log"),
    "smtp_url": ("smtps://mail.example", "smtps://mail.example"),
    "smtp_ca_file": (__file__, __file__),
    "password_policy": ("COMMON", "common"),
    "pwned_passwords_url": ("https://range.example", "https://range.example"),
    "mfa_encryption_key": ("k" * 32, "k" * 32),
    "mfa_required": ("ALL", "all"),
    "mfa_encryption_key_fallbacks": ("a" * 32 + ", " + "b" * 32, ("a" * 32, "b" * 32)),
    "database_replica_urls": (
        "postgres://r1/x, postgresql://r2/x",
        ("postgresql+asyncpg://r1/x", "postgresql+asyncpg://r2/x"),
    ),
    "webauthn_rp_id": ("Example.COM", "example.com"),
    "webauthn_origins": (
        "https://example.com, https://app.example.com:8443",
        ("https://example.com", "https://app.example.com:8443"),
    ),
}
# What a field needs beside it to be accepted at all.
ALONGSIDE: dict[str, dict[str, str]] = {
    "database_replica_urls": {"DATABASE_URL": "postgresql://db/x"},
    "webauthn_rp_id": {"WEBAUTHN_ORIGINS": "https://example.com"},
    "webauthn_origins": {"WEBAUTHN_RP_ID": "example.com"},
}
BOOLEANS = [each.metadata["env"] for each in fields(Settings) if each.type == "bool"]


def test_every_field_names_its_own_variable() -> None:
    names = [each.metadata.get("env") for each in fields(Settings)]

    assert None not in names
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("field", fields(Settings), ids=lambda each: each.name)
def test_each_field_is_read_from_its_variable(field: Any) -> None:
    raw, expected = SPECIAL.get(field.name) or SAMPLES[str(field.type)]
    if field.type == "bool" and getattr(Settings(), field.name) is False:
        raw, expected = "YES", True

    environ = {**ALONGSIDE.get(field.name, {}), field.metadata["env"]: raw}
    settings = Settings.from_env(environ)

    assert getattr(settings, field.name) == expected


@pytest.mark.parametrize("name", BOOLEANS)
@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        *[(word, True) for word in ("true", "1", "yes", "on", "TRUE", "On")],
        *[(word, False) for word in ("false", "0", "no", "off", "False", "OFF")],
    ],
)
def test_booleans_read_the_usual_words(name: str, raw: str, expected: bool) -> None:
    settings = Settings.from_env({name: raw})
    [field] = [each for each in fields(Settings) if each.metadata["env"] == name]

    assert getattr(settings, field.name) is expected


@pytest.mark.parametrize("raw", ["disable", "enabled", "2", "y", "nope"])
@pytest.mark.parametrize("name", BOOLEANS)
def test_booleans_refuse_anything_else_naming_the_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name} must be true or false.*{raw!r}"):
        Settings.from_env({name: raw})


def test_the_documented_version_is_the_packages() -> None:
    app = create_app(Settings(env="testing"))

    assert app.extensions["QUART_SCHEMA"].openapi_provider.schema()["info"][
        "version"
    ] == version("service")


# Production as a deployment sets it: every check below passes on this.
PRODUCTION = {
    "APP_ENV": "production",
    "DATABASE_URL": "postgresql://app@db/app",
    "SECRET_KEY": "production-secret-key-0123456789-abcdefgh",
    "JWT_SECRET_KEY": "production-jwt-secret-key-0123456789-abcd",
    "SMTP_URL": "smtp://mail.internal:25",
    "PASSWORD_RESET_URL": "https://app.example.com/reset?token={token}",
    "EMAIL_VERIFY_URL": "https://app.example.com/verify-email?token={token}",
    "EMAIL_CHANGE_URL": "https://app.example.com/confirm-email?token={token}",
    "MFA_ENCRYPTION_KEY": "production-mfa-encryption-key-0123456789-abc",
    "WEBAUTHN_RP_ID": "example.com",
    "WEBAUTHN_ORIGINS": "https://app.example.com",
}


def test_production_starts_on_a_complete_deployment() -> None:
    settings = Settings.from_env(PRODUCTION)

    assert (settings.env, settings.mails_to_log) == ("production", False)


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"REVOCATION_CHECK": "false"}, r"^REVOCATION_CHECK=false is refused"),
        # No mail server and no explicit choice: reset links would go to the log.
        ({"SMTP_URL": ""}, r"^SMTP_URL is required in production.*MAIL_BACKEND=log"),
        (
            {
                "PASSWORD_RESET_URL": "http://127.0.0.1:8000/reset-password?token={token}"
            },
            r"^PASSWORD_RESET_URL is the development default",
        ),
        ({"PASSWORD_RESET_URL": ""}, r"^PASSWORD_RESET_URL is the development default"),
        # Unset, the links would send a user's token to their own 127.0.0.1:8000.
        ({"EMAIL_VERIFY_URL": ""}, r"^EMAIL_VERIFY_URL is the development default"),
        (
            {"EMAIL_VERIFY_URL": "", "REQUIRE_VERIFIED_EMAIL": "true"},
            r"^EMAIL_VERIFY_URL is the development default",
        ),
        ({"EMAIL_CHANGE_URL": ""}, r"^EMAIL_CHANGE_URL is the development default"),
        (
            {"WEBAUTHN_RP_ID": "", "WEBAUTHN_ORIGINS": ""},
            r"^WEBAUTHN_ORIGINS is the development default",
        ),
        (
            {
                "WEBAUTHN_RP_ID": "localhost",
                "WEBAUTHN_ORIGINS": "http://localhost:8000",
            },
            r"^WEBAUTHN_ORIGINS is the development default",
        ),
        # A relying party browsers would refuse: no passkey would ever work.
        (
            {"WEBAUTHN_RP_ID": "https://example.com"},
            r"^WEBAUTHN_RP_ID must be a domain name, not 'https://example.com'$",
        ),
        (
            {"WEBAUTHN_ORIGINS": "example.com"},
            r"^WEBAUTHN_ORIGINS: 'example.com' is not an origin",
        ),
        (
            {"WEBAUTHN_ORIGINS": "https://example.com/login"},
            r"^WEBAUTHN_ORIGINS: 'https://example.com/login' is not an origin",
        ),
        (
            {"WEBAUTHN_ORIGINS": "https://example.com:port"},
            r"^WEBAUTHN_ORIGINS: 'https://example.com:port' is not an origin",
        ),
        (
            {"WEBAUTHN_ORIGINS": "https://example.org"},
            r"^WEBAUTHN_ORIGINS: 'https://example.org' is not on WEBAUTHN_RP_ID "
            r"'example.com'",
        ),
        (
            {"WEBAUTHN_ORIGINS": "https://notexample.com"},
            r"^WEBAUTHN_ORIGINS: 'https://notexample.com' is not on WEBAUTHN_RP_ID",
        ),
        (
            {"WEBAUTHN_ORIGINS": "http://app.example.com"},
            r"^WEBAUTHN_ORIGINS: 'http://app.example.com' must be https://",
        ),
        (
            {"WEBAUTHN_ORIGINS": " , "},
            r"^WEBAUTHN_ORIGINS must list at least one origin$",
        ),
    ],
)
def test_production_refuses_unsafe_settings_naming_them(
    changes: dict[str, str], refused: str
) -> None:
    with pytest.raises(ConfigError, match=refused):
        Settings.from_env(PRODUCTION | changes)


@pytest.mark.parametrize("name", ["SECRET_KEY_FALLBACKS", "JWT_SECRET_KEY_FALLBACKS"])
def test_production_refuses_a_short_fallback_key_naming_it(name: str) -> None:
    long_enough = "an-older-production-key-0123456789-abcdef"

    with pytest.raises(ConfigError, match=f"^{name} must be at least 32 characters"):
        Settings.from_env(PRODUCTION | {name: f"{long_enough}, short"})


def test_fallback_keys_are_a_comma_separated_list() -> None:
    settings = Settings.from_env(
        PRODUCTION
        | {
            "JWT_SECRET_KEY_FALLBACKS": "old-jwt-key-0123456789-0123456789-ab, ",
            "SECRET_KEY_FALLBACKS": "",
        }
    )

    assert settings.jwt_secret_key_fallbacks == (
        "old-jwt-key-0123456789-0123456789-ab",
    )
    assert settings.secret_key_fallbacks == ()


def test_production_logs_reset_mail_only_when_chosen() -> None:
    settings = Settings.from_env(PRODUCTION | {"SMTP_URL": "", "MAIL_BACKEND": "log"})

    assert settings.mails_to_log


@pytest.mark.parametrize(
    ("changes", "refused"),
    [
        ({"MAIL_BACKEND": "sendmail"}, r"^MAIL_BACKEND must be smtp or log$"),
        ({"MAIL_BACKEND": "smtp"}, r"^MAIL_BACKEND=smtp needs SMTP_URL$"),
        (
            {"MAIL_BACKEND": "log", "SMTP_URL": "smtp://mail.internal:25"},
            r"^MAIL_BACKEND=log and SMTP_URL are both set",
        ),
    ],
)
def test_mail_backend_refuses_what_it_cannot_do(
    changes: dict[str, str], refused: str
) -> None:
    with pytest.raises(ConfigError, match=refused):
        Settings.from_env(changes)


def test_development_keeps_its_defaults_mail_in_the_log_and_legacy_tokens() -> None:
    settings = Settings.from_env({})

    assert settings.mails_to_log
    assert settings.accept_legacy_tokens
    assert settings.revocation_check


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"MFA_ENCRYPTION_KEY": ""}, "MFA_ENCRYPTION_KEY is required in production"),
        (
            {"MFA_ENCRYPTION_KEY": "development-mfa-encryption-key-not-for-production"},
            "MFA_ENCRYPTION_KEY is required in production",
        ),
        ({"MFA_ENCRYPTION_KEY": "short"}, "MFA_ENCRYPTION_KEY: each key must be"),
        (
            {"MFA_ENCRYPTION_KEY_FALLBACKS": "a" * 32 + ",short"},
            "MFA_ENCRYPTION_KEY_FALLBACKS: each key must be",
        ),
    ],
)
def test_production_refuses_a_missing_or_weak_mfa_key(
    changes: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(PRODUCTION | changes)


def test_development_seals_under_its_own_key_until_one_is_set() -> None:
    assert Settings.from_env({}).mfa_keys == (
        "development-mfa-encryption-key-not-for-production",
        (),
    )
    settings = Settings.from_env(
        {"MFA_ENCRYPTION_KEY": "k" * 32, "MFA_ENCRYPTION_KEY_FALLBACKS": "o" * 32}
    )
    assert settings.mfa_keys == ("k" * 32, ("o" * 32,))


def test_fresh_session_seconds_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="FRESH_SESSION_SECONDS must be at least 1"):
        Settings.from_env({"FRESH_SESSION_SECONDS": "0"})


def test_passkeys_default_to_a_developers_browser_on_localhost() -> None:
    settings = Settings.from_env({})

    assert settings.webauthn_rp_id == "localhost"
    assert settings.webauthn_origins == ("http://localhost:8000",)


def test_production_accepts_localhost_passkeys_it_names_itself() -> None:
    """A stack on one machine (compose.yaml) says so; only the unset default fails."""
    settings = Settings.from_env(
        PRODUCTION
        | {"WEBAUTHN_RP_ID": "localhost", "WEBAUTHN_ORIGINS": "http://localhost:5000"}
    )

    assert settings.webauthn_origins == ("http://localhost:5000",)
