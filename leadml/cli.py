"""Command line: thin commands over the package. ``python -m leadml`` works too.

User mistakes (bad data, bad config, missing files, refusing to overwrite) are reported as an
``error:`` message and exit code 2, without a traceback; set ``LEADML_DEBUG=1`` to see one.
Heavy libraries are imported inside the commands so ``leadml --help`` is instant.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from leadml import __version__

F = TypeVar("F", bound=Callable[..., Any])


_USER_OS_ERRORS = {
    errno.EACCES: "Check the permissions, or choose another --out / --model-dir.",
    errno.EPERM: "Check the permissions, or choose another --out / --model-dir.",
    errno.EROFS: "The file system is read-only: choose another --out / --model-dir.",
    errno.ENOSPC: "The disk is full: free space or write elsewhere (nothing was half-written).",
    errno.EDQUOT: "The disk quota is exhausted: free space or write elsewhere.",
}


def _user_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (
            ValueError,
            FileNotFoundError,
            FileExistsError,
            NotADirectoryError,
            IsADirectoryError,
        ) as e:
            if os.environ.get("LEADML_DEBUG"):
                raise
            # A single data-contract problem reads best on one line; several stay a list.
            problems = getattr(e, "problems", None)
            one = str(problems[0]) if isinstance(problems, list) and len(problems) == 1 else e
            click.echo(f"error: {one}", err=True)
            sys.exit(2)
        except OSError as e:
            # Unwritable or full targets are the user's to fix; other OS errors are bugs.
            if e.errno not in _USER_OS_ERRORS or os.environ.get("LEADML_DEBUG"):
                raise
            where = f" {e.filename}" if e.filename else ""
            click.echo(
                f"error: cannot write or read{where}: {e.strerror or e}. {_USER_OS_ERRORS[e.errno]}",
                err=True,
            )
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was written", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


def _options(*decorators: Callable[[F], F]) -> Callable[[F], F]:
    """Several click options as one decorator (applied in the order listed, as if stacked)."""

    def apply(func: F) -> F:
        for d in reversed(decorators):
            func = d(func)
        return func

    return apply


#: Event mode's input and scope, shared by `train` and `backtest`.
_mode_options = _options(
    click.option(
        "--data",
        "data_dir",
        type=click.Path(),
        help="Directory with the three tables, or a database URL (event mode).",
    ),
    click.option("--config", "config_path", type=click.Path(), help="YAML or TOML config file."),
    click.option(
        "--transition",
        type=click.Choice(["prospect", "opportunity", "all"]),
        default="all",
        show_default=True,
    ),
)

#: Flat mode's table and how to read it, shared by `train` and `backtest`.
_flat_options = _options(
    click.option(
        "--table", type=click.Path(), help="Flat mode: one row per lead (CSV or Parquet)."
    ),
    click.option("--target", help="Flat mode: the outcome column."),
    click.option("--id", "id_column", help="Flat mode: the lead id column."),
    click.option("--drop", multiple=True, help="Flat mode: columns to leave out (repeatable)."),
    click.option("--time-column", help="Flat mode: fold over time on this timestamp column."),
    click.option("--order-column", help="Flat mode: fold over this ordering column."),
    click.option(
        "--allow-column", multiple=True, help="Flat mode: keep a column the leakage guard flags."
    ),
    click.option(
        "--positive",
        help="Flat mode: the outcome value that counts as converted (e.g. Won); default: 0/1, "
        "true/false, yes/no or y/n.",
    ),
)


def _instant(text: str | None, option: str) -> Any:
    """A timestamp option, or a usage error naming the option and the expected form."""
    if text is None:
        return None
    import pandas as pd

    try:
        return pd.Timestamp(text)
    except (ValueError, TypeError) as e:
        raise click.BadParameter(
            f"{text!r} is not a timestamp ({e}); expected ISO-8601 such as 2025-06-30T18:00:00Z",
            param_hint=option,
        ) from None


def _config(path: str | None) -> Any:
    from leadml.config import load_config

    return load_config(path)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="leadml")
def main() -> None:
    """leadml: calibrated, explained lead scoring with LightGBM.

    Typical flow: `leadml synth` (or your CRM export) -> `leadml validate` -> `leadml train`
    -> `leadml score` -> `leadml report`. `leadml demo` runs all of it on synthetic data.
    """
    import warnings

    def _note(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        # Suspicious input (a changed layout) is a warning, not a note: it may change scores.
        loud = ("LayoutWarning", "NoEventsWarning")
        kind = "warning" if getattr(category, "__name__", "") in loud else "note"
        click.echo(f"{kind}: {message}", err=True)

    # Warnings meant for users (e.g. which columns were excluded as identifiers) are one line.
    warnings.showwarning = _note
    warnings.filterwarnings("once", category=UserWarning, module="leadml")


@main.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(),
    help="Directory with leads, events, stage_changes (CSV or Parquet), or a database URL "
    "(duckdb:///crm.duckdb, postgresql://user@host/db; tables named in config database).",
)
@click.option("--config", "config_path", type=click.Path(), help="YAML or TOML config file.")
@click.option(
    "--now",
    help="When the export was taken (ISO-8601, UTC if no offset): rows dated later are problems. "
    "Default: the newest created_at / changed_at, events may trail it by 7 days.",
)
@_user_errors
def validate(data_dir: str, config_path: str | None, now: str | None) -> None:
    """Check the three tables against the data contract and print a summary."""
    from leadml.data.contracts import load_crm

    cfg = _config(config_path)
    data = load_crm(
        data_dir,
        columns=cfg.columns,
        now=_instant(now, "--now"),
        strict_future=True,
        database=cfg.database,
    )
    s = data.summary()
    click.echo(
        f"ok: {s['leads']:,} leads, {s['events']:,} events ({s['event_types']} types), "
        f"{s['stage_changes']:,} stage changes, from {s['start']} to {s['end']}"
    )


@main.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(),
    help="Directory to write the three Parquet tables to.",
)
@click.option("--leads", "n_leads", default=5000, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--start", default="2024-01-01", show_default=True)
@click.option("--end", default="2025-06-30", show_default=True)
@click.option("--overwrite", is_flag=True, help="Replace existing tables in --out.")
@click.option(
    "--drift",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="How much the world changes over the period: rising base rates and shifting drivers "
    "(0 = none, 1 = strong; see leadml.datasets.make_crm).",
)
@_user_errors
def synth(
    out_dir: str, n_leads: int, seed: int, start: str, end: str, overwrite: bool, drift: float
) -> None:
    """Write a synthetic CRM (leads, events, stage_changes) with documented true drivers."""
    from leadml.datasets import make_crm, write_crm

    t0 = time.perf_counter()
    data = make_crm(n_leads=n_leads, seed=seed, start=start, end=end, drift=drift)
    write_crm(data, out_dir, overwrite=overwrite)
    s = data.summary()
    click.echo(
        f"wrote {s['leads']:,} leads, {s['events']:,} events, {s['stage_changes']:,} stage changes "
        f"to {out_dir} in {time.perf_counter() - t0:.1f}s"
    )


@main.command("import")
@click.option(
    "--from",
    "source",
    required=True,
    type=click.Choice(["salesforce", "hubspot"]),
    help="The CRM that wrote the export.",
)
@click.option(
    "--in",
    "in_dir",
    required=True,
    type=click.Path(),
    help="Export folder: Lead.csv (+ LeadHistory, Task, Event, CampaignMember, Opportunity, "
    "OpportunityHistory) or a HubSpot contacts (+ activities) CSV.",
)
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Folder for the tables.")
@click.option(
    "--mapping",
    type=click.Path(),
    help="YAML, TOML or JSON overrides: status/stage value -> leadml stage, activity_types, "
    "timezone.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv"]),
    default="parquet",
    show_default=True,
)
@click.option("--overwrite", is_flag=True, help="Replace existing tables in --out.")
@_user_errors
def import_crm(
    source: str, in_dir: str, out_dir: str, mapping: str | None, fmt: str, overwrite: bool
) -> None:
    """Turn a Salesforce or HubSpot export into leadml's three tables, with a mapping report.

    Personal fields (e-mail, phone, address, free text) are not imported; name, company and
    owner are kept for the rep's report only and never become features.
    """
    from leadml.datasets import import_hubspot, import_salesforce, write_crm

    src, out = Path(in_dir).resolve(), Path(out_dir).resolve()
    if out == src or out.is_relative_to(src):
        raise ValueError(
            f"--out {out_dir!r} is inside the export folder --in {in_dir!r}; write the tables "
            "elsewhere (an export is never written into)"
        )
    run = import_salesforce if source == "salesforce" else import_hubspot
    result = run(in_dir, mapping)
    write_crm(
        result.data, out_dir, format="csv" if fmt == "csv" else "parquet", overwrite=overwrite
    )
    click.echo(result.report.text())
    s = result.data.summary()
    click.echo(
        f"ok: wrote {s['leads']:,} leads, {s['events']:,} events, {s['stage_changes']:,} stage "
        f"changes to {out_dir}"
    )


def _output(out: str | None, out_table: str | None, data_dir: str) -> str:
    """``--out FILE`` or ``--out-table NAME`` (into the ``--data`` database), exactly one; the
    name to print."""
    from leadml.data.sql import is_database_url, mask_url

    if (out is None) == (out_table is None):
        raise click.UsageError("give --out FILE or --out-table NAME (one of them)")
    if out_table is not None and not is_database_url(data_dir):
        raise click.UsageError(
            "--out-table writes into the --data database; give --data as a URL such as "
            "duckdb:///crm.duckdb (or write a file with --out)"
        )
    return str(out) if out is not None else f"table {out_table} in {mask_url(data_dir)}"


def _write_frame(
    frame: Any, out: str | None, out_table: str | None, overwrite: bool, data_dir: str
) -> None:
    """``leadml build``'s output: a Parquet file, atomically, or a table in one transaction."""
    if out_table is not None:
        from leadml.data.sql import write_table

        write_table(data_dir, out_table, frame, overwrite=overwrite)
        return
    from leadml._io import atomic_path

    with atomic_path(Path(str(out)), make_parents=False) as tmp:
        frame.to_parquet(tmp, index=False)


