"""SQLAlchemy 2 models of the API's database (the OLTP store). Migrations live in migrations/.

Money columns use MinorUnits: NUMERIC(38,0) on Postgres; on SQLite a decimal string, because
SQLite's NUMERIC affinity would turn amounts above 2^63 into lossy REALs (money.md point 3).
Every row that can change carries updated_at, which the ledger extract uses as its cursor.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class MinorUnits(TypeDecorator):
    """An exact integer amount of minor units, up to 38 digits, on every backend."""

    impl = Numeric(38, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(40))
        return dialect.type_descriptor(Numeric(38, 0, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"amounts are int minor units, got {type(value).__name__}")
        return str(value) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        return None if value is None else int(value)


class UTCDateTime(TypeDecorator):
    """Timestamps stored in UTC; naive values read back from SQLite are marked UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)

    def __init__(self, **kwargs):
        """Like SQLAlchemy's default constructor, but column values go straight into the new
        instance's dict instead of through the instrumented attributes: for an object that is
        new, nothing has history to record, and the flush inserts what the dict holds. (A
        constructor is on every write path - a paid x402 call builds a dozen rows - and the
        attribute events were a third of their cost.) Anything else that is not a column (no
        model has relationships or validators) takes the default's way: setattr, and TypeError
        for a name the class does not have."""
        columns = _column_keys(type(self))
        values = self.__dict__
        for key, value in kwargs.items():
            if key in columns:
                values[key] = value
            elif hasattr(type(self), key):
                setattr(self, key, value)
            else:
                raise TypeError(f"{key!r} is an invalid keyword argument for "
                                f"{type(self).__name__}")


@functools.cache
def _column_keys(cls) -> frozenset[str]:
    return frozenset(attr.key for attr in sa_inspect(cls).column_attrs)


class Timestamped:
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow,
                                                 index=True)


class Agent(Timestamped, Base):
    __tablename__ = "agents"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active")
    # How often its commission statement is cut (settlement.md: "per cycle").
    statement_cycle: Mapped[str] = mapped_column(String(10), default="monthly",
                                                 server_default="monthly")
    __table_args__ = (
        CheckConstraint("statement_cycle in ('daily','weekly','monthly')", name="cycle"),
    )


class AgentParent(Timestamped, Base):
    """Effective-dated parent link: valid_from inclusive, valid_to exclusive (NULL = open)."""

    __tablename__ = "agent_parents"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"))  # NULL: the platform
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)


class Merchant(Timestamped, Base):
    __tablename__ = "merchants"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(20), default="active")
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"))
    settlement_currency: Mapped[str] = mapped_column(String(8), default="USD")
    settlement_cycle: Mapped[str] = mapped_column(String(10), default="daily")
    settlement_delay_days: Mapped[int] = mapped_column(Integer, default=1)
    kyc_tier: Mapped[int] = mapped_column(Integer, default=1)  # 0..3, sets daily risk limits
    callback_url: Mapped[str | None] = mapped_column(String(500))  # webhook endpoint
    # Kept in clear because the platform signs with it (like Stripe's whsec_); never logged.
    webhook_secret: Mapped[str | None] = mapped_column(String(100))
    __table_args__ = (
        CheckConstraint("settlement_cycle in ('daily','weekly','monthly')", name="cycle"),
        CheckConstraint("kyc_tier between 0 and 3", name="kyc_tier"),
    )


class User(Timestamped, Base):
    """An operator (platform_admin, finance) who authenticates with a JWT."""

    __tablename__ = "users"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    email: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20), default="active")


class ApiKey(Timestamped, Base):
    """A merchant's or an agent's API key. Only its SHA-256 is stored; the key is shown once.

    Exactly one of merchant_id / agent_id is set. Rotation issues a new key and revokes the old
    one (optionally after a grace period, via expires_at).
    """

    __tablename__ = "api_keys"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str | None] = mapped_column(ForeignKey("merchants.id"), index=True)
    agent_id: Mapped[str | None] = mapped_column(ForeignKey("agents.id"), index=True)
    role: Mapped[str] = mapped_column(String(30), default="merchant_admin")
    name: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    key_prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        CheckConstraint("(merchant_id IS NULL) <> (agent_id IS NULL)", name="one_owner"),
    )


