"""Feature building speed: scoring features at one as_of, a weekly training set, and scaling in
the number of points against the naive merge-filter-group way, all in the same run.

    python -m benchmarks.features_speed [--leads 1000000] [--events-per-lead 50]
"""

from __future__ import annotations

import argparse
import warnings

import pandas as pd

from benchmarks._common import peak_rss_gb, synthetic_tables, timed
from leadml.features import build_features, make_feature_spec


def naive_counts(data, points: pd.DataFrame, windows=(7, 30, 90)) -> pd.DataFrame:
    """The obvious way: merge every event onto every point of its lead, filter, group."""
    m = points.merge(data.events, on="lead_id")
    m = m.loc[m["occurred_at"] < m["as_of"]]
    age = (m["as_of"] - m["occurred_at"]).dt.total_seconds() / 86400
    out = []
    for w in windows:
        c = m.loc[age <= w].groupby(["lead_id", "as_of", "event_type"], observed=True).size()
        out.append(c.unstack(fill_value=0).add_suffix(f"_{w}d"))
    return pd.concat(out, axis=1)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--events-per-lead", type=int, default=50)
    ap.add_argument("--train-leads", type=int, default=200_000)
    ap.add_argument("--scaling-leads", type=int, default=20_000)
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    rows = []
    data = synthetic_tables(a.leads, a.events_per_lead)
    spec = make_feature_spec(data)
    as_of = pd.Timestamp("2024-10-01")
    alive = data.leads.loc[data.leads["created_at"] < as_of, "lead_id"]
    points = pd.DataFrame({"lead_id": alive.to_numpy(), "as_of": as_of})
    t, f = timed(
        lambda: build_features(data.leads, data.events, data.stage_changes, points, spec=spec)
    )
    rows.append(
        (
            "scoring features, one as_of",
            f"{a.leads:,} leads / {len(data.events):,} events",
            len(points),
            t,
        )
    )
    del f
    data = None  # free the 1M-lead tables before the next workload

    train = synthetic_tables(a.train_leads, a.events_per_lead, seed=1)
    grid = pd.date_range("2024-04-01", periods=26, freq="7D")
    pts = train.leads[["lead_id", "created_at"]].merge(pd.DataFrame({"as_of": grid}), how="cross")
    pts = pts.loc[pts["created_at"] < pts["as_of"], ["lead_id", "as_of"]]
    spec = make_feature_spec(train)
    t, _ = timed(
        lambda: build_features(train.leads, train.events, train.stage_changes, pts, spec=spec)
    )
    rows.append(
        (
            "training set, 26 weekly points",
            f"{a.train_leads:,} leads / {len(train.events):,} events",
            len(pts),
            t,
        )
    )
    train = None

    small = synthetic_tables(a.scaling_leads, a.events_per_lead, seed=2)
    spec = make_feature_spec(small)
    scaling = []
    for k in (13, 26, 52):
        grid = pd.date_range("2024-07-01", periods=k, freq="7D")
        pts = small.leads[["lead_id"]].merge(pd.DataFrame({"as_of": grid}), how="cross")
        t_ours, _ = timed(
            lambda pts=pts: build_features(
                small.leads, small.events, small.stage_changes, pts, spec=spec
            ),
            2,
        )
        t_naive, _ = timed(lambda pts=pts: naive_counts(small, pts))
        scaling.append((k, len(pts), t_ours, t_naive))

    print("\n| workload | size | points | seconds |\n|---|---|---:|---:|")
    for name, size, n, t in rows:
        print(f"| {name} | {size} | {n:,} | {t:.1f} |")
    print(f"\npeak RSS of the whole run: {peak_rss_gb():.1f} GB")
    print(
        f"\nScaling at fixed events ({a.scaling_leads:,} leads, {len(small.events):,} events); naive = merge "
        "events onto points, filter, group (window counts only, a subset of our features):\n"
    )
    print(
        "| weekly points | points | leadml s | naive s | naive / leadml |\n|---:|---:|---:|---:|---:|"
    )
    for k, n, t_ours, t_naive in scaling:
        print(f"| {k} | {n:,} | {t_ours:.2f} | {t_naive:.2f} | {t_naive / t_ours:.1f}x |")


if __name__ == "__main__":
    main()
