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
    rng = np.random.default_rng(seed)
    distinct = int(rng.integers(1, 40))
    codes = rng.integers(0, distinct, 1_000)
    assert np.array_equal(kernels.group_order(codes, distinct),
                          np.argsort(codes, kind="stable"))


def test_running_sums_restart_per_key_as_polars_does():
    rng = np.random.default_rng(5)
    keys = np.sort(rng.integers(0, 30, 2_000))
    values = rng.normal(size=2_000) * 1e6
    expected = pl.DataFrame({"k": keys, "v": values}).select(
        pl.col("v").cum_sum().over("k")).to_series().to_numpy()
    assert np.array_equal(kernels.running_sums(keys, values), expected)


def test_pair_codes_number_each_pair_once_and_skip_nulls():
    rng = np.random.default_rng(6)
    first = rng.integers(-1, 20, 5_000)  # -1: null
    second = rng.integers(-1, 7, 5_000)
    codes, distinct = kernels.pair_codes(first, second, 7)
    complete = (first >= 0) & (second >= 0)
    assert np.all(codes[~complete] == -1)
    pairs = list(zip(first[complete].tolist(), second[complete].tolist(), strict=True))
    seen: dict[tuple, int] = {}
    for pair, code in zip(pairs, codes[complete].tolist(), strict=True):
        assert seen.setdefault(pair, len(seen)) == code  # dense, in order of first appearance
    assert distinct == len(seen)
