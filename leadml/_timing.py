"""Where a job's time and memory go: named stages, summed, off unless a caller asks.

``leadml score -v`` and the scoring benchmark print the breakdown of one run::

    with breakdown() as b:
        run_score(...)
    print(b.table())

Inside the package, ``with stage("features"): ...`` marks a stage; outside a ``breakdown()``
block it costs one context-variable lookup. A stage entered several times (once per chunk) is
summed. Peak memory is the process's peak resident set size so far (``ru_maxrss``), read when
each stage ends, so a stage's figure is the highest the process had reached by its end.

Examples
--------
>>> with breakdown() as b:
...     with stage("read"):
...         _ = sum(range(1000))
...     with stage("read"):
...         pass
>>> b.calls["read"], list(b.seconds)
(2, ['read'])
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
    """Seconds, calls and peak RSS (at the stage's last end) per stage, in first-seen order."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1
        self.peak[name] = peak_rss_bytes()

    def table(self) -> str:
        """One line per stage, then the total and what no stage covered."""
        total = time.perf_counter() - self.started
        lines = [f"{'stage':<12} {'seconds':>8} {'share':>6} {'peak RSS':>9}"]
        for name, s in self.seconds.items():
            lines.append(
                f"{name:<12} {s:>8.2f} {s / total:>6.0%} {self.peak[name] / 2**30:>7.2f} GB"
            )
        rest = total - sum(self.seconds.values())
        lines.append(f"{'(other)':<12} {rest:>8.2f} {rest / total:>6.0%}")
        lines.append(f"{'total':<12} {total:>8.2f} {'':>6} {peak_rss_bytes() / 2**30:>7.2f} GB")
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
    t0 = time.perf_counter()
    try:
        yield
    finally:
        b.add(name, time.perf_counter() - t0)
