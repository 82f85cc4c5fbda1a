"""The rep's view: one self-contained HTML page and a CRM-ready CSV, from a scores file.

The page answers "whom do I call first, and why", once per question: a call list of leads to
qualify (scored on becoming a prospect) and one of prospects to advance (on becoming an
opportunity), each with its own ranks, lede and tier cards with its own model's observed rates,
one shown at a time. Leads are ranked by score with tier badges and the chance of reaching their
next stage; sortable by any column, filterable by tier, searchable by name or company. Each lead opens into a card with what changed since a previous
run, its reasons as bars (green raises the chance, red lowers it, length is the size in
percentage points) and the facts a rep needs before calling. The page loads nothing from the
network (CSS and script are inlined from ``leadml/report_template/``), prints cleanly, and every
lead field is HTML-escaped; the script reads only ``data-*`` attributes and writes only text, so
lead data is never parsed as markup and no JSON is embedded.

CRM export (``--format csv``): UTF-8 with a header, one row per lead in rank order, columns in this
order (stable, because CRM import mappings depend on it)::

    lead_id, name, company, owner, stage, score, tier, p_next_stage, p_prospect, p_opportunity,
    score_change, reason_1 .. reason_N, as_of, model_version, call_list, base_score, other_points

``p_*`` are probabilities (0-1, 4 decimals, empty when not applicable), ``score_change`` is the
score minus the previous run's (empty without ``--previous`` or for a new lead), each reason is a
short sentence with its size, e.g. ``Viewed the pricing page 3 times in the last 7 days
(+4.1 pts)``, and ``as_of`` is ISO 8601 UTC. ``call_list`` says which question the score answers:
``qualify`` (a lead, scored on becoming a prospect), ``advance`` (a prospect, on becoming an
opportunity) or ``convert`` (flat mode); a CRM view filtered on it gives one call list per
transition. ``base_score`` + the reasons' points + ``other_points`` = ``score`` (empty for
scores files written before the points existed).
"""

from __future__ import annotations

import functools
import html
import json
import math
import string
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml._io import atomic_path, check_target, exists_error
from leadml.config import MonitorConfig
from leadml.explain.reasons import reason_cell
from leadml.funnel import NEXT_TRANSITION, TIERS
from leadml.serve.contract import ScoringError, read_scores, required_columns
from leadml.serve.history import Previous, add_trend

__all__ = [
    "CRM_COLUMNS",
    "ReportError",
    "ReportExistsError",
    "build_crm_export",
    "build_report",
    "crm_columns",
    "load_scores",
    "write_report",
]

#: Columns of the CRM export before the reasons; ``as_of`` and ``model_version`` follow them.
CRM_COLUMNS = (
    "lead_id",
    "name",
    "company",
    "owner",
    "stage",
    "score",
    "tier",
    "p_next_stage",
    "p_prospect",
    "p_opportunity",
    "score_change",
)
_CRM_TAIL = (
    "as_of",
    "model_version",
    "call_list",
    "base_score",
    "other_points",
    "trend",
    "changes",
)
#: The call list a row belongs to, by the stage it is scored from (flat mode: ``convert``).
CALL_LISTS = {"lead": "qualify", "prospect": "advance"}
# Reasons a rep cannot act on; the one-line "top reason" prefers something the lead did or is.
_CONTEXT_GROUPS = frozenset({"stage_history", "tenure", "engagement"})
_MINUS = "\u2212"


class ReportError(ValueError):
    """A scores file or an argument cannot be turned into a report."""


class ReportExistsError(ReportError, FileExistsError):
    """The output file exists and ``overwrite`` was not given."""


def crm_columns(n_reasons: int = 5) -> list[str]:
    """The CRM export's columns, in order, for ``n_reasons`` reason columns.

    Examples
    --------
    >>> crm_columns(2)[-9:]  # doctest: +NORMALIZE_WHITESPACE
    ['reason_1', 'reason_2', 'as_of', 'model_version', 'call_list', 'base_score', 'other_points',
     'trend', 'changes']
    """
    return [*CRM_COLUMNS, *(f"reason_{k + 1}" for k in range(n_reasons)), *_CRM_TAIL]


# --- reading ---------------------------------------------------------------------------------


