"""Typed access to what the app holds: settings, the password hasher, services."""

from __future__ import annotations

from quart import current_app

from service.config import Settings
from service.db import request_session
from service.security.passwords import PasswordHasher
from service.services.auth import AuthService
from service.services.users import UserService

SETTINGS_KEY = "settings"
HASHER_KEY = "password_hasher"


def settings() -> Settings:
    value: Settings = current_app.extensions[SETTINGS_KEY]
    return value


def hasher() -> PasswordHasher:
    value: PasswordHasher = current_app.extensions[HASHER_KEY]
    return value


def user_service() -> UserService:
    return UserService(request_session(), hasher())


def auth_service() -> AuthService:
    return AuthService(request_session(), hasher(), settings())
