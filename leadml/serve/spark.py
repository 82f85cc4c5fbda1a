"""The same feature and scoring functions, run per lead partition on Spark.

Nothing here re-implements a feature or a score: every partition of leads goes through the very
pandas functions the local path uses (:func:`leadml.data.features.build_features`,
:func:`leadml.data.trainset.build_scoring_set`, :func:`leadml.serve.scoring.score`), so Spark and local
outputs agree row for row.

How the work is split
---------------------
Every input row gets a bucket ``pmod(hash(lead_id), partitions)``. The small per-lead tables
(leads, stage changes and, for features, the observation points) are stacked into one tagged frame
(``_leadml_table`` says which table a row came from, the other tables' columns are null); events
keep their own narrow frame. Both are grouped by the bucket and **cogrouped**, so one pandas call
sees every row of its leads, wherever those rows sat in the input: events are shuffled once, by
lead. Buckets with no rows are never called; a bucket with leads but no events gets an empty
events frame. Stage changes and events get a row number before the shuffle so rows of one lead with
the same timestamp keep their input order, as :func:`leadml.data.contracts.validate` keeps it.

What is broadcast: the model bundles (LightGBM text + JSON, written by
:func:`leadml.model.bundle.save_bundle` and verified by :func:`leadml.model.bundle.load_bundle` on each
executor, nothing unpickled) and the feature spec. Each Python worker loads the models once.

Timestamps are naive UTC in leadml. Spark ``TIMESTAMP_NTZ`` columns (what Spark reads from
Parquet files written by pandas) pass through unchanged; ``TIMESTAMP`` columns are read in the
session time zone, which :func:`get_spark` sets to UTC. Category levels come from the spec:
categorical features are strings in Spark and become pandas categories again in
:func:`collect_features`.

Scoring on a cluster
--------------------
Install ``leadml[spark]`` (same version) on the driver and every executor, then either::

    leadml score --engine spark --spark-master yarn --data s3a://crm/ --as-of 2025-04-01 \\
        --out s3a://scores/2025-04-01/

(``--out`` ending in ``/`` writes Spark's partitioned Parquet directory; any other path collects
the scores to the driver and writes the same single file as the local scorer), or from Python
with :func:`score_spark`.

The MLflow route
----------------
A registered leadml model is an MLflow pyfunc whose input is a scoring set (``lead_id``,
``as_of``, ``stage`` and the model's features, categoricals as strings) and whose output is the
scorer's columns. :func:`build_scoring_set_spark` builds that input on Spark; MLflow's
``spark_udf`` applies the model::

    import mlflow
    from pyspark.sql import functions as F
    from leadml.serve.spark import build_scoring_set_spark, get_spark
    from leadml.tracking import load_stage_model

    spark = get_spark()
    uri = "models:/leadml-prospect@champion"
    spec = load_stage_model(uri).spec
    X = build_scoring_set_spark(leads, events, stage_changes, "2025-04-01", spec=spec)
    X = X.filter(F.col("stage") == "lead").withColumn("lead_id", F.col("lead_id").cast("string"))
    udf = mlflow.pyfunc.spark_udf(
        spark, uri, env_manager="local",
        result_type="p_prospect double, score long, tier string, model_version string, "
        "reasons array<struct<group:string,text:string,direction:string,effect:double,"
        "evidence:string>>",
    )
    scored = X.withColumn("out", udf(F.struct(*X.columns))).select("lead_id", "out.*")

(The model's signature takes ``lead_id`` as a string.) :func:`score_spark` does the same for both
stage models at once, with the bundles broadcast instead of loaded through MLflow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from functools import reduce
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from leadml._io import check_target, exists_error
from leadml.config import ColumnsConfig, FeaturesConfig, LeadMLConfig
from leadml.data.contracts import CRMData
from leadml.data.features import FeatureSpec, to_categorical
from leadml.funnel import tier_counts, to_as_of

try:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql import functions as F
    from pyspark.sql import types as T
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "leadml.serve.spark needs pyspark: pip install 'leadml[spark]' (and Java 17 on the machine)"
    ) from e

if TYPE_CHECKING:
    from leadml.model.stage import StageModel

__all__ = [
    "DEFAULT_MASTER",
    "build_features_spark",
    "build_scoring_set_spark",
    "collect_features",
    "collect_scores",
    "get_spark",
    "load_crm_spark",
    "resolve_master",
    "run_score_spark",
    "score_spark",
    "to_spark",
]

DEFAULT_MASTER = "local[2]"
MASTER_ENV = "LEADML_SPARK_MASTER"

_KEY = "_leadml_key"
_TABLE = "_leadml_table"
_ROW = "_leadml_row"
_STAGE = "_leadml_stage"
_CHANGED_AT = "_leadml_changed_at"
_AS_OF = "_leadml_as_of"

REASON_TYPE = T.ArrayType(
    T.StructType(
        [
            T.StructField("group", T.StringType()),
            T.StructField("text", T.StringType()),
            T.StructField("direction", T.StringType()),
            T.StructField("effect", T.DoubleType()),
            T.StructField("evidence", T.StringType()),
        ]
    )
)
_TIMESTAMP_TYPES = (T.TimestampType, T.TimestampNTZType)


# --------------------------------------------------------------------------------------------
# Session


def resolve_master(master: str | None = None, config: LeadMLConfig | None = None) -> str | None:
    """Spark master to use: ``master``, else ``$LEADML_SPARK_MASTER``, else ``spark.master`` of
    the config, else ``local[2]``. None under ``spark-submit``, which has already chosen one."""
    configured = config.spark.master if config is not None else None
    chosen = master or os.environ.get(MASTER_ENV) or configured
    if chosen:
        return chosen
    # spark-submit starts the JVM first and tells Python where it is; its --master wins then.
    return None if os.environ.get("PYSPARK_GATEWAY_PORT") else DEFAULT_MASTER


def get_spark(
    master: str | None = None,
    *,
    app_name: str = "leadml",
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """The active SparkSession, or a new one on ``master`` (see :func:`resolve_master`).

    A new session runs executors on this Python (``PYSPARK_PYTHON`` unless set), moves data to
    pandas through Arrow, reads ``TIMESTAMP`` columns in UTC and keeps the console free of progress
    bars; ``conf`` adds or overrides settings. An already active session (a notebook, a
    ``spark-submit`` job) is returned as it is.
    """
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = {
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.session.timeZone": "UTC",
        "spark.ui.showConsoleProgress": "false",
        **dict(conf or {}),
    }
    builder = SparkSession.builder.appName(app_name)
    resolved = resolve_master(master)
    if resolved is not None:
        builder = builder.master(resolved)
    for key, value in settings.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def to_spark(spark: SparkSession, data: CRMData) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Validated :class:`~leadml.data.contracts.CRMData` -> Spark ``(leads, events, stage_changes)``.

    Categories become strings and timestamps are floored to microseconds (Spark's resolution;
    features use whole seconds). Row order is kept, so ties keep their order as well.
    """

    def convert(df: pd.DataFrame) -> DataFrame:
        out = df.copy()
        for col in out.columns:
            s = out[col]
            if isinstance(s.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(s.dtype):
                out[col] = s.astype("object").where(s.notna(), None)
            elif pd.api.types.is_datetime64_any_dtype(s.dtype):
                out[col] = s.dt.floor("us")
        return spark.createDataFrame(out)

    return convert(data.leads), convert(data.events), convert(data.stage_changes)


# --------------------------------------------------------------------------------------------
# Inputs


def _require(df: DataFrame, table: str, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        have = ", ".join(map(repr, df.columns[:12]))
        raise ValueError(
            f"{table}: missing column(s) {', '.join(map(repr, missing))} (found: {have}); "
            "rename them or map them with the `columns` config section"
        )


def _require_timestamp(df: DataFrame, table: str, column: str) -> None:
    dtype = df.schema[column].dataType
    if not isinstance(dtype, _TIMESTAMP_TYPES):
        raise ValueError(
            f"{table}.{column}: has Spark type {dtype.simpleString()}, not a timestamp; "
            f"cast it first, e.g. df.withColumn({column!r}, F.col({column!r}).cast('timestamp'))"
        )


def _partitions(spark: SparkSession, partitions: int | None) -> int:
    if partitions is None:
        return int(spark.conf.get("spark.sql.shuffle.partitions") or 200)
    if int(partitions) < 1:
        raise ValueError(f"partitions must be at least 1, got {partitions}")
    return int(partitions)


def _bucket(df: DataFrame, lead_id: str, partitions: int) -> DataFrame:
    return df.withColumn(_KEY, F.pmod(F.hash(F.col(lead_id)), F.lit(partitions)))


def _lead_side(
    leads: DataFrame,
    stage_changes: DataFrame,
    c: ColumnsConfig,
    lead_columns: Sequence[str],
    *,
    points: DataFrame | None = None,
) -> DataFrame:
    """Leads, stage changes (and points) stacked into one tagged frame, renamed so no lead column
    can collide with another table's."""
    id_type = leads.schema[c.lead_id].dataType
    lead_id = F.col(c.lead_id).cast(id_type).alias(c.lead_id)
    parts = [
        leads.select(lead_id, c.created_at, *lead_columns).withColumn(_TABLE, F.lit("leads")),
        stage_changes.select(
            lead_id,
            F.col(c.stage).cast("string").alias(_STAGE),
            F.col(c.changed_at).alias(_CHANGED_AT),
            F.monotonically_increasing_id().alias(_ROW),
        ).withColumn(_TABLE, F.lit("stage_changes")),
    ]
    if points is not None:
        parts.append(
            points.select(lead_id, F.col("as_of").alias(_AS_OF)).withColumn(_TABLE, F.lit("points"))
        )
    return reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), parts)