def load_scores(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a scores file written by ``leadml score`` (either mode; Parquet or CSV, by
    extension) with :func:`leadml.serve.contract.read_scores`.

    Returns the frame (``reasons`` as lists of dicts) and the file's ``leadml.*`` metadata
    (Parquet only; CSV has none).
    """
    try:
        frame = read_scores(path)
    except ScoringError as e:
        raise ReportError(str(e)) from e
    meta = dict(frame.attrs)
    frame.attrs.clear()
    _check_columns(frame, f"scores file {str(path)!r}", required_columns(frame))
    return frame, meta


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _check_columns(frame: pd.DataFrame, what: str, required: Sequence[str]) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ReportError(
            f"{what} is missing column(s) {', '.join(missing)}; expected the output of "
            f"`leadml score` (required: {', '.join(required)})"
        )


# --- shaping ---------------------------------------------------------------------------------


def _missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    if np.ndim(v) != 0:
        return False
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _reasons(value: Any) -> list[dict[str, Any]]:
    if value is None or (np.ndim(value) == 0 and _missing(value)):
        return []
    if isinstance(value, str):  # a JSON list, as some CSV writers keep it
        value = _json_or_text(value)
        if not isinstance(value, list):
            return []
    out = []
    for r in list(value):
        r = dict(r)
        effect = float("nan") if _missing(r.get("effect")) else float(r["effect"])
        direction = r.get("direction") or ("-" if effect < 0 else "+")
        out.append(
            {
                "group": "" if _missing(r.get("group")) else str(r.get("group")),
                "text": "" if _missing(r.get("text")) else str(r.get("text")),
                "direction": "-" if direction == "-" else "+",
                "effect": effect,
                "evidence": "" if _missing(r.get("evidence")) else str(r.get("evidence")),
            }
        )
    return out


def _prepare(
    scores: pd.DataFrame,
    previous: pd.DataFrame | None,
    owner: str | None,
    top: int | None,
    target: str | None = None,
) -> pd.DataFrame:
    """Filter, rank and annotate: rank, p_next_stage, next_stage, score_change, is_new, ...
    Flat-mode scores (no ``stage``) read their ``probability`` as the chance of ``target``."""
    _check_columns(scores, "scores", required_columns(scores))
    df = scores.copy()
    if owner is not None:
        if "owner" not in df.columns:
            raise ReportError(
                "an owner filter was given but the scores have no owner column; score with a "
                "leads table that has an owner column, or drop --owner"
            )
        key = df["owner"].astype("string").str.strip().str.casefold()
        mask = (key == owner.strip().casefold()).fillna(False).to_numpy(dtype=bool)
        if not mask.any():
            known = sorted(df["owner"].dropna().astype(str).unique())
            shown = ", ".join(repr(o) for o in known[:10]) + (", ..." if len(known) > 10 else "")
            raise ReportError(
                f"no leads owned by {owner!r} in the scores; owners present: {shown or 'none'}"
            )
        df = df.loc[mask]
    if top is not None and top < 1:
        raise ReportError(f"top must be a positive number of leads, got {top}")
    df["score"] = pd.to_numeric(df["score"], errors="coerce")
    bad = df["score"].isna().to_numpy()
    if bad.any():
        ids = ", ".join(map(str, df.loc[bad, "lead_id"].head(5)))
        raise ReportError(
            f"scores.score: {int(bad.sum())} lead(s) have no numeric score (lead_id {ids}); "
            "expected integers 0-100 from `leadml score`"
        )
    if "stage" in df.columns:  # event mode: each lead's next stage
        stage = df["stage"].astype("string").fillna("")
        p_prospect = pd.to_numeric(df["p_prospect"], errors="coerce").to_numpy(dtype=float)
        p_opportunity = pd.to_numeric(df["p_opportunity"], errors="coerce").to_numpy(dtype=float)
        df["p_next_stage"] = np.where(stage == "lead", p_prospect, p_opportunity)
        df["next_stage"] = stage.map(NEXT_TRANSITION).fillna("next stage").to_numpy()
    else:  # flat mode: one outcome, named by the model's target column
        df["stage"] = "lead"
        df["p_prospect"] = df["p_opportunity"] = np.nan
        df["p_next_stage"] = pd.to_numeric(df["probability"], errors="coerce")
        df["next_stage"] = target or "conversion"
    df["_key"] = df["lead_id"].astype(str).to_numpy()
    try:  # ties break by lead_id like the scorer's output (numerically for numeric ids)
        df = df.sort_values(
            ["score", "p_next_stage", "lead_id"], ascending=[False, False, True], na_position="last"
        )
    except TypeError:  # ids of mixed types compare as text
        df = df.sort_values(
            ["score", "p_next_stage", "_key"], ascending=[False, False, True], na_position="last"
        )
    if top is not None:
        df = df.head(top)
    df = df.reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    # One call list per question (leads to qualify, prospects to advance), ranked within it.
    df["list_rank"] = df.groupby("stage", sort=False).cumcount().to_numpy() + 1
    df["reasons"] = [_reasons(v) for v in df["reasons"]]
    # A scores file written with --history carries its own trend; --previous recomputes it.
    from_history = previous is None and "trend" in df.columns
    if from_history:
        df["is_new"] = (df["trend"].astype("string") == "New").fillna(False).to_numpy(bool)
        df["score_change"] = pd.to_numeric(df["score_change"], errors="coerce")
    else:
        df["score_change"] = np.nan
        df["is_new"] = False
        df["trend"] = ""
        df["changes"] = ""
    df["previous_tier"] = None
    if previous is not None:
        _check_columns(previous, "previous scores", ("lead_id", "score"))
        prev = previous.assign(_key=previous["lead_id"].astype(str)).drop_duplicates("_key")
        since = pd.to_datetime(previous["as_of"]).max() if "as_of" in previous.columns else None
        before = Previous.from_frame(
            prev, since if since is not None and not pd.isna(since) else pd.Timestamp(0)
        )
        cols = ["lead_id", "score", "reasons", *(["stage"] if "stage" in df.columns else [])]
        trended = add_trend(df[cols], before, MonitorConfig().trend_points)
        df["trend"] = trended["trend"].to_numpy()
        df["changes"] = trended["changes"].to_numpy()
        prev = prev.set_index("_key")
        df["score_change"] = df["score"] - df["_key"].map(pd.to_numeric(prev["score"]))
        # A lead that moved to the next stage is scored on another question: no change.
        df.loc[(df["trend"] == "Advanced").to_numpy(dtype=bool), "score_change"] = np.nan
        df["is_new"] = ~df["_key"].isin(prev.index)
        if "tier" in prev.columns:
            df["previous_tier"] = df["_key"].map(prev["tier"]).astype(object).to_numpy()
    return df


def _model_versions(df: pd.DataFrame, given: str | None) -> str:
    if given:
        return given
    if "model_version" not in df.columns:
        return ""
    parts = {
        part.strip()
        for v in df["model_version"].dropna().astype(str).unique()
        for part in v.split(",")
        if part.strip()
    }
    return ", ".join(sorted(parts))


# --- CSV export ------------------------------------------------------------------------------


def build_crm_export(
    scores: pd.DataFrame, n_reasons: int = 5, *, previous: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per lead, in rank order, ready for a CRM import.

    Parameters
    ----------
    scores : DataFrame
        The scorer's output (see :func:`leadml.serve.contract.required_columns`; display columns are optional).
    n_reasons : int
        How many reason columns to write; leads with fewer reasons get empty cells.
    previous : DataFrame, optional
        An earlier run's scores; fills ``score_change``.

    Returns
    -------
    DataFrame
        Columns ``crm_columns(n_reasons)``, in that order (see the module docstring).
    """
    return _crm_frame(_prepare(scores, previous, None, None), n_reasons)


def _crm_frame(df: pd.DataFrame, n_reasons: int) -> pd.DataFrame:
    if n_reasons < 0:
        raise ReportError(f"n_reasons must be 0 or more, got {n_reasons}")
    out = pd.DataFrame(index=df.index)
    for col in ("lead_id", "name", "company", "owner", "stage"):
        out[col] = df[col] if col in df.columns else ""
    out["score"] = df["score"].round().astype("Int64")
    out["tier"] = df["tier"]
    for col in ("p_next_stage", "p_prospect", "p_opportunity"):
        out[col] = pd.to_numeric(df[col], errors="coerce").round(4)
    out["score_change"] = df["score_change"].round().astype("Int64")
    texts = [[reason_cell(r) for r in rs] for rs in df["reasons"]]
    for k in range(n_reasons):
        out[f"reason_{k + 1}"] = [t[k] if k < len(t) else "" for t in texts]
    out["as_of"] = [
        "" if _missing(t) else pd.Timestamp(t).strftime("%Y-%m-%dT%H:%M:%SZ") for t in df["as_of"]
    ]
    out["model_version"] = df["model_version"] if "model_version" in df.columns else ""
    flat = "probability" in df.columns  # flat scores have one question, no stage
    out["call_list"] = ["convert" if flat else CALL_LISTS.get(str(v), "") for v in df["stage"]]
    for col in ("base_score", "other_points"):
        values = df[col] if col in df.columns else pd.Series(np.nan, index=df.index)
        out[col] = pd.to_numeric(values, errors="coerce").round(1)
    for col in ("trend", "changes"):
        out[col] = df[col].astype("string").fillna("").to_numpy() if col in df.columns else ""
    for col in out.columns:
        if not pd.api.types.is_numeric_dtype(out[col].dtype):
            out[col] = out[col].map(_spreadsheet_safe)
    return out.reset_index(drop=True)[crm_columns(n_reasons)]


#: Cell starts a spreadsheet reads as a formula (OWASP CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _spreadsheet_safe(v: Any) -> Any:
    """Text that a spreadsheet would run as a formula gets a leading apostrophe, as OWASP
    recommends for CSV exports; anything else is returned unchanged.

    >>> [_spreadsheet_safe(v) for v in ("=HYPERLINK(1)", "@SUM(A1)", "Acme", 3)]
    ["'=HYPERLINK(1)", "'@SUM(A1)", 'Acme', 3]
    """
    return "'" + v if isinstance(v, str) and v.startswith(_FORMULA_START) else v


# --- HTML ------------------------------------------------------------------------------------


@functools.cache
def _asset(name: str) -> str:
    return resources.files("leadml").joinpath("report_template", name).read_text("utf-8")


def _e(v: Any) -> str:
    """Escaped text for HTML content and quoted attributes; missing values become ''."""
    if _missing(v):
        return ""
    return html.escape(str(v), quote=True)


def _pct(p: Any) -> str:
    if _missing(p):
        return "–"
    p = float(p)
    if 0 < p < 0.001:
        return "<0.1%"
    return f"{100 * p:.0f}%" if p >= 0.095 or p == 0 else f"{100 * p:.1f}%"


def _when(ts: Any) -> str:
    if _missing(ts):
        return ""
    t = pd.Timestamp(ts)
    return f"{t:%Y-%m-%d}" if t == t.normalize() else f"{t:%Y-%m-%d %H:%M} UTC"


def _human(v: Any) -> str:
    text = "" if _missing(v) else str(v).replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _rate(info: Mapping[str, Any], tier: str) -> float | None:
    entry = info.get(tier)
    rate = entry.get("conversion_rate") if isinstance(entry, Mapping) else None
    if isinstance(rate, int | float) and not isinstance(rate, bool) and math.isfinite(rate):
        return float(rate)
    return None


def _change(row: Mapping[str, Any]) -> str:
    if row["is_new"]:
        return '<span class="new" title="Not in the previous run">new</span>'
    if row.get("trend") == "Advanced":
        return '<span class="new" title="Moved to the next stage since the previous run">advanced</span>'
    d = row["score_change"]
    if _missing(d):
        return ""
    d = int(round(float(d)))
    if d > 0:
        return f'<span class="up">▲ +{d}</span>'
    if d < 0:
        return f'<span class="down">▼ {_MINUS}{-d}</span>'
    return '<span class="same">±0</span>'


def _top_reason(rs: list[dict[str, Any]]) -> str:
    positives = [r for r in rs if r["direction"] == "+" and r["text"]]
    actionable = [r for r in positives if r["group"] not in _CONTEXT_GROUPS]
    best = next(iter(actionable or positives), None)
    if best is None:
        return '<span class="none">no strong positive reason</span>'
    text = _e(best["text"])
    return f'<span class="clip" title="{text}"><span class="dot"></span>{text}</span>'


def _bars(rs: list[dict[str, Any]]) -> str:
    if not rs:
        return '<p class="none">No reason moved this lead\'s chance by much.</p>'
    sizes = [abs(r["effect"]) for r in rs if not math.isnan(r["effect"])]
    # A floor of 5 points keeps a card of tiny reasons from drawing them as full-width bars.
    scale = max([0.05, *sizes])
    items = []
    for r in rs:
        e = r["effect"]
        cls = "neg" if r["direction"] == "-" else "pos"
        if math.isnan(e):
            width, label = 0.0, ""
        else:
            width = max(1.5, 50 * abs(e) / scale)
            label = f"{100 * e:+.1f} pts".replace("-", _MINUS)
        ev = r.get("evidence") or ""
        hint = f' title="{_e(ev)}"' if ev else ""
        items.append(
            f'<li class="{cls}"{hint}><span class="rtext">{_e(r["text"])}'
            + (f'<span class="ev">{_e(ev)}</span>' if ev else "")
            + "</span>"
            f'<span class="track" aria-hidden="true"><i style="width:{width:.1f}%"></i></span>'
            f'<span class="eff">{label}</span></li>'
        )
    return f'<ul class="reasons">{"".join(items)}</ul>'


def _sum_line(row: Mapping[str, Any]) -> str:
    """How the points add up (scores files before base_score existed have no such line)."""
    base: Any = row.get("base_score")
    other: Any = row.get("other_points")
    if _missing(base) or _missing(other):
        return ""
    shown = sum(100 * r["effect"] for r in row["reasons"] if not math.isnan(r["effect"]))
    text = f"base {float(base):.1f} (a typical lead in this stage)"
    for value, label in ((shown, "from the reasons above"), (float(other), "from other factors")):
        if abs(value) >= 0.05:
            text += f" {'+' if value > 0 else _MINUS} {abs(value):.1f} {label}"
    return f'<p class="adds">Score {int(row["score"])} = {text}.</p>'


def _article(word: str) -> str:
    """``a`` or ``an`` before a number or word as it is read aloud ("an 80%", "an 8%")."""
    spoken = word.lstrip()
    return "an" if spoken[:1] in "aeiou8" or spoken.startswith(("11", "18")) else "a"


def _card(row: Mapping[str, Any], as_of: pd.Timestamp | None, horizon: Mapping[str, Any]) -> str:
    nxt = row["next_stage"]
    within = horizon.get(nxt)
    summary = (
        f"<b>Score {int(row['score'])}</b>, tier {_e(row['tier'])}: "
        f"{_article(_pct(row['p_next_stage']))} {_pct(row['p_next_stage'])} "
        f"chance of becoming {'an' if nxt[:1] in 'aeiou' else 'a'} {_e(nxt)}"
        + (f" within {int(within)} days" if isinstance(within, int | float) else "")
        + "."
    )
    if row["is_new"]:
        summary += " New since the previous run."
    elif not _missing(row["score_change"]):
        d = int(round(float(row["score_change"])))
        moved = "No change" if d == 0 else f"{'Up' if d > 0 else 'Down'} {abs(d)} points"
        was = row["previous_tier"]
        tier_moved = (
            f" (was tier {_e(was)})" if not _missing(was) and str(was) != str(row["tier"]) else ""
        )
        summary += f" {moved} since the previous run{tier_moved}."
    elif row.get("trend") == "Advanced":
        summary += " Moved to this stage since the previous run."
    trend = row.get("trend")
    if not _missing(trend) and trend in ("Improving", "Declining", "Steady"):
        summary += f" Trend: {_e(trend)}."
    changes = row.get("changes")
    moved_why = (
        f'<p class="moved"><b>What changed:</b> {_e(changes)}</p>'
        if not _missing(changes) and str(changes).strip()
        else ""
    )
    last = row.get("last_activity_at")
    if _missing(last):
        last_text = "None recorded"
    else:
        last_ts = pd.Timestamp(last)
        what = _human(row.get("last_activity_type")) or "Activity"
        ago = ""
        if as_of is not None:
            days = (as_of - last_ts).days
            ago = " (same day)" if days < 1 else f" ({days} day{'s' if days != 1 else ''} ago)"
        last_text = f"{_e(what)} · {last_ts:%Y-%m-%d}{ago}"
    facts = [
        ("Company", _e(row.get("company"))),
        ("Title", _e(row.get("job_title"))),
        ("Source", _e(_human(row.get("lead_source")))),
        ("Owner", _e(row.get("owner"))),
        ("Stage", _e(_human(row.get("stage")))),
        ("Last activity", last_text),
        ("Lead ID", _e(row.get("lead_id"))),
    ]
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts if v)
    return (
        f'<div class="card"><section><p class="summary">{summary}</p>{moved_why}<h3>Why</h3>'
        f"{_bars(row['reasons'])}{_sum_line(row)}"
        '<button type="button" class="print-one">Print this lead</button></section>'
        f'<section><h3>Key facts</h3><dl class="facts">{dl}</dl></section></div>'
    )


