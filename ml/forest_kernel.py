"""The compiled forest's trees walked row by row in machine code (numba), for batch scoring.

scikit-learn's predictor walks all rows through one tree, then all rows through the next: every
tree reads the whole input again. Here each row goes through every tree while its features sit
in the core's cache, about twice as fast on a million rows. The arithmetic is ml.compiled's,
step for step - `value > threshold` goes right, NaN goes to the node's missing-value side, leaf
values added to the baseline tree after tree in scikit-learn's order - so the raw scores are bit
for bit scikit-learn's (tests/ml/test_compiled.py compares them).

Only batch scoring comes here (ml.compiled sends inputs of at least KERNEL_ROWS rows): importing
numba and loading the cached machine code cost about a second, which the API's one-row scoring
never pays. The kernel releases the GIL; slices of rows are walked by plain threads, one per
usable core (no numba threading layer to set up or to misuse from threads).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
from numba import njit

from ml.cores import usable_cores

if TYPE_CHECKING:
    from ml.compiled import Forest


@njit(nogil=True, cache=True)
def _walk(x, out, start, stop, feature, threshold, missing_right, internal, children, value,
          roots, baseline):  # pragma: no cover - machine code; tested through raw_scores
    for i in range(start, stop):
        row = x[i]
        total = baseline
        for tree in range(roots.shape[0]):
            node = roots[tree]
            while internal[node]:
                v = row[feature[node]]
                right = v > threshold[node] or (np.isnan(v) and missing_right[node])
                node = children[node + right]
            total += value[node]
        out[i] = total


SLICE_ROWS = 65_536  # rows per piece of work: small enough for the threads to share evenly


def raw_scores(forest: Forest, x: np.ndarray) -> np.ndarray:
    """forest.raw(x), walked in machine code: slices of SLICE_ROWS rows taken in turn by one
    thread per usable core (a core that falls behind - another process on it - takes fewer)."""
    x = np.ascontiguousarray(x, dtype=np.float64)
    n = len(x)
    out = np.empty(n)

    def walk(start: int) -> None:
        _walk(x, out, start, min(start + SLICE_ROWS, n), forest.feature, forest.threshold,
              forest.missing_right, forest.internal, forest.children, forest.value,
              forest.roots, forest.baseline)

    starts = range(0, n, SLICE_ROWS)
    with ThreadPoolExecutor(max_workers=max(1, min(usable_cores(), len(starts)))) as pool:
        list(pool.map(walk, starts))
    return out
