"""The synthetic CRM: schema, invariants, determinism, and that its documented drivers hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import leadml.datasets._synthetic as synthetic
from leadml.data.contracts import FUNNEL, CRMData, load_crm, validate
from leadml.datasets import (
    BEHAVIOUR_WINDOW_DAYS,
    EVENT_TYPES,
    FIT_EFFECTS,
    HIGH_INTENT_EVENTS,
    TRUE_DRIVERS,
    make_crm,
    write_crm,
)

N_LEADS = 2000
SEED = 11
START, END = pd.Timestamp("2024-01-01"), pd.Timestamp("2025-06-30")
LEGAL = {
    ("lead", "prospect"),
    ("lead", "disqualified"),
    ("prospect", "opportunity"),
    ("prospect", "disqualified"),
    ("opportunity", "customer"),
    ("opportunity", "lost"),
    ("disqualified", "lead"),
}


@pytest.fixture(scope="module")
def crm() -> CRMData:
    return make_crm(n_leads=N_LEADS, seed=SEED)


@pytest.fixture(scope="module")
def observations(crm: CRMData) -> pd.DataFrame:
    """Weekly observation points of leads in stage ``lead``, with a 30-day promotion label and
    whether the lead had a high-intent event in the 14 days before."""
    stages = crm.stage_changes
    high = crm.events[crm.events["event_type"].isin(HIGH_INTENT_EVENTS)]
    promoted = stages[stages["stage"].isin(FUNNEL[1:])]
    horizon = pd.Timedelta(days=30)
    window = pd.Timedelta(days=BEHAVIOUR_WINDOW_DAYS)
    frames = []
    for as_of in pd.date_range(START + pd.Timedelta(days=28), END - horizon, freq="7D"):
        stage_now = stages[stages["changed_at"] < as_of].groupby("lead_id")["stage"].last()
        in_lead = stage_now.index[stage_now.to_numpy() == "lead"]
        recent = high[(high["occurred_at"] >= as_of - window) & (high["occurred_at"] < as_of)]
        later = promoted[
            (promoted["changed_at"] > as_of) & (promoted["changed_at"] <= as_of + horizon)
        ]
        frames.append(
            pd.DataFrame(
                {
                    "lead_id": in_lead,
                    "recent_intent": np.isin(in_lead, recent["lead_id"]),
                    "promoted": np.isin(in_lead, later["lead_id"]),
                }
            )
        )
    obs = pd.concat(frames, ignore_index=True)
    return obs.merge(crm.leads, on="lead_id", how="left")


# --- schema ------------------------------------------------------------------------------------


def test_tables_have_the_documented_columns_and_dtypes(crm: CRMData) -> None:
    leads, events, stages = crm.leads, crm.events, crm.stage_changes
    assert list(leads.columns) == [
        "lead_id",
        "created_at",
        "name",
        "email",
        "phone",
        "company",
        "owner",
        "industry",
        "country",
        "company_size",
        "annual_revenue_musd",
        "job_title",
        "seniority",
        "lead_source",
        "marketing_cohort",
    ]
    assert list(events.columns) == ["lead_id", "event_type", "occurred_at", "value"]
    assert list(stages.columns) == ["lead_id", "stage", "changed_at", "reason"]
    for frame in (leads, events, stages):
        assert frame["lead_id"].dtype == np.dtype("int64")
    assert leads["created_at"].dtype == np.dtype("datetime64[ns]")
    assert events["occurred_at"].dtype == np.dtype("datetime64[ns]")
    assert stages["changed_at"].dtype == np.dtype("datetime64[ns]")
    assert events["value"].dtype == np.dtype("float64")
    assert leads["annual_revenue_musd"].dtype == np.dtype("float64")
    for column in ("industry", "country", "company_size", "seniority", "lead_source"):
        assert isinstance(leads[column].dtype, pd.CategoricalDtype), column
    assert set(leads["company_size"].cat.categories) == {
        "1-10",
        "11-50",
        "51-200",
        "201-1000",
        "1000+",
    }
    assert list(events["event_type"].cat.categories) == list(EVENT_TYPES)
    assert set(events["event_type"].unique()) == set(EVENT_TYPES)
    assert len(EVENT_TYPES) >= 8


def test_output_passes_the_data_contract(crm: CRMData) -> None:
    checked = validate(crm.leads, crm.events, crm.stage_changes)
    assert checked.summary()["leads"] == N_LEADS
    assert checked.summary()["events"] == len(crm.events)


def test_ids_are_one_to_n_in_creation_order(crm: CRMData) -> None:
    leads = crm.leads
    assert leads["lead_id"].tolist() == list(range(1, N_LEADS + 1))
    assert leads["created_at"].is_monotonic_increasing
    assert set(crm.events["lead_id"]) <= set(leads["lead_id"])
    assert set(crm.stage_changes["lead_id"]) == set(leads["lead_id"])


def test_rows_are_sorted_deterministically(crm: CRMData) -> None:
    events = crm.events.assign(event_type=crm.events["event_type"].astype(str))
    resorted = events.sort_values(["lead_id", "occurred_at", "event_type"], kind="stable")
    assert resorted.index.equals(events.index)
    stages = crm.stage_changes
    resorted = stages.sort_values(["lead_id", "changed_at"], kind="stable")
    assert resorted.index.equals(stages.index)


def test_identifiers_are_present_and_plausible(crm: CRMData) -> None:
    leads = crm.leads
    for column in TRUE_DRIVERS["identifiers"]:
        assert leads[column].notna().all(), column
    assert leads["email"].str.fullmatch(r"[a-z.]+@[a-z]+\.[a-z.]+").all()
    assert leads["phone"].str.fullmatch(r"\+\d{1,3} \d{3} \d{3} \d{4}").all()
    assert leads["name"].str.contains(" ").all()
    assert 2 <= leads["owner"].nunique() <= 8
    assert leads["company"].nunique() < N_LEADS  # several leads per company


def test_true_drivers_name_real_columns_and_event_types(crm: CRMData) -> None:
    for group in ("fit", "noise", "proxy", "identifiers"):
        assert set(TRUE_DRIVERS[group]) <= set(crm.leads.columns), group
    assert set(TRUE_DRIVERS["behaviour"]) <= set(EVENT_TYPES)
    assert set(FIT_EFFECTS) <= set(TRUE_DRIVERS["fit"])
    named = [c for group in TRUE_DRIVERS.values() for c in group if c not in EVENT_TYPES]
    assert len(named) == len(set(named)), "a column is in two driver groups"


# --- time and funnel invariants ------------------------------------------------------------------


def test_everything_happens_inside_the_period_and_after_creation(crm: CRMData) -> None:
    created = crm.leads.set_index("lead_id")["created_at"]
    events, stages = crm.events, crm.stage_changes
    for stamps in (crm.leads["created_at"], events["occurred_at"], stages["changed_at"]):
        assert stamps.min() >= START
        assert stamps.max() < END
    assert (events["occurred_at"] >= events["lead_id"].map(created)).all()
    assert (stages["changed_at"] >= stages["lead_id"].map(created)).all()


def test_every_lead_starts_as_a_lead_at_creation(crm: CRMData) -> None:
    first = crm.stage_changes.groupby("lead_id").head(1).set_index("lead_id")
    assert (first["stage"] == "lead").all()
    assert first["reason"].isna().all()
    created = crm.leads.set_index("lead_id")["created_at"]
    assert first["changed_at"].equals(created.loc[first.index])


def test_stage_sequences_are_legal_transitions(crm: CRMData) -> None:
    stages = crm.stage_changes
    same_lead = stages["lead_id"].eq(stages["lead_id"].shift())
    pairs = set(zip(stages["stage"].shift()[same_lead], stages["stage"][same_lead], strict=True))
    assert pairs <= LEGAL, pairs - LEGAL
    gaps = stages["changed_at"].diff()[same_lead]
    assert (gaps > pd.Timedelta(0)).all(), "two changes of one lead share a timestamp"
    recycled = same_lead & stages["stage"].eq("lead")
    assert (stages.loc[recycled, "reason"] == "recycled").all()
    assert (stages.loc[~recycled, "reason"] != "recycled").all()
    negative = stages["stage"].isin(["disqualified", "lost"])
    assert stages.loc[negative, "reason"].notna().all()
    assert stages.loc[stages["stage"].isin(FUNNEL[1:]), "reason"].isna().all()


def test_no_events_after_a_final_disqualification_win_or_loss(crm: CRMData) -> None:
    last = crm.stage_changes.groupby("lead_id").last()
    final = last[last["stage"].isin(["disqualified", "customer", "lost"])]
    assert len(final) > 0
    events = crm.events.merge(final["changed_at"], left_on="lead_id", right_index=True)
    assert not (events["occurred_at"] > events["changed_at"]).any()


def test_base_rates_are_realistic(crm: CRMData) -> None:
    reached = crm.stage_changes.groupby("stage")["lead_id"].nunique() / N_LEADS
    assert 0.08 <= reached["prospect"] <= 0.25
    assert 0.2 <= reached["opportunity"] / reached["prospect"] <= 0.8
    assert 0 < reached["customer"] < reached["opportunity"]
    assert 0 < reached["lost"] < reached["opportunity"]
    assert 0.1 <= reached["disqualified"] <= 0.4
    recycled = (crm.stage_changes["reason"] == "recycled").sum()
    assert 0 < recycled < 0.5 * (crm.stage_changes["stage"] == "disqualified").sum()
    per_lead = len(crm.events) / N_LEADS
    assert 30 <= per_lead <= 80
    share_high = crm.events["event_type"].isin(HIGH_INTENT_EVENTS).mean()
    assert 0.05 <= share_high <= 0.3


def test_value_is_seconds_on_page_for_page_views_only(crm: CRMData) -> None:
    events = crm.events
    page = events["event_type"].isin(["web_visit", "pricing_page_view"])
    assert (events.loc[page, "value"] > 0).all()
    assert events.loc[~page, "value"].isna().all()


# --- the documented drivers hold on the output ---------------------------------------------------


def test_recent_high_intent_events_drive_promotion(observations: pd.DataFrame) -> None:
    rate = observations.groupby("recent_intent")["promoted"].mean()
    assert observations["recent_intent"].sum() > 1000
    assert rate[True] > 2.0 * rate[False]


def test_recent_intent_matters_beyond_fit(observations: pd.DataFrame) -> None:
    # Within one fit segment (same lead source), recent intent still multiplies the rate.
    segment = observations[observations["lead_source"].isin(["web_form", "paid_search"])]
    rate = segment.groupby("recent_intent")["promoted"].mean()
    assert rate[True] > 2.0 * rate[False]


def test_fit_drivers_point_the_documented_way(observations: pd.DataFrame) -> None:
    def rate(column: str, levels: list[str]) -> float:
        return float(observations.loc[observations[column].isin(levels), "promoted"].mean())

    effects = FIT_EFFECTS["lead_source"]
    best, worst = max(effects, key=effects.__getitem__), min(effects, key=effects.__getitem__)
    assert rate("lead_source", [best]) > 2.0 * rate("lead_source", [worst])
    assert rate("seniority", ["director", "vp", "c_level"]) > 1.5 * rate(
        "seniority", ["individual"]
    )
    assert rate("company_size", ["201-1000", "1000+"]) > 1.5 * rate(
        "company_size", ["1-10", "11-50"]
    )


# 99% quantiles of the chi-square distribution by degrees of freedom.
CHI2_99 = {1: 6.63, 2: 9.21, 3: 11.34, 4: 13.28, 5: 15.09}


def test_noise_attribute_has_no_material_effect(crm: CRMData) -> None:
    ever = crm.stage_changes.loc[crm.stage_changes["stage"] == "prospect", "lead_id"].unique()
    leads = crm.leads.assign(promoted=crm.leads["lead_id"].isin(ever))
    for column in TRUE_DRIVERS["noise"]:
        observed = pd.crosstab(leads[column], leads["promoted"]).to_numpy().astype(float)
        expected = observed.sum(1, keepdims=True) * observed.sum(0, keepdims=True) / len(leads)
        statistic = ((observed - expected) ** 2 / expected).sum()
        assert statistic < CHI2_99[observed.shape[0] - 1], column
        rates = leads.groupby(column, observed=True)["promoted"].mean()
        assert rates.max() - rates.min() < 0.06, rates


# --- determinism and writing ---------------------------------------------------------------------


def test_same_seed_gives_byte_identical_parquet(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_crm(make_crm(n_leads=300, seed=5), first)
    write_crm(make_crm(n_leads=300, seed=5), second)
    for name in ("leads.parquet", "events.parquet", "stage_changes.parquet"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    other = make_crm(n_leads=300, seed=6)
    assert not other.events.equals(load_crm(first).events)


def test_several_blocks_make_one_consistent_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "_BLOCK", 128)
    data = make_crm(n_leads=400, seed=2)
    assert data.leads["lead_id"].tolist() == list(range(1, 401))
    assert data.events["lead_id"].is_monotonic_increasing
    assert data.stage_changes["lead_id"].is_monotonic_increasing
    assert data.events.groupby("lead_id")["occurred_at"].is_monotonic_increasing.all()
    validate(data.leads, data.events, data.stage_changes)


def test_write_crm_round_trips_and_refuses_to_overwrite(tmp_path: Path) -> None:
    data = make_crm(n_leads=200, seed=3)
    out = tmp_path / "crm"
    assert write_crm(data, out) == out
    loaded = load_crm(out)
    pd.testing.assert_frame_equal(pd.read_parquet(out / "leads.parquet"), data.leads)
    assert loaded.summary() == data.summary()
    with pytest.raises(FileExistsError, match="already exist.*overwrite=True"):
        write_crm(data, out)
    write_crm(make_crm(n_leads=100, seed=4), out, overwrite=True)
    assert len(pd.read_parquet(out / "leads.parquet")) == 100
    leftovers = [p.name for p in out.parent.iterdir() if p.name != "crm"]
    assert leftovers == [], "temporary directories left behind"


def test_write_crm_csv_into_an_existing_directory(tmp_path: Path) -> None:
    data = make_crm(n_leads=100, seed=3)
    (tmp_path / "notes.txt").write_text("keep me")
    write_crm(data, tmp_path, format="csv")
    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert load_crm(tmp_path).summary() == data.summary()
    with pytest.raises(ValueError, match="format must be"):
        write_crm(data, tmp_path, format="json")  # type: ignore[arg-type]


# --- arguments -----------------------------------------------------------------------------------


def test_short_period_with_times_and_timezones() -> None:
    data = make_crm(
        n_leads=50, seed=1, start="2024-03-01T12:00:00+01:00", end=pd.Timestamp("2024-03-20 06:30")
    )
    lo, hi = pd.Timestamp("2024-03-01 11:00"), pd.Timestamp("2024-03-20 06:30")
    for stamps in (
        data.leads["created_at"],
        data.events["occurred_at"],
        data.stage_changes["changed_at"],
    ):
        assert stamps.min() >= lo and stamps.max() < hi
    validate(data.leads, data.events, data.stage_changes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_leads": 0}, "n_leads must be a positive integer"),
        ({"seed": -1}, "seed must be a non-negative integer"),
        ({"start": "2024-05-01", "end": "2024-05-01"}, "end .* must be after start"),
        ({"start": "yesterday-ish"}, "start='yesterday-ish' is not a timestamp"),
    ],
)
def test_bad_arguments_are_rejected(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_crm(**kwargs)  # type: ignore[arg-type]


def test_docstring_states_the_simulated_hazards() -> None:
    doc = synthetic.__doc__ or ""
    for name, (base, slope, third) in {
        "prospect": synthetic._TO_PROSPECT,
        "opportunity": synthetic._TO_OPPORTUNITY,
        "customer": synthetic._TO_CUSTOMER,
    }.items():
        assert f"{base} * exp({slope} fit) * (1 + intent_14d) ** {third}" in doc, name
    for name, (base, slope, third) in {
        "lead": synthetic._LEAD_DISQ,
        "prospect": synthetic._PROSPECT_DISQ,
        "opportunity": synthetic._OPPORTUNITY_LOST,
    }.items():
        assert f"{base} * exp({slope} fit) * (1 + {third} stale)" in doc, name
    base, slope = synthetic._RECYCLE
    assert f"{base} * exp({slope} fit) * intent_14d" in doc
    assert f"and {synthetic._HIGH_BETA} for the high-intent types" in doc


# --- drift ---------------------------------------------------------------------------------------

DRIFT_LEADS = 4000


@pytest.fixture(scope="module")
def drifting() -> CRMData:
    return make_crm(n_leads=DRIFT_LEADS, seed=SEED, drift=1.0)


@pytest.fixture(scope="module")
def steady() -> CRMData:
    """The same leads as ``drifting`` in a world that does not change."""
    return make_crm(n_leads=DRIFT_LEADS, seed=SEED)


def _next_moves(data: CRMData, stage: str, to: str, window_days: int) -> pd.DataFrame:
    """One row per lead that entered ``stage`` (its first entry) early enough for ``window_days``
    after it to lie inside the period: whether its next change was to ``to`` within them, the
    months it spent in ``stage`` within them, the time fraction ``u`` of the entry, and the
    lead's columns."""
    stages = data.stage_changes
    entered = stages[stages["stage"] == stage].groupby("lead_id")["changed_at"].first()
    later = stages.merge(entered.rename("entered"), left_on="lead_id", right_index=True)
    following = later[later["changed_at"] > later["entered"]].groupby("lead_id").first()
    left_at = following["changed_at"].reindex(entered.index)
    horizon = pd.Timedelta(days=window_days)
    inside = left_at - entered <= horizon
    moved = following["stage"].reindex(entered.index).eq(to) & inside
    until = left_at.where(inside, entered + horizon)
    out = pd.DataFrame(
        {
            "moved": moved,
            "months": (until - entered) / pd.Timedelta(days=30),
            "u": (entered - START) / (END - START),
        }
    ).join(data.leads.set_index("lead_id"))
    return out[entered + horizon <= END]


