"""Batch scoring: features as of a date -> calibrated probabilities, score, tier and reasons.

Every lead eligible at ``as_of`` (created before it, stage ``lead`` or ``prospect``) gets
``p_prospect`` (empty for prospects), ``p_opportunity``, and a ``score``/``tier``/``reasons`` from
the model of its **next** stage (leads: the prospect model; prospects: the opportunity model).

The job is atomic: it refuses to overwrite an existing file unless asked, scores in chunks of
``scoring.chunk_size`` rows (bounded memory for the explanations, the costly part), writes into a
temporary file beside the target and renames it into place only when everything succeeded.
Output rows are sorted by score (descending) then lead_id, so identical input gives byte-identical
output.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import LeadMLConfig
from leadml.contracts import CRMData
from leadml.explain import contributions, reasons
from leadml.training import StageModel

__all__ = [
    "DISPLAY_COLUMNS",
    "OUTPUT_COLUMNS",
    "explain_lead",
    "load_models",
    "score",
    "score_features",
    "write_scores",
]

log = logging.getLogger(__name__)

OUTPUT_COLUMNS = (
    "lead_id",
    "as_of",
    "stage",
    "p_prospect",
    "p_opportunity",
    "score",
    "tier",
    "reasons",
    "model_version",
)
DISPLAY_COLUMNS = ("name", "company", "job_title", "lead_source", "owner")
NEXT_MODEL = {"lead": "prospect", "prospect": "opportunity"}


def model_version(model: StageModel) -> str:
    v = model.metadata.get("model_version")
    if v:
        return str(v)
    digest = hashlib.sha256(model.booster.model_to_string().encode()).hexdigest()[:12]
    return f"leadml-{model.transition}@bundle:{digest}"


def load_models(
    specs: tuple[str, ...] | list[str] | None = None, prefix: str = "leadml"
) -> dict[str, StageModel]:
    """Resolve ``--model`` values: ``PATH_OR_URI`` (transition read from the bundle) or
    ``prospect=PATH_OR_URI``; default: the ``champion`` alias of both registered models."""
    from leadml.tracking import load_stage_model

    wanted = list(
        specs or [f"models:/{prefix}-prospect@champion", f"models:/{prefix}-opportunity@champion"]
    )
    models: dict[str, StageModel] = {}
    for item in wanted:
        key, sep, target = item.partition("=")
        if sep and key in NEXT_MODEL.values() and not key.startswith("models:"):
            m = load_stage_model(target)
            if m.transition != key:
                raise ValueError(
                    f"--model {item!r}: that bundle is a {m.transition!r} model, not {key!r}"
                )
        else:
            m = load_stage_model(item)
        if "model_version" not in m.metadata and item.startswith("models:/"):
            m.metadata["model_version"] = item.removeprefix("models:/")
        models[m.transition] = m
    return models


def score_features(
    frame: pd.DataFrame,
    models: Mapping[str, StageModel],
    config: LeadMLConfig | None = None,
    *,
    engine: str | None = None,
) -> pd.DataFrame:
    """Score a features frame (``lead_id``, ``as_of``, ``stage`` + features) with the given
    models; returns :data:`OUTPUT_COLUMNS` in the input's row order."""
    cfg = config or LeadMLConfig()
    ex = cfg.explain
    eng = engine or ex.engine
    n = len(frame)
    stage = (
        frame["stage"].to_numpy(dtype=object)
        if "stage" in frame.columns
        else np.full(n, "lead", dtype=object)
    )
    out = pd.DataFrame({"lead_id": frame["lead_id"].to_numpy(), "as_of": frame["as_of"].to_numpy()})
    out["stage"] = stage
    probs: dict[str, np.ndarray] = {}
    for transition in ("prospect", "opportunity"):
        m = models.get(transition)
        probs[transition] = m.predict_proba(frame) if m is not None and n else np.full(n, np.nan)
    out["p_prospect"] = np.where(stage == "lead", probs["prospect"], np.nan)
    out["p_opportunity"] = probs["opportunity"]
    score = np.full(n, -1, dtype=np.int64)
    tier = np.full(n, None, dtype=object)
    why: list[Any] = [[] for _ in range(n)]
    version = np.full(n, "", dtype=object)
    for transition, m in models.items():
        rows = (
            np.flatnonzero(
                np.array(
                    [
                        NEXT_MODEL.get(s) == transition or (NEXT_MODEL.get(s) not in models)
                        for s in stage
                    ],
                    dtype=bool,
                )
            )
            if n
            else np.array([], dtype=int)
        )
        if len(rows) == 0:
            continue
        sub = frame.iloc[rows]
        p = probs[transition][rows]
        score[rows] = m.score(p)
        tier[rows] = m.tier(p)
        contrib = contributions(m, sub, eng)
        for r, reason in zip(
            rows,
            reasons(m, sub, contrib, n_positive=ex.n_positive, n_negative=ex.n_negative),
            strict=True,
        ):
            why[r] = reason
        version[rows] = model_version(m)
    out["score"] = score
    out["tier"] = tier
    out["reasons"] = why
    out["model_version"] = version
    return out


