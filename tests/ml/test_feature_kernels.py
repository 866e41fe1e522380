"""Each machine-code loop of ml.feature_kernels gives exactly what the numpy or polars step it
replaces gives."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from ml import feature_kernels as kernels


@pytest.mark.parametrize("seed", range(4))
def test_search_left_is_numpys_for_sorted_and_unsorted_queries(seed):
    rng = np.random.default_rng(seed)
    a = np.sort(rng.integers(0, 50, rng.integers(0, 300)))  # runs of equal values
    in_order = np.sort(rng.integers(-5, 60, 500))
    anyhow = rng.integers(-5, 60, 500)
    for v in (in_order, anyhow, np.zeros(0, dtype=np.int64)):
        assert np.array_equal(kernels.search_left(a, v), np.searchsorted(a, v, "left"))


@pytest.mark.parametrize("seed", range(4))
def test_group_order_is_a_stable_sort_by_code(seed):
    """A stable sort by code, null rows (-1) last as code `distinct`, with the codes and ranks
    in that order."""
    rng = np.random.default_rng(seed)
    distinct = int(rng.integers(1, 40))
    codes = rng.integers(-1, distinct, 1_000)
    rank = rng.integers(0, 10**9, 1_000)
    order, key, sorted_rank = kernels.group_order(codes, distinct, rank)
    nulls_last = np.where(codes < 0, distinct, codes)
    expected = np.argsort(nulls_last, kind="stable")
    assert np.array_equal(order, expected)
    assert np.array_equal(key, nulls_last[expected])
    assert np.array_equal(sorted_rank, rank[expected])
    assert (codes < 0).any()


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_running_sums_restart_per_key_as_polars_does(dtype):
    """Running sums of the values taken in `order`, restarted per key: polars' cum_sum over the
    key, bit for bit (floats) and in the values' own type."""
    rng = np.random.default_rng(5)
    order = rng.permutation(2_000)
    keys = np.sort(rng.integers(0, 30, 2_000))
    values = (rng.normal(size=2_000) * 1e6).astype(dtype)
    expected = pl.DataFrame({"k": keys, "v": values[order]}).select(
        pl.col("v").cum_sum().over("k")).to_series().to_numpy()
    got = kernels.running_sums(keys, values, order)
    assert got.dtype == dtype and np.array_equal(got, expected)


@pytest.mark.parametrize("seed", range(3))
def test_window_counts_and_sums_are_numpys_in_frame_order(seed):
    """window_counts and window_sums give what numpy's where, gathers and scatter give: sizes
    and sums of [first, end) within each key's run, 0 for a null key or an empty window, put
    back in frame order."""
    rng = np.random.default_rng(seed)
    n = 3_000
    keys = np.sort(rng.integers(0, 40, n))
    start = np.searchsorted(keys, keys, "left")
    run_end = np.searchsorted(keys, keys, "right")
    end = start + (rng.random(n) * (run_end - start + 1)).astype(np.int64)
    first = start + (rng.random(n) * (end - start + 1)).astype(np.int64)
    null = rng.random(n) < 0.1
    order = rng.permutation(n)
    values = rng.normal(size=n) * 1e3

    def frame_order(sorted_values):
        out = np.empty_like(sorted_values)
        out[order] = sorted_values
        return out

    counts = kernels.window_counts(order, null, end, first)
    assert np.array_equal(counts, frame_order(np.where(null, 0, end - first)))
    running = kernels.running_sums(keys, values, order)
    upto = np.where(end > start, running[np.maximum(end - 1, 0)], 0)
    below = np.where(first > start, running[np.maximum(first - 1, 0)], 0)
    expected = frame_order(np.where(null | (end == first), 0, upto - below))
    assert np.array_equal(kernels.window_sums(order, null, start, end, first, running), expected)
    assert (counts > 0).sum() > n // 2 and (expected != 0).sum() > n // 2


