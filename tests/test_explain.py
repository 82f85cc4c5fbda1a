"""Explanations: exact TreeSHAP (three engines and a brute-force Shapley oracle), additivity,
grouped and ranked reasons with their sentences and effects, global importance."""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadml.data.features import FeatureSpec
from leadml.explain.reasons import (
    ENGINES,
    additivity_error,
    contributions,
    explain_contributions,
    global_importance,
    group_contributions,
    ranked_reasons,
    reason_effects,
    reasons,
)
from leadml.model.stage import Calibration, StageModel

NAMES = (
    "industry",
    "n_demo_request_7d",
    "n_demo_request_30d",
    "days_since_last_demo_request",
    "n_email_open_30d",
    "tenure_days",
)
INDUSTRIES = ("finance", "health", "retail", "software")


def make_spec() -> FeatureSpec:
    """The real spec of a tiny CRM, cut down to six features (so sentences and group labels are
    the package's own)."""
    import dataclasses

    from leadml.config import FeaturesConfig
    from leadml.data.contracts import validate
    from leadml.data.features import make_feature_spec

    t = pd.Timestamp("2025-01-01")
    data = validate(
        pd.DataFrame(
            {
                "lead_id": [1, 2, 3, 4],
                "created_at": [t] * 4,
                "industry": list(INDUSTRIES),
            }
        ),
        pd.DataFrame(
            {
                "lead_id": [1, 2],
                "event_type": ["demo_request", "email_open"],
                "occurred_at": [t + pd.Timedelta(days=1)] * 2,
            }
        ),
        pd.DataFrame({"lead_id": [1, 2, 3, 4], "stage": ["lead"] * 4, "changed_at": [t] * 4}),
    )
    full = make_feature_spec(data, FeaturesConfig(windows_days=(7, 30)))
    return dataclasses.replace(
        full,
        names=NAMES,
        kinds={n: full.kinds[n] for n in NAMES},
        levels={"industry": INDUSTRIES},
        groups={n: full.groups[n] for n in NAMES},
        templates={n: full.templates[n] for n in NAMES},
    )


def make_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """Demo requests drive the label, industry a little; NaNs in a categorical and a numeric."""
    rng = np.random.default_rng(seed)
    demo7 = rng.poisson(0.3, n).astype(float)
    demo30 = demo7 + rng.poisson(0.5, n)
    since = np.where(demo30 > 0, rng.uniform(0, 30, n), np.nan)
    industry = rng.choice([*INDUSTRIES, None], n, p=[0.3, 0.2, 0.2, 0.2, 0.1])
    X = pd.DataFrame(
        {
            "industry": pd.Categorical(industry, categories=list(INDUSTRIES)),
            "n_demo_request_7d": demo7,
            "n_demo_request_30d": demo30,
            "days_since_last_demo_request": since,
            "n_email_open_30d": rng.poisson(2, n).astype(float),
            "tenure_days": rng.uniform(1, 400, n),
        }
    )
    logit = -2.5 + 1.2 * demo7 + 0.4 * demo30 + 0.6 * (industry == "software")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return X, y


@pytest.fixture(scope="module")
def model() -> StageModel:
    X, y = make_frame(3000, seed=0)
    params = {
        "objective": "binary",
        "num_leaves": 15,
        "max_depth": 4,
        "min_child_samples": 20,
        "learning_rate": 0.1,
        "max_cat_to_onehot": 2,  # many-vs-many categorical splits, the hard case
        "min_data_per_group": 10,
        "cat_smooth": 1.0,
        "verbosity": -1,
        "deterministic": True,
        "num_threads": 1,
        "seed": 1,
    }
    booster = lgb.train(params, lgb.Dataset(X, y, categorical_feature=["industry"]), 60)
    return StageModel(
        booster=booster,
        calibration=Calibration("platt", 0.9, -0.3),
        tier_thresholds=(0.5, 0.3, 0.1),
        spec=make_spec(),
        transition="prospect",
        label="promoted_to_prospect",
    )


@pytest.fixture(scope="module")
def X() -> pd.DataFrame:
    return make_frame(400, seed=1)[0]


def test_the_model_splits_on_the_categorical_and_routes_missing_values(model) -> None:
    """Guard for the tests below: they are only meaningful if both hard cases occur."""
    dump = model.booster.dump_model()["tree_info"]

    def nodes(n: dict[str, Any]) -> list[dict[str, Any]]:
        kids = [n[k] for k in ("left_child", "right_child") if k in n]
        return [n, *itertools.chain.from_iterable(nodes(k) for k in kids)]

    splits = [n for t in dump for n in nodes(t["tree_structure"]) if "split_feature" in n]
    assert any(s["decision_type"] == "==" for s in splits)
    assert any(s["missing_type"] == "NaN" for s in splits)


