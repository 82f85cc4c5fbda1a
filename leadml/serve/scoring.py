"""Batch scoring: features as of a date -> calibrated probabilities, score, tier and reasons.

Who is scored
    Every lead **eligible** at ``as_of``: created strictly before it and in stage ``lead`` or
    ``prospect`` then (a recycled lead, disqualified and back to ``lead``, is eligible). The
    others are counted, not scored: not created yet, already opportunity or customer,
    disqualified, lost, or no model given for their next stage. ``as_of`` defaults to now (UTC),
    floored to the second; features use only data strictly before it.

What each row says
    ``p_prospect`` (leads only; empty for prospects, who are past it) and ``p_opportunity``
    (every row) are the calibrated probabilities of the two stage models. ``score``
    (``round(100 p)``), ``tier`` (A-D, thresholds fixed at training) and ``reasons`` refer to
    the lead's **next** stage: a lead is scored by the prospect model, a prospect by the
    opportunity model; ``model_version`` names that model. ``reasons`` are the top positive then
    top negative reason groups (:mod:`leadml.explain.reasons`): ``{group, text, direction, effect}``,
    ``effect`` the signed change in probability (0.041 = 4.1 points). Then the columns the rep
    already sees in the CRM, when the leads table has them: ``name, company, job_title,
    lead_source, owner``, and ``last_activity_at``, ``last_activity_type`` (the latest event
    strictly before ``as_of``).

Order and determinism
    Rows are sorted by ``score`` descending, then ``lead_id`` ascending: the rep's call list, in
    an order that never depends on chunking or threads. Identical input gives byte-identical
    Parquet and CSV files (one Parquet row group per ``scoring.chunk_size`` rows).

Files
    Parquet: ``reasons`` is a list of structs; key-value metadata ``leadml.as_of`` (ISO),
    ``leadml.model_versions`` (text), ``leadml.tier_info`` (JSON ``{"A": {"conversion_rate",
    "share"}, ...}`` of the prospect model, or of the opportunity model when it is the only one:
    the tiers' observed conversion on the model's test window), ``leadml.tier_info_by_model``,
    ``leadml.horizon_days`` and ``leadml.skipped`` (JSON). CSV (UTF-8): the same columns with
    ``reasons`` flattened to ``reason_1 .. reason_N`` sentences such as ``+ Viewed the pricing
    page 3 times in the last 7 days (+4.1 pts)`` (N = ``explain.n_positive + n_negative``;
    empty when a lead has fewer).

Bounded memory and atomic output
    Features and probabilities are computed for every eligible lead (a few numbers per lead),
    then explanations, the costly part, run ``scoring.chunk_size`` rows at a time and each chunk
    is written out before the next one starts. The file is written to a temporary file in the
    target's directory and renamed into place only when every chunk succeeded: a failed or
    interrupted run leaves no partial output and never replaces a good file. An existing file is
    never replaced without ``overwrite`` (checked before any work).

Models (``--model``)
    ``PATH_OR_URI`` (a bundle directory, a downloaded MLflow model directory or an MLflow model
    URI such as ``models:/leadml-prospect@champion``; the transition is read from the model) or
    ``prospect=PATH_OR_URI`` / ``opportunity=PATH_OR_URI`` (checked against the model). Give it
    once per model. Default: the ``champion`` alias of ``leadml-prospect`` and
    ``leadml-opportunity`` in the MLflow registry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from leadml._io import atomic_path
from leadml.config import LeadMLConfig
from leadml.data.contracts import CRMData

if TYPE_CHECKING:
    import pyarrow as pa

    from leadml.model.training import StageModel

__all__ = [
    "DISPLAY_COLUMNS",
    "NEXT_MODEL",
    "OUTPUT_COLUMNS",
    "ScoringError",
    "explain_lead",
    "load_models",
    "model_version",
    "parse_model_specs",
    "read_scores",
    "run_score",
    "score",
    "score_features",
    "write_scores",
]

log = logging.getLogger(__name__)

OUTPUT_COLUMNS: tuple[str, ...] = (
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
DISPLAY_COLUMNS: tuple[str, ...] = ("name", "company", "job_title", "lead_source", "owner")
ACTIVITY_COLUMNS: tuple[str, ...] = ("last_activity_at", "last_activity_type")
NEXT_MODEL: dict[str, str] = {"lead": "prospect", "prospect": "opportunity"}
TRANSITIONS: tuple[str, ...] = ("prospect", "opportunity")
_SKIP_LABELS = {
    "opportunity": "already opportunity",
    "customer": "already customer",
    "disqualified": "disqualified",
    "lost": "lost",
}
_SPEC = re.compile(r"^(prospect|opportunity)=(.+)$")


class ScoringError(ValueError):
    """A scoring request cannot be carried out; the message says what to change."""


# --- models ----------------------------------------------------------------------------------


def parse_model_specs(specs: Sequence[str]) -> list[tuple[str | None, str]]:
    """Split ``--model`` values into ``(transition or None, path_or_uri)``.

    Examples
    --------
    >>> parse_model_specs(["models:/leadml-prospect@champion", "opportunity=bundles/opp"])
    [(None, 'models:/leadml-prospect@champion'), ('opportunity', 'bundles/opp')]
    """
    out: list[tuple[str | None, str]] = []
    for item in specs:
        text = str(item).strip()
        if not text:
            raise ScoringError("--model '': expected a bundle path or an MLflow model URI")
        m = _SPEC.match(text)
        out.append((m[1], m[2]) if m else (None, text))
    return out


def _load_model(target: str, tracking_uri: str | None) -> StageModel:
    local = Path(target)
    if local.exists():
        # Local bundles load without importing MLflow (seconds saved on every nightly run).
        from leadml.model.bundle import load_bundle

        pyfunc_layout = local / "artifacts" / "bundle"
        return load_bundle(pyfunc_layout if pyfunc_layout.is_dir() else local)
    if ":/" not in target:
        from leadml.model.bundle import BundleError

        raise BundleError(
            f"--model {target!r} is neither an existing bundle directory nor an MLflow model URI "
            "(e.g. models:/leadml-prospect@champion)"
        )
    from leadml.tracking import load_stage_model, set_tracking_uri

    set_tracking_uri(tracking_uri)
    return load_stage_model(target)


def load_models(
    specs: Sequence[str] | None = None,
    prefix: str = "leadml",
    *,
    tracking_uri: str | None = None,
) -> dict[str, StageModel]:
    """Load the stage models named by ``--model`` values (module docs), keyed by transition.

    Parameters
    ----------
    specs : sequence of str, optional
        ``PATH_OR_URI`` or ``prospect=PATH_OR_URI`` / ``opportunity=PATH_OR_URI``. Default: the
        ``champion`` alias of ``<prefix>-prospect`` and ``<prefix>-opportunity``.
    prefix : str
        Registered model name prefix (``tracking.model_name_prefix``).
    tracking_uri : str, optional
        ``tracking.tracking_uri``; ``$MLFLOW_TRACKING_URI`` wins when set.
    """
    wanted = (
        parse_model_specs(specs)
        if specs
        else [(t, f"models:/{prefix}-{t}@champion") for t in TRANSITIONS]
    )
    models: dict[str, StageModel] = {}
    for key, target in wanted:
        m = _load_model(target, tracking_uri)
        if m.transition not in TRANSITIONS:
            raise ScoringError(
                f"--model {target!r} is a {m.transition!r} model; expected a prospect or "
                "opportunity stage model (flat-table models score with --table)"
            )
        if key is not None and m.transition != key:
            raise ScoringError(
                f"--model {key}={target}: that model predicts {m.transition!r}, not {key!r}; "
                f"write {m.transition}={target}"
            )
        if m.transition in models:
            raise ScoringError(
                f"--model: two {m.transition!r} models given ({target!r} is the second); give "
                "one model per transition"
            )
        if "model_version" not in m.metadata and target.startswith("models:/"):
            m.metadata["model_version"] = target.removeprefix("models:/")
        models[m.transition] = m
    return models


def model_version(model: StageModel) -> str:
    """Registry version (``leadml-prospect:3``) or, for a local bundle, a content digest."""
    v = model.metadata.get("model_version")
    if v:
        return str(v)
    digest = hashlib.sha256(model.booster.model_to_string().encode()).hexdigest()[:12]
    return f"leadml-{model.transition}@bundle:{digest}"


# --- scoring rows ----------------------------------------------------------------------------


def _check_models(models: Mapping[str, StageModel]) -> dict[str, StageModel]:
    out = {t: models[t] for t in TRANSITIONS if t in models}
    unknown = sorted(set(models) - set(out))
    if unknown or not out:
        raise ScoringError(
            f"models must be keyed 'prospect' and/or 'opportunity', got {sorted(models)}"
        )
    for t, m in out.items():
        if m.transition != t:
            raise ScoringError(f"models[{t!r}] is a {m.transition!r} model")
    return out


def _head(
    frames: Mapping[str, pd.DataFrame],
    models: Mapping[str, StageModel],
    chunk_size: int,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Probabilities, score, tier and model version of the rows that have a next-stage model,
    in input order. Returns the frame and, per row, its position in ``frames`` and its
    next-stage transition."""
    base = next(iter(frames.values()))
    n = len(base)
    stage = base["stage"].to_numpy(dtype=object)
    next_t = np.array([NEXT_MODEL.get(s, "") for s in stage], dtype=object)
    p: dict[str, np.ndarray] = {}
    for t, m in models.items():
        # Prospects are past the prospect model's question; leads need both answers.
        rows = np.flatnonzero(stage == "lead") if t == "prospect" else np.arange(n)
        values = np.full(n, np.nan)
        for s in range(0, len(rows), chunk_size):
            part = rows[s : s + chunk_size]
            values[part] = m.predict_proba(frames[t].iloc[part])
        p[t] = values
    keep = np.flatnonzero(np.isin(next_t, list(models)))
    nan = np.full(n, np.nan)
    p_next = np.where(next_t == "prospect", p.get("prospect", nan), p.get("opportunity", nan))
    score = np.zeros(n, dtype=np.int64)
    tier = np.full(n, "", dtype=object)
    version = np.full(n, "", dtype=object)
    for t, m in models.items():
        at = keep[next_t[keep] == t]
        score[at] = m.score(p_next[at])
        tier[at] = m.tier(p_next[at])
        version[at] = model_version(m)
    head = pd.DataFrame(
        {
            "lead_id": base["lead_id"].to_numpy()[keep],
            "as_of": base["as_of"].to_numpy()[keep],
            "stage": stage[keep],
            "p_prospect": p.get("prospect", nan)[keep],
            "p_opportunity": p.get("opportunity", nan)[keep],
            "score": score[keep],
            "tier": tier[keep],
            "model_version": version[keep],
        }
    )
    head["lead_id"] = head["lead_id"].astype(base["lead_id"].dtype)
    return head, keep, next_t[keep]


