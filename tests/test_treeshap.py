"""The TreeSHAP engine agrees with LightGBM's pred_contrib and shap.TreeExplainer to 1e-9.

Random small LightGBM models (depth, leaves, categorical columns, NaNs, zeros, constant columns,
single-leaf trees, both missing-value modes) are explained with every table setting, including
none (the per-row quadrature) and caps small enough to force table splitting.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from leadml.explain._treeshap import TreeShapError, TreeShapModel, explain_margin
from leadml.model.matrix import _lightgbm_frame_to_numpy, prediction_matrix

ATOL = 1e-9


def _train(
    X: pd.DataFrame | np.ndarray,
    y: np.ndarray,
    rounds: int,
    categorical: list[int] | str = "auto",
    **params: object,
) -> lgb.Booster:
    base = {
        "objective": "binary",
        "verbose": -1,
        "num_threads": 1,
        "deterministic": True,
        "min_data_per_group": 2,
        "cat_smooth": 1.0,
        "cat_l2": 1.0,
    }
    return lgb.train(
        {**base, **params},
        lgb.Dataset(X, y, categorical_feature=categorical),
        num_boost_round=rounds,
    )


def _shap_reference(booster: lgb.Booster, X: pd.DataFrame | np.ndarray) -> np.ndarray:
    import shap

    explainer = shap.TreeExplainer(booster)
    values = np.asarray(explainer.shap_values(X), dtype=float)
    bias = np.full((values.shape[0], 1), float(np.ravel(explainer.expected_value)[-1]))
    return np.hstack([values, bias])


def _check(booster: lgb.Booster, X: pd.DataFrame | np.ndarray, phi: np.ndarray) -> None:
    contrib = booster.predict(X, pred_contrib=True)
    np.testing.assert_allclose(phi, contrib, rtol=0, atol=ATOL)
    margin = booster.predict(X, raw_score=True)
    np.testing.assert_allclose(phi.sum(axis=1), margin, rtol=0, atol=ATOL)


@st.composite
def frames(draw: st.DrawFn) -> tuple[pd.DataFrame, np.ndarray, pd.DataFrame, dict[str, object]]:
    """A tiny training frame, a frame to explain (with unseen values) and LightGBM params."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n = draw(st.integers(20, 200))
    n_num = draw(st.integers(1, 4))
    n_cat = draw(st.integers(0, 2))
    nan_rate = draw(st.sampled_from([0.0, 0.1, 0.4]))
    zero_rate = draw(st.sampled_from([0.0, 0.3]))
    cols: dict[str, object] = {}
    for j in range(n_num):
        x = rng.normal(size=n).round(draw(st.sampled_from([1, 3, 8])))
        x[rng.random(n) < zero_rate] = 0.0
        x[rng.random(n) < nan_rate] = np.nan
        cols[f"x{j}"] = x
    if draw(st.booleans()):
        cols["constant"] = np.full(n, 2.5)
    if draw(st.booleans()):
        cols["count"] = rng.integers(0, 6, n)  # int64: LightGBM predicts it as float64
    for j in range(n_cat):
        k = draw(st.integers(2, 40))
        labels = np.array([f"c{i}" for i in range(k)], dtype=object)
        values = labels[rng.integers(0, k, n)]
        values[rng.random(n) < nan_rate] = None
        cols[f"cat{j}"] = pd.Categorical(values, categories=list(labels))
    X = pd.DataFrame(cols)
    signal = np.nan_to_num(X["x0"].to_numpy()) + rng.normal(scale=0.7, size=n)
    for j in range(n_cat):
        signal += 0.8 * (X[f"cat{j}"].cat.codes.to_numpy() % 3 == 0)
    y = (signal > np.median(signal)).astype(int)
    if y.min() == y.max():
        y[0] = 1 - y[0]

    # Rows to explain: the training rows plus edits LightGBM must route by its own rules.
    Xe = X.copy()
    m = min(n, 10)
    Xe.loc[Xe.index[:m], "x0"] = [
        np.nan,
        0.0,
        -0.0,
        1e-36,
        -1e-40,
        1e30,
        -1e30,
        np.inf,
        -np.inf,
        1.0,
    ][:m]
    for j in range(n_cat):
        col = f"cat{j}"
        Xe[col] = Xe[col].cat.add_categories(["unseen"])
        Xe.loc[Xe.index[m : 2 * m], col] = "unseen"
        Xe.loc[Xe.index[2 * m : 3 * m], col] = None

    params: dict[str, object] = {
        "num_leaves": draw(st.integers(2, 24)),
        "max_depth": draw(st.sampled_from([-1, 1, 2, 3, 6])),
        "min_data_in_leaf": draw(st.sampled_from([1, 3, 10, 1000])),  # 1000: single-leaf trees
        "min_sum_hessian_in_leaf": 0.0,
        "learning_rate": 0.3,
        "use_missing": draw(st.booleans()),
        "zero_as_missing": draw(st.booleans()),
        "max_cat_to_onehot": draw(st.sampled_from([1, 4, 64])),
        "bagging_fraction": draw(st.sampled_from([1.0, 0.7])),
        "bagging_freq": 1,
        "seed": seed % 1000,
    }
    return X, y, Xe, params


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    data=frames(),
    rounds=st.integers(1, 6),
    table=st.sampled_from([(10, 128 * 2**20), (0, 0), (3, 2**20), (10, 4_000), (24, 2**30)]),
)
def test_matches_pred_contrib_and_is_additive(data, rounds, table) -> None:
    X, y, Xe, params = data
    booster = _train(X, y, rounds, **params)
    max_bits, max_bytes = table
    model = TreeShapModel.from_booster(booster, max_table_bits=max_bits, max_table_bytes=max_bytes)
    assert model.table_bytes <= max_bytes
    phi = model.explain_margin(Xe, n_threads=1)
    assert phi.shape == (len(Xe), X.shape[1] + 1)
    _check(booster, Xe, phi)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=frames(), rounds=st.integers(1, 4))
