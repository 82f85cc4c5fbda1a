"""Point-in-time features: one function for training and for scoring.

:func:`build_features` turns the three tables and observation points ``(lead_id, as_of)`` into one
row per point. Only rows **strictly before** ``as_of`` are used: an event or a stage change at
``as_of`` or later never changes a feature of that point. Times are compared in whole seconds,
both sides floored, so an event in the same second as ``as_of`` counts as "not before" (never a
leak; at worst one second of history is left out).

Feature families (names carry unit and window):

fit
    The lead's own attributes (``industry``, ``company_size``, ``annual_revenue_musd``, ...):
    strings become categoricals whose levels the :class:`FeatureSpec` fixes (the most frequent
    ``max_category_levels - 1`` levels, the rest folded into ``"other"``; levels unseen in
    training become missing), numbers stay numbers. Direct identifiers (configured ones, and
    columns named like name, email, phone, company, owner, address, url, notes, or holding free
    text / mostly-unique strings), timestamps and constants are never features; one
    :class:`IdentifierColumnsExcluded` warning lists what was left out and why.
engagement, per event type
    ``n_<type>_<w>d``: events in ``[as_of - w days, as_of)`` for each lookback window;
    ``days_since_last_<type>``: days since the last one (missing when never);
    ``sum_<type>_value_<w>d``: sum of the events' ``value`` over one window, for types that carry
    values (e.g. seconds on page); opt-in with ``features.value_window_days``.
engagement, all event types of the vocabulary together
    ``n_active_days_<W>d``: distinct UTC dates with an event in the largest window;
    ``engagement_decayed``: every past event weighs ``2 ** (-age / half_life)``;
    ``engagement_trend_<t>d``: events in the last *t* days minus events in the *t* days before
    (a difference, not a ratio: defined for quiet leads, and in events a rep can picture).
lifecycle
    ``tenure_days`` since ``created_at``; ``current_stage``, the stage of the last stage change
    before ``as_of`` (``lead`` if none); ``days_in_stage`` since that change (or creation);
    ``n_disqualifications`` before ``as_of`` (past disqualifications, i.e. recycles).

Every feature belongs to a reason *group* (all windows, recency and value of one event type are
one group; each fit attribute is its own group; ``engagement``, ``tenure`` and ``stage_history``
hold the rest) and has plain-language templates, so any feature can become a sentence a rep
reads (:meth:`FeatureSpec.describe`).

Cost grows with events + points, never events × points: events are keyed
``lead_position << 32 | seconds`` in one sorted array (per event type, a sorted sub-array), so a
window count is the difference of two :func:`numpy.searchsorted` positions, recency reads the key
just before ``as_of``, distinct active days are differences of a cumulative count of
(lead, date) runs, and the decayed total reads a running decayed count computed once per event.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import ColumnsConfig, FeaturesConfig
from leadml.data.contracts import CRMData, lead_positions, lead_runs
from leadml.funnel import STAGES

__all__ = [
    "FeatureInputError",
    "FeatureSpec",
    "IdentifierColumnsExcluded",
    "NoEventsWarning",
    "build_features",
    "choose_levels",
    "column_kind",
    "feature_groups",
    "make_feature_spec",
    "model_frame",
    "to_categorical",
    "to_levels",
]

_DAY = 86_400
#: Columns of a features frame kept as separate arrays at most (pandas warns past 100 blocks;
#: this leaves room for the columns callers add, such as ``stage`` and the labels).
_MAX_BLOCKS = 80
_LOW = (1 << 32) - 1  # the seconds part of a key

# How an event type reads in a sentence: (did it, did not, group label).
#: The event type that stands for every type beyond ``features.max_event_types``.
OTHER_EVENTS = "other event types"

_EVENT_WORDS: dict[str, tuple[str, str, str]] = {
    OTHER_EVENTS: ("Had other activity", "No other activity", "Other activity"),
    "email_open": ("Opened an email", "Did not open an email", "Email opens"),
    "email_click": (
        "Clicked a link in an email",
        "Did not click a link in an email",
        "Email clicks",
    ),
    "web_visit": ("Visited the website", "Did not visit the website", "Website visits"),
    "pricing_page_view": (
        "Viewed the pricing page",
        "Did not view the pricing page",
        "Pricing page views",
    ),
    "content_download": ("Downloaded content", "Did not download content", "Content downloads"),
    "webinar_attended": ("Attended a webinar", "Did not attend a webinar", "Webinars attended"),
    "form_submit": ("Submitted a form", "Did not submit a form", "Form submissions"),
    "demo_request": ("Requested a demo", "Did not request a demo", "Demo requests"),
}
_GROUP_LABELS = {
    "engagement": "Overall engagement",
    "tenure": "Time since creation",
    "stage_history": "Stage history",
}

# Column-name tokens that mark direct identifiers or free text.
_IDENTIFIER_TOKENS = frozenset(
    {
        "name", "firstname", "lastname", "fullname", "surname", "username",
        "email", "emailaddress",
        "phone", "mobile", "telephone", "tel", "fax", "phonenumber",
        "owner", "address", "street", "url", "website", "homepage", "linkedin", "twitter",
        "ssn", "notes", "note", "comment", "comments", "description", "freetext",
    }
)  # fmt: skip
# People by another name: who owns the lead (a colleague's name is personal data too)...
_PERSON_TOKENS = frozenset({"rep", "salesrep", "assignee", "agent", "salesperson", "owner"})
# ...and name parts, identifiers only when the column has many distinct values (a first_touch
# channel with 8 values is an attribute; a "first" column with 900 first names is not).
_NAME_PART_TOKENS = frozenset({"first", "last", "given", "family", "middle", "contact", "person"})
_EMAIL_VALUE = re.compile(r"[^@\s]+@[^@\s]+\.[A-Za-z]{2,}")
_URL_VALUE = re.compile(r"(https?://|www\.)\S+", re.IGNORECASE)
_PHONE_VALUE = re.compile(r"\+?[\d\s().\-/]{7,}")
# "company" / "account" are identifiers on their own or with these words, but company_size,
# company_industry or account_type are fit attributes.
_ENTITY_TOKENS = frozenset({"company", "account", "organisation", "organization"})
_ENTITY_ID_TOKENS = frozenset({"name", "id", "domain", "website", "url", "legal"})
_UNIT_SUFFIXES = {"_musd": " (US$ millions)", "_usd": " (US$)", "_pct": " (%)", "_days": " (days)"}


class NoEventsWarning(UserWarning):
    """The training data has no engagement events: valid, but a model of attributes only."""


class IdentifierColumnsExcluded(UserWarning):
    """Lead columns that look like identifiers, free text, timestamps or constants were left out."""


class FeatureInputError(ValueError):
    """Observation points or tables that features cannot be built from; says what and how to fix."""


def _tokens(column: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    return [t for t in re.split(r"[^a-z0-9]+", spaced.lower()) if t]


def _label(column: str) -> str:
    text = column
    for suffix, unit in _UNIT_SUFFIXES.items():
        if text.endswith(suffix):
            text = text[: -len(suffix)] + unit
            break
    text = text.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _cap_event_types(et: pd.Series, present: list[str], cap: int) -> tuple[str, ...]:
    """The spec's event vocabulary: every type present, sorted, or (beyond ``cap``) the
    ``cap - 1`` most frequent and :data:`OTHER_EVENTS`, which then counts every other type (at
    training and scoring alike), with a note."""
    if len(present) <= cap:
        return tuple(sorted(present))
    counts = et.astype("string").value_counts()
    ranked = sorted(present, key=lambda t: (-int(counts.get(t, 0)), t))
    kept, folded = ranked[: cap - 1], ranked[cap - 1 :]
    share = float(counts.reindex(folded).fillna(0).sum()) / max(1, int(counts.sum()))
    warnings.warn(
        f"events: {len(present):,} event types; the {len(kept)} most frequent are features and "
        f"the other {len(folded):,} ({share:.0%} of events) count as one type, "
        f"{OTHER_EVENTS!r} (features.max_event_types = {cap})",
        UserWarning,
        stacklevel=3,
    )
    return (*sorted(kept), OTHER_EVENTS)


def _event_words(event_type: str) -> tuple[str, str, str]:
    if event_type in _EVENT_WORDS:
        return _EVENT_WORDS[event_type]
    label = event_type.replace("_", " ")
    return (f"Had a '{label}' event", f"No '{label}' event", f"{_label(event_type)} events")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(isinstance(value, float | np.floating) and math.isnan(value))
    except TypeError:
        return False


def _number(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _fit_templates(column: str, kind: str) -> dict[str, str]:
    label = _label(column)
    value = f"{label}: {{value}}" if kind == "categorical" else f"{label}: {{num}}"
    return {"value": value, "missing": f"{label} unknown"}


def _normalise_templates(
    names: tuple[str, ...], kinds: dict[str, str], templates: dict[str, Any]
) -> dict[str, dict[str, str]]:
    """Accept a plain format string per feature (or ``"fit:<column>"``) as well as a dict."""
    out: dict[str, dict[str, str]] = {}
    for name in names:
        t = templates.get(name)
        if isinstance(t, dict):
            out[name] = {str(k): str(v) for k, v in t.items()}
        elif isinstance(t, str) and t.startswith("fit:"):
            out[name] = _fit_templates(t[4:], kinds.get(name, "numeric"))
        elif isinstance(t, str):
            out[name] = {"value": t}
        else:
            out[name] = _fit_templates(name, kinds.get(name, "numeric"))
    return out


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to rebuild identical features and to put them into words.

    Built at training time by :func:`make_feature_spec`, stored in the model bundle as JSON
    (:meth:`to_dict` / :meth:`from_dict`), and passed to :func:`build_features` at scoring time so
    the columns, their order, dtypes and category levels never drift from what the model saw.

    Attributes
    ----------
    names : tuple of str
        Feature columns, in model order.
    kinds : dict
        ``"numeric"`` or ``"categorical"`` per feature.
    levels : dict
        Category levels per categorical feature (pandas ``category`` dtype with exactly these).
    groups : dict
        Reason group per feature.
    templates : dict
        Per feature, plain-language format strings: ``"value"`` (always), and optionally
        ``"zero"`` (shown when the value rounds to 0), ``"negative"`` and ``"missing"``. Fields:
        ``{value}`` (as given), ``{num}`` (a readable number), ``{n}`` (absolute value rounded to
        a whole number), ``{s}`` (``"s"`` unless ``n == 1``), ``{abs}``.
    event_types : tuple of str
        Event vocabulary; other types are ignored when building features.
    fit_columns, excluded_columns : tuple of str
        Lead columns used as fit features, and those left out.
    windows_days, half_life_days, trend_days : engagement settings
    value_types : tuple of str
        Event types whose ``value`` is summed over ``value_window_days``.
    group_labels : dict
        Short human label per reason group.
    columns : dict
        Column names of the input tables (:class:`~leadml.config.ColumnsConfig`).
    """

    names: tuple[str, ...]
    kinds: dict[str, str]
    levels: dict[str, tuple[str, ...]]
    groups: dict[str, str]
    templates: dict[str, dict[str, str]]
    event_types: tuple[str, ...]
    fit_columns: tuple[str, ...]
    excluded_columns: tuple[str, ...]
    windows_days: tuple[int, ...]
    half_life_days: float
    trend_days: int
    value_types: tuple[str, ...] = ()
    value_window_days: int | None = None
    group_labels: dict[str, str] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=lambda: ColumnsConfig().model_dump())

    def __post_init__(self) -> None:
        templates = _normalise_templates(self.names, self.kinds, dict(self.templates))
        object.__setattr__(self, "templates", templates)
        missing = [n for n in self.names if n not in self.kinds or n not in self.groups]
        if missing:
            raise ValueError(f"FeatureSpec: features without a kind or group: {missing}")

    @property
    def categorical(self) -> tuple[str, ...]:
        """Categorical features, in model order."""
        return tuple(n for n in self.names if self.kinds[n] == "categorical")

    @property
    def group_names(self) -> tuple[str, ...]:
        """Reason groups in the order their first feature appears."""
        return tuple(dict.fromkeys(self.groups[n] for n in self.names))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists instead of tuples); :meth:`from_dict` reverses it."""
        d = asdict(self)
        d["levels"] = {k: list(v) for k, v in self.levels.items()}
        for key in (
            "names",
            "event_types",
            "fit_columns",
            "excluded_columns",
            "windows_days",
            "value_types",
        ):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
        """Rebuild a spec from :meth:`to_dict` output (e.g. read from a bundle's JSON)."""
        vw = d.get("value_window_days")
        return cls(
            names=tuple(d["names"]),
            kinds=dict(d["kinds"]),
            levels={k: tuple(v) for k, v in d["levels"].items()},
            groups=dict(d["groups"]),
            templates=dict(d["templates"]),
            event_types=tuple(d["event_types"]),
            fit_columns=tuple(d["fit_columns"]),
            excluded_columns=tuple(d["excluded_columns"]),
            windows_days=tuple(int(w) for w in d["windows_days"]),
            half_life_days=float(d["half_life_days"]),
            trend_days=int(d["trend_days"]),
            value_types=tuple(d.get("value_types", ())),
            value_window_days=None if vw is None else int(vw),
            group_labels=dict(d.get("group_labels", {})),
            columns=dict(d.get("columns", ColumnsConfig().model_dump())),
        )

    def group_label(self, group: str) -> str:
        """Short human label of a reason group, e.g. ``Pricing page views``."""
        return self.group_labels.get(group) or _GROUP_LABELS.get(group) or _label(group)

    def describe(self, feature: str, value: Any) -> str:
        """Render ``feature = value`` as a sentence a sales rep can read.

        Examples
        --------
        >>> spec = FeatureSpec(
        ...     names=("n_pricing_page_view_7d", "days_since_last_demo_request", "company_size"),
        ...     kinds={"n_pricing_page_view_7d": "numeric",
        ...            "days_since_last_demo_request": "numeric", "company_size": "categorical"},
        ...     levels={"company_size": ("1-10", "11-50")},
        ...     groups={"n_pricing_page_view_7d": "pricing_page_view",
        ...             "days_since_last_demo_request": "demo_request",
        ...             "company_size": "company_size"},
        ...     templates={
        ...         "n_pricing_page_view_7d": {
        ...             "value": "Viewed the pricing page {n} time{s} in the last 7 days",
        ...             "zero": "Did not view the pricing page in the last 7 days"},
        ...         "days_since_last_demo_request": {
        ...             "value": "Last requested a demo {n} day{s} ago",
        ...             "zero": "Last requested a demo today",
        ...             "missing": "Never requested a demo"},
        ...         "company_size": "fit:company_size"},
        ...     event_types=("demo_request", "pricing_page_view"), fit_columns=("company_size",),
        ...     excluded_columns=(), windows_days=(7,), half_life_days=14.0, trend_days=14)
        >>> spec.describe("n_pricing_page_view_7d", 3)
        'Viewed the pricing page 3 times in the last 7 days'
        >>> spec.describe("n_pricing_page_view_7d", 1)
        'Viewed the pricing page 1 time in the last 7 days'
        >>> spec.describe("n_pricing_page_view_7d", 0)
        'Did not view the pricing page in the last 7 days'
        >>> spec.describe("days_since_last_demo_request", float("nan"))
        'Never requested a demo'
        >>> spec.describe("company_size", "11-50")
        'Company size: 11-50'

        A categorical template may give one level its own sentence under the key ``"=level"``
        (``current_stage`` does: "Already qualified as a prospect").
        """
        t = self.templates[feature]
        if _is_missing(value):
            return t.get("missing", f"{_label(feature)} unknown")
        if self.kinds.get(feature) == "categorical" or isinstance(value, str):
            if f"={value}" in t:  # a sentence of its own for this level
                return t[f"={value}"]
            return t["value"].format(value=value, num=str(value), n=value, s="s", abs=value)
        v = float(value)
        # An infinite value (a lead attribute nobody checked) prints as inf, never crashes.
        n: Any = int(math.floor(abs(v) + 0.5)) if math.isfinite(v) else abs(v)
        key = "value"
        if n == 0 and "zero" in t:
            key = "zero"
        elif v < 0 and "negative" in t:
            key = "negative"
        return t[key].format(value=v, num=_number(v), n=n, s="" if n == 1 else "s", abs=abs(v))


def feature_groups(spec: FeatureSpec) -> dict[str, list[str]]:
    """Reason group -> its features, in spec order."""
    groups: dict[str, list[str]] = {}
    for n in spec.names:
        groups.setdefault(spec.groups[n], []).append(n)
    return groups


# --- the spec: vocabulary and levels from training data ---------------------------------------


def _exclusion_reason(column: str, values: pd.Series) -> str | None:
    tokens = _tokens(column)
    joined = "".join(tokens)
    if any(t in _IDENTIFIER_TOKENS for t in tokens) or any(w in joined for w in ("email", "phone")):
        return "identifier"
    entity = [t for t in tokens if t in _ENTITY_TOKENS]
    if entity and all(t in _ENTITY_TOKENS or t in _ENTITY_ID_TOKENS for t in tokens):
        return "identifier"
    if any(t in _PERSON_TOKENS for t in tokens):
        return "identifier"
    if pd.api.types.is_datetime64_any_dtype(values.dtype):
        return "timestamp"
    non_null = values.dropna()
    distinct = non_null.nunique()
    if distinct <= 1:
        return "constant"
    if pd.api.types.is_numeric_dtype(values.dtype) and not isinstance(
        values.dtype, pd.CategoricalDtype
    ):
        return None
    text = non_null.astype("string")
    by_value = identifier_by_value(text)
    if by_value:
        return f"identifier ({by_value})"
    if any(t in _NAME_PART_TOKENS for t in tokens) and distinct >= max(10, 0.02 * len(text)):
        return f"identifier (a name part with {distinct:,} distinct values)"
    if isinstance(values.dtype, pd.CategoricalDtype):
        return None
    # Free text or per-lead codes: mostly unique strings carry identity, not reusable signal.
    if len(text) >= 20 and text.nunique() > 0.5 * len(text):
        return "free text / mostly unique"
    if len(text) and float(text.str.len().mean()) > 60:
        return "free text"
    return None


def identifier_by_value(text: pd.Series) -> str | None:
    """Why a text column's values are direct identifiers (mostly e-mail addresses, web
    addresses or phone numbers), judged on up to 5,000 values; None if they are not.

    >>> identifier_by_value(pd.Series(["ann@example.com", "bo@example.org", None] * 10))
    'values look like e-mail addresses'
    >>> identifier_by_value(pd.Series(["Software", "Retail"] * 20)) is None
    True
    """
    sample = text.dropna().astype("string").str.strip().head(5_000)
    if len(sample) < 10:
        return None
    for pattern, what in (
        (_EMAIL_VALUE, "e-mail addresses"),
        (_URL_VALUE, "web addresses"),
        (_PHONE_VALUE, "phone numbers"),
    ):
        if float(sample.str.fullmatch(pattern).mean()) >= 0.5:
            if pattern is _PHONE_VALUE and float((sample.str.count(r"\d") >= 7).mean()) < 0.5:
                continue
            return f"values look like {what}"
    return None


def make_feature_spec(data: CRMData, config: FeaturesConfig | None = None) -> FeatureSpec:
    """Infer the feature vocabulary (event types, fit columns, category levels) from training data.

    Parameters
    ----------
    data : CRMData
        Training data (validated).
    config : FeaturesConfig, optional
        Windows, decay, trend, value window, exclusions and the category level cap.

    Returns
    -------
    FeatureSpec

    Warns
    -----
    IdentifierColumnsExcluded
        Once, listing the lead columns left out automatically and why. Columns listed in
        ``identifier_columns`` / ``exclude_columns`` are left out silently.
    """
    cfg = config or FeaturesConfig()
    c = data.columns
    leads = data.leads
    configured = set(cfg.identifier_columns) | set(cfg.exclude_columns)
    excluded: list[str] = []
    noted: list[str] = []
    fit: list[str] = []
    for col in leads.columns:
        if col in (c.lead_id, c.created_at):
            continue
        if col in configured:
            excluded.append(col)
            continue
        reason = _exclusion_reason(col, leads[col])
        if reason is None:
            fit.append(col)
        else:
            excluded.append(col)
            noted.append(f"{col} ({reason})")
    if noted:
        warnings.warn(
            "leads columns not used as features: "
            + ", ".join(noted)
            + ". Add them to features.exclude_columns to acknowledge, or rename a column that "
            "is a genuine attribute.",
            IdentifierColumnsExcluded,
            stacklevel=2,
        )

    names: list[str] = []
    kinds: dict[str, str] = {}
    levels: dict[str, tuple[str, ...]] = {}
    groups: dict[str, str] = {}
    templates: dict[str, dict[str, str]] = {}
    group_labels: dict[str, str] = {}

    def add(name: str, kind: str, group: str, template: dict[str, str]) -> None:
        names.append(name)
        kinds[name], groups[name], templates[name] = kind, group, template

    for col in fit:
        kind = column_kind(leads[col])
        if kind == "categorical":
            levels[col] = choose_levels(leads[col], cfg.max_category_levels)
        add(col, kind, col, _fit_templates(col, kind))
        group_labels[col] = _label(col)

    ev = data.events
    if len(ev) == 0:
        warnings.warn(
            "events table: it has no rows, so the model learns from the leads' attributes and "
            "stage history only; if engagement exists, export the events again",
            NoEventsWarning,
            stacklevel=2,
        )
    et = ev[c.event_type]
    if isinstance(et.dtype, pd.CategoricalDtype):
        # Counting the codes is O(events); remove_unused_categories sorts them.
        used = np.bincount(np.asarray(et.cat.codes) + 1, minlength=len(et.cat.categories) + 1)
        present = [str(x) for x, n in zip(et.cat.categories, used[1:], strict=True) if n]
    else:
        present = [str(x) for x in pd.unique(et.dropna())]
    event_types = _cap_event_types(et, present, cfg.max_event_types)
    value_types: tuple[str, ...] = ()
    if cfg.value_window_days is not None and c.value in ev.columns and len(ev):
        finite = np.isfinite(ev[c.value].to_numpy(dtype="float64", na_value=np.nan))
        cats = et if isinstance(et.dtype, pd.CategoricalDtype) else et.astype("category")
        n_cats = len(cats.cat.categories)
        seen = np.bincount(np.asarray(cats.cat.codes)[finite] + 1, minlength=n_cats + 1)[1:]
        with_values = {str(cats.cat.categories[k]) for k in np.flatnonzero(seen)}
        value_types = tuple(t for t in event_types if t in with_values)
    vw = cfg.value_window_days
    for etype in event_types:
        did, did_not, group_label = _event_words(etype)
        group_labels[etype] = group_label
        for w in cfg.windows_days:
            add(
                f"n_{etype}_{w}d",
                "numeric",
                etype,
                {
                    "value": f"{did} {{n}} time{{s}} in the last {w} days",
                    "zero": f"{did_not} in the last {w} days",
                },
            )
        add(
            f"days_since_last_{etype}",
            "numeric",
            etype,
            {
                "value": f"Last {_lower_first(did)} {{n}} day{{s}} ago",
                "zero": f"Last {_lower_first(did)} today",
                "missing": f"Never {_lower_first(did)}",
            },
        )
        if etype in value_types:
            add(
                f"sum_{etype}_value_{vw}d",
                "numeric",
                etype,
                {"value": f"{group_label} in the last {vw} days: total value {{num}}"},
            )

    wmax, td, hl = max(cfg.windows_days), cfg.trend_days, cfg.half_life_days
    add(
        f"n_active_days_{wmax}d",
        "numeric",
        "engagement",
        {
            "value": f"Active on {{n}} day{{s}} of the last {wmax}",
            "zero": f"No activity in the last {wmax} days",
        },
    )
    add(
        "engagement_decayed",
        "numeric",
        "engagement",
        {
            "value": f"Recency-weighted engagement {{value:.1f}} (an event counts half after "
            f"{hl:g} days)",
            "zero": "Little or no engagement so far",
        },
    )
    add(
        f"engagement_trend_{td}d",
        "numeric",
        "engagement",
        {
            "value": f"{{n}} more event{{s}} in the last {td} days than in the {td} days before",
            "negative": f"{{n}} fewer event{{s}} in the last {td} days than in the {td} days "
            "before",
            "zero": f"As many events in the last {td} days as in the {td} days before",
        },
    )
    add(
        "tenure_days",
        "numeric",
        "tenure",
        {"value": "Created {n} day{s} ago", "zero": "Created today"},
    )
    add(
        "current_stage",
        "categorical",
        "stage_history",
        {
            "value": "Current stage: {value}",
            "=lead": "Not qualified yet (still a lead)",
            "=prospect": "Already qualified as a prospect",
        },
    )
    levels["current_stage"] = STAGES
    add(
        "days_in_stage",
        "numeric",
        "stage_history",
        {
            "value": "In the current stage for {n} day{s}",
            "zero": "Entered the current stage today",
        },
    )
    add(
        "n_disqualifications",
        "numeric",
        "stage_history",
        {"value": "Disqualified {n} time{s} before", "zero": "Never disqualified before"},
    )
    group_labels.update(_GROUP_LABELS)
    return FeatureSpec(
        names=tuple(names),
        kinds=kinds,
        levels=levels,
        groups=groups,
        templates=templates,
        event_types=event_types,
        fit_columns=tuple(fit),
        excluded_columns=tuple(excluded),
        windows_days=tuple(cfg.windows_days),
        half_life_days=float(hl),
        trend_days=int(td),
        value_types=value_types,
        value_window_days=vw if value_types else None,
        group_labels=group_labels,
        columns=c.model_dump(),
    )


def column_kind(s: pd.Series) -> str:
    """``"numeric"`` for numbers (booleans excluded), else ``"categorical"``: one rule for the
    fit columns of event mode and the columns of a flat table."""
    numeric = pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)
    return "numeric" if numeric else "categorical"


