"""Spark (local mode) gives the local path's features and scores, row for row.

One SparkSession for the module. Skipped only when pyspark is not installed, and never on CI
(``CI=true``), where a missing pyspark is a failure.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

try:
    import pyspark  # noqa: F401
except ImportError:
    if os.environ.get("CI", "").lower() == "true":
        raise
    pytest.skip("pyspark is not installed: pip install 'leadml[spark]'", allow_module_level=True)

from pyspark.sql import functions as F

from leadml.config import LeadMLConfig
from leadml.data.contracts import CRMData, validate
from leadml.data.features import IdentifierColumnsExcluded, build_features, make_feature_spec
from leadml.data.timeline import build_observation_points
from leadml.data.trainset import build_scoring_set
from leadml.datasets import make_crm
from leadml.model.bundle import save_bundle
from leadml.serve.contract import read_scores, write_scores
from leadml.serve.scoring import score, score_features
from leadml.serve.spark import (
    build_features_spark,
    build_scoring_set_spark,
    collect_features,
    collect_scores,
    get_spark,
    resolve_master,
    run_score_spark,
    score_spark,
    to_spark,
)

pytestmark = pytest.mark.spark

AS_OF = "2025-04-01"
# Small, quick models: these tests are about Spark giving the same numbers, not model quality.
CHEAP = {"model": {"n_estimators": 40, "min_child_samples": 40, "min_data_per_group": 20}}


@pytest.fixture(scope="module")
def spark():
    session = get_spark(
        "local[2]",
        app_name="leadml-tests",
        conf={
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.driver.memory": "1g",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
        },
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def data() -> CRMData:
    """500 synthetic leads (about 25k events)."""
    return make_crm(n_leads=500, seed=5)


@pytest.fixture(scope="module")
def spec(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        return make_feature_spec(data)


@pytest.fixture(scope="module")
def results():
    from leadml.model.training import train

    cfg = LeadMLConfig().with_overrides(CHEAP)
    crm = make_crm(n_leads=1500, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        return {t: train(crm, t, cfg) for t in ("prospect", "opportunity")}


@pytest.fixture(scope="module")
def models(results):
    return {t: r.model for t, r in results.items()}


@pytest.fixture(scope="module")
def tables(spark, data):
    return to_spark(spark, data)


@pytest.fixture(scope="module")
def points(data) -> pd.DataFrame:
    """Several observation points per lead (the training-set case)."""
    return build_observation_points(data, "prospect", "2024-03-01", "2025-05-01", cadence_days=30)


def _subset(data: CRMData, n: int) -> CRMData:
    """The first ``n`` leads, with string ids ("L-1", ...) as a CRM export might have them."""
    c = data.columns
    ids = data.leads[c.lead_id].iloc[:n]
    tables = [
        data.leads.iloc[:n],
        data.events.loc[data.events[c.lead_id].isin(ids)],
        data.stage_changes.loc[data.stage_changes[c.lead_id].isin(ids)],
    ]
    return validate(*(t.assign(**{c.lead_id: "L-" + t[c.lead_id].astype(str)}) for t in tables))


def points_sdf(leads, points: pd.DataFrame):
    return leads.sparkSession.createDataFrame(points)


def _local_features(data: CRMData, points: pd.DataFrame, spec) -> pd.DataFrame:
    feats = build_features(data.leads, data.events, data.stage_changes, points, spec=spec)
    return feats.sort_values(["lead_id", "as_of"], kind="stable").reset_index(drop=True)


def _assert_features_equal(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    assert len(got) == len(expected) > 0
    pd.testing.assert_frame_equal(got, expected, check_exact=False, rtol=0, atol=1e-9)


def _assert_scores_equal(got: pd.DataFrame, expected: pd.DataFrame, skip=()) -> None:
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) > 0
    for col in expected.columns:
        a, b = got[col], expected[col]
        if col == "reasons":  # lists (or Parquet's arrays) of dicts, compared exactly
            assert [[dict(r) for r in rs] for rs in a] == [[dict(r) for r in rs] for rs in b]
        elif pd.api.types.is_float_dtype(b.dtype):
            np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=0, atol=1e-9)
        elif col in skip:
            continue
        else:
            as_list = lambda s: s.astype(object).where(s.notna(), None).tolist()
            assert as_list(a) == as_list(b), col


def test_features_match_local_row_for_row(tables, data, points, spec) -> None:
    leads, events, stage_changes = tables
    frame = build_features_spark(leads, events, stage_changes, points_sdf(leads, points), spec=spec)
    assert frame.columns == ["lead_id", "as_of", *spec.names]
    got = collect_features(frame, spec)
    _assert_features_equal(got, _local_features(data, points, spec))
    for col in spec.categorical:
        assert list(got[col].cat.categories) == list(spec.levels[col])


def test_a_leads_events_split_across_input_partitions(tables, data, points, spec) -> None:
    leads, events, stage_changes = tables
    scattered = events.repartition(3)  # round robin: every lead's events land in all three
    spread = (
        scattered.withColumn("part", F.spark_partition_id())
        .groupBy("lead_id")
        .agg(F.countDistinct("part").alias("n"))
        .agg(F.max("n"))
        .collect()[0][0]
    )
    assert spread > 1
    frame = build_features_spark(
        leads, scattered, stage_changes.repartition(2), points_sdf(leads, points), spec=spec
    )
    _assert_features_equal(collect_features(frame, spec), _local_features(data, points, spec))


def test_more_partitions_than_leads_and_empty_partitions(spark, data, spec, models) -> None:
    small = _subset(data, 12)
    assert pd.api.types.is_string_dtype(small.leads["lead_id"].dtype)
    leads, events, stage_changes = to_spark(spark, small)
    leads = leads.repartition(8)  # some input partitions hold no lead at all
    pts = build_observation_points(small, "prospect", "2024-03-01", "2025-05-01", cadence_days=60)
    # Half the leads get no point: their buckets have leads and events but nothing to compute.
    pts = pts.loc[pts["lead_id"].isin(small.leads["lead_id"].iloc[::2])].reset_index(drop=True)
    frame = build_features_spark(
        leads, events, stage_changes, spark.createDataFrame(pts), spec=spec, partitions=64
    )
    _assert_features_equal(collect_features(frame, spec), _local_features(small, pts, spec))

    scored = collect_scores(score_spark(leads, events, stage_changes, AS_OF, models, partitions=64))
    _assert_scores_equal(scored, score(small, AS_OF, models))


def test_scores_match_local_row_for_row(tables, data, models) -> None:
    leads, events, stage_changes = tables
    frame = score_spark(leads, events, stage_changes, AS_OF, models)
    assert frame.schema["reasons"].dataType.simpleString() == (
        "array<struct<group:string,text:string,direction:string,effect:double,evidence:string>>"
    )
    got = collect_scores(frame)
    expected = score(data, AS_OF, models)
    _assert_scores_equal(got, expected)
    assert set(got["stage"]) == {"lead", "prospect"}
    assert any(len(r) > 0 for r in got["reasons"])


def test_inferred_spec_matches_local(tables, data, points, spec) -> None:
    leads, events, stage_changes = tables
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IdentifierColumnsExcluded)
        frame = build_features_spark(leads, events, stage_changes, points_sdf(leads, points))
    assert frame.columns == ["lead_id", "as_of", *spec.names]
    kinds = {f.name: f.dataType.simpleString() for f in frame.schema.fields}
    assert all(kinds[n] == "string" for n in spec.categorical)


def test_run_score_spark_writes_the_local_file(tmp_path: Path, spark, data, models) -> None:
    data_dir = tmp_path / "crm"
    data_dir.mkdir()
    for name in ("leads", "events", "stage_changes"):
        getattr(data, name).to_parquet(data_dir / f"{name}.parquet", index=False)
    bundles = [str(save_bundle(m, tmp_path / f"bundle-{t}")) for t, m in models.items()]

    from leadml.jobs import load_models

    out = tmp_path / "scores.parquet"
    message = run_score_spark(str(data_dir), AS_OF, str(out), load_models(bundles))
    assert "scored" in message and str(out) in message

    local_out = tmp_path / "local.parquet"
    local = score(data, AS_OF, load_models(bundles))
    write_scores(local, local_out)
    _assert_scores_equal(read_scores(out), read_scores(local_out))

    import pyarrow.parquet as pq

    # The same metadata, key by key: a report built from the Spark file loses nothing.
    meta, local_meta = pq.read_schema(out).metadata, pq.read_schema(local_out).metadata
    leadml_keys = sorted(k for k in local_meta if k.startswith(b"leadml."))
    assert len(leadml_keys) >= 7
    assert sorted(k for k in meta if k.startswith(b"leadml.")) == leadml_keys
    for key in leadml_keys:
        assert meta[key] == local_meta[key], key

    with pytest.raises(FileExistsError, match="--overwrite"):
        run_score_spark(str(data_dir), AS_OF, str(out), load_models(bundles))

    directory = f"{tmp_path}/scores_dir/"
    run_score_spark(str(data_dir), AS_OF, directory, load_models(bundles), partitions=3)
    assert spark.read.parquet(directory).count() == len(local)
    assert (Path(directory) / "_SUCCESS").exists()


def test_cli_engine_spark_writes_what_the_local_cli_writes(tmp_path: Path, spark, data, models):
    from click.testing import CliRunner

    from leadml.cli import main

    data_dir = tmp_path / "crm"
    data_dir.mkdir()
    for name in ("leads", "events", "stage_changes"):
        getattr(data, name).to_parquet(data_dir / f"{name}.parquet", index=False)
    model_args = []
    for t, m in models.items():
        model_args += ["--model", f"{t}={save_bundle(m, tmp_path / f'bundle-{t}')}"]
    common = ["score", "--data", str(data_dir), "--as-of", AS_OF, *model_args]
    runner = CliRunner()

    local = runner.invoke(main, [*common, "--out", str(tmp_path / "local.parquet")])
    assert local.exit_code == 0, local.output
    on_spark = runner.invoke(
        main,
        [
            *common,
            "--engine",
            "spark",
            "--spark-master",
            "local[2]",
            "--out",
            str(tmp_path / "s.csv"),
        ],
    )
    assert on_spark.exit_code == 0, on_spark.output
    assert "on Spark (local[2])" in on_spark.output
    runner.invoke(main, [*common, "--out", str(tmp_path / "local.csv")])
    assert (tmp_path / "s.csv").read_bytes() == (tmp_path / "local.csv").read_bytes()

    misuse = runner.invoke(main, [*common, "--spark-master", "yarn", "--out", str(tmp_path / "x")])
    assert misuse.exit_code == 2 and "--spark-master needs --engine spark" in misuse.output
    assert not (tmp_path / "x").exists()


def test_user_errors_name_the_table_and_column(tables, models) -> None:
    leads, events, stage_changes = tables
    with pytest.raises(ValueError, match=r"events: missing column\(s\) 'occurred_at'"):
        score_spark(leads, events.drop("occurred_at"), stage_changes, AS_OF, models)
    as_text = events.withColumn("occurred_at", F.col("occurred_at").cast("string"))
    with pytest.raises(ValueError, match=r"events\.occurred_at: .* not a timestamp"):
        score_spark(leads, as_text, stage_changes, AS_OF, models)
    with pytest.raises(ValueError, match="partitions must be at least 1"):
        score_spark(leads, events, stage_changes, AS_OF, models, partitions=0)
    with pytest.raises(ValueError, match="nobody exists yet"):
        score_spark(leads, events, stage_changes, "2020-01-01", models)


def test_the_driver_checks_what_buckets_cannot(tables, models, data) -> None:
    """Freshness and the events table are judged on the whole data, as the local scorer does."""
    from leadml.serve.contract import ScoringError

    leads, events, stage_changes = tables
    late = data.end + pd.Timedelta(days=90)
    with pytest.raises(ScoringError, match="90 days after the newest row"):
        score_spark(leads, events, stage_changes, late, models)
    relaxed = LeadMLConfig().with_overrides({"scoring": {"allow_stale": True}})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        score_spark(leads, events, stage_changes, late, models, config=relaxed)
    assert any("scoring anyway (--allow-stale)" in str(w.message) for w in caught)
    with pytest.raises(ScoringError, match="events table: it has no rows"):
        score_spark(leads, events.limit(0), stage_changes, AS_OF, models)
    renamed = events.withColumn("event_type", F.concat(F.lit("x_"), F.col("event_type")))
    with pytest.raises(ScoringError, match="holds none of the event types"):
        score_spark(leads, renamed, stage_changes, AS_OF, models)


def test_master_precedence(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = LeadMLConfig().with_overrides({"spark": {"master": "spark://config:7077"}})
    monkeypatch.delenv("LEADML_SPARK_MASTER", raising=False)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    assert resolve_master() == "local[2]"
    assert resolve_master(config=cfg) == "spark://config:7077"
    monkeypatch.setenv("LEADML_SPARK_MASTER", "yarn")
    assert resolve_master(config=cfg) == "yarn"
    assert resolve_master("local[4]", cfg) == "local[4]"


@pytest.mark.slow
def test_mlflow_spark_udf_scores_like_the_local_scorer(
    mlflow_uri: str, spark, tables, data, results
) -> None:
    import mlflow

    from leadml.tracking import log_training_run

    logged = log_training_run(results["prospect"])
    assert logged["promoted"]
    model = results["prospect"].model
    leads, events, stage_changes = tables
    X = build_scoring_set_spark(leads, events, stage_changes, AS_OF, spec=model.spec)
    X = X.filter(F.col("stage") == "lead").withColumn("lead_id", F.col("lead_id").cast("string"))
    udf = mlflow.pyfunc.spark_udf(
        spark,
        "models:/leadml-prospect@champion",
        env_manager="local",
        result_type="p_prospect double, score long, tier string, model_version string, "
        "reasons array<struct<group:string,text:string,direction:string,effect:double,"
        "evidence:string>>",
    )
    scored = X.withColumn("out", udf(F.struct(*X.columns))).select("lead_id", "out.*")
    got = collect_scores(scored.withColumn("lead_id", F.col("lead_id").cast("long")))

    frame = build_scoring_set(data, AS_OF, spec=model.spec)
    frame = frame.loc[frame["stage"] == "lead"]
    expected = score_features(frame, {"prospect": model})
    expected = expected.sort_values(
        ["score", "lead_id"], ascending=[False, True], kind="stable"
    ).reset_index(drop=True)
    assert len(got) == len(expected) > 0
    np.testing.assert_allclose(got["p_prospect"], expected["p_prospect"], rtol=0, atol=1e-9)
    assert got["lead_id"].tolist() == expected["lead_id"].tolist()
    assert got["tier"].tolist() == expected["tier"].tolist()
    assert got["reasons"].tolist() == expected["reasons"].tolist()
