"""Evidence behind a reason: per-level and per-bin conversion of the training rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from leadml.model.evidence import MIN_ROWS, evidence_stats, evidence_texts


def test_a_mostly_zero_count_gets_a_bin_of_its_own_for_zero() -> None:
    rng = np.random.default_rng(0)
    x = np.where(rng.random(5000) < 0.8, 0, rng.poisson(3, 5000)).astype(float)
    y = (rng.random(5000) < 0.02 + 0.05 * (x > 0)).astype(int)
    stats = evidence_stats(pd.DataFrame({"n": x}), y, {"n": "numeric"})
    json.dumps(stats)  # stored in bundle.json as it is
    zero, some = evidence_texts(stats, "n", pd.Series([0.0, 4.0]), "became prospects")
    assert zero.startswith("Past leads with a value of 0 here: 2.")
    assert some.startswith("Past leads with a value from 1 to ")
    assert f"{100 * y[x > 0].mean():.1f}% became prospects" in some
    assert f"against {100 * y.mean():.1f}% overall" in some


def test_small_groups_and_unseen_levels_say_nothing() -> None:
    n = 400
    level = np.array(["big"] * (n - MIN_ROWS + 1) + ["small"] * (MIN_ROWS - 1))
    X = pd.DataFrame({"c": pd.Categorical(level)})
    y = np.arange(n) % 3 == 0
    stats = evidence_stats(X, y, {"c": "categorical"})
    assert set(stats["features"]["c"]["levels"]) == {"big"}  # under MIN_ROWS: not stored
    texts = evidence_texts(stats, "c", pd.Series(["big", "small", "new"]), "converted")
    assert texts[0].startswith("Past leads in big: ") and texts[1:] == ["", ""]
    assert evidence_texts(None, "c", pd.Series(["big"]), "converted") == [""]  # an old model
