"""MLflow tracking and registry: the only module that imports mlflow.

Each training run logs the dumped config (params), model and baseline metrics, the evaluation plots,
the bundle directory and an MLflow **pyfunc** model whose ``predict`` returns the batch scorer's
columns. The model is registered as ``leadml-<transition>``; the ``champion`` alias moves to the new
version only if it passes the promotion gate:

1. the model is *ready*: its rolling backtest clearly beats the base rate and is not worse than
   the best in-run baseline beyond the interval (:func:`leadml.model.backtest.readiness`). A model
   that is not ready is registered but never becomes champion;
2. on the newest fold's test window (the same rows for both), the challenger's out-of-fold
   ``promotion_metric`` is at least the champion's minus ``promotion_tolerance``. The champion may
   have been trained on those rows, so the comparison favours it: a challenger must really hold.

``force`` overrides both, loudly (the decision says "forced"). The verdict, the decision and both
numbers are logged on the run.

Zero-config default: ``$MLFLOW_TRACKING_URI`` if set, else ``tracking.tracking_uri`` from config,
else MLflow's own default (``sqlite:///mlflow.db`` in the working directory).

Never silently wrong, never stuck:

- An ``http(s)`` server that does not answer is reported at once (:func:`check_store`, one
  request of at most ``PROBE_TIMEOUT`` seconds, before any training or scoring), and MLflow's own
  HTTP knobs are lowered from about four minutes of retries to about ten seconds
  (``MLFLOW_HTTP_REQUEST_MAX_RETRIES``, ``_BACKOFF_FACTOR``, ``_TIMEOUT``; set them to override).
- Reading a model never creates a store: MLflow would create an empty SQLite file (and its
  folders) on first use, then report the model as missing. A local store that does not exist is
  refused with a message that says how to fix it.
- The pyfunc is logged as code (MLflow's "models from code", the file ``_pyfunc_model.py``): the
  logged model holds no pickle, and loading it (``mlflow.pyfunc.load_model``, ``spark_udf``)
  imports leadml and reads the bundle's plain files instead of unpickling anything.

Errors a user can fix raise :class:`TrackingError` (a ``ValueError``: the CLI prints ``error: ...``
and exits 2).

No PII: only config, metrics, counts, plots and the bundle (model text, spec of feature *names*,
calibration) are logged; lead ids, names, emails and phones never are.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from leadml.data.features import to_levels
from leadml.explain.plots import save_evaluation_plots
from leadml.explain.reasons import global_importance
from leadml.model.bundle import BundleError, load_bundle, save_bundle
from leadml.model.evaluation import evaluate
from leadml.model.stage import StageModel
from leadml.model.training import TrainResult
from leadml.serve.scoring import score_features, score_flat

__all__ = [
    "PROBE_TIMEOUT",
    "LeadMLPyfunc",
    "RetrainPolicy",
    "TrackingError",
    "check_store",
    "connect",
    "load_registered_model",
    "log_backtest",
    "log_monitor",
    "log_training_run",
    "rollback",
    "model_name",
    "set_tracking_uri",
]

CHAMPION = "champion"
#: Registered-model tag: the versions that were champion, oldest first (JSON list).
CHAMPION_STACK = "leadml.champion_history"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

# MLflow's defaults retry a server that is down for about four minutes (7 retries, backoff factor
# 2, up to 120 s per request). These retry 3 times after 0, 2 and 4 s (plus up to 1 s of jitter
# each): a server that refuses connections mid-run fails in about 10 s, one that stops answering
# in at most 4 x 30 s. (Before any work, check_store's probe takes at most PROBE_TIMEOUT.)
# setdefault: a user's own values win. Process-wide, like any MLflow environment variable.
for _name, _value in (
    ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "3"),
    ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
    ("MLFLOW_HTTP_REQUEST_TIMEOUT", "30"),
):
    os.environ.setdefault(_name, _value)

#: Seconds :func:`check_store` waits for an ``http(s)`` tracking server to answer.
PROBE_TIMEOUT = 5.0

#: The pyfunc as code: MLflow copies this file into the logged model and runs it to load it.
_PYFUNC_CODE = Path(__file__).with_name("_pyfunc_model.py")


class TrackingError(ValueError):
    """The MLflow tracking server or registry cannot be used: it does not answer, or (when
    reading a model) it does not exist. The message names the URI and how to fix it."""


def model_name(transition: str, prefix: str = "leadml") -> str:
    return f"{prefix}-{transition}"


def set_tracking_uri(configured: str | None) -> str:
    """Apply the URI precedence (env, config, MLflow default) and return the URI in use."""
    if not os.environ.get("MLFLOW_TRACKING_URI") and configured:
        mlflow.set_tracking_uri(configured)
    return str(mlflow.get_tracking_uri())


def connect(configured: str | None = None) -> str:
    """Apply the URI precedence and check the tracking server and the registry answer: what a
    command that logs to MLflow calls first, before any work.

    Parameters
    ----------
    configured : str, optional
        ``tracking.tracking_uri``; ``$MLFLOW_TRACKING_URI`` wins when set.

    Returns
    -------
    str
        The tracking URI in use.

    Raises
    ------
    TrackingError
        An ``http(s)`` tracking or registry server does not answer (:func:`check_store`).
    """
    uri = set_tracking_uri(configured)
    for store in dict.fromkeys([uri, str(mlflow.get_registry_uri())]):
        check_store(store)
    return uri


def check_store(uri: str, *, read: bool = False) -> None:
    """Fail fast when the MLflow store at ``uri`` cannot be used.

    Parameters
    ----------
    uri : str
        A tracking or registry URI.
    read : bool
        Only reading: a local store (a SQLite file, a file-store directory) must already exist.
        MLflow would create an empty one, and its folders, on first use.

    Raises
    ------
    TrackingError
        An ``http(s)`` server does not answer within ``PROBE_TIMEOUT`` seconds (one request, not
        retried; any HTTP status counts as an answer, so a login page or a 404 passes and MLflow
        reports what is wrong), or, with ``read``, a local store does not exist.
    """
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        _probe(uri)
    elif read:
        path = _local_store(uri)
        if path is not None and not path.exists():
            raise TrackingError(
                f"no MLflow registry at {uri!r} ({path.resolve()} does not exist, and reading "
                "never creates it); train first (leadml train), pass --model PATH to a bundle "
                "directory, or set MLFLOW_TRACKING_URI to the registry's URI"
            )


def _probe(uri: str) -> None:
    import requests  # an MLflow dependency; it uses the same proxies and certificates

    try:
        requests.head(uri, timeout=PROBE_TIMEOUT, allow_redirects=False)
    except requests.RequestException as e:
        raise TrackingError(
            f"MLflow server {uri!r} is unreachable ({_reason(e)}); start it, or set "
            "MLFLOW_TRACKING_URI (or tracking.tracking_uri) to one that runs"
        ) from e


def _reason(error: BaseException) -> str:
    """The innermost operating-system reason of a requests error ("Connection refused")."""
    import requests

    if isinstance(error, requests.Timeout):
        return f"no answer within {PROBE_TIMEOUT:g} s"
    found: BaseException | None = error
    for _ in range(10):  # requests -> urllib3's MaxRetryError -> its reason -> the OSError
        if found is None:
            break
        if isinstance(found, OSError) and found.strerror:
            return str(found.strerror)
        reason = getattr(found, "reason", None)
        found = (
            reason if isinstance(reason, BaseException) else found.__cause__ or found.__context__
        )
    return type(error).__name__


def _local_store(uri: str) -> Path | None:
    """The file or directory behind a local store URI (SQLite, file store), else None
    (a server, an in-memory database, Databricks, ...)."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        from sqlalchemy.engine import make_url  # an MLflow dependency

        database = make_url(uri).database
        if not database or database == ":memory:" or database.startswith("file:"):
            return None
        return Path(database)
    if scheme in ("", "file"):
        from mlflow.utils.file_utils import local_file_uri_to_path

        return Path(local_file_uri_to_path(uri))
    return None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = str(v)[:500]
    return out


