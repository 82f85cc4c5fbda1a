"""Small numba kernels for the few loops numpy cannot express (compiled once, cached on disk)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True)
def decay_running(
    lead: np.ndarray, secs: np.ndarray, rate: float
) -> np.ndarray:  # pragma: no cover
    """Decayed event count at each event (inclusive), restarting at every new lead."""
    out = np.empty(lead.shape[0])
    total = 0.0
    for i in range(lead.shape[0]):
        if i == 0 or lead[i] != lead[i - 1]:
            total = 1.0
        else:
            total = total * math.exp(-rate * (secs[i] - secs[i - 1])) + 1.0
        out[i] = total
    return out