class Channel(Timestamped, Base):
    __tablename__ = "channels"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    channel_type: Mapped[str] = mapped_column(String(30), index=True)  # card, wechat_pay, ...
    status: Mapped[str] = mapped_column(String(20), default="active")
    settlement_window_days: Mapped[int] = mapped_column(Integer, default=1)
    # Shared with the channel: its callbacks are signed with it (Clearhouse-Signature).
    callback_secret: Mapped[str] = mapped_column(String(100), default="")
    priority: Mapped[int] = mapped_column(Integer, default=100)  # lower is preferred on a tie


class ChannelCurrency(Timestamped, Base):
    """A currency a channel takes, with its per-payment bounds and its daily volume limit."""

    __tablename__ = "channel_currencies"
    channel_id: Mapped[str] = mapped_column(ForeignKey("channels.id"), primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    min_amount_minor: Mapped[int] = mapped_column(MinorUnits, default=1)
    max_amount_minor: Mapped[int | None] = mapped_column(MinorUnits)
    daily_limit_minor: Mapped[int | None] = mapped_column(MinorUnits)


class CommissionModel(Timestamped, Base):
    """An agent's commission model per currency (commission.md), effective-dated.

    markup: earns fee(child price) - fee(own cost price; see prices with subject 'agent');
    percentage: pct_bps of the amount, paid by the platform; fixed: fixed_minor per transaction.
    """

    __tablename__ = "commission_models"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    agent_id: Mapped[str] = mapped_column(ForeignKey("agents.id"), index=True)
    currency: Mapped[str] = mapped_column(String(8))
    model: Mapped[str] = mapped_column(String(20))
    pct_bps: Mapped[int | None] = mapped_column(Integer)
    fixed_minor: Mapped[int | None] = mapped_column(MinorUnits)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        CheckConstraint("model in ('markup','percentage','fixed')", name="model"),
    )


class Price(Timestamped, Base):
    """A price (rate_bps + fixed_minor in one currency), effective-dated, per commission.md.

    subject_type 'merchant': the merchant's MDR; 'agent': an agent's cost price set by its
    parent; 'channel': what the channel charges the platform.
    """

    __tablename__ = "prices"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    subject_type: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[str] = mapped_column(String(40))
    currency: Mapped[str] = mapped_column(String(8))
    rate_bps: Mapped[int] = mapped_column(Integer)
    # NULL: no fixed amount was given for this currency; the pipeline counts it as 0 and raises a
    # data-quality warning (commission.md "missing fixed for that currency = 0, and a warning")
    fixed_minor: Mapped[int | None] = mapped_column(MinorUnits)
    valid_from: Mapped[datetime] = mapped_column(UTCDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        Index("ix_prices_subject", "subject_type", "subject_id", "currency", "valid_from"),
        CheckConstraint("subject_type in ('merchant','agent','channel')", name="subject_type"),
        CheckConstraint("rate_bps >= 0", name="rate_bps"),
    )


class Payment(Timestamped, Base):
    __tablename__ = "payments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    merchant_reference: Mapped[str] = mapped_column(String(200))
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(30))
    payment_method_type: Mapped[str] = mapped_column(String(30))
    channel_id: Mapped[str | None] = mapped_column(ForeignKey("channels.id"))
    channel_reference: Mapped[str | None] = mapped_column(String(100))
    failure_code: Mapped[str | None] = mapped_column(String(60))
    risk_decision: Mapped[str] = mapped_column(String(20), default="approve")
    risk_score: Mapped[int | None] = mapped_column(Integer)
    risk_reasons: Mapped[list | None] = mapped_column(JSON)
    routing: Mapped[dict | None] = mapped_column(JSON)  # the decision and its reasons
    customer_id: Mapped[str | None] = mapped_column(String(100))
    customer: Mapped[dict | None] = mapped_column(JSON)
    # Risk keys, indexed for velocity rules (the card itself is never stored: a fingerprint).
    customer_ip: Mapped[str | None] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(100))
    card_fingerprint: Mapped[str | None] = mapped_column(String(64))
    refunded_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    captured_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When it failed (business time; set by the state machine): the fraud features count a
    # decline only from then on (a pending payment that fails later was no decline before).
    failed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        Index("ix_payments_merchant_created", "merchant_id", "id"),
        # The KYC daily-volume rule reads a merchant's payments of the day.
        Index("ix_payments_merchant_created_at", "merchant_id", "created_at"),
        Index("ix_payments_customer_created", "customer_id", "created_at"),
        Index("ix_payments_ip_created", "customer_ip", "created_at"),
        Index("ix_payments_device_created", "device_id", "created_at"),
        Index("ix_payments_card_created", "card_fingerprint", "created_at"),
        Index("ix_payments_channel_captured", "channel_id", "captured_at"),
        Index("ix_payments_channel_reference", "channel_reference"),
        CheckConstraint("amount_minor > 0", name="amount_positive"),
    )