def _finite(metrics: dict[str, Any]) -> dict[str, float]:
    return {
        k: float(v)
        for k, v in metrics.items()
        if isinstance(v, int | float | np.floating) and np.isfinite(float(v))
    }


class LeadMLPyfunc(PythonModel):
    """MLflow pyfunc over a leadml bundle: input = a features frame (``lead_id``, ``as_of``,
    ``stage`` and the model's features, as built by ``leadml build --as-of``), output = the batch
    scorer's columns for this model's transition.

    Logged as code (``_pyfunc_model.py`` hands MLflow an instance), never pickled: the instance
    holds no state until :meth:`load_context` reads the bundle artifact."""

    def load_context(self, context: Any) -> None:
        self.model = load_bundle(context.artifacts["bundle"])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        if self.model.metadata.get("mode") == "flat":
            return score_flat(pd.DataFrame(model_input), self.model)
        frame = _restore_categories(pd.DataFrame(model_input), self.model)
        return score_features(frame, {self.model.transition: self.model})


def _set_pyfunc_model() -> None:
    """What ``_pyfunc_model.py`` runs when MLflow logs or loads the model: hand MLflow the pyfunc
    (``mlflow.models.set_model``), so the model is code, not a pickle."""
    mlflow.models.set_model(LeadMLPyfunc())