@main.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(),
    help="Directory with the three tables, or a database URL.",
)
@click.option(
    "--transition",
    type=click.Choice(["prospect", "opportunity"]),
    help="Build a training set for this transition.",
)
@click.option(
    "--as-of", "as_of", help="Build scoring features for every lead eligible at this instant."
)
@click.option("--out", type=click.Path(), help="Parquet file to write.")
@click.option(
    "--out-table",
    help="Or: a table to write in the --data database (replaced in one transaction).",
)
@click.option("--start", help="First observation instant (training sets; default: first lead).")
@click.option("--end", help="Last observation instant (training sets; default: data end).")
@click.option("--config", "config_path", type=click.Path(), help="YAML or TOML config file.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file or table.")
@_user_errors
def build(
    data_dir: str,
    transition: str | None,
    as_of: str | None,
    out: str | None,
    out_table: str | None,
    start: str | None,
    end: str | None,
    config_path: str | None,
    overwrite: bool,
) -> None:
    """Build a point-in-time training set (--transition) or scoring features (--as-of)."""
    if (transition is None) == (as_of is None):
        raise click.UsageError(
            "give exactly one of --transition (training set) or --as-of (scoring)"
        )
    from leadml._io import check_target
    from leadml.data.contracts import load_crm
    from leadml.data.sql import check_table_target
    from leadml.data.trainset import build_scoring_set, build_training_set

    where = _output(out, out_table, data_dir)
    if out is not None:
        check_target(out, overwrite, inputs=[data_dir])
    else:
        assert out_table is not None
        check_table_target(data_dir, out_table, overwrite)
    cfg = _config(config_path)
    data = load_crm(data_dir, columns=cfg.columns, database=cfg.database)
    if transition:
        ts = build_training_set(data, transition, start, end, cfg)
        _write_frame(ts.frame, out, out_table, overwrite, data_dir)
        s = ts.summary
        click.echo(
            f"wrote {s['kept']:,} rows ({s['leads']:,} leads, {s['positives']:,} positives, "
            f"positive rate {s['positive_rate']:.3f}) to {where}; {s['points_generated']:,} points "
            f"generated, {s['censored']:,} censored (label window past {data.end})"
        )
    else:
        frame = build_scoring_set(data, as_of, cfg)
        _write_frame(frame, out, out_table, overwrite, data_dir)
        click.echo(
            f"wrote scoring features for {len(frame):,} eligible leads as of {as_of} to {where}"
        )


