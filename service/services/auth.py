"""Login, token refresh and logout."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from service.config import Settings
from service.errors import AuthError
from service.models import User
from service.security.passwords import PasswordHasher
from service.security.tokens import Identity, create_token
from service.services.users import UserService

INVALID_CREDENTIALS = "Invalid email or password"
DEACTIVATED = "Account is deactivated"


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    token_type: str = "bearer"


@dataclass(frozen=True, slots=True)
class AccessToken:
    access_token: str
    token_type: str = "bearer"


class AuthService:
    def __init__(
        self, session: AsyncSession, hasher: PasswordHasher, settings: Settings
    ) -> None:
        self.session = session
        self.hasher = hasher
        self.settings = settings
        self.users = UserService(session, hasher)

    async def login(self, email: str, password: str) -> TokenPair:
        """An unknown email costs one hash check, like a wrong password."""
        user = await self.users.get_by_email(email)
        password_ok = await self.hasher.verify(
            user.password_hash if user else None, password
        )
        if user is None or not password_ok:
            raise AuthError(INVALID_CREDENTIALS)
        if not user.is_active:
            raise AuthError(DEACTIVATED)
        return TokenPair(
            access_token=self.access_token_for(user),
            refresh_token=create_token(
                user_id=user.id,
                token_type="refresh",
                key=self.settings.jwt_secret_key,
                expires_in=self.settings.refresh_token_expires,
            ),
        )

    async def refresh(self, identity: Identity) -> AccessToken:
        user = await self.users.get(identity.user_id)
        if not user.is_active:
            raise AuthError(DEACTIVATED)
        return AccessToken(access_token=self.access_token_for(user))

    def access_token_for(self, user: User) -> str:
        return create_token(
            user_id=user.id,
            token_type="access",
            key=self.settings.jwt_secret_key,
            expires_in=self.settings.access_token_expires,
            additional_claims={"is_admin": user.is_admin},
        )
