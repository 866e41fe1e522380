"""Agent payment tokens: a merchant's user gives an AI agent a budget for 402-priced APIs.

The token is an opaque bearer secret `cpt_<random>.<mac>`: the MAC (HMAC-SHA256 under the
platform's signing secret) lets the gateway refuse a forged token without touching the
database; only the SHA-256 of the whole token is stored. A paid call reserves its price under a
row lock (spent_minor only moves while the row is locked), so concurrent calls can never spend
past the budget; a call whose upstream fails gives its reservation back.

The budget is the issuing merchant's money: a token payment moves value from the buyer's
merchant_payable to the seller's, inside the platform (serving/x402/booking.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving.errors import ApiError
from serving.schemas import iso_z
from serving.x402.protocol import InvalidPayment
from serving.x402.rules import path_matches
from serving.x402.schemas import TokenCreate, TokenOut
from warehouse.ids import new_id
from warehouse.models import AgentPaymentToken
from warehouse.money import MAX_ABS_MINOR

TOKEN_PREFIX = "cpt_"
DEFAULT_LIFETIME = timedelta(hours=24)


def _mac(secret: str, body: str) -> str:
    return hmac.new(secret.encode(), body.encode(), hashlib.sha256).hexdigest()[:32]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_signature(token: str, signing_secret: str) -> str:
    """The token's hash if its MAC is ours; a forged or mangled token is refused here."""
    body, _, mac = token.rpartition(".")
    if not body.startswith(TOKEN_PREFIX) or not hmac.compare_digest(mac, _mac(signing_secret,
                                                                              body)):
        raise InvalidPayment("token_invalid", "the payment token is not one we issued",
                             status=403)
    return token_hash(token)


def replayable_secret(signing_secret: str, *, scope: str, key: str, token_id: str) -> str:
    """The secret of a token issued under an Idempotency-Key, derived - never stored - so that
    a replay of the issue can show it again: HMAC of the platform's signing secret over whose
    key it is, the key and the token's id. Rebuilding it takes the signing secret and the
    idempotency record (kept 24 h), not the database alone, which holds only the hash."""
    material = f"payment-token-replay|{scope}|{key}|{token_id}".encode()
    digest = hmac.new(signing_secret.encode(), material, hashlib.sha256).digest()
    body_part = TOKEN_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    return f"{body_part}.{_mac(signing_secret, body_part)}"


def issue(session: Session, *, merchant_id: str, issued_by: str, body: TokenCreate,
          signing_secret: str, now: datetime,
          replay_scope: tuple[str, str] | None = None) -> tuple[AgentPaymentToken, str]:
    """A new token and its secret. With `replay_scope` (whose Idempotency-Key, the key) the
    secret is `replayable_secret`; without, 32 random bytes."""
    expires_at = body.expires_at or now + DEFAULT_LIFETIME
    if expires_at.tzinfo is None:
        raise ApiError(422, "invalid_timestamp", "expires_at needs a UTC offset or Z",
                       {"field": "expires_at"})
    if expires_at <= now:
        raise ApiError(422, "expires_in_past", "expires_at must be in the future",
                       {"field": "expires_at"})
    if body.per_call_cap_minor is not None and body.per_call_cap_minor > body.amount_minor:
        raise ApiError(422, "cap_exceeds_budget", "per_call_cap_minor exceeds the budget",
                       {"field": "per_call_cap_minor"})
    if body.amount_minor > MAX_ABS_MINOR:
        raise ApiError(422, "amount_out_of_range", "the budget is too large",
                       {"field": "amount_minor"})
    token_id = new_id("payment_token")
    if replay_scope is not None:
        token = replayable_secret(signing_secret, scope=replay_scope[0], key=replay_scope[1],
                                  token_id=token_id)
    else:
        body_part = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = f"{body_part}.{_mac(signing_secret, body_part)}"
    row = AgentPaymentToken(
        id=token_id, merchant_id=merchant_id, issued_by=issued_by,
        agent_name=body.agent_name, token_hash=token_hash(token), currency=body.currency,
        budget_minor=body.amount_minor, spent_minor=0, per_call_cap_minor=body.per_call_cap_minor,
        expires_at=expires_at.astimezone(UTC), allowed_merchants=body.allowed_merchants,
        allowed_paths=body.allowed_paths, status="active", calls=0, created_at=now,
        updated_at=now)
    session.add(row)
    return row, token


def reserve(session: Session, *, hashed: str, merchant_id: str, path: str, amount: int,
            currency: str, now: datetime) -> AgentPaymentToken:
    """Check scope, expiry, cap and budget, and take `amount` from the budget, atomically."""
    row = session.scalars(select(AgentPaymentToken).where(AgentPaymentToken.token_hash == hashed)
                          .with_for_update()).first()
    if row is None:
        raise InvalidPayment("token_invalid", "the payment token is unknown", status=403)
    if row.status != "active":
        raise InvalidPayment("token_revoked", f"payment token {row.id} was revoked", status=403)
    if row.expires_at <= now:
        raise InvalidPayment("token_expired", f"payment token {row.id} expired at "
                             f"{iso_z(row.expires_at)}")
    if row.allowed_merchants is not None and merchant_id not in row.allowed_merchants:
        raise InvalidPayment("token_scope_merchant",
                             f"payment token {row.id} may not pay merchant {merchant_id}",
                             status=403)
    if row.allowed_paths is not None and not any(path_matches(pattern, path)
                                                 for pattern in row.allowed_paths):
        raise InvalidPayment("token_scope_path", f"payment token {row.id} may not pay for {path}",
                             status=403)
    if row.currency != currency:
        raise InvalidPayment("token_currency_mismatch",
                             f"the token's budget is in {row.currency}; this costs {currency}")
    if row.per_call_cap_minor is not None and amount > row.per_call_cap_minor:
        raise InvalidPayment("token_per_call_cap_exceeded",
                             f"{amount} exceeds the token's per-call cap of "
                             f"{row.per_call_cap_minor}")
    remaining = row.budget_minor - row.spent_minor
    if amount > remaining:
        raise InvalidPayment("token_budget_exhausted",
                             f"{amount} exceeds the {remaining} left on the token")
    row.spent_minor += amount
    row.calls += 1
    row.updated_at = now
    return row


def release(session: Session, token_id: str, amount: int, now: datetime) -> None:
    """Give back a reservation whose call was not delivered."""
    row = session.scalars(select(AgentPaymentToken).where(AgentPaymentToken.id == token_id)
                          .with_for_update()).one()
    row.spent_minor -= amount
    row.calls -= 1
    row.updated_at = now


def revoke(session: Session, row: AgentPaymentToken, now: datetime) -> AgentPaymentToken:
    if row.status != "revoked":
        row.status, row.revoked_at, row.updated_at = "revoked", now, now
    return row


def token_out(row: AgentPaymentToken) -> dict:
    return TokenOut(
        id=row.id, merchant_id=row.merchant_id, agent_name=row.agent_name,
        amount_minor=row.budget_minor, currency=row.currency, spent_minor=row.spent_minor,
        remaining_minor=row.budget_minor - row.spent_minor,
        per_call_cap_minor=row.per_call_cap_minor, calls=row.calls, expires_at=row.expires_at,
        allowed_merchants=row.allowed_merchants, allowed_paths=row.allowed_paths,
        status=row.status, created_at=row.created_at).model_dump(mode="json")
