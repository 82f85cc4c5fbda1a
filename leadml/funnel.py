"""The funnel's shared vocabulary, defined once: stages, transitions, tiers and the ``as_of``
instant.

Every layer imports these; none redefines them.

Examples
--------
>>> NEXT_TRANSITION["lead"], SOURCE_STAGE["opportunity"]
('prospect', 'prospect')
>>> to_as_of("2025-03-01T09:30:00.75+01:00")
Timestamp('2025-03-01 08:30:00')
>>> tier_counts(["A", "C", "A"])
'A=2, B=0, C=1, D=0'
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

__all__ = [
    "FUNNEL",
    "NEGATIVE_STAGES",
    "NEXT_TRANSITION",
    "SOURCE_STAGE",
    "STAGES",
    "TIERS",
    "TRANSITIONS",
    "AsOfError",
    "tier_counts",
    "to_as_of",
]

#: Stages in funnel order, then the terminal negatives.
FUNNEL: tuple[str, ...] = ("lead", "prospect", "opportunity", "customer")
NEGATIVE_STAGES: tuple[str, ...] = ("disqualified", "lost")
STAGES: tuple[str, ...] = FUNNEL + NEGATIVE_STAGES

#: The transitions leadml models, named by the stage reached.
TRANSITIONS: tuple[str, ...] = ("prospect", "opportunity")
#: The stage a transition starts from, and the transition a stage is scored for.
SOURCE_STAGE: dict[str, str] = {"prospect": "lead", "opportunity": "prospect"}
NEXT_TRANSITION: dict[str, str] = {v: k for k, v in SOURCE_STAGE.items()}

#: Tiers, best first (thresholds are fixed at training time).
TIERS: tuple[str, ...] = ("A", "B", "C", "D")


class AsOfError(ValueError):
    """An ``as_of`` value that is not an instant."""


def to_as_of(value: Any = None, *, what: str = "--as-of") -> pd.Timestamp:
    """The one rule for an ``as_of`` instant: ``None`` means now; a zone-aware value is converted
    to UTC; the result is naive UTC, floored to the second (features use data strictly before
    it, so sub-second digits would only make two runs of one day differ)."""
    if value is None:
        ts = pd.Timestamp.now(tz="UTC")
    else:
        try:
            ts = pd.Timestamp(value)
        except (ValueError, TypeError) as e:
            raise AsOfError(
                f"{what} {value!r} is not a date or timestamp; expected e.g. 2025-03-01 or "
                "2025-03-01T09:30:00Z"
            ) from e
        if ts is pd.NaT:
            raise AsOfError(f"{what} {value!r} is empty; expected e.g. 2025-03-01")
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return ts.floor("s")


def tier_counts(tiers: Iterable[Any] | Mapping[str, int]) -> str:
    """``A=12, B=30, C=41, D=80``: the tier mix a job prints (from tiers, or counts per tier)."""
    if isinstance(tiers, Mapping):
        s = pd.Series(dict(tiers), dtype="int64")
    else:
        s = (tiers if isinstance(tiers, pd.Series) else pd.Series(list(tiers))).value_counts()
    return ", ".join(f"{t}={int(s.get(t, 0)):,}" for t in TIERS)