@pytest.mark.parametrize("engine", ENGINES)
def test_every_engine_equals_shap_tree_explainer_and_adds_up_to_the_margin(
    model, X, engine
) -> None:
    import shap

    ours = contributions(model, X, engine)
    assert ours.shape == (len(X), len(NAMES) + 1)
    assert additivity_error(model, X, ours) < 1e-9
    explainer = shap.TreeExplainer(model.booster)  # default mode: exact, path-dependent
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # shap's note on its multi-output API
        ref = explainer.shap_values(X)
    np.testing.assert_allclose(ours[:, :-1], ref, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours[:, -1], explainer.expected_value, rtol=0, atol=1e-9)


def _goes_left(node: dict[str, Any], x: float) -> bool:
    """LightGBM's Tree::Decision for one node (numerical or categorical)."""
    if node["decision_type"] == "==":
        if math.isnan(x) or int(x) < 0:
            return False
        return int(x) in {int(c) for c in str(node["threshold"]).split("||")}
    missing = node["missing_type"]
    if math.isnan(x) and missing != "NaN":
        x = 0.0
    if (missing == "Zero" and abs(x) <= 1e-35) or (missing == "NaN" and math.isnan(x)):
        return bool(node["default_left"])
    return x <= node["threshold"]


def _expected(node: dict[str, Any], x: np.ndarray, known: frozenset[int]) -> float:
    """E[tree | x_S] under the tree's own cover: the value TreeSHAP takes Shapley values of."""
    if "leaf_value" in node:
        return float(node["leaf_value"])
    left, right = node["left_child"], node["right_child"]
    f = node["split_feature"]
    if f in known:
        return _expected(left if _goes_left(node, x[f]) else right, x, known)

    def count(n: dict[str, Any]) -> float:
        return float(n["leaf_count"] if "leaf_value" in n else n["internal_count"])

    total = count(left) + count(right)
    return (
        count(left) * _expected(left, x, known) + count(right) * _expected(right, x, known)
    ) / total


def test_contributions_are_the_exact_shapley_values_by_brute_force(model, X) -> None:
    """An oracle that shares no code with LightGBM, shap or leadml.explain._treeshap: enumerate every
    coalition of features on a few rows and apply the Shapley formula."""
    from lightgbm.basic import _data_from_pandas

    rows = X.iloc[:8]
    matrix = np.asarray(
        _data_from_pandas(rows, "auto", "auto", model.booster.pandas_categorical)[0],
        dtype=float,
    )
    trees = [t["tree_structure"] for t in model.booster.dump_model()["tree_info"]]
    m = len(NAMES)
    weight = {
        k: math.factorial(k) * math.factorial(m - k - 1) / math.factorial(m) for k in range(m)
    }
    oracle = np.zeros((len(rows), m + 1))
    for r, x in enumerate(matrix):
        v = {
            frozenset(S): sum(_expected(t, x, frozenset(S)) for t in trees)
            for k in range(m + 1)
            for S in itertools.combinations(range(m), k)
        }
        for i in range(m):
            oracle[r, i] = sum(weight[len(S)] * (v[S | {i}] - v[S]) for S in v if i not in S)
        oracle[r, m] = v[frozenset()]
    for engine in ENGINES:
        np.testing.assert_allclose(contributions(model, rows, engine), oracle, rtol=0, atol=1e-9)


def test_unknown_engine_is_a_clear_error(model, X) -> None:
    with pytest.raises(ValueError, match="unknown explainer 'fast'.*leadml, lightgbm, shap"):
        explain_contributions(model.booster, X, "fast")


def test_leadml_engine_falls_back_to_lightgbm_for_models_it_does_not_support(caplog) -> None:
    rng = np.random.default_rng(0)
    Xm = rng.normal(size=(300, 3))
    ym = rng.integers(0, 3, 300)
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "verbosity": -1}, lgb.Dataset(Xm, ym), 5
    )
    with caplog.at_level(logging.WARNING, logger="leadml.explain.reasons"):
        got = explain_contributions(booster, Xm[:20], "leadml")
    np.testing.assert_array_equal(got, booster.predict(Xm[:20], pred_contrib=True))
    assert "using LightGBM pred_contrib" in caplog.text