class MerchantDailyVolume(Base):
    """A merchant's accepted volume per UTC day and currency, spread over 8 shards, kept by the
    Postgres trigger of migration 0006 for the KYC daily limit (serving/risk.py). Read through
    payment_risk_facts(), never written by the ORM. On SQLite the table exists (one schema on
    both engines) but stays empty: the risk check sums the day's payments there."""

    __tablename__ = "merchant_daily_volume"
    merchant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    currency: Mapped[str] = mapped_column(String(8), primary_key=True)
    shard: Mapped[int] = mapped_column(SmallInteger, primary_key=True, autoincrement=False)
    amount_minor: Mapped[int] = mapped_column(MinorUnits)


class PaymentEvent(Base):
    """Every state transition of a payment (the state machine's trail)."""

    __tablename__ = "payment_events"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    payment_id: Mapped[str] = mapped_column(String(40), index=True)
    from_status: Mapped[str | None] = mapped_column(String(30))
    to_status: Mapped[str] = mapped_column(String(30))
    reason: Mapped[str | None] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Refund(Timestamped, Base):
    __tablename__ = "refunds"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(String(200))
    succeeded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The channel's id of the refund (reconciliation matches the PSP's refund line on it).
    channel_reference: Mapped[str | None] = mapped_column(String(100), index=True)
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)


class LedgerEntry(Base):
    """One leg of a double-entry transaction; debits positive, credits negative.

    The legs of one transaction_id sum to zero per currency: checked by the writer, and on
    Postgres by a deferred constraint trigger (migration 0001), since loaders write without the ORM.
    """

    __tablename__ = "ledger_entries"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    transaction_id: Mapped[str] = mapped_column(String(40), index=True)
    kind: Mapped[str] = mapped_column(String(30))  # capture, refund
    payment_id: Mapped[str | None] = mapped_column(String(40))
    refund_id: Mapped[str | None] = mapped_column(String(40))
    merchant_id: Mapped[str] = mapped_column(String(40))
    account: Mapped[str] = mapped_column(String(120))
    currency: Mapped[str] = mapped_column(String(8))
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    # effective_at: the business time of the posting (the capture or refund time);
    # created_at: when the row was written (wall clock), the extract's cursor.
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class IdempotencyKey(Base):
    """First response to a (merchant, key); replayed for the same body, 409 for another."""

    __tablename__ = "idempotency_keys"
    merchant_id: Mapped[str] = mapped_column(String(40), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_path: Mapped[str] = mapped_column(String(200))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class OutboxEvent(Base):
    """Events written in the same transaction as the change they announce (transactional outbox)."""

    __tablename__ = "outbox_events"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(60))
    aggregate_id: Mapped[str] = mapped_column(String(40), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookDelivery(Base):
    """One outbox event's delivery to one merchant endpoint, retried with backoff until it is
    delivered or dead. Survives restarts: the dispatcher picks up whatever is due."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id"), index=True)
    merchant_id: Mapped[str] = mapped_column(String(40), index=True)
    url: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="pending")  # delivered, dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class SimChannelOperation(Base):
    """The simulated channels' own memory: an operation they will confirm later by a signed
    callback (the pending-then-callback test instruments). A real PSP keeps this on its side."""

    __tablename__ = "sim_channel_operations"
    channel_reference: Mapped[str] = mapped_column(String(100), primary_key=True)
    channel_id: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(20))  # succeeded, failed
    failure_code: Mapped[str | None] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)


class AuditLogEntry(Base):
    """Append-only, hash-chained record of every administrative change.

    hash = sha256(prev_hash + canonical JSON of the entry); `clearhouse audit verify` walks the
    chain, so an edited, deleted or reordered entry is detected.
    """

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(60))
    resource_type: Mapped[str] = mapped_column(String(40))
    resource_id: Mapped[str] = mapped_column(String(60))
    details: Mapped[str] = mapped_column(Text)  # canonical JSON
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class Wallet(Timestamped, Base):
    """A customer's stored-value balance at a merchant: principal (paid in) and bonus (given)."""

    __tablename__ = "wallets"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"))
    customer_id: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(8))
    principal_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    bonus_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    __table_args__ = (
        UniqueConstraint("merchant_id", "customer_id", "currency"),
    )