def _rate(frame: pd.DataFrame) -> float:
    """Moves per month at risk."""
    return float(frame["moved"].sum() / frame["months"].sum())


def _quarter_rates(data: CRMData, stage: str, to: str) -> tuple[float, float]:
    """Monthly ``stage -> to`` rates in the first 30 days after entering ``stage``, of leads that
    entered it in the first and in the last quarter of the period."""
    moves = _next_moves(data, stage, to, 30)
    return _rate(moves[moves["u"] < 0.25]), _rate(moves[moves["u"] >= 0.75])


def test_drift_zero_is_the_output_without_drift(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        {"n_leads": 600, "seed": 0},
        {"n_leads": 300, "seed": 5},
        {"n_leads": 50, "seed": 1, "start": "2024-03-01T12:00:00+01:00", "end": "2024-03-20"},
    ]
    for kwargs in cases:
        plain = make_crm(**kwargs)  # type: ignore[arg-type]
        for zero in (0.0, 0, np.float64(0.0)):
            same = make_crm(**kwargs, drift=zero)  # type: ignore[arg-type]
            for name in ("leads", "events", "stage_changes"):
                a, b = getattr(plain, name), getattr(same, name)
                pd.testing.assert_frame_equal(a, b, check_exact=True)
                assert a.equals(b), (kwargs, zero, name)
    # Several blocks, each with its own random stream.
    monkeypatch.setattr(synthetic, "_BLOCK", 128)
    plain, same = make_crm(n_leads=400, seed=2), make_crm(n_leads=400, seed=2, drift=0.0)
    for name in ("leads", "events", "stage_changes"):
        assert getattr(plain, name).equals(getattr(same, name)), name


