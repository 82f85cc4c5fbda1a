"""Scoring one range of leads at a time: memory set by the range, time linear in the leads.

    python -m benchmarks.streaming [--leads 1000000] [--big 5] [--partition-leads 500000]
                                   [--workers 2] [--workdir DIR]

1. Trains both stage models on a 20,000-lead synthetic CRM (``make_crm(seed=1)``, default
   config) unless ``--workdir`` has them (``benchmarks.scoring_speed`` leaves the same bundles).
2. Writes a ``--leads`` CRM (``make_crm(seed=2)``, the scoring benchmark's) and a CRM ``--big``
   times as large, written as a partitioned Parquet dataset: ``--big`` independent CRMs of
   ``--leads`` leads (seeds 2, 3, ...; lead ids offset so they never collide) whose events are
   one file each under ``events/``, the leads and stage changes one file each.
3. Runs the nightly job, each in a fresh process: the ``--leads`` CRM in one shot (the
   baseline), then ``--partition-leads`` at a time, then in ranges half that size scored by
   ``--workers`` processes (both checked byte-identical with the baseline's file); then the big
   CRM both ways. The baseline runs again after each run, and each run's time per lead is set
   against the mean of the baseline runs just before and after it (this machine's speed drifts
   by a third within minutes). Prints seconds, leads per second, time per lead against the
   baseline, peak memory (the sum over the process and its workers, sampled every 0.2 s) and each run's
   breakdown (with workers, the parent's: their stages show as one ``ranges`` stage).
"""

from __future__ import annotations

import argparse
import filecmp
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from benchmarks._common import peak_rss_gb

AS_OF = "2025-06-01"


def _bundles(workdir: Path) -> None:
    from leadml.datasets import make_crm
    from leadml.model.bundle import save_bundle
    from leadml.model.training import train

    if all((workdir / f"bundle-{t}").exists() for t in ("prospect", "opportunity")):
        return
    data = make_crm(n_leads=20_000, seed=1)
    for t in ("prospect", "opportunity"):
        save_bundle(train(data, t).model, workdir / f"bundle-{t}", overwrite=True)


def _generate(n: int, times: int, workdir: Path) -> dict[str, Any]:
    import pandas as pd

    from leadml.datasets import make_crm, write_crm

    t0 = time.perf_counter()
    one = workdir / f"crm-{n}"
    if not (one / "leads.parquet").exists():
        write_crm(make_crm(n_leads=n, seed=2), one, overwrite=True)
    big = workdir / f"crm-{n * times}-dataset"
    if not (big / "leads.parquet").exists():
        tmp = workdir / f".crm-{n * times}-dataset.tmp"
        (tmp / "events").mkdir(parents=True, exist_ok=True)
        leads, stages = [], []
        for k in range(times):
            crm = make_crm(n_leads=n, seed=2 + k)
            shift = lambda f, k=k: f.assign(lead_id=f["lead_id"] + k * n)  # noqa: E731
            shift(crm.events).to_parquet(tmp / "events" / f"part-{k:03d}.parquet", index=False)
            leads.append(shift(crm.leads))
            stages.append(shift(crm.stage_changes))
            del crm
        pd.concat(leads, ignore_index=True).to_parquet(tmp / "leads.parquet", index=False)
        pd.concat(stages, ignore_index=True).to_parquet(tmp / "stage_changes.parquet", index=False)
        tmp.rename(big)
    return {"seconds": time.perf_counter() - t0}


def _tree_rss() -> int:
    """Resident bytes of this process and all its descendants (Linux /proc)."""
    import os

    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [os.getpid()]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def _job(data: Path, out: Path, workdir: Path, size: int | None, workers: int) -> dict[str, Any]:
    import threading

    from leadml._timing import breakdown
    from leadml.config import LeadMLConfig
    from leadml.jobs import run_score

    cfg = LeadMLConfig().with_overrides({"scoring": {"partition_leads": size, "workers": workers}})
    peak = [0]
    stop = threading.Event()

    def sample() -> None:  # worker processes hold their own memory: sum the process tree
        while not stop.wait(0.2):
            peak[0] = max(peak[0], _tree_rss())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    with breakdown() as spent:
        summary = run_score(
            data,
            out,
            as_of=AS_OF,
            model_specs=[str(workdir / "bundle-prospect"), str(workdir / "bundle-opportunity")],
            overwrite=True,
            config=cfg,
            progress=False,
        )
    seconds = time.perf_counter() - t0
    stop.set()
    sampler.join()
    return {
        "seconds": seconds,
        "scored": int(summary.split()[1].replace(",", "")),
        "peak_rss_gb": max(peak_rss_gb(), peak[0] / 2**30),
        "breakdown": spent.table(),
    }


