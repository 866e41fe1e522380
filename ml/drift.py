"""Feature drift: the population stability index (PSI) between the training window and a day.

At training time each feature gets up to BINS bins cut at its training deciles (equal values
collapse into one bin) and the training share in each bin; the card keeps them
(`drift_reference`). For a later day, PSI = sum over bins of (p - q) * ln(p / q), with p the
day's share and q the training share, each floored at EPSILON so an empty bin stays finite.
Rule of thumb the check uses: < 0.1 stable, 0.1-0.25 moderate shift (warn), > 0.25 major shift
(the check fails, at warning severity: retrain or look at the data, payments keep flowing).
The day compared is the latest with at least MIN_ROWS payments: on fewer, ten bins' PSI is
mostly sampling noise (about 9 / rows), and a day just begun - or a handful of one merchant's
calls - would raise a false alarm.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl

BINS = 10
EPSILON = 1e-4
MODERATE, MAJOR = 0.1, 0.25
MIN_ROWS = 200


def latest_day(days: pl.Series, min_rows: int = MIN_ROWS) -> tuple[date, int] | None:
    """(the latest day of `days` (dates) with at least `min_rows` entries, its count), or None."""
    counts = days.value_counts(name="rows").filter(pl.col("rows") >= min_rows)
    if counts.height == 0:
        return None
    day, rows = counts.sort(days.name, descending=True).row(0)
    return day, int(rows)


def reference(train: pl.DataFrame, features: list[str]) -> dict[str, dict]:
    out = {}
    for name in features:
        values = train[name].to_numpy().astype(np.float64)
        edges = np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))
        out[name] = {"edges": edges.tolist(), "shares": _shares(values, edges).tolist()}
    return out


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"),
                         minlength=len(edges) + 1).astype(np.float64)
    return counts / max(1, len(values))


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    q = np.maximum(expected, EPSILON)
    p = np.maximum(actual, EPSILON)
    return float(np.sum((p - q) * np.log(p / q)))


def feature_psi(ref: dict[str, dict], frame: pl.DataFrame) -> dict[str, float]:
    """PSI of each referenced feature of `frame` against the training shares."""
    out = {}
    for name, bins in ref.items():
        edges = np.asarray(bins["edges"], dtype=np.float64)
        actual = _shares(frame[name].to_numpy().astype(np.float64), edges)
        out[name] = round(psi(np.asarray(bins["shares"]), actual), 6)
    return out
