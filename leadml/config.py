"""One typed, frozen configuration tree, loaded once and handed down in pieces.

Every section rejects unknown keys, so a typo in a YAML/TOML file is an error, not a silent default.
Estimators never see this object: callers unpack the section they need into plain arguments.

Examples
--------
>>> cfg = LeadMLConfig()
>>> cfg.timeline.horizon_days["prospect"], cfg.features.windows_days
(30, (7, 30, 90))
>>> cfg.with_overrides({"model": {"num_leaves": 15}}).model.num_leaves
15
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = [
    "ColumnsConfig",
    "ConfigError",
    "DatabaseConfig",
    "ExplainConfig",
    "FeaturesConfig",
    "FlatConfig",
    "LeadMLConfig",
    "ModelConfig",
    "MonitorConfig",
    "ScoringConfig",
    "SparkConfig",
    "TimelineConfig",
    "TrackingConfig",
    "TrainingConfig",
    "load_config",
]

Transition = Literal["prospect", "opportunity"]
TRANSITIONS: tuple[Transition, ...] = ("prospect", "opportunity")
#: A table name in a database: ``name`` or ``schema.name`` (letters, digits, underscores).
_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message says which key and why."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnsConfig(_Section):
    """Column names of the three input tables (design.md §1 defaults)."""

    lead_id: str = "lead_id"
    created_at: str = "created_at"
    event_type: str = "event_type"
    occurred_at: str = "occurred_at"
    value: str = "value"
    stage: str = "stage"
    changed_at: str = "changed_at"
    reason: str = "reason"


class TimelineConfig(_Section):
    """Observation points and labels: cadence, horizon per transition, gap before the window."""

    cadence_days: int = Field(7, ge=1)
    horizon_days: dict[Transition, int] = Field(
        default_factory=lambda: {"prospect": 30, "opportunity": 60}  # type: ignore[arg-type]
    )
    gap_days: int = Field(0, ge=0)

    @field_validator("horizon_days")
    @classmethod
    def _positive_horizons(cls, v: dict[str, int]) -> dict[str, int]:
        merged = {"prospect": 30, "opportunity": 60, **v}
        bad = {k: h for k, h in merged.items() if h < 1}
        if bad:
            raise ValueError(f"horizons must be at least 1 day, got {bad}")
        return merged


class FeaturesConfig(_Section):
    """Lookback windows, decay and which lead columns may never become features."""

    windows_days: tuple[int, ...] = (7, 30, 90)
    half_life_days: float = Field(14.0, gt=0)
    trend_days: int = Field(14, ge=1)
    # Days over which to sum the events' numeric `value` (e.g. seconds on page) per event type,
    # as `sum_<type>_value_<w>d`; None (the default) leaves value features out.
    value_window_days: int | None = Field(None, ge=1)
    identifier_columns: tuple[str, ...] = ()
    exclude_columns: tuple[str, ...] = ()
    max_category_levels: int = Field(50, ge=2)
    # Event types kept as features (most frequent first); the rest count as one "other" type.
    # Each type adds len(windows_days) + 1 columns: 100 types are ~400 features.
    max_event_types: int = Field(100, ge=2)

    @field_validator("windows_days")
    @classmethod
    def _sorted_windows(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(w < 1 for w in v):
            raise ValueError(f"windows must be a non-empty list of positive day counts, got {v}")
        return tuple(sorted(set(v)))


class ModelConfig(_Section):
    """LightGBM hyper-parameters (passed as constructor arguments, never as this object)."""

    n_estimators: int = Field(300, ge=1)
    learning_rate: float = Field(0.05, gt=0)
    num_leaves: int = Field(15, ge=2)
    max_depth: int = Field(4, ge=-1)
    # None (the default) scales the leaf size with the training rows, see
    # leadml.model.training.effective_min_child_samples: min(400, max(20, n_train // 100)). 400 suits
    # the 100k+ observation points of a large event log but freezes a 1k-5k row table to a few
    # splits; an explicit number is used as given.
    min_child_samples: int | None = Field(None, ge=1)
    subsample: float = Field(0.8, gt=0, le=1)
    subsample_freq: int = Field(1, ge=0)
    colsample_bytree: float = Field(0.8, gt=0, le=1)
    reg_lambda: float = Field(10.0, ge=0)
    cat_smooth: float = Field(50.0, ge=0)
    # None: min(200, max(10, n_train // 200)), the same scaling for categorical groups.
    min_data_per_group: int | None = Field(None, ge=1)
    early_stopping_rounds: int = Field(50, ge=1)
    seed: int = 42
    n_jobs: int = 2


class TrainingConfig(_Section):
    """Out-of-time split, calibration and tiers."""

    start: str | None = None
    end: str | None = None
    # Kept so old config files load, with a clear message if they set them: the rolling backtest
    # replaced the one split in time, so there is no split date or validation share to set.
    split_date: str | None = None
    valid_fraction: float | None = None
    # "platt": Platt or recency-weighted Platt, whichever the backtest finds better (affine in
    # the margin: reasons stay exactly additive); "isotonic" also allows isotonic regression
    # when it clearly wins.
    calibration: Literal["platt", "isotonic"] = "platt"
    # Rolling-origin backtest folds (leadml.model.backtest): choices and metrics come from them.
    n_folds: int = Field(4, ge=1, le=12)

    @field_validator("split_date", "valid_fraction")
    @classmethod
    def _gone(cls, v: Any) -> Any:
        if v is not None:
            raise ValueError(
                "the single train/validation/test split is gone: choices and metrics come from "
                "a rolling backtest over time; remove this key and set training.n_folds instead"
            )
        return v

    tier_shares: tuple[float, float, float] = (0.1, 0.2, 0.3)
    ece_bins: int = Field(10, ge=2)


class ExplainConfig(_Section):
    """How many reasons of each sign a scored lead gets, and which engine computes them."""

    n_positive: int = Field(4, ge=0)
    n_negative: int = Field(2, ge=0)
    # "leadml": the package's own exact TreeSHAP (numba; falls back to "lightgbm" when it cannot
    # run); "lightgbm": Booster.predict(pred_contrib=True); "shap": shap.TreeExplainer. All three
    # give the same values (exact path-dependent TreeSHAP); they differ only in speed.
    engine: Literal["leadml", "lightgbm", "shap"] = "leadml"
    n_threads: int | None = Field(None, ge=1)


class ScoringConfig(_Section):
    """Batch scoring job settings."""

    chunk_size: int = Field(50_000, ge=1)
    format: Literal["parquet", "csv"] = "parquet"
    #: Warn when a fit column's missing share (or a categorical's share outside the trained
    #: levels, or the share of unknown event types) moves by more than this from training.
    layout_shift: float = Field(0.25, gt=0, le=1)
    #: Score even when the layout check refuses (a fit column gone, no known event type); loud.
    allow_layout_change: bool = False
    #: Refuse an ``as_of`` more than this many days after the newest row of the data (an old
    #: export, or the default "now" on a stale one); ``allow_stale`` scores anyway, loudly.
    max_stale_days: int = Field(30, ge=0)
    allow_stale: bool = False
    #: Score one range of this many leads at a time (``--partition-leads``): the events, read
    #: from Parquet (a file or a directory of files), are never all in memory, and the output
    #: is the same file byte for byte (:mod:`leadml.serve.stream`). Default: the whole CRM.
    partition_leads: int | None = Field(None, ge=1)
    #: Score that many ranges of leads at once, each in its own process with its share of the
    #: cores (``--workers``; needs ``partition_leads``, or splits the leads evenly). Memory: one
    #: range per worker. The output is the same file.
    workers: int = Field(1, ge=1)


class SparkConfig(_Section):
    """``leadml score --engine spark``: master (``--spark-master`` and ``$LEADML_SPARK_MASTER``
    win; default ``local[2]``) and lead buckets (default ``spark.sql.shuffle.partitions``)."""

    master: str | None = None
    partitions: int | None = Field(None, ge=1)


class FlatConfig(_Section):
    """Flat-table mode (``leadml train --table``): cleaning, leakage guard and split."""

    # Read as missing (trimmed, case-insensitive). "Unknown"/"None"/"Other" are left out on
    # purpose: in many CRMs they are explicit answers, not untouched form defaults.
    placeholders: tuple[str, ...] = ("Select", "N/A", "NA", "-", "--", "null", "NaN", "")
    leakage_auc_threshold: float = Field(0.9, gt=0.5, le=1.0)
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)

    @field_validator("split_fractions")
    @classmethod
    def _shares(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if min(v) <= 0 or abs(sum(v) - 1) > 1e-9:
            raise ValueError(f"train/validation/test shares must be positive and sum to 1, got {v}")
        return v


class TrackingConfig(_Section):
    """MLflow: None means MLFLOW_TRACKING_URI or else ``sqlite:///mlflow.db`` in the working dir."""

    tracking_uri: str | None = None
    experiment: str = "leadml"
    model_name_prefix: str = "leadml"
    promotion_tolerance: float = Field(0.005, ge=0)
    promotion_metric: Literal["pr_auc", "roc_auc"] = "pr_auc"


