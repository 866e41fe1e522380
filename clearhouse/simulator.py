"""A realistic, seeded business day of payments, sent through the real HTTP API.

Merchants hang under a multi-level agent tree; customers pay in USD, EUR, CNY, TWD, JPY and USDC
with log-normal amounts at diurnal hours; some cards decline; some payments are refunded later,
in part or in full. Every request carries a deterministic Idempotency-Key derived from the seed
and the day, so simulating the same day twice replays the first answers instead of paying twice.
The Clearhouse-Test-Clock header places each request at its simulated time.

About 2 % of a day's payments (none on days under 50 payments) are planted fraud, each with the
time it is reported as a chargeback or fraud report (days to weeks later; about 10 % never):
card testing bursts, account takeovers, mule cash-outs and friendly fraud (see `_plant`). They
take the place of ordinary payments slot for slot, so a day still has exactly n payments and the
ordinary ones are the same as without planting.
"""

from __future__ import annotations

import json
import math
import random
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from serving.channels import APPROVED_CARDS, CARD_INSTRUMENTS
from serving.risk import CENTROIDS
from serving.schemas import MerchantCreate, PriceIn, iso_z
from serving.services.admin import PRICE_EPOCH, bootstrap_admin, create_agent, create_merchant
from serving.services.prices import set_commission_model, set_price
from warehouse.models import Merchant
from warehouse.money import exponent

# Share of payments per hour of day (UTC): quiet nights, a lunch bump and an evening peak.
HOURLY_WEIGHTS = [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1.2, 2.5, 4, 5, 5.5, 6, 7, 6.5, 6, 5.5, 5.5, 6, 7,
                  7.5, 7, 5.5, 3.5, 2]
# Currency mix and the median ticket in major units (log-normal around it).
CURRENCIES = {"USD": (0.30, 38), "EUR": (0.20, 32), "CNY": (0.18, 180), "TWD": (0.10, 900),
              "JPY": (0.12, 4200), "USDC": (0.10, 60)}
METHODS = {"USD": ["card", "card", "card", "apple_pay", "bank_transfer"],
           "EUR": ["card", "card", "apple_pay", "bank_transfer"],
           "CNY": ["wechat_pay", "alipay", "alipay", "e_cny"],
           "TWD": ["card", "card", "apple_pay"], "JPY": ["card", "card", "apple_pay"],
           "USDC": ["crypto"]}
DECLINE_RATE = 0.05
REFUND_RATE = 0.06
DECLINE_CARDS = ["4000000000000002", "4000000000009995"]
PENDING_CARD = "4000000000003220"  # confirmed later by the channel's signed callback
PENDING_RATE = 0.02
COUNTRIES = {"USD": "US", "EUR": "DE", "CNY": "CN", "TWD": "TW", "JPY": "JP", "USDC": "SG"}

# Planted fraud (see `_plant`): its share of a day, the smallest day that gets any, the kinds
# (in the order the first round plants one of each), how many payments one episode makes, how
# often a later episode is of each kind, and the days until the fraud is reported.
FRAUD_SHARE = 0.02
FRAUD_MIN_DAY = 50
FRAUD_KINDS = ("account_takeover", "friendly_fraud", "mule_cash_out", "card_testing")
EPISODE_PAYMENTS = {"account_takeover": (1, 1), "friendly_fraud": (1, 1),
                    "mule_cash_out": (4, 8), "card_testing": (8, 25)}
EPISODE_WEIGHTS = {"account_takeover": 0.4, "friendly_fraud": 0.4, "mule_cash_out": 0.12,
                   "card_testing": 0.08}
REPORT_DELAY_DAYS = {"card_testing": (2, 10), "account_takeover": (1, 7),
                     "mule_cash_out": (3, 20), "friendly_fraud": (15, 60)}
NEVER_REPORTED = 0.10
CARD_CURRENCIES = ("USD", "EUR", "TWD", "JPY")  # currencies whose payers use cards


def _card_number(rng: random.Random) -> str:
    """A Luhn-valid number that the simulated card channel approves."""
    from serving.channels import luhn_ok

    body = "4" + "".join(rng.choice("0123456789") for _ in range(14))
    return next(body + d for d in "0123456789" if luhn_ok(body + d))


@dataclass(frozen=True)
class Customer:
    id: str
    card: str
    ip: str
    device_id: str
    home: str  # country