class WalletTransaction(Base):
    """Every movement of a wallet, split into its principal and bonus parts (signed)."""

    __tablename__ = "wallet_transactions"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    wallet_id: Mapped[str] = mapped_column(ForeignKey("wallets.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # topup, spend, spend_refund, topup_refund
    principal_minor: Mapped[int] = mapped_column(MinorUnits)
    bonus_minor: Mapped[int] = mapped_column(MinorUnits)
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    refund_id: Mapped[str | None] = mapped_column(String(40))
    topup_id: Mapped[str | None] = mapped_column(String(40), index=True)
    # topup_refund only: bonus that was due but already spent, kept from the cash refund
    # (principal_minor = -r, bonus_minor = -bonus clawed, cash refunded = r - shortfall).
    shortfall_minor: Mapped[int | None] = mapped_column(MinorUnits)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PendingTopup(Base):
    """A top-up whose payment did not succeed at once (the channel confirms later, or the payment
    was held for review): what to credit when it does. `outcome` is set when the payment ends:
    credited (the wallet transaction is `topup` with the same payment_id) or void."""

    __tablename__ = "pending_topups"
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(40))
    customer_id: Mapped[str] = mapped_column(String(100))
    currency: Mapped[str] = mapped_column(String(8))
    principal_minor: Mapped[int] = mapped_column(MinorUnits)
    bonus_minor: Mapped[int] = mapped_column(MinorUnits)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    outcome: Mapped[str | None] = mapped_column(String(10))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        CheckConstraint("outcome is null or outcome in ('credited','void')", name="outcome"),
    )


class Withdrawal(Timestamped, Base):
    """A payout request by a merchant or an agent against its available balance."""

    __tablename__ = "withdrawals"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner_type: Mapped[str] = mapped_column(String(10))  # merchant, agent
    owner_id: Mapped[str] = mapped_column(String(40), index=True)
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(20))  # requested, approved, rejected, paid
    destination: Mapped[str | None] = mapped_column(String(200))
    decided_by: Mapped[str | None] = mapped_column(String(60))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # approved or rejected
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # marked paid: the payout's date
    reason: Mapped[str | None] = mapped_column(String(200))
    __table_args__ = (CheckConstraint("amount_minor > 0", name="amount_positive"),)


class SettlementAdjustment(Timestamped, Base):
    """A manual statement item (settlement.md: "adjustments (manual, with reason and who)"):
    positive credits the merchant, negative debits it, in its settlement currency."""

    __tablename__ = "settlement_adjustments"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    amount_minor: Mapped[int] = mapped_column(MinorUnits)
    currency: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(String(500))
    created_by: Mapped[str] = mapped_column(String(60))  # the principal's actor string
    effective_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # statement time
    __table_args__ = (
        CheckConstraint("amount_minor <> 0", name="amount_nonzero"),
        CheckConstraint("length(trim(reason)) > 0", name="reason_not_empty"),
    )


class RiskListEntry(Timestamped, Base):
    """A block- or allow-list entry (customer, card fingerprint, ip, device, email)."""

    __tablename__ = "risk_list_entries"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    list_type: Mapped[str] = mapped_column(String(10))  # block, allow
    kind: Mapped[str] = mapped_column(String(20))
    value: Mapped[str] = mapped_column(String(200))
    merchant_id: Mapped[str | None] = mapped_column(String(40))  # NULL: platform-wide
    reason: Mapped[str | None] = mapped_column(String(200))
    __table_args__ = (Index("ix_risk_list_lookup", "kind", "value"),)