@pytest.mark.parametrize("drift", [-0.1, 1.01, float("nan"), float("inf"), "0.5", None, True])
def test_bad_drift_is_rejected(drift: object) -> None:
    with pytest.raises(ValueError, match=r"drift must be a finite number from 0 to 1, got "):
        make_crm(n_leads=10, drift=drift)  # type: ignore[arg-type]


def test_drift_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        make_crm(10, 0, "2024-01-01", "2025-06-30", 0.5)  # type: ignore[call-arg]


def test_drift_keeps_the_tables_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synthetic, "_BLOCK", 128)
    data = make_crm(n_leads=500, seed=4, drift=1.0)
    validate(data.leads, data.events, data.stage_changes)
    stages = data.stage_changes
    same_lead = stages["lead_id"].eq(stages["lead_id"].shift())
    pairs = set(zip(stages["stage"].shift()[same_lead], stages["stage"][same_lead], strict=True))
    assert pairs <= LEGAL, pairs - LEGAL
    assert (stages["changed_at"].diff()[same_lead] > pd.Timedelta(0)).all()
    for stamps in (data.events["occurred_at"], stages["changed_at"]):
        assert stamps.min() >= START and stamps.max() < END


def test_drift_raises_the_base_rate_over_the_period(drifting: CRMData, steady: CRMData) -> None:
    early, late = _quarter_rates(drifting, "lead", "prospect")
    assert late >= 3.0 * early, (early, late)
    # Without drift new leads are promoted about as fast late as early.
    early, late = _quarter_rates(steady, "lead", "prospect")
    assert 0.6 * early <= late <= 1.6 * early, (early, late)