def _same(a: Path, b: Path) -> str:
    if not (a.exists() and b.exists()):
        return "not both run"
    return "identical" if filecmp.cmp(a, b, shallow=False) else "DIFFER"


def _child(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.streaming", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leads", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=5, help="The big CRM is this many times --leads.")
    ap.add_argument("--partition-leads", type=int, default=500_000)
    ap.add_argument("--workers", type=int, default=2, help="Worker processes of the last runs.")
    ap.add_argument("--only", help="Comma-separated run numbers (1-4) beside the baseline.")
    ap.add_argument("--workdir", type=Path, default=Path("data/interim/bench-scoring"))
    ap.add_argument("--step", nargs="+", help=argparse.SUPPRESS)  # internal: one child step
    a = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    a.workdir.mkdir(parents=True, exist_ok=True)
    n, size = a.leads, a.partition_leads
    if a.step:
        if a.step[0] == "prepare":
            _bundles(a.workdir)
            result = _generate(n, a.big, a.workdir)
        else:
            data, out, part, workers = a.step[1], a.step[2], a.step[3], int(a.step[4])
            size = None if part == "-" else int(part)
            result = _job(Path(data), Path(out), a.workdir, size, workers)
        print(json.dumps(result))
        return

    common = ["--workdir", str(a.workdir), "--leads", str(n), "--big", str(a.big)]
    prep = _child([*common, "--step", "prepare"])
    one = a.workdir / "stream-one.parquet"
    outs = [a.workdir / f"stream-{k}.parquet" for k in range(4)]
    w, big, crm = a.workers, a.workdir / f"crm-{n * a.big}-dataset", a.workdir / f"crm-{n}"
    half = -(-size // w)
    runs = [
        (f"{n:,} leads, one shot (baseline)", crm, one, "-", 1),
        (f"{n:,} leads, {size:,} at a time", crm, outs[0], str(size), 1),
        (f"{n:,} leads, {half:,} at a time, {w} workers", crm, outs[1], str(half), w),
        (f"{n * a.big:,} leads (dataset), {size:,} at a time", big, outs[2], str(size), 1),
        (
            f"{n * a.big:,} leads (dataset), {half:,} at a time, {w} workers",
            big,
            outs[3],
            str(half),
            w,
        ),
    ]
    only = {int(x) for x in a.only.split(",")} if a.only else set(range(1, len(runs)))
    # The baseline runs before and after every other run: each run's time per lead is set
    # against the mean of the two around it, so that a machine whose speed drifts during the
    # benchmark (it does, by a third within minutes here) moves both sides alike.
    order = [0]
    for i in sorted(only - {0}):
        order += [i, 0]
    done: list[dict[str, Any]] = []
    for i in order:
        label, d, o, p, k = runs[i]
        done.append(_child([*common, "--step", "job", str(d), str(o), p, str(k)]))

    def per(r: dict[str, Any]) -> float:
        return r["seconds"] / r["scored"]

    print(
        f"(CRMs generated in {prep['seconds']:.0f} s, not counted; as_of {AS_OF}; each job in a "
        "fresh process, reasons for every lead; the baseline runs before and after each run)\n"
    )
    print(
        "| run | leads scored | seconds | leads/s | baseline before, after | "
        "time per lead vs baseline | peak RSS |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    results: list[tuple[str, dict[str, Any]]] = []
    for j, i in enumerate(order):
        r = done[j]
        if i == 0:
            continue
        before, after = done[j - 1], done[j + 1]
        ratio = per(r) / ((per(before) + per(after)) / 2)
        label = runs[i][0]
        results.append((label, r))
        print(
            f"| {label} | {r['scored']:,} | {r['seconds']:.1f} | {r['scored'] / r['seconds']:,.0f}"
            f" | {before['seconds']:.1f}, {after['seconds']:.1f} s | {ratio:.2f}x "
            f"| {r['peak_rss_gb']:.2f} GB |"
        )
    bases = [done[j] for j, i in enumerate(order) if i == 0]
    print(
        f"\nthe baseline ({runs[0][0]}): "
        + ", ".join(f"{r['seconds']:.1f}" for r in bases)
        + f" s; peak RSS up to {max(r['peak_rss_gb'] for r in bases):.2f} GB"
    )
    results.insert(0, (runs[0][0], bases[0]))
    print(
        f"\n{n:,}-lead files vs one shot: range by range {_same(one, outs[0])}, with {w} "
        f"workers {_same(one, outs[1])}; the {n * a.big:,}-lead files, serial vs {w} "
        f"workers: {_same(outs[2], outs[3])}"
    )
    for label, r in results:
        print(f"\nbreakdown, {label}:\n")
        print("\n".join("    " + line for line in r["breakdown"].splitlines()))
    for f in (one, *outs):
        f.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
