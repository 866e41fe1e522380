"""The two kinds of labelled data the models learn from, described once for ml.train.

- PAYSIM: public benchmark data in the PaySim column layout (ml.paysim, ml.features); time is
  the hourly `step`, the label `isFraud`, amounts in one currency.
- PAYMENTS: Clearhouse payments in the payment event layout (ml.payment_features) with a label
  `is_fraud` from the fraud reports known at training time (`label_payments`); time is
  `created_at`, split by UTC day; amounts in many currencies, so money metrics are per currency.

Each names its row key, arrival order, split period, label, amount columns, feature function
and its rules-only baseline (the rule the model must beat on money saved).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import polars as pl

from ml import features as paysim_features
from ml import payment_features


def feature_matrix(frame: pl.DataFrame, names: tuple[str, ...] | list[str]) -> np.ndarray:
    """The model's input: the named feature columns as float64, one row per payment, in row-major
    (C) order - scikit-learn's tree predictor walks a row's features, and reads them about 10 %
    faster from one row than from columns 8 MB apart (1M rows)."""
    return np.ascontiguousarray(frame.select(names).to_numpy(order="c"), dtype=np.float64)


@dataclass(frozen=True)
class FeatureSet:
    name: str
    features: tuple[str, ...]
    key: str  # one row's id
    order: tuple[str, ...]  # arrival order
    period: str  # integer time bucket: the train/holdout cut falls on its boundary
    label: str
    amount: str  # minor units
    currency: str | None  # None: one currency
    compute: Callable[[pl.DataFrame], pl.DataFrame]  # key + features, in input order
    rule: Callable[[pl.DataFrame], np.ndarray]  # rows (with features) -> flagged
    identity: tuple[str, ...]  # columns that identify the holdout's content (fingerprint)
    with_period: Callable[[pl.DataFrame], pl.DataFrame] = lambda frame: frame


def paysim_rule(frame: pl.DataFrame) -> np.ndarray:
    """PaySim's own isFlaggedFraud, or a TRANSFER/CASH_OUT that moves the origin's whole balance
    (amount >= oldbalanceOrg > 0), the classic drain rule."""
    drains = ((pl.col("type").is_in(["TRANSFER", "CASH_OUT"])) & (pl.col("oldbalanceOrg") > 0)
              & (pl.col("amount") >= pl.col("oldbalanceOrg")))
    return frame.select((pl.col("isFlaggedFraud") == 1) | drains).to_series().to_numpy()


def payments_rule(frame: pl.DataFrame) -> np.ndarray:
    """The live API's soft rules (serving/risk.py) in feature terms: more than 10 payments in an
    hour per customer, card or device (this one included), more than 50 per IP, or a payment
    more than 500 km from the customer's previous one less than an hour ago."""
    from serving.risk import GEO_KM, VELOCITY

    velocity = [pl.col(f"{key}_count_1h") + 1 > VELOCITY[column][0]
                for key, column in payment_features.KEYS.items()]
    geo = ((pl.col("km_from_customer_prev") > GEO_KM)
           & (pl.col("hours_since_customer_prev") < 1))
    return frame.select(pl.any_horizontal(*velocity, geo)).to_series().to_numpy()


PAYSIM = FeatureSet(
    name="paysim", features=paysim_features.FEATURES, key="seq", order=("step", "seq"),
    period="step", label="isFraud", amount="amount", currency=None,
    compute=paysim_features.batch_features, rule=paysim_rule,
    identity=("step", "type", "amount", "nameOrig", "nameDest", "isFraud"))

PAYMENTS = FeatureSet(
    name="payments", features=payment_features.FEATURES, key="payment_id",
    order=("created_at", "payment_id"), period="day", label="is_fraud", amount="amount_minor",
    currency="currency", compute=payment_features.batch_features, rule=payments_rule,
    identity=("payment_id", "created_at", "amount_minor", "currency", "is_fraud"),
    with_period=lambda frame: frame.with_columns(
        day=pl.col("created_at").dt.date().cast(pl.Int32)))

FEATURE_SETS = {fs.name: fs for fs in (PAYSIM, PAYMENTS)}


def label_payments(events: pl.DataFrame, labels: pl.DataFrame, known_at: datetime) -> pl.DataFrame:
    """events + is_fraud (0/1): 1 for a payment with a fraud report whose reported_at is at or
    before `known_at`. Reports that arrive later are unknown at training time and stay 0, as
    they would have in life."""
    known = (labels.filter(pl.col("reported_at") <= known_at)
             .select("payment_id").unique().with_columns(is_fraud=pl.lit(1, pl.Int8)))
    return (events.join(known, on="payment_id", how="left", maintain_order="left")
            .with_columns(pl.col("is_fraud").fill_null(0)))
