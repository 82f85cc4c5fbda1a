"""``leadml monitor``: hold the scores in a history (:mod:`leadml.serve.history`) to what happened.

For every run in the history and every model that scored it:

**Matured** (``as_of + gap + horizon`` is at or before the data's end): each scored lead gets its
realised label by the training rule (:func:`leadml.data.timeline.build_labels`), and the run's
ROC AUC (with a Hanley-McNeil 95% interval), PR AUC, log loss, ECE, a reliability table and the
conversion per tier (with Jeffreys 95% intervals) are set beside the model's backtest at training
(mean over the folds with its 95% interval, and each tier's out-of-fold conversion by the
shipped thresholds on the model's own call list, the rate the report shows reps).

**Pending**: the conversion the calibrated probabilities imply over the horizon (their mean),
beside what has arrived so far (the share already promoted, after so many of the horizon's days).

**Drift** (every run): each feature's PSI between the run's profile and the model's training
reference (:mod:`leadml.model.drift`), the worst feature per reason group, and the score
distribution's PSI and KS statistic.

Alerts (thresholds in the ``monitor`` config section) are raised by the **newest** run only, so
a problem that has been fixed stops alerting:

- ``drift``: a feature (or the score distribution) with PSI above ``psi_alert`` (0.25) in the
  newest run that scored at least ``min_rows`` (200) leads with that model; features above
  ``psi_warn`` (0.1) are listed as warnings;
- ``performance``: the newest matured run's ROC AUC upper bound is below the backtest's lower
  bound minus ``auc_margin`` (with at least ``min_rows`` rows and ``min_positives`` conversions);
- ``calibration``: in that run the mean predicted probability lies outside the Jeffreys interval
  of the realised conversion and differs from it by more than a quarter.

``leadml monitor`` exits with :data:`ALERT_EXIT_CODE` (3) when any alert fires, 0 otherwise (and 2
on bad input, like every command).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import LeadMLConfig
from leadml.data.contracts import CRMData
from leadml.data.timeline import build_labels, label_name
from leadml.funnel import SOURCE_STAGE, TIERS
from leadml.model.drift import jeffreys, psi
from leadml.model.evaluation import calibration_table, evaluate
from leadml.serve.contract import jsonable
from leadml.serve.history import HistoryRun, list_runs

__all__ = ["ALERT_EXIT_CODE", "Alert", "MonitorResult", "monitor", "write_monitor_page"]

#: ``leadml monitor``'s exit code when an alert fires.
ALERT_EXIT_CODE = 3


@dataclass(frozen=True)
class Alert:
    """One alert: its kind (drift, performance, calibration), the model and what fired."""

    kind: str
    transition: str
    as_of: str
    message: str
    features: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "transition": self.transition,
            "as_of": self.as_of,
            "message": self.message,
            "features": list(self.features),
        }


@dataclass
class MonitorResult:
    """Per run and model: status, realised metrics or pending outcome, drift; then alerts."""

    rows: list[dict[str, Any]]
    alerts: list[Alert] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    data_end: str = ""

    @property
    def alert(self) -> bool:
        return bool(self.alerts)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(
            {
                "data_end": self.data_end,
                "alert": self.alert,
                "alerts": [a.to_dict() for a in self.alerts],
                "warnings": self.warnings,
                "runs": self.rows,
            }
        )

    def table(self) -> str:
        """One line per run and model, then the alerts: what ``leadml monitor`` prints."""
        head = (
            f"{'as_of':<19} {'model':<11} {'status':<8} {'leads':>6} {'conv':>6} "
            f"{'p_mean':>6} {'ROC AUC':>16} {'backtest':>16} {'ECE':>5} {'PSI max':>22}"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            roc = r.get("roc_auc")
            roc_txt = (
                f"{roc:.3f} [{r['roc_auc_lo']:.2f},{r['roc_auc_hi']:.2f}]" if _finite(roc) else "-"
            )
            bt = r.get("backtest", {})
            bt_txt = (
                f"{bt['roc_auc']:.3f} [{bt['roc_auc_lo']:.2f},{bt['roc_auc_hi']:.2f}]"
                if _finite(bt.get("roc_auc")) and _finite(bt.get("roc_auc_lo"))
                else "-"
            )
            conv = r.get("conversion") if r["status"] == "matured" else r.get("arrived")
            drift = r.get("drift") or {}
            worst = drift.get("worst") or []
            psi_txt = f"{worst[0]['psi']:.2f} {worst[0]['feature'][:17]}" if worst else "-"
            lines.append(
                f"{r['as_of'][:19]:<19} {r['transition']:<11} {r['status']:<8} {r['rows']:>6} "
                f"{_pct(conv):>6} {_pct(r.get('p_mean')):>6} {roc_txt:>16} {bt_txt:>16} "
                f"{_num(r.get('ece'), 3):>5} {psi_txt:>22}"
            )
        lines.append("")
        for w in self.warnings:
            lines.append(f"warning: {w}")
        if self.alerts:
            lines += [
                f"ALERT {a.kind} ({a.transition}, {a.as_of[:10]}): {a.message}" for a in self.alerts
            ]
        else:
            lines.append("no alerts")
        return "\n".join(lines)


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and math.isfinite(v)


def _pct(v: Any) -> str:
    return f"{100 * v:.1f}%" if _finite(v) else "-"


def _num(v: Any, digits: int) -> str:
    return f"{v:.{digits}f}" if _finite(v) else "-"


def _auc_interval(auc: float, n_pos: int, n_neg: int) -> tuple[float, float]:
    """Hanley & McNeil (1982) 95% interval of a ROC AUC."""
    if not math.isfinite(auc) or n_pos == 0 or n_neg == 0:
        return (math.nan, math.nan)
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc * auc) + (n_neg - 1) * (q2 - auc * auc)) / (
        n_pos * n_neg
    )
    se = math.sqrt(max(var, 0.0))
    return (max(0.0, auc - 1.96 * se), min(1.0, auc + 1.96 * se))


def _drift(entry: Mapping[str, Any], config: LeadMLConfig) -> dict[str, Any] | None:
    ref, prof = entry.get("reference"), entry.get("profile")
    if not ref or not prof:
        return None
    groups = entry.get("groups", {})
    per_feature = []
    for name, counts in prof.get("features", {}).items():
        r = ref["features"].get(name)
        if r is None:
            continue
        value = psi(r["shares"], counts)
        if math.isfinite(value):
            per_feature.append(
                {"feature": name, "group": groups.get(name, name), "psi": round(value, 4)}
            )
    per_feature.sort(key=lambda d: -d["psi"])
    by_group: dict[str, dict[str, Any]] = {}
    for d in per_feature:  # sorted, so the first feature seen is the group's worst
        by_group.setdefault(d["group"], d)
    out: dict[str, Any] = {
        "rows": int(prof.get("rows", 0)),
        "worst": per_feature[:10],
        "groups": [
            {"group": g, "psi": d["psi"], "feature": d["feature"]} for g, d in by_group.items()
        ],
        "alert_features": [
            d["feature"] for d in per_feature if d["psi"] > config.monitor.psi_alert
        ],
        "warn_features": [
            d["feature"]
            for d in per_feature
            if config.monitor.psi_warn < d["psi"] <= config.monitor.psi_alert
        ],
    }
    if "score" in prof and "score" in ref:
        out["score_psi"] = round(psi(ref["score"]["shares"], prof["score"]), 4)
        out["score_ks"] = round(float(prof.get("score_ks", math.nan)), 4)
        out["score_mean"] = prof.get("score_mean")
        out["reference_score_mean"] = ref["score"].get("mean")
    return out


def _outcomes(
    run: HistoryRun, scores: pd.DataFrame, t: str, entry: Mapping[str, Any], data: CRMData
) -> dict[str, Any]:
    """Labels for this model's rows in a run, matured or so far."""
    col = f"p_{t}"
    rows = scores.loc[scores[col].notna()] if col in scores.columns else scores.iloc[:0]
    c = data.columns
    known = pd.Index(data.leads[c.lead_id].astype(str))
    ids = rows["lead_id"].astype(str)
    present = ids.isin(known).to_numpy()
    rows = rows.loc[present]
    horizon = int(entry.get("horizon_days") or 30)
    gap = int(entry.get("gap_days") or 0)
    lead_ids = data.leads[c.lead_id].to_numpy()[known.get_indexer(ids[present])]
    points = pd.DataFrame({c.lead_id: lead_ids, "as_of": run.as_of})
    closes = run.as_of + pd.Timedelta(days=gap + horizon)
    matured = closes <= data.end
    # Pending runs: what has arrived so far, by the same rule over a window cut at the data end.
    so_far = max(0, int((data.end - run.as_of - pd.Timedelta(days=gap)).days))
    labels = build_labels(
        data,
        points,
        t,
        horizon_days=horizon if matured else max(1, so_far),
        gap_days=gap,
        data_end=data.end if matured else data.end + pd.Timedelta(days=horizon),
    )
    y = labels[label_name(t)].to_numpy(dtype="float64")
    return {
        "rows": rows,
        "y": y,
        "p": rows[col].to_numpy(dtype="float64"),
        "matured": matured,
        "missing_leads": int((~present).sum()),
        "elapsed_days": min(horizon, so_far),
        "horizon_days": horizon,
    }


