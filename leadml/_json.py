"""Plain JSON values from the nested results leadml writes (bundle metadata, the backtest table,
the scores file's metadata, a history's ``run.json``, the monitor's JSON, database JSON columns).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["jsonable"]


def jsonable(v: Any, *, keep_infinity: bool = False) -> Any:
    """``v`` as plain JSON values: mappings and sequences (arrays too) walked, keys as text,
    numpy scalars as Python ones, timestamps and durations as ISO text, and NaN, NaT, ``pd.NA``
    as None (a tier nobody fell into has no conversion rate). Infinities become None too,
    unless ``keep_infinity`` (the bundle keeps them; ``json`` writes them as ``Infinity``).

    >>> jsonable({"p": np.float64("nan"), "n": np.int64(3), "t": pd.Timestamp("2025-01-02")})
    {'p': None, 'n': 3, 't': '2025-01-02T00:00:00'}
    >>> jsonable([np.inf, pd.NaT]), jsonable([np.inf], keep_infinity=True)
    ([None, None], [inf])
    """
    if isinstance(v, Mapping):
        return {str(k): jsonable(x, keep_infinity=keep_infinity) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [jsonable(x, keep_infinity=keep_infinity) for x in v]
    if isinstance(v, np.ndarray):
        return [jsonable(x, keep_infinity=keep_infinity) for x in v.tolist()]
    if v is None or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, pd.Timestamp | pd.Timedelta):
        return v.isoformat()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return v if keep_infinity and math.isinf(v) else None
    return v
