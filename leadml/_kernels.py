"""Small numba kernels for the few loops numpy cannot express (compiled once, cached on disk)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def decay_scan(
    code: np.ndarray, secs: np.ndarray, kind: np.ndarray, idx: np.ndarray, n: int, rate: float
) -> np.ndarray:  # pragma: no cover - compiled
    """Running decayed event count along a time line sorted by (lead, time, points-first)."""
    out = np.zeros(n)
    total = 0.0
    last_t = 0.0
    current = -1
    for i in range(code.shape[0]):
        if code[i] != current:
            current = code[i]
            total = 0.0
            last_t = secs[i]
        decayed = total * math.exp(-rate * (secs[i] - last_t))
        if kind[i] == 1:
            total = decayed + 1.0
            last_t = secs[i]
        else:
            out[idx[i]] = decayed
    return out
