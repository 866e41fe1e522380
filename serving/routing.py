"""Channel routing: which channel takes a payment, and what to do when it fails.

Eligible channels: active, of the payment method's type, taking the currency, the amount within
the channel's min/max, today's captured volume plus this payment within its daily limit, a cost
price in force, and a circuit breaker that is not open. Among them: healthy before unhealthy
(success rate over the sliding window), then cheapest cost (fee per commission.md), then lower
latency, then priority. A forced `channel` narrows the candidates to that one.

Health is per API process (like Hystrix/resilience4j breakers): a sliding window of the last
outcomes per channel; the breaker opens when more than 20 % of at least MIN_CALLS recent calls
failed, rejects calls for COOLDOWN seconds, then lets one probe through (half-open) and closes
again on success. The decision and its reasons are stored on the payment (payments.routing).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from serving import cache, risk
from warehouse.models import Channel, ChannelCurrency, Payment, Price
from warehouse.money import fee_minor

WINDOW = 50  # outcomes kept per channel
MIN_CALLS = 10
ERROR_RATE_TO_OPEN = 0.20
HEALTHY_SUCCESS_RATE = 0.90
COOLDOWN_SECONDS = 30.0
CONFIG_TTL_SECONDS = 5.0


@dataclass
class ChannelHealth:
    outcomes: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # (ok, latency_ms)
    state: str = "closed"  # closed, open, half_open
    opened_at: float = 0.0
    probing: bool = False

    def success_rate(self) -> float | None:
        outcomes = tuple(self.outcomes)  # a snapshot: other threads append meanwhile
        if not outcomes:
            return None
        return sum(1 for ok, _ in outcomes if ok) / len(outcomes)

    def p50_latency_ms(self) -> float | None:
        outcomes = tuple(self.outcomes)  # a snapshot: other threads append meanwhile
        if not outcomes:
            return None
        values = sorted(lat for _, lat in outcomes)
        return values[len(values) // 2]


class HealthRegistry:
    def __init__(self, clock=time.monotonic):
        self._lock = threading.Lock()
        self._health: dict[str, ChannelHealth] = {}
        self._clock = clock

    def get(self, channel_id: str) -> ChannelHealth:
        with self._lock:
            return self._health.setdefault(channel_id, ChannelHealth())

    def allows(self, channel_id: str) -> bool:
        """Closed: yes. Open: no, until the cooldown ends; then one probe at a time."""
        health = self.get(channel_id)
        with self._lock:
            if health.state == "closed":
                return True
            if health.state == "open" and self._clock() - health.opened_at >= COOLDOWN_SECONDS:
                health.state = "half_open"
            if health.state == "half_open" and not health.probing:
                health.probing = True
                return True
            return False

    def record(self, channel_id: str, *, ok: bool, latency_ms: float) -> None:
        health = self.get(channel_id)
        with self._lock:
            health.outcomes.append((ok, latency_ms))
            if health.state == "half_open":
                health.probing = False
                if ok:
                    health.state = "closed"
                    health.outcomes.clear()
                else:
                    health.state, health.opened_at = "open", self._clock()
                return
            failures = sum(1 for good, _ in health.outcomes if not good)
            if (health.state == "closed" and len(health.outcomes) >= MIN_CALLS
                    and failures / len(health.outcomes) > ERROR_RATE_TO_OPEN):
                health.state, health.opened_at = "open", self._clock()

    def states(self) -> dict[str, str]:
        with self._lock:
            return {cid: h.state for cid, h in self._health.items()}

    def reset(self) -> None:
        with self._lock:
            self._health.clear()


HEALTH = HealthRegistry()


@dataclass(frozen=True)
class _ChannelConfig:
    channel: tuple  # (id, type, status, priority)
    currencies: dict[str, tuple[int, int | None, int | None]]  # ccy -> (min, max, daily)


_config_cache: dict[str, tuple[float, list[_ChannelConfig]]] = {}
_config_lock = threading.Lock()


def _channel_configs(session: Session, method_type: str) -> list[_ChannelConfig]:
    """Channel settings change rarely: cache them per process for a few seconds."""
    key = f"{cache.scope(session.get_bind())}:{method_type}"
    now = time.monotonic()
    with _config_lock:
        hit = _config_cache.get(key)
        if hit and now - hit[0] < CONFIG_TTL_SECONDS:
            return hit[1]
    rows = session.execute(
        select(Channel.id, Channel.channel_type, Channel.status, Channel.priority,
               ChannelCurrency.currency, ChannelCurrency.min_amount_minor,
               ChannelCurrency.max_amount_minor, ChannelCurrency.daily_limit_minor)
        .join(ChannelCurrency, ChannelCurrency.channel_id == Channel.id, isouter=True)
        .where(Channel.channel_type == method_type)
    ).all()
    by_id: dict[str, _ChannelConfig] = {}
    for cid, ctype, status, priority, ccy, lo, hi, daily in rows:
        config = by_id.setdefault(cid, _ChannelConfig((cid, ctype, status, priority), {}))
        if ccy is not None:
            config.currencies[ccy] = (lo, hi, daily)
    configs = sorted(by_id.values(), key=lambda c: c.channel[0])
    with _config_lock:
        _config_cache[key] = (now, configs)
    return configs


def _clear_channel_configs() -> None:
    with _config_lock:
        _config_cache.clear()


cache.on_clear(_clear_channel_configs)


def clear_config_cache() -> None:
    cache.clear()


def _captured_today(session: Session, channel_id: str, currency: str, now: datetime) -> int:
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    rows = session.scalars(
        select(Payment.amount_minor).where(
            Payment.channel_id == channel_id, Payment.currency == currency,
            Payment.captured_at >= start, Payment.captured_at < start + timedelta(days=1))
    ).all()
    return sum(rows)  # MinorUnits is text on SQLite: sum exactly in Python


def _cost_prices(session: Session, ids: list[str], currency: str, at: datetime) -> dict:
    """The channels' cost prices in force at `at` (all their rows cached briefly)."""
    def load():
        return session.execute(
            select(Price.subject_id, Price.rate_bps, Price.fixed_minor, Price.valid_from,
                   Price.valid_to).where(
                Price.subject_type == "channel", Price.subject_id.in_(ids),
                Price.currency == currency).order_by(Price.valid_from)).all()

    rows = cache.cached(("channel_prices", cache.scope(session.get_bind()), tuple(ids), currency), load)
    return {sid: (rate, fixed) for sid, rate, fixed, start, end in rows  # latest start wins
            if start <= at and (end is None or at < end)}