@main.command()
@_mode_options
@click.option(
    "--force",
    is_flag=True,
    help="Move the champion alias even if the new model is not ready or is worse (loud).",
)
@click.option("--model-dir", type=click.Path(), help="Also save each bundle under this directory.")
@click.option(
    "--no-track", is_flag=True, help="Do not log to MLflow (bundles need --model-dir then)."
)
@_flat_options
@_user_errors
def train(
    data_dir: str | None,
    config_path: str | None,
    transition: str,
    force: bool,
    model_dir: str | None,
    no_track: bool,
    table: str | None,
    target: str | None,
    id_column: str | None,
    drop: tuple[str, ...],
    time_column: str | None,
    order_column: str | None,
    allow_column: tuple[str, ...],
    positive: str | None,
) -> None:
    """Train the stage models (event mode) or a flat-table model.

    Choices (trees, leaves, recency weighting, calibration) come from a rolling backtest over
    time; the shipped model is refit on every labelled row. Prints the backtest beside the
    baselines and a verdict: a model that is not ready never becomes champion (--force
    overrides).
    """
    cfg = _config(config_path)
    if table is not None:
        from leadml.jobs import run_train_flat

        if target is None:
            raise click.UsageError("flat mode needs --target COL")
        click.echo(
            run_train_flat(
                table,
                target,
                id_column=id_column,
                drop=drop,
                time_column=time_column,
                order_column=order_column,
                allow_columns=allow_column,
                positive=positive,
                model_dir=model_dir,
                config=cfg,
                track=not no_track,
                force=force,
            )
        )
        return
    if data_dir is None:
        raise click.UsageError(
            "give --data DIR (event mode) or --table FILE --target COL (flat mode)"
        )
    if no_track and model_dir is None:
        raise click.UsageError("--no-track needs --model-dir, or the trained models go nowhere")
    import warnings

    from leadml.data.contracts import load_crm
    from leadml.data.features import IdentifierColumnsExcluded
    from leadml.jobs import check_tracking, train_and_track
    from leadml.model.training import format_metrics_table

    if not no_track:
        check_tracking(cfg)  # an unreachable server fails now, not after training
    data = load_crm(data_dir, columns=cfg.columns, database=cfg.database)
    results = []
    for t in ("prospect", "opportunity") if transition == "all" else (transition,):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IdentifierColumnsExcluded)
            results.append(train_and_track(data, t, cfg, track=not no_track, force=force))
        for w in caught[:1]:
            click.echo(f"note: {w.message}", err=True)
        if model_dir:
            from leadml.model.bundle import save_bundle

            path = save_bundle(results[-1].model, Path(model_dir) / f"leadml-{t}", overwrite=True)
            click.echo(f"bundle: {path}", err=True)
    click.echo(format_metrics_table(results))