@pytest.mark.parametrize("seed", range(3))
def test_pair_seen_within_is_a_trailing_count_above_zero(seed):
    """Whether an earlier row with the same pair (at an instant before the row's own) lies in
    [t - P, t): brute force on rows with many ties and exact boundaries; a pair with a null
    (-1) code is never seen; thousands of pairs grow the table."""
    rng = np.random.default_rng(seed)
    n = 3_000
    created = np.sort(rng.integers(0, 600, n)) * 10
    first = rng.integers(-1, 60, n)
    second = rng.integers(-1, 5, n)
    period = 100
    got = kernels.pair_seen_within(first, second, 5, created, period)
    same = ((first[:, None] == first[None, :]) & (second[:, None] == second[None, :])
            & (first[:, None] >= 0) & (second[:, None] >= 0))
    inside = (created[None, :] >= created[:, None] - period) & (created[None, :] < created[:, None])
    assert np.array_equal(got, (same & inside).any(axis=1))
    assert got.any() and not got.all() and len({*zip(first, second, strict=True)}) > 300


@pytest.mark.parametrize("hashes", ["all bits", "none"])
@pytest.mark.parametrize("layout", ["one chunk", "chunks", "slice"])
def test_text_codes_are_arrows_dictionary_codes_for_short_and_long_keys(monkeypatch, hashes,
                                                                        layout):
    """text_codes (through ml.payment_features._column_codes, which hands it polars' string
    views) numbers keys as pyarrow's dictionary encoding does (first appearance, nulls none):
    keys held in a view (up to 12 bytes) and longer ones that differ only after their first 4
    bytes or in their last, in one chunk or several, from a slice - also when every key
    hashes the same and only the bytes tell them apart."""
    import pyarrow.compute as pc

    from ml import payment_features as features

    if hashes == "none":
        monkeypatch.setattr(features, "_HASH_MASK", np.uint64(0))
    rng = np.random.default_rng(7)
    pool = ([f"{'p' * 12}{i}" for i in range(40)] + [f"{'p' * 11}{i}" for i in range(40)]
            + [f"k{i}" for i in range(40)] + [f"{'q' * 40}{i}" for i in range(10)]
            + ["", "\0", "é" * 9, "a" * 12, "a" * 13, "p" * 12, "p" * 12 + "\0", "abc", "abcd"])
    values = [None if rng.random() < 0.1 else pool[int(rng.integers(len(pool)))]
              for _ in range(3_000)]
    if layout == "one chunk":
        text = pl.Series(values, dtype=pl.Utf8)
    elif layout == "chunks":  # each chunk its own data buffer
        text = pl.concat([pl.Series(values[i:i + 500], dtype=pl.Utf8)
                          for i in range(0, 3_000, 500)], rechunk=False)
    else:
        text = pl.Series([None, "x" * 20, *values], dtype=pl.Utf8).slice(2)
    if layout == "chunks":  # long keys first seen in one chunk, met again in others
        assert text.n_chunks() == 6
    codes, distinct = features._column_codes(text)
    encoded = pc.dictionary_encode(pl.Series(values, dtype=pl.Utf8).to_arrow())
    assert np.array_equal(codes, pc.fill_null(encoded.indices, -1).to_numpy())
    assert distinct == len(encoded.dictionary) == len({v for v in values if v is not None})


@pytest.mark.parametrize("seed", range(4))
def test_trailing_counts_count_the_codes_earlier_rows_in_each_window(seed):
    """Per row and period P: rows with the same code created in [t - P, t) - rows at t itself
    (before or after it in row order) never count, a window's start is inside it - and 0 for a
    null code (-1); brute force on rows with many ties and exact boundaries."""
    rng = np.random.default_rng(seed)
    n = 1_500
    created = np.sort(rng.integers(0, 400, n)) * 10  # many rows per instant
    codes = rng.integers(-1, int(rng.integers(1, 30)), n)
    periods = np.array([10, 100, 1_000], dtype=np.int64)  # 10: the instant just before counts
    distinct = int(codes.max()) + 1
    got = kernels.trailing_counts(codes, distinct, created, periods)
    same = (codes[:, None] == codes[None, :]) & (codes[:, None] >= 0)
    for j, period in enumerate(periods):
        inside = (created[None, :] >= created[:, None] - period) & (
            created[None, :] < created[:, None])
        assert np.array_equal(got[j], (same & inside).sum(axis=1))
    assert got[0].any() and (got[2] > got[0]).any()