def _tiers(
    rows: pd.DataFrame, y: np.ndarray, t: str, entry: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Realised conversion per tier on this model's own call list (rows whose tier it set),
    beside the tier's out-of-fold conversion at training (the rate the report shows reps)."""
    info = entry.get("tier_info") or {}
    bt = entry.get("metrics") or {}
    if "stage" not in rows.columns:
        return []
    own = (rows["stage"].astype(str) == SOURCE_STAGE[t]).to_numpy()
    out = []
    for tier in TIERS:
        m = own & (rows["tier"].astype(str) == tier).to_numpy()
        n, k = int(m.sum()), int(np.nansum(y[m]))
        lo, hi = jeffreys(k, n)
        out.append(
            {
                "tier": tier,
                "rows": n,
                "conversions": k,
                "conversion": k / n if n else math.nan,
                "lo": lo,
                "hi": hi,
                "backtest": (info.get(tier) or {}).get(
                    "conversion_rate", bt.get(f"conversion_tier_{tier}", math.nan)
                ),
            }
        )
    return out


def monitor(
    history: str | Path, data: CRMData, config: LeadMLConfig | None = None
) -> MonitorResult:
    """Every run of ``history`` against ``data`` (module docs)."""
    cfg = config or LeadMLConfig()
    mc = cfg.monitor
    runs = list_runs(history)
    if not runs:
        raise FileNotFoundError(
            f"--history {str(history)!r} holds no scoring runs; run `leadml score --history "
            f"{history}` first"
        )
    result = MonitorResult(rows=[], data_end=str(data.end))
    future = [r for r in runs if r.as_of > data.end]
    if future:
        result.warnings.append(
            f"{len(future)} run(s) are dated after the data's end ({data.end}), e.g. "
            f"{future[0].as_of}; is --data an older export?"
        )
    newest_matured: dict[str, dict[str, Any]] = {}
    newest_row: dict[str, dict[str, Any]] = {}
    for run in runs:
        scores = run.scores()
        for t, entry in run.info.get("models", {}).items():
            o = _outcomes(run, scores, t, entry, data)
            bt = entry.get("metrics") or {}
            row: dict[str, Any] = {
                "as_of": run.as_of.isoformat(),
                "transition": t,
                "model_version": entry.get("model_version", ""),
                "status": "matured" if o["matured"] else "pending",
                "rows": len(o["p"]),
                "p_mean": float(np.mean(o["p"])) if len(o["p"]) else math.nan,
                "horizon_days": o["horizon_days"],
                "backtest": {
                    k: bt.get(k, math.nan)
                    for k in ("roc_auc", "roc_auc_lo", "roc_auc_hi", "pr_auc", "ece", "ece_pooled")
                },
            }
            if o["missing_leads"]:
                result.warnings.append(
                    f"{run.as_of.date()} {t}: {o['missing_leads']} scored lead(s) are no longer "
                    "in the leads table; left out"
                )
            if o["matured"]:
                y, p = o["y"], o["p"]
                m = evaluate(y, p) if len(y) else {}
                n_pos = int(np.nansum(y))
                lo, hi = _auc_interval(m.get("roc_auc", math.nan), n_pos, len(y) - n_pos)
                row.update(
                    conversion=float(np.mean(y)) if len(y) else math.nan,
                    conversions=n_pos,
                    roc_auc=m.get("roc_auc", math.nan),
                    roc_auc_lo=lo,
                    roc_auc_hi=hi,
                    pr_auc=m.get("pr_auc", math.nan),
                    log_loss=m.get("log_loss", math.nan),
                    ece=m.get("ece", math.nan),
                    reliability=(
                        calibration_table(y, p).reset_index().to_dict("records") if len(y) else []
                    ),
                    tiers=_tiers(o["rows"], y, t, entry),
                )
                newest_matured[t] = row
            else:
                row.update(
                    arrived=float(np.mean(o["y"])) if len(o["y"]) else math.nan,
                    elapsed_days=o["elapsed_days"],
                )
            drift = _drift(entry, cfg)
            if drift is not None:
                row["drift"] = drift
            newest_row[t] = row
            result.rows.append(row)
    newest = runs[-1].as_of.isoformat()
    for t in sorted(newest_row):
        row = newest_row[t]
        if row["as_of"] != newest:
            pass  # this model did not score the newest run: nothing current to judge
        elif "drift" not in row:
            result.warnings.append(
                f"{t}: the newest run has no drift profile (a model trained before drift "
                "references were stored); retrain to monitor drift"
            )
        else:
            _drift_alerts(row, t, mc, result)
        if t in newest_matured:
            _outcome_alerts(newest_matured[t], t, mc, result)
    return result


def _drift_alerts(row: dict[str, Any], t: str, mc: Any, result: MonitorResult) -> None:
    d = row["drift"]
    if d["rows"] < mc.min_rows:
        result.warnings.append(
            f"{t} {row['as_of'][:10]}: drift not judged on {d['rows']} leads "
            f"(monitor.min_rows={mc.min_rows})"
        )
        return
    feats = tuple(d["alert_features"])
    if feats:
        worst = ", ".join(
            f"{w['feature']} (PSI {w['psi']:.2f})" for w in d["worst"] if w["feature"] in feats
        )
        groups = sorted({w["group"] for w in d["worst"] if w["feature"] in feats})
        result.alerts.append(
            Alert(
                "drift",
                t,
                row["as_of"],
                f"inputs moved away from the training data: {worst}"
                + (f" (reason groups: {', '.join(groups)})" if groups else ""),
                feats,
            )
        )
    if d.get("warn_features"):
        result.warnings.append(
            f"{t} {row['as_of'][:10]}: inputs shifting (PSI {mc.psi_warn}-{mc.psi_alert}): "
            + ", ".join(d["warn_features"][:8])
        )
    s = d.get("score_psi")
    if _finite(s) and s > mc.psi_alert:
        result.alerts.append(
            Alert(
                "drift",
                t,
                row["as_of"],
                f"the score distribution moved (PSI {s:.2f}, KS {d.get('score_ks', math.nan):.2f}; "
                f"mean probability {_pct(d.get('score_mean'))} vs {_pct(d.get('reference_score_mean'))} "
                "at training)",
                ("score",),
            )
        )


def _outcome_alerts(row: dict[str, Any], t: str, mc: Any, result: MonitorResult) -> None:
    n, k = row["rows"], row.get("conversions", 0)
    if n < mc.min_rows or k < mc.min_positives:
        result.warnings.append(
            f"{t} {row['as_of'][:10]}: outcomes not judged on {n} leads with {k} conversions "
            f"(monitor.min_rows={mc.min_rows}, min_positives={mc.min_positives})"
        )
        return
    bt = row["backtest"]
    if _finite(row.get("roc_auc_hi")) and _finite(bt.get("roc_auc_lo")):
        if row["roc_auc_hi"] < bt["roc_auc_lo"] - mc.auc_margin:
            result.alerts.append(
                Alert(
                    "performance",
                    t,
                    row["as_of"],
                    f"realised ROC AUC {row['roc_auc']:.3f} [{row['roc_auc_lo']:.3f}, "
                    f"{row['roc_auc_hi']:.3f}] is below the backtest's {bt['roc_auc']:.3f} "
                    f"[{bt['roc_auc_lo']:.3f}, {bt['roc_auc_hi']:.3f}]",
                )
            )
    lo, hi = jeffreys(k, n)
    p_mean, rate = row["p_mean"], row["conversion"]
    if not lo <= p_mean <= hi and abs(p_mean - rate) > 0.25 * max(rate, p_mean):
        result.alerts.append(
            Alert(
                "calibration",
                t,
                row["as_of"],
                f"the scores implied {_pct(p_mean)} conversion, {_pct(rate)} happened "
                f"(95% interval {_pct(lo)}-{_pct(hi)})",
            )
        )


# --- the page --------------------------------------------------------------------------------


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plots(result: MonitorResult) -> list[tuple[str, str]]:
    """(caption, data URI) per plot: realised vs backtest ROC AUC per run, reliability and
    tiers of the newest matured run, PSI of the newest run's reason groups, per model."""
    from matplotlib.figure import Figure

    out = []
    for t in dict.fromkeys(r["transition"] for r in result.rows):
        rows = [r for r in result.rows if r["transition"] == t]
        matured = [r for r in rows if r["status"] == "matured"]
        if matured:
            fig = Figure(figsize=(5.2, 3.0))
            ax = fig.subplots()
            when = [pd.Timestamp(r["as_of"]) for r in matured]
            ax.plot(
                when,
                [r.get("roc_auc", math.nan) for r in matured],
                marker="o",
                label="realised ROC AUC",
            )
            bt = matured[-1]["backtest"]
            if _finite(bt.get("roc_auc_lo")) and _finite(bt.get("roc_auc_hi")):
                ax.axhspan(
                    bt["roc_auc_lo"], min(1.0, bt["roc_auc_hi"]), alpha=0.2, label="backtest 95%"
                )
            ax.set(title=f"{t}: ROC AUC per matured run", ylim=(0.4, 1.0))
            ax.legend(fontsize=7)
            fig.autofmt_xdate()
            fig.tight_layout()
            out.append((f"{t}: realised ROC AUC per matured run, against the backtest", _png(fig)))
        if matured:
            r = matured[-1]
            fig = Figure(figsize=(8.4, 3.0))
            a1, a2 = fig.subplots(1, 2)
            rel = pd.DataFrame(r["reliability"]).dropna()
            a1.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
            if len(rel):
                a1.plot(rel["predicted"], rel["observed"], marker="o")
            a1.set(title="reliability", xlabel="predicted", ylabel="observed")
            tiers = pd.DataFrame(r["tiers"])
            if len(tiers):
                x = np.arange(len(tiers))
                conv = tiers["conversion"].to_numpy(dtype=float)
                err = np.vstack(
                    [conv - tiers["lo"].to_numpy(float), tiers["hi"].to_numpy(float) - conv]
                )
                a2.bar(x, conv, yerr=np.nan_to_num(err), capsize=3, label="realised")
                a2.plot(x, tiers["backtest"], "k_", markersize=18, label="backtest")
                a2.set_xticks(x, tiers["tier"])
                a2.legend(fontsize=7)
            a2.set(title="conversion per tier")
            fig.tight_layout()
            out.append((f"{t}: the newest matured run ({r['as_of'][:10]})", _png(fig)))
        drifted = [r for r in rows if r.get("drift")]
        if drifted:
            d = drifted[-1]["drift"]
            groups = d["groups"][:12]
            fig = Figure(figsize=(6.4, 1.4 + 0.28 * max(len(groups), 1)))
            ax = fig.subplots()
            ax.barh([g["group"][:40] for g in groups][::-1], [g["psi"] for g in groups][::-1])
            ax.axvline(0.1, color="orange", linewidth=0.8)
            ax.axvline(0.25, color="red", linewidth=0.8)
            ax.set(title="PSI by reason group (newest run)", xlabel="PSI")
            fig.tight_layout()
            out.append((f"{t}: drift of the newest run ({drifted[-1]['as_of'][:10]})", _png(fig)))
    return out


_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border-bottom:1px solid #ddd;
padding:3px 8px;text-align:right}th{background:#f4f4f4}td.l,th.l{text-align:left}
.alert{background:#fde8e8;border-left:4px solid #c62828;padding:6px 10px;margin:4px 0}
.ok{background:#e8f5e9;border-left:4px solid #2e7d32;padding:6px 10px}
.warn{color:#8a5a00}figure{display:inline-block;margin:8px}"""


def write_monitor_page(result: MonitorResult, path: str | Path) -> Path:
    """An offline HTML page: alerts, the run table, per-tier conversion and the plots (PNG
    images inlined). Every value from the data or history is HTML-escaped; no script."""
    from leadml._io import atomic_path

    e = html.escape
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; "
        "img-src data:; style-src 'unsafe-inline'\">",
        f"<title>leadml monitor</title><style>{_CSS}</style></head><body>",
        f"<h1>Score monitor</h1><p>Data up to {e(result.data_end)}.</p>",
    ]
    if result.alerts:
        parts += [
            f"<div class='alert'><b>{e(a.kind)}</b> ({e(a.transition)}, {e(a.as_of[:10])}): "
            f"{e(a.message)}</div>"
            for a in result.alerts
        ]
    else:
        parts.append("<div class='ok'>No alerts.</div>")
    parts += [f"<p class='warn'>{e(w)}</p>" for w in result.warnings]
    parts.append(
        "<h2>Runs</h2><table><tr><th class='l'>as_of</th><th class='l'>model</th>"
        "<th class='l'>version</th><th class='l'>status</th><th>leads</th>"
        "<th>converted</th><th>implied</th><th>ROC AUC</th><th>backtest ROC AUC</th>"
        "<th>ECE</th><th>score PSI</th><th class='l'>most drifted input</th></tr>"
    )
    for r in result.rows:
        conv = r.get("conversion") if r["status"] == "matured" else r.get("arrived")
        status = (
            r["status"]
            if r["status"] == "matured"
            else (f"pending ({r.get('elapsed_days', 0)} of {r['horizon_days']} days)")
        )
        d = r.get("drift") or {}
        worst = (d.get("worst") or [{}])[0]
        bt = r["backtest"]
        roc = (
            f"{r['roc_auc']:.3f} [{r['roc_auc_lo']:.3f}, {r['roc_auc_hi']:.3f}]"
            if _finite(r.get("roc_auc"))
            else "-"
        )
        bt_txt = (
            f"{bt['roc_auc']:.3f} [{bt['roc_auc_lo']:.3f}, {bt['roc_auc_hi']:.3f}]"
            if _finite(bt.get("roc_auc")) and _finite(bt.get("roc_auc_lo"))
            else "-"
        )
        feat = f"{worst['feature']} ({worst['psi']:.2f})" if worst else "-"
        parts.append(
            f"<tr><td class='l'>{e(r['as_of'][:19])}</td><td class='l'>{e(r['transition'])}</td>"
            f"<td class='l'>{e(str(r['model_version']))}</td><td class='l'>{e(status)}</td>"
            f"<td>{r['rows']}</td><td>{_pct(conv)}</td><td>{_pct(r['p_mean'])}</td>"
            f"<td>{roc}</td><td>{bt_txt}</td><td>{_num(r.get('ece'), 3)}</td>"
            f"<td>{_num(d.get('score_psi'), 3)}</td><td class='l'>{e(feat)}</td></tr>"
        )
    parts.append("</table>")
    for t in dict.fromkeys(r["transition"] for r in result.rows):
        matured = [r for r in result.rows if r["transition"] == t and r["status"] == "matured"]
        if not matured or not matured[-1].get("tiers"):
            continue
        r = matured[-1]
        parts.append(
            f"<h2>{e(t)}: conversion per tier, {e(r['as_of'][:10])}</h2><table><tr>"
            "<th class='l'>tier</th><th>leads</th><th>converted</th><th>rate</th>"
            "<th>95% interval</th><th>backtest</th></tr>"
        )
        for tr in r["tiers"]:
            parts.append(
                f"<tr><td class='l'>{e(tr['tier'])}</td><td>{tr['rows']}</td>"
                f"<td>{tr['conversions']}</td><td>{_pct(tr['conversion'])}</td>"
                f"<td>{_pct(tr['lo'])} - {_pct(tr['hi'])}</td><td>{_pct(tr['backtest'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append("<h2>Plots</h2>")
    for caption, uri in _plots(result):
        parts.append(
            f"<figure><img src='{uri}' alt='{e(caption, quote=True)}'>"
            f"<figcaption>{e(caption)}</figcaption></figure>"
        )
    parts.append("</body></html>")
    out = Path(path)
    with atomic_path(out) as tmp:
        Path(tmp).write_text("\n".join(parts), encoding="utf-8")
    return out


def write_monitor_json(result: MonitorResult, path: str | Path) -> Path:
    """The result as JSON (``alert``, ``alerts``, ``warnings``, ``runs``) for schedulers."""
    from leadml._io import atomic_path

    out = Path(path)
    with atomic_path(out) as tmp:
        Path(tmp).write_text(json.dumps(result.to_dict(), indent=1), encoding="utf-8")
    return out