@main.command()
@_mode_options
@click.option(
    "--out",
    default="backtest.csv",
    show_default=True,
    type=click.Path(),
    help="The fold table (CSV); a PNG per model is written beside it.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@click.option("--no-track", is_flag=True, help="Do not log the backtest to MLflow.")
@_flat_options
@_user_errors
def backtest(
    data_dir: str | None,
    config_path: str | None,
    transition: str,
    out: str,
    overwrite: bool,
    no_track: bool,
    table: str | None,
    target: str | None,
    id_column: str | None,
    drop: tuple[str, ...],
    time_column: str | None,
    order_column: str | None,
    allow_column: tuple[str, ...],
    positive: str | None,
) -> None:
    """Rolling backtest over time: every fold, leadml beside the base rate, logistic regression,
    default LightGBM and a marketer's rule, with the readiness verdict."""
    from leadml.jobs import run_backtest

    cfg = _config(config_path)
    if table is not None and target is None:
        raise click.UsageError("flat mode needs --target COL")
    flat = (
        {
            "target": target,
            "id_column": id_column,
            "drop": drop,
            "time_column": time_column,
            "order_column": order_column,
            "allow_columns": allow_column,
            "positive": positive,
        }
        if table is not None
        else {}
    )
    click.echo(
        run_backtest(
            data_dir=data_dir,
            table=table,
            out=out,
            overwrite=overwrite,
            transitions=("prospect", "opportunity") if transition == "all" else (transition,),
            config=cfg,
            track=not no_track,
            **flat,
        )
    )


@main.command()
@click.option(
    "--data",
    "data_dir",
    type=click.Path(),
    help="Directory with the three tables, or a database URL (duckdb:///crm.duckdb, "
    "postgresql://user@host/db).",
)
@click.option(
    "--as-of",
    "as_of",
    help="Score as of this instant (default: now, UTC, to the second; refused when more than "
    "scoring.max_stale_days after the data's newest row, see --allow-stale).",
)
@click.option("--out", type=click.Path(), help="Output file (.parquet or .csv).")
@click.option(
    "--out-table",
    help="Or: a table in the --data database, written and swapped in in one transaction "
    "(readers see the old table or the new one; a failed run leaves the old one).",
)
@click.option(
    "--model",
    "model_specs",
    multiple=True,
    help="Bundle directory or MLflow model URI, optionally as prospect=... / opportunity=...; "
    "once per model. Default: the champion alias of leadml-prospect and leadml-opportunity.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "csv"]),
    help="Output format (default: from --out's extension, else config scoring.format).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file or --out-table.")
@click.option("--config", "config_path", type=click.Path(), help="YAML or TOML config file.")
@click.option(
    "--explainer",
    type=click.Choice(["leadml", "lightgbm", "shap"]),
    help="TreeSHAP engine; same values, different speed (default: config explain.engine, leadml).",
)
@click.option(
    "--engine",
    type=click.Choice(["local", "spark"]),
    default="local",
    show_default=True,
    help="Where the job runs: this process, or Spark (pip install 'leadml[spark]').",
)
@click.option(
    "--spark-master",
    help="Spark master for --engine spark (default: $LEADML_SPARK_MASTER, config spark.master, "
    "else local[2]; under spark-submit, its own).",
)
@click.option("--table", type=click.Path(), help="Flat mode: score this one-row-per-lead table.")
@click.option(
    "--allow-layout-change",
    is_flag=True,
    help="Score even when the data's layout differs from the training data's (a fit column "
    "gone, no known event type); the differences are printed as warnings.",
)
@click.option(
    "--allow-stale",
    is_flag=True,
    help="Score an --as-of more than scoring.max_stale_days (30) after the data's newest row.",
)
@click.option(
    "--partition-leads",
    type=click.IntRange(min=1),
    help="Read and score N leads at a time (config scoring.partition_leads): memory is set by "
    "N, not by the CRM; the events must be Parquet (a file or a directory of files). Same "
    "output, byte for byte.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Score that many ranges of leads at once, each in its own process (config "
    "scoring.workers; with --partition-leads, or the leads split evenly). Same output.",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Print where the time and memory went: models, read, validate, features, predict, "
    "explain, reasons, write (seconds and peak RSS), on stderr.",
)
@click.option(
    "--history",
    type=click.Path(),
    help="Score history directory (default: config monitor.history_dir): the run is added to "
    "it (replacing an earlier run of the same --as-of) and each lead gets its trend since the "
    "previous run (previous_score, score_change, trend, changes). Read by `leadml monitor`.",
)
@_user_errors
def score(
    data_dir: str | None,
    as_of: str | None,
    out: str | None,
    out_table: str | None,
    model_specs: tuple[str, ...],
    fmt: str | None,
    overwrite: bool,
    config_path: str | None,
    explainer: str | None,
    engine: str,
    spark_master: str | None,
    table: str | None,
    allow_layout_change: bool,
    allow_stale: bool,
    partition_leads: int | None,
    workers: int | None,
    verbose: bool,
    history: str | None,
) -> None:
    """Score every eligible lead with reasons; writes the whole file or nothing.

    A lead is scored by the prospect model, a prospect by the opportunity model. Rows are
    sorted by score (highest first), then lead_id.
    """
    cfg = _config(config_path)
    if allow_layout_change or allow_stale:
        allowed = {"allow_layout_change": allow_layout_change, "allow_stale": allow_stale}
        cfg = cfg.with_overrides({"scoring": {k: True for k, v in allowed.items() if v}})
    if partition_leads is not None:
        cfg = cfg.with_overrides({"scoring": {"partition_leads": partition_leads}})
    if workers is not None:
        cfg = cfg.with_overrides({"scoring": {"workers": workers}})
    from leadml._io import check_target
    from leadml.jobs import parse_model_specs

    models_in = [p for _, p in parse_model_specs(model_specs)]
    if (out is None) == (out_table is None):
        raise click.UsageError("give --out FILE or --out-table NAME (one of them)")
    if out is not None:
        check_target(out, overwrite, inputs=[data_dir, table, *models_in])
    if spark_master is not None and engine != "spark":
        raise click.UsageError("--spark-master needs --engine spark")
    if (partition_leads or workers) and (table is not None or engine == "spark"):
        raise click.UsageError(
            "--partition-leads and --workers are for the local engine scoring --data DIR "
            "(Spark partitions the leads itself: config spark.partitions)"
        )
    if out_table is not None and (table is not None or engine == "spark"):
        raise click.UsageError(
            "--out-table is written by the local engine from --data URL (not with --table or "
            "--engine spark); write a file with --out instead"
        )
    if table is not None:
        assert out is not None
        if engine == "spark":
            raise click.UsageError(
                "--engine spark scores event data (--data DIR); a flat --table is scored locally"
            )
        from leadml.jobs import run_score_flat

        if len(model_specs) != 1:
            raise click.UsageError("flat mode needs exactly one --model")
        if history:
            raise click.UsageError("--history keeps event-mode runs (--data DIR), not --table")
        click.echo(
            run_score_flat(table, model_specs[0], out, overwrite=overwrite, config=cfg, as_of=as_of)
        )
        return
    if data_dir is None:
        raise click.UsageError("give --data DIR (event mode) or --table FILE (flat mode)")
    if engine == "spark" and (history or cfg.monitor.history_dir):
        raise click.UsageError(
            "--history is kept by the local engine only (not yet by --engine spark); score "
            "locally, or leave the history out"
        )
    if engine == "spark":
        from leadml.data.sql import is_database_url
        from leadml.jobs import load_models
        from leadml.serve.spark import run_score_spark

        assert out is not None
        if is_database_url(data_dir):
            raise click.UsageError(
                "--engine spark reads Parquet or CSV tables (a directory); export the database "
                "tables to Parquet first, or score with the local engine"
            )

        if explainer is not None:
            cfg = cfg.with_overrides({"explain": {"engine": explainer}})

        click.echo(
            run_score_spark(
                data_dir,
                as_of,
                out,
                load_models(
                    list(model_specs) or None,
                    prefix=cfg.tracking.model_name_prefix,
                    tracking_uri=cfg.tracking.tracking_uri,
                ),
                overwrite=overwrite,
                config=cfg,
                master=spark_master,
                fmt=fmt,
            )
        )
        return
    from leadml._timing import breakdown
    from leadml.jobs import run_score

    with breakdown() as spent:
        text = run_score(
            data_dir,
            out,
            out_table=out_table,
            as_of=as_of,
            model_specs=model_specs,
            fmt=fmt,
            overwrite=overwrite,
            config=cfg,
            engine=explainer,
            history=history,
        )
    click.echo(text)
    if verbose:
        click.echo(spent.table(), err=True)


@main.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(),
    help="The current CRM: a directory or a database URL.",
)
@click.option("--config", "config_path", type=click.Path(), help="YAML or TOML config file.")
@click.option(
    "--transition",
    type=click.Choice(["prospect", "opportunity", "all"]),
    default="all",
    show_default=True,
)
@click.option(
    "--history",
    type=click.Path(),
    help="Run `leadml monitor` on this score history first: an alert on a champion lets a ready "
    "challenger replace it (default: config monitor.history_dir, if set).",
)
@click.option("--force", is_flag=True, help="Promote even a challenger that is not ready (loud).")
@_user_errors
def retrain(
    data_dir: str, config_path: str | None, transition: str, history: str | None, force: bool
) -> None:
    """Train challengers on the current data and promote them by the written policy.

    A challenger must be ready (its backtest beats the base rate and the baselines). It then
    becomes champion when it holds up against the champion on the same rows, when the champion
    is older than monitor.max_champion_age_days (90), or when the monitor alerts on the
    champion. Every decision is logged on the MLflow run and the model version.
    """
    from leadml.jobs import run_retrain

    cfg = _config(config_path)
    ts = ("prospect", "opportunity") if transition == "all" else (transition,)
    _, text = run_retrain(data_dir, transitions=ts, history=history, config=cfg, force=force)
    click.echo(text)


