"""What each CLI command runs: load, train or score, track, write, and say what happened.

The layer above the package's building blocks: it is the only place (with the notebook
estimator, :mod:`leadml.estimator`) that combines the registry (:mod:`leadml.tracking`) with
training and scoring, so neither of those needs to know MLflow exists. Each ``run_*`` function
returns the text the command prints; user mistakes raise ``ValueError`` subclasses,
``FileExistsError`` or ``FileNotFoundError`` before anything is written.

Models (``--model``)
    ``PATH_OR_URI`` (a bundle directory, a downloaded MLflow model directory or an MLflow model
    URI such as ``models:/leadml-prospect@champion``; the transition is read from the model) or
    ``prospect=PATH_OR_URI`` / ``opportunity=PATH_OR_URI`` (checked against the model). Give it
    once per model. Default: the ``champion`` alias of ``leadml-prospect`` and
    ``leadml-opportunity`` in the MLflow registry.

MLflow
    Every job that logs to MLflow checks first that the tracking server answers
    (:func:`check_tracking`), so an unreachable server fails in seconds, before any data is
    read or any model trained; one that reads a model checks that the registry exists, and
    never creates one (:func:`leadml.tracking.load_registered_model`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from leadml._io import atomic_path, check_target
from leadml._timing import stage
from leadml.config import LeadMLConfig
from leadml.data.contracts import CRMData, load_crm, read_table
from leadml.data.features import FeatureSpec
from leadml.data.flat import FlatDataError
from leadml.data.partitions import open_lead_ranges
from leadml.data.sql import check_table_target, is_database_url, mask_url
from leadml.funnel import TRANSITIONS, tier_counts, to_as_of
from leadml.model.bundle import BundleError, CheckedBundle, check_bundle, save_bundle
from leadml.model.stage import StageModel
from leadml.serve.contract import ScoringError, model_version, output_format, write_scores
from leadml.serve.scoring import score_flat, score_to_file, score_to_table
from leadml.serve.stream import stream_to_file

if TYPE_CHECKING:  # training imports LightGBM and scikit-learn: only the jobs that train
    from leadml.model.training import TrainResult

__all__ = [
    "check_tracking",
    "load_models",
    "load_resolved",
    "load_stage_model",
    "parse_model_specs",
    "resolve_models",
    "run_backtest",
    "run_score",
    "run_score_flat",
    "run_train_flat",
    "train_and_track",
    "train_and_track_flat",
]

_SPEC = re.compile(r"^(prospect|opportunity)=(.+)$")


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


def check_tracking(config: LeadMLConfig | None = None) -> str:
    """Point MLflow at the configured store and fail fast if it does not answer: what a job that
    logs to MLflow runs before any work.

    Parameters
    ----------
    config : LeadMLConfig, optional
        Its ``tracking.tracking_uri`` is used; ``$MLFLOW_TRACKING_URI`` wins when set.

    Returns
    -------
    str
        The tracking URI in use.

    Raises
    ------
    leadml.tracking.TrackingError
        The tracking server (or the registry) does not answer (a ``ValueError``).
    """
    from leadml import tracking  # MLflow: imported only when a run is tracked

    return tracking.connect((config or LeadMLConfig()).tracking.tracking_uri)


def _resolve(target: str | Path, tracking_uri: str | None) -> CheckedBundle | StageModel:
    """One ``--model`` target, checked: a bundle directory (also inside a downloaded MLflow
    model) or a version in a local SQLite registry, verified without importing LightGBM; any
    other MLflow model URI loaded through :mod:`leadml.tracking`."""
    text = str(target)
    local = Path(text)
    if local.exists():
        pyfunc_layout = local / "artifacts" / "bundle"
        return check_bundle(pyfunc_layout if pyfunc_layout.is_dir() else local)
    if ":/" not in text:
        raise BundleError(
            f"--model {text!r} is neither an existing bundle directory nor an MLflow model URI "
            "(e.g. models:/leadml-prospect@champion)"
        )
    # A local SQLite registry is read directly: importing MLflow costs more than the models.
    from leadml._registry import find_local_version

    found = find_local_version(text, tracking_uri)
    if found is not None:
        checked = check_bundle(found.bundle)
        checked.meta["model_version"] = found.label
        return checked
    # Imported here, not above: MLflow takes seconds to import and local bundles never need it.
    from leadml import tracking

    tracking.set_tracking_uri(tracking_uri)
    return tracking.load_registered_model(text)


def _loaded(model: CheckedBundle | StageModel) -> StageModel:
    return model.load() if isinstance(model, CheckedBundle) else model


def load_stage_model(target: str | Path, tracking_uri: str | None = None) -> StageModel:
    """Load one stage model: a bundle directory (also inside a downloaded MLflow model) without
    importing MLflow, or an MLflow model URI (``models:/leadml-prospect@champion``,
    ``models:/leadml-prospect/3``, ``runs:/<id>/model``) through :mod:`leadml.tracking`."""
    return _loaded(_resolve(target, tracking_uri))


def resolve_models(
    specs: Sequence[str] | None = None,
    prefix: str = "leadml",
    *,
    tracking_uri: str | None = None,
) -> dict[str, CheckedBundle | StageModel]:
    """Check the stage models named by ``--model`` values (:func:`load_models`) without
    loading LightGBM's trees: what a job does before it reads any data, so that a bad model
    fails first. :func:`load_resolved` then loads them."""
    wanted = (
        parse_model_specs(specs)
        if specs
        else [(t, f"models:/{prefix}-{t}@champion") for t in TRANSITIONS]
    )
    models: dict[str, CheckedBundle | StageModel] = {}
    for key, target in wanted:
        m = _resolve(target, tracking_uri)
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
        meta = m.meta if isinstance(m, CheckedBundle) else m.metadata
        if "model_version" not in meta and target.startswith("models:/"):
            meta["model_version"] = target.removeprefix("models:/")
        models[m.transition] = m
    return models


def _sums_values(m: CheckedBundle | StageModel) -> bool:
    """Does this model sum the events' values (``features.value_window_days``)?"""
    spec = m.spec if isinstance(m, StageModel) else FeatureSpec.from_dict(m.meta["spec"])
    return bool(spec.value_types) and spec.value_window_days is not None