def test_reasons_by_hand(model) -> None:
    """Known contributions in, exact reasons out: grouping, ranking, limits, sentences, effect."""
    X = pd.DataFrame(
        {
            "industry": pd.Categorical(["software", None], categories=list(INDUSTRIES)),
            "n_demo_request_7d": [3.0, 0.0],
            "n_demo_request_30d": [4.0, 0.0],
            "days_since_last_demo_request": [2.0, np.nan],
            "n_email_open_30d": [1.0, 0.0],
            "tenure_days": [10.0, 200.0],
        }
    )
    # columns: industry, demo7, demo30, demo_since, email, tenure, expected value
    contrib = np.array(
        [
            [0.2, 0.9, 0.3, -0.1, -0.4, 0.0, -2.0],  # demo group = 1.1, its largest part demo7
            [0.0, -0.2, -0.1, -0.5, 0.1, 0.3, -2.0],  # demo group = -0.8, largest: recency
        ]
    )
    got = reasons(model, X, contrib, n_positive=4, n_negative=1)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    p = lambda m: sig(0.9 * m - 0.3)  # noqa: E731
    m0, e0 = contrib[0].sum(), contrib[0, -1]
    slope = (p(m0) - p(e0)) / (m0 - e0)  # the calibration's secant: points = 100 · s · φ_g
    spec = model.spec
    assert [(r["group"], r["text"], r["direction"]) for r in got[0]] == [
        ("demo_request", "Requested a demo 3 times in the last 7 days", "+"),
        ("industry", spec.describe("industry", "software"), "+"),
        ("email_open", spec.describe("n_email_open_30d", 1.0), "-"),
    ]  # tenure contributes exactly 0: no reason either way
    for r, phi in zip(got[0], (1.1, 0.2, -0.4), strict=True):
        # Within a tenth of a point of its exact share, plus its part of the score's rounding.
        assert r["effect"] == pytest.approx(slope * phi, abs=0.0061)
    # They add up: base (every reason at its average) + points (+ the rest) = round(100 p).
    ranked = ranked_reasons(model, X, contrib, n_positive=4, n_negative=1)
    assert ranked.base_score[0] == round(100 * p(e0), 1)
    total = ranked.base_score[0] + sum(100 * r["effect"] for r in got[0]) + ranked.other_points[0]
    assert total == pytest.approx(round(100 * p(m0)), abs=1e-9)
    second = got[1]
    assert [r["group"] for r in second] == ["tenure", "email_open", "demo_request"]
    assert second[-1]["text"] == spec.describe("days_since_last_demo_request", np.nan)
    assert second[-1]["direction"] == "-" and second[-1]["effect"] < 0
    assert reasons(model, X, contrib, n_positive=0, n_negative=0) == [[], []]


def test_reasons_on_a_model_rank_by_points_and_match_the_definition(model, X) -> None:
    contrib = contributions(model, X)
    got = reasons(model, X, contrib, n_positive=4, n_negative=2)
    G = group_contributions(model, contrib)
    margin = contrib.sum(axis=1)
    for i, rs in enumerate(got):
        signs = [r["direction"] for r in rs]
        assert signs == sorted(signs, key=lambda s: s != "+")
        assert signs.count("+") <= 4 and signs.count("-") <= 2
        pos = [r["effect"] for r in rs if r["direction"] == "+"]
        neg = [r["effect"] for r in rs if r["direction"] == "-"]
        assert pos == sorted(pos, reverse=True) and neg == sorted(neg)
        base = model.calibration(contrib[i : i + 1, -1])[0]
        slope = (model.calibration(margin[i : i + 1])[0] - base) / (margin[i] - contrib[i, -1])
        for r in rs:
            phi = G.loc[i, r["group"]]
            assert r["effect"] == pytest.approx(float(slope * phi), abs=0.0061)
            assert (r["direction"] == "+") == (phi > 0)
            assert r["text"] and "{" not in r["text"]


def test_effects_follow_an_isotonic_calibration_too() -> None:
    cal = Calibration("isotonic", x=(-3.0, 0.0, 3.0), y=(0.0, 0.2, 1.0))
    e = reason_effects(cal, np.array([1.5]), np.array([[1.5, -1.5, 0.0]]))
    np.testing.assert_allclose(e, [[0.6 - 0.2, 0.6 - 1.0, 0.0]])