def _call_order(
    head: pd.DataFrame, pos: np.ndarray, next_t: np.ndarray
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Sorted by score (highest first), then lead_id: the order of the output file."""
    order = np.asarray(
        head.sort_values(["score", "lead_id"], ascending=[False, True], kind="stable").index
    )
    return head.iloc[order].reset_index(drop=True), pos[order], next_t[order]


def _explain_rows(
    frames: Mapping[str, pd.DataFrame],
    models: Mapping[str, StageModel],
    pos: np.ndarray,
    next_t: np.ndarray,
    config: LeadMLConfig,
    engine: str,
) -> list[list[dict[str, Any]]]:
    from leadml.explain.reasons import explain_reasons

    ex = config.explain
    out: list[list[dict[str, Any]]] = [[] for _ in range(len(pos))]
    if ex.n_positive == 0 and ex.n_negative == 0:  # scores only: skip the costly part
        return out
    for t, m in models.items():
        at = np.flatnonzero(next_t == t)
        if not len(at):
            continue
        found = explain_reasons(
            m,
            frames[t].iloc[pos[at]],
            engine=engine,
            n_positive=ex.n_positive,
            n_negative=ex.n_negative,
            n_threads=ex.n_threads,
        )
        for i, r in zip(at.tolist(), found, strict=True):
            out[i] = r
    return out


def _with_reasons(head: pd.DataFrame, why: list[list[dict[str, Any]]]) -> pd.DataFrame:
    out = head.copy()
    at = OUTPUT_COLUMNS.index("reasons")
    out.insert(at, "reasons", pd.Series(why, index=out.index, dtype=object))
    return out


def _check_features(frame: pd.DataFrame) -> None:
    missing = [c for c in ("lead_id", "as_of", "stage") if c not in frame.columns]
    if missing:
        raise ScoringError(
            f"features frame is missing column(s) {', '.join(missing)}; build it with "
            "leadml.build_scoring_set(data, as_of, spec=model.spec) or `leadml build --as-of`"
        )


def score_features(
    frame: pd.DataFrame,
    models: Mapping[str, StageModel],
    config: LeadMLConfig | None = None,
    *,
    engine: str | None = None,
) -> pd.DataFrame:
    """Score and explain a features frame: exactly the rows :func:`score` gives for it.

    Parameters
    ----------
    frame : DataFrame
        ``lead_id``, ``as_of``, ``stage`` and the models' features, as built by
        :func:`leadml.data.trainset.build_scoring_set` (or ``leadml build --as-of``).
    models : mapping
        ``{"prospect": StageModel, "opportunity": StageModel}`` (either may be absent).
    config : LeadMLConfig, optional
        ``explain`` (reasons, engine) and ``scoring.chunk_size``.
    engine : str, optional
        Overrides ``config.explain.engine``.

    Returns
    -------
    DataFrame
        :data:`OUTPUT_COLUMNS` for every row whose next-stage model is given (leads need the
        prospect model, prospects the opportunity model; other rows are left out), in input
        order: row for row what :func:`score` writes for these leads with these models (which
        then sorts them and adds the display columns). The MLflow pyfunc returns this.
    """
    cfg = config or LeadMLConfig()
    _check_features(frame)
    ms = _check_models(models)
    frames = dict.fromkeys(ms, frame)
    head, pos, next_t = _head(frames, ms, cfg.scoring.chunk_size)
    why = _explain_rows(frames, ms, pos, next_t, cfg, engine or cfg.explain.engine)
    return _with_reasons(head, why)


# --- the batch job ---------------------------------------------------------------------------


def _as_of(as_of: pd.Timestamp | str | None) -> pd.Timestamp:
    if as_of is None:
        ts = pd.Timestamp.now(tz="UTC")
    else:
        try:
            ts = pd.Timestamp(as_of)
        except (ValueError, TypeError) as e:
            raise ScoringError(
                f"--as-of {as_of!r} is not a date or timestamp; expected e.g. 2025-03-01 or "
                "2025-03-01T09:30:00Z"
            ) from e
        if ts is pd.NaT:
            raise ScoringError(f"--as-of {as_of!r} is empty; expected e.g. 2025-03-01")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.floor("s")


@dataclass
class _Job:
    """One scoring run, prepared: everything but the explanations."""

    as_of: pd.Timestamp
    models: dict[str, StageModel]
    frames: dict[str, pd.DataFrame]
    head: pd.DataFrame
    pos: np.ndarray
    next_t: np.ndarray
    skipped: dict[str, int]
    attrs: dict[str, Any] = field(default_factory=dict)

    def chunks(
        self, config: LeadMLConfig, engine: str | None, progress: bool | None
    ) -> Iterator[pd.DataFrame]:
        """The output in final order, ``scoring.chunk_size`` rows at a time, explained."""
        from tqdm.auto import tqdm

        size = config.scoring.chunk_size
        n = len(self.head)
        show = sys.stderr.isatty() if progress is None else progress
        eng = engine or config.explain.engine
        with tqdm(total=n, disable=not show, desc="scoring", unit="lead", leave=False) as bar:
            for s in range(0, max(n, 1), size):
                part = slice(s, min(s + size, n))
                why = _explain_rows(
                    self.frames, self.models, self.pos[part], self.next_t[part], config, eng
                )
                yield _with_reasons(self.head.iloc[part], why)
                bar.update(part.stop - part.start)


def _prepare(
    data: CRMData,
    as_of: pd.Timestamp | str | None,
    models: Mapping[str, StageModel],
    config: LeadMLConfig,
) -> _Job:
    from leadml.data.timeline import stage_at
    from leadml.data.trainset import build_scoring_set

    ts = _as_of(as_of)
    ms = _check_models(models)
    c = data.columns
    if len(data.leads) == 0 or ts <= data.start:
        raise ScoringError(
            f"as_of {ts} is not after the first lead's creation ({data.start}): no lead exists "
            "yet to score; pass a later --as-of"
        )
    frames: dict[str, pd.DataFrame] = {}
    built: list[tuple[Any, pd.DataFrame]] = []
    for t, m in ms.items():
        same = next((f for spec, f in built if spec == m.spec), None)
        if same is None:
            same = build_scoring_set(data, ts, config, spec=m.spec)
            if c.lead_id != "lead_id":
                same = same.rename(columns={c.lead_id: "lead_id"})
            built.append((m.spec, same))
        frames[t] = same
    head, pos, next_t = _call_order(*_head(frames, ms, config.scoring.chunk_size))
    head = _add_display(head, data, ts)

    created = data.leads[c.created_at]
    alive = data.leads.loc[(created < ts).to_numpy(), c.lead_id].to_numpy()
    stages = stage_at(data, alive, ts).value_counts()
    skipped = {"not created yet": int((created >= ts).sum())}
    for s, label in _SKIP_LABELS.items():
        skipped[label] = int(stages.get(s, 0))
    stage = next(iter(frames.values()))["stage"]
    for t in TRANSITIONS:
        if t not in ms:
            src = next(s for s, n in NEXT_MODEL.items() if n == t)
            skipped[f"no {t} model given"] = int((stage == src).sum())
    attrs = _file_attrs(ms, ts, skipped, config)
    return _Job(ts, ms, frames, head, pos, next_t, skipped, attrs)


def _file_attrs(
    models: Mapping[str, StageModel],
    as_of: pd.Timestamp,
    skipped: dict[str, int],
    config: LeadMLConfig,
) -> dict[str, Any]:
    by_model = {t: dict(m.metadata.get("tier_info") or {}) for t, m in models.items()}
    main = "prospect" if "prospect" in models else "opportunity"
    return {
        "as_of": as_of.isoformat(),
        "model_versions": ", ".join(model_version(m) for m in models.values()),
        "tier_info": by_model.get(main, {}),
        "tier_info_by_model": by_model,
        "horizon_days": {
            t: int(m.metadata["horizon_days"])
            for t, m in models.items()
            if m.metadata.get("horizon_days") is not None
        },
        "skipped": dict(skipped),
        "row_group_size": config.scoring.chunk_size,
    }


def _add_display(head: pd.DataFrame, data: CRMData, as_of: pd.Timestamp) -> pd.DataFrame:
    c = data.columns
    ids = head["lead_id"].to_numpy()
    lead_pos = pd.Index(data.leads[c.lead_id]).get_indexer(ids)
    out = head.copy()
    for col in DISPLAY_COLUMNS:
        if col in data.leads.columns and col not in (c.lead_id, c.created_at):
            out[col] = data.leads[col].astype("string").to_numpy()[lead_pos]
    # The latest event per lead before as_of; among simultaneous ones the first in the table.
    from leadml._kernels import latest_before
    from leadml.data.contracts import lead_positions

    ev = data.events
    pos = lead_positions(pd.Index(ids), ev[c.lead_id])
    when = ev[c.occurred_at].to_numpy(dtype="datetime64[ns]")
    limit = int(as_of.as_unit("ns").value)
    best = latest_before(pos, when.view(np.int64), limit, len(ids))
    found = best >= 0
    t = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[ns]")
    t[found] = when[best[found]]
    kind = np.full(len(ids), None, dtype=object)
    kind[found] = ev[c.event_type].iloc[best[found]].astype(str).to_numpy(dtype=object)
    out["last_activity_at"] = t
    out["last_activity_type"] = pd.array(kind, dtype="string")
    return out


def score(
    data: CRMData,
    as_of: pd.Timestamp | str | None = None,
    models: Mapping[str, StageModel] | None = None,
    config: LeadMLConfig | None = None,
    *,
    engine: str | None = None,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Score and explain every lead eligible at ``as_of`` (module docs), in memory.

    Parameters
    ----------
    data : CRMData
        Validated tables.
    as_of : timestamp or str, optional
        Default: now (UTC), floored to the second.
    models : mapping, optional
        ``{"prospect": ..., "opportunity": ...}``; default: the registry's champions.
    config : LeadMLConfig, optional
    engine : {"leadml", "lightgbm", "shap"}, optional
        TreeSHAP engine; default ``config.explain.engine``.
    progress : bool, optional
        Progress bar; default: only when stderr is a terminal.

    Returns
    -------
    DataFrame
        The output columns (module docs), sorted by score then lead_id. ``attrs`` hold
        ``skipped`` (counts of leads not scored, by reason), ``tier_info``,
        ``tier_info_by_model``, ``horizon_days``, ``model_versions`` and ``as_of``; they become
        the Parquet metadata in :func:`write_scores`.
    """
    cfg = config or LeadMLConfig()
    if models is None:
        models = load_models(
            prefix=cfg.tracking.model_name_prefix, tracking_uri=cfg.tracking.tracking_uri
        )
    job = _prepare(data, as_of, models, cfg)
    out = pd.concat(list(job.chunks(cfg, engine, progress)), ignore_index=True)
    out.attrs.update(job.attrs)
    _log_summary(job, len(out))
    return out


def _log_summary(job: _Job, n: int) -> None:
    skipped = ", ".join(f"{v:,} {k}" for k, v in job.skipped.items() if v) or "none"
    log.info("scored %s leads as of %s; skipped: %s", f"{n:,}", job.as_of, skipped)


# --- files -----------------------------------------------------------------------------------


def _format(path: Path, fmt: str | None, default: str = "parquet") -> str:
    if fmt is not None:
        if fmt not in ("parquet", "csv"):
            raise ScoringError(f"--format {fmt!r}: expected parquet or csv")
        return fmt
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".parquet", ".pq"):
        return "parquet"
    return default


