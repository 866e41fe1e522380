"""Payment fraud features: batch (polars) and live (Python) agree, and nothing looks ahead."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from ml.payment_features import (
    EVENT_COLUMNS,
    EVENT_SCHEMA,
    FEATURES,
    METHODS,
    NO_HISTORY_HOURS,
    batch_feature_blocks,
    batch_feature_rows,
    batch_features,
    event_features,
)

START = datetime(2026, 3, 1, tzinfo=UTC)


def random_events(n: int, seed: int) -> list[dict]:
    """Few keys (so windows overlap a lot), repeated instants, exact window boundaries, nulls."""
    rng = random.Random(seed)
    instants = [START + timedelta(minutes=rng.randrange(60 * 24 * 40)) for _ in range(n // 2)]
    # Boundaries: payments exactly 1 h, 24 h and 30 d after others.
    instants += [t + d for t in instants[:20] for d in (timedelta(hours=1), timedelta(hours=24),
                                                        timedelta(days=30))]
    rows = []
    for i in range(n):
        rows.append({
            "payment_id": f"pay_{i:05d}",
            "created_at": rng.choice(instants),
            "merchant_id": f"mer_{rng.randrange(3)}",
            "method": rng.choice(METHODS),
            "amount_minor": rng.randrange(1, 500_000),
            "currency": rng.choice(["USD", "EUR", "JPY", "USDC", "XXX"]),
            "customer_id": rng.choice([None, *[f"cus_{k}" for k in range(12)]]),
            "card_fingerprint": rng.choice([None, "fp_a", "fp_b", "fp_c"]),
            "customer_ip": rng.choice([None, "1.1.1.1", "2.2.2.2"]),
            "device_id": rng.choice([None, "dev_1", "dev_2", "dev_3"]),
            "geo": rng.choice([None, "US", "DE", "TW", "52.5,13.4", "nowhere"]),
            "status": rng.choice(["success", "success", "failed", "pending_callback"]),
        })
        # A failure is known from failed_at: at creation (None or the same instant), or later (a
        # pending payment's callback), also exactly on the 1 h and 24 h window edges.
        row = rows[-1]
        row["failed_at"] = None if row["status"] != "failed" else rng.choice([
            None, row["created_at"], *[row["created_at"] + timedelta(minutes=m)
                                       for m in (5, 30, 60, 61, 600, 1440, 1441, 3000)]])
    return rows


def frame(rows: list[dict]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=EVENT_SCHEMA).select(EVENT_COLUMNS)


def test_batch_and_live_agree_on_every_payment():
    """The training-serving skew test: the live function, fed every payment as history, gives
    the batch values for each payment."""
    rows = random_events(600, seed=7)
    batch = batch_features(frame(rows))
    assert batch["payment_id"].to_list() == [r["payment_id"] for r in rows]
    mismatches = []
    for row, computed in zip(rows, batch.iter_rows(named=True), strict=True):
        live = event_features(row, rows)
        for name in FEATURES:
            if computed[name] != pytest.approx(live[name], rel=1e-9, abs=1e-9):
                mismatches.append((row["payment_id"], name, computed[name], live[name]))
    assert not mismatches, mismatches[:10]
    # The data exercise every feature (the comparison above is not vacuous).
    for name in FEATURES:
        assert batch[name].n_unique() > 1, name


def test_sorted_input_and_colliding_key_hashes_give_the_same_features(monkeypatch):
    """Two fast paths, each checked against the general one: input already in (created_at,
    payment_id) order skips the sorts, and keys are grouped by exact codes that their hash only
    helps to find - the same features when every key hashes alike."""
    import ml.payment_features as features

    rows = random_events(600, seed=3)
    shuffled = frame(rows)
    in_order = shuffled.sort("created_at", "payment_id")
    assert not features._in_event_order(shuffled.with_row_index("_row"))
    assert features._in_event_order(in_order.with_row_index("_row"))
    expected = batch_features(shuffled)
    assert batch_features(in_order).equals(
        expected.sort(pl.col("payment_id").replace_strict(
            in_order["payment_id"], range(in_order.height))))

    # the weakest hash: one value for all (equal keys still hash equal); the bytes decide
    coded = []
    column_codes = features._column_codes
    monkeypatch.setattr(features, "_HASH_MASK", np.uint64(0))
    monkeypatch.setattr(features, "_column_codes",
                        lambda values: coded.append(values.name) or column_codes(values))
    assert batch_features(shuffled).equals(expected)
    assert sorted(coded) == sorted(["customer_id", "card_fingerprint", "customer_ip",
                                    "device_id", "merchant_id", "currency"])


def test_no_leakage_later_payments_change_nothing():
    rows = random_events(400, seed=11)
    cut = START + timedelta(days=20)
    early = [r for r in rows if r["created_at"] < cut]
    full = batch_features(frame(rows)).filter(pl.col("payment_id").is_in([r["payment_id"]
                                                                           for r in early]))
    alone = batch_features(frame(early))
    assert full.sort("payment_id").equals(alone.sort("payment_id"))
    # Changing every later payment (amounts, keys, status) changes no earlier feature.
    mutated = early + [{**r, "amount_minor": 1, "status": "failed", "device_id": "dev_x",
                        "customer_id": "cus_0", "geo": "JP"}
                       for r in rows if r["created_at"] >= cut]
    again = batch_features(frame(mutated)).filter(pl.col("payment_id").is_in(
        [r["payment_id"] for r in early]))
    assert again.sort("payment_id").equals(alone.sort("payment_id"))


def test_the_features_of_a_known_story():
    """A customer's usual payment, then a takeover: new device, another country, ten times the
    amount, two declines before it."""
    base = {"merchant_id": "mer_1", "method": "card", "currency": "USD",
            "card_fingerprint": "fp_1", "customer_ip": "9.9.9.9", "customer_id": "cus_1"}
    rows = [
        {**base, "payment_id": "p1", "created_at": START, "amount_minor": 5_000,
         "device_id": "dev_home", "geo": "US", "status": "success"},
        {**base, "payment_id": "p2", "created_at": START + timedelta(hours=2),
         "amount_minor": 5_000, "device_id": "dev_home", "geo": "US", "status": "failed"},
        {**base, "payment_id": "p3", "created_at": START + timedelta(hours=2, minutes=30),
         "amount_minor": 5_000, "device_id": "dev_new", "geo": "DE", "status": "failed"},
        {**base, "payment_id": "p4", "created_at": START + timedelta(hours=3),
         "amount_minor": 50_000, "device_id": "dev_new2", "geo": "DE", "status": "success"},
    ]
    got = batch_features(frame(rows)).row(3, named=True)
    assert got["customer_count_1h"] == 2  # p2 (exactly 1 h before: inside) and p3
    assert got["customer_count_24h"] == 3
    assert got["customer_declines_24h"] == 2
    assert got["new_device"] == 1
    assert got["hours_since_customer_prev"] == pytest.approx(0.5)
    assert got["km_from_customer_prev"] == 0  # p3 was in DE already
    assert got["method_card"] == 1 and got["method_crypto"] == 0
    first = batch_features(frame(rows)).row(0, named=True)
    assert first["hours_since_customer_prev"] == NO_HISTORY_HOURS
    assert first["new_device"] == 0 and first["amount_vs_customer_30d"] == 0
    third = batch_features(frame(rows)).row(2, named=True)
    assert third["km_from_customer_prev"] == pytest.approx(7_800, rel=0.05)  # US -> DE centroids


@pytest.mark.parametrize("rows", [5, 100_000])
@pytest.mark.parametrize("hashes", ["all bits", "none"])
def test_window_keys_are_exact_codes_and_a_null_never_joins_a_key(monkeypatch, rows, hashes):
    """_column_codes: equal keys get one code, different keys different codes (dense, 0 ..
    distinct - 1; 100,000 keys grow the table many times), and a null key gets none (-1) -
    also when every value hashes the same and only the bytes tell them apart."""
    import random

    import numpy as np
    import polars as pl

    import ml.payment_features as features

    if hashes == "none":
        monkeypatch.setattr(features, "_HASH_MASK", np.uint64(0))
    rng = random.Random(rows)
    values = [f"v{i}" for i in range(rows if hashes == "all bits" else 50)]
    keys = ["x", None, "", "xy", "x\0", "a long key that lives in a data buffer"]
    keys += [None if rng.random() < 0.1 else rng.choice(values) for _ in range(rows)]
    code, distinct = features._column_codes(pl.Series(keys, dtype=pl.Utf8))
    assert code.dtype == np.int64
    first_code: dict = {}
    for key, c in zip(keys, code.tolist(), strict=True):
        assert first_code.setdefault(key, c) == c  # equal keys, one code
    assert first_code.pop(None) == -1
    assert sorted(first_code.values()) == list(range(distinct))  # all distinct, dense


def test_no_payments_give_an_empty_feature_frame():
    got = batch_features(frame([]))
    assert got.height == 0 and got.columns == ["payment_id", *FEATURES]


@pytest.mark.parametrize("places", ["few", "many"])
@pytest.mark.parametrize("order", ["input order", "event order"])
def test_the_models_rows_are_the_polars_features_bit_for_bit(order, places):
    """batch_feature_rows (machine code, straight into the model's rows; batch scoring's path)
    equals batch_features' columns bit for bit - nulls (currency without a rate, unknown or
    missing geo, method, customer, device) as the NaN or 0 polars gives - in the input's row
    order, whether or not the input comes in event order; with few places (distances
    remembered per pair) or thousands (more pairs than the memo holds)."""
    rows = random_events(3_000, seed=11)
    for i, row in enumerate(rows[:200]):  # a method that is none of METHODS, and none at all
        row["method"] = "cheque" if i % 2 else None
    for i, row in enumerate(rows[200:260]):  # no currency; a geo that is empty or no place
        row["currency"] = None if i % 3 == 0 else row["currency"]
        row["geo"] = ["", "nowhere", None][i % 3] if i % 2 else row["geo"]
    if places == "many":
        rng = random.Random(12)
        for row in rows[200:]:
            row["geo"] = f"{rng.uniform(-80, 80):.4f},{rng.uniform(-179, 179):.4f}"
    events = frame(rows)
    if order == "event order":
        events = events.sort("created_at", "payment_id")
    expected = batch_features(events)
    ids, got = batch_feature_rows(events)
    assert ids.to_list() == expected["payment_id"].to_list()
    want = expected.select(FEATURES).to_numpy()
    assert got.shape == want.shape and got.flags.c_contiguous
    assert np.array_equal(got, want, equal_nan=True)
    assert np.isnan(want).any() and (want[:, FEATURES.index("km_from_customer_prev")] > 0).any()


def test_no_payments_give_no_rows():
    ids, got = batch_feature_rows(frame([]))
    assert ids.len() == 0 and got.shape == (0, len(FEATURES))
    blocks: list = []
    ids = batch_feature_blocks(frame([]), lambda rows, positions: blocks.append(rows))
    assert ids.len() == 0 and blocks == []


@pytest.mark.parametrize("block_rows", [1, 97, 4_096])
def test_the_blocks_are_the_models_rows(block_rows):
    """batch_feature_blocks hands over every payment's row once, bit for bit the polars
    features, at its position in the input's order - blocks of one row, a ragged last block,
    one block for all - from buffers that are reused (so what is kept is copied)."""
    events = frame(random_events(1_500, seed=13)).sample(fraction=1.0, shuffle=True, seed=2)
    expected = batch_features(events)
    ids, want = expected["payment_id"], expected.select(FEATURES).to_numpy()
    got = np.full_like(want, -1.0)
    seen = np.zeros(len(want), dtype=np.int64)
    sizes: list[int] = []

    def consume(rows: np.ndarray, positions: np.ndarray) -> None:
        assert rows.shape == (len(positions), len(FEATURES))
        got[positions] = rows
        np.add.at(seen, positions, 1)
        sizes.append(len(rows))

    assert batch_feature_blocks(events, consume, block_rows).to_list() == ids.to_list()
    assert (seen == 1).all() and np.array_equal(got, want, equal_nan=True)
    assert max(sizes) == min(block_rows, len(want)) and sum(sizes) == len(want)
    assert len(sizes) == -(-len(want) // block_rows)


def test_a_failing_block_stops_the_call():
    """The exception reaches the caller, and the blocks not yet started are not run."""
    events = frame(random_events(2_000, seed=14)).sort("created_at", "payment_id")
    blocks = []

    def consume(rows: np.ndarray, positions: np.ndarray) -> None:
        blocks.append(positions[0])
        if positions[0] == 0:
            raise RuntimeError("the sink is full")
        time.sleep(0.01)  # the other blocks are slow: all 200 would take 2 s

    with pytest.raises(RuntimeError, match="the sink is full"):
        batch_feature_blocks(events, consume, 10)
    assert 0 in blocks and len(blocks) < 100  # of 200 blocks
