"""How fast is the synthetic CRM generator? ``python -m benchmarks.synth_speed [--leads N ...]``.

Times :func:`leadml.datasets.make_crm` and :func:`leadml.datasets.write_crm` (Parquet) for each
size and prints events per lead and leads per second, so a run at 100k leads can be extrapolated
to a million (the cost is linear in leads: each lead costs its days in the period).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from leadml.datasets import make_crm, write_crm


def run(sizes: list[int], seed: int) -> list[dict[str, float]]:
    """Generate and write each size once; return one row of timings per size."""
    make_crm(n_leads=200, seed=seed)  # warm imports and caches outside the timings
    rows = []
    for n in sizes:
        t0 = time.perf_counter()
        data = make_crm(n_leads=n, seed=seed)
        t1 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            write_crm(data, Path(tmp) / "crm")
        t2 = time.perf_counter()
        rows.append(
            {
                "leads": n,
                "events": len(data.events),
                "events_per_lead": len(data.events) / n,
                "make_s": t1 - t0,
                "write_s": t2 - t1,
                "leads_per_s": n / (t1 - t0),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--leads", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(
        f"{'leads':>10} {'events':>12} {'ev/lead':>8} {'make s':>8} {'write s':>8} {'1M est s':>9}"
    )
    for row in run(args.leads, args.seed):
        estimate = 1_000_000 / row["leads_per_s"]
        print(
            f"{row['leads']:>10,.0f} {row['events']:>12,.0f} {row['events_per_lead']:>8.1f} "
            f"{row['make_s']:>8.1f} {row['write_s']:>8.1f} {estimate:>9.0f}"
        )


if __name__ == "__main__":
    main()
