"""Point-in-time features: one function for training and for scoring.

:func:`build_features` turns the three tables and a set of observation points ``(lead_id, as_of)``
into one row per point. Only rows strictly before ``as_of`` are used (events, stage changes), and
``as_of`` is floored to the second so that comparisons on whole-second keys are exact.

Feature families (names carry unit and window):

- fit: the lead's own attributes (``industry``, ``company_size``, ...), categoricals with levels
  fixed by the :class:`FeatureSpec`; identifiers are excluded automatically;
- engagement: ``n_<type>_<w>d`` events of each type in ``[as_of - w, as_of)``,
  ``days_since_last_<type>`` (missing when never), ``n_active_days_<W>d`` distinct UTC dates with
  an event in the largest window, ``engagement_decayed`` (each past event weighs
  ``2 ** (-age / half_life)``), ``engagement_trend_<t>d`` (events in the last *t* days minus the
  *t* days before);
- lifecycle: ``tenure_days``, ``days_in_stage`` (since the last stage change before as_of, or
  creation), ``n_disqualifications`` (past disqualifications, i.e. recycles).

Every feature belongs to a reason *group* (all windows and the recency of one event type form one
group; each fit attribute is its own) and has a plain-language template, so any feature can become a
reason a rep reads (:meth:`FeatureSpec.describe`).

Cost grows with events + points: per event type, events are keyed ``lead_code << 32 | seconds``
and every window count is a difference of two ``searchsorted`` positions.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import ColumnsConfig, FeaturesConfig
from leadml.contracts import CRMData

__all__ = [
    "FeatureSpec",
    "IdentifierColumnsExcluded",
    "build_features",
    "feature_groups",
    "make_feature_spec",
    "to_categorical",
]

_SEC_PER_DAY = 86_400
_IDENTIFIER_PATTERN = re.compile(
    r"(^|_)(first_?name|last_?name|full_?name|name|e_?mail|email_address|phone|phone_number|"
    r"mobile|address|street|url|website|linkedin|ssn|notes?|comments?|description)($|_)"
    r"|^(company|company_name|account|account_name|owner|owner_name|owner_id)$",
    re.IGNORECASE,
)

# How an event type reads in a sentence: (past-tense verb phrase, noun phrase for recency).
_EVENT_PHRASES: dict[str, tuple[str, str]] = {
    "email_open": ("Opened an email", "opened an email"),
    "email_click": ("Clicked a link in an email", "clicked an email link"),
    "web_visit": ("Visited the website", "visited the website"),
    "pricing_page_view": ("Viewed the pricing page", "viewed the pricing page"),
    "content_download": ("Downloaded content", "downloaded content"),
    "webinar_attended": ("Attended a webinar", "attended a webinar"),
    "form_submit": ("Submitted a form", "submitted a form"),
    "demo_request": ("Requested a demo", "requested a demo"),
}


class IdentifierColumnsExcluded(UserWarning):
    """Lead columns that look like direct identifiers were left out of the features."""


def _phrase(event_type: str) -> tuple[str, str]:
    if event_type in _EVENT_PHRASES:
        return _EVENT_PHRASES[event_type]
    label = event_type.replace("_", " ")
    return (f"Had '{label}' events", f"had a '{label}' event")


def _times(n: float) -> str:
    n = int(round(n))
    return "once" if n == 1 else f"{n} times"


_UNIT_SUFFIXES = {"_musd": " (US$ millions)", "_usd": " (US$)", "_pct": " (%)", "_days": " (days)"}


def _label(column: str) -> str:
    text = column
    for suffix, unit in _UNIT_SUFFIXES.items():
        if text.endswith(suffix):
            text = text[: -len(suffix)] + unit
            break
    text = text.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to rebuild identical features and to put them into words.

    Built at training time by :func:`make_feature_spec`, stored in the model bundle as JSON
    (:meth:`to_dict`), and passed to :func:`build_features` at scoring time so the columns, their
    order, dtypes and category levels never drift from what the model saw.
    """

    names: tuple[str, ...]
    kinds: dict[str, str]
    levels: dict[str, tuple[str, ...]]
    groups: dict[str, str]
    templates: dict[str, str]
    event_types: tuple[str, ...]
    fit_columns: tuple[str, ...]
    excluded_columns: tuple[str, ...]
    windows_days: tuple[int, ...]
    half_life_days: float
    trend_days: int
    columns: dict[str, str] = field(default_factory=lambda: ColumnsConfig().model_dump())

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if self.kinds[n] == "categorical")

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.groups[n] for n in self.names))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["levels"] = {k: list(v) for k, v in self.levels.items()}
        for key in ("names", "event_types", "fit_columns", "excluded_columns", "windows_days"):
            d[key] = list(d[key])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeatureSpec:
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
            columns=dict(d.get("columns", ColumnsConfig().model_dump())),
        )

    def group_label(self, group: str) -> str:
        """Short human label of a reason group, e.g. ``Pricing page view``."""
        if group in self.event_types:
            return _label(group)
        return {"engagement": "Overall engagement", "stage_history": "Stage history"}.get(
            group, _label(group)
        )

    def describe(self, feature: str, value: Any) -> str:
        """Render ``feature = value`` as a sentence a sales rep can read.

        Examples
        --------
        >>> spec = FeatureSpec(names=("n_pricing_page_view_7d",),
        ...     kinds={"n_pricing_page_view_7d": "numeric"}, levels={},
        ...     groups={"n_pricing_page_view_7d": "pricing_page_view"},
        ...     templates={"n_pricing_page_view_7d": "count:pricing_page_view:7"},
        ...     event_types=("pricing_page_view",), fit_columns=(), excluded_columns=(),
        ...     windows_days=(7,), half_life_days=14.0, trend_days=14)
        >>> spec.describe("n_pricing_page_view_7d", 3)
        'Viewed the pricing page 3 times in the last 7 days'
        >>> spec.describe("n_pricing_page_view_7d", 0)
        'Did not view the pricing page in the last 7 days'
        """
        kind, _, arg = self.templates[feature].partition(":")
        missing = value is None or (isinstance(value, float) and math.isnan(value))
        if kind == "count":
            etype, _, w = arg.partition(":")
            verb, _ = _phrase(etype)
            if missing or float(value) == 0:
                return f"{_negate(verb)} in the last {w} days"
            return f"{verb} {_times(float(value))} in the last {w} days"
        if kind == "recency":
            _, noun = _phrase(arg)
            if missing:
                return f"Never {noun}"
            days = float(value)
            when = "today" if days < 1 else ("1 day ago" if days < 2 else f"{int(days)} days ago")
            return f"Last {noun} {when}"
        if kind == "fit":
            label = _label(arg)
            return f"{label} unknown" if missing else f"{label}: {_fmt(value)}"
        if kind == "active_days":
            return f"Active on {0 if missing else int(value)} of the last {arg} days"
        if kind == "decayed":
            n = 0.0 if missing else float(value)
            return f"Engagement score {n:.1f} (events weighted by recency, half-life {self.half_life_days:g} days)"
        if kind == "trend":
            v = 0 if missing else int(round(float(value)))
            if v == 0:
                return f"Engagement steady over the last {arg} days"
            word = "up" if v > 0 else "down"
            return f"Engagement {word} by {abs(v)} events vs the {arg} days before"
        if kind == "tenure":
            return f"Lead for {int(value)} days"
        if kind == "stage":
            return f"Currently a {value}" if not missing else "Stage unknown"
        if kind == "days_in_stage":
            return f"In the current stage for {int(value)} days"
        if kind == "disqualifications":
            n = 0 if missing else int(value)
            return "Never disqualified before" if n == 0 else f"Disqualified {_times(n)} before"
        return f"{_label(feature)}: {_fmt(value)}"


