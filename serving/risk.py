"""The live risk check, run before the channel call: approve, review or reject, with reasons.

Rules, in order:
- allow list (customer, email, card fingerprint, ip, device): approve, skipping the soft rules
  (the KYC limits still apply: they are the merchant's contract, not a fraud guess);
- block list: reject;
- KYC tier limits in the merchant's settlement currency: daily 0 / 1,000 / 10,000 / 50,000 and
  single payment 0 / 500 / 5,000 / 20,000 (tiers 0-3), over: reject;
- velocity in the last hour per customer, card, device (review above 10, reject above 30) and
  per IP (review above 50, reject above 150);
- geo anomaly: the customer's previous payment more than 500 km away less than an hour ago:
  review;
- the ML hook (`set_score_hook`; serving/fraud.py installs the payments champion): its score
  (0-99) reviews at >= 65 and rejects at >= 75 by default (CLEARHOUSE_ML_REVIEW_SCORE,
  CLEARHOUSE_ML_BLOCK_SCORE).

Risk limits compare a payment in the settlement currency exactly (minor units over the
currency's exponent: JPY 0, KWD 3), and amounts in other currencies with indicative rates
(INDICATIVE_USD below): a limit check is a risk decision, not money movement, so no FX rate id is
kept. A currency without an indicative rate cannot be checked against the limits, so it is
rejected (`kyc_limit_unconvertible_currency`). Money itself is never converted here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, cast

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from warehouse.models import Payment, RiskListEntry
from warehouse.money import exponent

KYC_DAILY_LIMIT_MAJOR = {0: 0, 1: 1_000, 2: 10_000, 3: 50_000}
KYC_SINGLE_LIMIT_MAJOR = {0: 0, 1: 500, 2: 5_000, 3: 20_000}
# The reasons a KYC limit (not a fraud signal) gives: kyc_tier_0_..., kyc_limit_unconvertible_...,
# single_payment_limit_kyc_N, daily_limit_kyc_N.
KYC_LIMIT_REASONS = ("kyc_", "single_payment_limit_kyc_", "daily_limit_kyc_")
VELOCITY = {"customer_id": (10, 30), "card_fingerprint": (10, 30), "device_id": (10, 30),
            "customer_ip": (50, 150)}
GEO_KM = 500
REVIEW_SCORE, REJECT_SCORE = 65, 75
# USD per one major unit; indicative only (see the module docstring).
INDICATIVE_USD = {"USD": "1", "USDC": "1", "USDT": "1", "EUR": "1.08", "GBP": "1.27",
                  "CNY": "0.14", "HKD": "0.128", "TWD": "0.031", "JPY": "0.0067", "KRW": "0.00073",
                  "SGD": "0.74", "ETH": "3000", "BTC": "60000", "KWD": "3.25", "BHD": "2.65",
                  "OMR": "2.60", "JOD": "1.41", "CHF": "1.13", "AUD": "0.66", "CAD": "0.73"}
# Country centroids (lat, lon) for the geo rule when a customer sends a country code.
CENTROIDS = {"US": (39.8, -98.6), "DE": (51.2, 10.4), "FR": (46.6, 2.2), "GB": (54.0, -2.0),
             "CN": (35.9, 104.2), "TW": (23.7, 121.0), "JP": (36.2, 138.3), "SG": (1.35, 103.8),
             "HK": (22.3, 114.2), "KR": (36.5, 127.9), "NL": (52.1, 5.3), "IT": (41.9, 12.6),
             "ES": (40.5, -3.7), "CA": (56.1, -106.3), "AU": (-25.3, 133.8), "BR": (-14.2, -51.9),
             "IN": (20.6, 79.0), "NG": (9.1, 8.7), "RU": (61.5, 105.3), "MX": (23.6, -102.6)}
CAPTURING = ("success", "partially_refunded", "refunded", "pending_callback", "refunding")


class MerchantFacts(Protocol):
    """What the risk check reads of a merchant: the ORM row or its cached settings."""

    @property
    def id(self) -> str: ...

    @property
    def kyc_tier(self) -> int: ...

    @property
    def settlement_currency(self) -> str: ...


@dataclass
class RiskInput:
    merchant: MerchantFacts
    amount_minor: int
    currency: str
    customer_id: str | None = None
    email: str | None = None
    customer_ip: str | None = None
    device_id: str | None = None
    card_fingerprint: str | None = None
    geo: str | None = None
    payment_id: str | None = None
    method: str | None = None  # payment method type


@dataclass
class RiskResult:
    decision: str = "approve"  # approve, review, reject
    score: int | None = None
    reasons: list[str] = field(default_factory=list)

    def escalate(self, decision: str, reason: str) -> None:
        order = ("approve", "review", "reject")
        if order.index(decision) > order.index(self.decision):
            self.decision = decision
        self.reasons.append(reason)


class ScoreHook(Protocol):
    """(score, reasons) of a payment, or None without a model; `prefetched` is what the
    Postgres fast path read ahead for it (serving.fraud.Prefetched)."""

    def __call__(self, session: Session, risk: RiskInput, now: datetime,
                 prefetched: Any = None, /) -> tuple[int, list[str]] | None: ...


_score_hook: ScoreHook | None = None
_thresholds = (REVIEW_SCORE, REJECT_SCORE)


def set_score_hook(hook: ScoreHook | None, review: int = REVIEW_SCORE,
                   reject: int = REJECT_SCORE) -> None:
    """Install the ML scorer (returns (score 0-99, reasons), or None when it has no model) and
    its thresholds; None removes it."""
    global _score_hook, _thresholds
    _score_hook, _thresholds = hook, (review, reject)


def score_hook_installed() -> bool:
    """True when a scorer is installed and has a model to score with (a scorer may expose
    `active()`; the Postgres fast path steps aside only then)."""
    if _score_hook is None:
        return False
    active = getattr(_score_hook, "active", None)
    return active() if active is not None else True


def score_prefetcher():
    """The installed scorer when it has a model and can take its reads done ahead of the risk
    check (`prefetch_async` / `prefetch`, as serving.fraud.LiveScorer): the Postgres fast path
    reads them on its own connection and keeps going. None otherwise."""
    if score_hook_installed() and hasattr(_score_hook, "prefetch_async"):
        return _score_hook
    return None


def to_usd_major(amount_minor: int, currency: str) -> Decimal | None:
    rate = INDICATIVE_USD.get(currency)
    if rate is None:
        return None
    return Decimal(amount_minor).scaleb(-exponent(currency)) * Decimal(rate)


def _in_merchant_currency(amount_minor: int, currency: str,
                          merchant: MerchantFacts) -> Decimal | None:
    """The amount in major units of the merchant's settlement currency: exact when the payment is
    in that currency (whatever its exponent: JPY 0, KWD 3), else through the indicative rates;
    None when either currency has none."""
    if currency == merchant.settlement_currency:
        return Decimal(amount_minor).scaleb(-exponent(currency))
    usd = to_usd_major(amount_minor, currency)
    target = INDICATIVE_USD.get(merchant.settlement_currency)
    if usd is None or target is None:
        return None
    return usd / Decimal(target)


def parse_geo(geo: str | None) -> tuple[float, float] | None:
    """'lat,lon' or an ISO 3166 country code."""
    if not geo:
        return None
    if "," in geo:
        try:
            lat, lon = (float(x) for x in geo.split(",", 1))
            return (lat, lon) if -90 <= lat <= 90 and -180 <= lon <= 180 else None
        except ValueError:
            return None
    return CENTROIDS.get(geo.strip().upper())


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def _list_hits(session: Session, risk: RiskInput) -> tuple[set[str], set[str]]:
    keys = {"customer": risk.customer_id, "email": risk.email, "card": risk.card_fingerprint,
            "ip": risk.customer_ip, "device": risk.device_id}
    wanted = [and_(RiskListEntry.kind == k, RiskListEntry.value == v) for k, v in keys.items() if v]
    if not wanted:
        return set(), set()
    rows = session.execute(
        select(RiskListEntry.list_type, RiskListEntry.kind).where(
            or_(*wanted),
            or_(RiskListEntry.merchant_id.is_(None), RiskListEntry.merchant_id == risk.merchant.id))
    ).all()
    return ({k for t, k in rows if t == "allow"}, {k for t, k in rows if t == "block"})


def utc_day(now: datetime) -> date:
    return (now.astimezone(UTC) if now.tzinfo else now).date()


# What a payment's risk rules read on Postgres, under the locks of its keys (migration 0011,
# payment_risk_facts: the merchant's accepted volume today per currency from the trigger-kept
# counter of migration 0006, the captured volume today of the channels given, the last hour's
# payments per customer, card, device and IP, the customer's latest payment); driver-style
# parameters, so the fast path embeds the same call. The locks are held to the end of the
# transaction: two payments on one key cannot both pass a limit on the same history.
RISK_FACTS_PG = ("SELECT * FROM payment_risk_facts(%(merchant_id)s, %(day)s, %(currency)s, "
                 "CAST(%(limited_channels)s AS text[]), %(day_start)s, %(day_end)s, "
                 "%(customer_id)s, %(card)s, %(device)s, %(ip)s, %(hour_ago)s, %(now)s)")


def risk_facts_params(merchant_id: str | None, currency: str, channels: list[str],
                      keys: Mapping[str, str | None], now: datetime) -> dict:
    """RISK_FACTS_PG's parameters; `keys` the payment's velocity keys by column
    (customer_id, card_fingerprint, device_id, customer_ip), missing or None when absent."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return {"merchant_id": merchant_id, "day": utc_day(now), "currency": currency,
            "limited_channels": sorted(channels), "day_start": day_start,
            "day_end": day_start + timedelta(days=1), "customer_id": keys.get("customer_id"),
            "card": keys.get("card_fingerprint"), "device": keys.get("device_id"),
            "ip": keys.get("customer_ip"), "hour_ago": now - timedelta(hours=1), "now": now}