def load_resolved(models: dict[str, CheckedBundle | StageModel]) -> dict[str, StageModel]:
    """The stage models :func:`resolve_models` checked, loaded."""
    return {t: _loaded(m) for t, m in models.items()}


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
    return load_resolved(resolve_models(specs, prefix, tracking_uri=tracking_uri))


def _score_target(
    data: str | Path,
    out: str | Path | None,
    out_table: str | None,
    fmt: str | None,
    overwrite: bool,
    models_in: Sequence[str],
    cfg: LeadMLConfig,
) -> tuple[Path | None, str | None]:
    """Check ``leadml score``'s output before any work: the file (its path and format), or the
    table (``--out-table`` needs ``--data`` to be a database URL; its name, an existing table
    without ``--overwrite`` and an unreachable server fail now)."""
    if (out is None) == (out_table is None):
        raise ScoringError("give --out FILE or --out-table NAME (one of them)")
    if out_table is None:
        assert out is not None
        path = check_target(Path(out), overwrite, must_be_file=True, inputs=[data, *models_in])
        return path, output_format(path, fmt, cfg.scoring.format)
    if not is_database_url(data):
        raise ScoringError(
            f"--out-table {out_table!r} writes into the --data database; --data {str(data)!r} is "
            "a directory (give a URL such as duckdb:///crm.duckdb, or write a file with --out)"
        )
    if fmt is not None:
        raise ScoringError("--format chooses a file format; a --out-table is a database table")
    check_table_target(str(data), out_table, overwrite)
    return None, None


def _import_in_background(*modules: str) -> None:
    """Import ``modules`` in a background thread, while the data is read (Arrow reads without
    the GIL): LightGBM (with scikit-learn and SciPy) and the numba kernels take seconds to
    import, and the job needs them only after the read. A later import finds them loaded, or
    waits for this one; a failure here is left for that import to report."""
    import importlib
    import threading

    def run() -> None:
        for m in modules:
            try:
                importlib.import_module(m)
            except Exception:  # noqa: BLE001, S112 - the job's own import reports it
                continue

    threading.Thread(target=run, name="leadml-imports", daemon=True).start()