def _list_name(stage: str, flat: bool) -> str:
    if flat:
        return "Leads to call"
    return "Leads to qualify" if stage == "lead" else "Prospects to advance"


def _list_head(
    part: pd.DataFrame,
    stage: str,
    tiers: list[str],
    info: Mapping[str, Any],
    horizon: Mapping[str, Any],
    flat: bool,
) -> str:
    """One call list's lede and tier cards: its own rows, its own model's observed rates."""
    who, nxt = ("leads", "prospects") if stage == "lead" else ("prospects", "opportunities")
    if flat:
        nxt = "converted"
    counts = part["tier"].astype(str).value_counts()
    first = next((t for t in TIERS if counts.get(t, 0)), "A")
    within = horizon.get("prospect" if stage == "lead" else "opportunity")
    window = (
        f"within {int(within)} days"
        if isinstance(within, int | float) and not isinstance(within, bool)
        else "in the model's test period"
    )
    verb = "became" if not flat else ""
    what = f"{verb} {nxt}".strip()
    rate, low = _rate(info, first), _rate(info, "D")
    lede = f"<strong>{'Call' if stage == 'lead' else 'Advance'} tier {first} first:</strong> "
    if rate is not None:
        lede += f"{_pct(rate)} of similar {who} {what} {window}"
        lede += f", against {_pct(low)} in tier D." if low is not None and first != "D" else "."
    else:
        lede += "the model rates them the most likely to reach their next stage soon."
    if not len(part):
        lede = "No leads to call in this scores file."
    cards = []
    noun = "lead" if stage == "lead" else "prospect"
    for t in tiers:
        r = _rate(info, t)
        note = f"<b>{_pct(r)}</b> {what}" if r is not None else "&nbsp;"
        n = int(counts.get(t, 0))
        cards.append(
            f'<button type="button" class="tier" data-only="{_e(t)}" title="Show only tier {_e(t)}">'
            f'<span class="badge b{_e(t)}">{_e(t)}</span>'
            f'<span class="n">{n:,} {noun}{"s" if n != 1 else ""}</span>'
            f'<span class="rate">{note}</span></button>'
        )
    return f'<p class="lede">{lede}</p><div class="tiers">{"".join(cards)}</div>'