def volume_pairs(text_value: str | None) -> dict[str, int]:
    """'key=minor,...' (what payment_risk_facts returns) as {key: minor units}."""
    if not text_value:
        return {}
    return {k: int(v) for k, v in (item.rsplit("=", 1) for item in text_value.split(","))}


def locked_facts(session: Session, merchant_id: str | None, currency: str, channels: list[str],
                 keys: Mapping[str, str | None], now: datetime):
    """Postgres: take the locks of the payment's keys for this transaction and read its facts
    (a row of payment_risk_facts)."""
    return session.connection().exec_driver_sql(
        RISK_FACTS_PG, risk_facts_params(merchant_id, currency, channels, keys, now)).one()


VELOCITY_COLUMNS = {"customer_id": "v_customer", "card_fingerprint": "v_card",
                    "device_id": "v_device", "customer_ip": "v_ip"}


def facts_from(row, keys: Mapping[str, str | None]) -> RiskFacts:
    """The facts a row of payment_risk_facts holds (lists aside), for a payment with the
    velocity `keys` (by column; a key the payment lacks has no velocity)."""
    return RiskFacts(
        used_today=volume_pairs(row.used_today),
        velocity={column: getattr(row, alias) for column, alias in VELOCITY_COLUMNS.items()
                  if keys.get(column)},
        last_geo=(json.loads(row.last_customer) or {}).get("geo") if row.last_customer else None)


