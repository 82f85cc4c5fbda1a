"""Command line: thin commands over the package. ``python -m leadml`` works too.

User mistakes (bad data, bad config, missing files, refusing to overwrite) are reported as an
``error:`` message and exit code 2, without a traceback; set ``LEADML_DEBUG=1`` to see one.
Heavy libraries are imported inside the commands so ``leadml --help`` is instant.
"""

from __future__ import annotations

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


def _user_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError, FileExistsError, NotADirectoryError) as e:
            if os.environ.get("LEADML_DEBUG"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was written", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]


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


@main.command()
@click.option(
    "--data",
    "data_dir",
    required=True,
    type=click.Path(),
    help="Directory with leads, events, stage_changes (CSV or Parquet).",
)
@click.option("--config", "config_path", type=click.Path(), help="YAML or TOML config file.")
@_user_errors
def validate(data_dir: str, config_path: str | None) -> None:
    """Check the three tables against the data contract and print a summary."""
    from leadml.contracts import load_crm

    cfg = _config(config_path)
    data = load_crm(data_dir, columns=cfg.columns)
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
@_user_errors
def synth(out_dir: str, n_leads: int, seed: int, start: str, end: str, overwrite: bool) -> None:
    """Write a synthetic CRM (leads, events, stage_changes) with documented true drivers."""
    from leadml.datasets import make_crm, write_crm

    t0 = time.perf_counter()
    data = make_crm(n_leads=n_leads, seed=seed, start=start, end=end)
    write_crm(data, out_dir, overwrite=overwrite)
    s = data.summary()
    click.echo(
        f"wrote {s['leads']:,} leads, {s['events']:,} events, {s['stage_changes']:,} stage changes "
        f"to {out_dir} in {time.perf_counter() - t0:.1f}s"
    )