def _check_target(path: Path, overwrite: bool) -> None:
    if path.is_dir():
        raise ScoringError(f"--out {str(path)!r} is a directory; expected a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{str(path)!r} already exists; pass --overwrite to replace it")
    if not path.parent.is_dir():
        raise FileNotFoundError(f"output directory {str(path.parent)!r} does not exist")


def _reason_type() -> pa.DataType:
    import pyarrow as pa

    return pa.list_(
        pa.struct(
            [
                ("group", pa.string()),
                ("text", pa.string()),
                ("direction", pa.string()),
                ("effect", pa.float64()),
            ]
        )
    )


def _arrow_schema(frame: pd.DataFrame, metadata: dict[bytes, bytes]) -> pa.Schema:
    import pyarrow as pa

    known = {
        "as_of": pa.timestamp("ns"),
        "stage": pa.string(),
        "p_prospect": pa.float64(),
        "p_opportunity": pa.float64(),
        "score": pa.int64(),
        "tier": pa.string(),
        "reasons": _reason_type(),
        "model_version": pa.string(),
        "last_activity_at": pa.timestamp("ns"),
        **dict.fromkeys((*DISPLAY_COLUMNS, "last_activity_type"), pa.string()),
    }
    fields = []
    for col in frame.columns:
        if col == "lead_id":
            integer = pd.api.types.is_integer_dtype(frame[col].dtype)
            typ = pa.int64() if integer else pa.string()
        elif col in known:
            typ = known[col]
        else:
            typ = pa.Array.from_pandas(frame[col]).type
            if pa.types.is_null(typ) or pa.types.is_large_string(typ):
                typ = pa.string()
            elif pa.types.is_dictionary(typ):
                typ = typ.value_type
        fields.append(pa.field(str(col), typ))
    return pa.schema(fields, metadata=metadata)