@main.command()
@click.option("--transition", type=click.Choice(["prospect", "opportunity"]), required=True)
@click.option("--reason", required=True, help="Why (logged on the registry for the team).")
@click.option("--to", "to_version", help="This version instead of the previous champion.")
@click.option("--config", "config_path", type=click.Path(), help="YAML or TOML config file.")
@_user_errors
def rollback(transition: str, reason: str, to_version: str | None, config_path: str | None) -> None:
    """Move the champion alias back to the version that was champion before (or --to)."""
    from leadml.tracking import rollback as do_rollback

    cfg = _config(config_path)
    tc = cfg.tracking
    click.echo(
        do_rollback(
            transition,
            reason,
            to=to_version,
            prefix=tc.model_name_prefix,
            tracking_uri=tc.tracking_uri,
            experiment=tc.experiment,
        )
    )


@main.command()
@click.option(
    "--history",
    type=click.Path(),
    help="Score history written by `leadml score --history` (default: config monitor.history_dir).",
)
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(),
    help="The current CRM export (outcomes since the runs, and the data's end): a directory or "
    "a database URL.",
)
@click.option("--config", "config_path", type=click.Path(), help="YAML or TOML config file.")
@click.option("--json", "json_out", type=click.Path(), help="Also write the result as JSON here.")
@click.option("--html", "html_out", type=click.Path(), help="Also write an offline HTML page here.")
@click.option("--overwrite", is_flag=True, help="Replace existing --json / --html files.")
@click.option(
    "--no-track",
    is_flag=True,
    help="Do not log to MLflow (default: log when the runs were scored by registry models).",
)
@_user_errors
def monitor(
    history: str | None,
    data_dir: str,
    config_path: str | None,
    json_out: str | None,
    html_out: str | None,
    overwrite: bool,
    no_track: bool,
) -> None:
    """Hold past scoring runs to their outcomes and to the training data.

    Matured runs: realised conversion per tier, ROC AUC, PR AUC and calibration against the
    model's backtest. Pending runs: implied against arrived conversion. Every run: drift (PSI)
    of each input and of the scores. Exit code 3 when an alert fires, 0 otherwise.
    """
    from leadml._io import check_target
    from leadml.data.contracts import load_crm
    from leadml.serve.monitor import (
        ALERT_EXIT_CODE,
        write_monitor_json,
        write_monitor_page,
    )
    from leadml.serve.monitor import (
        monitor as run_monitor,
    )

    cfg = _config(config_path)
    history = history or cfg.monitor.history_dir
    if history is None:
        raise click.UsageError("give --history DIR (or set monitor.history_dir in the config)")
    for out in (json_out, html_out):
        if out is not None:
            check_target(out, overwrite, must_be_file=True, inputs=[data_dir, history])
    data = load_crm(data_dir, columns=cfg.columns, database=cfg.database)
    result = run_monitor(history, data, cfg)
    click.echo(result.table())
    if json_out is not None:
        click.echo(f"wrote {write_monitor_json(result, json_out)}")
    if html_out is not None:
        click.echo(f"wrote {write_monitor_page(result, html_out)}")
    if not no_track:
        from leadml.tracking import log_monitor

        logged = log_monitor(result, cfg)
        if logged:
            click.echo(logged)
    if result.alert:
        sys.exit(ALERT_EXIT_CODE)


