"""A synthetic B2B CRM with known, documented drivers of stage promotion.

:func:`make_crm` simulates leads arriving through a period, their engagement events and their
journey through the funnel; :func:`write_crm` writes the three tables as Parquet (or CSV) files
that :func:`leadml.data.contracts.load_crm` reads back. The data are made to be modelled: every effect
below is real in the output and nothing else is, so a model's explanations can be checked against
the truth (:data:`TRUE_DRIVERS`).

Leads
    ``lead_id`` 1..N in order of ``created_at``; creations spread over ``[start, end)`` with a
    growing trend, quiet weekends and a year-end dip, at business hours of the lead's region.
    Firmographics (``industry``, ``country``, ``company_size``, ``annual_revenue_musd``) belong to
    the lead's ``company`` (several leads may share one); ``job_title`` is made of ``seniority``
    and a department; ``lead_source`` and ``marketing_cohort`` are per lead. ``name``, ``email``,
    ``phone``, ``company`` and ``owner`` (one of eight sales reps, by region) are direct
    identifiers or display columns: they have no effect and must never be features. About 10% of
    ``annual_revenue_musd`` and 4% of ``job_title`` values are missing (the effect of revenue is
    still there; the CRM just does not know it).

Fit score
    ``fit = sum of the FIT_EFFECTS of lead_source, seniority, company_size, industry and country
    + REVENUE_EFFECT_PER_DECADE * log10(annual_revenue_musd)`` (centred). Read the numbers from
    :data:`FIT_EFFECTS`; in words: referrals and partners convert best and purchased lists worst;
    directors, VPs and C-level beat managers, who beat individual contributors; bigger and richer
    companies convert better; software and financial services best, government and non-profits
    worst; a weak country effect (India and Brazil lower).

Engagement events
    Each lead has a latent interest ``z`` on a daily grid: a per-lead baseline (higher for better
    fit and for some sources, lower for purchased lists) + an AR(1) drift (phi 0.9) + buying
    episodes that start at random (about one per 100 days), jump and decay with a 6-day time
    constant + a novelty boost that fades over the first weeks after creation. Events are an
    inhomogeneous Poisson process with intensity ``rate(type) * exp(beta * z)`` per day, where
    ``beta`` is 1.0 for low-intent types (email_open, email_click, web_visit, content_download)
    and 1.8 for the high-intent types of :data:`HIGH_INTENT_EVENTS`, so episodes are bursts of
    pricing-page views and demo requests. Weekends are quiet; times follow the region's office
    hours (in UTC). ``value`` is seconds on page for ``web_visit`` and ``pricing_page_view``,
    NaN otherwise. Leads from web forms, webinars and paid search get their first event
    (form_submit, webinar_attended, web_visit) at ``created_at``. Low-intent events carry no
    effect of their own: they only correlate with the latent interest.

Stage changes
    Every lead starts with a ``lead`` row at ``created_at``. Transitions are competing risks with
    daily hazards that use only the past (events of earlier days, never the same day):
    ``intent_14d`` = weighted count of high-intent events in the 14 days before the day
    (:data:`INTENT_WEIGHTS`: demo_request 3, the others 1); ``stale`` = no event at all in the
    30 days before, after at least 30 days in the stage.

    ============  ============  ========================================================
    from          to            daily hazard
    ============  ============  ========================================================
    lead          prospect      ``0.00015 * exp(1.0 fit) * (1 + intent_14d) ** 1.8``
    lead          disqualified  ``0.0008 * exp(-0.7 fit) * (1 + 4.0 stale)``
    prospect      opportunity   ``0.0015 * exp(0.8 fit) * (1 + intent_14d) ** 1.0``
    prospect      disqualified  ``0.002 * exp(-0.5 fit) * (1 + 4.0 stale)``
    opportunity   customer      ``0.0025 * exp(0.6 fit) * (1 + intent_14d) ** 0.5``
    opportunity   lost          ``0.008 * exp(-0.4 fit) * (1 + 2.0 stale)``
    disqualified  lead          ``0.02 * exp(0.3 fit) * intent_14d`` after 30 days,
                                at most twice (reason ``recycled``)
    ============  ============  ========================================================

    A disqualified lead hears only nurture e-mails: 30% of its events are kept until it is
    recycled, and none after the final disqualification. Customers and lost opportunities stop
    generating events. ``reason`` is ``unresponsive`` for a disqualification of a stale lead,
    otherwise a random one of bad_fit, no_budget, not_decision_maker (likelier for individual
    contributors) or competitor; a loss gets price, competitor, no_decision or timing; a recycle
    gets ``recycled``; promotions have none. Reasons are labels only and drive nothing.

    With the defaults (18 months) about 15% of leads reach prospect, 8% opportunity, 3.5%
    customer; 25% are disqualified (a seventh of them recycled); about 50 events per lead.
    Among leads in stage ``lead``, those with a high-intent event in the last 14 days reach
    prospect within 30 days about four times as often as the others.

Drift
    ``make_crm(..., drift=D)`` with ``0 < D <= 1`` makes the world change over the period; with
    ``D = 0`` (the default) everything above holds as stated and the output is bit for bit the
    same as without the argument. Let ``u = (t - start) / (end - start)`` be the time fraction
    of a day's noon (UTC), clipped to [0, 1], and ``e_ind`` the lead's industry effect
    (``FIT_EFFECTS["industry"]``, a part of ``fit``). Then, on a day with time fraction ``u``::

        lead to prospect:        0.00015 * exp(3.0 D u + 1.0 fit_u) * (1 + intent_14d) ** (1.8 g_u)
        prospect to opportunity: 0.0015 * exp(1.5 D u + 0.8 fit_u) * (1 + intent_14d) ** (1.0 g_u)

        fit_u = (1 - 0.6 D u) * (fit - e_ind) + (1 - 2.0 D u) * e_ind
        g_u   = 1 + 0.4 D u

    At ``u = 0`` this is the table above. In words, at ``D = 1``: the base rates rise (lead to
    prospect 20-fold over the period, prospect to opportunity 4.5-fold); firmographics matter
    less (the weight of fit without industry falls to 0.4); behaviour matters more (the intent
    exponents grow by 40%, 1.8 to 2.52 for lead to prospect); and the industries turn around:
    the industry weight ``1 - 2 D u`` crosses zero mid-period and reaches -1, so software, the
    best industry at the start, is the worst at the end and non-profits the best. With smaller
    ``D`` everything moves proportionally less (at ``D = 0.5`` the industry effects fade to zero
    by the end without turning). The latent interest follows the industries: its baseline uses
    ``fit - 2.0 D u_c e_ind`` instead of ``fit``, with ``u_c`` the lead's creation time fraction.
    Opportunity to customer, the exits down and recycles do not drift. Calendar time is known
    in advance, so the hazards still use nothing but the past. The funnel grows accordingly:
    at ``D = 1`` about half of the leads reach prospect and a third opportunity.

    Measured on the output (4,000 leads, 8 seeds; promotions to prospect per lead-month in the
    first 30 days after creation), leads created in the last quarter of the period are promoted
    0.9 (D = 0: noise around 1), 2.1 (D = 0.5) and 4.4 (D = 1) times as fast as those created
    in the first quarter. At ``D = 1`` software leads are promoted (per lead-month in their
    first 60 days) about 1.3 times as fast as other leads in the first third of the period and
    0.7 times as fast in the last third.

Determinism
    One seed gives identical tables (and byte-identical Parquet files on one machine). Leads are
    simulated in fixed blocks of 4,096, each with its own random stream derived from the seed
    with :class:`numpy.random.SeedSequence`, so results never depend on how the work is
    scheduled. About 1.5 minutes per million leads on one core (about a fifth more with
    ``drift``, where more leads move through the funnel).

Examples
--------
>>> data = make_crm(n_leads=200, seed=1)
>>> data.leads.shape[0], int(data.leads["lead_id"].iloc[-1])
(200, 200)
>>> sorted(TRUE_DRIVERS)
['behaviour', 'fit', 'identifiers', 'noise', 'proxy']
>>> bool((data.stage_changes.groupby("lead_id")["stage"].first() == "lead").all())
True
"""

from __future__ import annotations

import numbers
import os
import shutil
import tempfile
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from leadml.data.contracts import CRMData

