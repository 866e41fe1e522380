"""The compiled model gives scikit-learn's probabilities bit for bit, or refuses to compile."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import TimeSeriesSplit

from ml.compiled import CompiledModel, CompileError, compile_model
from ml.train import fit, matrix


@pytest.fixture(scope="module")
def holdout_rows(split):
    return matrix(split.holdout)


@pytest.mark.parametrize("name", ["gbm", "logistic"])
def test_compiled_equals_scikit_learn_on_every_holdout_row(split, holdout_rows, name):
    model = fit(name, split.train)
    compiled = compile_model(model, holdout_rows[:10])
    assert isinstance(compiled, CompiledModel)
    expected = model.predict_proba(holdout_rows)
    got = compiled.predict_proba(holdout_rows)
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)  # exact, not approximately
    # one row at a time too (the live path)
    assert all(np.array_equal(compiled.predict_proba(row[None, :]), model.predict_proba(row[None, :]))
               for row in holdout_rows[:50])


def _noisy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = ((x[:, 0] + np.nan_to_num(x[:, 1]) * 2 + rng.normal(size=n)) > 2.5).astype(int)
    x[rng.random((n, 4)) < 0.1] = np.nan  # missing values, learned per split
    return x, y


def test_missing_values_follow_the_learned_side_and_ensembles_average():
    x, y = _noisy(3_000, 1)
    # an ensemble of per-fold calibrated models, as earlier model versions were trained
    model = CalibratedClassifierCV(HistGradientBoostingClassifier(random_state=0),
                                   method="sigmoid", cv=TimeSeriesSplit(n_splits=3)).fit(x, y)
    assert len(model.calibrated_classifiers_) == 3
    probe, _ = _noisy(2_000, 2)
    compiled = compile_model(model, probe[:5])
    assert np.isnan(probe).any()
    assert np.array_equal(compiled.predict_proba(probe), model.predict_proba(probe))
    # rows without any missing value take the fast path and still agree
    complete = np.nan_to_num(probe)
    assert np.array_equal(compiled.predict_proba(complete), model.predict_proba(complete))


@pytest.mark.parametrize("name", ["gbm", "logistic"])
def test_the_machine_code_walk_equals_scikit_learn(monkeypatch, split, holdout_rows, name):
    """Batch scoring's path (ml.forest_kernel), forced for every row count here: the same
    probabilities bit for bit, on rows with and without missing values, sliced over threads."""
    import ml.compiled
    import ml.forest_kernel

    model = fit(name, split.train)
    compiled = compile_model(model, holdout_rows[:10])
    monkeypatch.setattr(ml.compiled, "KERNEL_ROWS", 1)
    monkeypatch.setattr(ml.forest_kernel, "SLICE_ROWS", 97)  # many slices, the last one short
    walked = []
    monkeypatch.setattr(ml.forest_kernel, "_walk", _recording(ml.forest_kernel._walk, walked))
    assert np.array_equal(compiled.predict_proba(holdout_rows), model.predict_proba(holdout_rows))
    assert np.array_equal(compiled.predict_proba(holdout_rows[:1]),
                          model.predict_proba(holdout_rows[:1]))
    assert (sum(walked) == len(holdout_rows) + 1) == (name == "gbm")  # every row once; the
    # logistic baseline has no trees to walk
    # a block that one of batch scoring's threads walks itself (here=True): one call, no slices
    walked.clear()
    block = holdout_rows[:300]
    assert np.array_equal(compiled.predict_proba(block, here=True), model.predict_proba(block))
    assert walked == ([300] if name == "gbm" else [])

    x, y = _noisy(3_000, 4)
    ensemble = CalibratedClassifierCV(HistGradientBoostingClassifier(random_state=0),
                                      method="sigmoid", cv=TimeSeriesSplit(n_splits=3)).fit(x, y)
    probe, _ = _noisy(20_000, 5)
    assert np.array_equal(compile_model(ensemble, probe[:5]).predict_proba(probe),
                          ensemble.predict_proba(probe))


def _recording(kernel, calls: list):
    def walk(*args):
        calls.append(args[4] - args[3])  # rows in this slice
        return kernel(*args)
    return walk


def test_the_machine_code_walks_trees_of_a_single_leaf_and_refuses_narrow_rows():
    """Trees that never split (a leaf at the root) and a forest of none compile too; rows with
    fewer columns than the trees read are refused, never read past their end."""
    from dataclasses import replace

    from ml.compiled import _forest
    from ml.forest_kernel import raw_scores

    x, y = _noisy(400, 6)
    stumps = HistGradientBoostingClassifier(max_iter=3, min_samples_leaf=300,
                                            early_stopping=False).fit(x, y)
    forest = _forest(stumps)
    assert len(forest.roots) == 3 and not forest.internal.any()
    probe, _ = _noisy(50, 7)
    assert np.array_equal(raw_scores(forest, probe), forest.raw(probe))
    empty = replace(forest, roots=forest.roots[:0])
    assert np.array_equal(raw_scores(empty, probe), np.full(50, forest.baseline))

    split = _forest(HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(x, y))
    assert np.array_equal(raw_scores(split, probe), split.raw(probe))
    widest = int(split.feature[split.internal].max())
    with pytest.raises(ValueError, match="features"):
        raw_scores(split, probe[:, :widest])


def test_the_live_path_never_loads_numba():
    """The API scores 1 + len(features) rows - below KERNEL_ROWS - and computes one payment's
    features in plain Python: numba and llvmlite (a second to import, load or compile) stay out
    of its process."""
    import subprocess
    import sys

    code = ("import sys, numpy as np\n"
            "from sklearn.linear_model import LogisticRegression\n"
            "from sklearn.calibration import CalibratedClassifierCV\n"
            "from sklearn.ensemble import HistGradientBoostingClassifier\n"
            "from ml.compiled import compiled_or_model\n"
            "x = np.random.default_rng(0).normal(size=(400, 3)); y = (x[:, 0] > 1).astype(int)\n"
            "m = CalibratedClassifierCV(HistGradientBoostingClassifier(max_iter=5), cv=2).fit(x, y)\n"
            "card = {'features': ['a', 'b', 'c'], 'reference': {'a': 0.0, 'b': 0.0, 'c': 0.0}}\n"
            "compiled_or_model(m, card).predict_proba(x[:26])\n"
            "from datetime import datetime, UTC\n"
            "from ml.payment_features import event_features\n"
            "event = {'payment_id': 'p', 'created_at': datetime.now(UTC), 'amount_minor': 100,\n"
            "         'currency': 'USD', 'merchant_id': 'm', 'customer_id': 'c', 'status': 'success'}\n"
            "event_features(event, [])\n"
            "print('numba' in sys.modules, 'llvmlite' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "False False"


def test_models_it_does_not_know_are_refused():
    x, y = _noisy(500, 3)
    x = np.nan_to_num(x)
    with pytest.raises(CompileError, match="not a calibrated model"):
        compile_model(LogisticRegression().fit(x, y), x[:3])
    isotonic = CalibratedClassifierCV(LogisticRegression(), method="isotonic", cv=2).fit(x, y)
    with pytest.raises(CompileError, match="isotonic|not sigmoid|cannot be compiled"):
        compile_model(isotonic, x[:3])


def test_wrong_width_is_an_error(split, gbm, holdout_rows):
    compiled = compile_model(gbm, holdout_rows[:5])
    with pytest.raises(ValueError, match="features"):
        compiled.predict_proba(holdout_rows[:, :-1])


def test_the_live_scorer_serves_the_compiled_champion(make_settings, split, gbm, holdout_rows):
    from ml.feature_sets import PAYSIM
    from ml.registry import Registry
    from ml.train import reference_values
    from serving.fraud import LiveScorer

    settings = make_settings()
    registry = Registry(settings, family="payments")
    card = {"model": "gbm", "feature_set": "paysim", "features": list(PAYSIM.features),
            "holdout_sha256": "h", "metrics": {"pr_auc": 0.9},
            "reference": reference_values(split.train)}
    registry.promote(registry.register(gbm, card))
    scorer = LiveScorer(settings)
    scorer.refresh()
    assert isinstance(scorer.champion.model, CompiledModel)
    assert np.array_equal(scorer.champion.model.predict_proba(holdout_rows),
                          gbm.predict_proba(holdout_rows))