def test_drift_factor_is_the_documented_hazard_ratio() -> None:
    # The simulation multiplies the drift-free hazard by _Drift.factor; check that the product
    # is the documented formula for both drifting promotions, and 1 for every other stage.
    period = synthetic._Period.from_bounds(START, END)
    rng = np.random.default_rng(0)
    n, drift = 50, 0.8
    fit = rng.normal(0.0, 0.9, n)
    industry = rng.integers(len(synthetic.INDUSTRIES), size=n)
    e_ind = np.array([FIT_EFFECTS["industry"][name] for name in synthetic.INDUSTRIES])[industry]
    d = synthetic._Drift.for_block(drift, period, 0, period.n_days, fit, industry)
    assert d.u[0] < 0.01 and d.u[-1] > 0.99 and np.all(np.diff(d.u) > 0)  # noon of each day
    intent = rng.integers(0, 12, size=(n, period.n_days))
    leads = np.arange(n)
    c, r, g = synthetic._DRIFT_FIT, synthetic._DRIFT_INDUSTRY, synthetic._DRIFT_INTENT
    u = d.u[None, :]
    fit_u = (1 - c * drift * u) * (fit - e_ind)[:, None] + (1 - r * drift * u) * e_ind[:, None]
    promotions = {
        synthetic._LEAD: synthetic._TO_PROSPECT,
        synthetic._PROSPECT: synthetic._TO_OPPORTUNITY,
    }
    for (code, (base, slope, power)), growth in zip(
        promotions.items(), synthetic._DRIFT_BASE, strict=True
    ):
        documented = (
            base
            * np.exp(growth * drift * u + slope * fit_u)
            * (1 + intent) ** (power * (1 + g * drift * u))
        )
        today = base * np.exp(slope * fit)[:, None] * (1 + intent) ** power
        factor = d.factor(leads, np.full(n, code), intent)
        np.testing.assert_allclose(today * factor, documented, rtol=1e-12)
    for code in (synthetic._OPPORTUNITY, synthetic._DISQUALIFIED):
        assert (d.factor(leads, np.full(n, code), intent) == 1.0).all()