def build_report(
    scores: pd.DataFrame,
    *,
    previous: pd.DataFrame | None = None,
    owner: str | None = None,
    top: int | None = None,
    tier_info: Mapping[str, Any] | None = None,
    model_versions: str | None = None,
    horizon_days: Mapping[str, int] | None = None,
    page_size: int = 200,
    tier_info_by_model: Mapping[str, Mapping[str, Any]] | None = None,
    target: str | None = None,
) -> str:
    """The whole report as one self-contained HTML string.

    Parameters
    ----------
    scores : DataFrame
        The scorer's output: :func:`leadml.serve.contract.required_columns` plus, when present, ``model_version`` and
        the display columns ``name, company, job_title, lead_source, owner, last_activity_at,
        last_activity_type``.
    previous : DataFrame, optional
        An earlier run's scores (``lead_id``, ``score``, optionally ``tier``): each lead shows
        its score change (▲ +7, ▼ −3, or "new").
    owner : str, optional
        Only this rep's leads (case-insensitive); an unknown owner is an error listing the
        owners present.
    top : int, optional
        Only the ``top`` best-scored leads (after the owner filter).
    tier_info : mapping, optional
        Observed conversion per tier on the model's validation window, e.g.
        ``{"A": {"conversion_rate": 0.31, "share": 0.1}, ...}``; gives the header its
        "Call tier A first: 31% of similar leads became prospects" line.
    model_versions : str, optional
        Shown in the header; by default the distinct values of ``model_version``.
    horizon_days : mapping, optional
        The label window per target stage, e.g. ``{"prospect": 30, "opportunity": 60}``; adds
        "within 30 days" to the sentences when known.
    page_size : int
        How many matching leads the page lays out at once; a "Show more" button adds the next
        ones. Search, filters and sorting always cover every lead in the file.
    tier_info_by_model : mapping, optional
        ``tier_info`` per stage model (``{"prospect": {...}, "opportunity": {...}}``, as the
        scorer writes it). Leads are tiered by the prospect model and prospects by the
        opportunity model: the leads' list shows the first, the prospects' list the second;
        ``tier_info`` defaults to the prospect model's entry.
    target : str, optional
        Flat-mode scores: the outcome the probability is about (the file's ``leadml.target``).

    Returns
    -------
    str
        The HTML page.
    """
    if page_size < 1:
        raise ReportError(f"page_size must be a positive number of leads, got {page_size}")
    df = _prepare(scores, previous, owner, top, target)
    by_model: Mapping[str, Mapping[str, Any]] = tier_info_by_model or {}
    info: Mapping[str, Any] = (
        tier_info or by_model.get("prospect") or next(iter(by_model.values()), {})
    )
    opp_info: Mapping[str, Any] = by_model.get("opportunity") or {}
    horizon: Mapping[str, Any] = horizon_days or {}
    as_of = pd.Timestamp(df["as_of"].max()) if len(df) and df["as_of"].notna().any() else None
    tiers_present = sorted(set(df["tier"].dropna().astype(str)) - set(TIERS))
    tiers = [*TIERS, *tiers_present]
    flat = "probability" in scores.columns
    lists = [s for s in ("lead", "prospect") if (df["stage"] == s).any()] or ["lead"]
    heads = []
    for li, stage in enumerate(lists):
        part = df[df["stage"] == stage]
        heads.append(
            f'<div class="list" data-list="{stage}"{" hidden" if li else ""}>'
            + _list_head(part, stage, tiers, info if stage == "lead" else opp_info, horizon, flat)
            + "</div>"
        )
    boxes = "".join(
        f'<label class="chip"><input type="checkbox" value="{_e(t)}" checked>{_e(t)}</label>'
        for t in tiers
    )

    show_change = previous is not None or "trend" in scores.columns
    show_owner = owner is None and "owner" in df.columns and df["owner"].notna().any()
    columns: list[tuple[str | None, str, str]] = [
        ("rank", "#", "rank"),
        ("name", "Lead", ""),
        ("tier", "Tier", ""),
        ("score", "Score", "num"),
        *([("change", "Change", "num")] if show_change else []),
        ("p", "Next stage", "num"),
        ("stage", "Stage", ""),
        (None, "Top reason", "why"),
        *([("owner", "Owner", "owner")] if show_owner else []),
        (None, "", "chev"),
    ]
    headers = "".join(
        f'<th data-key="{key}" class="{cls}" aria-sort="{"ascending" if key == "rank" else "none"}">'
        f'<button type="button">{label}</button></th>'
        if key
        else f'<th class="{cls}"><span class="plain">{label}</span></th>'
        for key, label, cls in columns
    )

    rows = []
    for rec in df.to_dict("records"):
        name = rec.get("name")
        name = f"Lead {rec['lead_id']}" if _missing(name) or not str(name).strip() else name
        company = rec.get("company")
        search = " ".join(str(v) for v in (name, company) if not _missing(v)).lower()
        p = rec["p_next_stage"]
        change = rec["score_change"]
        cells = [
            f'<td class="rank">{rec["list_rank"]}</td>',
            f'<td class="lead"><div class="who" title="{_e(name)}">{_e(name)}</div>'
            f'<div class="co" title="{_e(company)}">{_e(company)}</div></td>',
            f'<td><span class="badge b{_e(rec["tier"])}">{_e(rec["tier"])}</span></td>',
            f'<td class="num score">{int(rec["score"])}</td>',
        ]
        if show_change:
            cells.append(f'<td class="num">{_change(rec)}</td>')
        meter = 0.0 if _missing(p) else min(100.0, 100 * float(p))
        cells += [
            f'<td class="num pnext"><span class="pct">{_pct(p)}</span> '
            f'<span class="to">→ {_e(rec["next_stage"])}</span>'
            f'<span class="meter"><i style="width:{meter:.1f}%"></i></span></td>',
            f'<td class="stage">{_e(_human(rec["stage"]))}</td>',
            f'<td class="why">{_top_reason(rec["reasons"])}</td>',
        ]
        if show_owner:
            cells.append(f'<td class="owner">{_e(rec.get("owner"))}</td>')
        cells.append('<td class="chev" aria-hidden="true"></td>')
        attrs = {
            "rank": rec["list_rank"],
            "score": int(rec["score"]),
            "p": "" if _missing(p) else f"{float(p):.6f}",
            "change": "" if _missing(change) else int(round(float(change))),
            "tier": rec["tier"],
            "stage": rec["stage"],
            "name": name,
            "owner": rec.get("owner") if show_owner else None,
            "search": search,
        }
        data = " ".join(f'data-{k}="{_e(v)}"' for k, v in attrs.items() if not _missing(v))
        hidden = " hidden" if rec["list_rank"] > page_size or rec["stage"] != lists[0] else ""
        rows.append(
            f'<tbody class="lead"{hidden} {data}>'
            f'<tr class="row" tabindex="0" aria-expanded="false" aria-controls="d{rec["rank"]}">'
            f"{''.join(cells)}</tr>"
            f'<tr class="detail" id="d{rec["rank"]}"><td colspan="{len(columns)}">'
            f"{_card(rec, as_of, horizon)}</td></tr></tbody>\n"
        )

    title = "Leads to call" + (f" — {owner.strip()}" if owner else "")
    versions = _model_versions(df, model_versions)
    meta = [f"Scores as of <b>{_e(_when(as_of))}</b>" if as_of is not None else "No scores"]
    if top is not None:
        meta.append(f"top {int(top)} by score")
    if versions:
        meta.append(f"models {_e(versions)}")
    if previous is not None and "as_of" in previous.columns and previous["as_of"].notna().any():
        meta.append(f"changes since {_e(_when(pd.to_datetime(previous['as_of']).max()))}")
    tier_note = ""
    if any(_rate(info, t) is not None for t in TIERS):
        tier_note = (
            " The share that became prospects is what the lead→prospect model observed per "
            "tier on its held-out test period"
        )
        if any(_rate(opp_info, t) is not None for t in TIERS):
            tier_note += (
                "; the share of prospects that became opportunities is the same for the "
                "prospect→opportunity model, which tiers the leads already in stage prospect"
            )
        tier_note += "."
    windows = [
        f"{int(v)} days to become {'an' if str(k)[:1] in 'aeiou' else 'a'} {_e(k)}"
        for k, v in horizon.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    ]
    horizon_note = f" Windows: {' and '.join(windows)}." if windows else ""
    change_note = (
        "<dt>Change</dt><dd>Score now minus score in the previous run; “new” means the lead "
        "was not scored then.</dd>\n"
        if show_change
        else ""
    )
    from leadml import __version__

    return string.Template(_asset("report.html")).substitute(
        version=_e(__version__),
        title=_e(title),
        style=_asset("report.css"),
        script=_asset("report.js"),
        meta=" · ".join(meta),
        lists="".join(heads),
        list_options="".join(
            f'<option value="{st}"{" selected" if i == 0 else ""}>'
            f"{_list_name(st, flat)} ({int((df['stage'] == st).sum()):,})</option>"
            for i, st in enumerate(lists)
        ),
        tier_boxes=boxes,
        n=f"{len(df):,}",
        n_shown=f"{min(len(df), page_size):,}",
        page_size=page_size,
        more_hidden="" if len(df) > page_size else " hidden",
        headers=headers,
        rows="".join(rows),
        ncols=len(columns),
        empty_hidden=" hidden" if len(df) else "",
        tier_note=tier_note,
        horizon_note=horizon_note,
        change_note=change_note,
        as_of=_e(_when(as_of)) or "–",
    )