def test_prediction_matrix_is_what_lightgbm_predicts_from(data, rounds) -> None:
    """Scoring hands LightGBM this matrix instead of the frame: same numbers as LightGBM's
    own conversion (unseen and missing categories, tiny, huge and infinite values), so the
    same predictions to the bit."""
    X, y, Xe, params = data
    booster = _train(X, y, rounds, **params)
    M = prediction_matrix(Xe, booster.pandas_categorical)
    assert M.dtype == np.float64 and M.flags["C_CONTIGUOUS"] and M.shape == Xe.shape
    theirs = prediction_matrix(_lightgbm_frame_to_numpy(Xe, booster.pandas_categorical), None)
    np.testing.assert_array_equal(M, theirs)
    assert np.array_equal(booster.predict(M, raw_score=True), booster.predict(Xe, raw_score=True))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=frames(), rounds=st.integers(1, 4))
def test_matches_shap_tree_explainer(data, rounds) -> None:
    X, y, Xe, params = data
    booster = _train(X, y, rounds, **params)
    np.testing.assert_allclose(
        explain_margin(booster, Xe), _shap_reference(booster, Xe), rtol=0, atol=ATOL
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    weird=st.lists(
        st.sampled_from([np.nan, -0.5, -1.0, -7.0, 0.0, 0.9, 2.7, 31.0, 32.0, 95.0, 3e9, 1e300]),
        min_size=1,
        max_size=12,
    ),
)
def test_numpy_categorical_codes_route_like_lightgbm(seed, weird) -> None:
    """Categorical columns given as numbers (numpy input): NaN, negative, fractional and huge
    codes, and codes beyond the split's bit set; the compiled margin
    (:mod:`leadml.model.trees`) routes them as LightGBM does too, to the bit."""
    from leadml.model.trees import raw_margin

    rng = np.random.default_rng(seed)
    n = 300
    X = np.column_stack([rng.integers(0, 70, n).astype(float), rng.normal(size=n)])
    y = ((X[:, 0] % 4 == 1) ^ (X[:, 1] > 0.5)).astype(int)
    booster = _train(X, y, 4, categorical=[0], num_leaves=6, min_data_in_leaf=3)
    Xe = X[: len(weird)].copy()
    Xe[:, 0] = weird
    _check(booster, Xe, explain_margin(booster, Xe))
    M = prediction_matrix(Xe, None)
    np.testing.assert_array_equal(raw_margin(booster, M), booster.predict(M, raw_score=True))