__all__ = [
    "BEHAVIOUR_WINDOW_DAYS",
    "EVENT_TYPES",
    "FIT_EFFECTS",
    "HIGH_INTENT_EVENTS",
    "INTENT_WEIGHTS",
    "REVENUE_EFFECT_PER_DECADE",
    "TRUE_DRIVERS",
    "make_crm",
    "write_crm",
]

# ---------------------------------------------------------------------------------------------
# The documented truth. Tests and explanation checks read these; the simulation uses them.

EVENT_TYPES: tuple[str, ...] = (
    "email_open",
    "email_click",
    "web_visit",
    "content_download",
    "pricing_page_view",
    "webinar_attended",
    "form_submit",
    "demo_request",
)
LOW_INTENT_EVENTS: tuple[str, ...] = EVENT_TYPES[:4]
HIGH_INTENT_EVENTS: tuple[str, ...] = EVENT_TYPES[4:]
INTENT_WEIGHTS: dict[str, float] = {
    "pricing_page_view": 1.0,
    "webinar_attended": 1.0,
    "form_submit": 1.0,
    "demo_request": 3.0,
}
BEHAVIOUR_WINDOW_DAYS = 14
STALE_WINDOW_DAYS = 30

COMPANY_SIZES: tuple[str, ...] = ("1-10", "11-50", "51-200", "201-1000", "1000+")
SENIORITIES: tuple[str, ...] = ("individual", "manager", "director", "vp", "c_level")
INDUSTRIES: tuple[str, ...] = (
    "software",
    "financial_services",
    "healthcare",
    "manufacturing",
    "retail",
    "education",
    "government",
    "nonprofit",
)
LEAD_SOURCES: tuple[str, ...] = (
    "web_form",
    "paid_search",
    "referral",
    "webinar",
    "event",
    "partner",
    "purchased_list",
)
COUNTRIES: tuple[str, ...] = (
    *("US", "CA", "BR"),  # Americas
    *("GB", "DE", "FR", "NL", "ES", "SE"),  # Europe
    *("IN", "AU", "SG"),  # Asia-Pacific
)
MARKETING_COHORTS: tuple[str, ...] = ("nurture_a", "nurture_b", "nurture_c", "control")

FIT_EFFECTS: dict[str, dict[str, float]] = {
    "lead_source": dict(zip(LEAD_SOURCES, (0.3, 0.0, 0.8, 0.2, 0.15, 0.45, -1.0), strict=True)),
    "seniority": dict(zip(SENIORITIES, (-0.5, 0.0, 0.35, 0.55, 0.6), strict=True)),
    "company_size": dict(zip(COMPANY_SIZES, (-0.45, -0.2, 0.1, 0.3, 0.35), strict=True)),
    "industry": dict(
        zip(INDUSTRIES, (0.45, 0.3, 0.1, 0.0, -0.15, -0.35, -0.45, -0.6), strict=True)
    ),
    "country": dict(
        zip(
            COUNTRIES,
            (0.1, 0.1, -0.25, 0.1, 0.1, 0.0, 0.05, -0.1, 0.05, -0.3, 0.1, 0.0),
            strict=True,
        )
    ),
}
"""Additive effects on the log promotion hazard (lead to prospect) of each fit attribute level."""

REVENUE_EFFECT_PER_DECADE = 0.25
"""Effect of annual revenue on the log promotion hazard, per factor of 10 in USD millions."""

TRUE_DRIVERS: dict[str, tuple[str, ...]] = {
    # Lead columns that change the promotion hazards (strongest first).
    "fit": (
        "lead_source",
        "seniority",
        "industry",
        "company_size",
        "annual_revenue_musd",
        "country",
    ),
    # Event types whose counts over the last BEHAVIOUR_WINDOW_DAYS days raise the hazards.
    "behaviour": HIGH_INTENT_EVENTS,
    # Lead columns with no effect on anything.
    "noise": ("marketing_cohort",),
    # Lead columns that only carry another driver's information (job_title encodes seniority).
    "proxy": ("job_title",),
    # Direct identifiers and display columns: never features.
    "identifiers": ("name", "email", "phone", "company", "owner"),
}

# ---------------------------------------------------------------------------------------------
# Simulation parameters (documented in the module docstring; kept together so they stay in sync).

_BLOCK = 4096
_DAY_S = 86_400
_MIN_GAP_S = 60
_MAX_RECYCLES = 2
_NURTURE_KEEP = 0.3

_LOW_BETA, _HIGH_BETA = 1.0, 1.8
_TYPE_RATES = np.array([0.095, 0.024, 0.05, 0.009, 0.006, 0.0016, 0.0022, 0.0008])
_AR_PHI, _AR_SD = 0.9, 0.5
_EPISODE_RATE, _EPISODE_DECAY_DAYS = 1 / 100, 6.0
_EPISODE_JUMP = (1.0, 2.2)
_NOVELTY, _NOVELTY_DAYS = 1.0, 21.0
_BASELINE_SD, _BASELINE_FIT = 0.6, 0.25
_SOURCE_ENGAGEMENT = dict(zip(LEAD_SOURCES, (0.1, 0.0, 0.2, 0.2, 0.1, 0.1, -0.6), strict=True))
_FIRST_EVENT = {
    "web_form": "form_submit",
    "webinar": "webinar_attended",
    "paid_search": "web_visit",
}

# Promotions: (base daily hazard, fit slope, exponent of 1 + intent_14d).
# Exits down: (base daily hazard, fit slope, stale multiplier). Recycle: (base, fit slope).
_TO_PROSPECT = (0.00015, 1.0, 1.8)
_LEAD_DISQ = (0.0008, -0.7, 4.0)
_TO_OPPORTUNITY = (0.0015, 0.8, 1.0)
_PROSPECT_DISQ = (0.002, -0.5, 4.0)
_TO_CUSTOMER = (0.0025, 0.6, 0.5)
_OPPORTUNITY_LOST = (0.008, -0.4, 2.0)
_RECYCLE = (0.02, 0.3)
_RECYCLE_AFTER_DAYS = 30

# Drift (documented in the module docstring): with drift D and the time fraction u of a day, the
# promotions lead -> prospect and prospect -> opportunity get their base hazard times exp(a D u),
# a weight 1 - c D u on fit without its industry term, 1 - r D u on the industry term e_ind, and
# their intent exponent times 1 + g D u. The latent interest follows the industry turn.
_DRIFT_BASE = (3.0, 1.5)  # a of lead -> prospect and of prospect -> opportunity
_DRIFT_FIT = 0.6  # c: the fit weight (industry aside) falls to 1 - c at the end
_DRIFT_INDUSTRY = 2.0  # r: industry effects go from +e to (1 - r) e = -e at the end
_DRIFT_INTENT = 0.4  # g: the intent exponents grow by 40% by the end

_DISQ_REASONS = ("bad_fit", "no_budget", "not_decision_maker", "competitor")
_LOST_REASONS = ("price", "competitor", "no_decision", "timing")

# Stage codes used inside the simulation.
_LEAD, _PROSPECT, _OPPORTUNITY, _CUSTOMER, _DISQUALIFIED, _LOST = range(6)
_STAGE_NAMES = ("lead", "prospect", "opportunity", "customer", "disqualified", "lost")

# Per country: share of companies, region (0 Americas, 1 EMEA, 2 APAC), phone code, domain suffix,
# legal-form suffix.
_COUNTRY_INFO: dict[str, tuple[float, int, str, str, str]] = {
    "US": (0.33, 0, "1", "com", "Inc."),
    "CA": (0.05, 0, "1", "ca", "Ltd."),
    "BR": (0.05, 0, "55", "com.br", "Ltda."),
    "GB": (0.10, 1, "44", "co.uk", "Ltd"),
    "DE": (0.09, 1, "49", "de", "GmbH"),
    "FR": (0.06, 1, "33", "fr", "SAS"),
    "NL": (0.04, 1, "31", "nl", "B.V."),
    "ES": (0.04, 1, "34", "es", "S.L."),
    "SE": (0.03, 1, "46", "se", "AB"),
    "IN": (0.08, 2, "91", "in", "Pvt Ltd"),
    "AU": (0.05, 2, "61", "com.au", "Pty Ltd"),
    "SG": (0.04, 2, "65", "sg", "Pte Ltd"),
}
_REGION_UTC_OFFSET = (-5, 1, 7)
_OWNERS = (
    ("Maya Thompson", "Jordan Ellis", "Carlos Mendes"),
    ("Sophie Laurent", "Jonas Becker", "Emma Clarke"),
    ("Priya Nair", "Kenji Watanabe"),
)
_SIZE_SHARES = (0.30, 0.28, 0.20, 0.13, 0.09)
_REVENUE_MEDIAN_MUSD = (0.8, 4.0, 20.0, 90.0, 600.0)
_INDUSTRY_SHARES = (0.24, 0.14, 0.13, 0.14, 0.11, 0.10, 0.07, 0.07)
_SOURCE_SHARES = (0.30, 0.18, 0.08, 0.12, 0.10, 0.07, 0.15)
_SENIORITY_SHARES = (0.38, 0.30, 0.17, 0.09, 0.06)