def test_global_importance_is_mean_absolute_group_shap(model, X) -> None:
    imp = global_importance(model, X)
    assert list(imp.columns) == ["label", "mean_abs_shap", "share", "mean_abs_effect"]
    assert imp.index[0] == "demo_request"  # the planted driver
    G = group_contributions(model, contributions(model, X, "lightgbm"))
    np.testing.assert_allclose(imp["mean_abs_shap"], G.abs().mean()[imp.index], atol=1e-12)
    assert imp["mean_abs_shap"].is_monotonic_decreasing
    assert imp["share"].sum() == pytest.approx(1.0)
    assert imp.loc["demo_request", "label"] not in ("", "demo_request")  # words for people


@pytest.mark.parametrize("seed", range(4))
def test_reason_kernels_match_their_numpy_definitions(seed: int) -> None:
    """The compiled ranking and rounding equal the plain definitions, ties included."""
    from leadml._kernels import settle_units, top_groups

    rng = np.random.default_rng(seed)
    n, g = 400, 9
    # Few distinct values: many ties in share, contribution and points.
    G = rng.integers(-3, 4, (n, g)).astype(float)
    G[:20] = 0.0  # rows where no group contributes keep their units
    raw = G * rng.choice([0.5, 1.0, 3.0], (n, 1)) + rng.choice([0.0, 0.25], (n, g))
    q = np.rint(raw)
    rank = np.arange(g)[None, :].repeat(n, axis=0)
    pos = np.lexsort((rank, -G, np.where(q > 0, -raw, np.inf)), axis=1)[:, :3]
    neg = np.lexsort((rank, G, np.where(q < 0, raw, np.inf)), axis=1)[:, :2]
    ok = np.hstack([np.take_along_axis(q, pos, 1) > 0, np.take_along_axis(q, neg, 1) < 0])
    expected = np.where(ok, np.hstack([pos, neg]), -1)
    np.testing.assert_array_equal(top_groups(q, raw, G, 3, 2), expected)

    # Largest remainders take the units, one per round, never against a group's sign.
    idle = (G == 0) | (np.arange(g) == 0)[None, :]
    diff = rng.integers(-6, 7, n)
    want_q, want_rem, want_diff = q.copy(), raw - q, diff.copy()
    for _ in range(int(np.abs(diff).max())):
        for sign, pick in ((1, np.argmax), (-1, np.argmin)):
            blocked = idle | ((sign * raw <= 0) & (sign * (want_q + sign) > 0))
            rows = np.flatnonzero((np.sign(want_diff) == sign) & ~blocked.all(axis=1))
            if not len(rows):
                continue
            masked = np.where(blocked[rows], -np.inf if sign > 0 else np.inf, want_rem[rows])
            k = pick(masked, axis=1)
            want_q[rows, k] += sign
            want_rem[rows, k] -= sign
            want_diff[rows] -= sign
    got_q, got_rem, got_diff = q.copy(), raw - q, diff.copy()
    settle_units(got_q, got_rem, raw, idle, got_diff)
    np.testing.assert_array_equal(got_q, want_q)
    np.testing.assert_array_equal(got_diff, want_diff)
    assert (got_diff != 0).any() and (got_diff == 0).any()  # both kinds of rows occur


_AWKWARD = [
    *(0.0, -0.0, 0.05, 0.15, 0.25, 0.125, 2.5, 99.95, 99.949999, 999.5, 999.4999, 1000.5),
    *(1e-4, 9.995e-5, 1.2345e-7, 1e15, 1e15 + 0.5, 123456789.5, 0.1 + 0.2, 1 / 3),
    *(float("nan"), float("inf"), -float("inf"), 5e-324, 1.7e308),
    # Just below a power of ten: log10 may round up to the next exponent.
    *(float(np.nextafter(10.0**k, 0)) for k in range(-6, 5)),
]


def _groups_print_alike(values: list[float], fmt: str) -> None:
    from leadml.data.features import _number
    from leadml.explain.reasons import _format_codes

    x = np.array(values, dtype=np.float64)
    codes = _format_codes(x, fmt)
    prints: dict[int, set[str]] = {}
    for c, v in zip(codes.tolist(), x.tolist(), strict=True):
        prints.setdefault(c, set()).add(_number(v) if fmt == "num" else format(v, fmt))
    assert all(len(p) == 1 for p in prints.values()), {
        c: p for c, p in prints.items() if len(p) > 1
    }


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(allow_nan=True, allow_infinity=True),
            st.floats(-2000, 2000),
            st.floats(-1, 1),
            # Near rounding ties: k/2 of a unit of the last printed digit, nudged by a few ulps.
            st.builds(
                lambda k, p, ulps: (
                    np.nextafter(k / 2 * 10.0**p, np.inf * ulps) if ulps else k / 2 * 10.0**p
                ),
                st.integers(-3000, 3000),
                st.integers(-8, 3),
                st.integers(-1, 1),
            ),
            st.sampled_from(_AWKWARD),
        ),
        min_size=1,
        max_size=60,
    ),
    st.sampled_from(["num", ".1f", ".0f", ".2f", ".3f", "g", ",.0f"]),
)
def test_reason_numbers_share_a_code_only_when_they_print_alike(values, fmt) -> None:
    """Sentences are rendered once per code: two values with one code must print the same, to
    the character, ties of the decimal rounding and signed zeros included."""
    _groups_print_alike(values, fmt)


