"""Operator actions: bootstrap the platform, register merchants (used by the CLI and the API)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from serving import channels
from serving.auth import issue_api_key
from serving.errors import ApiError
from serving.schemas import MerchantCreate, PriceIn
from serving.services import audit
from serving.services.users import EMAIL
from warehouse.ids import new_id
from warehouse.models import Agent, AgentParent, Channel, ChannelCurrency, Merchant, Price, User

# The MDR a merchant gets when none is given: 2.90 % in every currency the simulator uses.
DEFAULT_MERCHANT_RATE_BPS = 290
DEFAULT_CURRENCIES = ("USD", "EUR", "CNY", "TWD", "JPY", "HKD", "GBP", "USDC", "USDT", "ETH", "BTC")
PRICE_EPOCH = datetime(2020, 1, 1, tzinfo=UTC)  # prices set at bootstrap apply to all history


def ensure_default_channels(session: Session) -> list[Channel]:
    """Create the simulated channels, the currencies they take and their cost prices if
    missing; idempotent. Each gets a random callback secret (its callbacks are signed)."""
    created = []
    for i, (channel_id, channel_type, cost_bps, codes) in enumerate(channels.DEFAULT_CHANNELS):
        if session.get(Channel, channel_id) is not None:
            continue
        channel = Channel(id=channel_id, name=channel_id.removeprefix("ch_"),
                          channel_type=channel_type, settlement_window_days=1,
                          callback_secret="chsec_" + secrets.token_urlsafe(24), priority=10 * i)
        session.add(channel)
        session.flush()
        for code in codes:
            session.add(ChannelCurrency(channel_id=channel_id, currency=code, min_amount_minor=1))
            session.add(Price(id=new_id("price"), subject_type="channel", subject_id=channel_id,
                              currency=code, rate_bps=cost_bps, fixed_minor=0,
                              valid_from=PRICE_EPOCH))
        created.append(channel)
    return created


def bootstrap_admin(session: Session, email: str = "admin@clearhouse.local", *,
                    actor: str | None = None) -> User:
    """The active platform admin with this e-mail (compared as POST /users stores it: trimmed,
    lower case), created if there is none; with `actor`, the creation is audit-logged. A user
    with that e-mail who is not an active platform_admin is refused (409): bootstrapping neither
    promotes a finance user nor revives a disabled admin."""
    email = email.strip().lower()
    if len(email) > 200 or not EMAIL.match(email):
        raise ApiError(422, "invalid_email", f"{email!r} is not an e-mail address",
                       {"field": "email"})
    ensure_default_channels(session)
    user = session.scalars(select(User).where(func.lower(User.email) == email)).first()
    if user is None:
        user = User(id=new_id("user"), email=email, role="platform_admin", status="active")
        session.add(user)
        if actor is not None:
            audit.record(session, actor=actor, action="user.created", resource_type="user",
                         resource_id=user.id, details={"email": email, "role": user.role})
    elif user.role != "platform_admin" or user.status != "active":
        raise ApiError(409, "not_an_active_admin",
                       f"the user {email!r} is {user.role} ({user.status}), not an active "
                       "platform_admin; bootstrap another e-mail (--email)", {"field": "email"})
    return user


def audit_merchant_created(session: Session, merchant: Merchant, *, actor: str) -> None:
    """The audit entry of a merchant's registration (the API's POST /merchants and the CLI)."""
    audit.record(session, actor=actor, action="merchant.created", resource_type="merchant",
                 resource_id=merchant.id,
                 details={"name": merchant.name, "agent_id": merchant.agent_id,
                          "settlement_currency": merchant.settlement_currency,
                          "kyc_tier": merchant.kyc_tier})


def create_agent(session: Session, *, name: str, parent_id: str | None = None,
                 valid_from: datetime = PRICE_EPOCH, statement_cycle: str = "monthly") -> Agent:
    if parent_id is not None and session.get(Agent, parent_id) is None:
        raise ApiError(422, "unknown_agent", f"no agent {parent_id!r}", {"field": "parent_id"})
    agent = Agent(id=new_id("agent"), name=name, statement_cycle=statement_cycle)
    session.add(agent)
    session.flush()
    session.add(AgentParent(agent_id=agent.id, parent_id=parent_id, valid_from=valid_from))
    return agent


def create_merchant(session: Session, body: MerchantCreate,
                    valid_from: datetime = PRICE_EPOCH) -> tuple[Merchant, str]:
    """Register a merchant with its MDR per currency; returns it and its first API key."""
    if body.agent_id is not None and session.get(Agent, body.agent_id) is None:
        raise ApiError(422, "unknown_agent", f"no agent {body.agent_id!r}", {"field": "agent_id"})
    merchant = Merchant(id=new_id("merchant"), name=body.name, agent_id=body.agent_id,
                        settlement_currency=body.settlement_currency,
                        settlement_cycle=body.settlement_cycle,
                        settlement_delay_days=body.settlement_delay_days,
                        kyc_tier=body.kyc_tier)
    session.add(merchant)
    session.flush()
    # the platform's default price has no fixed part on purpose: an explicit 0, not a missing one
    pricing = body.pricing or [PriceIn(currency=c, rate_bps=DEFAULT_MERCHANT_RATE_BPS,
                                       fixed_minor=0) for c in DEFAULT_CURRENCIES]
    if len({p.currency for p in pricing}) != len(pricing):
        raise ApiError(422, "duplicate_price", "one price per currency", {"field": "pricing"})
    for price in pricing:
        session.add(Price(id=new_id("price"), subject_type="merchant", subject_id=merchant.id,
                          currency=price.currency, rate_bps=price.rate_bps,
                          fixed_minor=price.fixed_minor, valid_from=valid_from))
    api_key = issue_api_key(session, merchant.id)
    return merchant, api_key
