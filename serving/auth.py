"""Authentication: merchant API keys (hashed at rest) and operator JWTs (pyjwt, HS256).

Credentials travel as `Authorization: Bearer <credential>`. API keys look like sk_test_<random>;
anything else is tried as a JWT.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.errors import ApiError
from warehouse.ids import new_id
from warehouse.models import ApiKey, Merchant, User
from warehouse.settings import Settings

API_KEY_PREFIX = "sk_test_"
OPERATOR_ROLES = ("platform_admin", "finance")
JWT_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    role: str  # platform_admin, finance, merchant_admin, merchant_developer
    merchant_id: str | None = None
    user_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role in OPERATOR_ROLES

    def can_see_merchant(self, merchant_id: str) -> bool:
        return self.is_operator or self.merchant_id == merchant_id


def hash_key(api_key: str) -> str:
    # API keys carry 192 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(api_key.encode()).hexdigest()


def issue_api_key(session: Session, merchant_id: str, role: str = "merchant_admin") -> str:
    """Create a key for the merchant and return it; only its hash is stored."""
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(24)
    session.add(ApiKey(id=new_id("api_key"), merchant_id=merchant_id, role=role,
                       key_prefix=api_key[:12], key_hash=hash_key(api_key)))
    return api_key


def issue_operator_token(settings: Settings, user: User, *, days: int = 30) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user.id, "role": user.role, "iat": now, "exp": now + timedelta(days=days)}
    return jwt.encode(claims, settings.signing_secret(), algorithm=JWT_ALGORITHM)


def authenticate(session: Session, settings: Settings, authorization: str | None) -> Principal:
    if not authorization or not authorization.startswith("Bearer "):
        raise ApiError(401, "unauthorized", "send your API key as 'Authorization: Bearer sk_test_...'")
    credential = authorization.removeprefix("Bearer ").strip()
    if credential.startswith(API_KEY_PREFIX):
        row = session.execute(
            select(ApiKey.merchant_id, ApiKey.role, Merchant.status)
            .join(Merchant, Merchant.id == ApiKey.merchant_id)
            .where(ApiKey.key_hash == hash_key(credential), ApiKey.revoked_at.is_(None))
        ).first()
        if row is None:
            raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
        if row.status != "active":
            raise ApiError(403, "merchant_inactive", f"merchant {row.merchant_id} is {row.status}")
        return Principal(role=row.role, merchant_id=row.merchant_id)
    try:
        claims = jwt.decode(credential, settings.signing_secret(), algorithms=[JWT_ALGORITHM],
                            options={"require": ["exp", "sub", "role"]})
    except jwt.PyJWTError as exc:
        raise ApiError(401, "invalid_token", f"the bearer token is not valid: {exc}") from None
    user = session.get(User, claims["sub"])
    if user is None or user.role != claims["role"]:
        raise ApiError(401, "invalid_token", "the token's user no longer exists or changed role")
    return Principal(role=user.role, user_id=user.id)