# --- x402 gateway, agent payment tokens and the simulated chain (serving/x402/) ----------------


class X402Gateway(Timestamped, Base):
    """A merchant's x402 gateway: the API it sells (upstream) and its abuse limits."""

    __tablename__ = "x402_gateways"
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), primary_key=True)
    upstream_url: Mapped[str] = mapped_column(String(500))
    status: Mapped[str] = mapped_column(String(20), default="active")
    requests_per_second: Mapped[int] = mapped_column(Integer, default=1000)  # all callers
    payer_requests_per_minute: Mapped[int] = mapped_column(Integer, default=600)  # each payer


class X402PricingRule(Timestamped, Base):
    """A priced path of a merchant's API: a glob over the path, a price in atomic units of an
    asset on a network, paid to pay_to. The most specific matching rule wins (priority, then the
    longest pattern)."""

    __tablename__ = "x402_pricing_rules"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)
    path_pattern: Mapped[str] = mapped_column(String(300))
    http_method: Mapped[str] = mapped_column(String(10), default="*")
    amount_atomic: Mapped[int] = mapped_column(MinorUnits)
    asset: Mapped[str] = mapped_column(String(10), default="USDC")
    network: Mapped[str] = mapped_column(String(40))
    pay_to: Mapped[str] = mapped_column(String(42))
    billing_mode: Mapped[str] = mapped_column(String(20), default="per_request")
    description: Mapped[str | None] = mapped_column(String(300))
    mime_type: Mapped[str | None] = mapped_column(String(100))
    max_timeout_seconds: Mapped[int] = mapped_column(Integer, default=60)
    protocol_versions: Mapped[str] = mapped_column(String(10), default="2,1")
    priority: Mapped[int] = mapped_column(Integer, default=100)  # lower wins
    status: Mapped[str] = mapped_column(String(20), default="active")
    __table_args__ = (
        CheckConstraint("amount_atomic > 0", name="amount_positive"),
        CheckConstraint("billing_mode in ('per_request')", name="billing_mode"),
    )


class X402Usage(Timestamped, Base):
    """One paid call: claimed before the upstream is called, settled after it answered < 400.

    (payer, nonce) is unique: an EIP-3009 authorization is used once, ever, by any process,
    whatever happened to its first use (token payments have no nonce).
    status: verified -> settled | upstream_failed | settle_failed | abandoned (left verified,
    written off by booking.write_off_abandoned).
    """

    __tablename__ = "x402_usage"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(String(40))
    rule_id: Mapped[str] = mapped_column(String(40))
    http_method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(String(500))
    scheme: Mapped[str] = mapped_column(String(20))  # exact, token
    x402_version: Mapped[int] = mapped_column(Integer)
    network: Mapped[str] = mapped_column(String(40))
    asset: Mapped[str] = mapped_column(String(10))
    amount_atomic: Mapped[int] = mapped_column(MinorUnits)
    pay_to: Mapped[str] = mapped_column(String(42))
    payer: Mapped[str] = mapped_column(String(60))  # 0x address, or the token's id
    nonce: Mapped[str | None] = mapped_column(String(66))
    token_id: Mapped[str | None] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(20))
    upstream_status: Mapped[int | None] = mapped_column(Integer)
    tx_hash: Mapped[str | None] = mapped_column(String(66), index=True)
    payment_id: Mapped[str | None] = mapped_column(String(40))
    error_reason: Mapped[str | None] = mapped_column(String(100))
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    __table_args__ = (
        UniqueConstraint("payer", "nonce", name="uq_x402_usage_payer_nonce"),
        Index("ix_x402_usage_merchant_created", "merchant_id", "created_at"),
        # The worker's write-off of calls left `verified` (booking.write_off_abandoned) reads
        # only these: a partial index stays as small as the calls in flight.
        Index("ix_x402_usage_verified_created", "created_at",
              postgresql_where=text("status = 'verified'"),
              sqlite_where=text("status = 'verified'")),
    )


