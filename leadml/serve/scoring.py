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

Files
    :mod:`leadml.serve.contract` defines the columns, order and metadata of the scores file and
    writes it; this module computes the rows. Flat-table models are scored by
    :func:`score_flat` into the same contract.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leadml._timing import stage as timed
from leadml.config import LeadMLConfig
from leadml.data.contracts import CRMData, lead_runs
from leadml.data.features import build_features, model_frame
from leadml.data.flat import FlatCleaning, FlatDataError
from leadml.data.layout import EventCounts, LayoutWarning, check_layout
from leadml.data.timeline import stage_at
from leadml.data.trainset import build_scoring_set
from leadml.explain.reasons import (
    Reasons,
    additive_points,
    contributions,
    explain_ranked,
    plain,
)
from leadml.funnel import NEXT_TRANSITION, TIERS, TRANSITIONS, to_as_of
from leadml.model.stage import StageModel
from leadml.serve.contract import (
    DISPLAY_COLUMNS,
    FLAT_COLUMNS,
    SKIP_LABELS,
    ScoresWriter,
    ScoringError,
    call_order,
    model_version,
    parquet_metadata,
    scores_attrs,
)

__all__ = [
    "build_flat_features",
    "explain_lead",
    "score",
    "score_features",
    "score_flat",
    "score_to_file",
    "score_to_table",
]

log = logging.getLogger(__name__)