def _skipped(data: CRMData, as_of: pd.Timestamp, eligible_ids: pd.Index) -> dict[str, int]:
    from leadml.timeline import stage_at

    c = data.columns
    created = data.leads[c.created_at]
    not_yet = int((created >= as_of).sum())
    alive = data.leads.loc[(created < as_of).to_numpy(), c.lead_id]
    rest = alive[~alive.isin(eligible_ids)]
    stages = stage_at(data, rest.to_numpy(), np.full(len(rest), as_of.to_datetime64()))
    counts = {"not created yet": not_yet}
    for s, k in stages.value_counts().items():
        counts[f"stage {s}"] = int(k)
    return counts


def score(
    data: CRMData,
    as_of: pd.Timestamp | str | None = None,
    models: Mapping[str, StageModel] | None = None,
    config: LeadMLConfig | None = None,
    *,
    engine: str | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Score every lead eligible at ``as_of`` (default: now, UTC) with both stage models.

    Returns the output columns plus display columns from the leads table (what the rep already
    sees in the CRM) and the last activity before ``as_of``; sorted by score, then lead_id.
    ``df.attrs["skipped"]`` counts the leads not scored and why; ``df.attrs["tier_info"]`` holds
    each tier's observed conversion on the model's validation window.
    """
    from leadml.trainset import build_scoring_set

    cfg = config or LeadMLConfig()
    ts = _as_of(as_of)
    if ts <= data.start:
        raise ValueError(
            f"as_of {ts} is not after the first lead's creation ({data.start}): nobody exists yet "
            "to score; pass a later --as-of"
        )
    models = (
        dict(models) if models is not None else load_models(prefix=cfg.tracking.model_name_prefix)
    )
    if not models:
        raise ValueError("no models to score with")
    specs = {m.transition: m.spec for m in models.values()}
    first = next(iter(specs.values()))
    frame = build_scoring_set(data, ts, cfg, spec=first)
    for transition, spec in specs.items():
        if spec != first:  # a model trained on another vocabulary gets its own features
            other = build_scoring_set(data, ts, cfg, spec=spec)
            for col in spec.names:
                frame[col] = other[col].to_numpy() if col not in first.names else frame[col]
            del transition
    chunk = cfg.scoring.chunk_size
    parts = []
    from tqdm.auto import tqdm

    show = sys.stderr.isatty() if progress is None else progress
    starts = range(0, len(frame), chunk)
    for s in tqdm(starts, total=len(starts), disable=not show, desc="scoring", unit="chunk"):
        parts.append(score_features(frame.iloc[s : s + chunk], models, cfg, engine=engine))
    out = (
        pd.concat(parts, ignore_index=True)
        if parts
        else score_features(frame, models, cfg, engine=engine)
    )
    out = _add_display(out, data, ts)
    out = out.sort_values(["score", "lead_id"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )
    out.attrs["skipped"] = _skipped(data, ts, pd.Index(frame["lead_id"]))
    next_model = models.get("prospect") or next(iter(models.values()))
    out.attrs["tier_info"] = next_model.metadata.get("tier_info", {})
    out.attrs["model_versions"] = ", ".join(model_version(m) for m in models.values())
    return out


def _as_of(as_of: pd.Timestamp | str | None) -> pd.Timestamp:
    if as_of is None:
        ts = pd.Timestamp.now(tz="UTC")
    else:
        try:
            ts = pd.Timestamp(as_of)
        except ValueError as e:
            raise ValueError(
                f"--as-of {as_of!r} is not a date or timestamp (e.g. 2025-03-01)"
            ) from e
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.floor("s")


def _add_display(out: pd.DataFrame, data: CRMData, as_of: pd.Timestamp) -> pd.DataFrame:
    c = data.columns
    leads = data.leads.set_index(c.lead_id)
    idx = leads.index.get_indexer(out["lead_id"])
    for col in DISPLAY_COLUMNS:
        if col in leads.columns:
            out[col] = leads[col].astype("string").to_numpy()[idx]
    ev = data.events
    before = ev.loc[
        (ev[c.occurred_at] < as_of).to_numpy(), [c.lead_id, c.occurred_at, c.event_type]
    ]
    last = before.drop_duplicates(c.lead_id, keep="last").set_index(c.lead_id)
    out["last_activity_at"] = last[c.occurred_at].reindex(out["lead_id"]).to_numpy()
    out["last_activity_type"] = (
        last[c.event_type].astype("string").reindex(out["lead_id"]).to_numpy()
    )
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise FileExistsError(f"{str(out)!r} already exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise FileNotFoundError(f"output directory {str(out.parent)!r} does not exist")


def write_scores(
    scores: pd.DataFrame,
    out: str | Path,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    n_reasons: int = 6,
) -> Path:
    """Write scores atomically as Parquet (reasons as list of structs) or CSV (reason_1..N)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(out)
    _check_target(path, overwrite)
    fmt = fmt or ("csv" if path.suffix.lower() == ".csv" else "parquet")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "csv":
            flat = scores.drop(columns=["reasons"])
            texts = [
                [f"{r['direction']} {r['text']} ({100 * r['effect']:+.1f} pts)" for r in rs]
                for rs in scores["reasons"]
            ]
            for k in range(n_reasons):
                flat[f"reason_{k + 1}"] = [t[k] if k < len(t) else "" for t in texts]
            flat.to_csv(tmp, index=False, encoding="utf-8", float_format="%.6g")
        else:
            reason_type = pa.list_(
                pa.struct(
                    [
                        ("group", pa.string()),
                        ("text", pa.string()),
                        ("direction", pa.string()),
                        ("effect", pa.float64()),
                    ]
                )
            )
            table = pa.Table.from_pandas(scores.drop(columns=["reasons"]), preserve_index=False)
            table = table.append_column(
                "reasons", pa.array(list(scores["reasons"]), type=reason_type)
            )
            table = table.select(_ordered(list(table.column_names)))
            meta = dict(table.schema.metadata or {})
            meta.pop(b"pandas", None)
            meta[b"leadml.tier_info"] = json.dumps(
                scores.attrs.get("tier_info", {}), sort_keys=True
            ).encode()
            meta[b"leadml.model_versions"] = str(scores.attrs.get("model_versions", "")).encode()
            if len(scores):
                meta[b"leadml.as_of"] = str(scores["as_of"].iloc[0]).encode()
            pq.write_table(table.replace_schema_metadata(meta), tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _ordered(cols: list[str]) -> list[str]:
    head = [c for c in OUTPUT_COLUMNS if c in cols]
    return head + [c for c in cols if c not in head]


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read a scores file written by :func:`write_scores` (reasons back as lists of dicts)."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return pd.read_csv(p)
    return pd.read_parquet(p)


def explain_lead(
    lead_id: Any,
    data: CRMData,
    as_of: pd.Timestamp | str | None = None,
    models: Mapping[str, StageModel] | None = None,
    *,
    transition: str | None = None,
    config: LeadMLConfig | None = None,
    plot: bool = True,
) -> tuple[pd.DataFrame, Any]:
    """All reason groups of one lead with their log-odds contribution and effect, plus a
    waterfall figure (matplotlib) from the base rate to the lead's probability."""
    from leadml.explain import group_contributions
    from leadml.trainset import build_scoring_set

    cfg = config or LeadMLConfig()
    ts = _as_of(as_of)
    models = (
        dict(models) if models is not None else load_models(prefix=cfg.tracking.model_name_prefix)
    )
    c = data.columns
    first = next(iter(models.values()))
    frame = build_scoring_set(data, ts, cfg, spec=first.spec)
    row = frame.loc[frame[c.lead_id] == lead_id]
    if row.empty:
        raise ValueError(
            f"lead {lead_id!r} is not eligible for scoring at {ts} (not created yet, or past prospect/opportunity)"
        )
    t = transition or NEXT_MODEL[str(row["stage"].iloc[0])]
    if t not in models:
        raise ValueError(f"no {t!r} model given")
    m = models[t]
    contrib = contributions(m, row)
    g = group_contributions(m, contrib).iloc[0]
    margin = float(contrib.sum())
    p = float(m.calibration(np.array([margin]))[0])
    top = reasons(m, row, contrib, n_positive=len(g), n_negative=len(g))[0]
    text = {r["group"]: r["text"] for r in top}
    table = pd.DataFrame(
        {
            "group": g.index,
            "label": [m.spec.group_label(x) for x in g.index],
            "contribution": g.to_numpy(),
            "effect": [p - float(m.calibration(np.array([margin - v]))[0]) for v in g.to_numpy()],
            "text": [text.get(x, "") for x in g.index],
        }
    ).sort_values("effect", key=np.abs, ascending=False, ignore_index=True)
    fig = (
        _waterfall(
            table, float(contrib[0, -1]), margin, m, title=f"lead {lead_id}: p({t}) = {p:.1%}"
        )
        if plot
        else None
    )
    return table, fig


def _waterfall(
    table: pd.DataFrame, base: float, margin: float, model: StageModel, title: str
) -> Any:
    import matplotlib.pyplot as plt

    rows = table.head(10).iloc[::-1]
    rest = float(table["contribution"].iloc[10:].sum())
    fig, ax = plt.subplots(figsize=(7, 0.45 * (len(rows) + 3)))
    labels = ["base rate", *(["other reasons"] if len(table) > 10 else []), *rows["label"]]
    vals = [base, *([rest] if len(table) > 10 else []), *rows["contribution"]]
    left = 0.0
    for i, v in enumerate(vals):
        if i == 0:
            ax.barh(i, v, color="#888")
            left = v
            continue
        ax.barh(i, v, left=left, color="#2e7d32" if v > 0 else "#c62828")
        left += v
    ax.set_yticks(range(len(labels)), labels)
    ax.axvline(margin, color="black", lw=1, ls="--")
    ax.set(xlabel="log-odds (calibrated probability on the title)", title=title)
    fig.tight_layout()
    return fig
