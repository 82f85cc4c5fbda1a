"""The linear base margin: exact Shapley values, plain-number storage, and a stage model that
boosts from it scoring, explaining and round-tripping like any other."""

from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadml.explain.reasons import contributions, explain_reasons
from leadml.model.bundle import load_bundle, save_bundle
from leadml.model.linear import LinearBase
from leadml.model.stage import Calibration, StageModel
from leadml.serve.contract import model_version
from tests.test_explain import make_frame, make_spec


@pytest.fixture(scope="module")
def fitted() -> tuple[pd.DataFrame, np.ndarray, LinearBase]:
    X, y = make_frame(3000, seed=0)
    return X, y, LinearBase.fit(X, y, ["industry"])


@pytest.fixture(scope="module")
def stage_model(fitted) -> StageModel:
    X, y, lin = fitted
    params = {"objective": "binary", "num_leaves": 2, "learning_rate": 0.2, "verbosity": -1}
    params |= {"deterministic": True, "num_threads": 1, "seed": 1, "min_data_per_group": 10}
    ds = lgb.Dataset(X, y, init_score=lin.margin(X), categorical_feature=["industry"])
    return StageModel(
        booster=lgb.train(params, ds, 30),
        calibration=Calibration("platt", 0.9, -0.3),
        tier_thresholds=(0.5, 0.3, 0.1),
        spec=make_spec(),
        transition="prospect",
        label="promoted_to_prospect",
        linear=lin,
    )


def test_linear_shapley_values_add_up_to_the_margin_and_centre_on_the_fitting_rows(fitted):
    X, _, lin = fitted
    names = list(X.columns)
    phi = lin.contributions(X, names)
    assert np.allclose(phi.sum(axis=1), lin.margin(X), atol=1e-10)
    assert np.allclose(phi[:, :-1].mean(axis=0), 0.0, atol=1e-10)  # background = fitting rows
    assert np.ptp(phi[:, -1]) == 0.0
    # The drivers of the label get the weight; the irrelevant columns very little.
    coef = {n: abs(q["coef"]) for n, q in lin.numeric.items()}
    assert coef["n_demo_request_7d"] > 5 * coef["tenure_days"]
    levels = lin.categorical["industry"]["levels"]
    assert levels["software"] == max(levels.values())


def test_unseen_rare_missing_and_extreme_values_are_handled_as_documented(fitted):
    X, _, lin = fitted
    row = X.iloc[:1].copy()
    q = lin.numeric["n_email_open_30d"]
    far = row.assign(n_email_open_30d=1e9)
    at_hi = row.assign(n_email_open_30d=q["hi"])
    assert lin.margin(far)[0] == pytest.approx(lin.margin(at_hi)[0])  # clipped
    missing = row.assign(days_since_last_demo_request=np.nan)
    filled = row.assign(
        days_since_last_demo_request=lin.numeric["days_since_last_demo_request"]["fill"]
    )
    gap = lin.margin(missing)[0] - lin.margin(filled)[0]
    assert gap == pytest.approx(lin.numeric["days_since_last_demo_request"]["missing_coef"])
    # A level the regression never saw (here: a new category) takes the shared "other" value.
    unseen = row.assign(industry=pd.Categorical(["aerospace"]))
    other = lin.categorical["industry"]["other"]
    known = (
        lin.categorical["industry"]["levels"][str(row["industry"].iloc[0])]
        if pd.notna(row["industry"].iloc[0])
        else lin.categorical["industry"]["missing"]
    )
    assert lin.margin(unseen)[0] - lin.margin(row)[0] == pytest.approx(other - known)


def test_linear_base_is_stored_as_plain_json_and_round_trips(fitted):
    X, _, lin = fitted
    text = json.dumps(lin.to_dict(), sort_keys=True)
    again = LinearBase.from_dict(json.loads(text))
    assert again == lin
    assert np.array_equal(again.margin(X), lin.margin(X))


def test_weights_and_row_cap_change_the_fit_deterministically(fitted):
    X, y, lin = fitted
    w = np.linspace(0.1, 1.0, len(y))
    a = LinearBase.fit(X, y, ["industry"], weight=w)
    assert a != lin
    capped = LinearBase.fit(X, y, ["industry"], max_rows=1000, seed=3)
    assert capped == LinearBase.fit(X, y, ["industry"], max_rows=1000, seed=3)
    assert capped != lin


@pytest.mark.parametrize("engine", ["leadml", "lightgbm"])
def test_a_model_boosted_from_a_linear_base_is_explained_exactly(stage_model, engine):
    X = make_frame(400, seed=1)[0]
    phi = contributions(stage_model, X, engine)
    assert np.allclose(phi.sum(axis=1), stage_model.margin(X), atol=1e-9)
    tree_only = stage_model.booster.predict(X, raw_score=True)
    assert not np.allclose(stage_model.margin(X), tree_only)  # the linear part is in the margin
    reasons = explain_reasons(stage_model, X, engine=engine)
    assert len(reasons) == len(X)