def _negate(verb: str) -> str:
    # "Viewed the pricing page" -> "Did not view the pricing page"
    head, _, rest = verb.partition(" ")
    base = {
        "Opened": "open",
        "Clicked": "click",
        "Visited": "visit",
        "Viewed": "view",
        "Downloaded": "download",
        "Attended": "attend",
        "Submitted": "submit",
        "Requested": "request",
        "Had": "have",
    }.get(head, head.lower())
    return f"Did not {base} {rest}".rstrip()


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        return f"{float(value):,.4g}"
    return str(value)


def _is_identifier(column: str, values: pd.Series) -> bool:
    if _IDENTIFIER_PATTERN.search(column):
        return True
    if isinstance(values.dtype, pd.CategoricalDtype) or pd.api.types.is_numeric_dtype(values.dtype):
        return False
    # Free text or per-lead codes: mostly unique strings carry no reusable signal, only identity.
    non_null = values.dropna()
    return len(non_null) >= 50 and non_null.nunique() > 0.5 * len(non_null)


def make_feature_spec(data: CRMData, config: FeaturesConfig | None = None) -> FeatureSpec:
    """Infer the feature vocabulary (event types, fit columns, category levels) from training data.

    Warns with :class:`IdentifierColumnsExcluded` listing the lead columns that were left out.
    """
    cfg = config or FeaturesConfig()
    c = data.columns
    leads = data.leads
    reserved = {c.lead_id, c.created_at}
    configured = set(cfg.identifier_columns) | set(cfg.exclude_columns)
    excluded: list[str] = []
    fit: list[str] = []
    for col in leads.columns:
        if col in reserved:
            continue
        s = leads[col]
        if (
            col in configured
            or _is_identifier(col, s)
            or pd.api.types.is_datetime64_any_dtype(s.dtype)
            or s.nunique(dropna=True) <= 1
        ):
            excluded.append(col)
        else:
            fit.append(col)
    if excluded:
        warnings.warn(
            "not used as features (identifiers, free text, timestamps or constants): "
            + ", ".join(excluded),
            IdentifierColumnsExcluded,
            stacklevel=2,
        )

    kinds: dict[str, str] = {}
    levels: dict[str, tuple[str, ...]] = {}
    groups: dict[str, str] = {}
    templates: dict[str, str] = {}
    names: list[str] = []
    for col in fit:
        s = leads[col]
        if pd.api.types.is_bool_dtype(s.dtype) or not pd.api.types.is_numeric_dtype(s.dtype):
            counts = s.dropna().astype(str).value_counts()
            # Most frequent first, ties by name, so the levels are deterministic.
            order = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
            keep = [k for k, _ in order[: cfg.max_category_levels - 1]]
            if len(order) > len(keep):
                keep.append("other")
            levels[col] = tuple(sorted(keep))
            kinds[col] = "categorical"
        else:
            kinds[col] = "numeric"
        groups[col] = col
        templates[col] = f"fit:{col}"
        names.append(col)

    et = data.events[c.event_type]
    if isinstance(et.dtype, pd.CategoricalDtype):
        present = et.cat.remove_unused_categories().cat.categories
    else:
        present = pd.Index(et.dropna().unique())
    event_types = tuple(sorted(str(x) for x in present))
    for etype in event_types:
        for w in cfg.windows_days:
            n = f"n_{etype}_{w}d"
            names.append(n)
            kinds[n], groups[n], templates[n] = "numeric", etype, f"count:{etype}:{w}"
        n = f"days_since_last_{etype}"
        names.append(n)
        kinds[n], groups[n], templates[n] = "numeric", etype, f"recency:{etype}"
    wmax = max(cfg.windows_days)
    extra = {
        f"n_active_days_{wmax}d": ("engagement", f"active_days:{wmax}"),
        "engagement_decayed": ("engagement", "decayed:"),
        f"engagement_trend_{cfg.trend_days}d": ("engagement", f"trend:{cfg.trend_days}"),
        "tenure_days": ("tenure", "tenure:"),
        "current_stage": ("stage_history", "stage:"),
        "days_in_stage": ("stage_history", "days_in_stage:"),
        "n_disqualifications": ("stage_history", "disqualifications:"),
    }
    for n, (g, t) in extra.items():
        names.append(n)
        kinds[n], groups[n], templates[n] = "numeric", g, t
    # The stage a lead was last moved to before as_of (recycled leads come back as "lead").
    kinds["current_stage"] = "categorical"
    levels["current_stage"] = ("disqualified", "lead", "prospect")
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
        half_life_days=float(cfg.half_life_days),
        trend_days=int(cfg.trend_days),
        columns=c.model_dump(),
    )