def make_customers(n: int, seed: int) -> list[Customer]:
    rng = random.Random(f"customers:{seed}")
    homes = list(COUNTRIES.values())
    return [Customer(f"cus_sim_{seed}_{i:05d}", _card_number(rng),
                     f"203.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
                     f"dev_{rng.randrange(10**10):010d}", rng.choice(homes)) for i in range(n)]


@dataclass
class SimMerchant:
    id: str
    name: str
    api_key: str
    webhook_secret: str = ""


@dataclass
class DayResult:
    payments: int = 0
    succeeded: int = 0
    declined: int = 0
    refunds: int = 0
    replayed: int = 0
    pending: int = 0  # waiting for a channel callback or a review
    callbacks: int = 0
    webhooks: tuple[int, int, int] = (0, 0, 0)  # verified, duplicates, rejected
    wallet_topups: int = 0
    wallet_spends: int = 0
    errors: list[str] = field(default_factory=list)
    captured_by_currency: dict[str, int] = field(default_factory=dict)
    # (payment id, fraud kind, reported_at) of every planted payment the API created: the
    # labels, kept apart because the API itself never learns them.
    planted: list[tuple[str, str, datetime | None]] = field(default_factory=list)


# --- the cast: agents, merchants, customers ---------------------------------------------------

AGENT_TREE = [("North Star Partners", None), ("Harbor Resellers", None),
              ("North Star East", "North Star Partners"), ("North Star West", "North Star Partners"),
              ("Harbor Retail", "Harbor Resellers"), ("North Star East Metro", "North Star East")]
# Each agent's commission model (commission.md) in every currency: a markup agent earns the
# spread over its cost price (rate_bps, set by its parent), a percentage agent pct_bps of the
# amount, a fixed agent a fixed amount per payment (in minor units), the last two paid by the
# platform.
AGENT_MODELS = {"North Star Partners": ("markup", 235), "Harbor Resellers": ("markup", 245),
                "North Star East": ("percentage", 15), "North Star West": ("markup", 265),
                "Harbor Retail": ("fixed", 5), "North Star East Metro": ("markup", 280)}
MERCHANTS = [("Lotus Tea House", "North Star East Metro", "CNY", 320),
             ("Kite Outdoor Gear", "North Star West", "USD", 290),
             ("Sakura Stationery", "North Star East", "USD", 300),
             ("Formosa Bikes", "Harbor Retail", "USD", 280),
             ("Bistro Lumiere", "Harbor Resellers", "EUR", 260),
             ("Chainlight Labs", None, "USDC", 150),
             ("Atlas Books", "North Star Partners", "USD", 275),
             ("Pixel Arcade", "Harbor Retail", "USD", 310)]


def point_webhooks_at(engine: Engine, merchants: list[SimMerchant], base_url: str) -> None:
    """Operator step: send each merchant's webhooks to base_url/<merchant id>."""
    with Session(engine) as session:
        for m in merchants:
            session.get_one(Merchant, m.id).callback_url = f"{base_url}/{m.id}"
        session.commit()


def set_up_merchants(engine: Engine, credentials_file: Path) -> list[SimMerchant]:
    """Create the agent tree and merchants once; later runs reuse them (idempotent)."""
    if credentials_file.exists():
        saved = [SimMerchant(**m) for m in json.loads(credentials_file.read_text())]
        with Session(engine) as session:
            if all(session.get(Merchant, m.id) is not None for m in saved):
                return saved
    merchants = []
    with Session(engine) as session:
        bootstrap_admin(session)
        agents: dict[str, str] = {}
        for name, parent in AGENT_TREE:
            parent_id = agents[parent] if parent is not None else None
            agents[name] = create_agent(session, name=name, parent_id=parent_id).id
        session.flush()
        _set_commission_models(session, agents)
        for name, agent, settle_ccy, rate_bps in MERCHANTS:
            pricing = [PriceIn(currency=c, rate_bps=rate_bps,
                               fixed_minor=30 if exponent(c) == 2 and c != "USDC" else 0)
                       for c in CURRENCIES]
            merchant, key = create_merchant(session, MerchantCreate(
                name=name, agent_id=agents.get(agent) if agent else None,
                settlement_currency=settle_ccy, kyc_tier=3, pricing=pricing))
            merchant.webhook_secret = "whsec_" + secrets.token_urlsafe(24)
            merchants.append(SimMerchant(merchant.id, name, key, merchant.webhook_secret))
        session.commit()
    credentials_file.parent.mkdir(parents=True, exist_ok=True)
    credentials_file.write_text(json.dumps([m.__dict__ for m in merchants], indent=2))
    credentials_file.chmod(0o600)
    return merchants