def run_score(
    data_dir: str | Path,
    out: str | Path | None = None,
    *,
    out_table: str | None = None,
    as_of: str | None = None,
    model_specs: Sequence[str] = (),
    fmt: str | None = None,
    overwrite: bool = False,
    config: LeadMLConfig | None = None,
    engine: str | None = None,
    progress: bool | None = None,
    history: str | Path | None = None,
) -> str:
    """The ``leadml score`` job: check the target, load models and data, score in chunks
    straight into the file (``out``) or the table (``out_table``, in the ``data_dir``
    database), and return a summary for the terminal.

    Parameters mirror the command's options (module docs); ``model_specs`` are ``--model``
    values. Errors a user can fix raise ``ValueError`` subclasses, ``FileExistsError`` or
    ``FileNotFoundError`` before anything is written.
    """
    t0 = time.perf_counter()
    cfg = config or LeadMLConfig()
    models_in = [p for _, p in parse_model_specs(model_specs)]
    path, kind = _score_target(data_dir, out, out_table, fmt, overwrite, models_in, cfg)
    if engine is not None and engine not in ("leadml", "lightgbm", "shap"):
        raise ScoringError(f"--explainer {engine!r}: expected leadml, lightgbm or shap")
    ts = to_as_of(as_of)  # a bad --as-of fails before the slow parts
    with stage("models"):  # checked before any data is read; LightGBM parses them after
        resolved = resolve_models(
            model_specs or None,
            prefix=cfg.tracking.model_name_prefix,
            tracking_uri=cfg.tracking.tracking_uri,
        )
    size, workers = cfg.scoring.partition_leads, cfg.scoring.workers
    streamed = size is not None or workers > 1
    values = any(_sums_values(m) for m in resolved.values())  # else the column is not read
    if streamed:
        if out_table is not None:
            raise ScoringError(
                "--partition-leads and --workers read a directory of files; they cannot write "
                "--out-table (the data is a database): score without them"
            )
        _import_in_background("leadml._kernels", "lightgbm", "leadml.explain._treeshap_kernels")
        data: Any = open_lead_ranges(
            data_dir, size, cfg.columns, parts=workers, event_values=values
        )
    else:
        # The kernels validate the data; LightGBM (with scikit-learn and SciPy, ~2 s of one
        # core) waits for the read to end, which uses both cores, and loads beside validation.
        _import_in_background("leadml._kernels")
        data = load_crm(
            data_dir,
            columns=cfg.columns,
            database=cfg.database,
            after_read=lambda: _import_in_background(
                "lightgbm", "leadml.explain._treeshap_kernels"
            ),
            event_values=values,
        )
    with stage("models"):
        models = load_resolved(resolved)
    history = history or cfg.monitor.history_dir
    if history is not None:
        here = Path(history).resolve()
        clash = [str(p) for p in (data_dir, *models_in) if Path(p).resolve() == here]
        if clash:
            raise ScoringError(
                f"--history {str(history)!r} is also an input ({clash[0]}); keep the score "
                "history in a directory of its own"
            )
    job: Any
    if out_table is not None:
        job = score_to_table(
            data,
            ts,
            models,
            str(data_dir),
            out_table,
            cfg,
            overwrite=overwrite,
            engine=engine,
            progress=progress,
            history=history,
        )
        where = f"table {out_table} in {mask_url(str(data_dir))}"
    else:
        assert path is not None and kind is not None
        write = stream_to_file if streamed else score_to_file
        job = write(
            data, ts, models, path, kind, cfg, engine=engine, progress=progress, history=history
        )
        where = str(path)
    tier_text = tier_counts(job.head["tier"])
    skipped = ", ".join(f"{v:,} {k}" for k, v in job.skipped.items() if v) or "none"
    versions = ", ".join(f"{t} {model_version(m)}" for t, m in job.models.items())
    return (
        f"scored {len(job.head):,} leads as of {job.as_of} (tiers {tier_text}) in "
        f"{time.perf_counter() - t0:.1f}s -> {where}\n"
        f"skipped: {skipped}\n"
        f"models: {versions}"
        + (f"\nhistory: {job.attrs['history']}" if "history" in job.attrs else "")
    )