def _event_side(events: DataFrame, c: ColumnsConfig, id_type: T.DataType) -> DataFrame:
    value = [F.col(c.value).cast("double").alias(c.value)] if c.value in events.columns else []
    return events.select(
        F.col(c.lead_id).cast(id_type).alias(c.lead_id),
        F.col(c.event_type).cast("string").alias(c.event_type),
        F.col(c.occurred_at),
        *value,
        F.monotonically_increasing_id().alias(_ROW),
    )


def _cogroup(
    left: DataFrame,
    right: DataFrame,
    c: ColumnsConfig,
    partitions: int,
    task: Callable[[pd.DataFrame, pd.DataFrame], pd.DataFrame],
    schema: T.StructType,
) -> DataFrame:
    a = _bucket(left, c.lead_id, partitions).groupBy(_KEY)
    b = _bucket(right, c.lead_id, partitions).groupBy(_KEY)

    # Spark counts the function's arguments to decide whether to pass the key; a callable
    # object's `self` would count, a plain two-argument function does not.
    def apply(left_rows: pd.DataFrame, right_rows: pd.DataFrame) -> pd.DataFrame:
        return task(left_rows, right_rows)

    return a.cogroup(b).applyInPandas(apply, schema)


# --------------------------------------------------------------------------------------------
# What runs on the executors (plain pandas from here to the next section)


