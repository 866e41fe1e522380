"""A labelled payment history from the business-day simulator, offline, for training.

`history(start, days, payments_per_day, seed)` plans each day with `clearhouse.simulator.plan_day`
(the same payments `clearhouse demo` sends through the API) for stand-in merchants
`mer_hist_01`..., and returns (events, labels) without calling the API. Wallet payments are left
out.

What is planted (about 2 % of each day of 50 payments or more, see clearhouse/simulator.py):
- card_testing: one stolen card, one IP and device, 8-25 small payments (1-5 USD/EUR) within
  ten minutes at one merchant, a throwaway customer each time;
- account_takeover: a known customer's account and card from a new device and IP in another
  country, 5-15x the currency's median ticket, mostly at night (0-5 UTC);
- mule_cash_out: one device and IP paying with 4-8 stolen cards and throwaway customers, 3-10x
  the median, within an hour at one merchant;
- friendly_fraud: a known customer's ordinary payment, disputed later.

Events (EVENT_SCHEMA, the payment event layout ml/payment_features.py consumes), one row per
payment, sorted by (created_at, payment_id): payment_id (`pay_hist_<seed>_<yyyymmdd>_<index>`),
created_at (UTC), merchant_id, method (payment method type), amount_minor, currency,
customer_id, card_fingerprint, customer_ip, device_id, geo (country code), status ("failed" for
a payment the channel declines, else "success"; a pending one counts as success). Offline, no
live risk rule runs, so no payment is held for review or rejected by risk here.

Labels (LABEL_SCHEMA): payment_id, kind, reported_at: one row per planted payment that is ever
reported. Labels arrive late: a fraud is known only from its reported_at (1 to 60 days after the
payment, by kind), and about 10 % are never reported and so have no row. Training with a
cut-off t must use only labels with reported_at <= t; a payment whose report comes after t
counts as legitimate at t, as it would have in production.

`write_history` / `read_history` keep both frames as events.parquet and labels.parquet.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import polars as pl

from clearhouse.simulator import MERCHANTS, PlannedPayment, SimMerchant, plan_day
from ml.payment_features import EVENT_SCHEMA, LABEL_SCHEMA
from serving.channels import card_fingerprint, charge

EVENTS_FILE, LABELS_FILE = "events.parquet", "labels.parquet"


def history_merchants() -> list[SimMerchant]:
    """Stand-ins for the demo's merchants (same count and names): no database needed."""
    return [SimMerchant(f"mer_hist_{i:02d}", name, api_key="")
            for i, (name, *_) in enumerate(MERCHANTS, start=1)]


def payment_id(seed: int, day: date, index: int) -> str:
    return f"pay_hist_{seed}_{day:%Y%m%d}_{index:06d}"


def _status(method: dict) -> str:
    """The simulated channel's answer to the instrument: the declines are planned by it."""
    declined = charge("ch_history", method["type"], method).outcome == "declined"
    return "failed" if declined else "success"


def _event(pid: str, plan: PlannedPayment) -> dict:
    method, customer = plan.body["payment_method"], plan.body.get("customer") or {}
    status = _status(method)
    return {"payment_id": pid, "created_at": plan.at, "merchant_id": plan.merchant.id,
            "method": method["type"], "amount_minor": int(plan.body["amount_minor"]),
            "currency": plan.body["currency"], "customer_id": customer.get("id"),
            "card_fingerprint": card_fingerprint(method), "customer_ip": customer.get("ip"),
            "device_id": customer.get("device_id"), "geo": customer.get("geo"),
            "status": status, "failed_at": plan.at if status == "failed" else None}


def history(start: date, days: int, payments_per_day: int,
            seed: int = 42) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events, labels) of `days` simulated days from `start`; the same for the same arguments."""
    merchants = history_merchants()
    events, labels = [], []
    for offset in range(days):
        day = start + timedelta(days=offset)
        for plan in plan_day(merchants, day, payments_per_day, seed):
            pid = payment_id(seed, day, plan.index)
            events.append(_event(pid, plan))
            if plan.fraud is not None and plan.reported_at is not None:
                labels.append({"payment_id": pid, "kind": plan.fraud,
                               "reported_at": plan.reported_at})
    return (pl.DataFrame(events, schema=EVENT_SCHEMA).sort("created_at", "payment_id"),
            pl.DataFrame(labels, schema=LABEL_SCHEMA).sort("reported_at", "payment_id"))


def write_history(directory: Path, events: pl.DataFrame, labels: pl.DataFrame) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    events.write_parquet(directory / EVENTS_FILE)
    labels.write_parquet(directory / LABELS_FILE)


def read_history(directory: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    return pl.read_parquet(directory / EVENTS_FILE), pl.read_parquet(directory / LABELS_FILE)