_DEPARTMENTS = ("Marketing", "Sales", "IT", "Engineering", "Finance", "Operations")
_TITLES: dict[str, tuple[str, ...]] = {
    "individual": (
        "Marketing Specialist",
        "Account Executive",
        "Systems Administrator",
        "Software Engineer",
        "Financial Analyst",
        "Operations Analyst",
    ),
    "manager": tuple(f"{d} Manager" for d in _DEPARTMENTS),
    "director": tuple(f"Director of {d}" for d in _DEPARTMENTS),
    "vp": tuple(f"VP {d}" for d in _DEPARTMENTS),
    "c_level": ("CMO", "CRO", "CIO", "CTO", "CFO", "COO"),
}
_FIRST_NAMES = (
    "Olivia Liam Emma Noah Ava Lucas Sofia Mateo Mia Elias Amara Kenji Priya Arjun Chloe Hugo Léa "
    "Jonas Ingrid Lars Fatima Omar Yuki Hana Diego Camila Thiago Isabela Ethan Grace Daniel Zoë "
    "Samuel Nora Felix Clara Ravi Ananya Wei Mei Tomás Lucía Aiden Leah Malik Aisha Jakob Freya "
    "Marco Giulia"
).split()
_LAST_NAMES = (
    "Smith Johnson Williams Brown Garcia Martinez Miller Davis Lopez Wilson Anderson Taylor Thomas "
    "Moore Martin Lee Walker Hall Young King Müller Schmidt Schneider Fischer Weber Dubois Moreau "
    "Laurent Bernard Rossi Russo Bianchi Silva Santos Oliveira Pereira Sharma Patel Gupta Singh "
    "Kumar Tanaka Suzuki Sato Chen Wang Li Zhang Nguyen Kim Park Andersson Johansson Nilsson "
    "Jansen Visser O'Brien Murphy Kelly Novak"
).split()
_COMPANY_WORDS = (
    "Blue North Bright Silver Iron Summit Cedar Nova Apex Clear Green Harbor Pine Quantum Vector "
    "Atlas Beacon Crest Delta Echo Falcon Granite Horizon Lumen Meridian Orbit Pioneer Ridge "
    "Sterling Terra Union Vertex Willow Zenith Aurora Cobalt Ember Maple Oak River"
).split()
_COMPANY_NOUNS: dict[str, tuple[str, ...]] = {
    "software": ("Labs", "Systems", "Cloud", "Software", "Data", "Analytics"),
    "financial_services": ("Capital", "Finance", "Insurance", "Wealth", "Payments"),
    "healthcare": ("Health", "Bio", "Pharma", "Medical", "Care"),
    "manufacturing": ("Industries", "Manufacturing", "Works", "Robotics", "Motors"),
    "retail": ("Retail", "Foods", "Stores", "Goods", "Brands"),
    "education": ("Learning", "Academy", "Education", "Institute"),
    "government": ("Agency", "Authority", "Council", "Public Services"),
    "nonprofit": ("Foundation", "Trust", "Alliance", "Society"),
}
_NO_LEGAL_FORM = ("education", "government", "nonprofit")

# Office-hours profile in local time, 24 hourly weights.
_LOCAL_HOURS = np.array(
    [0.1] * 7 + [0.4, 0.8, 1.2, 1.2, 1.2, 0.9, 1.1, 1.1, 1.1, 1.1, 0.8] + [0.5] * 4 + [0.25] * 2
)
_EVENT_WEEKDAY = np.array([1.0, 1.05, 1.05, 1.0, 0.9, 0.35, 0.3])
_LEAD_WEEKDAY = np.array([1.0, 1.0, 1.0, 1.0, 0.9, 0.3, 0.25])


# ---------------------------------------------------------------------------------------------
# Public API