def _ns(s: pd.Series) -> pd.Series:
    # Arrow hands pandas 3 microsecond timestamps; leadml's frames are nanosecond.
    return pd.to_datetime(s).astype("datetime64[ns]")


def _crm_frames(
    left: pd.DataFrame, right: pd.DataFrame, c: ColumnsConfig, lead_columns: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """One bucket's rows back as the canonical (validated) frames: leads, events, stage changes
    sorted by lead and time like :func:`leadml.data.contracts.validate` sorts them, and points."""
    table = left[_TABLE].to_numpy() if len(left) else np.array([], dtype=object)
    leads = left.loc[table == "leads", [c.lead_id, c.created_at, *lead_columns]]
    leads = leads.sort_values(c.lead_id, kind="stable").reset_index(drop=True)
    leads[c.created_at] = _ns(leads[c.created_at])
    sc = left.loc[table == "stage_changes", [c.lead_id, _STAGE, _CHANGED_AT, _ROW]]
    sc = sc.rename(columns={_STAGE: c.stage, _CHANGED_AT: c.changed_at})
    sc[c.changed_at] = _ns(sc[c.changed_at])
    sc = sc.sort_values([c.lead_id, c.changed_at, _ROW], kind="stable")
    sc = sc.drop(columns=_ROW).reset_index(drop=True)
    sc[c.stage] = sc[c.stage].astype("object")
    value = [c.value] if c.value in right.columns else []
    events = right[[c.lead_id, c.event_type, c.occurred_at, *value, _ROW]].copy()
    events[c.occurred_at] = _ns(events[c.occurred_at])
    events = events.sort_values([c.lead_id, c.occurred_at, _ROW], kind="stable")
    events = events.drop(columns=_ROW).reset_index(drop=True)
    events[c.event_type] = events[c.event_type].astype("string").astype("category")
    if _AS_OF in left.columns:
        points = left.loc[table == "points", [c.lead_id, _AS_OF]].rename(columns={_AS_OF: "as_of"})
        points["as_of"] = _ns(points["as_of"])
        points = points.reset_index(drop=True)
    else:
        points = pd.DataFrame({c.lead_id: leads[c.lead_id].iloc[:0], "as_of": _ns(pd.Series([]))})
    # Rows of leads outside this bucket's leads (e.g. created after as_of) are never looked at.
    known = pd.Index(leads[c.lead_id])
    events, sc = (f.loc[f[c.lead_id].isin(known)].reset_index(drop=True) for f in (events, sc))
    for frame in (events, sc, points):
        frame[c.lead_id] = frame[c.lead_id].astype(leads[c.lead_id].dtype)
    return leads, events, sc, points


def _to_schema(frame: pd.DataFrame, schema: T.StructType) -> pd.DataFrame:
    """Select the schema's columns, strings as Python objects with None for missing."""
    out = {}
    for f in schema.fields:
        s = frame[f.name]
        if isinstance(f.dataType, T.StringType):
            s = s.astype("object").where(s.notna(), None)
        elif isinstance(f.dataType, _TIMESTAMP_TYPES):
            s = _ns(s)
        out[f.name] = s.reset_index(drop=True)
    return pd.DataFrame(out, columns=schema.names)


def _empty(schema: T.StructType) -> pd.DataFrame:
    dtypes: dict[type, str] = {T.DoubleType: "float64", T.LongType: "int64", T.IntegerType: "int32"}
    columns = {}
    for f in schema.fields:
        if isinstance(f.dataType, _TIMESTAMP_TYPES):
            dtype: Any = "datetime64[ns]"
        else:
            dtype = dtypes.get(type(f.dataType), object)
        columns[f.name] = pd.Series([], dtype=dtype)
    return pd.DataFrame(columns)


@dataclasses.dataclass(frozen=True)
class _FeaturesTask:
    """``build_features`` for one bucket of leads."""

    columns: dict[str, str]
    spec: dict[str, Any]
    lead_columns: tuple[str, ...]
    schema_json: str

    def __call__(self, left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        from leadml.data.features import build_features

        c = ColumnsConfig(**self.columns)
        schema = T.StructType.fromJson(_loads(self.schema_json))
        leads, events, sc, points = _crm_frames(left, right, c, self.lead_columns)
        if points.empty:
            return _empty(schema)
        spec = FeatureSpec.from_dict(self.spec)
        feats = build_features(leads, events, sc, points, columns=c, spec=spec)
        return _to_schema(feats, schema)


@dataclasses.dataclass(frozen=True)
class _ScoringSetTask:
    """``build_scoring_set`` for one bucket of leads."""

    config: dict[str, Any]
    spec: dict[str, Any]
    as_of: str
    lead_columns: tuple[str, ...]
    schema_json: str

    def __call__(self, left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        from leadml.data.trainset import build_scoring_set

        cfg = LeadMLConfig.model_validate(self.config)
        schema = T.StructType.fromJson(_loads(self.schema_json))
        leads, events, sc, _ = _crm_frames(left, right, cfg.columns, self.lead_columns)
        if leads.empty:
            return _empty(schema)
        data = CRMData(leads=leads, events=events, stage_changes=sc, columns=cfg.columns)
        spec = FeatureSpec.from_dict(self.spec)
        feats = build_scoring_set(data, pd.Timestamp(self.as_of), cfg, spec=spec)
        return _to_schema(feats, schema)


# Models rebuilt from broadcast bundles, once per Python worker (workers are reused by Spark).
_LOADED: dict[str, dict[str, StageModel]] = {}


def _load_payload(digest: str, payload: dict[str, dict[str, bytes]]) -> dict[str, StageModel]:
    models = _LOADED.get(digest)
    if models is None:
        from leadml.model.bundle import load_bundle

        models = {}
        with tempfile.TemporaryDirectory(prefix="leadml-bundle-") as tmp:
            for transition, files in payload.items():
                d = Path(tmp) / transition
                d.mkdir()
                for name, content in files.items():
                    (d / name).write_bytes(content)
                models[transition] = load_bundle(d)
        _LOADED[digest] = models
    return models


@dataclasses.dataclass(frozen=True)
class _ScoreTask:
    """:func:`leadml.serve.scoring.score` for one bucket of leads."""

    config: dict[str, Any]
    as_of: str
    digest: str
    bundles: Any  # a Broadcast of the bundle payload, or the payload itself
    lead_columns: tuple[str, ...]
    schema_json: str

    def __call__(self, left: pd.DataFrame, right: pd.DataFrame) -> pd.DataFrame:
        import warnings

        from leadml.data.layout import LayoutWarning
        from leadml.serve.scoring import score

        # A bucket is not the data: its newest row and its events say nothing about the
        # export's freshness or layout, so the local scorer's whole-data checks stay off here
        # (score_spark checks the columns on the driver).
        cfg = LeadMLConfig.model_validate(self.config).with_overrides(
            {"scoring": {"allow_stale": True, "allow_layout_change": True, "layout_shift": 1.0}}
        )
        schema = T.StructType.fromJson(_loads(self.schema_json))
        leads, events, sc, _ = _crm_frames(left, right, cfg.columns, self.lead_columns)
        if leads.empty:
            return _empty(schema)
        payload = getattr(self.bundles, "value", self.bundles)
        models = _load_payload(self.digest, payload)
        data = CRMData(leads=leads, events=events, stage_changes=sc, columns=cfg.columns)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LayoutWarning)
            out = score(data, pd.Timestamp(self.as_of), models, cfg, progress=False)
        return _to_schema(out, schema)


def _loads(text: str) -> dict[str, Any]:
    import json

    return dict(json.loads(text))


# --------------------------------------------------------------------------------------------
# Driver side


def _spec_from_spark(
    leads: DataFrame,
    events: DataFrame,
    c: ColumnsConfig,
    config: FeaturesConfig | None,
) -> FeatureSpec:
    """The spec :func:`make_feature_spec` infers, from the leads table (collected to the driver)
    and one row per event type: the events' vocabulary and whether a type carries numeric values
    is all it reads of them. Pass the model's spec instead when you score."""
    from leadml.data.features import make_feature_spec

    lead_frame = _to_pandas(leads)
    for col in lead_frame.columns:
        if pd.api.types.is_datetime64_any_dtype(lead_frame[col].dtype):
            lead_frame[col] = _ns(lead_frame[col])
    etype = F.col(c.event_type).cast("string").alias(c.event_type)
    typed = events.select(etype).filter(F.col(c.event_type).isNotNull())
    if c.value in events.columns:
        v = F.col(c.value).cast("double")
        finite = v.isNotNull() & ~F.isnan(v) & (F.abs(v) != F.lit(float("inf")))
        typed = (
            events.select(etype, F.when(finite, F.lit(1.0)).alias(c.value))
            .filter(F.col(c.event_type).isNotNull())
            .groupBy(c.event_type)
            .agg(F.max(c.value).alias(c.value))
        )
    per_type = _to_pandas(typed.distinct().orderBy(c.event_type))
    data = CRMData(leads=lead_frame, events=per_type, stage_changes=pd.DataFrame(), columns=c)
    return make_feature_spec(data, config)


def _feature_fields(spec: FeatureSpec) -> list[T.StructField]:
    return [
        T.StructField(n, T.StringType() if spec.kinds[n] == "categorical" else T.DoubleType())
        for n in spec.names
    ]


def build_features_spark(
    leads: DataFrame,
    events: DataFrame,
    stage_changes: DataFrame,
    points: DataFrame,
    *,
    columns: ColumnsConfig | None = None,
    config: FeaturesConfig | None = None,
    spec: FeatureSpec | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """:func:`leadml.data.features.build_features` on Spark: one row per observation point.

    Parameters
    ----------
    leads, events, stage_changes : pyspark DataFrame
        The three tables with canonical types (ids the same type everywhere, timestamps as
        ``TIMESTAMP`` or ``TIMESTAMP_NTZ``).
    points : pyspark DataFrame
        ``lead_id`` and ``as_of``.
    columns, config, spec : optional
        As for ``build_features``. Without ``spec`` one is inferred from the leads table, which is
        collected to the driver for that; pass the training spec (``model.spec``) at scale.
    partitions : int, optional
        Number of lead buckets (default ``spark.sql.shuffle.partitions``). Each bucket's rows
        must fit in one Python worker: aim for about a million events per bucket.

    Returns
    -------
    pyspark DataFrame
        ``lead_id``, ``as_of``, then ``spec.names`` in order: numeric features as doubles,
        categorical ones as strings (use :func:`collect_features` to get the local frame back).
        Rows come in no particular order.
    """
    c = columns or ColumnsConfig()
    _require(leads, "leads", [c.lead_id, c.created_at])
    _require(events, "events", [c.lead_id, c.event_type, c.occurred_at])
    _require(stage_changes, "stage_changes", [c.lead_id, c.stage, c.changed_at])
    _require(points, "points", [c.lead_id, "as_of"])
    for df, table, col in (
        (leads, "leads", c.created_at),
        (events, "events", c.occurred_at),
        (stage_changes, "stage_changes", c.changed_at),
        (points, "points", "as_of"),
    ):
        _require_timestamp(df, table, col)
    spark = leads.sparkSession
    n = _partitions(spark, partitions)
    if spec is None:
        spec = _spec_from_spark(leads, events, c, config)
    lead_columns = tuple(col for col in spec.fit_columns if col in leads.columns)
    id_type = leads.schema[c.lead_id].dataType
    schema = T.StructType(
        [
            T.StructField(c.lead_id, id_type),
            T.StructField("as_of", points.schema["as_of"].dataType),
            *_feature_fields(spec),
        ]
    )
    task = _FeaturesTask(
        columns=c.model_dump(),
        spec=spec.to_dict(),
        lead_columns=lead_columns,
        schema_json=schema.json(),
    )
    left = _lead_side(leads, stage_changes, c, lead_columns, points=points)
    return _cogroup(left, _event_side(events, c, id_type), c, n, task, schema)


def _known_before(
    leads: DataFrame,
    events: DataFrame,
    stage_changes: DataFrame,
    c: ColumnsConfig,
    ts: pd.Timestamp,
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Drop what a score at ``ts`` never looks at before the shuffle: leads created at or after
    it, events at or after it, stage changes after it (the stage at ``ts`` includes changes at
    ``ts``)."""
    text = ts.strftime("%Y-%m-%d %H:%M:%S")

    def at(df: DataFrame, col: str) -> Any:
        return F.lit(text).cast(df.schema[col].dataType)

    return (
        leads.filter(F.col(c.created_at) < at(leads, c.created_at)),
        events.filter(F.col(c.occurred_at) < at(events, c.occurred_at)),
        stage_changes.filter(F.col(c.changed_at) <= at(stage_changes, c.changed_at)),
    )


def _check_tables(
    leads: DataFrame, events: DataFrame, stage_changes: DataFrame, c: ColumnsConfig
) -> None:
    _require(leads, "leads", [c.lead_id, c.created_at])
    _require(events, "events", [c.lead_id, c.event_type, c.occurred_at])
    _require(stage_changes, "stage_changes", [c.lead_id, c.stage, c.changed_at])
    _require_timestamp(leads, "leads", c.created_at)
    _require_timestamp(events, "events", c.occurred_at)
    _require_timestamp(stage_changes, "stage_changes", c.changed_at)


def _check_anyone_exists(leads: DataFrame, c: ColumnsConfig, ts: pd.Timestamp) -> None:
    first = leads.agg(F.min(c.created_at).alias("first")).collect()[0]["first"]
    if first is None or pd.Timestamp(first) >= ts:
        raise ValueError(
            f"as_of {ts} is not after the first lead's creation ({first}): nobody exists yet "
            "to score; pass a later --as-of"
        )


def build_scoring_set_spark(
    leads: DataFrame,
    events: DataFrame,
    stage_changes: DataFrame,
    as_of: pd.Timestamp | str,
    *,
    spec: FeatureSpec,
    config: LeadMLConfig | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """:func:`leadml.data.trainset.build_scoring_set` on Spark: the features at ``as_of`` of every lead
    eligible then (created before it, stage lead or prospect), with its ``stage``.

    This is the input of the MLflow pyfunc (see the module docstring for ``spark_udf``).
    Categorical features are strings; rows come in no particular order.
    """
    cfg = config or LeadMLConfig()
    c = cfg.columns
    _check_tables(leads, events, stage_changes, c)
    n = _partitions(leads.sparkSession, partitions)
    ts = to_as_of(as_of)
    leads, events, stage_changes = _known_before(leads, events, stage_changes, c, ts)
    lead_columns = tuple(col for col in spec.fit_columns if col in leads.columns)
    id_type = leads.schema[c.lead_id].dataType
    schema = T.StructType(
        [
            T.StructField(c.lead_id, id_type),
            T.StructField("as_of", leads.schema[c.created_at].dataType),
            T.StructField("stage", T.StringType()),
            *_feature_fields(spec),
        ]
    )
    task = _ScoringSetTask(
        config=cfg.dump(),
        spec=spec.to_dict(),
        as_of=ts.isoformat(),
        lead_columns=lead_columns,
        schema_json=schema.json(),
    )
    left = _lead_side(leads, stage_changes, c, lead_columns)
    return _cogroup(left, _event_side(events, c, id_type), c, n, task, schema)


def _bundle_payload(models: Mapping[str, StageModel]) -> dict[str, dict[str, bytes]]:
    """Each model as its bundle files (what :func:`leadml.model.bundle.save_bundle` writes), with the
    model version pinned so executors report the version of the model passed here."""
    from leadml.model.bundle import save_bundle
    from leadml.serve.contract import model_version

    payload: dict[str, dict[str, bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="leadml-bundle-") as tmp:
        for transition, m in models.items():
            pinned = dataclasses.replace(
                m, metadata={**m.metadata, "model_version": model_version(m)}
            )
            d = save_bundle(pinned, Path(tmp) / transition)
            payload[transition] = {p.name: p.read_bytes() for p in sorted(d.iterdir())}
    return payload


def _share(spark: SparkSession, value: Any) -> Any:
    """Broadcast ``value`` (sent once per executor); Spark Connect has no broadcast, so there it
    travels inside the task instead."""
    try:
        return spark.sparkContext.broadcast(value)
    except Exception:  # pyspark raises several types for "no SparkContext here" (Connect)
        return value


def score_spark(
    leads: DataFrame,
    events: DataFrame,
    stage_changes: DataFrame,
    as_of: pd.Timestamp | str | None,
    models: Mapping[str, StageModel],
    *,
    config: LeadMLConfig | None = None,
    partitions: int | None = None,
) -> DataFrame:
    """:func:`leadml.serve.scoring.score` on Spark, one bucket of leads per pandas call.

    Returns the local scorer's columns (``lead_id``, ``as_of``, ``stage``, ``p_prospect``,
    ``p_opportunity``, ``score``, ``tier``, ``reasons`` as an array of structs ``{group, text,
    direction, effect}``, ``model_version``, then the display columns and the last activity)
    in no particular order; :func:`collect_scores` gives the local frame, sorted the same way.

    The model bundles are broadcast once to every executor. Only rows before ``as_of`` (stage
    changes up to it) are shuffled. Raises ``ValueError`` when nobody exists yet at ``as_of``
    (this runs one small job over the leads).
    """
    from leadml.serve.contract import DISPLAY_COLUMNS, ScoringError

    cfg = config or LeadMLConfig()
    c = cfg.columns
    if not models:
        raise ValueError("no models to score with")
    _check_tables(leads, events, stage_changes, c)
    spark = leads.sparkSession
    n = _partitions(spark, partitions)
    ts = to_as_of(as_of)
    _check_anyone_exists(leads, c, ts)
    leads, events, stage_changes = _known_before(leads, events, stage_changes, c, ts)

    specs = [m.spec for m in models.values()]
    gone = sorted({col for s in specs for col in s.fit_columns if col not in leads.columns})
    if gone and not cfg.scoring.allow_layout_change:
        # The local scorer's layout check (leadml.data.layout), for what Spark sees without a job.
        raise ScoringError(
            "the data does not match the layout the models were trained on: leads table "
            f"column(s) {', '.join(map(repr, gone))} missing; fix the export, retrain, or pass "
            "--allow-layout-change to score anyway"
        )
    _check_whole_data(leads, events, stage_changes, c, ts, specs, cfg)
    fit = dict.fromkeys(col for s in specs for col in s.fit_columns if col in leads.columns)
    display = [col for col in DISPLAY_COLUMNS if col in leads.columns]
    lead_columns = tuple(dict.fromkeys([*fit, *display]))
    id_type = leads.schema[c.lead_id].dataType
    schema = T.StructType(
        [
            T.StructField("lead_id", id_type),
            T.StructField("as_of", leads.schema[c.created_at].dataType),
            T.StructField("stage", T.StringType()),
            T.StructField("p_prospect", T.DoubleType()),
            T.StructField("p_opportunity", T.DoubleType()),
            T.StructField("score", T.LongType()),
            T.StructField("tier", T.StringType()),
            T.StructField("reasons", REASON_TYPE),
            T.StructField("base_score", T.DoubleType()),
            T.StructField("other_points", T.DoubleType()),
            T.StructField("model_version", T.StringType()),
            *[T.StructField(col, T.StringType()) for col in display],
            T.StructField("last_activity_at", events.schema[c.occurred_at].dataType),
            T.StructField("last_activity_type", T.StringType()),
        ]
    )
    payload = _bundle_payload(models)
    digest = hashlib.sha256(
        b"".join(content for files in payload.values() for content in files.values())
    ).hexdigest()
    task = _ScoreTask(
        config=cfg.dump(),
        as_of=ts.isoformat(),
        digest=digest,
        bundles=_share(spark, payload),
        lead_columns=lead_columns,
        schema_json=schema.json(),
    )
    left = _lead_side(leads, stage_changes, c, lead_columns)
    return _cogroup(left, _event_side(events, c, id_type), c, n, task, schema)


# --------------------------------------------------------------------------------------------
# Back to pandas


def _to_pandas(frame: DataFrame) -> pd.DataFrame:
    return cast(pd.DataFrame, frame.toPandas())


def collect_features(frame: DataFrame, spec: FeatureSpec) -> pd.DataFrame:
    """Collect a features frame to the driver with the local dtypes: categoricals with the spec's
    levels, ``as_of`` as ``datetime64[ns]``, string ids as ``string`` (as
    :func:`leadml.data.contracts.validate` makes them). Sorted by lead then as_of."""
    out = _to_pandas(frame)
    lead_id = out.columns[0]
    if pd.api.types.is_string_dtype(out[lead_id].dtype):
        out[lead_id] = out[lead_id].astype("string")
    out["as_of"] = _ns(out["as_of"])
    for col in spec.categorical:
        if col in out.columns:
            out[col] = to_categorical(out[col], spec.levels[col])
    return out.sort_values([lead_id, "as_of"], kind="stable").reset_index(drop=True)


def collect_scores(frame: DataFrame) -> pd.DataFrame:
    """Collect scores to the driver as the local scorer returns them: ``reasons`` as lists of
    dicts, timestamps as ``datetime64[ns]``, sorted by score (descending) then lead_id."""
    out = _to_pandas(frame)
    for col in ("as_of", "last_activity_at"):
        if col in out.columns:
            out[col] = _ns(out[col])
    if "reasons" in out.columns:
        out["reasons"] = [
            [] if rs is None else [dict(r) for r in rs] for rs in out["reasons"].tolist()
        ]
    return out.sort_values(
        ["score", "lead_id"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# The `leadml score --engine spark` job


def _is_uri(path: str) -> bool:
    return "://" in path or path.startswith("dbfs:")


def _exists(spark: SparkSession, path: str) -> bool:
    if not _is_uri(path):
        return Path(path).exists()
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    hpath = jvm.org.apache.hadoop.fs.Path(path)
    fs = hpath.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    return bool(fs.exists(hpath))


def _read_table(spark: SparkSession, directory: str, name: str) -> DataFrame | None:
    base = directory.rstrip("/")
    for ext in (".parquet", ".pq", "", ".csv", ".csv.gz"):
        path = f"{base}/{name}{ext}"
        if not _exists(spark, path):
            continue
        if ext in (".csv", ".csv.gz"):
            return spark.read.csv(path, header=True, inferSchema=True)
        return spark.read.parquet(path)
    return None


def _canonical(df: DataFrame, col: str, kind: str, id_type: T.DataType | None = None) -> DataFrame:
    dtype = df.schema[col].dataType
    if kind == "timestamp":
        if isinstance(dtype, _TIMESTAMP_TYPES):
            return df
        if isinstance(dtype, T.LongType):
            # Parquet nanosecond timestamps (pandas writes them) arrive as longs; see load_crm_spark.
            return df.withColumn(col, F.timestamp_micros(F.expr(f"`{col}` div 1000")))
        return df.withColumn(col, F.col(col).cast("timestamp"))
    if kind == "id":
        target = id_type or (T.LongType() if isinstance(dtype, T.IntegralType) else T.StringType())
        if isinstance(target, T.StringType):
            return df.withColumn(col, F.trim(F.col(col).cast("string")))
        return df.withColumn(col, F.col(col).cast(target))
    return df


def load_crm_spark(
    spark: SparkSession, directory: str, columns: ColumnsConfig | None = None
) -> tuple[DataFrame, DataFrame, DataFrame]:
    """Read ``leads``, ``events`` and ``stage_changes`` (Parquet files or directories, or CSV)
    from a local directory or a URI Spark can read (``s3a://``, ``hdfs://``, ``dbfs:/``).

    Applies the contract's coercions (ids one type everywhere, timestamps, lower-case stage names)
    but not its checks: run ``leadml validate`` on an export first. Parquet nanosecond timestamps
    (pandas' default) are read through ``spark.sql.legacy.parquet.nanosAsLong``, which this sets on
    the session, and truncated to microseconds.
    """
    c = columns or ColumnsConfig()
    # Spark cannot read Parquet's nanosecond timestamps (what pandas writes, e.g. `leadml synth`)
    # unless it reads them as longs; other files are unaffected by this setting.
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    tables = {name: _read_table(spark, directory, name) for name in ("leads", "stage_changes")}
    missing = [name for name, df in tables.items() if df is None]
    if missing:
        raise FileNotFoundError(
            f"no {' or '.join(f'{m}.parquet / {m}.csv' for m in missing)} in {directory!r}; "
            "write the tables there (see `leadml synth` for the layout)"
        )
    leads, stage_changes = tables["leads"], tables["stage_changes"]
    assert leads is not None and stage_changes is not None
    _require(leads, "leads", [c.lead_id, c.created_at])
    leads = _canonical(_canonical(leads, c.lead_id, "id"), c.created_at, "timestamp")
    id_type = leads.schema[c.lead_id].dataType
    events = _read_table(spark, directory, "events")
    if events is None:
        empty = T.StructType(
            [
                T.StructField(c.lead_id, id_type),
                T.StructField(c.event_type, T.StringType()),
                T.StructField(c.occurred_at, leads.schema[c.created_at].dataType),
            ]
        )
        events = spark.createDataFrame([], empty)
    _require(events, "events", [c.lead_id, c.event_type, c.occurred_at])
    _require(stage_changes, "stage_changes", [c.lead_id, c.stage, c.changed_at])
    events = _canonical(_canonical(events, c.lead_id, "id", id_type), c.occurred_at, "timestamp")
    stage_changes = _canonical(
        _canonical(stage_changes, c.lead_id, "id", id_type), c.changed_at, "timestamp"
    ).withColumn(c.stage, F.lower(F.trim(F.col(c.stage))))
    return leads, events, stage_changes


def _check_whole_data(
    leads: DataFrame,
    events: DataFrame,
    stage_changes: DataFrame,
    c: ColumnsConfig,
    ts: pd.Timestamp,
    specs: list[FeatureSpec],
    cfg: LeadMLConfig,
) -> None:
    """The local scorer's whole-data checks, on the driver (buckets cannot judge the export):
    freshness (:func:`leadml.serve.scoring.check_freshness`) and an events table that is empty
    or holds none of the models' event types (:mod:`leadml.data.layout`). Three small jobs
    (``ts`` has already cut the tables at ``as_of``)."""
    from leadml.serve.contract import ScoringError
    from leadml.serve.scoring import check_freshness

    ends = [
        df.agg(F.max(col).alias("m")).collect()[0]["m"]
        for df, col in ((leads, c.created_at), (stage_changes, c.changed_at))
    ]
    ends = [pd.Timestamp(e) for e in ends if e is not None]
    if ends:
        check_freshness(max(ends), ts, cfg)
    vocab = {t for sp in specs for t in sp.event_types}
    if not vocab or cfg.scoring.allow_layout_change:
        return
    found = [r[0] for r in events.select(c.event_type).distinct().limit(10_001).collect()]
    if not found:
        why = "it has no rows before as_of"
    elif not vocab.intersection(str(v) for v in found):
        seen = ", ".join(repr(str(v)) for v in sorted(map(str, found))[:5])
        why = f"column {c.event_type!r} holds none of the event types the models learned ({seen})"
    else:
        return
    raise ScoringError(
        f"the data does not match the layout the models were trained on: events table: {why}; "
        "export the events again, map the names back, retrain, or pass --allow-layout-change"
    )


def _skipped(
    leads: DataFrame,
    stage_changes: DataFrame,
    c: ColumnsConfig,
    ts: pd.Timestamp,
    models: Mapping[str, StageModel],
) -> dict[str, int]:
    """The local scorer's ``skipped`` counts, computed on Spark: leads not created yet, and the
    stage at ``ts`` (the last change at or before it, later rows winning ties as in
    :func:`leadml.data.timeline.stage_at`) of those that exist but are not scored."""
    from leadml.funnel import SOURCE_STAGE, TRANSITIONS
    from leadml.serve.contract import SKIP_LABELS

    text = ts.strftime("%Y-%m-%d %H:%M:%S")
    created = F.col(c.created_at) < F.lit(text).cast(leads.schema[c.created_at].dataType)
    not_created = leads.filter(~created).count()
    changed = F.col(c.changed_at) <= F.lit(text).cast(stage_changes.schema[c.changed_at].dataType)
    last = (
        stage_changes.filter(changed)
        .withColumn(_ROW, F.monotonically_increasing_id())
        .groupBy(c.lead_id)
        .agg(
            F.max_by(
                F.lower(F.trim(F.col(c.stage).cast("string"))),
                F.struct(F.col(c.changed_at), F.col(_ROW)),
            ).alias(_STAGE)
        )
    )
    alive = leads.filter(created).select(c.lead_id).join(last, c.lead_id, "left")
    counts = {
        r[_STAGE]: int(r["count"])
        for r in alive.select(F.coalesce(F.col(_STAGE), F.lit("lead")).alias(_STAGE))
        .groupBy(_STAGE)
        .count()
        .collect()
    }
    skipped = {"not created yet": int(not_created)}
    for stage, label in SKIP_LABELS.items():
        skipped[label] = counts.get(stage, 0)
    for t in TRANSITIONS:
        if t not in models:
            skipped[f"no {t} model given"] = counts.get(SOURCE_STAGE[t], 0)
    return skipped


def run_score_spark(
    data_dir: str,
    as_of: str | None,
    out: str,
    models: Mapping[str, StageModel],
    overwrite: bool = False,
    config: LeadMLConfig | None = None,
    master: str | None = None,
    *,
    fmt: str | None = None,
    partitions: int | None = None,
) -> str:
    """``leadml score --engine spark``: score every eligible lead on Spark and write the result.

    ``out`` ending in ``/`` writes Spark's partitioned Parquet directory (rows unsorted; Spark's
    commit protocol, ``_SUCCESS`` marks a complete write), for local paths or URIs. Any other
    ``out`` collects the scores to the driver and writes the same single file as the local scorer
    (:func:`leadml.serve.scoring.write_scores`: sorted, atomic, Parquet or CSV by extension), so the
    scores must fit in the driver's memory (about 1 kB per lead).

    ``models``: the loaded stage models (:func:`leadml.jobs.load_models` reads ``--model``
    values and the registry's champions). ``master``: see
    :func:`resolve_master`. ``partitions``: ``spark.partitions`` of the config, else
    ``spark.sql.shuffle.partitions``. Returns a one-paragraph summary for the CLI.
    """
    from leadml.serve.contract import model_version, scores_attrs, write_scores

    cfg = config or LeadMLConfig()
    t0 = time.perf_counter()
    directory = out.endswith("/")
    ts = to_as_of(as_of)
    if not directory and _is_uri(out):
        raise ValueError(
            f"--out {out!r}: a single scores file is written on this machine; end --out with '/' "
            "to have Spark write a Parquet directory there"
        )
    if not directory:
        check_target(out, overwrite, inputs=[data_dir])
    loaded = dict(models)
    spark = get_spark(resolve_master(master, cfg))
    if directory and _exists(spark, out) and not overwrite:
        raise exists_error(out)
    leads, events, stage_changes = load_crm_spark(spark, data_dir, cfg.columns)
    n = partitions or cfg.spark.partitions
    scored = score_spark(leads, events, stage_changes, ts, loaded, config=cfg, partitions=n)
    if directory:
        scored.write.mode("overwrite" if overwrite else "errorifexists").parquet(out)
        counts = {
            r["tier"]: int(r["count"])
            for r in spark.read.parquet(out).groupBy("tier").count().collect()
        }
        total = sum(counts.values())
    else:
        scores = collect_scores(scored)
        skipped = _skipped(leads, stage_changes, cfg.columns, ts, loaded)
        scores.attrs.update(
            scores_attrs(loaded, ts, skipped=skipped, row_group_size=cfg.scoring.chunk_size)
        )
        write_scores(
            scores,
            out,
            fmt=fmt,
            overwrite=overwrite,
            n_reasons=cfg.explain.n_positive + cfg.explain.n_negative,
        )
        counts = scores["tier"].value_counts().to_dict()
        total = len(scores)
    tiers = tier_counts(counts)
    where = spark.sparkContext.master
    return (
        f"scored {total:,} leads as of {ts} (tiers {tiers}) on Spark ({where}) in "
        f"{time.perf_counter() - t0:.1f}s -> {out}\n"
        f"models: {', '.join(model_version(m) for m in loaded.values())}"
    )