def test_reason_numbers_are_grouped_by_what_they_print() -> None:
    """A chunk's continuous values (revenue, decayed engagement) are formatted per printed
    number, not per value: a million distinct values make a few thousand codes."""
    from leadml.explain.reasons import _format_codes

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.lognormal(2, 2, 100_000), -rng.uniform(0, 50, 1000)])
    _groups_print_alike(x[:20_000].tolist(), "num")
    _groups_print_alike(x[:20_000].tolist(), ".1f")
    assert len(np.unique(_format_codes(x, "num"))) < 12_000
    assert len(np.unique(_format_codes(x[x < 100], ".1f"))) <= 2 * 1000 + 1


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(-1e6, 1e6),
            st.sampled_from([*_AWKWARD, -0.3, 0.3, -0.6, 0.4999999, 0.5, 1.5]),
        ),
        min_size=1,
        max_size=80,
    )
)
def test_reason_sentences_are_describe_row_by_row(values) -> None:
    """The vectorised sentences (codes per print, sentences kept across chunks) equal
    FeatureSpec.describe of every row's value, for each kind of template: counts, days,
    formatted and plain numbers, a "negative" text without a "zero" one, and a template that
    reads something else (rendered per value)."""
    import dataclasses

    from leadml.explain.reasons import _sentences

    templates = {
        "count": {"value": "Did it {n} time{s}", "zero": "Never did it", "missing": "Unknown"},
        "signed": {"value": "{n} more", "negative": "{n} fewer ({abs:.1f})"},
        "decayed": {"value": "Engagement {value:.1f}", "zero": "Little or none"},
        "revenue": "fit:revenue",
        "plain": {"value": "Value {value}"},
        "other": {"value": "Value {value!r}"},
    }
    names = tuple(templates)
    spec = FeatureSpec(
        names=names,
        kinds=dict.fromkeys(names, "numeric"),
        levels={},
        groups={n: n for n in names},
        templates=templates,
        event_types=(),
        fit_columns=("revenue",),
        excluded_columns=(),
        windows_days=(7,),
        half_life_days=14.0,
        trend_days=14,
    )
    spec = dataclasses.replace(spec)
    x = np.array(values, dtype=float)
    frame = pd.DataFrame(dict.fromkeys(names, x))
    rows = np.repeat(np.arange(len(x)), len(names))
    feature = np.tile(np.arange(len(names)), len(x))
    for _ in range(2):  # the second time from the kept sentences
        codes, sentences = _sentences(spec, frame, list(names), rows, feature)
        got = [sentences[c] for c in codes]
        want = [spec.describe(names[f], x[r]) for r, f in zip(rows, feature, strict=True)]
        assert got == want


@pytest.mark.parametrize("seed", [0, 1])
def test_speaking_feature_kernel_is_argmax_of_abs_phi_within_the_group(seed: int) -> None:
    """Each reason's speaking feature is its group's np.argmax of |φ| in that row: the first
    on ties (φ of either sign), a NaN before any number, -1 for a group without features."""
    from leadml._kernels import speaking_features
    from leadml.explain.reasons import _members

    rng = np.random.default_rng(seed)
    n, f, g = 300, 12, 5
    phi = rng.integers(-2, 3, (n, f)).astype(float)  # few values: many ties, signs differ
    phi[rng.random((n, f)) < 0.02] = np.nan
    member = np.zeros((f, g))
    member[np.arange(f), rng.integers(0, g - 1, f)] = 1.0  # the last group has no features
    rows = np.repeat(np.arange(n), g)
    groups = np.tile(np.arange(g), n)
    members, first = _members(member)
    got = speaking_features(phi, rows, groups, members, first)
    want = []
    for i, k in zip(rows, groups, strict=True):
        idx = np.flatnonzero(member[:, k])
        want.append(idx[np.argmax(np.abs(phi[i, idx]))] if len(idx) else -1)
    np.testing.assert_array_equal(got, want)
    assert (got == -1).sum() == n