def test_bundle_round_trip_keeps_the_linear_base_and_the_version_digest_sees_it(
    stage_model, tmp_path
):
    X = make_frame(200, seed=2)[0]
    back = load_bundle(save_bundle(stage_model, tmp_path / "m"))
    assert back.linear == stage_model.linear
    assert np.array_equal(back.probability(X), stage_model.probability(X))
    bundle = json.loads((tmp_path / "m" / "bundle.json").read_text())
    assert bundle["format"] == 2 and "linear" in bundle
    shifted = LinearBase.from_dict({**stage_model.linear.to_dict(), "intercept": 0.0})
    other = StageModel(**{**stage_model.__dict__, "linear": shifted})
    assert model_version(other) != model_version(stage_model)


def _numpy_term(lin: LinearBase, name: str, col: pd.Series) -> np.ndarray:
    """The documented formula of one feature's term, in numpy."""
    if name in lin.numeric:
        q = lin.numeric[name]
        x = pd.to_numeric(col, errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
        miss = np.isnan(x)
        z = (np.clip(np.where(miss, q["fill"], x), q["lo"], q["hi"]) - q["center"]) / q["scale"]
        return q["coef"] * z + q["missing_coef"] * miss
    codes, lookup = lin._lookup(name, col)
    return lookup[np.where(codes < 0, len(lookup) - 1, codes)]


def _numeric(*values: float) -> dict[str, float]:
    keys = ("fill", "lo", "hi", "center", "scale", "coef", "missing_coef")
    return dict(zip(keys, values, strict=True))


_EDGE = [np.nan, -0.0, 0.0, 1.0, -1.0, 2.5, 1e300, -1e300, np.inf, -np.inf]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    bounds=st.sampled_from(
        [(0.0, 1.0), (-0.0, 0.0), (np.nan, 1.0), (0.0, np.nan), (1.0, 0.0), (-np.inf, np.inf)]
    ),
    fill=st.sampled_from([0.5, -0.0, 0.0, np.nan, 3.0]),
    coef=st.sampled_from([1.5, -2.0, 0.0, -0.0]),
    missing_coef=st.sampled_from([0.0, -0.7, 0.25]),
    center=st.sampled_from([0.25, 0.0]),  # 0: the sign of a zero reaches the term
)
def test_compiled_terms_are_the_numpy_formula_to_the_bit(
    seed, bounds, fill, coef, missing_coef, center
) -> None:
    """Scoring computes the terms in one compiled pass; each equals the documented numpy
    formula (``_numpy_term``) to the bit: NaN fills and bounds, signed zeros, infinities, clipping
    ties, unseen and missing levels, and features without a term."""
    rng = np.random.default_rng(seed)
    n = 300
    lo, hi = bounds
    lin = LinearBase(
        0.3,
        {
            "a": _numeric(fill, lo, hi, center, 1.5, coef, missing_coef),
            "b": _numeric(1.0, -1.0, 2.0, -0.5, 0.3, -1.1, 0.0),
        },
        {"c": {"levels": {"x": 0.4, "y": -0.2}, "other": 0.05, "missing": -0.3}},
        {"a": 0.1, "b": -0.2, "c": 0.05},
    )
    X = pd.DataFrame(
        {
            "none": rng.normal(size=n),  # no term: zero, centred on 0
            "a": rng.choice(_EDGE, n),
            "c": pd.Categorical(rng.choice(["x", "y", "z", None], n), categories=["z", "y", "x"]),
            "b": np.where(rng.random(n) < 0.2, np.nan, rng.normal(size=n)),
        }
    )
    names = list(X.columns)
    terms = lin.terms(X, names)
    with np.errstate(invalid="ignore"):  # 0 * inf: NaN, as the kernel gives
        expected = np.column_stack(
            [_numpy_term(lin, c, X[c]) if c != "none" else np.zeros(n) for c in names]
        )
    np.testing.assert_array_equal(terms.view(np.int64), expected.view(np.int64))
    centre = np.array([lin.expected.get(c, 0.0) for c in names])
    phi = lin.contributions(X, names)
    np.testing.assert_array_equal(phi[:, :-1].view(np.int64), (expected - centre).view(np.int64))
    base = rng.normal(size=(n, len(names) + 1))
    added = lin.contributions(X, names, add_to=base.copy())
    np.testing.assert_array_equal(added[:, :-1], base[:, :-1] + (expected - centre))
    by_name = [names.index(c) for c in ("a", "b", "c")]  # the margin's order: sorted names
    np.testing.assert_array_equal(lin.margin(X), 0.3 + expected[:, by_name].sum(axis=1))
