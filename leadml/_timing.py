"""Where a job's time and memory go: named stages, summed, off unless a caller asks.

``leadml score -v`` and the scoring benchmark print the breakdown of one run::

    with breakdown() as b:
        run_score(...)
    print(b.table())

Inside the package, ``with stage("features"): ...`` marks a stage; outside a ``breakdown()``
block it costs one context-variable lookup. A stage entered several times (once per chunk) is
summed. Peak memory is the process's peak resident set size so far (``ru_maxrss``), read when
each stage ends, so a stage's figure is the highest the process had reached by its end. ``cpu``
is the process's CPU time over the stage's wall time: 100% is one core busy, 200% both of a
two-core machine (work of the job's other threads, the writer's, counts in the stage it
overlaps).

Examples
--------
>>> with breakdown() as b:
...     with stage("read"):
...         _ = sum(range(1000))
...     with stage("read"):
...         pass
>>> b.calls["read"], list(b.seconds), b.cpu["read"] >= 0
(2, ['read'], True)
>>> b.table().splitlines()[0].split()
['stage', 'seconds', 'share', 'cpu', 'peak', 'RSS']
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["Breakdown", "breakdown", "peak_rss_bytes", "stage"]

_active: ContextVar[Breakdown | None] = ContextVar("leadml_breakdown", default=None)


def peak_rss_bytes() -> int:
    """This process's peak resident set size so far (bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # Linux reports KiB


@dataclass
class Breakdown:
    """Seconds, calls, CPU seconds and peak RSS (at the stage's last end) per stage, in
    first-seen order."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)
    started_cpu: float = field(default_factory=time.process_time)

    def add(self, name: str, seconds: float, cpu: float = 0.0) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu
        self.calls[name] = self.calls.get(name, 0) + 1
        self.peak[name] = peak_rss_bytes()

    def table(self) -> str:
        """One line per stage, then the total and what no stage covered."""
        total = time.perf_counter() - self.started
        cpu = time.process_time() - self.started_cpu
        lines = [f"{'stage':<12} {'seconds':>8} {'share':>6} {'cpu':>6} {'peak RSS':>9}"]
        for name, s in self.seconds.items():
            lines.append(
                f"{name:<12} {s:>8.2f} {s / total:>6.0%} {self.cpu[name] / s if s else 0:>6.0%}"
                f" {self.peak[name] / 2**30:>6.2f} GB"
            )
        rest = total - sum(self.seconds.values())
        rest_cpu = (cpu - sum(self.cpu.values())) / rest if rest > 0 else 0.0
        lines.append(f"{'(other)':<12} {rest:>8.2f} {rest / total:>6.0%} {rest_cpu:>6.0%}")
        lines.append(
            f"{'total':<12} {total:>8.2f} {'':>6} {cpu / total:>6.0%}"
            f" {peak_rss_bytes() / 2**30:>6.2f} GB"
        )
        return "\n".join(lines)


@contextmanager
def breakdown() -> Iterator[Breakdown]:
    """Record the stages run inside this block."""
    b = Breakdown()
    token = _active.set(b)
    try:
        yield b
    finally:
        _active.reset(token)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time this block as ``name`` when a :func:`breakdown` is recording."""
    b = _active.get()
    if b is None:
        yield
        return
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        yield
    finally:
        b.add(name, time.perf_counter() - t0, time.process_time() - c0)