def _set_commission_models(session: Session, agents: dict[str, str]) -> None:
    for name, (model, rate) in AGENT_MODELS.items():
        for code in CURRENCIES:
            set_commission_model(session, agent_id=agents[name], currency=code, model=model,
                                 pct_bps=rate if model == "percentage" else None,
                                 fixed_minor=rate if model == "fixed" else None,
                                 valid_from=PRICE_EPOCH, actor="simulator")
            if model == "markup":  # its cost price, set by its parent
                set_price(session, subject_type="agent", subject_id=agents[name], currency=code,
                          rate_bps=rate, fixed_minor=0, valid_from=PRICE_EPOCH,
                          actor="simulator")


# --- the day ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedPayment:
    index: int
    merchant: SimMerchant
    at: datetime
    body: dict
    refund_at: datetime | None
    refund_minor: int | None  # None: full refund
    fraud: str | None = None  # the planted fraud's kind (FRAUD_KINDS)
    reported_at: datetime | None = None  # when the fraud is reported; None: never


def _amount_minor(rng: random.Random, code: str) -> int:
    median = CURRENCIES[code][1]
    major = median * math.exp(rng.gauss(0, 0.9))
    minor = max(1, int(round(major * 10 ** exponent(code))))
    # Prices end in .00/.50/.99 more often than not, as on real tickets.
    if exponent(code) >= 2 and rng.random() < 0.6:
        cents = 10 ** exponent(code)
        minor = max(cents, minor - minor % cents + rng.choice([0, cents // 2, cents - 1]))
    return minor


def plan_day(merchants: list[SimMerchant], day: date, n: int, seed: int) -> list[PlannedPayment]:
    """Exactly n payments for the day, the same for the same (seed, day), fraud planted."""
    rng = random.Random(f"{seed}:{day.isoformat()}")
    customers = make_customers(max(50, n // 3), seed)
    codes = list(CURRENCIES)
    weights = [CURRENCIES[c][0] for c in codes]
    plans = []
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    for i in range(n):
        hour = rng.choices(range(24), weights=HOURLY_WEIGHTS)[0]
        at = start + timedelta(hours=hour, seconds=rng.randrange(3600), milliseconds=rng.randrange(1000))
        code = rng.choices(codes, weights=weights)[0]
        merchant = rng.choice(merchants)
        method_type = rng.choice(METHODS[code])
        declined = rng.random() < DECLINE_RATE
        pending = not declined and rng.random() < PENDING_RATE
        customer = rng.choice(customers)
        method: dict = {"type": method_type}
        if method_type == "card":
            method["number"] = (rng.choice(DECLINE_CARDS) if declined
                                else PENDING_CARD if pending else customer.card)
        elif declined:
            method["test_outcome"] = "decline"
        elif pending:
            method["test_outcome"] = "pending"
        body: dict[str, Any] = {"amount_minor": str(_amount_minor(rng, code)), "currency": code,
                "merchant_reference": f"order-{day:%Y%m%d}-{i:06d}", "payment_method": method,
                "customer": {"id": customer.id, "email": f"{customer.id}@example.com",
                             "ip": customer.ip, "device_id": customer.device_id,
                             "geo": customer.home}}
        refund_at = refund_minor = None
        if not declined and rng.random() < REFUND_RATE:
            refund_at = at + timedelta(minutes=rng.randrange(5, 600))
            if refund_at.date() != day:
                refund_at = start + timedelta(days=1) - timedelta(seconds=1)
            if rng.random() < 0.5:
                refund_minor = max(1, int(body["amount_minor"]) * rng.randrange(10, 90) // 100)
        plans.append(PlannedPayment(i, merchant, at, body, refund_at, refund_minor))
    return _plant(plans, merchants, customers, day, seed)


# --- planted fraud ------------------------------------------------------------------------------


def fraud_budget(n: int) -> int:
    """How many of a day's n payments are planted fraud: none on tiny days (stable unit tests)."""
    return 0 if n < FRAUD_MIN_DAY else round(n * FRAUD_SHARE)


def _episodes(rng: random.Random, budget: int) -> list[tuple[str, int]]:
    """(kind, payments) per episode: one of each kind that fits first, then weighted draws."""
    episodes: list[tuple[str, int]] = []
    left = budget
    for kind in FRAUD_KINDS:
        low, high = EPISODE_PAYMENTS[kind]
        if left >= low:
            episodes.append((kind, min(rng.randint(low, high), left)))
            left -= episodes[-1][1]
    while left > 0:
        fitting = [k for k in FRAUD_KINDS if EPISODE_PAYMENTS[k][0] <= left]
        kind = rng.choices(fitting, weights=[EPISODE_WEIGHTS[k] for k in fitting])[0]
        low, high = EPISODE_PAYMENTS[kind]
        episodes.append((kind, min(rng.randint(low, high), left)))
        left -= episodes[-1][1]
    return episodes


def _plant(plans: list[PlannedPayment], merchants: list[SimMerchant], customers: list[Customer],
           day: date, seed: int) -> list[PlannedPayment]:
    """Replace a few ordinary payments by fraud episodes, keeping their slots (index).

    A separate random stream decides the fraud, so the ordinary payments stay as they were.
    """
    rng = random.Random(f"fraud:{seed}:{day.isoformat()}")
    budget = fraud_budget(len(plans))
    slots = iter(rng.sample(range(len(plans)), budget))
    scene = _Scene(day, merchants, customers, rng)
    for kind, size in _episodes(rng, budget):
        for planted in PLANTERS[kind](scene, [next(slots) for _ in range(size)]):
            plans[planted.index] = planted
    return plans


@dataclass(frozen=True)
class _Scene:
    day: date
    merchants: list[SimMerchant]
    customers: list[Customer]
    rng: random.Random

    def moment(self, hours: range = range(24), span: timedelta = timedelta(0)) -> datetime:
        """A time in one of the hours that leaves room for span before the day ends."""
        start = datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC)
        at = start + timedelta(hours=self.rng.choice(hours), seconds=self.rng.randrange(3600),
                               milliseconds=self.rng.randrange(1000))
        return min(at, start + timedelta(days=1) - span - timedelta(seconds=1))

    def stolen_card(self) -> str:
        """A fresh number the card channel approves (never one of its test instruments)."""
        while (number := _card_number(self.rng)) in APPROVED_CARDS or number in CARD_INSTRUMENTS:
            pass
        return number

    def ip(self) -> str:
        rng = self.rng
        octets = (rng.choice([45, 91, 185, 194]), rng.randrange(256), rng.randrange(256),
                  rng.randrange(1, 255))
        return ".".join(map(str, octets))

    def device(self) -> str:
        return f"dev_{self.rng.randrange(10**10):010d}"

    def throwaway(self, ip: str, device: str, geo: str) -> dict:
        """A customer made up for one payment: new id and email, the fraudster's ip and device."""
        cid = f"cus_anon_{self.rng.randrange(16**12):012x}"
        return {"id": cid, "email": f"{cid}@mailbox.example", "ip": ip, "device_id": device,
                "geo": geo}

    def plan(self, index: int, kind: str, merchant: SimMerchant, at: datetime, code: str,
             amount_minor: int, method: dict, customer: dict) -> PlannedPayment:
        body = {"amount_minor": str(amount_minor), "currency": code,
                "merchant_reference": f"order-{self.day:%Y%m%d}-{index:06d}",
                "payment_method": method, "customer": customer}
        return PlannedPayment(index, merchant, at, body, None, None, fraud=kind,
                              reported_at=self.reported_at(kind, at))

    def reported_at(self, kind: str, at: datetime) -> datetime | None:
        if self.rng.random() < NEVER_REPORTED:
            return None
        low, high = REPORT_DELAY_DAYS[kind]
        return at + timedelta(seconds=self.rng.randrange(low * 86400, high * 86400 + 1))

    def times_median(self, code: str, low: float, high: float) -> int:
        return round(CURRENCIES[code][1] * self.rng.uniform(low, high) * 10 ** exponent(code))


def _own(customer: Customer) -> dict:
    return {"id": customer.id, "email": f"{customer.id}@example.com", "ip": customer.ip,
            "device_id": customer.device_id, "geo": customer.home}


def _card_testing(scene: _Scene, slots: list[int]) -> list[PlannedPayment]:
    """One stolen card tried for small sums from one IP and device, a new customer each time."""
    rng = scene.rng
    card, ip, device = scene.stolen_card(), scene.ip(), scene.device()
    geo, merchant = rng.choice(sorted(CENTROIDS)), rng.choice(scene.merchants)
    code = rng.choice(["USD", "EUR"])
    first = scene.moment(span=timedelta(minutes=10))
    return [scene.plan(i, "card_testing", merchant, first + timedelta(seconds=rng.randrange(600)),
                       code, rng.randrange(100, 501), {"type": "card", "number": card},
                       scene.throwaway(ip, device, geo)) for i in slots]


def _account_takeover(scene: _Scene, slots: list[int]) -> list[PlannedPayment]:
    """A known customer's account, used from a new device and IP abroad, for a big ticket."""
    rng = scene.rng
    customer = rng.choice(scene.customers)
    geo = rng.choice(sorted(set(CENTROIDS) - {customer.home}))
    hours = range(6) if rng.random() < 0.8 else range(24)
    code = rng.choice(CARD_CURRENCIES)
    return [scene.plan(i, "account_takeover", rng.choice(scene.merchants), scene.moment(hours),
                       code, scene.times_median(code, 5, 15),
                       {"type": "card", "number": customer.card},
                       {**_own(customer), "ip": scene.ip(), "device_id": scene.device(),
                        "geo": geo}) for i in slots]


def _mule_cash_out(scene: _Scene, slots: list[int]) -> list[PlannedPayment]:
    """Fan-in: many stolen cards through one device and IP, large sums within an hour."""
    rng = scene.rng
    ip, device = scene.ip(), scene.device()
    geo, merchant = rng.choice(sorted(CENTROIDS)), rng.choice(scene.merchants)
    code = rng.choice(["USD", "EUR"])
    first = scene.moment(span=timedelta(hours=1))
    return [scene.plan(i, "mule_cash_out", merchant, first + timedelta(seconds=rng.randrange(3600)),
                       code, scene.times_median(code, 3, 10),
                       {"type": "card", "number": scene.stolen_card()},
                       scene.throwaway(ip, device, geo)) for i in slots]


def _friendly_fraud(scene: _Scene, slots: list[int]) -> list[PlannedPayment]:
    """A known customer's ordinary purchase, disputed weeks later."""
    rng = scene.rng
    plans = []
    for i in slots:
        customer, code = rng.choice(scene.customers), rng.choice(CARD_CURRENCIES)
        method = ({"type": "card", "number": customer.card} if rng.random() < 2 / 3
                  else {"type": "apple_pay"})
        hour = rng.choices(range(24), weights=HOURLY_WEIGHTS)[0]
        plans.append(scene.plan(i, "friendly_fraud", rng.choice(scene.merchants),
                                scene.moment(range(hour, hour + 1)), code,
                                _amount_minor(rng, code), method, _own(customer)))
    return plans


PLANTERS: dict[str, Callable[[_Scene, list[int]], list[PlannedPayment]]] = {
    "card_testing": _card_testing, "account_takeover": _account_takeover,
    "mule_cash_out": _mule_cash_out, "friendly_fraud": _friendly_fraud}


def _wallet_day(client: httpx.Client, merchants: list[SimMerchant], *, day: date, n: int,
                seed: int, result: DayResult) -> None:
    """A few customers top up a stored-value wallet in the morning (10 % bonus) and pay from
    it during the day; one refunds part of a top-up, which claws back bonus pro rata."""
    rng = random.Random(f"wallets:{seed}:{day.isoformat()}")
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    customers = make_customers(max(3, n // 200), seed + 1)
    for i, customer in enumerate(customers):
        merchant = rng.choice([m for m in merchants if m.name != "Chainlight Labs"])
        auth = {"Authorization": f"Bearer {merchant.api_key}"}
        at = start + timedelta(hours=8, minutes=i)
        topup = client.post("/api/v1/wallets/topups", headers={
            **auth, "Idempotency-Key": f"sim-{seed}-{day}-topup-{i}", "Clearhouse-Test-Clock": iso_z(at)},
            json={"customer_id": customer.id, "currency": "USD", "amount_minor": "10000",
                  "bonus_minor": "1000", "payment_method": {"type": "card", "number": customer.card}})
        if topup.status_code != 201 or topup.json()["wallet"] is None:
            result.errors.append(f"wallet top-up {i}: {topup.status_code} {topup.text[:200]}")
            continue
        result.wallet_topups += 1
        for j in range(2):
            spend_at = at + timedelta(hours=2 + 3 * j, minutes=rng.randrange(60))
            spend = client.post("/api/v1/payments", headers={
                **auth, "Idempotency-Key": f"sim-{seed}-{day}-wallet-{i}-{j}",
                "Clearhouse-Test-Clock": iso_z(spend_at)},
                json={"amount_minor": str(rng.randrange(1500, 4000)), "currency": "USD",
                      "merchant_reference": f"wallet-{day:%Y%m%d}-{i}-{j}",
                      "payment_method": {"type": "wallet"}, "customer": {"id": customer.id}})
            if spend.status_code == 201 and spend.json()["status"] == "success":
                result.wallet_spends += 1
            else:
                result.errors.append(f"wallet spend {i}/{j}: {spend.status_code} {spend.text[:200]}")
        if i == 0:  # the first customer takes 20.00 of principal back
            back = client.post("/api/v1/refunds", headers={
                **auth, "Idempotency-Key": f"sim-{seed}-{day}-topup-refund-{i}",
                "Clearhouse-Test-Clock": iso_z(at + timedelta(hours=9))},
                json={"payment_id": topup.json()["payment"]["id"], "amount_minor": "2000"})
            if back.status_code != 201:
                result.errors.append(f"top-up refund: {back.status_code} {back.text[:200]}")


def run_day(client: httpx.Client, merchants: list[SimMerchant], *, day: date, payments: int,
            seed: int = 42, concurrency: int = 8,
            progress: Callable[[int, int], None] | None = None) -> DayResult:
    """Send the day's payments (then its refunds) through the API; returns what happened."""
    plans = plan_day(merchants, day, payments, seed)
    result = DayResult()
    done = 0

    def pay(plan: PlannedPayment):
        headers = {"Authorization": f"Bearer {plan.merchant.api_key}",
                   "Idempotency-Key": f"sim-{seed}-{day.isoformat()}-{plan.index}",
                   "Clearhouse-Test-Clock": iso_z(plan.at)}
        return plan, client.post("/api/v1/payments", json=plan.body, headers=headers)

    def refund(plan: PlannedPayment, payment_id: str):
        assert plan.refund_at is not None  # only planned refunds are made
        body = {"payment_id": payment_id, "reason": "requested_by_customer"}
        if plan.refund_minor is not None:
            body["amount_minor"] = str(plan.refund_minor)
        headers = {"Authorization": f"Bearer {plan.merchant.api_key}",
                   "Idempotency-Key": f"sim-{seed}-{day.isoformat()}-r{plan.index}",
                   "Clearhouse-Test-Clock": iso_z(plan.refund_at)}
        return client.post("/api/v1/refunds", json=body, headers=headers)

    to_refund = []
    _wallet_day(client, merchants, day=day, n=payments, seed=seed, result=result)
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for plan, resp in pool.map(pay, sorted(plans, key=lambda p: p.at)):
            done += 1
            if progress and (done % max(1, payments // 20) == 0 or done == payments):
                progress(done, payments)
            if resp.status_code != 201:
                result.errors.append(f"payment {plan.index}: {resp.status_code} {resp.text[:200]}")
                continue
            body = resp.json()
            result.payments += 1
            if plan.fraud is not None:
                result.planted.append((body["id"], plan.fraud, plan.reported_at))
            result.replayed += resp.headers.get("Idempotent-Replayed") == "true"
            if body["status"] in ("pending_callback", "auth_required"):
                result.pending += 1
                continue
            if body["status"] == "failed":
                result.declined += 1
                continue
            result.succeeded += 1
            code = body["currency"]
            result.captured_by_currency[code] = (result.captured_by_currency.get(code, 0)
                                                 + int(body["amount_minor"]))
            if plan.refund_at is not None:
                to_refund.append((plan, body["id"]))
        for resp in pool.map(lambda item: refund(*item), to_refund):
            if resp.status_code == 201:
                result.refunds += 1
            else:
                result.errors.append(f"refund: {resp.status_code} {resp.text[:200]}")
    return result
