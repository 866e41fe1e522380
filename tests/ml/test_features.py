"""Features: point-in-time correct, the same in batch and for one event, right by hand."""

from __future__ import annotations

import math

import polars as pl
import pytest

from ml.features import FEATURES, NO_HISTORY_HOURS, batch_features, event_features


def frame(*rows) -> pl.DataFrame:
    """rows: (step, type, amount, nameOrig, oldbalanceOrg, nameDest), seq = position."""
    return pl.DataFrame(
        [{"seq": i, "step": r[0], "type": r[1], "amount": r[2], "nameOrig": r[3],
          "oldbalanceOrg": r[4], "nameDest": r[5]} for i, r in enumerate(rows)],
        schema={"seq": pl.Int64, "step": pl.Int64, "type": pl.String, "amount": pl.Int64,
                "nameOrig": pl.String, "oldbalanceOrg": pl.Int64, "nameDest": pl.String})


def test_features_by_hand():
    events = frame((1, "PAYMENT", 100, "A", 1000, "M1"),
                   (5, "TRANSFER", 300, "A", 900, "B"),
                   (5, "CASH_OUT", 600, "A", 600, "M1"),
                   (30, "CASH_OUT", 50, "A", 0, "B"),
                   (30, "CASH_IN", 50, "Z", 0, "M9"))
    got = batch_features(events).to_dicts()
    assert [r["origin_count_1h"] for r in got] == [0, 0, 1, 0, 0]
    assert [r["origin_count_24h"] for r in got] == [0, 1, 2, 0, 0]  # step 30: 5 is 25 h ago
    assert [r["hours_since_origin_prev"] for r in got] == [NO_HISTORY_HOURS, 4, 0, 25,
                                                           NO_HISTORY_HOURS]
    assert [r["dest_seen_before"] for r in got] == [0, 0, 1, 1, 0]
    assert [r["balance_drained_fraction"] for r in got] == [0.1, 300 / 900, 1.0, 0.0, 0.0]
    assert [r["drains_balance"] for r in got] == [0, 0, 1, 0, 0]  # 0 balance: nothing drained
    assert [r["hour_of_day"] for r in got] == [1, 5, 5, 6, 6]
    assert got[2]["log_amount_vs_origin_mean"] == pytest.approx(math.log1p(600) - math.log1p(200))
    assert got[0]["log_amount_vs_origin_mean"] == 0.0
    assert got[1]["type_TRANSFER"] == 1 and got[1]["type_PAYMENT"] == 0
    assert batch_features(events).columns == ["seq", *FEATURES]


def test_a_future_event_never_changes_earlier_features(events):
    ordered = events.sort("step", "seq").with_columns(seq=pl.int_range(pl.len(), dtype=pl.Int64))
    cut = ordered.height // 2
    at_cut = ordered.row(cut, named=True)
    base = batch_features(ordered)
    # Every later event rewritten onto the cut event's accounts with other amounts, plus two new
    # events for those accounts: one in the same step just after the cut event, one 3 steps on.
    later = ordered.slice(cut + 1).with_columns(
        seq=pl.col("seq") + 10, amount=pl.col("amount") * 7 + 1,
        nameOrig=pl.lit(at_cut["nameOrig"]), nameDest=pl.lit(at_cut["nameDest"]))
    same_step = ordered.slice(cut, 1).with_columns(seq=pl.lit(cut + 1, pl.Int64),
                                                   amount=pl.lit(10**9, pl.Int64))
    next_steps = same_step.with_columns(seq=pl.lit(ordered.height + 20, pl.Int64),
                                        step=pl.col("step") + 3)
    after = batch_features(pl.concat([ordered.head(cut + 1), same_step, later, next_steps]))

    def upto_cut(features):
        return features.filter(pl.col("seq") <= cut).sort("seq")

    assert upto_cut(after).equals(upto_cut(base))
    # the new same-step event does see the cut event: the test would catch a leak
    seen = after.filter(pl.col("seq") == cut + 1).row(0, named=True)
    assert seen["origin_count_1h"] >= 1 and seen["dest_seen_before"] == 1


def test_batch_and_single_event_features_are_identical(events):
    batch = {row["seq"]: row for row in batch_features(events).to_dicts()}
    ordered = events.sort("step", "seq")
    # every 40th event, plus all fraud events (bursts: the same-hour history matters)
    picks = sorted(set(range(0, ordered.height, 40))
                   | set(ordered.with_row_index("i").filter(pl.col("isFraud") == 1)["i"]))
    for i in picks:
        event = ordered.row(i, named=True)
        single = event_features(event, ordered.head(i))
        assert single == {name: float(batch[event["seq"]][name]) for name in FEATURES}, i


def test_single_event_refuses_a_history_from_the_future(events):
    first = events.sort("step").row(0, named=True)
    with pytest.raises(ValueError, match="after the one being scored"):
        event_features(first, events)