@main.command()
@click.option(
    "--scores", required=True, type=click.Path(), help="Parquet file written by `leadml score`."
)
@click.option(
    "--out", required=True, type=click.Path(), help="report.html (or .csv with --format csv)."
)
@click.option("--owner", help="Only this rep's leads.")
@click.option("--top", type=click.IntRange(min=1), help="Only the N best-scored leads.")
@click.option("--previous", type=click.Path(), help="An earlier scores file: show what moved.")
@click.option(
    "--format", "fmt", type=click.Choice(["html", "csv"]), default="html", show_default=True
)
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@_user_errors
def report(
    scores: str,
    out: str,
    owner: str | None,
    top: int | None,
    previous: str | None,
    fmt: str,
    overwrite: bool,
) -> None:
    """Write the rep's self-contained HTML report (or a CRM-ready CSV)."""
    from leadml.report import write_report

    path = write_report(
        scores, out, previous_path=previous, owner=owner, top=top, fmt=fmt, overwrite=overwrite
    )
    click.echo(f"wrote {path.resolve()}")


@main.command()
@click.option(
    "--dir",
    "work_dir",
    default="data/processed/demo",
    show_default=True,
    type=click.Path(),
    help="Where the demo writes its data, scores and report.",
)
@click.option("--leads", "n_leads", default=8000, show_default=True, type=click.IntRange(min=500))
@click.option("--seed", default=7, show_default=True, type=int)
@_user_errors
def demo(work_dir: str, n_leads: int, seed: int) -> None:
    """End to end on synthetic data: synth -> train both models (MLflow) -> score two weekly runs
    into a history -> report -> monitor."""
    import shutil

    import pandas as pd

    from leadml.config import LeadMLConfig
    from leadml.datasets import make_crm, write_crm
    from leadml.explain.reasons import reason_sentence
    from leadml.jobs import train_and_track
    from leadml.model.training import format_metrics_table
    from leadml.report import write_report
    from leadml.serve.contract import read_scores
    from leadml.serve.monitor import monitor, write_monitor_page
    from leadml.serve.scoring import score_to_file
    from leadml.tracking import set_tracking_uri

    root = Path(work_dir)
    if root.exists():
        shutil.rmtree(root)  # the demo owns this directory; reruns start clean
    root.mkdir(parents=True)
    cfg = LeadMLConfig()
    t0 = time.perf_counter()
    data = make_crm(n_leads=n_leads, seed=seed)
    write_crm(data, root / "crm")
    click.echo(
        f"[1/5] synthetic CRM: {n_leads:,} leads, {len(data.events):,} events -> {root / 'crm'}"
    )
    uri = set_tracking_uri(cfg.tracking.tracking_uri)
    import warnings

    from leadml.data.features import IdentifierColumnsExcluded

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        results = [train_and_track(data, t, cfg) for t in ("prospect", "opportunity")]
    click.echo(f"[2/5] trained both stage models (MLflow: {uri})\n")
    click.echo(format_metrics_table(results) + "\n")
    as_of = data.end.floor("D") - pd.Timedelta(days=7)
    # The models just trained (they are also in the registry; a model that is not ready is
    # registered but not champion, so the demo does not read the alias).
    models = {r.model.transition: r.model for r in results}
    # Two weekly runs into a score history: the second knows each lead's trend since the first.
    history = root / "history"
    score_to_file(
        data,
        as_of - pd.Timedelta(days=7),
        models,
        root / "scores-previous.parquet",
        "parquet",
        cfg,
        history=history,
    )
    out = root / "scores.parquet"
    score_to_file(data, as_of, models, out, "parquet", cfg, history=history)
    scores = read_scores(out)
    click.echo(
        f"[3/5] scored {len(scores):,} leads as of {as_of.date()} (and a week before, into "
        f"{history}) -> {out}"
    )
    html = write_report(out, root / "report.html")
    click.echo(f"[4/5] report for reps -> {html.resolve()}")
    watch = monitor(history, data, cfg)
    page = write_monitor_page(watch, root / "monitor.html")
    alerts = f"{len(watch.alerts)} alert(s)" if watch.alerts else "no alerts"
    click.echo(f"[5/5] monitor: {alerts} -> {page.resolve()}\n")
    click.echo("Top 10 leads to call:")
    for r in scores.head(10).itertuples():
        click.echo(f"  {r.tier} {r.score:>3}  {r.name} ({r.company}) — {r.stage}")
        for reason in list(r.reasons)[:3]:
            click.echo(f"        {reason_sentence(reason)}")
    click.echo(f"\ndone in {time.perf_counter() - t0:.0f}s. Open {html.resolve()} in a browser.")
