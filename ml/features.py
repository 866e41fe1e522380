"""Fraud features for PaySim-layout events: one definition for training and for scoring.

Time and order. An event's time is its `step` (one hour); within a step, events are ordered by
`seq` (their order of arrival, the file order for PaySim). "Before an event" means earlier in
(step, seq) order, and every feature of an event uses only the event itself and events before it
(point-in-time correct: a later or a same-step-but-later event never changes it). A live scorer
sees exactly that history: everything that arrived before the event.

One definition. `batch_features(frame)` is the only place the features are computed.
`event_features(event, history)` scores one new event by running `batch_features` on the event
appended to the part of the history that can affect it (the origin's past events and the
destination's past appearances), so training and scoring cannot drift apart. It filters the
history on each call: good for evaluation and tests; the live API (a later slice) will need the
same values kept as per-account state, checked against this function.

The features (FEATURES, in model column order):
- log_amount: log1p(amount in minor units).
- log_amount_vs_origin_mean: log1p(amount) - log1p(mean of the origin's past amounts); 0 without
  a past (an unknown account's amount is "as usual" rather than extreme).
- origin_count_1h, origin_count_24h: the origin's past events in the last 1 / 24 steps,
  counting the event's own step (step > this step - window).
- hours_since_origin_prev: steps since the origin's previous event; NO_HISTORY_HOURS without one
  (a finite stand-in so the logistic baseline needs no missing-value handling).
- type_<TYPE>: one-hot of the transaction type (ml.paysim.TYPES).
- dest_seen_before: 1 if the destination was the destination of any earlier event.
- balance_drained_fraction: min(amount, oldbalanceOrg) / oldbalanceOrg; 0 when the balance was 0
  (nothing to drain; never a division by zero).
- drains_balance: 1 if amount >= oldbalanceOrg > 0, compared exactly on integer minor units.
- hour_of_day: step mod 24.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import polars as pl

from ml.paysim import TYPES

WINDOWS = {"origin_count_1h": 1, "origin_count_24h": 24}
NO_HISTORY_HOURS = 10_000

FEATURES: tuple[str, ...] = (
    "log_amount",
    "log_amount_vs_origin_mean",
    *WINDOWS,
    "hours_since_origin_prev",
    *[f"type_{name}" for name in TYPES],
    "dest_seen_before",
    "balance_drained_fraction",
    "drains_balance",
    "hour_of_day",
)

_INPUT = ("seq", "step", "type", "amount", "nameOrig", "oldbalanceOrg", "nameDest")


def batch_features(events: pl.DataFrame) -> pl.DataFrame:
    """`seq` plus FEATURES for every event, in the input's row order."""
    ordered = events.select(_INPUT).sort("step", "seq")
    amount = pl.col("amount")
    old = pl.col("oldbalanceOrg")
    by_origin = ordered.with_columns(
        past_count=pl.int_range(pl.len()).over("nameOrig"),
        past_sum=(amount.cum_sum() - amount).over("nameOrig"),
        prev_step=pl.col("step").shift(1).over("nameOrig"),
        dest_seen_before=(~pl.col("nameDest").is_first_distinct()).cast(pl.Int8),
    )
    for name, window in WINDOWS.items():
        by_origin = by_origin.with_columns(
            (pl.col("past_count") - _count_through(ordered, window)).alias(name))
    log_amount = amount.log1p()
    past_mean = pl.col("past_sum") / pl.col("past_count")
    return by_origin.select(
        "seq",
        log_amount.alias("log_amount"),
        pl.when(pl.col("past_count") > 0).then(log_amount - past_mean.log1p()).otherwise(0.0)
        .alias("log_amount_vs_origin_mean"),
        *[pl.col(name) for name in WINDOWS],
        (pl.col("step") - pl.col("prev_step")).fill_null(NO_HISTORY_HOURS)
        .alias("hours_since_origin_prev"),
        *[(pl.col("type") == name).cast(pl.Int8).alias(f"type_{name}") for name in TYPES],
        "dest_seen_before",
        pl.when(old > 0).then(pl.min_horizontal(amount, old) / old).otherwise(0.0)
        .alias("balance_drained_fraction"),
        ((old > 0) & (amount >= old)).cast(pl.Int8).alias("drains_balance"),
        (pl.col("step") % 24).alias("hour_of_day"),
    ).sort("seq").pipe(_in_order_of, events)


def _count_through(ordered: pl.DataFrame, window: int) -> pl.Series:
    """For each event: how many of its origin's events have step <= step - window (all of them
    before it). The origin's past count minus this is its count inside the window."""
    through_step = (ordered.group_by("nameOrig", "step").len()
                    .sort("step")
                    .with_columns(through=pl.col("len").cum_sum().over("nameOrig")))
    looked_up = ordered.with_columns(cutoff=pl.col("step") - window).join_asof(
        through_step.select("nameOrig", pl.col("step").alias("cutoff"), "through"),
        on="cutoff", by="nameOrig", strategy="backward", check_sortedness=False)
    return looked_up["through"].fill_null(0)


def _in_order_of(features: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    return events.select("seq").join(features, on="seq", how="left", maintain_order="left")


def event_features(event: Mapping[str, object], history: pl.DataFrame) -> dict[str, float]:
    """FEATURES of one new event, given the events that arrived before it (`history`, in the
    layout of ml.paysim.load_paysim). The event needs step, type, amount, nameOrig,
    oldbalanceOrg and nameDest; it is placed after every event of the history."""
    if history.height and cast(int, history["step"].max()) > cast(int, event["step"]):
        raise ValueError("the history holds events after the one being scored")
    relevant = history.filter((pl.col("nameOrig") == event["nameOrig"])
                              | (pl.col("nameDest") == event["nameDest"])).select(_INPUT)
    seq = cast(int, history["seq"].max()) + 1 if history.height else 0
    new = pl.DataFrame([{**{name: event[name] for name in _INPUT[1:]}, "seq": seq}]).select(_INPUT)
    row = batch_features(pl.concat([relevant, new], how="vertical_relaxed")).row(-1, named=True)
    return {name: float(row[name]) for name in FEATURES}