def _used_today(session: Session, merchant: MerchantFacts, now: datetime) -> dict[str, int]:
    """Today's accepted volume of the merchant per currency (minor units), summed from the
    payments: SQLite, which runs one writer at a time (Postgres reads a trigger-kept counter
    under the payment's locks: `locked_facts`)."""
    day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    where = (Payment.merchant_id == merchant.id, Payment.created_at >= day_start,
             Payment.created_at < day_start + timedelta(days=1), Payment.status.in_(CAPTURING))
    # Amounts are exact decimal strings on SQLite: add them up in Python.
    totals: dict[str, int] = {}
    for code, value in session.execute(select(Payment.currency, Payment.amount_minor).where(*where)):
        totals[code] = totals.get(code, 0) + value
    return totals


def _in_settlement_currency(totals: dict[str, int], merchant: MerchantFacts) -> Decimal:
    return sum(((_in_merchant_currency(int(v), c, merchant) or Decimal(0))
                for c, v in totals.items()), Decimal(0))


@dataclass
class RiskFacts:
    """What the rules read from the database; gathered in one place (or in one statement by the
    Postgres fast path, serving/services/fast_payments.py) and judged by `decide`."""

    allowed: set[str] = field(default_factory=set)
    blocked: set[str] = field(default_factory=set)
    used_today: dict[str, int] = field(default_factory=dict)  # currency -> minor units
    velocity: dict[str, int] = field(default_factory=dict)  # risk key column -> count, last hour
    last_geo: str | None = None  # the customer's previous payment's geo within the hour
    # The ML hook's reads done ahead (the fast path: serving.fraud.Prefetched), or None.
    ml_prefetched: object | None = None
    # Postgres: today's captured volume (minor units) of the channels with a daily limit for the
    # payment's method and currency, read under their locks with the rest, for routing; None
    # when not read (SQLite: routing reads it itself).
    captured_today: dict[str, int] | None = None


def velocity_keys(risk: RiskInput) -> list[tuple[str, str]]:
    return [(column, value) for column, value in (
        ("customer_id", risk.customer_id), ("card_fingerprint", risk.card_fingerprint),
        ("device_id", risk.device_id), ("customer_ip", risk.customer_ip)) if value]