def _json(value: Any) -> str:
    """Strict JSON (NaN becomes null: a tier nobody fell into has no conversion rate)."""

    def clean(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        if isinstance(v, float | np.floating):
            return float(v) if np.isfinite(v) else None
        if isinstance(v, np.integer):
            return int(v)
        return v

    return json.dumps(clean(value), sort_keys=True)


def _metadata(attrs: Mapping[str, Any], frame: pd.DataFrame) -> dict[bytes, bytes]:
    as_of = attrs.get("as_of")
    if as_of is None and len(frame) and "as_of" in frame.columns:
        as_of = pd.Timestamp(frame["as_of"].iloc[0]).isoformat()
    meta = {
        "as_of": str(as_of or ""),
        "model_versions": str(attrs.get("model_versions", "")),
        "tier_info": _json(attrs.get("tier_info", {})),
        "tier_info_by_model": _json(attrs.get("tier_info_by_model", {})),
        "horizon_days": _json(attrs.get("horizon_days", {})),
        "skipped": _json(attrs.get("skipped", {})),
    }
    return {f"leadml.{k}".encode(): v.encode() for k, v in meta.items()}


def _reason_text(r: Mapping[str, Any]) -> str:
    return f"{r['direction']} {r['text']} ({100 * float(r['effect']):+.1f} pts)"


class _ScoresWriter:
    """Chunks in, one file out: a temp file beside the target, renamed into place on commit."""

    def __init__(
        self,
        path: Path,
        fmt: str,
        *,
        n_reasons: int,
        metadata: dict[bytes, bytes],
        columns: pd.DataFrame,
        row_group_size: int,
    ):
        self.path = path
        self.fmt = fmt
        self.n_reasons = n_reasons
        self.row_group_size = row_group_size
        self.schema = _arrow_schema(columns, metadata) if fmt == "parquet" else None
        self._target = atomic_path(path, make_parents=False)
        self.tmp = self._target.__enter__()
        self._pq: Any = None
        self._csv: Any = None

    def __enter__(self) -> _ScoresWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._close()
        self.tmp.unlink(missing_ok=True)  # not committed: leave nothing behind

    def write(self, chunk: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            assert self.schema is not None
            if self._pq is None:
                self._pq = pq.ParquetWriter(self.tmp, self.schema)
            table = pa.Table.from_pandas(chunk, schema=self.schema, preserve_index=False)
            if len(chunk):
                self._pq.write_table(
                    table.replace_schema_metadata(self.schema.metadata), self.row_group_size
                )
            return
        flat = chunk.drop(columns=["reasons"])
        at = list(chunk.columns).index("reasons")
        texts = [[_reason_text(r) for r in rs] for rs in chunk["reasons"]]
        for k in range(self.n_reasons):
            flat.insert(at + k, f"reason_{k + 1}", [t[k] if k < len(t) else "" for t in texts])
        if self._csv is None:
            self._csv = open(self.tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
            header = True
        else:
            header = False
        flat.to_csv(
            self._csv,
            index=False,
            header=header,
            lineterminator="\n",
            float_format="%.6g",
            date_format="%Y-%m-%d %H:%M:%S",
        )

    def _close(self) -> None:
        if self._pq is not None:
            self._pq.close()
            self._pq = None
        if self._csv is not None:
            self._csv.close()
            self._csv = None

    def commit(self) -> Path:
        if self.fmt == "parquet" and self._pq is None:
            self.write(pd.DataFrame({c: [] for c in self.schema.names}))  # type: ignore[union-attr]
        self._close()
        self._target.__exit__(None, None, None)  # normal permissions, then the atomic rename
        return self.path


def write_scores(
    scores: pd.DataFrame,
    out: str | Path,
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    n_reasons: int | None = None,
    row_group_size: int | None = None,
) -> Path:
    """Write a scores frame (from :func:`score`) atomically as Parquet or CSV (module docs).

    Parameters
    ----------
    scores : DataFrame
        Its ``attrs`` become the Parquet metadata.
    out : path
        Target file; ``.csv`` means CSV unless ``fmt`` says otherwise.
    fmt : {"parquet", "csv"}, optional
    overwrite : bool
        Replace an existing file (only once the new one is complete).
    n_reasons : int, optional
        CSV ``reason_k`` columns (default 6, or the most reasons any row has if more).
    row_group_size : int, optional
        Parquet rows per row group; default ``attrs["row_group_size"]`` (the run's chunk size),
        so this file is byte-identical to the one ``leadml score`` streams.
    """
    path = Path(out)
    _check_target(path, overwrite)
    kind = _format(path, fmt)
    most = int(max((len(r) for r in scores["reasons"]), default=0))
    size = int(row_group_size or scores.attrs.get("row_group_size") or 50_000)
    with _ScoresWriter(
        path,
        kind,
        n_reasons=max(n_reasons if n_reasons is not None else 6, most),
        metadata=_metadata(scores.attrs, scores),
        columns=scores,
        row_group_size=size,
    ) as w:
        for s in range(0, len(scores), size):
            w.write(scores.iloc[s : s + size])
        if not len(scores):
            w.write(scores)
        return w.commit()


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read a scores file written by :func:`write_scores` (Parquet reasons as lists of dicts)."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        return pd.read_csv(p)
    return pd.read_parquet(p)


def run_score(
    data_dir: str | Path,
    out: str | Path,
    *,
    as_of: str | None = None,
    model_specs: Sequence[str] = (),
    fmt: str | None = None,
    overwrite: bool = False,
    config: LeadMLConfig | None = None,
    engine: str | None = None,
    progress: bool | None = None,
) -> str:
    """The ``leadml score`` job: check the target, load models and data, score in chunks
    straight into the file, and return a summary for the terminal.

    Parameters mirror the command's options (module docs); ``model_specs`` are ``--model``
    values. Errors a user can fix raise ``ValueError`` subclasses, ``FileExistsError`` or
    ``FileNotFoundError`` before anything is written.
    """
    from leadml.data.contracts import load_crm

    t0 = time.perf_counter()
    cfg = config or LeadMLConfig()
    path = Path(out)
    _check_target(path, overwrite)
    kind = _format(path, fmt, cfg.scoring.format)
    if engine is not None and engine not in ("leadml", "lightgbm", "shap"):
        raise ScoringError(f"--explainer {engine!r}: expected leadml, lightgbm or shap")
    ts = _as_of(as_of)  # a bad --as-of fails before the slow parts
    models = load_models(
        model_specs or None,
        prefix=cfg.tracking.model_name_prefix,
        tracking_uri=cfg.tracking.tracking_uri,
    )
    data = load_crm(data_dir, columns=cfg.columns)
    job = _prepare(data, ts, models, cfg)
    ex = cfg.explain
    with _ScoresWriter(
        path,
        kind,
        n_reasons=ex.n_positive + ex.n_negative,
        metadata=_metadata(job.attrs, job.head),
        columns=_with_reasons(job.head.iloc[:0], []),
        row_group_size=cfg.scoring.chunk_size,
    ) as w:
        for chunk in job.chunks(cfg, engine, progress):
            w.write(chunk)
        w.commit()
    _log_summary(job, len(job.head))
    tiers = job.head["tier"].value_counts()
    tier_text = ", ".join(f"{t}={int(tiers.get(t, 0)):,}" for t in "ABCD")
    skipped = ", ".join(f"{v:,} {k}" for k, v in job.skipped.items() if v) or "none"
    versions = ", ".join(f"{t} {model_version(m)}" for t, m in job.models.items())
    return (
        f"scored {len(job.head):,} leads as of {job.as_of} (tiers {tier_text}) in "
        f"{time.perf_counter() - t0:.1f}s -> {path}\n"
        f"skipped: {skipped}\n"
        f"models: {versions}"
    )


# --- one lead, for notebooks -----------------------------------------------------------------


def explain_lead(
    lead_id: Any,
    data: CRMData,
    as_of: pd.Timestamp | str | None = None,
    models: Mapping[str, StageModel] | None = None,
    *,
    transition: str | None = None,
    config: LeadMLConfig | None = None,
    engine: str | None = None,
    plot: bool = True,
) -> tuple[pd.DataFrame, Any]:
    """Every reason group of one lead, and a waterfall chart of how they build its score.

    Parameters
    ----------
    lead_id
        The lead.
    data : CRMData
    as_of : timestamp or str, optional
        Default: now (UTC).
    models : mapping, optional
        Default: the registry's champions.
    transition : {"prospect", "opportunity"}, optional
        The model to explain; default the lead's next stage (as in :func:`score`).
    config : LeadMLConfig, optional
    engine : str, optional
        TreeSHAP engine; default ``config.explain.engine``.
    plot : bool
        Draw the waterfall (matplotlib ``Figure``); ``None`` is returned in its place otherwise.

    Returns
    -------
    (DataFrame, Figure or None)
        One row per reason group, largest ``|effect|`` first: ``group``, ``label``, ``text``
        (the sentence, from the group's most influential feature), ``direction``,
        ``contribution`` (log-odds of the raw margin) and ``effect`` (probability, as in the
        scores). ``attrs`` hold ``transition``, ``p`` (the calibrated probability),
        ``margin`` and ``expected_value``.
    """
    from leadml.data.features import build_features
    from leadml.data.timeline import stage_at
    from leadml.explain.reasons import contributions, reason_effects

    cfg = config or LeadMLConfig()
    ts = _as_of(as_of)
    lead_id = _scalar(lead_id)  # numpy scalars print as np.int64(7) in messages
    if models is None:
        models = load_models(
            prefix=cfg.tracking.model_name_prefix, tracking_uri=cfg.tracking.tracking_uri
        )
    c = data.columns
    found = np.flatnonzero((data.leads[c.lead_id] == lead_id).to_numpy())
    if not len(found):
        raise ScoringError(f"leads.{c.lead_id}: no lead {lead_id!r} in the leads table")
    created = pd.Timestamp(data.leads[c.created_at].iloc[found[0]])
    if created >= ts:
        raise ScoringError(
            f"lead {lead_id!r} was created at {created}, not before as_of {ts}; pass a later as_of"
        )
    stage = str(stage_at(data, [lead_id], ts).iloc[0])
    t = transition or NEXT_MODEL.get(stage)
    if t is None:
        raise ScoringError(
            f"lead {lead_id!r} is in stage {stage!r} at {ts}, past what the models predict; "
            "pass transition='prospect' or 'opportunity' to explain a model anyway"
        )
    if t not in models:
        raise ScoringError(f"no {t!r} model given (models: {', '.join(models) or 'none'})")
    m = models[t]
    points = pd.DataFrame({c.lead_id: data.leads[c.lead_id].iloc[found[:1]].to_numpy()})
    points["as_of"] = np.array([ts.to_datetime64()], dtype="datetime64[ns]")
    X = build_features(
        data.leads,
        data.events,
        data.stage_changes,
        points,
        columns=c,
        config=cfg.features,
        spec=m.spec,
    )
    contrib = contributions(m, X, engine or cfg.explain.engine, n_threads=cfg.explain.n_threads)
    spec = m.spec
    groups = list(spec.group_names)
    names = list(spec.names)
    phi = contrib[0, :-1]
    G = np.array([phi[[spec.groups[n] == g for n in names]].sum() for g in groups])
    margin = float(contrib[0].sum())
    effect = reason_effects(m.calibration, np.array([margin]), G[None, :])[0]
    texts = []
    for g in groups:
        idx = [j for j, n in enumerate(names) if spec.groups[n] == g]
        top = idx[int(np.argmax(np.abs(phi[idx])))]
        value = X[names[top]].iloc[0]
        texts.append(spec.describe(names[top], None if pd.isna(value) else _scalar(value)))
    table = pd.DataFrame(
        {
            "group": groups,
            "label": [spec.group_label(g) for g in groups],
            "text": texts,
            "direction": np.where(G > 0, "+", np.where(G < 0, "-", "")),
            "contribution": G,
            "effect": effect,
        }
    )
    table = table.iloc[np.argsort(-np.abs(effect), kind="stable")].reset_index(drop=True)
    p = float(m.calibration(np.array([margin]))[0])
    table.attrs.update(
        transition=t, p=p, margin=margin, expected_value=float(contrib[0, -1]), lead_id=lead_id
    )
    fig = (
        _waterfall(table, float(contrib[0, -1]), margin, m, f"lead {lead_id}: p({t}) = {p:.1%}")
        if plot
        else None
    )
    return table, fig


def _scalar(v: Any) -> Any:
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


def _waterfall(
    table: pd.DataFrame, base: float, margin: float, model: StageModel, title: str
) -> Any:
    """Horizontal waterfall from the average lead to this lead, one bar per reason group.

    With Platt calibration the bars are exact and additive on the calibrated log-odds
    (``a·φ_g``), and the top axis reads positions as probabilities; otherwise they are raw-margin
    log-odds. Each bar is labelled with the reason's effect in probability points.
    """
    import matplotlib.pyplot as plt

    cal = model.calibration
    platt = cal.method == "platt"
    a, b = (cal.a, cal.b) if platt else (1.0, 0.0)
    top = 10
    steps = [
        (str(r.text), a * float(r.contribution), f"{100 * float(r.effect):+.1f} pts")
        for r in table.head(top).itertuples()
    ]
    if len(table) > top:
        rest = a * float(table["contribution"].iloc[top:].sum())
        steps.append((f"{len(table) - top} other reasons together", rest, ""))
    start = a * base + b
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(steps) + 1.6), layout="constrained")
    left = start
    edges = [start]
    for y, (_, v, note) in enumerate(steps):
        ax.barh(y, v, left=left, color="#2e7d32" if v > 0 else "#c62828", height=0.7)
        if note:
            ax.annotate(
                note,
                (max(left, left + v), y),
                xytext=(3, 0),
                textcoords="offset points",
                va="center",
                fontsize=7,
            )
        left += v
        edges.append(left)
    ax.axvline(start, color="#757575", lw=1, ls=":")
    ax.axvline(left, color="black", lw=1, ls="--")
    ax.set_yticks(
        range(len(steps)), [s if len(s) <= 70 else s[:67] + "..." for s, _, _ in steps], fontsize=8
    )
    ax.invert_yaxis()
    lo, hi = min(edges), max(edges)
    pad = 0.12 * (hi - lo or 1.0)
    ax.set_xlim(lo - pad, hi + 2 * pad)
    if platt:
        ax.set_xlabel("calibrated log-odds (dotted: the average lead; dashed: this lead)")

        def to_p(x: Any) -> Any:
            return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))

        def to_x(p: Any) -> Any:
            q = np.clip(np.asarray(p, dtype=float), 1e-9, 1 - 1e-9)
            return np.log(q / (1 - q))

        sec = ax.secondary_xaxis("top", functions=(to_p, to_x))
        p_lo, p_hi = to_p(lo - pad), to_p(hi + 2 * pad)
        ticks = [
            t
            for t in (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.8, 0.9)
            if p_lo <= t <= p_hi
        ]
        sec.set_xticks(ticks, [f"{100 * t:g}%" for t in ticks], fontsize=8)
        sec.set_xlabel("probability", fontsize=8)
    else:
        ax.set_xlabel("raw model log-odds (isotonic calibration: probability in the title)")
    ax.set_title(title, fontsize=10)
    return fig