def _read_any(path: str) -> pd.DataFrame:
    if not Path(path).is_file():
        raise FlatDataError(f"table {path!r} does not exist; pass a .csv or .parquet file")
    return read_table(path)


def run_train_flat(
    table: str,
    target: str,
    *,
    id_column: str | None = None,
    drop: Iterable[str] = (),
    time_column: str | None = None,
    order_column: str | None = None,
    allow_columns: Iterable[str] = (),
    positive: str | None = None,
    model_dir: str | None = None,
    config: LeadMLConfig | None = None,
    track: bool = True,
    force: bool = False,
) -> str:
    """``leadml train --table``: train, save the bundle (and track), return the text to print.

    The bundle goes to ``<model_dir or models>/flat-<target>`` (replaced if it exists).
    """
    if track:
        check_tracking(config)  # before reading the table
    result = train_and_track_flat(
        _read_any(table),
        target,
        id_column=id_column,
        drop=drop,
        time_column=time_column,
        order_column=order_column,
        allow_columns=allow_columns,
        positive=positive,
        config=config,
        track=track,
        force=force,
    )
    slug = re.sub(r"[^A-Za-z0-9]+", "-", target).strip("-").lower() or "model"
    path = save_bundle(result.model, Path(model_dir or "models") / f"flat-{slug}", overwrite=True)
    uri = result.tracking.get("model_uri") if result.tracking else None
    return (
        f"{result.report()}\n\nbundle: {path}\n"
        f"score with: leadml score --table FILE --model {uri or path} --out scores.csv"
    )


def run_score_flat(
    table: str,
    model: str,
    out: str,
    *,
    overwrite: bool = False,
    config: LeadMLConfig | None = None,
    as_of: str | None = None,
) -> str:
    """``leadml score --table``: score a flat table into the scores-file contract (sorted by
    score, ``as_of`` and ``model_version`` included; CSV or Parquet by extension), atomically,
    and return a one-line summary."""
    cfg = config or LeadMLConfig()
    path = check_target(out, overwrite, must_be_file=True, inputs=[table, model])
    suffix = path.suffix.lower()
    if suffix not in {".csv", ".parquet", ".pq"}:
        raise FlatDataError(f"--out {out!r}: expected a .csv or .parquet file name")
    m = load_stage_model(model, cfg.tracking.tracking_uri)
    scores = score_flat(_read_any(table), m, cfg, as_of=as_of)
    ex = cfg.explain
    write_scores(scores, path, overwrite=overwrite, n_reasons=ex.n_positive + ex.n_negative)
    return f"scored {len(scores):,} leads (tiers {tier_counts(scores['tier'])}) -> {out}"


def run_backtest(
    *,
    data_dir: str | None = None,
    table: str | None = None,
    out: str | Path = "backtest.csv",
    overwrite: bool = False,
    transitions: Sequence[str] = TRANSITIONS,
    config: LeadMLConfig | None = None,
    track: bool = True,
    **flat_options: Any,
) -> str:
    """``leadml backtest``: the rolling backtest that ``train`` runs, on its own.

    Writes every fold x model row (with a ``transition`` column) to ``out`` as CSV and a PNG
    beside it (``<out>.png``-style, one panel per metric per transition), logs both to MLflow
    (unless ``track`` is false) and returns the fold tables and verdicts as text.
    """
    from leadml.explain.plots import save_backtest_plot

    cfg = config or LeadMLConfig()
    path = check_target(out, overwrite, must_be_file=True, inputs=[data_dir, table])
    if path.suffix.lower() != ".csv":
        raise ValueError(f"--out {str(out)!r}: the backtest table is written as CSV (.csv)")
    if (data_dir is None) == (table is None):
        raise ValueError("give --data DIR (event mode) or --table FILE --target COL (flat mode)")
    if track:
        check_tracking(cfg)
    from leadml.model.training import train, train_flat  # LightGBM, scikit-learn

    if table is not None:
        target = flat_options.pop("target")
        results = {"flat": train_flat(_read_any(table), target, config=cfg, **flat_options)}
    else:
        assert data_dir is not None
        crm = load_crm(data_dir, columns=cfg.columns, database=cfg.database)
        results = {t: train(crm, t, cfg) for t in transitions}
    frames, texts, plots = [], [], []
    for t, r in results.items():
        assert r.backtest is not None
        frames.append(r.backtest.per_fold.assign(transition=t))
        texts.append(f"{r.model.label}\n{r.backtest.format()}")
        plot = path.with_name(f"{path.stem}-{t}.png")
        plots.append(save_backtest_plot(r.backtest.per_fold, plot, title=r.model.label))
    table_out = pd.concat(frames, ignore_index=True)
    first = ["transition", *[c for c in table_out.columns if c != "transition"]]
    with atomic_path(path) as tmp:
        table_out[first].to_csv(tmp, index=False, float_format="%.6g")
    if track:
        from leadml import tracking  # MLflow: imported only when the run is tracked

        for t, r in results.items():
            tracking.log_backtest(r, [path, path.with_name(f"{path.stem}-{t}.png")])
    where = ", ".join(str(p) for p in [path, *plots])
    return "\n\n".join([*texts, f"wrote {where}"])