def _medium_model(n: int = 1500, rounds: int = 30) -> tuple[lgb.Booster, pd.DataFrame]:
    rng = np.random.default_rng(7)
    X = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"x{i}" for i in range(8)])
    X["cat"] = pd.Categorical(rng.choice(list("abcdefgh"), n))
    X.loc[::9, "x1"] = np.nan
    y = (
        X["x0"] + X["x1"].fillna(0) * X["x2"] + X["cat"].isin(list("abc")) + rng.normal(size=n)
        > 0.5
    )
    booster = _train(X, y.astype(int).to_numpy(), rounds, num_leaves=31, max_depth=6)
    return booster, X


@pytest.fixture(scope="module")
def medium() -> tuple[lgb.Booster, pd.DataFrame]:
    return _medium_model()


def test_medium_model_matches_and_fallback_agrees(medium) -> None:
    booster, X = medium
    tabled = TreeShapModel.from_booster(booster)
    assert tabled.n_fallback_leaves == 0 and tabled.n_tables > 0
    phi = tabled.explain_margin(X)
    _check(booster, X, phi)
    per_row = TreeShapModel.from_booster(booster, max_table_bits=0)
    assert per_row.n_tables == 0 and per_row.n_fallback_leaves == per_row.n_leaves
    np.testing.assert_allclose(per_row.explain_margin(X), phi, rtol=0, atol=1e-12)


def test_independent_of_threads_and_chunks(medium) -> None:
    booster, X = medium
    model = TreeShapModel.from_booster(booster, max_table_bytes=300_000)  # some leaves per row
    assert 0 < model.n_fallback_leaves < model.n_leaves
    one = model.explain_margin(X, n_threads=1)
    two = model.explain_margin(X, n_threads=2)
    chunks = np.vstack([model.explain_margin(X.iloc[i : i + 97]) for i in range(0, len(X), 97)])
    assert np.array_equal(one, two)
    assert np.array_equal(one, chunks)


def test_numpy_and_dataframe_inputs_agree(medium) -> None:
    booster, X = medium
    codes = X.assign(cat=X["cat"].cat.codes.astype(float)).to_numpy()
    np.testing.assert_array_equal(explain_margin(booster, codes), explain_margin(booster, X))


def test_float32_frame_is_explained_at_float32_precision() -> None:
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.normal(size=(400, 3)).astype(np.float32), columns=list("abc"))
    y = (X["a"] > 0.1).astype(int).to_numpy()
    booster = _train(X, y, 5, num_leaves=8, min_data_in_leaf=5)
    _check(booster, X, explain_margin(booster, X))


def test_only_single_leaf_trees_give_the_bias_alone() -> None:
    rng = np.random.default_rng(2)
    X = rng.normal(size=(50, 3))
    y = np.r_[np.zeros(20), np.ones(30)]
    booster = _train(X, y, 3, min_data_in_leaf=1000)
    model = TreeShapModel.from_booster(booster)
    assert model.n_leaves == 0
    phi = model.explain_margin(X)
    assert np.all(phi[:, :-1] == 0.0)
    _check(booster, X, phi)


