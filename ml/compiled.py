"""A fitted fraud model as plain arrays, for scoring a few rows fast (the live API).

scikit-learn's predict_proba costs about a millisecond per call on one row, whatever the row
count, in input validation and thread set-up; the live risk check scores 1 + len(features) rows
(the payment and its reason probes) on every payment. `compile_model` turns the models
ml.train fits - a CalibratedClassifierCV over HistGradientBoostingClassifier or over
StandardScaler + LogisticRegression, sigmoid calibration, any number of members - into numpy
arrays and evaluates them the way scikit-learn does, step for step:

- trees: every tree's nodes in one table (children offset to the table, a leaf its own child),
  all (row, tree) pairs walked down together, one level per step until all are at leaves; NaN
  follows the node's missing-value side, otherwise `value <= threshold` goes left (sklearn's
  _predictor.pyx);
  the raw score is the baseline plus the leaf values added tree after tree, in sklearn's order
  (a cumulative sum), so the sum is bit for bit the same;
- logistic: (x - mean) / scale, then x @ coef.T + intercept, as StandardScaler and
  LogisticRegression compute them;
- calibration: expit(-(a * raw + b)) per member, [1 - p, p] averaged over the members.

`compile_model` checks the result against the original's predict_proba on probe rows and
refuses (CompileError) any model it does not know or does not reproduce exactly; the caller
then keeps scikit-learn. From KERNEL_ROWS rows on (batch scoring) the trees are compiled to
machine code by ml.forest_kernel (LLVM) - the same compares and the same sum order, about five
times as fast as scikit-learn's own predictor on a million rows - and so are the blocks of rows
ml.batch's threads score (`predict_proba(block, here=True)`); tests/ml/test_compiled.py
compares all of them on real and random rows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from scipy.special import expit

log = logging.getLogger(__name__)

# From this many rows on, trees are walked by ml.forest_kernel (LLVM) instead of numpy: the live
# API scores 1 + len(features) rows at most and never loads llvmlite.
KERNEL_ROWS = 10_000


class CompileError(ValueError):
    pass


# eq=False: compared and hashed by identity - ml.forest_kernel keeps its machine code by forest
@dataclass(frozen=True, eq=False)
class Forest:
    """Every tree's nodes in one table. A node is addressed by twice its index (2i), so that
    2i + 1 addresses "the right-hand side of node i": `children[2i]` is the left child's address,
    `children[2i + 1]` the right one's, and the per-node columns are stored twice (at 2i and
    2i + 1) to be read with either. A leaf is its own child, so extra steps stay put."""

    feature: np.ndarray  # per address; 0 at leaves
    threshold: np.ndarray  # per address; +inf at leaves
    missing_right: np.ndarray  # bool per address: NaN goes right
    internal: np.ndarray  # bool per address
    children: np.ndarray
    value: np.ndarray  # leaf values (0 at split nodes)
    roots: np.ndarray  # each tree's root address, in scikit-learn's order
    depth: int  # the deepest leaf: steps enough to reach every leaf
    baseline: float

    def raw(self, x: np.ndarray, here: bool = False) -> np.ndarray:
        """The raw scores of rows x. `here`: x is one block of a batch that the caller's
        threads share - walked in machine code on this thread, whatever its size."""
        if here:
            from ml.forest_kernel import raw_scores_here

            return raw_scores_here(self, x)
        if len(x) >= KERNEL_ROWS:  # batch scoring: the same walk, compiled to machine code
            from ml.forest_kernel import raw_scores

            return raw_scores(self, x)
        n, width = x.shape
        trees = len(self.roots)
        flat = x.ravel()
        node = np.tile(self.roots, n)  # (row, tree) pairs, row-major
        start = np.repeat(np.arange(n) * width, trees)  # the row's offset in `flat`
        missing = bool(np.isnan(flat).any())
        for _ in range(self.depth):
            value = flat[self.feature[node] + start]
            right = value > self.threshold[node]  # NaN compares False ...
            if missing:  # ... and goes to the node's missing-value side
                right |= np.isnan(value) & self.missing_right[node]
            node = self.children[node + right]
            if not self.internal[node].any():
                break
        terms = np.concatenate([np.full((n, 1), self.baseline),
                                self.value[node].reshape(n, trees)], axis=1)
        return np.cumsum(terms, axis=1)[:, -1]


@dataclass(frozen=True)
class Linear:
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # shape (1, n_features), as LogisticRegression.coef_
    intercept: np.ndarray  # shape (1,)

    def raw(self, x: np.ndarray, here: bool = False) -> np.ndarray:
        """The raw scores of rows x (`here` as Forest.raw's: one matrix product either way)."""
        scaled = (x - self.mean) / self.scale
        return (scaled @ self.coef.T + self.intercept).ravel()


@dataclass(frozen=True)
class Member:
    model: Forest | Linear
    a: float
    b: float

    def proba(self, x: np.ndarray, here: bool = False) -> np.ndarray:
        return expit(-(self.a * self.model.raw(x, here) + self.b))


@dataclass(frozen=True)
class CompiledModel:
    members: tuple[Member, ...]
    n_features: int

    def predict_proba(self, x: np.ndarray, here: bool = False) -> np.ndarray:
        """Like scikit-learn's: shape (n, 2), column 1 the fraud probability. `here`: x is one
        block of a batch that the caller's threads share (Forest.raw)."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {x.shape}")
        out = np.zeros((len(x), 2))
        for member in self.members:  # as CalibratedClassifierCV averages its members
            positive = member.proba(x, here)
            out += np.column_stack([1.0 - positive, positive])
        out /= len(self.members)
        return out


def compile_model(model, probe: np.ndarray) -> CompiledModel:
    """The arrays of `model`, checked to give exactly its predict_proba on `probe` rows."""
    try:
        members = tuple(_member(c) for c in model.calibrated_classifiers_)
        n_features = int(model.n_features_in_)
    except AttributeError as exc:
        raise CompileError(f"not a calibrated model ml.train fits: {exc}") from exc
    if not members:
        raise CompileError("the model has no calibrated members")
    compiled = CompiledModel(members, n_features)
    expected = model.predict_proba(probe)[:, 1]
    got = compiled.predict_proba(probe)[:, 1]
    if not np.array_equal(expected, got):
        worst = float(np.max(np.abs(expected - got)))
        raise CompileError(f"compiled model differs from scikit-learn by up to {worst:g}")
    return compiled


def compiled_or_model(model, card: dict):
    """A registered model compiled (probed on its card's reference row, zeros and a row far
    out), or the model itself, with a warning, when it does not compile."""
    reference = np.array([[card["reference"][name] for name in card["features"]]])
    probe = np.vstack([reference, np.zeros_like(reference), reference * 10 + 1])
    try:
        return compile_model(model, probe)
    except CompileError as exc:
        log.warning("fraud model %s: scoring with scikit-learn (%s)", card.get("version"), exc)
        return model


def _member(calibrated) -> Member:
    from sklearn.calibration import _SigmoidCalibration

    (calibrator,) = calibrated.calibrators
    if not isinstance(calibrator, _SigmoidCalibration):
        raise CompileError(f"calibration {type(calibrator).__name__} is not sigmoid")
    estimator = getattr(calibrated.estimator, "estimator", calibrated.estimator)  # Frozen
    return Member(_raw_model(estimator), float(calibrator.a_), float(calibrator.b_))


def _raw_model(estimator) -> Forest | Linear:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    if isinstance(estimator, HistGradientBoostingClassifier):
        return _forest(estimator)
    if isinstance(estimator, Pipeline) and len(estimator.steps) == 2:
        return _linear(*(step for _, step in estimator.steps))
    raise CompileError(f"model {type(estimator).__name__} cannot be compiled")


def _forest(gbm) -> Forest:
    if gbm.n_trees_per_iteration_ != 1:
        raise CompileError("only binary gradient boosting compiles")
    if getattr(gbm, "is_categorical_", None) is not None and np.any(gbm.is_categorical_):
        raise CompileError("categorical splits do not compile")
    trees = [predictors[0].nodes for predictors in gbm._predictors]
    offsets = np.cumsum([0, *(len(nodes) for nodes in trees[:-1])])
    nodes = np.concatenate(trees)
    index = np.arange(len(nodes))
    leaf = nodes["is_leaf"].astype(bool)
    shift = np.repeat(offsets, [len(t) for t in trees])
    left = np.where(leaf, index, nodes["left"].astype(np.intp) + shift)
    right = np.where(leaf, index, nodes["right"].astype(np.intp) + shift)

    def twice(column: np.ndarray) -> np.ndarray:
        return np.repeat(column, 2)

    return Forest(
        feature=twice(np.where(leaf, 0, nodes["feature_idx"]).astype(np.intp)),
        threshold=twice(np.where(leaf, np.inf, nodes["num_threshold"])),
        missing_right=twice(~nodes["missing_go_to_left"].astype(bool)),
        internal=twice(~leaf),
        children=np.column_stack([2 * left, 2 * right]).ravel(),
        value=twice(np.where(leaf, nodes["value"], 0.0)),
        roots=(2 * offsets).astype(np.intp),
        depth=int(nodes["depth"].max()) if len(nodes) else 0,
        baseline=float(np.ravel(gbm._baseline_prediction)[0]))


def _linear(scaler, logistic) -> Linear:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if not (isinstance(scaler, StandardScaler) and isinstance(logistic, LogisticRegression)):
        raise CompileError("only StandardScaler + LogisticRegression compiles")
    if logistic.coef_.shape[0] != 1:
        raise CompileError("only binary logistic regression compiles")
    scale = scaler.scale_ if scaler.scale_ is not None else np.ones(scaler.n_features_in_)
    mean = scaler.mean_ if scaler.mean_ is not None else np.zeros(scaler.n_features_in_)
    return Linear(mean=mean, scale=scale, coef=logistic.coef_, intercept=logistic.intercept_)