def to_categorical(values: pd.Series, levels: tuple[str, ...] | list[str]) -> pd.Categorical:
    """Strings -> Categorical with exactly ``levels``; anything else becomes missing."""
    text = values.astype("string")
    known = text.isin(list(levels)).to_numpy() & text.notna().to_numpy()
    arr = np.where(known, text.to_numpy(dtype=object, na_value=None), None)
    return pd.Categorical(arr, categories=list(levels))


def _seconds(ts: np.ndarray) -> np.ndarray:
    return ts.astype("datetime64[ns]").astype("int64") // 1_000_000_000


class _Keyed:
    """Sorted ``lead_code << 32 | seconds`` keys for fast per-lead window queries."""

    def __init__(self, codes: np.ndarray, seconds: np.ndarray, t0: int):
        rel = np.clip(seconds - t0, 0, 2**32 - 1)
        raw = (codes.astype(np.int64) << 32) | rel
        self.order = np.argsort(raw, kind="stable")
        self.keys = raw[self.order]

    def count_before(self, q: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.keys, q, side="left")

    def last_before(self, n_before: np.ndarray) -> np.ndarray:
        """Key of the last entry before each query (given ``count_before``), or -1."""
        if len(self.keys) == 0:
            return np.full(len(n_before), -1, dtype=np.int64)
        return np.where(n_before > 0, self.keys[np.maximum(n_before - 1, 0)], -1)


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
        Validated tables (see :func:`leadml.contracts.validate`).
    points : DataFrame
        ``lead_id`` and ``as_of`` columns; output rows follow its order.
    columns, config : optional
        Column names and feature settings; ignored for what ``spec`` fixes.
    spec : FeatureSpec, optional
        The training-time spec. Without it one is inferred from these tables.
    """
    c = columns or ColumnsConfig()
    if spec is None:
        data = CRMData(leads=leads, events=events, stage_changes=stage_changes, columns=c)
        spec = make_feature_spec(data, config)
    missing = [col for col in (c.lead_id, "as_of") if col not in points.columns]
    if missing:
        raise ValueError(f"points: missing column(s) {missing}; expected lead_id and as_of")

    lead_index = pd.Index(leads[c.lead_id])
    p_code = lead_index.get_indexer(points[c.lead_id])
    if (p_code < 0).any():
        bad = points.loc[p_code < 0, c.lead_id].head(3).tolist()
        raise ValueError(f"points: {int((p_code < 0).sum())} points for unknown leads, e.g. {bad}")
    as_of = pd.to_datetime(points["as_of"]).to_numpy(dtype="datetime64[ns]")
    as_of = as_of.astype("datetime64[s]").astype("datetime64[ns]")
    q_sec = _seconds(as_of)
    t0 = int(q_sec.min()) - 10 * 365 * _SEC_PER_DAY if len(q_sec) else 0
    p_code64 = p_code.astype(np.int64) << 32

    def q(offset_seconds: int | np.ndarray = 0) -> np.ndarray:
        rel = np.clip(q_sec - offset_seconds - t0, 0, 2**32 - 1)
        return p_code64 | rel

    out: dict[str, Any] = {
        c.lead_id: points[c.lead_id].to_numpy(),
        "as_of": as_of,
    }

    # Fit attributes, mapped onto the spec's levels.
    lead_rows = leads.iloc[p_code]
    for col in spec.fit_columns:
        s = (
            lead_rows[col].reset_index(drop=True)
            if col in leads.columns
            else pd.Series([np.nan] * len(points))
        )
        if spec.kinds[col] == "categorical":
            lv = spec.levels[col]
            text = s.astype("string")
            if "other" in lv:
                text = text.where(text.isna() | text.isin(lv), "other")
            out[col] = to_categorical(text, lv)
        else:
            out[col] = pd.to_numeric(s, errors="coerce").astype("float64").to_numpy()

    # Engagement: per event type, counts in windows and recency.
    e_code = lead_index.get_indexer(events[c.lead_id]) if len(events) else np.array([], dtype=int)
    e_sec = (
        _seconds(events[c.occurred_at].to_numpy(dtype="datetime64[ns]"))
        if len(events)
        else (np.array([], dtype=np.int64))
    )
    # Compare small integer codes, never 50M Python strings.
    et = events[c.event_type]
    if not isinstance(et.dtype, pd.CategoricalDtype):
        et = et.astype("string").astype("category")
    vocabulary = {str(v): i for i, v in enumerate(et.cat.categories)}
    e_type = et.cat.codes.to_numpy()
    q_now = q()
    day = _SEC_PER_DAY
    for etype in spec.event_types:
        sel = e_type == vocabulary.get(etype, -2)
        keyed = _Keyed(e_code[sel], e_sec[sel], t0)
        before_now = keyed.count_before(q_now)
        for w in spec.windows_days:
            out[f"n_{etype}_{w}d"] = (before_now - keyed.count_before(q(w * day))).astype("float64")
        last = keyed.last_before(before_now)
        same_lead = (last >> 32) == p_code
        last_sec = (last & 0xFFFFFFFF) + t0
        out[f"days_since_last_{etype}"] = np.where(
            same_lead & (last >= 0), (q_sec - last_sec) / day, np.nan
        )

    # All events together: active days, trend, decayed total.
    wmax = max(spec.windows_days)
    all_keyed = _Keyed(e_code, e_sec, t0)
    # all_keyed.keys is sorted by (lead, time), so (lead, date) keys come out sorted too and
    # distinct dates are where the key changes: O(events), no hashing or sorting.
    sorted_days = (all_keyed.keys >> 32 << 32) | (
        (all_keyed.keys & 0xFFFFFFFF) + t0
    ) // day - t0 // day
    change = np.ones(len(sorted_days), dtype=bool)
    change[1:] = sorted_days[1:] != sorted_days[:-1]
    day_keys = sorted_days[change]
    q_day = q_sec // day - t0 // day
    # Whole dates strictly before as_of's date, within the window, plus as_of's date if an event
    # happened on it before as_of.
    n_days = np.searchsorted(day_keys, p_code64 | q_day, side="left") - np.searchsorted(
        day_keys, p_code64 | np.maximum(q_day - wmax, 0), side="left"
    )
    before_all = all_keyed.count_before(q_now)
    last_any = all_keyed.last_before(before_all)
    today = ((last_any >> 32) == p_code) & (((last_any & 0xFFFFFFFF) + t0) // day == q_sec // day)
    out[f"n_active_days_{wmax}d"] = (n_days + today).astype("float64")
    t = spec.trend_days * day
    recent = before_all - all_keyed.count_before(q(t))
    earlier = all_keyed.count_before(q(t)) - all_keyed.count_before(q(2 * t))
    out[f"engagement_trend_{spec.trend_days}d"] = (recent - earlier).astype("float64")
    out["engagement_decayed"] = _decayed(
        all_keyed.keys, before_all, t0, p_code, q_sec, spec.half_life_days * day
    )

    # Lifecycle, from stage changes strictly before as_of.
    created = _seconds(leads[c.created_at].to_numpy(dtype="datetime64[ns]"))[p_code]
    out["tenure_days"] = ((q_sec - created) / day).astype("float64")
    s_code = lead_index.get_indexer(stage_changes[c.lead_id])
    s_sec = _seconds(stage_changes[c.changed_at].to_numpy(dtype="datetime64[ns]"))
    sc_keyed = _Keyed(s_code, s_sec, t0)
    n_before = sc_keyed.count_before(q_now)
    last_sc = sc_keyed.last_before(n_before)
    has_sc = ((last_sc >> 32) == p_code) & (last_sc >= 0)
    since = np.where(has_sc, (last_sc & 0xFFFFFFFF) + t0, created)
    out["days_in_stage"] = ((q_sec - np.maximum(since, created)) / day).astype("float64")
    stages_arr = stage_changes[c.stage].to_numpy(dtype=object)
    last_stage = np.where(has_sc, stages_arr[sc_keyed.order[np.maximum(n_before - 1, 0)]], "lead")
    if "current_stage" in spec.kinds:
        out["current_stage"] = to_categorical(
            pd.Series(last_stage, dtype="string"), spec.levels["current_stage"]
        )
    dq = (stage_changes[c.stage] == "disqualified").to_numpy()
    dq_keyed = _Keyed(s_code[dq], s_sec[dq], t0)
    out["n_disqualifications"] = (
        dq_keyed.count_before(q_now) - dq_keyed.count_before(p_code64)
    ).astype("float64")

    frame = pd.DataFrame(out)
    frame[c.lead_id] = frame[c.lead_id].astype(leads[c.lead_id].dtype)
    return frame[[c.lead_id, "as_of", *spec.names]]


def _decayed(
    keys: np.ndarray,
    n_before: np.ndarray,
    t0: int,
    p_code: np.ndarray,
    q_sec: np.ndarray,
    half_life_seconds: float,
) -> np.ndarray:
    """Σ 2^(-(as_of - t) / half_life) over each point's events strictly before as_of.

    A running decayed count is computed once along each lead's sorted events (exact, never
    overflows, O(events)); a point then reads the value at its last earlier event and decays it
    to as_of. ``n_before`` is each point's count of keys before it (from ``searchsorted``).
    """
    from leadml._kernels import decay_running

    rate = math.log(2) / half_life_seconds
    lead = keys >> 32
    secs = ((keys & 0xFFFFFFFF) + t0).astype(np.float64)
    running = decay_running(lead, secs, rate)
    last = np.maximum(n_before - 1, 0)
    has = (n_before > 0) & (lead[last] == p_code) if len(keys) else np.zeros(len(q_sec), bool)
    if not len(keys):
        return np.zeros(len(q_sec))
    value = running[last] * np.exp(-rate * (q_sec - secs[last]))
    return np.where(has, value, 0.0)


def feature_groups(spec: FeatureSpec) -> dict[str, list[str]]:
    """Reason group -> its features, in spec order."""
    groups: dict[str, list[str]] = {}
    for n in spec.names:
        groups.setdefault(spec.groups[n], []).append(n)
    return groups
