"""The rep's view: one self-contained HTML page (no network) and a CRM-ready CSV.

The page answers "whom do I call first, and why": leads ranked by score with tier badges and the
probability of their next stage, sortable, filterable by tier and stage, searchable by name or
company; a card per lead with what moved since the previous run, the reasons as bars (green
raises the score, red lowers it) and the facts a rep needs. Every lead field is HTML-escaped, and
the small inline script only reads data that is already in the page.

CRM export columns, in this order (stable; CRM import mappings depend on it):
``lead_id, name, company, owner, stage, score, tier, p_next_stage, score_change, reason_1 ..
reason_N, as_of, model_version``.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CRM_COLUMNS", "ReportError", "build_crm_export", "build_report", "write_report"]

REQUIRED = ("lead_id", "as_of", "stage", "p_prospect", "p_opportunity", "score", "tier", "reasons")
CRM_COLUMNS = (
    "lead_id",
    "name",
    "company",
    "owner",
    "stage",
    "score",
    "tier",
    "p_next_stage",
    "score_change",
)


class ReportError(ValueError):
    """The scores file cannot be turned into a report."""


def _read(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        raise ReportError(f"scores file {str(p)!r} does not exist; run `leadml score` first")
    if p.suffix.lower() == ".csv":
        raise ReportError(
            f"{str(p)!r}: the report reads the Parquet output of `leadml score` (it keeps reasons as structs)"
        )
    import pyarrow.parquet as pq

    meta = {
        k.decode(): v.decode()
        for k, v in (pq.read_schema(p).metadata or {}).items()
        if k.startswith(b"leadml.")
    }
    frame = pd.read_parquet(p)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ReportError(
            f"scores file {str(p)!r} is missing column(s) {', '.join(missing)}; expected the output of `leadml score`"
        )
    return frame, meta


def _next_p(df: pd.DataFrame) -> np.ndarray:
    return np.where(df["stage"] == "lead", df["p_prospect"], df["p_opportunity"])


def _reasons(value: Any) -> list[dict[str, Any]]:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return []
    return [dict(r) for r in list(value)]


def _prepare(
    scores: pd.DataFrame, previous: pd.DataFrame | None, owner: str | None, top: int | None
) -> pd.DataFrame:
    df = scores.copy()
    if owner is not None:
        if "owner" not in df.columns:
            raise ReportError("--owner given but the scores have no owner column")
        df = df.loc[df["owner"].astype("string") == owner]
    df = df.sort_values(["score", "lead_id"], ascending=[False, True], kind="stable")
    if top is not None:
        df = df.head(top)
    df = df.reset_index(drop=True)
    df["p_next_stage"] = _next_p(df)
    if previous is not None:
        prev = previous.drop_duplicates("lead_id").set_index("lead_id")["score"]
        df["score_change"] = df["score"] - df["lead_id"].map(prev)
        df["is_new"] = ~df["lead_id"].isin(prev.index)
    else:
        df["score_change"] = np.nan
        df["is_new"] = False
    return df


def build_crm_export(
    scores: pd.DataFrame, n_reasons: int = 5, previous: pd.DataFrame | None = None
) -> pd.DataFrame:
    """One row per lead for CRM import (column order: see the module docstring)."""
    df = _prepare(scores, previous, None, None)
    out = pd.DataFrame({c: df[c] if c in df.columns else "" for c in CRM_COLUMNS})
    out["p_next_stage"] = df["p_next_stage"].round(4)
    texts = [[f"{r['direction']} {r['text']}" for r in _reasons(v)] for v in df["reasons"]]
    for k in range(n_reasons):
        out[f"reason_{k + 1}"] = [t[k] if k < len(t) else "" for t in texts]
    out["as_of"] = df["as_of"].astype(str)
    out["model_version"] = df.get("model_version", "")
    return out


def _e(v: Any) -> str:
    if (
        v is None
        or (isinstance(v, float) and np.isnan(v))
        or v is pd.NaT
        or (not isinstance(v, str | list) and pd.isna(v))
    ):
        return ""
    return html.escape(str(v), quote=True)


def _card(row: pd.Series, i: int) -> str:
    rs = _reasons(row["reasons"])
    scale = max([abs(r["effect"]) for r in rs] or [1e-9])
    bars = "".join(
        f'<li class="{"pos" if r["direction"] == "+" else "neg"}"><span class="bar" style="width:{max(4, int(100 * abs(r["effect"]) / scale))}%"></span>'
        f'<span class="txt">{_e(r["text"])}</span><span class="eff">{100 * r["effect"]:+.1f} pts</span></li>'
        for r in rs
    )
    last = row.get("last_activity_at")
    last_txt = (
        "no activity yet"
        if last is None or pd.isna(last)
        else f"{_e(str(row.get('last_activity_type') or 'activity').replace('_', ' '))} on {pd.Timestamp(last):%Y-%m-%d}"
    )
    facts = "".join(
        f"<dt>{k}</dt><dd>{v}</dd>"
        for k, v in (
            ("Company", _e(row.get("company"))),
            ("Title", _e(row.get("job_title"))),
            ("Source", _e(str(row.get("lead_source") or "").replace("_", " "))),
            ("Owner", _e(row.get("owner"))),
            ("Last activity", last_txt),
        )
    )
    return f'<div class="card" id="card-{i}"><ol class="reasons">{bars or "<li>No strong reasons</li>"}</ol><dl>{facts}</dl></div>'


def _delta(row: pd.Series) -> str:
    if row["is_new"]:
        return '<span class="new">new</span>'
    d = row["score_change"]
    if pd.isna(d):
        return ""
    d = int(d)
    if d > 0:
        return f'<span class="up">▲ +{d}</span>'
    if d < 0:
        return f'<span class="down">▼ −{-d}</span>'
    return '<span class="flat">=</span>'


def build_report(
    scores: pd.DataFrame,
    *,
    previous: pd.DataFrame | None = None,
    owner: str | None = None,
    top: int | None = None,
    tier_info: dict[str, Any] | None = None,
    model_versions: str = "",
) -> str:
    """The whole report as one HTML string."""
    df = _prepare(scores, previous, owner, top)
    as_of = str(df["as_of"].iloc[0])[:19] if len(df) else ""
    counts = df["tier"].value_counts().reindex(list("ABCD"), fill_value=0)
    info = tier_info or {}
    a_rate = (info.get("A") or {}).get("conversion_rate")
    lede = (
        f"Call tier A first: {100 * a_rate:.0f}% of similar leads moved to the next stage in the model's test window."
        if isinstance(a_rate, int | float)
        else "Call tier A first: they are the most likely to move to the next stage."
    )
    tiers_html = "".join(
        f'<div class="tier t{t}"><b>{t}</b> {counts[t]} leads'
        + (
            f"<small>{100 * info[t]['conversion_rate']:.1f}% converted</small>"
            if isinstance((info.get(t) or {}).get("conversion_rate"), int | float)
            else ""
        )
        + "</div>"
        for t in "ABCD"
    )
    rows = []
    for i, r in df.iterrows():
        positives = [x for x in _reasons(r["reasons"]) if x["direction"] == "+"]
        # The summary column favours something the rep can act on over the stage itself.
        actionable = [
            x for x in positives if x["group"] not in ("stage_history", "tenure", "engagement")
        ]
        first_reason = (actionable or positives or [{"text": ""}])[0]["text"]
        p = r["p_next_stage"]
        nxt = "prospect" if r["stage"] == "lead" else "opportunity"
        rows.append(
            f'<tbody class="lead" data-rank="{i + 1}" data-score="{int(r["score"])}" data-p="{0 if pd.isna(p) else p:.6f}" '
            f'data-tier="{_e(r["tier"])}" data-stage="{_e(r["stage"])}" data-name="{_e(r.get("name"))}" data-company="{_e(r.get("company"))}">'
            f'<tr class="row" tabindex="0"><td class="rank">{i + 1}</td>'
            f'<td><span class="badge b{_e(r["tier"])}">{_e(r["tier"])}</span></td>'
            f'<td class="num score">{int(r["score"])}</td><td class="num">{_delta(r)}</td>'
            f'<td><div class="who">{_e(r.get("name"))}</div><div class="co">{_e(r.get("company"))}</div></td>'
            f'<td>{_e(r["stage"])}</td><td class="num">{"" if pd.isna(p) else f"{100 * p:.0f}%"} <small>→ {nxt}</small></td>'
            f'<td class="why">{_e(first_reason)}</td></tr>'
            f'<tr class="detail"><td colspan="8">{_card(r, i)}</td></tr></tbody>'
        )
    title = "Leads to call" + (f" — {html.escape(owner)}" if owner else "")
    return _TEMPLATE.format(
        title=title,
        as_of=_e(as_of),
        models=_e(
            model_versions
            or ", ".join(
                sorted(set(df.get("model_version", pd.Series(dtype=str)).dropna().astype(str)))
            )
        ),
        n=len(df),
        lede=_e(lede),
        tiers=tiers_html,
        rows="".join(rows),
    )


def write_report(
    scores_path: str | Path,
    out_path: str | Path,
    *,
    previous_path: str | Path | None = None,
    owner: str | None = None,
    top: int | None = None,
    fmt: str = "html",
    overwrite: bool = False,
) -> Path:
    """Read a Parquet scores file and write the HTML report (or CRM CSV) atomically."""
    out = Path(out_path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{str(out)!r} already exists; pass --overwrite to replace it")
    scores, meta = _read(scores_path)
    previous = _read(previous_path)[0] if previous_path else None
    if fmt == "csv":
        text = build_crm_export(
            _prepare(scores, None, owner, top).drop(
                columns=["p_next_stage", "score_change", "is_new"]
            ),
            previous=previous,
        ).to_csv(index=False)
    else:
        text = build_report(
            scores,
            previous=previous,
            owner=owner,
            top=top,
            tier_info=json.loads(meta.get("leadml.tier_info", "{}")),
            model_versions=meta.get("leadml.model_versions", ""),
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out


_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
:root {{ --ink:#1d2433; --muted:#667085; --line:#e4e7ec; --pos:#1a7f37; --neg:#c62828; }}
* {{ box-sizing:border-box; }}
body {{ font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif; color:var(--ink); margin:0; background:#f7f8fa; }}
header {{ background:#fff; border-bottom:1px solid var(--line); padding:16px 24px; }}
h1 {{ font-size:20px; margin:0 0 4px; }}
.meta {{ color:var(--muted); font-size:12px; }}
.lede {{ margin:10px 0 0; font-size:15px; }}
.tiers {{ display:flex; gap:8px; margin-top:10px; flex-wrap:wrap; }}
.tier {{ border:1px solid var(--line); border-radius:8px; padding:6px 10px; background:#fff; }}
.tier small {{ display:block; color:var(--muted); }}
.controls {{ display:flex; gap:12px; padding:12px 24px; align-items:center; flex-wrap:wrap; }}
.controls input[type=search] {{ padding:6px 10px; border:1px solid var(--line); border-radius:6px; min-width:240px; }}
.controls label {{ color:var(--muted); }}
main {{ padding:0 24px 24px; }}
table {{ width:100%; border-collapse:collapse; background:#fff; border:1px solid var(--line); }}
th {{ text-align:left; font-size:12px; color:var(--muted); padding:8px; border-bottom:1px solid var(--line); cursor:pointer; user-select:none; white-space:nowrap; }}
th[data-dir=asc]::after {{ content:" ▲"; }} th[data-dir=desc]::after {{ content:" ▼"; }}
td {{ padding:8px; border-bottom:1px solid var(--line); vertical-align:top; }}
tr.row {{ cursor:pointer; }} tr.row:hover {{ background:#f2f6ff; }}
.num {{ text-align:right; white-space:nowrap; }}
.score {{ font-weight:600; font-size:16px; }}
.who {{ font-weight:600; }} .co {{ color:var(--muted); font-size:12px; }}
.why {{ color:#344054; }}
.badge {{ display:inline-block; width:24px; height:24px; line-height:24px; text-align:center; border-radius:6px; color:#fff; font-weight:700; }}
.bA {{ background:#1a7f37; }} .bB {{ background:#2f6fdb; }} .bC {{ background:#b7791f; }} .bD {{ background:#98a2b3; }}
.up {{ color:var(--pos); }} .down {{ color:var(--neg); }} .new {{ color:#2f6fdb; font-size:12px; }} .flat {{ color:var(--muted); }}
tr.detail {{ display:none; }} tbody.open tr.detail {{ display:table-row; }}
.card {{ display:grid; grid-template-columns: 2fr 1fr; gap:24px; padding:4px 8px 8px; }}
.reasons {{ list-style:none; margin:0; padding:0; }}
.reasons li {{ position:relative; padding:4px 90px 4px 8px; margin:3px 0; }}
.reasons .bar {{ position:absolute; left:0; top:0; bottom:0; opacity:.18; border-radius:4px; }}
.reasons .pos .bar {{ background:var(--pos); }} .reasons .neg .bar {{ background:var(--neg); }}
.reasons .txt {{ position:relative; }}
.reasons .eff {{ position:absolute; right:8px; top:4px; font-variant-numeric:tabular-nums; }}
.reasons .pos .eff {{ color:var(--pos); }} .reasons .neg .eff {{ color:var(--neg); }}
dl {{ margin:0; display:grid; grid-template-columns:auto 1fr; gap:2px 12px; font-size:13px; }}
dt {{ color:var(--muted); }} dd {{ margin:0; }}
.hidden {{ display:none; }}
@media print {{ .controls {{ display:none; }} tr.detail {{ display:table-row; }} body {{ background:#fff; }} tbody {{ break-inside:avoid; }} }}
</style></head>
<body>
<header>
<h1>{title}</h1>
<div class="meta">Scores as of {as_of} · models {models} · <span id="count">{n}</span> of {n} leads shown</div>
<p class="lede">{lede} Click a lead to see why.</p>
<div class="tiers">{tiers}</div>
</header>
<div class="controls">
<input type="search" id="q" placeholder="Search name or company" aria-label="Search name or company">
<label>Tier <select id="tier"><option value="">all</option><option>A</option><option>B</option><option>C</option><option>D</option></select></label>
<label>Stage <select id="stage"><option value="">all</option><option>lead</option><option>prospect</option></select></label>
</div>
<main><table id="leads">
<thead><tr><th data-key="rank">#</th><th data-key="tier">Tier</th><th data-key="score" class="num">Score</th><th class="num">Change</th><th data-key="name">Lead</th><th data-key="stage">Stage</th><th data-key="p" class="num">Next stage</th><th>Top reason</th></tr></thead>
{rows}
</table></main>
<script>
(function () {{
  var table = document.getElementById('leads');
  var bodies = Array.prototype.slice.call(table.querySelectorAll('tbody.lead'));
  var q = document.getElementById('q'), tier = document.getElementById('tier'), stage = document.getElementById('stage');
  function apply() {{
    var text = q.value.trim().toLowerCase(), t = tier.value, s = stage.value, shown = 0;
    bodies.forEach(function (b) {{
      var hay = (b.dataset.name + ' ' + b.dataset.company).toLowerCase();
      var ok = (!text || hay.indexOf(text) >= 0) && (!t || b.dataset.tier === t) && (!s || b.dataset.stage === s);
      b.classList.toggle('hidden', !ok); if (ok) shown++;
    }});
    document.getElementById('count').textContent = shown;
  }}
  [q, tier, stage].forEach(function (el) {{ el.addEventListener('input', apply); el.addEventListener('change', apply); }});
  table.querySelectorAll('th[data-key]').forEach(function (th) {{
    th.addEventListener('click', function () {{
      var key = th.dataset.key, dir = th.dataset.dir === 'desc' ? 'asc' : 'desc';
      if (!th.dataset.dir && (key === 'rank' || key === 'name' || key === 'stage' || key === 'tier')) dir = 'asc';
      table.querySelectorAll('th').forEach(function (o) {{ delete o.dataset.dir; }});
      th.dataset.dir = dir;
      var num = key === 'rank' || key === 'score' || key === 'p';
      bodies.sort(function (a, b) {{
        var x = a.dataset[key], y = b.dataset[key];
        var c = num ? parseFloat(x) - parseFloat(y) : x.localeCompare(y);
        if (c === 0) c = parseFloat(a.dataset.rank) - parseFloat(b.dataset.rank);
        return dir === 'asc' ? c : -c;
      }});
      bodies.forEach(function (b) {{ table.appendChild(b); }});
    }});
  }});
  bodies.forEach(function (b) {{
    var row = b.querySelector('tr.row');
    function toggle() {{ b.classList.toggle('open'); }}
    row.addEventListener('click', toggle);
    row.addEventListener('keydown', function (e) {{ if (e.key === 'Enter') toggle(); }});
  }});
}})();
</script>
</body></html>
"""