class AgentPaymentToken(Timestamped, Base):
    """A budget a merchant's user grants an AI agent for 402-priced APIs; the bearer secret is
    shown once and only its SHA-256 is kept. spent_minor only grows, under a row lock."""

    __tablename__ = "agent_payment_tokens"
    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    merchant_id: Mapped[str] = mapped_column(ForeignKey("merchants.id"), index=True)  # pays
    issued_by: Mapped[str] = mapped_column(String(100))
    agent_name: Mapped[str] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    currency: Mapped[str] = mapped_column(String(8))
    budget_minor: Mapped[int] = mapped_column(MinorUnits)
    spent_minor: Mapped[int] = mapped_column(MinorUnits, default=0)
    per_call_cap_minor: Mapped[int | None] = mapped_column(MinorUnits)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    allowed_merchants: Mapped[list | None] = mapped_column(JSON)  # None: any merchant
    allowed_paths: Mapped[list | None] = mapped_column(JSON)  # globs; None: any path
    status: Mapped[str] = mapped_column(String(20), default="active")  # active, revoked
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    __table_args__ = (
        CheckConstraint("budget_minor > 0", name="budget_positive"),
    )


class SimChainAccount(Base):
    """A sender on the simulated chain: what it has sent (live transfers out). Its balance is
    what it received (live Transfer logs to it, mints included) minus `sent`, so a transfer
    locks only its sender's row - a busy recipient is never a hot row."""

    __tablename__ = "sim_chain_accounts"
    network: Mapped[str] = mapped_column(String(40), primary_key=True)
    asset: Mapped[str] = mapped_column(String(42), primary_key=True)  # contract, lowercase
    address: Mapped[str] = mapped_column(String(42), primary_key=True)  # lowercase
    sent: Mapped[int] = mapped_column(MinorUnits, default=0)


class SimChainLog(Base):
    """An ERC-20 Transfer the simulated chain mined. (network, asset, from, nonce) is the
    contract's authorizationState: an EIP-3009 authorization executes once. A reorg marks the
    log removed and reverses its balances."""

    __tablename__ = "sim_chain_logs"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                    autoincrement=True)
    network: Mapped[str] = mapped_column(String(40))
    asset: Mapped[str] = mapped_column(String(42))
    block_number: Mapped[int] = mapped_column(BigInteger)
    block_timestamp: Mapped[datetime] = mapped_column(UTCDateTime)
    tx_hash: Mapped[str] = mapped_column(String(66), unique=True)
    # Not used: the export gives each log its id as logIndex (clearhouse/sim_chain.py).
    log_index: Mapped[int] = mapped_column(Integer, default=0)
    from_address: Mapped[str] = mapped_column(String(42))
    to_address: Mapped[str] = mapped_column(String(42))
    value: Mapped[int] = mapped_column(MinorUnits)
    nonce: Mapped[str | None] = mapped_column(String(66))  # the authorization's; None for mints
    removed: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    __table_args__ = (
        UniqueConstraint("network", "asset", "from_address", "nonce",
                         name="uq_sim_chain_logs_authorization"),
        Index("ix_sim_chain_logs_network_block", "network", "block_number"),
        # A sender's balance sums what it received (serving/x402/chain.py); on Postgres this
        # index answers that sum alone (covering, live logs only), so the planner cannot pick
        # the authorization index and scan every log of the asset (migration 0015).
        Index("ix_sim_chain_logs_recipient", "network", "asset", "to_address",
              postgresql_include=["value"], postgresql_where=text("NOT removed")),
    )


__all__ = [
    "Agent", "AgentParent", "AgentPaymentToken", "ApiKey", "AuditLogEntry", "Base", "Channel", "ChannelCurrency",
    "CommissionModel", "IdempotencyKey", "LedgerEntry", "Merchant", "MinorUnits", "OutboxEvent",
    "Payment", "PaymentEvent", "Price", "Refund", "RiskListEntry", "SimChainAccount", "SimChainLog", "SimChannelOperation", "User",
    "Wallet",
    "WalletTransaction", "WebhookDelivery", "Withdrawal", "X402Gateway", "X402PricingRule",
    "X402Usage", "utcnow",
]