def test_drift_turns_the_best_industry_into_a_laggard(drifting: CRMData, steady: CRMData) -> None:
    effects = FIT_EFFECTS["industry"]
    best = max(effects, key=effects.__getitem__)
    assert best == "software"

    def log_ratio(data: CRMData, lo: float, hi: float) -> float:
        moves = _next_moves(data, "lead", "prospect", 60)
        part = moves[(moves["u"] >= lo) & (moves["u"] < hi)]
        is_best = part["industry"] == best
        return float(np.log(_rate(part[is_best]) / _rate(part[~is_best])))

    # The effect of being a software lead, measured on leads of the first and the last third.
    early, late = log_ratio(drifting, 0, 1 / 3), log_ratio(drifting, 2 / 3, 1)
    assert early > 0 > late and early - late > 0.3, (early, late)
    early, late = log_ratio(steady, 0, 1 / 3), log_ratio(steady, 2 / 3, 1)
    assert early > 0.1 and late > 0.1, (early, late)


def test_drift_is_deterministic(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    write_crm(make_crm(n_leads=300, seed=5, drift=0.7), first)
    write_crm(make_crm(n_leads=300, seed=5, drift=0.7), second)
    for name in ("leads.parquet", "events.parquet", "stage_changes.parquet"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    drifted = load_crm(first)
    plain = make_crm(n_leads=300, seed=5)
    pd.testing.assert_frame_equal(drifted.leads, plain.leads)  # the same leads...
    assert not drifted.stage_changes.equals(plain.stage_changes)  # ...in a changing world


def test_docstring_states_the_drift() -> None:
    doc = synthetic.__doc__ or ""
    for (base, slope, power), growth in zip(
        (synthetic._TO_PROSPECT, synthetic._TO_OPPORTUNITY), synthetic._DRIFT_BASE, strict=True
    ):
        formula = f"{base} * exp({growth} D u + {slope} fit_u) * (1 + intent_14d) ** ({power} g_u)"
        assert formula in doc, formula
    fit_u = (
        f"fit_u = (1 - {synthetic._DRIFT_FIT} D u) * (fit - e_ind)"
        f" + (1 - {synthetic._DRIFT_INDUSTRY} D u) * e_ind"
    )
    assert fit_u in doc
    assert f"g_u   = 1 + {synthetic._DRIFT_INTENT} D u" in doc
    assert f"fit - {synthetic._DRIFT_INDUSTRY} D u_c e_ind" in doc