def _restore_categories(frame: pd.DataFrame, model: StageModel) -> pd.DataFrame:
    # MLflow signatures reject pandas `category`; inputs arrive as strings and are mapped back here.
    out = frame.copy()
    for col in model.spec.categorical:
        if col in out.columns and not isinstance(out[col].dtype, pd.CategoricalDtype):
            out[col] = to_levels(out[col], model.spec.levels[col])
    if "as_of" in out.columns:
        out["as_of"] = pd.to_datetime(out["as_of"]).astype("datetime64[ns]")
    return out


def _signature_example(result: TrainResult) -> pd.DataFrame:
    spec = result.model.spec
    if result.mode == "flat":  # the pyfunc takes the flat table's columns
        ex = result.test_frame[["lead_id", *spec.names]].head(5).copy()
    else:  # the pyfunc takes a features frame as `leadml build --as-of` writes it
        ex = result.test_frame[["lead_id", "as_of", *spec.names]].head(5).copy()
        ex.insert(2, "stage", "lead")
    for col in spec.categorical:
        ex[col] = ex[col].astype(object).where(ex[col].notna(), None).astype(str)
    ex["lead_id"] = ex["lead_id"].astype(str)
    return ex


def _champion(client: Any, name: str) -> Any | None:
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


@dataclass(frozen=True)
class RetrainPolicy:
    """``leadml retrain``'s reasons to promote a *ready* challenger that did not beat the
    champion on the same rows: the champion is older than ``max_champion_age_days``, or the
    monitor raised an alert on it (``alert``: what fired)."""

    max_champion_age_days: int = 90
    alert: str | None = None


def _champion_age_days(version: Any) -> float:
    created = pd.Timestamp(int(version.creation_timestamp), unit="ms", tz="UTC")
    return (pd.Timestamp.now(tz="UTC") - created).total_seconds() / 86_400


def _push_champion(client: Any, name: str, version: str) -> None:
    """Keep the order in which versions became champion (what rollback walks back)."""
    stack = _champion_stack(client, name)
    if not stack or stack[-1] != version:
        stack.append(version)
    client.set_registered_model_tag(name, CHAMPION_STACK, json.dumps(stack[-50:]))


def _champion_stack(client: Any, name: str) -> list[str]:
    try:
        tags = client.get_registered_model(name).tags or {}
        return [str(v) for v in json.loads(tags.get(CHAMPION_STACK, "[]"))]
    except (mlflow.exceptions.MlflowException, ValueError):
        return []


