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


@njit(cache=True)
def lead_key_order(pos: np.ndarray, keys: np.ndarray) -> np.ndarray:  # pragma: no cover
    """The permutation that sorts rows stably by ``(pos, keys)``: ``np.argsort(keys,
    kind="stable")`` when ``keys`` already order ``pos`` first (``pos << 32 | seconds``), or
    pandas' stable ``sort_values([lead, time])`` when ``pos`` ranks the leads and ``keys`` are
    times.

    A counting sort on the lead position (O(rows), stable) followed by a stable sort of each
    lead's own run only where it is out of order. CRM exports usually arrive sorted by time, so
    most runs are already in order after the first pass; a shuffled table costs one small sort
    per lead instead of one global sort of every row.
    """
    n = pos.shape[0]
    n_leads = 0
    for i in range(n):
        if pos[i] + 1 > n_leads:
            n_leads = pos[i] + 1
    start = np.zeros(n_leads + 1, dtype=np.int64)
    for i in range(n):
        start[pos[i] + 1] += 1
    for j in range(n_leads):
        start[j + 1] += start[j]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for i in range(n):
        p = pos[i]
        order[fill[p]] = i
        fill[p] += 1
    for j in range(n_leads):
        a, b = start[j], start[j + 1]
        for k in range(a + 1, b):
            if keys[order[k]] < keys[order[k - 1]]:
                seg = order[a:b].copy()
                order[a:b] = seg[np.argsort(keys[seg], kind="mergesort")]
                break
    return order


@njit(cache=True)
def latest_before(
    pos: np.ndarray, t: np.ndarray, limit: int, n: int
) -> np.ndarray:  # pragma: no cover
    """Per position ``0..n-1``, the row index of its latest ``t`` strictly before ``limit`` (the
    first such row in table order among equal times), -1 when it has none. Rows with a negative
    ``pos`` are ignored."""
    best = np.full(n, -1, dtype=np.int64)
    for i in range(pos.shape[0]):
        p = pos[i]
        if p < 0 or t[i] >= limit:
            continue
        b = best[p]
        if b < 0 or t[i] > t[b]:
            best[p] = i
    return best
