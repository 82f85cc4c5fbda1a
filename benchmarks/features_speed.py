"""Feature building speed and memory: a scoring set at one as_of, a weekly training set, and the
scaling in the number of observation points beside the naive merge-filter-group way.

    python -m benchmarks.features_speed [--leads 1000000] [--events-per-lead 50]
        [--train-leads 200000] [--scaling-leads 10000]

Each workload runs in a fresh Python process so its peak RSS (``ru_maxrss``) is its own: the
scoring number includes generating the tables; the RSS before building features is printed
beside it. Targets (2 cores): scoring 1M leads / 50M events at one as_of <= 30 s and <= 8 GB;
a 26-week weekly training set for 200k leads / 10M events <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from typing import Any

import numpy as np
import pandas as pd

from leadml.config import ColumnsConfig
from leadml.data.contracts import CRMData

TYPES = (
    "email_open",
    "email_click",
    "web_visit",
    "pricing_page_view",
    "content_download",
    "webinar_attended",
    "form_submit",
    "demo_request",
)
TYPE_SHARE = np.array([0.35, 0.1, 0.3, 0.08, 0.07, 0.03, 0.04, 0.03])
START = np.datetime64("2024-01-01T00:00:00", "s").astype(np.int64)
SPAN = 540 * 86_400


def _rss_now_gb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1024**3


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def synthetic_crm(n_leads: int, events_per_lead: float, seed: int = 0) -> CRMData:
    """Canonical tables at scale, made with numpy in O(events) (no sort): for speed, not realism.

    Leads are created over the first half of 18 months; each has Poisson(events_per_lead)
    events spread over its remaining time, generated grouped by lead and sorted by time within
    each lead (the scoring workload re-sorts them by time, as exports arrive); 15% become
    prospects.
    """
    rng = np.random.default_rng(seed)
    created = np.sort(rng.integers(START, START + SPAN // 2, n_leads))
    counts = rng.poisson(events_per_lead, n_leads)
    lead_idx = np.repeat(np.arange(n_leads), counts)
    n = len(lead_idx)
    # Sorted times within each lead without sorting: normalised cumulative exponential gaps.
    gaps = rng.exponential(1.0, n)
    cum = np.cumsum(gaps)
    ends = np.cumsum(counts)
    starts = ends - counts
    base = np.where(starts > 0, cum[np.maximum(starts - 1, 0)], 0.0)
    total = np.where(counts > 0, cum[np.maximum(ends - 1, 0)] - base, 1.0) + 1.0
    frac = (cum - np.repeat(base, counts)) / np.repeat(total, counts)
    life = START + SPAN - created
    t = created[lead_idx] + (frac * life[lead_idx]).astype(np.int64)
    del gaps, cum, frac
    etype = rng.choice(len(TYPES), n, p=TYPE_SHARE / TYPE_SHARE.sum()).astype(np.int8)
    has_value = (etype == TYPES.index("web_visit")) | (etype == TYPES.index("pricing_page_view"))
    value = np.where(has_value, rng.exponential(90.0, n).round(), np.nan)
    events = pd.DataFrame(
        {
            "lead_id": (lead_idx + 1).astype(np.int64),
            "event_type": pd.Categorical.from_codes(etype, categories=list(TYPES)),
            "occurred_at": t.astype("datetime64[s]").astype("datetime64[ns]"),
            "value": value,
        }
    )
    del lead_idx, t, etype, value
    ids = np.arange(1, n_leads + 1, dtype=np.int64)
    leads = pd.DataFrame(
        {
            "lead_id": ids,
            "created_at": created.astype("datetime64[s]").astype("datetime64[ns]"),
            "industry": pd.Categorical.from_codes(
                rng.integers(0, 6, n_leads),
                categories=["finance", "health", "manufacturing", "retail", "software", "other"],
            ),
            "country": pd.Categorical.from_codes(
                rng.integers(0, 5, n_leads), categories=["BR", "DE", "IN", "UK", "US"]
            ),
            "company_size": pd.Categorical.from_codes(
                rng.integers(0, 4, n_leads), categories=["1-10", "11-50", "51-200", "201+"]
            ),
            "annual_revenue_musd": rng.lognormal(3, 1, n_leads),
        }
    )
    promoted = rng.random(n_leads) < 0.15
    p_at = created[promoted] + rng.integers(86_400, 200 * 86_400, int(promoted.sum()))
    sc_ids = np.concatenate([ids, ids[promoted]])
    sc_at = np.concatenate([created, p_at])
    order = np.lexsort((sc_at, sc_ids))
    stages = pd.DataFrame(
        {
            "lead_id": sc_ids[order],
            "stage": pd.Series(
                np.where(np.arange(len(sc_ids)) < n_leads, "lead", "prospect")[order], dtype=object
            ),
            "changed_at": sc_at[order].astype("datetime64[s]").astype("datetime64[ns]"),
        }
    )
    return CRMData(leads=leads, events=events, stage_changes=stages, columns=ColumnsConfig())


def naive_features(data: CRMData, points: pd.DataFrame, windows=(7, 30, 90)) -> pd.DataFrame:
    """The obvious way: merge every event onto every point of its lead, filter, group.

    Computes only window counts and recency per event type (a subset of leadml's features).
    """
    m = points.merge(data.events[["lead_id", "event_type", "occurred_at"]], on="lead_id")
    m = m.loc[m["occurred_at"] < m["as_of"]]
    age = (m["as_of"] - m["occurred_at"]) / pd.Timedelta(days=1)
    keys = [m["lead_id"], m["as_of"], m["event_type"]]
    parts = []
    for w in windows:
        inside = (age <= w).astype(np.int64)
        parts.append(
            inside.groupby(keys, observed=True).sum().unstack(fill_value=0).add_suffix(f"_{w}d")
        )
    parts.append(age.groupby(keys, observed=True).min().unstack().add_prefix("days_since_"))
    return pd.concat(parts, axis=1)


def _weekly_points(data: CRMData, weeks: int, first: str) -> pd.DataFrame:
    grid = pd.date_range(first, periods=weeks, freq="7D").to_numpy(dtype="datetime64[ns]")
    leads = data.leads[["lead_id", "created_at"]]
    pts = leads.merge(pd.DataFrame({"as_of": grid}), how="cross")
    return pts.loc[pts["created_at"] < pts["as_of"], ["lead_id", "as_of"]].reset_index(drop=True)


# --- workers (each in its own process) -----------------------------------------------------------


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _warm_up() -> float:
    """Load the compiled kernels once (numba import and on-disk cache), timed apart."""
    t0 = time.perf_counter()
    from leadml._kernels import lead_key_order, window_features

    z, f = np.zeros(2, np.int64), np.zeros(2)
    window_features(z, z.astype(np.int16), z, 0, 2, z, 0, 0, 1.0, np.zeros((1, 0, 2)),
                    np.zeros((1, 2)), f, f.copy(), f.copy(), z.copy())  # fmt: skip
    lead_key_order(np.zeros(2, np.int64), np.array([1, 0], np.int64))
    return time.perf_counter() - t0


def _work_scoring(a: argparse.Namespace) -> dict[str, Any]:
    from leadml.data.features import make_feature_spec
    from leadml.data.trainset import build_scoring_set

    t0 = time.perf_counter()
    data = synthetic_crm(a.leads, a.events_per_lead)
    if a.event_order == "time":
        # As CRM exports arrive: ordered by timestamp, leads interleaved. leadml must regroup
        # the events by lead itself, which the lead-grouped order lets it skip.
        ev = data.events
        order = np.argsort(ev["occurred_at"].to_numpy(), kind="stable")
        data = CRMData(
            leads=data.leads,
            events=ev.take(order).reset_index(drop=True),
            stage_changes=data.stage_changes,
            columns=data.columns,
        )
        del ev, order
    t_gen = time.perf_counter() - t0
    rss_before = _rss_now_gb()
    t_warm = _warm_up()
    t0 = time.perf_counter()
    spec = make_feature_spec(data)
    t_spec = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), _cpu()
    frame = build_scoring_set(data, "2024-10-01", spec=spec)
    t_feat, c_feat = time.perf_counter() - t0, _cpu() - c0
    return {
        "leads": a.leads,
        "events": len(data.events),
        "points": len(frame),
        "features": len(spec.names),
        "generate_s": t_gen,
        "spec_s": t_spec,
        "warm_up_s": t_warm,
        "scoring_s": t_feat,
        "scoring_cpu_s": c_feat,
        "rss_before_gb": rss_before,
        "peak_rss_gb": _peak_rss_gb(),
    }


def _work_training(a: argparse.Namespace) -> dict[str, Any]:
    from leadml.data.trainset import build_training_set
    from leadml.datasets import make_crm

    t0 = time.perf_counter()
    data = make_crm(n_leads=a.train_leads, seed=5)
    t_gen = time.perf_counter() - t0
    _warm_up()
    end = data.end - pd.Timedelta(days=30)
    start = end - pd.Timedelta(weeks=25)
    t0, c0 = time.perf_counter(), _cpu()
    ts = build_training_set(data, "prospect", start, end)
    t_build, c_build = time.perf_counter() - t0, _cpu() - c0
    return {
        "leads": a.train_leads,
        "events": len(data.events),
        "points": len(ts.frame),
        "weeks": len(ts.frame["as_of"].unique()),
        "generate_s": t_gen,
        "training_s": t_build,
        "training_cpu_s": c_build,
        "peak_rss_gb": _peak_rss_gb(),
    }


def _work_scaling(a: argparse.Namespace) -> dict[str, Any]:
    from leadml.data.features import build_features, make_feature_spec

    data = synthetic_crm(a.scaling_leads, a.events_per_lead, seed=2)
    spec = make_feature_spec(data)
    _warm_up()
    rows = []
    for weeks in (13, 26, 52):
        pts = _weekly_points(data, weeks, "2024-07-01")
        c0 = _cpu()
        build_features(data.leads, data.events, data.stage_changes, pts, spec=spec)
        c_ours = _cpu() - c0
        c0 = _cpu()
        naive = naive_features(data, pts)
        c_naive = _cpu() - c0
        rows.append({"weeks": weeks, "points": len(pts), "ours_s": c_ours, "naive_s": c_naive})
        del naive
    return {"leads": a.scaling_leads, "events": len(data.events), "rows": rows}


WORKERS = {"scoring": _work_scoring, "training": _work_training, "scaling": _work_scaling}


def _run(kind: str, argv: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.features_speed", "--worker", kind, *argv],
        check=True,
        capture_output=True,
        text=True,
    )
    line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--events-per-lead", type=float, default=50)
    ap.add_argument("--train-leads", type=int, default=200_000)
    ap.add_argument("--scaling-leads", type=int, default=10_000)
    ap.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    ap.add_argument("--skip", action="append", default=[], choices=sorted(WORKERS))
    ap.add_argument(
        "--event-order", choices=["time", "lead"], default="time", help=argparse.SUPPRESS
    )
    a = ap.parse_args(argv)
    if a.worker:
        warnings.simplefilter("ignore")
        print("RESULT " + json.dumps(WORKERS[a.worker](a)), flush=True)
        return
    passthrough = [
        "--leads", str(a.leads),
        "--events-per-lead", str(a.events_per_lead),
        "--train-leads", str(a.train_leads),
        "--scaling-leads", str(a.scaling_leads),
    ]  # fmt: skip

    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    print(
        f"Load average at start: {load} on {os.cpu_count()} cores. Wall seconds suffer when the "
        "machine is shared; CPU seconds (user + system of the process) are what the code costs.\n"
    )
    print(
        "| workload | size | points | wall s | CPU s | target | peak RSS |\n"
        "|---|---|---:|---:|---:|---|---:|"
    )
    for order in ("time", "lead") if "scoring" not in a.skip else ():
        s = _run("scoring", [*passthrough, "--event-order", order])
        print(
            f"| scoring set, one as_of (eligibility + features), events in {order} order "
            f"| {s['leads']:,} leads / "
            f"{s['events']:,} events | {s['points']:,} | {s['scoring_s']:.1f} | "
            f"{s['scoring_cpu_s']:.1f} | <= 30 s, <= 8 GB | {s['peak_rss_gb']:.1f} GB "
            f"({s['rss_before_gb']:.1f} GB of it the tables) |"
        )
    if "scoring" not in a.skip:
        print(f"| feature spec (vocabulary, levels) | same | - | {s['spec_s']:.1f} | | | |")
        print(
            f"| once per process: load the compiled kernels (numba) | - | - | "
            f"{s['warm_up_s']:.1f} | | | |",
            flush=True,
        )
    if "training" not in a.skip:
        t = _run("training", passthrough)
        print(
            f"| training set, {t['weeks']} weekly points (points, labels, features) | "
            f"{t['leads']:,} leads / {t['events']:,} events (make_crm) | {t['points']:,} | "
            f"{t['training_s']:.1f} | {t['training_cpu_s']:.1f} | <= 60 s | "
            f"{t['peak_rss_gb']:.1f} GB |",
            flush=True,
        )
    if "scaling" not in a.skip:
        r = _run("scaling", passthrough)
        print(
            f"\nScaling in observation points at fixed events ({r['leads']:,} leads, "
            f"{r['events']:,} events). naive = merge events onto points, filter, groupby "
            "(window counts and recency only, a subset of leadml's features; run at this small "
            "size because its merged table has points x events-per-lead rows):\n"
        )
        print("| weekly points | points | leadml CPU s | naive CPU s | naive / leadml |")
        print("|---:|---:|---:|---:|---:|")
        for row in r["rows"]:
            print(
                f"| {row['weeks']} | {row['points']:,} | {row['ours_s']:.2f} | "
                f"{row['naive_s']:.2f} | {row['naive_s'] / row['ours_s']:.1f}x |"
            )


if __name__ == "__main__":
    main()