def log_training_run(
    result: TrainResult, *, force: bool = False, policy: RetrainPolicy | None = None
) -> dict[str, Any]:
    """Log a training run, register its model and apply the promotion gate (and, from
    ``leadml retrain``, its ``policy``). Returns where everything went and the decision."""
    from mlflow.models import infer_signature

    cfg = result.config
    tc = cfg.tracking
    uri = connect(tc.tracking_uri)
    mlflow.set_experiment(tc.experiment)
    model = result.model
    name = model_name(model.transition, tc.model_name_prefix)
    client = mlflow.MlflowClient()
    label = model.label
    y = result.test_frame[label].to_numpy().astype(int)

    with (
        tempfile.TemporaryDirectory() as tmp,
        mlflow.start_run(run_name=f"train-{model.transition}") as run,
    ):
        mlflow.log_params(_flatten(cfg.dump()))
        mlflow.log_params({"transition": model.transition, "label": label})
        if result.backtest is not None:
            mlflow.log_params(_chosen(result.backtest))
        mlflow.log_metrics({f"test_{k}": v for k, v in _finite(result.metrics).items()})
        mlflow.log_metrics(
            {f"baseline_{k}": v for k, v in _finite(result.baseline_metrics).items()}
        )
        mlflow.log_metrics(
            {
                f"trainset_{k}": float(v)
                for k, v in result.summary.items()
                if isinstance(v, int | float)
            }
        )
        sample = result.test_frame.head(20_000)
        importance = global_importance(model, sample)["mean_abs_shap"]
        plots = save_evaluation_plots(
            y,
            result.test_proba,
            model.tier(result.test_proba),
            importance,
            Path(tmp) / "plots",
            title=f"({model.transition})",
        )
        for p in plots:
            mlflow.log_artifact(str(p), artifact_path="plots")
        bundle_dir = save_bundle(model, Path(tmp) / "bundle")
        example = _signature_example(result)
        signature = infer_signature(example, None)
        # Models from code: the logged model holds _pyfunc_model.py, not a pickle of the class.
        with warnings.catch_warnings():
            # The signature is given explicitly; an input example would hold lead rows (PII).
            warnings.filterwarnings("ignore", message="An input example was not provided")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(_PYFUNC_CODE),
                artifacts={"bundle": str(bundle_dir)},
                signature=signature,
                registered_model_name=name,
                pip_requirements=["leadml"],
            )
        version = str(info.registered_model_version)

        champion = _champion(client, name)
        metric = tc.promotion_metric
        # Same rows for both: the newest fold's window, the challenger out of fold.
        new_value = float(evaluate(y, result.test_proba)[metric])
        verdict = result.verdict
        mlflow.set_tags(
            {"leadml.ready": str(verdict.ready).lower(), "leadml.verdict": verdict.reason}
        )
        old_value = float("nan")
        if not verdict.ready:
            decision = ("forced" if force else "not promoted") + f" ({verdict.reason})"
        elif champion is None:
            decision = "promoted (no champion yet)"
        else:
            old_model = load_registered_model(f"models:/{name}/{champion.version}")
            try:
                p_old = old_model.probability(_restore_categories(result.test_frame, old_model))
                old_value = float(evaluate(y, p_old)[metric])
            except ValueError:
                old_value = float("nan")  # incompatible features: the new model wins by default
            passed = not np.isfinite(old_value) or new_value >= old_value - tc.promotion_tolerance
            age = _champion_age_days(champion)
            if passed:
                decision = f"promoted (v{version} {metric} {new_value:.4f} vs champion v{champion.version} {old_value:.4f})"
            elif policy is not None and age > policy.max_champion_age_days:
                decision = (
                    f"promoted by policy (champion v{champion.version} is {age:.0f} days old, "
                    f"more than {policy.max_champion_age_days}; {metric} {new_value:.4f} vs "
                    f"{old_value:.4f})"
                )
            elif policy is not None and policy.alert:
                decision = (
                    f"promoted by policy (monitor alert on champion v{champion.version}: "
                    f"{policy.alert}; {metric} {new_value:.4f} vs {old_value:.4f})"
                )
            elif force:
                decision = f"forced (v{version} {metric} {new_value:.4f} < champion v{champion.version} {old_value:.4f} - {tc.promotion_tolerance})"
            else:
                decision = f"kept champion v{champion.version} ({metric} {old_value:.4f}; v{version} has {new_value:.4f})"
        promote = decision.startswith(("promoted", "forced"))
        if promote:
            if champion is not None:
                _push_champion(client, name, str(champion.version))
            client.set_registered_model_alias(name, CHAMPION, version)
            _push_champion(client, name, version)
        client.set_model_version_tag(name, version, "leadml.decision", decision)
        mlflow.set_tags(
            {
                "leadml.promotion_decision": decision,
                "leadml.promoted": str(promote).lower(),
                "leadml.model_version": version,
            }
        )
        mlflow.log_metrics({"gate_new_" + metric: new_value})
        if np.isfinite(old_value):
            mlflow.log_metric("gate_champion_" + metric, old_value)
        run_id = run.info.run_id
    return {
        "tracking_uri": uri,
        "run_id": run_id,
        "model_name": name,
        "model_version": version,
        "model_uri": f"models:/{name}/{version}",
        "promoted": promote,
        "decision": decision,
    }