def choose_levels(s: pd.Series, max_levels: int) -> tuple[str, ...]:
    """The category levels of one training column: its ``max_levels - 1`` most frequent values
    (ties by name, so the choice is deterministic) plus ``"other"`` when there are more, sorted.

    >>> choose_levels(pd.Series(["b", "a", "b", "c", None]), 3)
    ('a', 'b', 'other')
    """
    counts = s.dropna().astype(str).value_counts()
    order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    keep = [k for k, _ in order[: max_levels - 1]]
    if len(order) > len(keep):
        keep.append("other")
    return tuple(sorted(set(keep)))


def to_categorical(values: pd.Series, levels: tuple[str, ...] | list[str]) -> pd.Categorical:
    """Strings -> Categorical with exactly ``levels``; anything else becomes missing."""
    text = values.astype("string")
    known = text.isin(list(levels)).to_numpy() & text.notna().to_numpy()
    arr = np.where(known, text.to_numpy(dtype=object, na_value=None), None)
    return pd.Categorical(arr, categories=list(levels))


def to_levels(values: pd.Series, levels: tuple[str, ...] | list[str]) -> pd.Categorical:
    """Raw values -> Categorical with exactly ``levels``: the one value -> category rule.

    A value outside ``levels`` folds into ``"other"`` when that is a level (the rare levels of
    training), else it is missing.

    >>> to_levels(pd.Series(["a", "zz", None]), ("a", "other")).tolist()
    ['a', 'other', nan]
    """
    codes = _level_codes(values, tuple(levels))
    return pd.Categorical.from_codes(codes, categories=list(levels))


