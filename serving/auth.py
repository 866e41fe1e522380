"""Authentication: merchant and agent API keys (hashed at rest) and operator JWTs (pyjwt, HS256).

Credentials travel as `Authorization: Bearer <credential>` (the scheme in any case, RFC 7235).
API keys look like sk_test_<random>; anything else is tried as a JWT. Roles: platform_admin and
finance (operators, JWT),
merchant_admin and merchant_developer (a merchant's keys), agent (an agent's keys). A key is
refused (401) once revoked or past its expires_at (a rotation's grace period ends there).
What a principal may see is decided in serving/tenancy.py.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import cache
from serving.errors import ApiError
from warehouse.ids import new_id
from warehouse.models import Agent, ApiKey, Merchant, User
from warehouse.settings import Settings

API_KEY_PREFIX = "sk_test_"
OPERATOR_ROLES = ("platform_admin", "finance")
MERCHANT_ROLES = ("merchant_admin", "merchant_developer")
AGENT_ROLE = "agent"
JWT_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    role: str  # platform_admin, finance, merchant_admin, merchant_developer, agent
    merchant_id: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    key_id: str | None = None

    @property
    def is_operator(self) -> bool:
        return self.role in OPERATOR_ROLES

    @property
    def is_agent(self) -> bool:
        return self.agent_id is not None

    @property
    def merchant(self) -> str:
        """The merchant a merchant credential acts for (serving.deps.require_merchant admits
        only those); any other credential is refused here too."""
        if self.merchant_id is None:
            raise ApiError(403, "merchant_credential_required",
                           "this endpoint acts for a merchant: use the merchant's API key")
        return self.merchant_id

    @property
    def actor(self) -> str:
        """Who did it, for the audit log: role and user or key id (never the key itself)."""
        return f"{self.role}:{self.user_id or self.key_id or self.merchant_id or self.agent_id}"

    def can_see_merchant(self, merchant_id: str) -> bool:
        """Operators and the merchant itself. Agents need the tree: use
        serving.tenancy.can_see_merchant(session, principal, merchant_id), which this refuses."""
        return self.is_operator or (self.merchant_id is not None
                                    and self.merchant_id == merchant_id)


def hash_key(api_key: str) -> str:
    # API keys carry 192 random bits, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_api_key(session: Session, *, merchant_id: str | None = None, agent_id: str | None = None,
                role: str = "merchant_admin", name: str | None = None,
                expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key for a merchant or an agent; returns the row and the key (shown once)."""
    if (merchant_id is None) == (agent_id is None):
        raise ValueError("an API key belongs to exactly one merchant or agent")
    api_key = API_KEY_PREFIX + secrets.token_urlsafe(24)
    row = ApiKey(id=new_id("api_key"), merchant_id=merchant_id, agent_id=agent_id, role=role,
                 name=name, expires_at=expires_at, key_prefix=api_key[:12],
                 key_hash=hash_key(api_key))
    session.add(row)
    return row, api_key


def issue_api_key(session: Session, merchant_id: str, role: str = "merchant_admin") -> str:
    """Create a key for the merchant and return it; only its hash is stored."""
    return new_api_key(session, merchant_id=merchant_id, role=role)[1]


def issue_operator_token(settings: Settings, user: User, *, days: int = 30) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user.id, "role": user.role, "iat": now, "exp": now + timedelta(days=days)}
    return jwt.encode(claims, settings.signing_secret(), algorithm=JWT_ALGORITHM)


def _key_cache_key(engine, key_hash: str) -> tuple:
    return ("api_key", cache.scope(engine), key_hash)


def _bearer(authorization: str | None) -> str:
    # The scheme is case-insensitive (RFC 7235 section 2.1): "bearer" and "BEARER" are "Bearer".
    scheme, _, credential = (authorization or "").strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise ApiError(401, "unauthorized", "send your API key as 'Authorization: Bearer sk_test_...'")
    return credential


def _principal_from_key(row) -> Principal:
    """Checked on every request, also when the key's row came from the cache."""
    if row is None or row.revoked_at is not None:
        raise ApiError(401, "invalid_api_key", "the API key is unknown or revoked")
    if row.expires_at is not None and row.expires_at <= datetime.now(UTC):
        # credentials expire on the wall clock, never the test clock
        raise ApiError(401, "invalid_api_key", "the API key has expired")
    if row.agent_id is not None:
        if row.agent_status != "active":
            raise ApiError(403, "agent_inactive", f"agent {row.agent_id} is {row.agent_status}")
        return Principal(role=AGENT_ROLE, agent_id=row.agent_id, key_id=row.id)
    if row.merchant_status != "active":
        raise ApiError(403, "merchant_inactive",
                       f"merchant {row.merchant_id} is {row.merchant_status}")
    return Principal(role=row.role, merchant_id=row.merchant_id, key_id=row.id)


def cached_principal(engine, authorization: str | None) -> Principal | None:
    """The principal of an API key whose row is cached (no database: safe on the event loop),
    or None when the credential needs a lookup. Raises ApiError as `authenticate` would."""
    credential = _bearer(authorization)
    if not credential.startswith(API_KEY_PREFIX):
        return None
    row = cache.peek(_key_cache_key(engine, hash_key(credential)))
    return None if row is cache.MISSING else _principal_from_key(row)


def authenticate(session: Session, settings: Settings, authorization: str | None) -> Principal:
    credential = _bearer(authorization)
    if credential.startswith(API_KEY_PREFIX):
        key_hash = hash_key(credential)

        def load():
            return session.execute(
                select(ApiKey.id, ApiKey.merchant_id, ApiKey.agent_id, ApiKey.role,
                       ApiKey.revoked_at, ApiKey.expires_at,
                       Merchant.status.label("merchant_status"),
                       Agent.status.label("agent_status"))
                .outerjoin(Merchant, Merchant.id == ApiKey.merchant_id)
                .outerjoin(Agent, Agent.id == ApiKey.agent_id)
                .where(ApiKey.key_hash == key_hash)
            ).first()

        # Key rows are cached briefly (serving/cache.py): a revocation or a merchant's
        # suspension reaches other API processes within its TTL.
        return _principal_from_key(cache.cached(_key_cache_key(session.get_bind(), key_hash),
                                                load))
    try:
        claims = jwt.decode(credential, settings.signing_secret(), algorithms=[JWT_ALGORITHM],
                            options={"require": ["exp", "sub", "role"]})
    except jwt.PyJWTError as exc:
        raise ApiError(401, "invalid_token", f"the bearer token is not valid: {exc}") from None
    user = session.get(User, claims["sub"])
    if user is None or user.role != claims["role"]:
        raise ApiError(401, "invalid_token", "the token's user no longer exists or changed role")
    if user.status != "active":
        raise ApiError(401, "invalid_token", "the token's user is disabled")
    return Principal(role=user.role, user_id=user.id)