def _chosen(bt: Any) -> dict[str, str]:
    """What the backtest chose, as run parameters (``chosen_*``): the model in words, its
    candidate, trees, recency half-life, blend weight and calibration."""
    return {
        "chosen_model": bt.chosen,
        "chosen_candidate": bt.candidate,
        "chosen_n_trees": str(bt.n_trees),
        "chosen_half_life": str(bt.half_life),
        "chosen_linear_base": str(bt.linear).lower(),
        "chosen_linear_weight": "none" if bt.linear_weight is None else f"{bt.linear_weight:.6g}",
        "chosen_calibration": bt.calibration_method,
    }


def log_backtest(result: TrainResult, artifacts: list[Path]) -> str:
    """Log a backtest on its own run (``backtest-<transition>``): every model's mean metrics
    over the folds, the verdict, the fold table and its plot. Returns the run id."""
    bt = result.backtest
    if bt is None:
        raise ValueError("this training result has no backtest to log")
    connect(result.config.tracking.tracking_uri)
    mlflow.set_experiment(result.config.tracking.experiment)
    with mlflow.start_run(run_name=f"backtest-{result.model.transition}") as run:
        mlflow.log_params(_flatten(result.config.dump()))
        mlflow.log_params(_chosen(bt))
        for row in bt.summary.itertuples():
            if np.isfinite(row.mean):
                mlflow.log_metric(f"{row.model}_{row.metric}", float(row.mean))
        v = bt.verdict
        mlflow.set_tags({"leadml.ready": str(v.ready).lower(), "leadml.verdict": v.reason})
        for p in artifacts:
            mlflow.log_artifact(str(p), artifact_path="backtest")
        return str(run.info.run_id)


def load_registered_model(uri: str) -> StageModel:
    """Load a StageModel from an MLflow model URI (``models:/leadml-prospect@champion``,
    ``models:/leadml-prospect/3``, ``runs:/<id>/model``). Local bundles load with
    :func:`leadml.jobs.load_stage_model`, without MLflow.

    Raises
    ------
    TrackingError
        The tracking server or registry does not answer, or a local store does not exist (it is
        not created: :func:`check_store`).
    BundleError
        The store has no such model, or the model is not a leadml model.
    """
    text = str(uri)
    stores = [str(mlflow.get_tracking_uri())]
    if text.startswith("models:/"):
        stores.append(str(mlflow.get_registry_uri()))
    try:
        for store in dict.fromkeys(stores):
            check_store(store, read=True)  # before MLflow opens (and creates) anything
    except TrackingError as e:
        raise TrackingError(f"cannot load MLflow model {text!r}: {e}") from e
    try:
        downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=text))
    except Exception as e:  # mlflow raises several unrelated types for a bad URI
        raise BundleError(
            f"could not load MLflow model {text!r} from tracking URI {mlflow.get_tracking_uri()!r}: "
            f"{str(e).splitlines()[0]}. Train first (leadml train) or pass a bundle path."
        ) from e
    bundle = downloaded / "artifacts" / "bundle"
    if not bundle.is_dir():
        raise BundleError(f"MLflow model {text!r} is not a leadml model (no bundle artifact)")
    model = load_bundle(bundle)
    model.metadata["model_version"] = _resolve_version(text)
    return model


def _resolve_version(uri: str) -> str:
    """``models:/leadml-prospect@champion`` -> ``leadml-prospect:3`` (what a rep's report shows)."""
    if not uri.startswith("models:/"):
        return uri
    ref = uri.removeprefix("models:/")
    client = mlflow.MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        try:
            return f"{name}:{client.get_model_version_by_alias(name, alias).version}"
        except mlflow.exceptions.MlflowException:
            return ref
    name, _, version = ref.partition("/")
    return f"{name}:{version}" if version else ref