def test_infinities_route_like_lightgbm_at_a_missing_only_split() -> None:
    """Found by the property test: LightGBM predicts with values clamped to +-1e300, so at a
    split of "present vs missing" (threshold 1e300) +inf goes left with the other values."""
    x = [-0.4, np.nan, 1.4, np.nan, 0.4, -0.5, -0.9, np.nan, -1.0, np.nan]
    X = pd.DataFrame(
        {"x0": x + [-0.1, np.nan, np.nan, np.nan, np.nan, -0.8, np.nan, 0, np.nan, -0.2]}
    )
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 0])
    booster = _train(X, y, 1, num_leaves=2, min_data_in_leaf=10, min_sum_hessian_in_leaf=0.0)
    assert booster.dump_model()["tree_info"][0]["tree_structure"]["threshold"] == 1e300
    Xe = pd.DataFrame({"x0": [np.inf, -np.inf, 2e300, 1e300, 1e299, np.nan, 0.0]})
    _check(booster, Xe, explain_margin(booster, Xe))


def test_uses_best_iteration_like_predict() -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(600, 4))
    y = (X[:, 0] + rng.normal(size=600) > 0).astype(int)
    train, valid = lgb.Dataset(X[:400], y[:400]), lgb.Dataset(X[400:], y[400:])
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1, "learning_rate": 0.5},
        train,
        num_boost_round=200,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(3, verbose=False)],
        # Without this, lgb.train round-trips the model through a string cut at best_iteration.
        keep_training_booster=True,
    )
    assert 0 < booster.best_iteration < booster.current_iteration()
    model = TreeShapModel.from_booster(booster)
    assert model.n_trees == booster.best_iteration
    _check(booster, X, model.explain_margin(X))


def test_booster_models_are_cached_until_the_booster_changes(medium) -> None:
    from leadml.explain._treeshap import _CACHE

    booster, X = medium
    explain_margin(booster, X.head(3))
    first = _CACHE[booster][1]
    explain_margin(booster, X.head(3))
    assert _CACHE[booster][1] is first


def test_empty_input_gives_empty_output(medium) -> None:
    booster, X = medium
    assert explain_margin(booster, X.head(0)).shape == (0, X.shape[1] + 1)


def test_errors_name_the_problem_and_the_fix(medium) -> None:
    booster, X = medium
    with pytest.raises(TreeShapError, match=r"shape 10x8; expected \(rows, 9\)"):
        explain_margin(booster, X.iloc[:10, :8].to_numpy())
    with pytest.raises(TreeShapError, match="n_threads=0"):
        explain_margin(booster, X.head(2), n_threads=0)
    with pytest.raises(TreeShapError, match="expected a lightgbm.Booster"):
        TreeShapModel.from_booster("model.txt")  # type: ignore[arg-type]
    with pytest.raises(TreeShapError, match="max_table_bits=30"):
        TreeShapModel.from_booster(booster, max_table_bits=30)
    rng = np.random.default_rng(0)
    Xm = rng.normal(size=(90, 2))
    multi = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
        lgb.Dataset(Xm, np.arange(90) % 3),
        num_boost_round=2,
    )
    with pytest.raises(TreeShapError, match="3 trees per iteration"):
        TreeShapModel.from_booster(multi)


@pytest.mark.slow
def test_deep_unbounded_model_with_many_leaves() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    X = pd.DataFrame(rng.normal(size=(n, 25)), columns=[f"x{i}" for i in range(25)])
    X["cat"] = pd.Categorical(rng.integers(0, 30, n))
    y = (np.sin(3 * X["x0"]) + X["x1"] * X["x2"] + rng.normal(size=n) > 0).astype(int).to_numpy()
    booster = _train(X, y, 20, num_leaves=127, max_depth=-1, min_data_in_leaf=2)
    model = TreeShapModel.from_booster(booster, max_table_bytes=8 * 2**20)
    assert model.max_path_features > 10 and model.n_fallback_leaves > 0
    _check(booster, X, model.explain_margin(X))