def gather(session: Session, risk: RiskInput, now: datetime,
           limited_channels: Sequence[str] = ()) -> RiskFacts:
    """The facts the rules read. On Postgres also the captured volume today of
    `limited_channels` (routing.channels_with_daily_limit), read with them under their locks.
    The payment being checked may be in the session already: keep autoflush off around this
    call, so it stays out of its own history."""
    facts = RiskFacts()
    facts.allowed, facts.blocked = _list_hits(session, risk)
    if facts.blocked:
        return facts
    if session.get_bind().dialect.name == "postgresql":
        # Under the locks of the merchant's day and the velocity keys: what is read includes
        # every payment committed on those keys before this one (migration 0011).
        # The daily volumes of `limited_channels` come in the same call, under their locks
        # (taken after the keys', as the function orders them), for routing.
        keys = dict(velocity_keys(risk))
        row = locked_facts(session, risk.merchant.id, risk.currency, list(limited_channels),
                           keys, now)
        locked = facts_from(row, keys)
        facts.used_today = locked.used_today
        facts.captured_today = volume_pairs(row.captured_today)  # {} when none is limited
        if not facts.allowed:
            facts.velocity, facts.last_geo = locked.velocity, locked.last_geo
        return facts
    facts.used_today = _used_today(session, risk.merchant, now)
    if facts.allowed:
        return facts
    hour_ago = now - timedelta(hours=1)
    counts = [(column, select(func.count()).where(
        getattr(Payment, column) == value, Payment.created_at >= hour_ago).scalar_subquery())
        for column, value in velocity_keys(risk)]
    if counts:
        values = session.execute(select(*[q for _, q in counts])).one()
        facts.velocity = {column: cast(int, seen)
                          for (column, _), seen in zip(counts, values, strict=True)}
    if parse_geo(risk.geo) and risk.customer_id:
        last = session.execute(
            select(Payment.customer).where(
                Payment.customer_id == risk.customer_id, Payment.created_at >= hour_ago,
                Payment.created_at <= now)
            .order_by(Payment.created_at.desc()).limit(1)).first()
        facts.last_geo = (last.customer or {}).get("geo") if last else None
    return facts


def decide(risk: RiskInput, facts: RiskFacts, now: datetime, *, session: Session) -> RiskResult:
    """The rules, in order, over gathered facts (pure but for the ML hook, which may read)."""
    result = RiskResult()
    if facts.blocked:
        for kind in sorted(facts.blocked):
            result.escalate("reject", f"blocklist_{kind}")
        return result

    tier = risk.merchant.kyc_tier
    amount = _in_merchant_currency(risk.amount_minor, risk.currency, risk.merchant)
    if tier == 0:
        result.escalate("reject", "kyc_tier_0_cannot_accept_payments")
        return result
    if amount is None:
        # No indicative rate to compare with the merchant's limits: a limit that cannot be
        # checked is not passed (the KYC limits are the merchant's contract).
        result.escalate("reject", "kyc_limit_unconvertible_currency")
        return result
    if amount > KYC_SINGLE_LIMIT_MAJOR[tier]:
        result.escalate("reject", f"single_payment_limit_kyc_{tier}")
    used = _in_settlement_currency(facts.used_today, risk.merchant)
    if used + amount > KYC_DAILY_LIMIT_MAJOR[tier]:
        result.escalate("reject", f"daily_limit_kyc_{tier}")
    if facts.allowed:
        result.reasons.append("allowlist_" + "_".join(sorted(facts.allowed)))
        return result

    for column, seen in facts.velocity.items():
        review_at, reject_at = VELOCITY[column]
        if seen + 1 > reject_at:
            result.escalate("reject", f"velocity_{column}")
        elif seen + 1 > review_at:
            result.escalate("review", f"velocity_{column}")

    here, there = parse_geo(risk.geo), parse_geo(facts.last_geo)
    if here and there and distance_km(here, there) > GEO_KM:
        result.escalate("review", "geo_anomaly")

    if _score_hook is not None:
        scored = _score_hook(session, risk, now, facts.ml_prefetched)
        if scored is not None:
            result.score, model_reasons = scored
            review_at, reject_at = _thresholds
            if result.score >= reject_at:
                result.escalate("reject", "ml_score")
            elif result.score >= review_at:
                result.escalate("review", "ml_score")
            result.reasons.extend(model_reasons)
    return result