def model_frame(X: pd.DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """The model's features frame from raw columns: the spec's columns in order, categoricals
    with the spec's levels (:func:`to_levels`), numbers as float64; absent columns are missing.
    Extra columns of ``X`` are dropped."""
    out = {}
    for col in spec.names:
        s = X[col] if col in X.columns else pd.Series(np.nan, index=X.index)
        if spec.kinds[col] == "categorical":
            out[col] = pd.Series(to_levels(s, spec.levels[col]), index=X.index)
        else:
            out[col] = pd.to_numeric(s, errors="coerce").astype("float64")
    return pd.DataFrame(out, index=X.index)


# --- building features --------------------------------------------------------------------------


def _seconds(values: pd.Series | np.ndarray) -> np.ndarray:
    ns = np.asarray(values, dtype="datetime64[ns]").view(np.int64)
    return ns // 1_000_000_000


def _as_of(points: pd.DataFrame) -> np.ndarray:
    raw = points["as_of"]
    idx = pd.DatetimeIndex(pd.to_datetime(raw))
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    out = idx.to_numpy(dtype="datetime64[ns]")
    if np.isnat(out).any():
        rows = np.flatnonzero(np.isnat(out))[:5].tolist()
        raise FeatureInputError(
            f"points.as_of: {int(np.isnat(out).sum())} missing as_of (rows {rows}); every "
            "observation point needs an instant"
        )
    return out


class _Timeline:
    """One table's rows as sorted ``lead_position << 32 | seconds - t0`` keys.

    ``pos`` and ``rel`` (lead position and seconds since ``t0``) are kept beside the keys, in the
    same order, because the decayed total and the active days need them.
    """

    def __init__(self, pos: np.ndarray, seconds: np.ndarray, t0: int, *payload: np.ndarray):
        # In place where possible: at 50M events every temporary is 400 MB. ``seconds`` is
        # ours to overwrite (a fresh array from _seconds).
        rel = seconds
        rel -= t0
        np.clip(rel, 0, _LOW, out=rel)
        keys = pos.astype(np.int64)  # ``pos`` may be int32 (half the memory at 50M rows)
        keys <<= 32
        keys |= rel
        self.payload = list(payload)
        if len(keys) > 1 and not bool(np.all(keys[1:] >= keys[:-1])):
            from leadml._kernels import lead_key_order

            order = lead_key_order(pos, keys)
            keys, pos, rel = keys[order], pos[order], rel[order]
            self.payload = [p[order] for p in payload]
        self.keys, self.pos, self.rel = keys, pos, rel

    def before(self, q: np.ndarray) -> np.ndarray:
        """How many keys are strictly before each query key."""
        return np.searchsorted(self.keys, q, side="left")

    def last(self, n_before: np.ndarray, q_pos: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Index of each query's last earlier row of the same lead, and whether there is one."""
        i = np.maximum(n_before - 1, 0)
        if len(self.keys) == 0:
            return i, np.zeros(len(n_before), dtype=bool)
        return i, (n_before > 0) & ((self.keys[i] >> 32) == q_pos)


def _range_sums(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``values[lo:hi].sum()`` per pair; each sum only reads its own slice (exact, no drift)."""
    if len(lo) == 0:
        return np.zeros(0)
    padded = np.append(values, 0.0)
    idx = np.empty(2 * len(lo), dtype=np.int64)
    idx[0::2], idx[1::2] = lo, hi
    sums = np.add.reduceat(padded, idx)[0::2]
    return np.where(hi > lo, sums, 0.0)


def _level_codes(values: pd.Series, levels: tuple[str, ...]) -> np.ndarray:
    """Category codes of ``values`` in ``levels``; rare levels fold into "other", unseen -> -1."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        # Map each category once, then gather by code: no per-row strings.
        per_category = _level_codes(pd.Series(values.cat.categories.astype(str)), levels)
        lookup = np.append(per_category, -1)  # code -1 (missing) -> the appended -1
        return lookup[np.asarray(values.cat.codes)]
    text = values.astype("string")
    if "other" in levels:
        text = text.where(text.isna() | text.isin(list(levels)), "other")
    return pd.Index(list(levels), dtype=object).get_indexer(text.astype(object)).astype(np.int64)


def build_features(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    stage_changes: pd.DataFrame,
    points: pd.DataFrame,
    *,
    columns: ColumnsConfig | None = None,
    config: FeaturesConfig | None = None,
    spec: FeatureSpec | None = None,
) -> pd.DataFrame:
    """One row per observation point: ``lead_id``, ``as_of``, then the spec's features in order.

    Parameters
    ----------
    leads, events, stage_changes : DataFrame
        Validated tables (see :func:`leadml.data.contracts.validate`). Rows after ``as_of`` may be
        present; they are never read for that point.
    points : DataFrame
        ``lead_id`` and ``as_of`` columns; output rows follow its order. Leads need no events.
    columns : ColumnsConfig, optional
        Column names of the tables.
    config : FeaturesConfig, optional
        Used only to infer a spec when ``spec`` is None.
    spec : FeatureSpec, optional
        The training-time spec: fixes the columns, their order, dtypes and category levels.
        Event types outside its vocabulary are ignored; vocabulary types with no events get
        zero counts. Without a spec, one is inferred from these tables.

    Returns
    -------
    DataFrame
        ``lead_id`` (the leads' dtype), ``as_of`` (``datetime64[ns]``), then ``spec.names``:
        float64 numerics and ``category`` columns with exactly the spec's levels.

    Raises
    ------
    FeatureInputError
        Points without ``lead_id``/``as_of``, for unknown leads, with a missing ``as_of``, or
        before the lead was created.

    Examples
    --------
    >>> import pandas as pd
    >>> from leadml.data.contracts import validate
    >>> data = validate(
    ...     pd.DataFrame({"lead_id": [1], "created_at": ["2024-01-01"]}),
    ...     pd.DataFrame({"lead_id": [1, 1], "event_type": ["web_visit", "web_visit"],
    ...                   "occurred_at": ["2024-01-28", "2024-02-01"]}),
    ...     pd.DataFrame({"lead_id": [1], "stage": ["lead"], "changed_at": ["2024-01-01"]}),
    ...     now="2024-02-02")
    >>> points = pd.DataFrame({"lead_id": [1], "as_of": [pd.Timestamp("2024-02-01")]})
    >>> f = build_features(data.leads, data.events, data.stage_changes, points)
    >>> f[["n_web_visit_7d", "days_since_last_web_visit", "tenure_days"]].iloc[0].tolist()
    [1.0, 4.0, 31.0]
    """
    c = columns or ColumnsConfig()
    if spec is None:
        spec = make_feature_spec(
            CRMData(leads=leads, events=events, stage_changes=stage_changes, columns=c), config
        )
    return _features(leads, events, stage_changes, points, c, spec)


class _EventsAhead:
    """The events' timeline for points all at one ``as_of``, started in a thread of ``pool``
    before the points are known (a scoring set's points wait for every lead's stage), for
    :func:`_features`. It is handed over once, then no longer held here."""

    def __init__(
        self, pool: ThreadPoolExecutor, data: CRMData, as_of: pd.Timestamp, spec: FeatureSpec
    ):
        c = data.columns
        q_sec = _seconds(np.array([as_of.to_datetime64()]))
        self.t0 = _origin(q_sec, data.events[c.occurred_at], data.stage_changes[c.changed_at])
        index = pd.Index(data.leads[c.lead_id])
        self._future: Any = pool.submit(_event_timeline, data.events, index, c, spec, self.t0)

    def __call__(self) -> _Events:
        future, self._future = self._future, None
        if future is None:
            raise RuntimeError("the event timeline was handed over already")
        return future.result()


def _features(
    leads: pd.DataFrame,
    events: pd.DataFrame,
    stage_changes: pd.DataFrame,
    points: pd.DataFrame,
    c: ColumnsConfig,
    spec: FeatureSpec,
    ahead: _EventsAhead | None = None,
) -> pd.DataFrame:
    """:func:`build_features` with its spec; ``ahead``: the events' timeline, started earlier
    for points all at one instant."""
    missing = [col for col in (c.lead_id, "as_of") if col not in points.columns]
    if missing:
        raise FeatureInputError(
            f"points: missing column(s) {missing} (found {list(points.columns)[:8]}); expected "
            f"{c.lead_id!r} and 'as_of', e.g. from leadml.data.timeline.build_observation_points"
        )
    index = pd.Index(leads[c.lead_id])
    p_pos = lead_positions(index, points[c.lead_id])
    if (p_pos < 0).any():
        bad = np.flatnonzero(p_pos < 0)
        raise FeatureInputError(
            f"points.{c.lead_id}: {len(bad)} points for leads not in the leads table (rows "
            f"{bad[:5].tolist()}; e.g. {points[c.lead_id].iloc[bad[:3]].tolist()}); build points "
            "and features from the same tables"
        )
    as_of = _as_of(points)
    q_sec = _seconds(as_of)
    created_sec = _seconds(leads[c.created_at])
    early = created_sec[p_pos] > q_sec
    if early.any():
        bad = np.flatnonzero(early)
        raise FeatureInputError(
            f"points.as_of: {len(bad)} points before their lead's {c.created_at} (rows "
            f"{bad[:5].tolist()}); a lead does not exist before it is created, drop those points"
        )

    if ahead is None:
        t0 = _origin(q_sec, events[c.occurred_at], stage_changes[c.changed_at])
        timeline: Callable[[], _Events] = partial(_event_timeline, events, index, c, spec, t0)
    else:
        t0, timeline = ahead.t0, ahead
        if len(q_sec) and (int(q_sec.min()) < t0 or int(q_sec.max()) - t0 >= _LOW):
            raise RuntimeError(f"points outside the event timeline's key range (second 0: {t0})")

    # Work on queries sorted by key: searchsorted is many times faster on sorted needles.
    q_rel = q_sec - t0
    q_key = (p_pos << 32) | q_rel
    order = None
    if len(q_key) > 1 and not bool(np.all(q_key[1:] >= q_key[:-1])):
        order = np.argsort(q_key, kind="stable")
        q_key, q_rel, qp, qs = q_key[order], q_rel[order], p_pos[order], q_sec[order]
    else:
        qp, qs = p_pos, q_sec
    q_base = qp << 32

    def back(seconds: int) -> np.ndarray:
        """Query keys moved ``seconds`` back, not before the start of the lead's key range."""
        return q_base | np.maximum(q_rel - seconds, 0)

    out: dict[str, np.ndarray] = {}
    engaged: dict[str, np.ndarray] = {}
    # The events' pass runs in a thread (its kernels release the GIL) beside the stage changes
    # and the fit columns: two cores, one features stage.
    with ThreadPoolExecutor(1, thread_name_prefix="leadml-events") as pool:
        events_done = pool.submit(_engagement, timeline, spec, t0, q_key, q_rel, back, engaged)
        _lifecycle(stage_changes, index, c, t0, q_key, qp, qs, created_sec, out)
        fit = {
            name: _fit_column(leads, name, spec, p_pos)
            for name in spec.names
            if name in spec.fit_columns
        }
        events_done.result()
    out.update(engaged)

    frame_cols: dict[str, Any] = {
        c.lead_id: points[c.lead_id].to_numpy(copy=True),
        "as_of": as_of.copy(),
    }
    for name in spec.names:
        if name in fit:
            frame_cols[name] = fit[name]
        elif name == "current_stage":
            codes = _unsort(out[name], order)
            frame_cols[name] = pd.Categorical.from_codes(codes, categories=list(spec.levels[name]))
        else:
            frame_cols[name] = _unsort(out[name], order)
    # Each column stays its own array: stacking sixty columns into one block copied them all
    # (0.5 s at a million leads) for nothing a reader of the frame needs. pandas warns about
    # (and slows down on) frames of more than 100 blocks, so a wide spec's are stacked.
    apart = len(frame_cols) <= _MAX_BLOCKS
    frame = pd.DataFrame(frame_cols, copy=False if apart else None)
    frame[c.lead_id] = frame[c.lead_id].astype(leads[c.lead_id].dtype)
    return frame


def _origin(q_sec: np.ndarray, *times: pd.Series) -> int:
    """Second 0 of the keys: the earliest time anywhere, but at most 68 years before any as_of.

    Older rows (placeholder dates such as 1900-01-01) are clipped to it: they stay before every
    as_of and outside every window.
    """
    lows = [int(q_sec.min())] if len(q_sec) else []
    lows += [pd.Timestamp(t.min()).value // 10**9 for t in times if len(t) and pd.notna(t.min())]
    if not lows:
        return 0
    t0 = min(lows)
    if len(q_sec):
        t0 = max(t0, int(q_sec.min()) - (1 << 31))
        if int(q_sec.max()) - t0 >= _LOW:
            raise FeatureInputError(
                "points.as_of: the observation points span more than 68 years; split them"
            )
    return t0


def _unsort(values: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    if order is None:
        return values
    out = np.empty_like(values)
    out[order] = values
    return out


def _fit_column(leads: pd.DataFrame, col: str, spec: FeatureSpec, p_pos: np.ndarray) -> Any:
    # Map once per lead, then gather per point: training sets repeat each lead many times.
    if spec.kinds[col] == "categorical":
        lv = spec.levels[col]
        if col in leads.columns:
            codes = _level_codes(leads[col], lv)[p_pos]
        else:
            codes = np.full(len(p_pos), -1, dtype=np.int64)
        return pd.Categorical.from_codes(codes, categories=list(lv))
    if col not in leads.columns:
        return np.full(len(p_pos), np.nan)
    values = pd.to_numeric(leads[col], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
    return values[p_pos]


@dataclass
class _Events:
    """The events as one timeline (module docs): sorted keys, the spec's event-type code of
    each (-1: none of the spec's types) and its value (empty when no value is summed)."""

    keys: np.ndarray
    e_type: np.ndarray
    value: np.ndarray
    t0: int


def _event_timeline(
    events: pd.DataFrame, index: pd.Index, c: ColumnsConfig, spec: FeatureSpec, t0: int
) -> _Events:
    """The events of the leads in ``index`` as a timeline with second 0 at ``t0``: what every
    observation point's engagement features are read from (it does not depend on the points)."""
    from leadml._kernels import lead_key_order, timeline_keys

    vocab = {t: i for i, t in enumerate(spec.event_types)}
    et = events[c.event_type]
    if not isinstance(et.dtype, pd.CategoricalDtype):
        et = et.astype("string").astype("category")
    # Types beyond the vocabulary cap count as OTHER_EVENTS when the spec has it, else
    # (a type first seen after training) as nothing.
    unknown = vocab.get(OTHER_EVENTS, -1)
    small = len(vocab) < 2**15 - 1  # int16 kinds: 50M events hold 100 MB less
    to_spec = np.array(
        [vocab.get(str(x), unknown) for x in et.cat.categories] + [-1],
        dtype=np.int16 if small else np.int32,
    )
    sums = c.value in events.columns and spec.value_types and spec.value_window_days is not None
    values = events[c.value].to_numpy(dtype="float64", na_value=np.nan) if sums else np.zeros(0)
    # One pass from the events' runs of leads to sorted keys: no position, seconds or mask
    # array per event. Unknown event types and unknown leads are left out.
    starts, run_pos = lead_runs(index, events[c.lead_id])
    ns = events[c.occurred_at].to_numpy(dtype="datetime64[ns]").view(np.int64)
    codes = np.asarray(et.cat.codes)
    keys, e_type, value, ordered = timeline_keys(starts, run_pos, ns, codes, to_spec, t0, values)
    del starts, run_pos, ns, codes, values
    if not ordered:
        order = lead_key_order(keys >> 32, keys)
        keys, e_type = keys[order], e_type[order]
        value = value[order] if len(value) else value
        del order
    return _Events(keys, e_type, value, t0)


def _engagement(
    timeline: Callable[[], _Events],
    spec: FeatureSpec,
    t0: int,
    q_key: np.ndarray,
    q_rel: np.ndarray,
    back: Any,
    out: dict[str, np.ndarray],
) -> None:
    from leadml._kernels import window_features

    ev = timeline()
    if ev.t0 != t0:
        raise RuntimeError(f"event timeline starts at second {ev.t0}, the points' keys at {t0}")
    keys, e_type, value = ev.keys, ev.e_type, ev.value
    del ev
    if not len(value):
        value = np.zeros(len(keys))
    vocab = {t: i for i, t in enumerate(spec.event_types)}

    # Every count, recency, active day and decayed total in one pass over the timeline; the
    # kernel writes each feature's column as float64 in place. Ranges of queries run in
    # threads side by side (the kernel releases the GIL); every range's columns are exactly
    # what one pass gives.
    wmax = max(spec.windows_days)
    td = spec.trend_days * _DAY
    spans = np.array([w * _DAY for w in spec.windows_days] + [td, 2 * td], dtype=np.int64)
    nq, nk, nw = len(q_key), len(vocab), len(spec.windows_days)
    counts = np.empty((nk, nw, nq))
    recency = np.empty((nk, nq))
    days, trend, running = np.empty(nq), np.empty(nq), np.empty(nq)
    at = np.empty(nq, dtype=np.int64)
    rate = math.log(2) / (spec.half_life_days * _DAY)

    outputs: tuple[Any, ...] = (counts, recency, days, trend, running, at)
    window = spec.windows_days.index(wmax)
    ranges = _balanced_cuts(keys, q_key, _threads(nq), nk * nw)
    with ThreadPoolExecutor(len(ranges) - 1, thread_name_prefix="leadml-windows") as pool:
        done = [
            pool.submit(
                window_features, keys, e_type, q_key, lo, hi, spans, window, t0, rate, *outputs
            )
            for lo, hi in zip(ranges[:-1].tolist(), ranges[1:].tolist(), strict=True)
        ]
        for f in done:
            f.result()
    for etype, k in vocab.items():
        for j, w in enumerate(spec.windows_days):
            out[f"n_{etype}_{w}d"] = counts[k, j]
        out[f"days_since_last_{etype}"] = recency[k]
        vw = spec.value_window_days
        if etype in spec.value_types and vw is not None:
            # Scoring data without a value column sums to 0, like a lead without such events.
            mask = e_type == k
            sub = keys[mask]
            v = np.nan_to_num(value[mask], nan=0.0, posinf=0.0, neginf=0.0)
            now = np.searchsorted(sub, q_key, side="left")
            lo = np.searchsorted(sub, back(vw * _DAY), side="left")
            out[f"sum_{etype}_value_{vw}d"] = _range_sums(v, lo, now)
    del e_type, value, keys
    out[f"n_active_days_{wmax}d"] = days
    out[f"engagement_trend_{spec.trend_days}d"] = trend
    # Σ 2^(-(as_of - t) / half_life): the running total at the last event, decayed to as_of.
    decay = running * np.exp(-rate * (q_rel - at))
    out["engagement_decayed"] = np.where(at >= 0, decay, 0.0)


def _balanced_cuts(keys: np.ndarray, q_key: np.ndarray, parts: int, per_query: int) -> np.ndarray:
    """``parts + 1`` query positions from 0 to ``len(q_key)`` that split the window pass into
    ranges of about equal work: the rows walked (up to each query) plus ``per_query`` outputs
    per query, read off about a thousand queries."""
    nq = len(q_key)
    if parts <= 1 or nq == 0:
        return np.array([0, nq], dtype=np.int64)
    at = np.arange(0, nq, max(1, nq // 1000))
    work = np.append(np.searchsorted(keys, q_key[at]) + at * per_query, len(keys) + nq * per_query)
    at = np.append(at, nq)
    inner = at[np.searchsorted(work, work[-1] * np.arange(1, parts) / parts)]
    return np.unique(np.concatenate([[0], inner, [nq]])).astype(np.int64)


def _threads(n_queries: int) -> int:
    """Threads for the events' window pass: one per core (at most 4), a range of at least
    100,000 queries each."""
    return max(1, min(os.cpu_count() or 1, 4, n_queries // 100_000))


def _lifecycle(
    stage_changes: pd.DataFrame,
    index: pd.Index,
    c: ColumnsConfig,
    t0: int,
    q_key: np.ndarray,
    qp: np.ndarray,
    qs: np.ndarray,
    created_sec: np.ndarray,
    out: dict[str, np.ndarray],
) -> None:
    stage_codes = (
        pd.Index(list(STAGES), dtype=object)
        .get_indexer(stage_changes[c.stage].astype(object))
        .astype(np.int64)
    )
    s_pos = lead_positions(index, stage_changes[c.lead_id])
    s_sec = _seconds(stage_changes[c.changed_at])
    keep = s_pos >= 0
    tl = _Timeline(s_pos[keep], s_sec[keep], t0, stage_codes[keep])
    (codes,) = tl.payload
    created = created_sec[qp]
    out["tenure_days"] = ((qs - created) / _DAY).astype(np.float64)
    n_before = tl.before(q_key)
    i, has = tl.last(n_before, qp)
    since = np.where(has, (tl.keys[i] & _LOW) + t0 if len(tl.keys) else 0, created)
    out["days_in_stage"] = ((qs - np.maximum(since, created)) / _DAY).astype(np.float64)
    lead_code = STAGES.index("lead")
    out["current_stage"] = np.where(has, codes[i] if len(codes) else lead_code, lead_code)
    dq = codes == STAGES.index("disqualified")
    dq_keys = tl.keys[dq]
    out["n_disqualifications"] = (
        np.searchsorted(dq_keys, q_key) - np.searchsorted(dq_keys, qp << 32)
    ).astype(np.float64)
