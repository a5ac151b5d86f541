"""Tokens minted exactly as the Flask service mints them: flask-jwt-extended 4.7.4."""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import flask
from flask_jwt_extended import JWTManager, create_access_token, create_refresh_token
from flask_jwt_extended import decode_token as flask_decode_token


def _identity_as_string(identity: object) -> str:
    return str(identity)


class FlaskIssuer:
    """flask-jwt-extended set up as the Flask service's app/extensions.py does."""

    def __init__(self, key: str, *, string_identity: bool = True) -> None:
        self.app = flask.Flask(__name__)
        self.app.config["JWT_SECRET_KEY"] = key
        manager = JWTManager(self.app)
        # Without the loader the identity goes into `sub` as given: the seed's int.
        if string_identity:
            manager.user_identity_loader(_identity_as_string)

    def access(
        self,
        identity: object,
        *,
        is_admin: bool = False,
        expires_delta: timedelta | None = None,
    ) -> str:
        with self.app.app_context():
            token: str = create_access_token(
                identity=identity,
                additional_claims={"is_admin": is_admin},
                expires_delta=expires_delta,
            )
        return token

    def refresh(
        self, identity: object, *, expires_delta: timedelta | None = None
    ) -> str:
        with self.app.app_context():
            token: str = create_refresh_token(
                identity=identity, expires_delta=expires_delta
            )
        return token

    def decode(self, token: str) -> dict[str, Any]:
        with self.app.app_context():
            claims: dict[str, Any] = flask_decode_token(token)
        return claims


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def alg_none(token: str) -> str:
    """The token re-headed `alg: none`, as reference/mint_token.py --alg-none does."""
    header = b64(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{token.split('.')[1]}."