def _track(result: TrainResult, force: bool) -> dict[str, Any]:
    from leadml import tracking  # MLflow: imported only when a run is tracked

    return tracking.log_training_run(result, force=force)


def train_and_track(
    data: CRMData,
    transition: str,
    config: LeadMLConfig | None = None,
    *,
    track: bool = True,
    force: bool = False,
) -> TrainResult:
    """:func:`leadml.model.training.train`, then (with ``track``) log the run to MLflow,
    register the model and apply the champion gate (``force`` overrides it). An unreachable
    tracking server fails before training (:func:`check_tracking`)."""
    if track:
        check_tracking(config)
    from leadml.model.training import train  # LightGBM, scikit-learn: only when training

    result = train(data, transition, config)
    if track:
        result.tracking = _track(result, force)
    return result


def train_and_track_flat(
    table: pd.DataFrame,
    target: str,
    *,
    config: LeadMLConfig | None = None,
    track: bool = True,
    force: bool = False,
    **options: Any,
) -> TrainResult:
    """:func:`leadml.model.training.train_flat` (``options`` are its keyword arguments), then
    (with ``track``) the same MLflow run, registration (``leadml-flat``) and champion gate as
    the event mode. An unreachable tracking server fails before training."""
    if track:
        check_tracking(config)
    from leadml.model.training import train_flat  # LightGBM, scikit-learn: only when training

    result = train_flat(table, target, config=config, **options)
    if track:
        result.tracking = _track(result, force)
    return result


def run_retrain(
    data_dir: str | Path,
    *,
    transitions: Sequence[str] = TRANSITIONS,
    history: str | Path | None = None,
    config: LeadMLConfig | None = None,
    force: bool = False,
) -> tuple[list[TrainResult], str]:
    """``leadml retrain``: train a challenger per transition on the current data and promote it
    by the written policy (:mod:`leadml.tracking`): a ready challenger becomes champion when it
    holds up against the champion on the same rows, or when the champion is older than
    ``monitor.max_champion_age_days``, or when ``monitor`` (run now on ``history``) raises an
    alert on that champion. A challenger that is not ready never does (``force`` overrides)."""
    from leadml import tracking
    from leadml.model.training import train  # LightGBM, scikit-learn: only when training

    cfg = config or LeadMLConfig()
    check_tracking(cfg)
    data = load_crm(data_dir, columns=cfg.columns, database=cfg.database)
    alerts: dict[str, str] = {}
    lines = []
    history = history or cfg.monitor.history_dir
    if history is not None:
        from leadml.serve.monitor import monitor

        found = monitor(history, data, cfg)
        for a in found.alerts:
            alerts.setdefault(a.transition, f"{a.kind}: {a.message}")
        lines.append(
            "monitor: " + ("; ".join(f"{t} {m}" for t, m in alerts.items()) or "no alerts")
        )
    results = []
    for t in transitions:
        result = train(data, t, cfg)
        policy = tracking.RetrainPolicy(cfg.monitor.max_champion_age_days, alerts.get(t))
        result.tracking = tracking.log_training_run(result, force=force, policy=policy)
        results.append(result)
        lines.append(f"{t}: {result.verdict.reason}\n  decision: {result.tracking['decision']}")
    return results, "\n".join(lines)
