"""Merchant administration: settings, status, KYC tier, callback URL, webhook secret rotation."""

from __future__ import annotations

import secrets
from typing import Any

from sqlalchemy.orm import Session

from serving.errors import ApiError
from serving.services import audit
from warehouse.models import Merchant

UPDATABLE = ("status", "kyc_tier", "settlement_currency", "settlement_cycle",
             "settlement_delay_days", "callback_url")
WEBHOOK_SECRET_PREFIX = "whsec_"


def update_merchant(session: Session, *, merchant: Merchant, changes: dict[str, Any],
                    actor: str) -> dict[str, dict]:
    """Apply the changes; returns {field: {"from", "to"}} for what actually changed."""
    if merchant.status == "closed" and changes:
        raise ApiError(409, "merchant_closed", f"merchant {merchant.id} is closed; it cannot change")
    diff = {}
    for field, value in changes.items():
        if field not in UPDATABLE:
            raise ValueError(field)
        old = getattr(merchant, field)
        if old != value:
            setattr(merchant, field, value)
            diff[field] = {"from": old, "to": value}
    if diff:
        audit.record(session, actor=actor, action="merchant.updated", resource_type="merchant",
                     resource_id=merchant.id, details={"changes": diff})
    return diff


def rotate_webhook_secret(session: Session, *, merchant: Merchant, actor: str) -> str:
    """A new signing secret for the merchant's webhooks; the old one stops at once."""
    if merchant.status == "closed":
        raise ApiError(409, "merchant_closed", f"merchant {merchant.id} is closed")
    secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
    had_one = merchant.webhook_secret is not None
    merchant.webhook_secret = secret
    audit.record(session, actor=actor, action="merchant.webhook_secret_rotated",
                 resource_type="merchant", resource_id=merchant.id,
                 details={"replaced_existing": had_one})  # never the secret itself
    return secret