def rollback(
    transition: str,
    reason: str,
    *,
    to: str | None = None,
    prefix: str = "leadml",
    tracking_uri: str | None = None,
    experiment: str = "leadml",
) -> str:
    """Move ``champion`` of ``leadml-<transition>`` back to the version that was champion
    before it (or to version ``to``), with ``reason`` logged on the registered model, on the
    version rolled back from, and on a ``rollback-<transition>`` run. Returns what happened."""
    if not reason.strip():
        raise TrackingError("a rollback needs a reason (--reason TEXT): it is logged for the team")
    uri = connect(tracking_uri)
    check_store(uri, read=True)
    client = mlflow.MlflowClient()
    name = model_name(transition, prefix)
    current = _champion(client, name)
    if current is None:
        raise TrackingError(
            f"{name} has no champion in {uri!r}; nothing to roll back (train or retrain first)"
        )
    cur = str(current.version)
    stack = _champion_stack(client, name)
    while stack and stack[-1] == cur:
        stack.pop()
    if to is not None:
        target = str(to).lstrip("v")
    elif stack:
        target = stack[-1]
    else:
        older = [
            int(v.version)
            for v in client.search_model_versions(f"name='{name}'")
            if int(v.version) < int(cur)
        ]
        if not older:
            raise TrackingError(
                f"{name} v{cur} is the only version that was ever champion; nothing to roll "
                "back to (pass --to VERSION)"
            )
        target = str(max(older))
    if target == cur:
        raise TrackingError(f"{name} v{cur} is already the champion")
    try:
        client.get_model_version(name, target)
    except mlflow.exceptions.MlflowException as e:
        raise TrackingError(f"{name} has no version {target!r} to roll back to") from e
    when = pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds")
    note = f"v{cur} -> v{target} at {when}: {reason.strip()}"
    client.set_registered_model_alias(name, CHAMPION, target)
    if to is None:
        client.set_registered_model_tag(name, CHAMPION_STACK, json.dumps(stack))
    else:
        _push_champion(client, name, target)
    client.set_registered_model_tag(name, "leadml.last_rollback", note)
    client.set_model_version_tag(name, cur, "leadml.rolled_back", note)
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name=f"rollback-{transition}"):
        mlflow.set_tags(
            {
                "leadml.rollback_from": cur,
                "leadml.rollback_to": target,
                "leadml.rollback_reason": reason.strip(),
                "leadml.model_name": name,
            }
        )
    return f"{name}: champion moved back from v{cur} to v{target} ({reason.strip()})"


def log_monitor(result: Any, config: Any) -> str | None:
    """Log a monitor result (:class:`leadml.serve.monitor.MonitorResult`): one
    ``monitor-<transition>`` run per model with the newest run's realised metrics and drift,
    and the same as tags on the registry version that scored it. Runs scored by local bundles
    (no registry version) are not logged; returns None then."""
    newest: dict[str, dict[str, Any]] = {}
    for row in result.rows:
        newest[row["transition"]] = row
    registered = {
        t: r
        for t, r in newest.items()
        if ":" in str(r["model_version"]) and "@bundle:" not in str(r["model_version"])
    }
    if not registered:
        return None
    tc = config.tracking
    connect(tc.tracking_uri)
    client = mlflow.MlflowClient()
    mlflow.set_experiment(tc.experiment)
    done = []
    for t, row in registered.items():
        name, _, version = str(row["model_version"]).rpartition(":")
        matured = [r for r in result.rows if r["transition"] == t and r["status"] == "matured"]
        metrics: dict[str, Any] = {}
        if matured:
            m = matured[-1]
            metrics.update(
                {
                    f"realised_{k}": m.get(k)
                    for k in ("roc_auc", "pr_auc", "ece", "log_loss", "conversion")
                }
            )
        drift = row.get("drift") or {}
        if drift.get("worst"):
            metrics["max_feature_psi"] = drift["worst"][0]["psi"]
        metrics["score_psi"] = drift.get("score_psi")
        alerts = [a for a in result.alerts if a.transition == t]
        metrics["alerts"] = len(alerts)
        clean = _finite({k: v for k, v in metrics.items() if v is not None})
        with mlflow.start_run(run_name=f"monitor-{t}") as run:
            mlflow.log_metrics(clean)
            mlflow.set_tags(
                {
                    "leadml.model_name": name,
                    "leadml.model_version": version,
                    "leadml.monitor_as_of": row["as_of"],
                    "leadml.alerts": "; ".join(a.kind for a in alerts) or "none",
                }
            )
        try:
            client.set_model_version_tag(name, version, "leadml.monitor_as_of", row["as_of"])
            client.set_model_version_tag(
                name,
                version,
                "leadml.monitor_alerts",
                "; ".join(a.message for a in alerts)[:4000] or "none",
            )
            for k, v in clean.items():
                client.set_model_version_tag(name, version, f"leadml.monitor.{k}", f"{v:.4g}")
        except mlflow.exceptions.MlflowException:
            pass  # the version was deleted from the registry; the run above still holds it
        done.append(f"{name}:{version} (run {run.info.run_id})")
    return "logged to MLflow: " + ", ".join(done)
