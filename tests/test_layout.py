"""Scoring checks the layout the model was trained on (leadml.data.layout, issue 16).

The worst failure of a batch job is a quiet one: an export that drops or renames a fit column, or
renames the event types, used to score with every such feature "missing" and exit 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from leadml.config import LeadMLConfig
from leadml.data.contracts import validate
from leadml.data.layout import LayoutWarning, check_layout
from leadml.serve.contract import ScoringError
from leadml.serve.scoring import score

AS_OF = "2025-04-01"


def _changed(crm, *, drop=(), rename=None, events=None):
    leads = crm.leads.drop(columns=list(drop)).rename(columns=rename or {})
    ev = crm.events if events is None else events
    return validate(leads, ev, crm.stage_changes)


def test_every_difference_is_listed_with_the_likely_new_name(crm_medium, trained) -> None:
    spec = trained["prospect"].model.spec
    data = _changed(crm_medium, drop=["industry", "country"], rename={"job_title": "title"})
    problems, _ = check_layout(data, spec, AS_OF, what="the prospect model")
    text = "\n".join(problems)
    for col in ("industry", "country", "job_title"):
        assert f"column {col!r}" in text, col
    assert "renamed to 'title'?" in text
    assert len(problems) == 3


def test_empty_or_renamed_events_are_refused(crm_medium, trained) -> None:
    spec = trained["prospect"].model.spec
    empty = _changed(crm_medium, events=crm_medium.events.iloc[:0])
    problems, _ = check_layout(empty, spec, AS_OF)
    assert len(problems) == 1 and "events table: it has no rows" in problems[0]
    ev = crm_medium.events.copy()
    ev["event_type"] = "Activity: " + ev["event_type"].astype(str)
    problems, _ = check_layout(_changed(crm_medium, events=ev), spec, AS_OF)
    assert len(problems) == 1 and "none of the event types" in problems[0]
    assert "'Activity: " in problems[0]


def test_shifted_shares_warn_with_both_numbers(crm_medium, trained) -> None:
    m = trained["prospect"].model
    assert "layout" in m.metadata  # the training reference travels with the model
    leads = crm_medium.leads.copy()
    rng = np.random.default_rng(0)
    leads["industry"] = leads["industry"].astype(object)
    leads.loc[rng.random(len(leads)) < 0.6, "industry"] = None
    data = validate(leads, crm_medium.events, crm_medium.stage_changes)
    problems, shifts = check_layout(data, m.spec, AS_OF, m.metadata["layout"])
    assert not problems
    assert len(shifts) == 1 and "'industry' is missing in" in shifts[0]
    assert "in training" in shifts[0]
    # The training data itself raises nothing.
    assert check_layout(crm_medium, m.spec, AS_OF, m.metadata["layout"]) == ([], [])


def test_score_refuses_a_changed_layout_and_override_is_loud(crm_medium, trained) -> None:
    models = {t: r.model for t, r in trained.items()}
    data = _changed(crm_medium, drop=["industry"], rename={"job_title": "title"})
    with pytest.raises(ScoringError, match="does not match the layout") as e:
        score(data, AS_OF, models)
    assert "'industry'" in str(e.value) and "'job_title'" in str(e.value)
    assert str(e.value).count("'industry'") == 1  # both models read it; listed once
    assert "--allow-layout-change" in str(e.value)
    allow = LeadMLConfig().with_overrides({"scoring": {"allow_layout_change": True}})
    with pytest.warns(LayoutWarning, match="scoring anyway"):
        forced = score(data, AS_OF, models, allow)
    assert len(forced) > 0


def test_cli_exits_2_lists_differences_and_writes_nothing(crm_medium, trained, tmp_path) -> None:
    from leadml.cli import main
    from leadml.datasets import write_crm
    from leadml.model.bundle import save_bundle

    bundle = save_bundle(trained["prospect"].model, tmp_path / "prospect")
    changed = _changed(crm_medium, drop=["country"], rename={"job_title": "title"})
    crm_dir = write_crm(changed, tmp_path / "crm")
    out = tmp_path / "scores.parquet"
    args = ["score", "--data", str(crm_dir), "--as-of", AS_OF, "--model", f"prospect={bundle}"]
    r = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert r.exit_code == 2, r.output
    assert "'country'" in r.output and "renamed to 'title'?" in r.output
    assert "Traceback" not in r.output and not out.exists()
    forced = CliRunner().invoke(main, [*args, "--out", str(out), "--allow-layout-change"])
    assert forced.exit_code == 0, forced.output
    assert "warning: scoring anyway" in forced.output
    assert out.exists()
    # -v says where the time went, stage by stage, and nothing else changes.
    verbose = tmp_path / "verbose.parquet"
    r = CliRunner().invoke(main, [*args, "--out", str(verbose), "--allow-layout-change", "-v"])
    assert r.exit_code == 0, r.output
    stages = [line.split()[0] for line in r.output.splitlines() if line.endswith(" GB")]
    for s in ("models", "read", "validate", "features", "predict", "explain", "reasons", "write"):
        assert s in stages, r.output
    assert pd.read_parquet(verbose).equals(pd.read_parquet(out))


def test_event_counts_before_as_of_are_exact_and_add_up(crm_medium) -> None:
    """The layout check's event counts: per type, the events strictly before ``as_of`` (all of
    them without one), and a CRM counted in parts adds up to the whole."""
    from leadml.data.contracts import CRMData
    from leadml.data.layout import EventCounts

    ev = crm_medium.events
    when = ev["occurred_at"]
    for as_of in (None, AS_OF, when.min(), when.max() + pd.Timedelta(1, "ns")):
        kept = ev if as_of is None else ev[when < pd.Timestamp(as_of)]
        expected = kept["event_type"].astype(str).value_counts().to_dict()
        got = EventCounts.of(crm_medium, as_of)
        assert got.rows == len(ev) and got.types == expected
        half = len(ev) // 2
        parts = [
            CRMData(crm_medium.leads, part, crm_medium.stage_changes, crm_medium.columns)
            for part in (ev.iloc[:half], ev.iloc[half:])
        ]
        total = EventCounts.of(parts[0], as_of) + EventCounts.of(parts[1], as_of)
        assert total.rows == got.rows and total.types == got.types