def make_crm(
    n_leads: int = 5000,
    seed: int = 0,
    start: str | pd.Timestamp = "2024-01-01",
    end: str | pd.Timestamp = "2025-06-30",
    *,
    drift: float = 0.0,
) -> CRMData:
    """Simulate a CRM: leads, their engagement events and their stage changes.

    Parameters
    ----------
    n_leads : int
        Number of leads, created throughout the period (ids 1..n_leads in creation order).
    seed : int
        Non-negative seed; the same seed always gives the same tables.
    start, end : str or Timestamp
        The period ``[start, end)`` (UTC; a timezone-aware value is converted). Every timestamp
        in the output falls inside it.
    drift : float, keyword-only
        How much the world changes over the period, from 0 (not at all: the default, and exactly
        the output without it) to 1 (strongly): the promotion base rates rise and the drivers'
        weights shift with calendar time, as the module docstring's *Drift* section states.

    Returns
    -------
    CRMData
        ``leads`` (one row per lead, identifiers and fit attributes), ``events`` (``lead_id``,
        ``event_type``, ``occurred_at``, ``value``) and ``stage_changes`` (``lead_id``,
        ``stage``, ``changed_at``, ``reason``), sorted by lead and time. The true drivers are
        described in the module docstring and :data:`TRUE_DRIVERS`.

    Raises
    ------
    ValueError
        If ``n_leads`` is below 1, ``seed`` is negative, ``end`` is not after ``start``, or
        ``drift`` is not a finite number from 0 to 1.

    Examples
    --------
    >>> data = make_crm(n_leads=50, seed=7)
    >>> list(data.events.columns)
    ['lead_id', 'event_type', 'occurred_at', 'value']
    >>> bool((data.events["occurred_at"] < pd.Timestamp("2025-06-30")).all())
    True
    >>> make_crm(n_leads=50, seed=7, drift=0.0).stage_changes.equals(data.stage_changes)
    True
    """
    if not _is_int(n_leads) or n_leads < 1:
        raise ValueError(f"make_crm: n_leads must be a positive integer, got {n_leads!r}")
    if not _is_int(seed) or seed < 0:
        raise ValueError(f"make_crm: seed must be a non-negative integer, got {seed!r}")
    if (
        not isinstance(drift, numbers.Real)
        or isinstance(drift, bool)
        or not 0.0 <= float(drift) <= 1.0  # also rejects NaN
    ):
        raise ValueError(f"make_crm: drift must be a finite number from 0 to 1, got {drift!r}")
    period = _Period.from_bounds(start, end)
    n = int(n_leads)
    world = _build_world(n, int(seed), period)

    blocks = [
        _simulate_block(world, period, b, min(b + _BLOCK, n), int(seed), b // _BLOCK, float(drift))
        for b in range(0, n, _BLOCK)
    ]
    events = _events_frame(blocks)
    stage_changes = _stage_frame(blocks)
    leads = _leads_frame(world, np.random.default_rng(_stream(int(seed), 2)))
    return CRMData(leads=leads, events=events, stage_changes=stage_changes)


def write_crm(
    data: CRMData,
    out_dir: str | os.PathLike[str],
    format: Literal["parquet", "csv"] = "parquet",
    overwrite: bool = False,
) -> Path:
    """Write ``leads``, ``events`` and ``stage_changes`` into ``out_dir`` atomically.

    The files are written into a temporary directory beside ``out_dir`` and moved into place only
    when all three are complete, so an interrupted run never leaves a half-written table.

    Parameters
    ----------
    data : CRMData
        The tables, e.g. from :func:`make_crm`.
    out_dir : path
        Target directory; created if missing. Other files in it are left alone.
    format : {"parquet", "csv"}
        File format; Parquet keeps dtypes and is byte-identical for identical tables.
    overwrite : bool
        Replace existing ``leads``/``events``/``stage_changes`` files of that format.

    Returns
    -------
    Path
        The output directory.

    Raises
    ------
    FileExistsError
        If a target file exists and ``overwrite`` is False.
    ValueError
        If ``format`` is unknown.
    """
    if format not in ("parquet", "csv"):
        raise ValueError(f"write_crm: format must be 'parquet' or 'csv', got {format!r}")
    out = Path(out_dir)
    names = [f"{table}.{format}" for table in ("leads", "events", "stage_changes")]
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"write_crm: {str(out)!r} exists and is not a directory")
    existing = [name for name in names if (out / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"write_crm: {', '.join(existing)} already exist in {str(out)!r}; "
            "pass overwrite=True (--overwrite) to replace them or choose another directory"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        # mkdtemp makes a private (0700) directory; the final one should follow the umask.
        tmp.chmod(0o777 & ~_current_umask())
        frames = (data.leads, data.events, data.stage_changes)
        for name, frame in zip(names, frames, strict=True):
            _write_table(frame, tmp / name, format)
        if not out.exists():
            try:
                tmp.rename(out)
                return out
            except OSError:
                # Another writer created the directory meanwhile; fall back to moving files.
                out.mkdir(parents=True, exist_ok=True)
        for name in names:
            os.replace(tmp / name, out / name)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_table(frame: pd.DataFrame, path: Path, format: str) -> None:
    if format == "csv":
        frame.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S")
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


# ---------------------------------------------------------------------------------------------
# Period and random streams


@dataclass(frozen=True)
class _Period:
    """The simulated period on a grid of UTC days that starts at midnight before ``start``."""

    origin_s: int  # epoch seconds of the grid's first midnight
    start_s: int
    end_s: int
    n_days: int

    @classmethod
    def from_bounds(cls, start: str | pd.Timestamp, end: str | pd.Timestamp) -> _Period:
        lo, hi = _utc_naive(start, "start"), _utc_naive(end, "end")
        if hi <= lo:
            raise ValueError(f"make_crm: end ({hi}) must be after start ({lo})")
        start_s = int(lo.as_unit("ns").value // 1_000_000_000)
        end_s = int(-(-hi.as_unit("ns").value // 1_000_000_000))
        origin_s = start_s - start_s % _DAY_S
        n_days = -(-(end_s - origin_s) // _DAY_S)
        return cls(origin_s, start_s, end_s, int(n_days))

    @property
    def first_weekday(self) -> int:
        # 1970-01-01 was a Thursday (weekday 3).
        return (self.origin_s // _DAY_S + 3) % 7

    def weekdays(self) -> np.ndarray:
        return (np.arange(self.n_days) + self.first_weekday) % 7


def _utc_naive(value: str | pd.Timestamp, name: str) -> pd.Timestamp:
    try:
        ts = pd.Timestamp(value)
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"make_crm: {name}={value!r} is not a timestamp (e.g. '2024-01-01')"
        ) from e
    if ts is pd.NaT:
        raise ValueError(f"make_crm: {name} must be a timestamp, got NaT")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts


def _stream(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=key)


def _hour_cdfs() -> np.ndarray:
    """Cumulative share of activity at each UTC hour boundary (0..24), one row per region."""
    cdfs = np.zeros((len(_REGION_UTC_OFFSET), 25))
    for r, offset in enumerate(_REGION_UTC_OFFSET):
        utc_weights = np.roll(_LOCAL_HOURS, -offset)  # UTC hour h is local hour h + offset
        cdfs[r, 1:] = np.cumsum(utc_weights) / utc_weights.sum()
    return cdfs


_HOURS = np.arange(25.0)


def _share_before(cdfs: np.ndarray, region: np.ndarray, day_frac: np.ndarray) -> np.ndarray:
    """Share of a day's activity before ``day_frac`` (0..1) for each row's region."""
    out = np.empty(day_frac.shape)
    for r in range(cdfs.shape[0]):
        m = region == r
        out[m] = np.interp(day_frac[m] * 24.0, _HOURS, cdfs[r])
    return out


def _hour_at_share(cdfs: np.ndarray, region: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_share_before`, in hours."""
    out = np.empty(share.shape)
    for r in range(cdfs.shape[0]):
        m = region == r
        out[m] = np.interp(share[m], cdfs[r], _HOURS)
    return out


# ---------------------------------------------------------------------------------------------
# The world: companies, creation times and per-lead attributes (global, cheap, O(n_leads))


@dataclass(frozen=True)
class _World:
    created_s: np.ndarray  # int64 epoch seconds, sorted
    company: np.ndarray  # index into the company arrays
    company_name: np.ndarray
    company_domain: np.ndarray
    industry: np.ndarray  # codes
    country: np.ndarray
    size: np.ndarray
    revenue: np.ndarray  # true revenue, USD millions
    region: np.ndarray
    source: np.ndarray
    seniority: np.ndarray
    department: np.ndarray
    cohort: np.ndarray
    fit: np.ndarray


def _build_world(n: int, seed: int, period: _Period) -> _World:
    rng = np.random.default_rng(_stream(seed, 0))
    n_companies = max(20, int(n / 2.5))
    country_share = np.array([info[0] for info in _COUNTRY_INFO.values()])
    c_country = rng.choice(len(COUNTRIES), n_companies, p=country_share / country_share.sum())
    c_industry = rng.choice(len(INDUSTRIES), n_companies, p=_INDUSTRY_SHARES)
    c_size = rng.choice(len(COMPANY_SIZES), n_companies, p=_SIZE_SHARES)
    c_revenue = np.exp(
        np.log(np.asarray(_REVENUE_MEDIAN_MUSD))[c_size] + rng.normal(0.0, 0.7, n_companies)
    )
    c_word1 = rng.integers(len(_COMPANY_WORDS), size=n_companies)
    c_word2 = rng.integers(len(_COMPANY_WORDS), size=n_companies)
    c_noun = rng.integers(60, size=n_companies)
    names, domains = _company_names(c_word1, c_word2, c_noun, c_industry, c_country)

    # Bigger companies produce more leads.
    weight = (1.0 + c_size) / (1.0 + c_size).sum()
    company = np.minimum(
        np.searchsorted(np.cumsum(weight), rng.random(n), side="right"), n_companies - 1
    )
    region_of_country = np.array([info[1] for info in _COUNTRY_INFO.values()])
    region = region_of_country[c_country[company]]

    created_s = _creation_times(rng, period, region)
    order = np.argsort(created_s, kind="stable")
    created_s, company, region = created_s[order], company[order], region[order]

    source = rng.choice(len(LEAD_SOURCES), n, p=_SOURCE_SHARES)
    seniority = rng.choice(len(SENIORITIES), n, p=_SENIORITY_SHARES)
    department = rng.integers(len(_DEPARTMENTS), size=n)
    cohort = rng.integers(len(MARKETING_COHORTS), size=n)

    industry, country, size = c_industry[company], c_country[company], c_size[company]
    revenue = c_revenue[company]
    fit = (
        _effects("lead_source", LEAD_SOURCES)[source]
        + _effects("seniority", SENIORITIES)[seniority]
        + _effects("company_size", COMPANY_SIZES)[size]
        + _effects("industry", INDUSTRIES)[industry]
        + _effects("country", COUNTRIES)[country]
        + REVENUE_EFFECT_PER_DECADE * np.log10(revenue)
    )
    fit = fit - 0.5  # centre: the population's average fit is about 0.5 before this
    return _World(
        created_s=created_s,
        company=company,
        company_name=names,
        company_domain=domains,
        industry=industry,
        country=country,
        size=size,
        revenue=revenue,
        region=region,
        source=source,
        seniority=seniority,
        department=department,
        cohort=cohort,
        fit=fit,
    )


def _effects(attribute: str, levels: Sequence[str]) -> np.ndarray:
    return np.array([FIT_EFFECTS[attribute][level] for level in levels])


def _creation_times(rng: np.random.Generator, period: _Period, region: np.ndarray) -> np.ndarray:
    days = np.arange(period.n_days)
    day_start = period.origin_s + days * _DAY_S
    # Growing marketing spend, quiet weekends, and a dip over the year-end holidays.
    weight = 1.0 + 0.5 * days / max(period.n_days - 1, 1)
    weight = weight * _LEAD_WEEKDAY[period.weekdays()]
    month_day = pd.to_datetime(day_start, unit="s")
    holiday = ((month_day.month == 12) & (month_day.day >= 22)) | (
        (month_day.month == 1) & (month_day.day <= 2)
    )
    weight = weight * np.where(holiday, 0.3, 1.0)
    # Only the part of the first and last day inside [start, end) can receive leads.
    lo = np.clip((period.start_s - day_start) / _DAY_S, 0.0, 1.0)
    hi = np.clip((period.end_s - day_start) / _DAY_S, 0.0, 1.0)
    weight = weight * (hi - lo)
    day = np.searchsorted(np.cumsum(weight) / weight.sum(), rng.random(region.size), side="right")
    day = np.minimum(day, period.n_days - 1)
    cdfs = _hour_cdfs()
    a = _share_before(cdfs, region, lo[day])
    b = _share_before(cdfs, region, hi[day])
    hour = _hour_at_share(cdfs, region, a + rng.random(region.size) * (b - a))
    seconds = day_start[day] + np.floor(hour * 3600.0).astype(np.int64)
    return np.clip(seconds, period.start_s, period.end_s - 1).astype(np.int64)


def _ascii(text: str) -> str:
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(ch for ch in plain.lower() if ch.isalnum())


def _company_names(
    word1: np.ndarray,
    word2: np.ndarray,
    noun: np.ndarray,
    industry: np.ndarray,
    country: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Company display names and web domains, assembled from small tables of parts."""
    words = np.array(_COMPANY_WORDS, dtype=object)
    pair = words[:, None] + np.char.lower(np.array(_COMPANY_WORDS))[None, :].astype(object)
    np.fill_diagonal(pair, words)  # "Nova" rather than "Novanova"
    pair_ascii = np.vectorize(_ascii, otypes=[object])(pair)
    width = max(len(v) for v in _COMPANY_NOUNS.values())
    nouns = np.array(
        [[v[k % len(v)] for k in range(width)] for v in _COMPANY_NOUNS.values()], dtype=object
    )
    nouns_ascii = np.vectorize(_ascii, otypes=[object])(nouns)
    legal = np.array(
        [
            ["" if name in _NO_LEGAL_FORM else f" {info[4]}" for info in _COUNTRY_INFO.values()]
            for name in INDUSTRIES
        ],
        dtype=object,
    )
    tld = np.array(["." + info[3] for info in _COUNTRY_INFO.values()], dtype=object)
    k = noun % width
    names = pair[word1, word2] + " " + nouns[industry, k] + legal[industry, country]
    domains = pair_ascii[word1, word2] + nouns_ascii[industry, k] + tld[country]
    return names, domains


# ---------------------------------------------------------------------------------------------
# One block of leads: interest, events, stage changes


@dataclass
class _Block:
    lead_index: np.ndarray  # global 0-based index of each event's / change's lead
    ev_type: np.ndarray
    ev_s: np.ndarray
    ev_value: np.ndarray
    st_lead: np.ndarray
    st_stage: np.ndarray
    st_s: np.ndarray
    st_reason: np.ndarray  # index into _REASONS, -1 for none


_REASONS = (*_DISQ_REASONS, "unresponsive", *_LOST_REASONS, "recycled")
_REASON_CODE = {name: i for i, name in enumerate(_REASONS)}


def _simulate_block(
    world: _World, period: _Period, lo: int, hi: int, seed: int, block: int, drift: float = 0.0
) -> _Block:
    rng = np.random.default_rng(_stream(seed, 1, block))
    n = hi - lo
    created_s = world.created_s[lo:hi]
    fit = world.fit[lo:hi]
    region = world.region[lo:hi]
    source = world.source[lo:hi]

    created_day = (created_s - period.origin_s) // _DAY_S
    d0 = int(created_day.min())
    width = period.n_days - d0
    day = d0 + np.arange(width)
    col0 = created_day - d0
    cols = np.arange(width)

    # Share of each day's activity that lies inside the lead's life and the period: nothing before
    # the creation day, the rest of the creation day, the part of the last day before ``end``.
    cdfs = _hour_cdfs()
    created_frac = (created_s - period.origin_s - created_day * _DAY_S) / _DAY_S
    share_lo = _share_before(cdfs, region, created_frac)
    end_frac = (period.end_s - period.origin_s) / _DAY_S - (period.n_days - 1)
    share_hi = _share_before(cdfs, region, np.full(n, end_frac))
    # float32 keeps these big matrices cheap; sums over them are taken in float64.
    avail = (cols[None, :] >= col0[:, None]).astype(np.float32)
    avail[np.arange(n), col0] = 1.0 - share_lo
    avail[:, -1] = np.where(col0 == width - 1, np.maximum(share_hi - share_lo, 0.0), share_hi)
    avail *= _EVENT_WEEKDAY[(day + period.first_weekday) % 7].astype(np.float32)[None, :]

    interest_fit = fit
    if drift > 0:
        # The industries' interest turns around with their conversion (see the docstring).
        u_created = (created_s - period.start_s) / (period.end_s - period.start_s)
        e_ind = _effects("industry", INDUSTRIES)[world.industry[lo:hi]]
        interest_fit = fit - _DRIFT_INDUSTRY * drift * u_created * e_ind
    z = _interest(rng, interest_fit, source, col0, width)

    rates = _type_rates(source)
    ev_row, ev_col, ev_type, ev_frac = [], [], [], []
    for types, beta in ((np.arange(4), _LOW_BETA), (np.arange(4, 8), _HIGH_BETA)):
        group_rates = rates[:, types]
        total = group_rates.sum(axis=1)
        mass = z * np.float32(beta)
        np.exp(mass, out=mass)
        mass *= avail
        mass *= total.astype(np.float32)[:, None]
        rows, ecols, frac = _sample_points(rng, mass)
        del mass
        cum = np.cumsum(group_rates / total[:, None], axis=1)[:, :-1]
        pick = (rng.random(rows.size)[:, None] >= cum[rows]).sum(axis=1)
        ev_row.append(rows)
        ev_col.append(ecols)
        ev_type.append(types[pick])
        ev_frac.append(frac)
    rows = np.concatenate(ev_row)
    ecols = np.concatenate(ev_col)
    types = np.concatenate(ev_type)
    frac = np.concatenate(ev_frac)
    lower = np.where(ecols == col0[rows], share_lo[rows], 0.0)
    upper = np.where(ecols == width - 1, share_hi[rows], 1.0)
    hour = _hour_at_share(cdfs, region[rows], lower + frac * (upper - lower))
    ev_s = period.origin_s + (d0 + ecols) * _DAY_S + np.floor(hour * 3600.0).astype(np.int64)
    ev_s = np.maximum(ev_s, created_s[rows])

    # The event that created the lead (a form, a webinar registration, an ad click).
    first_type = np.full(len(LEAD_SOURCES), -1)
    for src, etype in _FIRST_EVENT.items():
        first_type[LEAD_SOURCES.index(src)] = EVENT_TYPES.index(etype)
    has_first = first_type[source] >= 0
    rows = np.concatenate([rows, np.flatnonzero(has_first)])
    ecols = np.concatenate([ecols, col0[has_first]])
    types = np.concatenate([types, first_type[source][has_first]])
    ev_s = np.concatenate([ev_s, created_s[has_first]])
    zc = z[rows, ecols]
    del z

    # One int64 key (lead, second, type name) sorts like a lexsort, and the sampled groups are
    # already sorted runs, which the stable (merging) sort exploits.
    keep = np.flatnonzero(ev_s < period.end_s)
    time_bits = (period.end_s - period.origin_s).bit_length() + 3
    key = (rows[keep].astype(np.int64) << time_bits) | ((ev_s[keep] - period.origin_s) << 3)
    key |= _TYPE_NAME_RANK[types[keep]]
    order = keep[np.argsort(key, kind="stable")]
    rows, ecols, types, ev_s, zc = rows[order], ecols[order], types[order], ev_s[order], zc[order]

    value = np.full(rows.size, np.nan)
    web = types == EVENT_TYPES.index("web_visit")
    pricing = types == EVENT_TYPES.index("pricing_page_view")
    page = web | pricing
    log_seconds = np.where(pricing, np.log(75.0), np.log(40.0)) + 0.25 * zc
    seconds = np.exp(log_seconds[page] + rng.normal(0.0, 0.8, int(page.sum())))
    value[page] = np.maximum(np.round(seconds), 1.0)

    drifting = None
    if drift > 0:
        drifting = _Drift.for_block(drift, period, d0, width, fit, world.industry[lo:hi])
    visible, st = _simulate_stages(
        rng,
        period,
        fit,
        world.seniority[lo:hi],
        created_s,
        d0,
        width,
        rows,
        ecols,
        types,
        ev_s,
        drifting,
    )
    return _Block(
        lead_index=rows[visible] + lo,
        ev_type=types[visible].astype(np.int8),
        ev_s=ev_s[visible],
        ev_value=value[visible],
        st_lead=st[0] + lo,
        st_stage=st[1],
        st_s=st[2],
        st_reason=st[3],
    )


_TYPE_NAME_RANK = np.argsort(np.argsort(np.array(EVENT_TYPES)))


def _interest(
    rng: np.random.Generator, fit: np.ndarray, source: np.ndarray, col0: np.ndarray, width: int
) -> np.ndarray:
    """Latent interest on the daily grid: baseline + AR(1) drift + buying episodes + novelty.

    Values before a lead's creation day are meaningless (and never used)."""
    n = col0.size
    source_shift = np.array([_SOURCE_ENGAGEMENT[s] for s in LEAD_SOURCES])[source]
    baseline = rng.normal(0.0, _BASELINE_SD, n) + _BASELINE_FIT * fit + source_shift - 0.3

    # Uniform innovations are several times cheaper to draw than normal ones, and the AR(1)
    # filter sums enough of them to make the drift close to Gaussian anyway.
    z = rng.random((n, width), dtype=np.float32)
    z -= np.float32(0.5)
    z *= np.float32(np.sqrt(12.0) * _AR_SD * np.sqrt(1.0 - _AR_PHI**2))
    z[:, 0] = rng.normal(0.0, _AR_SD, n)  # start in the stationary distribution
    _ar1_inplace(z, _AR_PHI)
    episodes = _episodes(rng, n, width).astype(np.float32)
    _ar1_inplace(episodes, np.exp(-1.0 / _EPISODE_DECAY_DAYS))
    z += episodes
    del episodes
    # Novelty exp(-tenure / days) factorises into a lead part and a day part; capping at 1 keeps
    # the (unused) days before creation finite.
    novelty = (
        np.exp(col0 / _NOVELTY_DAYS).astype(np.float32)[:, None]
        * np.exp(-np.arange(width) / _NOVELTY_DAYS).astype(np.float32)[None, :]
    )
    np.minimum(novelty, 1.0, out=novelty)
    novelty *= np.float32(_NOVELTY)
    novelty += baseline.astype(np.float32)[:, None]
    z += novelty
    return z


def _ar1_inplace(x: np.ndarray, phi: float, segment: int = 64) -> None:
    """Run ``x[:, t] = phi * x[:, t-1] + x[:, t]`` along rows, in place.

    Within a segment, ``x_t = phi**t * (phi * carry + cumsum(phi**-j * e_j))``: a few vector
    passes instead of a Python loop over days. Short segments keep ``phi**-j`` small enough for
    float32 to lose nothing that matters.
    """
    powers = phi ** np.arange(segment, dtype=np.float64)
    up, down = (1.0 / powers).astype(x.dtype), powers.astype(x.dtype)
    carry = np.zeros(x.shape[0], dtype=x.dtype)
    for a in range(0, x.shape[1], segment):
        part = x[:, a : a + segment]
        k = part.shape[1]
        part *= up[:k]
        np.cumsum(part, axis=1, out=part)
        part += (carry * x.dtype.type(phi))[:, None]
        part *= down[:k]
        carry = part[:, -1].copy()


def _episodes(rng: np.random.Generator, n: int, width: int) -> np.ndarray:
    """Jumps of buying interest on the days episodes start (a Bernoulli process per lead)."""
    starts: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    pos = np.full(n, -1, dtype=np.int64)
    live = np.arange(n)
    while live.size:
        pos[live] += rng.geometric(_EPISODE_RATE, live.size)
        live = live[pos[live] < width]
        rows.append(live)
        starts.append(pos[live])
    r, s = np.concatenate(rows), np.concatenate(starts)
    jumps = rng.uniform(*_EPISODE_JUMP, r.size)
    return np.bincount(r * width + s, weights=jumps, minlength=n * width).reshape(n, width)


def _type_rates(source: np.ndarray) -> np.ndarray:
    rates = np.tile(_TYPE_RATES, (source.size, 1))
    webinar = EVENT_TYPES.index("webinar_attended")
    rates[source == LEAD_SOURCES.index("webinar"), webinar] *= 3.0
    rates[source == LEAD_SOURCES.index("event"), webinar] *= 1.5
    return rates


def _sample_points(
    rng: np.random.Generator, mass: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points of a Poisson process with piecewise-constant intensity ``mass`` per (row, cell).

    Returns each point's row, cell and position inside the cell (0..1). One Poisson draw per row
    and an inverse-CDF lookup per point: far cheaper than one draw per cell when cells are sparse.
    """
    n, width = mass.shape
    flat = mass.ravel()
    cum = np.cumsum(flat, dtype=np.float64)
    row_end = cum[width - 1 :: width]
    row_start = np.concatenate(([0.0], row_end[:-1]))
    total = np.maximum(row_end - row_start, 0.0)
    counts = rng.poisson(total)
    rows = np.repeat(np.arange(n), counts)
    target = row_start[rows] + rng.random(rows.size) * total[rows]
    # Sorted needles let searchsorted narrow each search from the previous hit (much faster);
    # rows occupy disjoint ranges of ``cum``, so sorting keeps every point in its row.
    target.sort()
    cell = np.searchsorted(cum, target, side="right")
    # Rounding can push a point past its row's last non-empty cell; pull it back.
    positive = mass > 0
    last = np.arange(n) * width + width - 1 - np.argmax(positive[:, ::-1], axis=1)
    cell = np.minimum(cell, last[rows])
    cell_mass = flat[cell].astype(np.float64)
    frac = np.clip((target - (cum[cell] - cell_mass)) / cell_mass, 0.0, 1.0 - 1e-9)
    return rows, cell - rows * width, frac


def _simulate_stages(
    rng: np.random.Generator,
    period: _Period,
    fit: np.ndarray,
    seniority: np.ndarray,
    created_s: np.ndarray,
    d0: int,
    width: int,
    ev_row: np.ndarray,
    ev_col: np.ndarray,
    ev_type: np.ndarray,
    ev_s: np.ndarray,
    drift: _Drift | None = None,
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Competing-risk stage journeys; returns which events stay visible and the stage changes.

    Each round moves every lead that is still in play one step: the daily hazards of its two
    exits (up and down) are integrated from its stage entry and compared with Exp(1) draws. The
    hazards read event counts as they are visible at that point (nurture-only while
    disqualified), so a lead's journey and its event stream stay consistent. With ``drift`` the
    promotion hazards are also multiplied by its calendar-time factor; without it nothing at all
    changes (not one operation), so drift 0 is the old output bit for bit.
    """
    n = fit.size
    weights = np.zeros(len(EVENT_TYPES))
    for name, w in INTENT_WEIGHTS.items():
        weights[EVENT_TYPES.index(name)] = w
    ev_w = weights[ev_type]
    nurture = rng.random(ev_row.size) < _NURTURE_KEEP
    visible = np.ones(ev_row.size, dtype=bool)

    stage = np.full(n, _LEAD)
    entry_s = created_s.copy()
    recycles = np.zeros(n, dtype=np.int64)
    done = np.zeros(n, dtype=bool)
    out_lead = [np.arange(n)]
    out_stage = [np.full(n, _LEAD)]
    out_s = [created_s.copy()]
    out_reason = [np.full(n, -1)]

    # Per stage code: exits' base hazard, fit slope, stale multiplier, row of the intent table.
    up_base = np.zeros(6)
    up_slope = np.zeros(6)
    down_base = np.zeros(6)
    down_slope = np.zeros(6)
    down_stale = np.zeros(6)
    for code, promote, demote in (
        (_LEAD, _TO_PROSPECT, _LEAD_DISQ),
        (_PROSPECT, _TO_OPPORTUNITY, _PROSPECT_DISQ),
        (_OPPORTUNITY, _TO_CUSTOMER, _OPPORTUNITY_LOST),
    ):
        up_base[code], up_slope[code] = promote[0], promote[1]
        down_base[code], down_slope[code], down_stale[code] = demote
    up_base[_DISQUALIFIED], up_slope[_DISQUALIFIED] = _RECYCLE

    cols = np.arange(width)
    while True:
        recyclable = (stage == _DISQUALIFIED) & (recycles < _MAX_RECYCLES)
        in_play = (stage == _LEAD) | (stage == _PROSPECT) | (stage == _OPPORTUNITY) | recyclable
        active = np.flatnonzero(~done & in_play)
        if active.size == 0:
            break
        s = stage[active]
        f = fit[active]
        entry_days = (entry_s[active] - period.origin_s) / _DAY_S
        entry_col = np.floor(entry_days).astype(np.int64) - d0
        entry_frac = entry_days - np.floor(entry_days)
        intent, stale = _recent_activity(active, n, width, ev_row, ev_col, ev_w, visible)
        stale &= cols[None, :] >= (entry_col + STALE_WINDOW_DAYS)[:, None]

        drift_factor = None if drift is None else drift.factor(active, s, intent)
        intent += (_INTENT_ROW[s] * (_INTENT_CAP + 1))[:, None]
        up = np.take(_INTENT_FACTOR.ravel(), intent)
        del intent
        up *= (up_base[s] * np.exp(up_slope[s] * f))[:, None]
        if drift_factor is not None:
            up *= drift_factor
            del drift_factor
        down = stale * (down_base[s] * down_stale[s] * np.exp(down_slope[s] * f))[:, None]
        down += (down_base[s] * np.exp(down_slope[s] * f))[:, None]

        # A disqualified lead can only be recycled after a cooling-off period.
        cooling = s == _DISQUALIFIED
        up_col = np.where(cooling, entry_col + _RECYCLE_AFTER_DAYS, entry_col)
        up_frac = np.where(cooling, 0.0, entry_frac)
        t_up = _first_crossing(rng, up, up_col, up_frac)
        del up
        t_down = _first_crossing(rng, down, entry_col, entry_frac)
        del down
        going_up = t_up <= t_down
        t = np.where(going_up, t_up, t_down)
        finite = np.isfinite(t)
        when = np.full(active.size, np.iinfo(np.int64).max)
        when[finite] = period.origin_s + np.floor((d0 + t[finite]) * _DAY_S).astype(np.int64)
        when = np.maximum(when, entry_s[active] + _MIN_GAP_S)
        moves = finite & (when < period.end_s)
        done[active[~moves]] = True
        if not moves.any():
            break

        leads, when, went_up = active[moves], when[moves], going_up[moves]
        old = stage[leads]
        new = np.select(
            [old == _LEAD, old == _PROSPECT, old == _OPPORTUNITY],
            [
                np.where(went_up, _PROSPECT, _DISQUALIFIED),
                np.where(went_up, _OPPORTUNITY, _DISQUALIFIED),
                np.where(went_up, _CUSTOMER, _LOST),
            ],
            default=_LEAD,  # disqualified leads only move up: recycled
        )
        day_col = np.minimum(np.floor(t[moves]).astype(np.int64), width - 1)
        stale_then = stale[np.flatnonzero(moves), day_col]
        reason = _reasons(rng, new, old, seniority[leads], stale_then)
        recycles[leads] += new == _LEAD
        stage[leads] = new
        entry_s[leads] = when
        done[leads] = (new == _CUSTOMER) | (new == _LOST)
        out_lead.append(leads)
        out_stage.append(new)
        out_s.append(when)
        out_reason.append(reason)

        # Events after a change: nurture e-mails only while disqualified, all after a recycle,
        # none after a win or a loss.
        cut = np.full(n, np.iinfo(np.int64).max)
        cut[leads] = when
        after = ev_s > cut[ev_row]
        now = stage[ev_row]
        won_or_lost = (now == _CUSTOMER) | (now == _LOST)
        visible = np.where(after, np.where(now == _DISQUALIFIED, nurture, ~won_or_lost), visible)

    # A lead still disqualified at the end was disqualified for good: it went silent then.
    final = stage == _DISQUALIFIED
    visible &= ~(final[ev_row] & (ev_s > entry_s[ev_row]))
    return visible, (
        np.concatenate(out_lead),
        np.concatenate(out_stage),
        np.concatenate(out_s),
        np.concatenate(out_reason),
    )


# The behaviour factor of each stage's up-hazard as a lookup table over the (integer) weighted
# intent count: (1 + intent) ** power while in the funnel, intent itself for a recycle.
_INTENT_CAP = 255
_INTENT_ROW = np.array([0, 1, 2, 0, 3, 0])
_INTENT_FACTOR = np.stack(
    [
        (1.0 + np.arange(_INTENT_CAP + 1)) ** _TO_PROSPECT[2],
        (1.0 + np.arange(_INTENT_CAP + 1)) ** _TO_OPPORTUNITY[2],
        (1.0 + np.arange(_INTENT_CAP + 1)) ** _TO_CUSTOMER[2],
        np.arange(_INTENT_CAP + 1, dtype=np.float64),
    ]
)


@dataclass(frozen=True)
class _Drift:
    """The calendar-time part of the promotion hazards of one block (see the module docstring).

    For lead ``i`` in stage ``lead`` or ``prospect`` on grid day ``j`` the factor that turns the
    drift-free hazard into the drifting one is ``exp(u_j * (slope_i + power * g * D * log(1 +
    intent_ij)))`` with ``slope_i = D * (a - fit_slope * (c * (fit_i - e_i) + r * e_i))``, the
    constants of that stage's promotion; 1 in every other stage.
    """

    u: np.ndarray  # time fraction of each grid day, (width,)
    slope: np.ndarray  # per lead and stage code, (n, 6); 0 where the stage does not drift
    intent_power: np.ndarray  # per stage code, (6,): power * g * D

    @classmethod
    def for_block(
        cls,
        drift: float,
        period: _Period,
        d0: int,
        width: int,
        fit: np.ndarray,
        industry: np.ndarray,
    ) -> _Drift:
        # The time fraction at noon (UTC) of each grid day; the hazard is constant over a day.
        noon_s = period.origin_s + (d0 + np.arange(width) + 0.5) * _DAY_S
        u = np.clip((noon_s - period.start_s) / (period.end_s - period.start_s), 0.0, 1.0)
        e_ind = _effects("industry", INDUSTRIES)[industry]
        slope = np.zeros((fit.size, 6))
        intent_power = np.zeros(6)
        weights = _DRIFT_FIT * (fit - e_ind) + _DRIFT_INDUSTRY * e_ind
        promotions = ((_LEAD, _TO_PROSPECT), (_PROSPECT, _TO_OPPORTUNITY))
        for (code, (_, fit_slope, power)), base in zip(promotions, _DRIFT_BASE, strict=True):
            slope[:, code] = drift * (base - fit_slope * weights)
            intent_power[code] = power * _DRIFT_INTENT * drift
        return cls(u=u, slope=slope, intent_power=intent_power)

    def factor(self, active: np.ndarray, stage: np.ndarray, intent: np.ndarray) -> np.ndarray:
        """The (active lead, day) factor; ``intent`` is the weighted intent count (indices)."""
        out = np.take(_LOG1P_INTENT, intent)
        out *= self.intent_power[stage][:, None]
        out += self.slope[active, stage][:, None]
        out *= self.u[None, :]
        return np.exp(out, out=out)


_LOG1P_INTENT = np.log1p(np.arange(_INTENT_CAP + 1, dtype=np.float64))


def _recent_activity(
    active: np.ndarray,
    n: int,
    width: int,
    ev_row: np.ndarray,
    ev_col: np.ndarray,
    ev_w: np.ndarray,
    visible: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per active lead and day, from visible events before that day: the weighted high-intent
    count of the last 14 days (as table indices) and whether the last 30 days were silent."""
    m = active.size
    pos = np.full(n, -1)
    pos[active] = np.arange(m)
    sel = visible & (pos[ev_row] >= 0)
    cell = pos[ev_row[sel]] * width + ev_col[sel]
    weighted = np.bincount(cell, weights=ev_w[sel], minlength=m * width).reshape(m, width)
    np.cumsum(weighted, axis=1, out=weighted)
    lag = BEHAVIOUR_WINDOW_DAYS
    intent = np.zeros((m, width))
    intent[:, 1:] = weighted[:, :-1]
    intent[:, lag + 1 :] -= weighted[:, : -lag - 1]
    del weighted
    np.clip(intent, 0, _INTENT_CAP, out=intent)
    intent_index = intent.astype(np.intp)

    counts = np.bincount(cell, minlength=m * width).reshape(m, width)
    np.cumsum(counts, axis=1, out=counts)
    lag = STALE_WINDOW_DAYS
    stale = np.ones((m, width), dtype=bool)
    stale[:, 1:] = counts[:, :-1] == 0
    stale[:, lag + 1 :] = counts[:, lag:-1] == counts[:, : -lag - 1]
    return intent_index, stale


def _first_crossing(
    rng: np.random.Generator, hazard: np.ndarray, start_col: np.ndarray, start_frac: np.ndarray
) -> np.ndarray:
    """Time (in grid days) at which the daily hazard integrated from ``start`` first reaches an
    Exp(1) draw; inf if it never does inside the grid. Overwrites ``hazard``."""
    m, width = hazard.shape
    rows = np.arange(m)
    inside = start_col < width
    col = np.minimum(start_col, width - 1)
    raw_at_start = hazard[rows, col].copy()
    hazard *= np.arange(width)[None, :] >= start_col[:, None]
    hazard[rows, col] *= np.where(inside, 1.0 - start_frac, 0.0)
    np.cumsum(hazard, axis=1, out=hazard)
    threshold = np.asarray(rng.standard_exponential(m), dtype=np.float64)
    hit = hazard >= threshold[:, None]
    crossed = hit[:, -1]
    j = np.argmax(hit, axis=1)
    before = np.where(j > 0, hazard[rows, np.maximum(j - 1, 0)], 0.0)
    raw = np.where(j == col, raw_at_start, hazard[rows, j] - before)
    # Position inside the crossing day, counted back from its end at the day's own rate.
    overshoot = (hazard[rows, j] - threshold) / np.where(crossed & (raw > 0), raw, 1.0)
    return np.where(crossed, j + 1.0 - overshoot, np.inf)


def _reasons(
    rng: np.random.Generator,
    new: np.ndarray,
    old: np.ndarray,
    seniority: np.ndarray,
    stale: np.ndarray,
) -> np.ndarray:
    """Reason codes for the changes ``old -> new`` (-1 for none)."""
    reason = np.full(new.size, -1)
    weights = np.tile([0.35, 0.3, 0.2, 0.15], (new.size, 1))
    weights[seniority == SENIORITIES.index("individual"), 2] += 0.4
    cum = np.cumsum(weights / weights.sum(axis=1, keepdims=True), axis=1)[:, :-1]
    pick = (rng.random(new.size)[:, None] >= cum).sum(axis=1)
    disq = new == _DISQUALIFIED
    reason[disq] = np.where(stale[disq], _REASON_CODE["unresponsive"], pick[disq])
    lost = new == _LOST
    lost_pick = rng.choice(len(_LOST_REASONS), new.size, p=[0.3, 0.3, 0.25, 0.15])
    reason[lost] = _REASON_CODE[_LOST_REASONS[0]] + lost_pick[lost]
    reason[(new == _LEAD) & (old == _DISQUALIFIED)] = _REASON_CODE["recycled"]
    return reason


# ---------------------------------------------------------------------------------------------
# Assembling the tables


def _events_frame(blocks: list[_Block]) -> pd.DataFrame:
    lead = np.concatenate([b.lead_index for b in blocks]) + 1
    etype = np.concatenate([b.ev_type for b in blocks])
    when = np.concatenate([b.ev_s for b in blocks])
    value = np.concatenate([b.ev_value for b in blocks])
    return pd.DataFrame(
        {
            "lead_id": lead.astype(np.int64),
            "event_type": _categorical(etype, EVENT_TYPES),
            "occurred_at": _to_datetime(when),
            "value": value,
        },
        copy=False,  # the arrays are fresh; copying 50M rows would cost seconds
    )


def _stage_frame(blocks: list[_Block]) -> pd.DataFrame:
    lead = np.concatenate([b.st_lead for b in blocks])
    stage = np.concatenate([b.st_stage for b in blocks])
    when = np.concatenate([b.st_s for b in blocks])
    reason = np.concatenate([b.st_reason for b in blocks])
    order = np.lexsort((when, lead))
    reasons = np.array([*_REASONS, None], dtype=object)
    return pd.DataFrame(
        {
            "lead_id": (lead[order] + 1).astype(np.int64),
            "stage": pd.array(np.array(_STAGE_NAMES, dtype=object)[stage[order]], dtype="str"),
            "changed_at": _to_datetime(when[order]),
            "reason": pd.array(reasons[reason[order]], dtype="str"),
        }
    )


def _to_datetime(seconds: np.ndarray) -> np.ndarray:
    return (seconds.astype(np.int64) * 1_000_000_000).view("datetime64[ns]")


def _leads_frame(world: _World, rng: np.random.Generator) -> pd.DataFrame:
    n = world.created_s.size
    first = rng.integers(len(_FIRST_NAMES), size=n)
    last = rng.integers(len(_LAST_NAMES), size=n)
    style = rng.choice(3, size=n, p=[0.7, 0.2, 0.1])
    first_names = np.array(_FIRST_NAMES, dtype=object)[first]
    last_names = np.array(_LAST_NAMES, dtype=object)[last]
    first_ascii = np.array([_ascii(x) for x in _FIRST_NAMES], dtype=object)[first]
    last_ascii = np.array([_ascii(x) for x in _LAST_NAMES], dtype=object)[last]
    initial = np.array([_ascii(x)[0] for x in _FIRST_NAMES], dtype=object)[first]
    local = np.where(
        style == 0,
        first_ascii + "." + last_ascii,
        np.where(style == 1, initial + last_ascii, first_ascii),
    )
    email = local + "@" + world.company_domain[world.company]

    phone_code = np.array([info[2] for info in _COUNTRY_INFO.values()], dtype=object)[world.country]
    # Ten digits, the first not 0 or 1, shown as "+CC 234 567 8901".
    number = rng.integers(2_000_000_000, 10_000_000_000, size=n)
    three = np.array([f"{i:03d}" for i in range(1000)], dtype=object)
    four = np.array([f"{i:04d}" for i in range(10_000)], dtype=object)
    phone = (
        "+"
        + phone_code
        + " "
        + three[number // 10_000_000]
        + " "
        + three[number // 10_000 % 1000]
        + " "
        + four[number % 10_000]
    )

    owners_by_region = [np.array(o, dtype=object) for o in _OWNERS]
    pick = rng.random(n)
    owner = np.empty(n, dtype=object)
    for r, pool in enumerate(owners_by_region):
        m = world.region == r
        owner[m] = pool[(pick[m] * len(pool)).astype(np.int64)]

    titles = [title for level in SENIORITIES for title in _TITLES[level]]
    job_title = world.seniority * len(_DEPARTMENTS) + world.department
    job_title = np.where(rng.random(n) < 0.04, -1, job_title)
    revenue = np.round(world.revenue, 2)
    revenue = np.where(rng.random(n) < 0.10, np.nan, revenue)

    return pd.DataFrame(
        {
            "lead_id": np.arange(1, n + 1, dtype=np.int64),
            "created_at": _to_datetime(world.created_s),
            "name": pd.array(first_names + " " + last_names, dtype="str"),
            "email": pd.array(email, dtype="str"),
            "phone": pd.array(phone, dtype="str"),
            "company": pd.array(world.company_name[world.company], dtype="str"),
            "owner": pd.array(owner, dtype="str"),
            "industry": _categorical(world.industry, INDUSTRIES),
            "country": _categorical(world.country, COUNTRIES),
            "company_size": _categorical(world.size, COMPANY_SIZES),
            "annual_revenue_musd": revenue,
            "job_title": _categorical(job_title, titles),
            "seniority": _categorical(world.seniority, SENIORITIES),
            "lead_source": _categorical(world.source, LEAD_SOURCES),
            "marketing_cohort": _categorical(world.cohort, MARKETING_COHORTS),
        }
    )


def _categorical(codes: np.ndarray, levels: Sequence[str]) -> pd.Categorical[Any]:
    """Categorical from integer codes (-1 is missing) with the documented level order."""
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(list(levels)))