@dataclass
class RoutingDecision:
    candidates: list[str]  # eligible, best first
    considered: list[dict]  # every channel of the type, with why it was (not) eligible
    attempts: list[dict] = field(default_factory=list)
    chosen: str | None = None

    def as_json(self) -> dict:
        return {"chosen": self.chosen, "candidates": self.candidates,
                "considered": self.considered, "attempts": self.attempts}


def decision_out(routing: dict, currency: str) -> dict:
    """A stored decision as the API shows it. Each considered channel's cost_minor is in the
    payment's currency (its cost price in that currency, on its amount); decisions stored before
    cost_currency was recorded get it here."""
    if all("cost_currency" in entry for entry in routing.get("considered") or ()):
        return routing  # recorded with it (every decision since): nothing to copy
    return {**routing, "considered": [{**entry, "cost_currency": currency}
                                      if "cost_currency" not in entry else entry
                                      for entry in routing["considered"]]}


def _considered(cid: str, reasons: list[str], cost_minor: str | None, currency: str,
                h: ChannelHealth, rate: float | None) -> dict:
    """One channel of `considered`: why it was (not) eligible, its cost and its health (`h`,
    the channel's health, and its success rate)."""
    return {"channel": cid, "eligible": not reasons, "reasons": reasons,
            "cost_minor": cost_minor,
            "cost_currency": currency,  # the channel's cost price in the payment's currency
            "success_rate": None if rate is None else round(rate, 3),
            "p50_latency_ms": h.p50_latency_ms(), "breaker": h.state}


def channels_with_daily_limit(session: Session, method_type: str, currency: str) -> list[str]:
    """The channels whose daily limit routing must check (their captured volume is read)."""
    return [c.channel[0] for c in _channel_configs(session, method_type)
            if (c.currencies.get(currency) or (0, None, None))[2] is not None]


def route(session: Session, *, method_type: str, currency: str, amount_minor: int,
          now: datetime, forced_channel: str | None = None,
          health: HealthRegistry = HEALTH,
          captured_today: dict[str, int] | None = None) -> RoutingDecision:
    """`captured_today` (channel -> minor units captured today in `currency`) may be given by a
    caller that read it already (under the limits' locks, on Postgres); otherwise it is read
    here for the channels with a daily limit - on Postgres under their locks, held to the end
    of the transaction, so two payments cannot both fit in the same remaining limit."""
    configs = _channel_configs(session, method_type)
    if captured_today is None and session.get_bind().dialect.name == "postgresql":
        limited = channels_with_daily_limit(session, method_type, currency)
        if limited:
            captured_today = risk.volume_pairs(risk.locked_facts(
                session, None, currency, limited, {}, now).captured_today)
    costs = _cost_prices(session, [c.channel[0] for c in configs], currency, now)
    considered, eligible = [], []
    for config in configs:
        cid, _ctype, status, priority = config.channel
        reasons = []
        limits = config.currencies.get(currency)
        h = health.get(cid)
        state = h.state
        if forced_channel and cid != forced_channel:
            reasons.append("not_the_forced_channel")
        if status != "active":
            reasons.append(f"status_{status}")
        if limits is None:
            reasons.append("currency_not_supported")
        else:
            lo, hi, daily = limits
            if amount_minor < lo:
                reasons.append("below_min_amount")
            if hi is not None and amount_minor > hi:
                reasons.append("above_max_amount")
            if daily is not None and not reasons:
                used = (captured_today.get(cid, 0) if captured_today is not None
                        else _captured_today(session, cid, currency, now))
                if used + amount_minor > daily:
                    reasons.append("daily_limit_reached")
        price = costs.get(cid)
        if price is None:
            reasons.append("no_cost_price")
        if state == "open":
            reasons.append("breaker_open")
        cost = str(fee_minor(amount_minor, price[0], price[1] or 0)) if price else None
        rate = h.success_rate()
        entry = _considered(cid, reasons, cost, currency, h, rate)
        considered.append(entry)
        if not reasons:
            healthy = rate is None or rate >= HEALTHY_SUCCESS_RATE
            eligible.append(((0 if healthy else 1, int(entry["cost_minor"]),
                              entry["p50_latency_ms"] or 0.0, priority, cid), cid))
    if forced_channel and forced_channel not in {c.channel[0] for c in configs}:
        # The forced channel exists (the caller checked) but serves another payment method:
        # say so, rather than leave the payment failed with its channel nowhere in the reasons.
        h = health.get(forced_channel)
        considered.append(_considered(forced_channel, ["payment_method_not_supported"], None,
                                      currency, h, h.success_rate()))
    eligible.sort()
    return RoutingDecision([cid for _, cid in eligible], considered)