class MonitorConfig(_Section):
    """Score history, ``leadml monitor`` thresholds and ``leadml retrain``'s policy."""

    #: Where ``leadml score`` appends each run (``--history`` wins); None: no history.
    history_dir: str | None = None
    #: PSI of a feature (or of the scores) above which the monitor warns, and alerts.
    psi_warn: float = Field(0.1, gt=0)
    psi_alert: float = Field(0.25, gt=0)
    #: Fewer scored (or matured) rows than this: drift and outcome checks are shown, never alerts.
    min_rows: int = Field(200, ge=1)
    #: Matured runs need this many conversions before their ROC AUC can raise an alert.
    min_positives: int = Field(20, ge=1)
    #: A matured run alerts when its ROC AUC's 95% upper bound is below the backtest's lower
    #: bound minus this margin (the live model is clearly worse than its backtest).
    auc_margin: float = Field(0.0, ge=0)
    #: A score move of at least this many points since the previous run is Improving/Declining.
    trend_points: int = Field(5, ge=1)
    #: ``leadml retrain`` promotes a ready challenger when the champion is older than this.
    max_champion_age_days: int = Field(90, ge=1)


class DatabaseConfig(_Section):
    """Where the three tables are when ``--data`` is a database URL (``duckdb:///crm.duckdb``,
    ``postgresql://user@host/db``): a table name each (``schema.table`` allowed), or a SQL
    query each (``leads_query`` ...) whose result is read as that table."""

    leads: str = "leads"
    events: str = "events"
    stage_changes: str = "stage_changes"
    leads_query: str | None = None
    events_query: str | None = None
    stage_changes_query: str | None = None

    @field_validator("leads", "events", "stage_changes")
    @classmethod
    def _table_name(cls, v: str) -> str:
        if not _TABLE_NAME.fullmatch(v):
            raise ValueError(
                f"{v!r} is not a table name; expected letters, digits and underscores, "
                "optionally as schema.table (use a *_query key for anything else)"
            )
        return v

    @field_validator("leads_query", "events_query", "stage_changes_query")
    @classmethod
    def _query(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("an empty query; leave the key out to read the table by name")
        return v


class LeadMLConfig(_Section):
    """The whole configuration tree."""

    columns: ColumnsConfig = ColumnsConfig()
    timeline: TimelineConfig = TimelineConfig()
    features: FeaturesConfig = FeaturesConfig()
    model: ModelConfig = ModelConfig()
    training: TrainingConfig = TrainingConfig()
    explain: ExplainConfig = ExplainConfig()
    scoring: ScoringConfig = ScoringConfig()
    spark: SparkConfig = SparkConfig()
    flat: FlatConfig = FlatConfig()
    tracking: TrackingConfig = TrackingConfig()
    monitor: MonitorConfig = MonitorConfig()
    database: DatabaseConfig = DatabaseConfig()

    def dump(self) -> dict[str, Any]:
        """Plain JSON-able dict: what MLflow logs and the bundle stores."""
        return json.loads(self.model_dump_json())

    def with_overrides(self, overrides: dict[str, Any]) -> LeadMLConfig:
        """Return a new config with nested ``overrides`` merged in (validated)."""
        return _validate(_deep_merge(self.dump(), overrides), source="overrides")


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _validate(raw: dict[str, Any], source: str) -> LeadMLConfig:
    try:
        return LeadMLConfig.model_validate(raw)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid config in {source}: {problems}") from e


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> LeadMLConfig:
    """Load a YAML or TOML config file (or the defaults when ``path`` is None)."""
    raw: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        text = p.read_text(encoding="utf-8")
        try:
            if p.suffix.lower() == ".toml":
                raw = tomllib.loads(text)
            elif p.suffix.lower() in {".yaml", ".yml"}:
                import yaml

                raw = yaml.safe_load(text) or {}
            else:
                raise ConfigError(f"config file {str(p)!r}: expected a .yaml, .yml or .toml file")
        except (tomllib.TOMLDecodeError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"config file {str(p)!r} could not be parsed: {e}") from e
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {str(p)!r} must contain a mapping at the top level")
    cfg = _validate(raw, source=str(path) if path else "defaults")
    return cfg.with_overrides(overrides) if overrides else cfg
