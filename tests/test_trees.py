"""The compiled raw margin is ``Booster.predict(M, raw_score=True)`` to the bit.

Scoring predicts through :func:`leadml.model.trees.raw_margin`, so every score depends on it
being LightGBM's own number: the random models of the TreeSHAP tests (categorical columns,
NaNs, zeros, tiny and infinite values, unseen categories, single-leaf trees, both missing-value
modes) are compared with ``assert_array_equal``, not a tolerance.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadml.model.matrix import prediction_matrix
from leadml.model.trees import CompiledTrees, raw_margin
from tests.test_treeshap import _medium_model, _train, frames


def _lightgbm(booster: lgb.Booster, M: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(M, raw_score=True), dtype=float)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=frames(), rounds=st.integers(1, 8))
def test_equals_lightgbm_to_the_bit(data, rounds) -> None:
    X, y, Xe, params = data
    booster = _train(X, y, rounds, **params)
    M = prediction_matrix(Xe, booster.pandas_categorical)
    compiled = CompiledTrees.from_booster(booster).margin(M)
    np.testing.assert_array_equal(compiled, _lightgbm(booster, M))
    np.testing.assert_array_equal(raw_margin(booster, M), compiled)


def test_uses_best_iteration_and_follows_a_booster_that_grows() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] + rng.normal(size=600) > 0).astype(int)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "learning_rate": 0.5},
        lgb.Dataset(X[:400], y[:400]),
        num_boost_round=200,
        valid_sets=[lgb.Dataset(X[400:], y[400:])],
        callbacks=[lgb.early_stopping(3, verbose=False)],
        keep_training_booster=True,
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    M = np.ascontiguousarray(X)
    np.testing.assert_array_equal(raw_margin(booster, M), _lightgbm(booster, M))
    booster.best_iteration = 0  # now predict uses every tree: the cached flattening is stale
    np.testing.assert_array_equal(raw_margin(booster, M), _lightgbm(booster, M))


def test_values_at_a_threshold_go_left() -> None:
    """``x <= threshold`` goes left: rows at each split's threshold and one ulp either side."""
    booster, X = _medium_model(n=3000, rounds=20)
    M0 = prediction_matrix(X, booster.pandas_categorical)
    rows = []
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "split_index" not in node:
            continue
        stack += [node["left_child"], node["right_child"]]
        if node["decision_type"] != "<=":
            continue
        t = float(node["threshold"])
        for x in (t, np.nextafter(t, -np.inf), np.nextafter(t, np.inf)):
            row = M0[len(rows) % len(M0)].copy()
            row[node["split_feature"]] = x
            rows.append(row)
    M = np.ascontiguousarray(rows)
    assert len(M) > 300
    np.testing.assert_array_equal(raw_margin(booster, M), _lightgbm(booster, M))


def test_a_medium_model_on_many_rows_in_parallel() -> None:
    booster, X = _medium_model(n=20_000, rounds=60)
    M = prediction_matrix(X, booster.pandas_categorical)
    np.testing.assert_array_equal(raw_margin(booster, M), _lightgbm(booster, M))


def test_models_it_does_not_cover_are_left_to_lightgbm() -> None:
    """Linear trees and multiclass models: LightGBM predicts them (same numbers, same errors)."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] > 0).astype(int)
    linear = _train(X, y, 3, linear_tree=True)
    M = np.ascontiguousarray(X)
    np.testing.assert_array_equal(raw_margin(linear, M), _lightgbm(linear, M))
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
        lgb.Dataset(X, np.arange(300) % 3),
        num_boost_round=2,
    )
    np.testing.assert_array_equal(raw_margin(multi, M), _lightgbm(multi, M))
    booster, _ = _medium_model(n=300, rounds=3)
    try:
        raw_margin(booster, np.zeros((2, 4)))
    except Exception as e:  # noqa: BLE001 - whatever LightGBM says about the shape
        assert "feature" in str(e).lower()
    else:
        raise AssertionError("a matrix of the wrong width must fail as LightGBM fails")


def test_a_stage_models_scores_are_lightgbms(trained, crm_medium) -> None:
    """The scoring path: probabilities from the compiled margin equal the calibration of
    LightGBM's own margin, for real trained stage models (the linear part included)."""
    from leadml.data.trainset import build_scoring_set

    for result in trained.values():
        model = result.model
        frame = build_scoring_set(crm_medium, crm_medium.end, spec=model.spec)
        F = model.features(frame)
        M = prediction_matrix(F, model.booster.pandas_categorical)
        margin = _lightgbm(model.booster, M)
        if model.linear is not None:
            margin = margin + model.linear.margin(F)
        np.testing.assert_array_equal(model.probability(frame), model.calibration(margin))