# --- writing ---------------------------------------------------------------------------------


def write_report(
    scores_path: str | Path,
    out_path: str | Path,
    *,
    previous_path: str | Path | None = None,
    owner: str | None = None,
    top: int | None = None,
    fmt: str = "html",
    overwrite: bool = False,
    n_reasons: int = 5,
) -> Path:
    """Read a scores file and write the HTML report (or the CRM CSV) atomically.

    The output is written to a temporary file in the target's directory and renamed into place,
    so readers never see half a file and a failed run leaves nothing behind. Tier meaning, model
    versions and horizons come from the Parquet file's ``leadml.*`` metadata when present.

    Raises
    ------
    ReportExistsError
        ``out_path`` exists and ``overwrite`` is false.
    ReportError
        Unknown format, a format that contradicts the file extension, a scores file that is
        missing or lacks required columns, or an owner with no leads.
    """
    if fmt not in ("html", "csv"):
        raise ReportError(f"format must be 'html' or 'csv', got {fmt!r}")
    out = Path(out_path)
    suffix = out.suffix.lower()
    if (fmt == "html" and suffix == ".csv") or (fmt == "csv" and suffix in (".html", ".htm")):
        other = "csv" if fmt == "html" else "html"
        raise ReportError(
            f"{str(out)!r} ends in {suffix} but the format is {fmt}; pass --format {other} "
            f"or an output name ending in .{fmt}"
        )
    check_target(out, True, inputs=[scores_path, previous_path])  # never an input; exists below
    if out.exists() and not overwrite:
        raise ReportExistsError(*exists_error(out).args)
    scores, meta = load_scores(scores_path)
    previous = load_scores(previous_path)[0] if previous_path is not None else None
    if fmt == "csv":
        target = meta.get("target") or None
        frame = _crm_frame(_prepare(scores, previous, owner, top, target), n_reasons)
        text = frame.to_csv(index=False, lineterminator="\n")
    else:
        tier_info = meta.get("tier_info")
        by_model = meta.get("tier_info_by_model")
        horizon = meta.get("horizon_days")
        versions = meta.get("model_versions")
        text = build_report(
            scores,
            previous=previous,
            owner=owner,
            top=top,
            tier_info=tier_info if isinstance(tier_info, dict) else None,
            model_versions=versions if isinstance(versions, str) else None,
            horizon_days=horizon if isinstance(horizon, dict) else None,
            tier_info_by_model=by_model if isinstance(by_model, dict) else None,
            target=str(meta.get("target") or "") or None,
        )
    _write_atomic(out, text)
    return out


def _write_atomic(out: Path, text: str) -> None:
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