def _given(models: Mapping[str, StageModel] | None) -> Mapping[str, StageModel]:
    if not models:
        raise ScoringError(
            "no models given; pass {'prospect': model, 'opportunity': model} (load the "
            "registry's champions with leadml.jobs.load_models() or LeadScorer.from_registry())"
        )
    return models


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
    *,
    by_score: bool = False,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Probabilities, score, tier and model version of the rows that have a next-stage model,
    in input order (``by_score``: in the file's order, :func:`call_order`). Returns the frame
    and, per row, its position in ``frames`` and its next-stage transition."""
    base = next(iter(frames.values()))
    n = len(base)
    codes, stages = pd.factorize(base["stage"])  # a handful of stages: looked up once each
    next_t = np.array([*(NEXT_TRANSITION.get(s, "") for s in stages), ""], dtype=object)[codes]
    p: dict[str, np.ndarray] = {}
    for t, m in models.items():
        # Prospects are past the prospect model's question; leads need both answers.
        rows = np.flatnonzero(next_t == "prospect") if t == "prospect" else np.arange(n)
        values = np.full(n, np.nan)
        X = m.features(frames[t])  # the rows are taken without the frame's other columns
        for s in range(0, len(rows), chunk_size):
            part = rows[s : s + chunk_size]
            values[part] = m.probability(_rows(X, part))
        p[t] = values
    keep = np.flatnonzero(np.isin(next_t, list(models)))
    nan = np.full(n, np.nan)
    p_next = np.where(next_t == "prospect", p.get("prospect", nan), p.get("opportunity", nan))
    score = np.zeros(n, dtype=np.int64)
    tier = np.full(n, -1, dtype=np.int64)
    version = np.full(n, -1, dtype=np.int64)
    in_version, versions = pd.factorize(pd.Index([model_version(m) for m in models.values()]))
    for i, (t, m) in enumerate(models.items()):
        at = keep[next_t[keep] == t]
        score[at] = m.to_score(p_next[at])
        tier[at] = pd.Index(TIERS).get_indexer(m.tier(p_next[at]))
        version[at] = in_version[i]
    ids = base["lead_id"].to_numpy()
    if by_score:
        keep = keep[call_order(pd.DataFrame({"score": score[keep], "lead_id": ids[keep]}))]
    head = pd.DataFrame(
        {
            "lead_id": ids[keep],
            "as_of": base["as_of"].to_numpy()[keep],
            "stage": pd.Series(base["stage"].array.take(keep)).astype(_TEXT),
            "p_prospect": p.get("prospect", nan)[keep],
            "p_opportunity": p.get("opportunity", nan)[keep],
            "score": score[keep],
            # A few distinct texts each: turned into text once, then taken.
            "tier": _category_text(tier[keep], pd.CategoricalDtype(TIERS)),
            "model_version": _category_text(version[keep], pd.CategoricalDtype(versions)),
        }
    )
    head["lead_id"] = head["lead_id"].astype(base["lead_id"].dtype)
    return head, keep, next_t[keep]


def _rows(X: pd.DataFrame, at: np.ndarray) -> pd.DataFrame:
    """``X.iloc[at]`` for increasing positions ``at``; a run of consecutive rows is a slice,
    not a copy."""
    if len(at) and int(at[-1]) - int(at[0]) + 1 == len(at):
        return X.iloc[int(at[0]) : int(at[-1]) + 1]
    return X.iloc[at]


def _explain_rows(
    frames: Mapping[str, pd.DataFrame],
    models: Mapping[str, StageModel],
    pos: np.ndarray,
    next_t: np.ndarray,
    config: LeadMLConfig,
    engine: str,
) -> Reasons:
    """Reasons, base score and other points per row (NaN where nothing is explained)."""
    ex = config.explain
    if ex.n_positive == 0 and ex.n_negative == 0:  # scores only: skip the costly part
        return Reasons.empty(len(pos))
    parts: list[tuple[np.ndarray, Reasons]] = []
    for t, m in models.items():
        at = np.flatnonzero(next_t == t)
        if not len(at):
            continue
        found = explain_ranked(
            m,
            m.features(frames[t]).iloc[pos[at]],
            engine=engine,
            n_positive=ex.n_positive,
            n_negative=ex.n_negative,
            n_threads=ex.n_threads,
        )
        parts.append((at, found))
    if len(parts) == 1 and len(parts[0][0]) == len(pos):
        return parts[0][1]
    return Reasons.scatter(len(pos), parts)


def _with_reasons(head: pd.DataFrame, why: Reasons, *, arrow: bool = False) -> pd.DataFrame:
    """``head`` with ``reasons``, ``base_score`` and ``other_points`` after ``tier``.
    ``arrow``: ``reasons`` as an Arrow-backed column (each cell still reads as a list of
    dicts), which a writer takes over without a Python object per reason."""
    out = head.copy(deep=False)  # columns are added, none changed
    at = list(out.columns).index("tier") + 1
    if arrow:
        col = pd.Series(pd.arrays.ArrowExtensionArray(why.arrow()), index=out.index)
    else:
        col = pd.Series(why.lists, index=out.index, dtype=object)
    out.insert(at, "reasons", col)
    out.insert(at + 1, "base_score", np.asarray(why.base_score, dtype="float64"))
    out.insert(at + 2, "other_points", np.asarray(why.other_points, dtype="float64"))
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

    def columns(self) -> pd.DataFrame:
        """The output's columns and dtypes, without rows."""
        return _with_reasons(self.head.iloc[:0], Reasons.empty(0))

    def run_info(self) -> dict[str, Any]:
        """What a score history keeps about this run (:func:`run_info`)."""
        return run_info(self)

    def profiles(self) -> dict[str, dict[str, Any]]:
        """Per model with a drift reference, its rows' drift profile
        (:func:`leadml.model.drift.profile`)."""
        from leadml.model.drift import profile

        out: dict[str, dict[str, Any]] = {}
        for t, m in self.models.items():
            ref = m.metadata.get("reference")
            if ref is None:
                continue
            p = self.head[f"p_{t}"].to_numpy(dtype=float)
            rows = np.flatnonzero(np.isfinite(p))
            out[t] = profile(ref, self.frames[t].iloc[self.pos[rows]], p[rows])
        return out

    def chunks(
        self,
        config: LeadMLConfig,
        engine: str | None,
        progress: bool | None,
        *,
        arrow: bool = False,
    ) -> Iterator[pd.DataFrame]:
        """The output in final order, ``scoring.chunk_size`` rows at a time, explained
        (``arrow``: ``reasons`` Arrow-backed, for a writer; see :func:`_with_reasons`)."""
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
                yield _with_reasons(self.head.iloc[part], why, arrow=arrow)
                bar.update(part.stop - part.start)


def _prepare(
    data: CRMData,
    as_of: pd.Timestamp | str | None,
    models: Mapping[str, StageModel],
    config: LeadMLConfig,
    *,
    checked: bool = False,
) -> _Job:
    """Features, probabilities, order and display columns of every eligible lead of ``data``.
    ``checked``: ``data`` is one range of leads of a CRM whose start, freshness and layout
    the caller checks as a whole (:mod:`leadml.serve.stream`)."""
    ts = to_as_of(as_of)
    ms = _check_models(models)
    c = data.columns
    if not checked:
        check_start(data, ts)
        with timed("layout"):
            _check_fresh(data, ts, config)
            _check_layout(data, ts, ms, config)
    frames: dict[str, pd.DataFrame] = {}
    built: list[tuple[Any, pd.DataFrame]] = []
    stages: dict[str, int] = {}  # the stage of every lead at ts, counted once
    for t, m in ms.items():
        same = next((f for spec, f in built if spec == m.spec), None)
        if same is None:
            with timed("features"):
                same = build_scoring_set(data, ts, config, spec=m.spec)
            if c.lead_id != "lead_id":
                same = same.rename(columns={c.lead_id: "lead_id"})
            stages = stages or same.attrs["stage_counts"]
            # pandas deep-copies attrs into every frame and column taken from a frame: a
            # thousand copies per chunk.
            same.attrs = {}
            built.append((m.spec, same))
        frames[t] = same
    with timed("predict"):
        head, pos, next_t = _head(frames, ms, config.scoring.chunk_size, by_score=True)
    with timed("display"):  # the CRM's display columns and each lead's last activity
        head = _add_display(head, data, ts)

    created = data.leads[c.created_at]
    skipped = {"not created yet": int((created >= ts).sum())}
    for s, label in SKIP_LABELS.items():
        skipped[label] = int(stages.get(s, 0))
    stage = next(iter(frames.values()))["stage"]
    for t in TRANSITIONS:
        if t not in ms:
            src = next(s for s, n in NEXT_TRANSITION.items() if n == t)
            skipped[f"no {t} model given"] = int((stage == src).sum())
    attrs = scores_attrs(ms, ts, skipped=skipped, row_group_size=config.scoring.chunk_size)
    return _Job(ts, ms, frames, head, pos, next_t, skipped, attrs)


def check_start(data: CRMData, as_of: pd.Timestamp) -> None:
    """Refuse an ``as_of`` before any lead exists."""
    if len(data.leads) == 0 or as_of <= data.start:
        raise ScoringError(
            f"as_of {as_of} is not after the first lead's creation ({data.start}): no lead "
            "exists yet to score; pass a later --as-of"
        )


def _check_fresh(data: CRMData, as_of: pd.Timestamp, config: LeadMLConfig) -> None:
    check_freshness(pd.Timestamp(data.end), as_of, config)


def check_freshness(newest: pd.Timestamp, as_of: pd.Timestamp, config: LeadMLConfig) -> None:
    """Refuse (or, with ``scoring.allow_stale``, warn about) an ``as_of`` long after the data
    ends (``newest``: :attr:`CRMData.end`, the newest ``created_at`` / ``changed_at``): every
    lead would look silent since the export, and scores would quietly sink."""
    sc = config.scoring
    lag = as_of - newest
    if lag <= pd.Timedelta(days=sc.max_stale_days):
        return
    what = (
        f"as_of {as_of} is {lag.days} days after the newest row of the data ({newest}), more "
        f"than scoring.max_stale_days={sc.max_stale_days}"
    )
    if sc.allow_stale:
        warnings.warn(f"{what}: scoring anyway (--allow-stale)", LayoutWarning, stacklevel=3)
        return
    raise ScoringError(
        f"{what}: the export looks stale and every lead would look inactive since; export fresh "
        f"data, pass --as-of {newest.floor('D').date()} (the data's end), or --allow-stale"
    )


def _check_layout(
    data: CRMData,
    as_of: pd.Timestamp,
    models: Mapping[str, StageModel],
    config: LeadMLConfig,
    events: EventCounts | None = None,
    tables: tuple[str, ...] = ("leads", "events"),
) -> None:
    """Refuse data whose layout the models were not trained on; warn on suspicious shifts
    (:mod:`leadml.data.layout`). Every difference of every model is listed at once.
    ``events``: the events' counts when ``data`` does not hold them; ``tables``: check only
    these (a CRM read one range of leads at a time checks its leads first, events last)."""
    sc = config.scoring
    problems: list[str] = []
    counted = events
    if counted is None and "events" in tables:
        counted = EventCounts.of(data, as_of)
    for t, m in models.items():
        found, shifts = check_layout(
            data,
            m.spec,
            as_of,
            m.metadata.get("layout"),
            shift=sc.layout_shift,
            # One wording for every model, so a column both models read is listed once.
            what=f"the {t} model" if len(models) == 1 else "the models",
            events=counted,
            tables=tables,
        )
        problems += [p for p in found if p not in problems]
        for w in shifts:
            warnings.warn(f"{w}: scores may be off; check the export", LayoutWarning, stacklevel=3)
    if not problems:
        return
    listed = "\n".join(f"  - {p}" for p in problems)
    if sc.allow_layout_change:
        warnings.warn(
            f"scoring anyway (scoring.allow_layout_change): the data does not match the layout "
            f"the models were trained on:\n{listed}",
            LayoutWarning,
            stacklevel=3,
        )
        return
    raise ScoringError(
        f"the data does not match the layout the models were trained on:\n{listed}\n"
        "fix the export (or map its names with the columns config), retrain on the new layout, "
        "or pass --allow-layout-change to score anyway"
    )


def _add_display(head: pd.DataFrame, data: CRMData, as_of: pd.Timestamp) -> pd.DataFrame:
    c = data.columns
    ids = head["lead_id"].to_numpy()
    # Each lead's latest event is looked up in a thread (numpy and numba, without the GIL)
    # while the display columns are taken here (Arrow, without the GIL either).
    with ThreadPoolExecutor(1, thread_name_prefix="leadml-display") as pool:
        latest = pool.submit(_latest_events, data, ids, as_of)
        lead_pos = pd.Index(data.leads[c.lead_id]).get_indexer(ids)
        out = head.copy(deep=False)  # columns are added, none changed
        for col in DISPLAY_COLUMNS:
            if col in data.leads.columns and col not in (c.lead_id, c.created_at):
                # Taken, then turned into text: only the scored leads, and no Python string per
                # value (the columns stay Arrow-backed where pandas is).
                values = data.leads[col]
                if isinstance(values.dtype, pd.CategoricalDtype):
                    text = _category_text(values.cat.codes.to_numpy()[lead_pos], values.dtype)
                else:
                    text = values.take(lead_pos).astype("string").astype(_TEXT)
                out[col] = text.set_axis(out.index)
        best = latest.result()
    found = best >= 0
    ev = data.events
    when = ev[c.occurred_at].to_numpy(dtype="datetime64[ns]")
    t = np.full(len(ids), np.datetime64("NaT"), dtype="datetime64[ns]")
    t[found] = when[best[found]]
    out["last_activity_at"] = t
    types = ev[c.event_type]
    if isinstance(types.dtype, pd.CategoricalDtype):
        codes = np.full(len(ids), -1, dtype=np.int64)
        codes[found] = np.asarray(types.cat.codes)[best[found]]
        kind = _category_text(codes, types.dtype, "string")
        out["last_activity_type"] = kind.set_axis(out.index)
    else:
        kind = np.full(len(ids), None, dtype=object)
        kind[found] = types.iloc[best[found]].astype(str).to_numpy(dtype=object)
        out["last_activity_type"] = pd.array(kind, dtype="string")
    return out


def _latest_events(data: CRMData, ids: np.ndarray, as_of: pd.Timestamp) -> np.ndarray:
    """The row of each lead's latest event before ``as_of`` (among simultaneous ones the
    first in the table), -1 for none."""
    from leadml._kernels import latest_before

    c = data.columns
    ev = data.events
    starts, run_pos = lead_runs(pd.Index(ids), ev[c.lead_id])
    when = ev[c.occurred_at].to_numpy(dtype="datetime64[ns]").view(np.int64)
    limit = int(as_of.as_unit("ns").value)
    return np.asarray(latest_before(starts, run_pos, when, limit, len(ids)))


#: The display columns' dtype: what pandas makes of a column of text (``str`` from pandas 3).
_TEXT = "str" if int(pd.__version__.split(".")[0]) >= 3 else object


def _category_text(codes: np.ndarray, dtype: pd.CategoricalDtype, to: Any = _TEXT) -> pd.Series:
    """``pd.Categorical.from_codes(codes, dtype=dtype).astype("string").astype(to)``: the
    categories are turned into text once, then taken (a Python string per row costs seconds
    at a million rows)."""
    levels = pd.Series(dtype.categories).astype("string").array
    return pd.Series(levels.take(codes, allow_fill=True)).astype(to)


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
        ``{"prospect": ..., "opportunity": ...}`` (at least one). The registry's champions
        load with :func:`leadml.jobs.load_models` or ``LeadScorer.from_registry()``.
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
    job = _prepare(data, as_of, _given(models), cfg)
    out = pd.concat(list(job.chunks(cfg, engine, progress)), ignore_index=True)
    out.attrs.update(job.attrs)
    _log_summary(job, len(out))
    return out


#: Opens the output of a streamed run: (columns, Parquet metadata, n_reasons, chunk size) ->
#: a writer with ``write(chunk)`` and ``commit()`` that writes nothing unless committed.
OpenWriter = Callable[[pd.DataFrame, dict[bytes, bytes], int, int], Any]


def score_to_file(
    data: CRMData,
    as_of: pd.Timestamp,
    models: Mapping[str, StageModel],
    path: Path,
    fmt: str,
    config: LeadMLConfig,
    *,
    engine: str | None = None,
    progress: bool | None = None,
    history: str | Path | None = None,
) -> _Job:
    """Score ``data`` and stream the explained rows into ``path`` chunk by chunk (the whole file
    or nothing, see :class:`~leadml.serve.contract.ScoresWriter`); returns the run.

    With ``history`` (a directory, :mod:`leadml.serve.history`), each row also gets its trend
    against the newest earlier run there, and the run is added to the history once the file
    is complete."""

    job = _prepare(data, as_of, _given(models), config)
    return _score_into(_file_writer(path, fmt), job, config, engine, progress, history)


def _file_writer(path: Path, fmt: str) -> OpenWriter:
    def open_file(columns: pd.DataFrame, meta: dict[bytes, bytes], n: int, size: int) -> Any:
        return ScoresWriter(
            path, fmt, n_reasons=n, metadata=meta, columns=columns, row_group_size=size
        )

    return open_file


def score_to_table(
    data: CRMData,
    as_of: pd.Timestamp,
    models: Mapping[str, StageModel],
    url: str,
    table: str,
    config: LeadMLConfig,
    *,
    overwrite: bool = False,
    engine: str | None = None,
    progress: bool | None = None,
    history: str | Path | None = None,
) -> _Job:
    """:func:`score_to_file`, into table ``table`` of the database at ``url``: the file's
    columns (``reasons`` as JSON), written and swapped in in one transaction
    (:class:`leadml.data.sql.TableWriter`: the whole table or the previous one)."""
    from leadml.data.sql import TableWriter

    def open_table(columns: pd.DataFrame, meta: dict[bytes, bytes], n: int, size: int) -> Any:
        return TableWriter(
            url, table, overwrite=overwrite, json_columns=("reasons",), columns=columns
        )

    job = _prepare(data, as_of, _given(models), config)
    return _score_into(open_table, job, config, engine, progress, history)


def _score_into(
    open_writer: OpenWriter,
    job: Any,
    config: LeadMLConfig,
    engine: str | None,
    progress: bool | None,
    history: str | Path | None,
) -> Any:
    """Write a prepared run (a :class:`_Job`, or a run read one range of leads at a time,
    :class:`leadml.serve.stream.Streamed`) chunk by chunk; with ``history``, also into the
    score history, with trends."""
    from contextlib import ExitStack

    from leadml.serve.history import HistoryWriter, Previous, add_trend, previous_run

    ex = config.explain
    n_reasons = ex.n_positive + ex.n_negative
    columns = job.columns()
    before = None
    if history is not None:
        run = previous_run(history, job.as_of)
        before = Previous.of(run) if run is not None else None
        columns = add_trend(columns, None, config.monitor.trend_points)
    meta = parquet_metadata(job.attrs, job.head)
    size = config.scoring.chunk_size
    with ExitStack() as stack:
        w = stack.enter_context(open_writer(columns, meta, n_reasons, size))
        h = None
        if history is not None:
            h = stack.enter_context(
                HistoryWriter(
                    history,
                    job.as_of,
                    n_reasons=n_reasons,
                    metadata=meta,
                    columns=columns,
                    row_group_size=size,
                )
            )
        # Files are written behind (a thread); a database connection stays in this thread.
        behind = stack.enter_context(_WriteBehind(threaded=isinstance(w, ScoresWriter)))
        for chunk in job.chunks(config, engine, progress, arrow=True):
            if h is not None:
                with timed("trend"):
                    chunk = add_trend(chunk, before, config.monitor.trend_points)
            with timed("write"):
                behind.put([x.write for x in (h, w) if x is not None], chunk)
        with timed("write"):
            behind.close()
            w.commit()
        if h is not None:
            job.attrs["history"] = str(h.commit(job.run_info()))
    _log_summary(job, len(job.head))
    return job


class _WriteBehind:
    """Writes each chunk in a background thread while the next one is explained: Parquet's
    encoding and compression run in Arrow without the GIL, so on two cores the write mostly
    hides behind the explaining. Chunks are written in the order put, at most two wait; the
    first error stops the writing and is raised in the caller's thread (at the next ``put``,
    or at ``close``). The job's ``write`` stage is the time the caller waits for it.
    Leaving the block without ``close`` (an error elsewhere) stops the thread before the
    writers are discarded. ``threaded=False``: each chunk is written in ``put``."""

    def __init__(self, *, threaded: bool = True) -> None:
        import queue
        import threading

        self._queue: Any = queue.Queue(maxsize=2)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="leadml-writer", daemon=True)
        self._threaded = threaded
        if threaded:
            self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            writes, chunk = item
            if self._error is not None:
                continue  # drain: the caller raises at its next put or at close
            try:
                for write in writes:
                    write(chunk)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
                self._error = e

    def put(self, writes: list[Callable[[pd.DataFrame], None]], chunk: pd.DataFrame) -> None:
        self._raise()
        if not self._threaded:
            for write in writes:
                write(chunk)
            return
        self._queue.put((writes, chunk))

    def close(self) -> None:
        """Wait for every chunk put to be written; raise the writer's error if any."""
        self._stop()
        self._raise()

    def _stop(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def __enter__(self) -> _WriteBehind:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()


def run_info(job: Any) -> dict[str, Any]:
    """What a history keeps about a run besides its scores (``run.json``): the models, with
    their backtest metrics, tier thresholds and drift reference, and the run's drift profile
    against each reference (:mod:`leadml.model.drift`). ``job``: a :class:`_Job` or a
    :class:`leadml.serve.stream.Streamed`."""
    from leadml import __version__

    head = job.head
    profiles = job.profiles()
    models: dict[str, Any] = {}
    for t, m in job.models.items():
        p = head[f"p_{t}"].to_numpy(dtype=float)
        rows = np.flatnonzero(np.isfinite(p))
        ref = m.metadata.get("reference")
        entry: dict[str, Any] = {
            "model_version": model_version(m),
            "horizon_days": m.metadata.get("horizon_days"),
            "gap_days": m.metadata.get("gap_days", 0),
            "label": m.label,
            "metrics": m.metadata.get("metrics", {}),
            "tier_thresholds": list(m.tier_thresholds),
            "tier_info": m.metadata.get("tier_info") or {},
            "rows": len(rows),
        }
        if ref is not None:
            entry["reference"] = ref
            entry["profile"] = profiles[t]
            entry["groups"] = dict(m.spec.groups)
        models[t] = entry
    return {
        "as_of": job.as_of.isoformat(),
        "written_at": pd.Timestamp.now(tz="UTC").isoformat(),
        "leadml_version": __version__,
        "scored": len(head),
        "skipped": job.skipped,
        "models": models,
    }


def _log_summary(job: _Job, n: int) -> None:
    skipped = ", ".join(f"{v:,} {k}" for k, v in job.skipped.items() if v) or "none"
    log.info("scored %s leads as of %s; skipped: %s", f"{n:,}", job.as_of, skipped)


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
    models : mapping
        As in :func:`score`.
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
        ``contribution`` (log-odds of the raw margin) and ``effect`` (the reason's additive
        points as a probability, as in the scores; context groups have 0: they are in the
        base). ``attrs`` hold ``transition``, ``p`` (the calibrated probability), ``margin``,
        ``expected_value`` and ``base_score``.
    """
    cfg = config or LeadMLConfig()
    models = _given(models)
    ts = to_as_of(as_of)
    lead_id = plain(lead_id)  # numpy scalars print as np.int64(7) in messages
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
    t = transition or NEXT_TRANSITION.get(stage)
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
    # The scores' additive points (context groups: 0, they are in the base).
    tenths, _, base, _ = additive_points(m, contrib)
    effect = tenths[0] / 1000.0
    texts = []
    for g in groups:
        idx = [j for j, n in enumerate(names) if spec.groups[n] == g]
        top = idx[int(np.argmax(np.abs(phi[idx])))]
        value = X[names[top]].iloc[0]
        texts.append(spec.describe(names[top], None if pd.isna(value) else plain(value)))
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
    table.attrs["base_score"] = float(base[0])
    table.attrs.update(
        transition=t, p=p, margin=margin, expected_value=float(contrib[0, -1]), lead_id=lead_id
    )
    fig = (
        _waterfall(table, float(contrib[0, -1]), margin, m, f"lead {lead_id}: p({t}) = {p:.1%}")
        if plot
        else None
    )
    return table, fig


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


# --- flat-table mode -------------------------------------------------------------------------


def build_flat_features(table: pd.DataFrame, model: StageModel) -> pd.DataFrame:
    """The model's features frame for a flat table: the stored cleaning plan, then the spec's
    columns, dtypes and category levels (index reset). :func:`score_flat` scores this frame."""
    if model.metadata.get("mode") != "flat":
        raise FlatDataError(
            f"model {model.label!r} was trained in event mode ({model.transition!r}); score it "
            "with `leadml score --data DIR`, not --table"
        )
    plan = FlatCleaning.from_dict(model.metadata["cleaning"])
    return model_frame(plan.apply(table), model.spec).reset_index(drop=True)


def score_flat(
    table: pd.DataFrame,
    model: StageModel,
    config: LeadMLConfig | None = None,
    *,
    as_of: pd.Timestamp | str | None = None,
    engine: str | None = None,
) -> pd.DataFrame:
    """Score and explain a flat table with a flat-mode model, in the scores-file contract.

    The table is cleaned with the plan stored in the model (same placeholders, spellings and
    columns as in training); extra columns are ignored.

    Parameters
    ----------
    table : DataFrame
        One row per lead, in the training export's layout (the target may be absent).
    model : StageModel
        A flat-mode model (``FlatLeadScorer().fit(...).model_``, a bundle or an MLflow model).
    config : LeadMLConfig, optional
        ``explain``: reasons per sign, engine and threads.
    as_of : timestamp or str, optional
        The instant the scores refer to (default now, UTC, to the second).
    engine : str, optional
        Overrides ``config.explain.engine``.

    Returns
    -------
    DataFrame
        :data:`~leadml.serve.contract.FLAT_COLUMNS` sorted by score, then lead_id. ``lead_id``
        is the training id column when present (else a ``lead_id`` column, else the row
        number); ``attrs`` hold the file metadata (:func:`~leadml.serve.contract.scores_attrs`).
    """
    cfg = config or LeadMLConfig()
    ts = to_as_of(as_of)
    X = build_flat_features(table, model)
    p = model.probability(X)
    id_column = model.metadata.get("id_column")
    if id_column and id_column in table.columns:
        ids = table[id_column].to_numpy()
    elif "lead_id" in table.columns:
        ids = table["lead_id"].to_numpy()
    else:
        ids = np.arange(len(table))
    head = pd.DataFrame(
        {
            "lead_id": ids,
            "as_of": np.full(len(ids), ts.to_datetime64(), dtype="datetime64[ns]"),
            "probability": p,
            "score": model.to_score(p),
            "tier": model.tier(p),
            "model_version": model_version(model),
        }
    )
    order = call_order(head)
    ex = cfg.explain
    why = explain_ranked(
        model,
        X.iloc[order],
        engine=engine or ex.engine,
        n_positive=ex.n_positive,
        n_negative=ex.n_negative,
        n_threads=ex.n_threads,
    )
    out = _with_reasons(head.iloc[order].reset_index(drop=True), why)
    out = out[list(FLAT_COLUMNS)]
    out.attrs.update(
        scores_attrs(
            {model.transition: model}, ts, skipped={}, row_group_size=cfg.scoring.chunk_size
        )
    )
    return out
