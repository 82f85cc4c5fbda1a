"""Small numba kernels for the few loops numpy cannot express (compiled once, cached on disk)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def latest_before(
    starts: np.ndarray, pos: np.ndarray, t: np.ndarray, limit: int, n: int
) -> np.ndarray:  # pragma: no cover
    """Per position ``0..n-1``, the row index of its latest ``t`` strictly before ``limit`` (the
    first such row in table order among equal times), -1 when it has none. Rows come as runs:
    rows ``starts[r]:starts[r + 1]`` are at position ``pos[r]``; negative positions are
    ignored."""
    best = np.full(n, -1, dtype=np.int64)
    for r in range(pos.shape[0]):
        p = pos[r]
        if p < 0:
            continue
        for i in range(starts[r], starts[r + 1]):
            if t[i] >= limit:
                continue
            b = best[p]
            if b < 0 or t[i] > t[b]:
                best[p] = i
    return best


@njit(cache=True, nogil=True)
def window_features(
    keys: np.ndarray,
    kind: np.ndarray,
    q_key: np.ndarray,
    q_lo: int,
    q_hi: int,
    back: np.ndarray,
    day_window: int,
    t0: int,
    rate: float,
    counts: np.ndarray,
    recency: np.ndarray,
    days: np.ndarray,
    trend: np.ndarray,
    decayed: np.ndarray,
    at: np.ndarray,
) -> None:  # pragma: no cover
    """Per query ``q_lo <= j < q_hi``, what its lead's rows before it add up to, in one pass
    over the sorted keys, written into the output arrays' column ``j``.

    ``keys`` and ``q_key`` are sorted ``lead << 32 | seconds`` keys (seconds since ``t0``);
    ``kind`` is each row's kind in ``0..kinds-1``; ``back`` holds window lengths in seconds,
    the last two the trend's halves (``back[-1] == 2 * back[-2]``). For query ``j`` and window
    ``w`` the window is ``[lead << 32 | max(seconds - back[w], 0), q_key[j])``: the lead's own
    rows strictly before the query and not older than ``back[w]``.

    Outputs (float64 unless said), one column per query:

    - ``counts`` ``(kinds, windows - 2, queries)``: rows of each kind in each window but the
      trend's (a feature per row of the first two axes, contiguous);
    - ``recency`` ``(kinds, queries)``: days since the last row of each kind, NaN if none;
    - ``days``: distinct UTC dates (of ``t0 + seconds``) among the rows in window
      ``day_window``;
    - ``trend``: rows in the trend's last half minus rows in the half before;
    - ``decayed`` and ``at`` (int64): the running decayed count (each row adds 1, the total
      decays at ``rate`` per second, restarting at every lead; sequential, so exact and never
      overflowing) at the lead's last row before the query, and that row's seconds; 0 and -1
      without one.

    Queries of a lead are walked in time order, each row entering every window once and
    leaving it once: O(rows x windows + queries x kinds x windows), integer counts, and a
    query never reads a row at or after its own key. Any range of queries gives its columns
    exactly as the whole does (a range's first lead is walked from its first row), so ranges
    can run in threads side by side.
    """
    low = (1 << 32) - 1
    day = 86_400
    n, nw = keys.shape[0], back.shape[0]
    n_kinds, nc = counts.shape[0], counts.shape[1]
    cnt = np.zeros((n_kinds, nw), dtype=np.int64)
    seen = np.full(n_kinds, -1, dtype=np.int64)
    lo = np.zeros(nw, dtype=np.int64)
    hi = 0
    if q_hi > q_lo:  # the first row of the range's first lead
        hi = np.searchsorted(keys, (q_key[q_lo] >> 32) << 32)
    lead = -1
    base = 0
    new_hi = 0  # new-date rows among the lead's rows [first, hi)
    new_lo = 0  # ... among [first, lo[day_window])
    total = 0.0
    prev = -1
    next_day = 0  # seconds (since t0) where the date of row ``prev`` ends
    for j in range(q_lo, q_hi):
        qk = q_key[j]
        if qk >> 32 != lead:
            lead = qk >> 32
            base = lead << 32
            while hi < n and keys[hi] < base:
                hi += 1
            lo[:] = hi
            cnt[:, :] = 0
            seen[:] = -1
            new_hi = new_lo = 0
            total = 0.0
            prev = -1
        while hi < n and keys[hi] < qk:
            k = kind[hi]
            for w in range(nw):
                cnt[k, w] += 1
            rel = keys[hi] & low
            seen[k] = rel
            if prev < 0 or rel >= next_day:  # a lead's rows ascend in time
                new_hi += 1
                next_day = ((rel + t0) // day + 1) * day - t0
            total = 1.0 if prev < 0 else total * math.exp(-rate * (rel - prev)) + 1.0
            prev = rel
            hi += 1
        q_rel = qk & low
        for w in range(nw):
            lim = base | max(q_rel - back[w], 0)
            while lo[w] < hi and keys[lo[w]] < lim:
                cnt[kind[lo[w]], w] -= 1
                if w == day_window and _new_date(keys, lo[w], base, t0):
                    new_lo += 1
                lo[w] += 1
        a = lo[day_window]
        d = 0
        if hi > a:
            # The window's first row opens a date; the others open one where the date changes.
            d = 1 + new_hi - new_lo - (1 if _new_date(keys, a, base, t0) else 0)
        days[j] = d
        mid, old = lo[nw - 2], lo[nw - 1]
        trend[j] = (hi - mid) - (mid - old)
        for k in range(n_kinds):
            for w in range(nc):
                counts[k, w, j] = cnt[k, w]
            recency[k, j] = (q_rel - seen[k]) / day if seen[k] >= 0 else np.nan
        decayed[j] = total if prev >= 0 else 0.0
        at[j] = prev
    return None


@njit(cache=True, nogil=True)
def _new_date(keys: np.ndarray, i: int, base: int, t0: int) -> bool:  # pragma: no cover
    """Does row ``i`` open a new (lead, UTC date) run: the lead's first row, or a new date?"""
    if i == 0 or keys[i - 1] < base:
        return True
    low = (1 << 32) - 1
    return ((keys[i] & low) + t0) // 86_400 != ((keys[i - 1] & low) + t0) // 86_400


@njit(cache=True, nogil=True)
def settle_units(
    q: np.ndarray, rem: np.ndarray, raw: np.ndarray, idle: np.ndarray, diff: np.ndarray
) -> None:  # pragma: no cover
    """Hand each row's ``diff`` units (tenths of a point) to its groups, largest remainder
    first, in place: a positive unit to the group with the largest ``rem``, a negative one to
    the smallest (the first such group on ties). A group is blocked when ``idle`` or when the
    unit would turn its points against the sign of its exact share ``raw``; a row whose
    groups are all blocked keeps the rest of its ``diff``."""
    n, g = q.shape
    for i in range(n):
        sign = 1 if diff[i] > 0 else -1
        while diff[i] != 0:
            best = -1
            for j in range(g):
                if idle[i, j] or (sign * raw[i, j] <= 0 and sign * (q[i, j] + sign) > 0):
                    continue
                if best < 0 or (sign * rem[i, j] > sign * rem[i, best]):
                    best = j
            if best < 0:
                break
            q[i, best] += sign
            rem[i, best] -= sign
            diff[i] -= sign


@njit(cache=True, nogil=True)
def top_groups(
    q: np.ndarray, raw: np.ndarray, G: np.ndarray, n_positive: int, n_negative: int
) -> np.ndarray:  # pragma: no cover
    """Per row, the ``n_positive`` groups with the most positive points ``q`` and then the
    ``n_negative`` with the most negative, ranked on (exact share ``raw``, contribution ``G``,
    group order); -1 fills the slots of a row with fewer. ``(rows, n_positive + n_negative)``.
    """
    n, g = q.shape
    out = np.full((n, n_positive + n_negative), -1, dtype=np.int64)
    taken = np.zeros(g, dtype=np.bool_)
    for i in range(n):
        taken[:] = False
        for slot in range(n_positive + n_negative):
            sign = 1.0 if slot < n_positive else -1.0
            if slot == n_positive:
                taken[:] = False
            best = -1
            for j in range(g):
                if taken[j] or sign * q[i, j] <= 0:
                    continue
                if best < 0:
                    best = j
                    continue
                a, b = sign * raw[i, j], sign * raw[i, best]
                if a > b or (a == b and sign * G[i, j] > sign * G[i, best]):
                    best = j  # ties on both keep the earlier group
            if best < 0:
                continue
            taken[best] = True
            out[i, slot] = best
    return out


@njit(cache=True, nogil=True)
def speaking_features(
    phi: np.ndarray, rows: np.ndarray, groups: np.ndarray, members: np.ndarray, first: np.ndarray
) -> np.ndarray:  # pragma: no cover
    """For each reason (row ``rows[p]``, group ``groups[p]``), the group's feature with the
    largest ``|phi|`` in that row (the first on ties, a NaN before any number, as
    ``np.argmax``); -1 for a group without features. Group ``g``'s features are
    ``members[first[g]:first[g + 1]]``, in spec order."""
    out = np.empty(rows.shape[0], dtype=np.int64)
    for p in range(rows.shape[0]):
        i, g = rows[p], groups[p]
        best = -1
        top = 0.0
        for m in range(first[g], first[g + 1]):
            j = members[m]
            v = abs(phi[i, j])
            if (
                best < 0
                or (v > top and not math.isnan(top))
                or (math.isnan(v) and not math.isnan(top))
            ):
                best, top = j, v
        out[p] = best
    return out


@njit(cache=True, nogil=True)
def in_lead_order(starts: np.ndarray, pos: np.ndarray, t: np.ndarray) -> bool:  # pragma: no cover
    """Are the rows already sorted by ``(position, t)``, rows ``starts[r]:starts[r + 1]`` being
    at position ``pos[r]``? (Then :func:`lead_key_order` is the identity, and a table need not
    be copied into that order.)"""
    for r in range(pos.shape[0]):
        if r > 0 and pos[r] < pos[r - 1]:
            return False
        first = starts[r] if r == 0 or pos[r] != pos[r - 1] else starts[r] - 1
        for i in range(first + 1, starts[r + 1]):
            if t[i] < t[i - 1]:
                return False
    return True


@njit(cache=True, nogil=True)
def timeline_keys(
    starts: np.ndarray,
    pos: np.ndarray,
    ns: np.ndarray,
    code: np.ndarray,
    to_kind: np.ndarray,
    t0: int,
    values: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:  # pragma: no cover
    """The rows' ``lead << 32 | seconds`` keys, in one pass, in table order.

    Rows ``starts[r]:starts[r + 1]`` belong to lead position ``pos[r]`` (-1: unknown lead);
    ``ns`` are their nanoseconds since the epoch, ``code`` their type codes (-1: missing),
    which ``to_kind`` maps to kinds (-1: not counted). Rows of unknown leads or uncounted
    kinds are left out; seconds are counted from ``t0`` and clipped to ``[0, 2**32 - 1]``.
    Returns ``(keys, kinds, values, ordered)``: the kept rows' keys, kinds and ``values`` (when
    ``values`` has a value per row, else empty), and whether the keys ascend already.
    """
    low = (1 << 32) - 1
    n = ns.shape[0]
    with_values = values.shape[0] == n and n > 0
    keys = np.empty(n, dtype=np.int64)
    kinds = np.empty(n, dtype=to_kind.dtype)
    kept = np.empty(n if with_values else 0)
    missing = to_kind[to_kind.shape[0] - 1]
    m = 0
    ordered = True
    for r in range(pos.shape[0]):
        p = pos[r]
        if p < 0:
            continue
        for i in range(starts[r], starts[r + 1]):
            k = to_kind[code[i]] if code[i] >= 0 else missing
            if k < 0:
                continue
            rel = min(max(ns[i] // 1_000_000_000 - t0, 0), low)
            key = (p << 32) | rel
            if m > 0 and key < keys[m - 1]:
                ordered = False
            keys[m] = key
            kinds[m] = k
            if with_values:
                kept[m] = values[i]
            m += 1
    return keys[:m], kinds[:m], kept[:m], ordered


@njit(cache=True, nogil=True)
def count_before(
    codes: np.ndarray, t: np.ndarray, limit: int, n: int
) -> np.ndarray:  # pragma: no cover
    """How many rows of each code ``0..n-1`` have ``t < limit`` (negative codes: none; ``t``
    NaT, the smallest int64: none), in one pass: no mask or copy of a 50M-row column."""
    nat = np.iinfo(np.int64).min
    out = np.zeros(n, dtype=np.int64)
    for i in range(codes.shape[0]):
        if codes[i] >= 0 and nat < t[i] < limit:
            out[codes[i]] += 1
    return out


@njit(cache=True, nogil=True)
def category_goes_left(
    x: float, cat_words: np.ndarray, cat_off: int, cat_n: int
) -> bool:  # pragma: no cover - compiled
    """LightGBM's categorical decision: is the integer part of ``x`` in the node's bit set."""
    # NaN, negative codes (int cast below 0) and codes beyond int32 go right, as in LightGBM.
    if np.isnan(x) or x <= -1.0 or x >= 2147483648.0:
        return False
    c = int(x)
    w = c >> 5
    if w >= cat_n:
        return False
    return ((cat_words[cat_off + w] >> np.uint32(c & 31)) & np.uint32(1)) != 0


@njit(parallel=True, cache=True, nogil=True)
def tree_margins(
    X: np.ndarray,
    out: np.ndarray,
    roots: np.ndarray,
    feature: np.ndarray,
    threshold: np.ndarray,
    is_cat: np.ndarray,
    nan_left: np.ndarray,
    zero_left: np.ndarray,
    cat_off: np.ndarray,
    cat_n: np.ndarray,
    cat_words: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    leaf_value: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Each row's sum of its leaf values, tree by tree from 0.0, into ``out``: the raw margin
    of :class:`leadml.model.trees.CompiledTrees` (its docs: the layout and the decisions)."""
    for r in prange(X.shape[0]):
        total = 0.0
        for t in range(roots.shape[0]):
            g = roots[t]
            while g >= 0:
                x = X[r, feature[g]]
                if is_cat[g]:
                    go_left = category_goes_left(x, cat_words, cat_off[g], cat_n[g])
                elif np.isnan(x):
                    go_left = nan_left[g] != 0
                elif x == 0.0:
                    go_left = zero_left[g] != 0
                else:
                    go_left = x <= threshold[g]
                g = left[g] if go_left else right[g]
            total += leaf_value[~g]
        out[r] = total


@njit(cache=True, nogil=True)
def linear_terms(
    values: np.ndarray,
    cols: np.ndarray,
    is_cat: np.ndarray,
    params: np.ndarray,
    lookup: np.ndarray,
    lookup_at: np.ndarray,
    centre: np.ndarray,
    mode: int,
    out: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """The linear base's terms (:class:`leadml.model.linear.LinearBase`), row by row: term
    ``t[j]`` of feature ``j < len(centre)`` is input column ``k``'s where ``cols[k] == j``, else
    0. Mode 0 writes ``out[i, j] = t[j]``; mode 1 ``t[j] - centre[j]``; mode 2 adds that.

    A numeric input's ``params[k]`` are ``fill, lo, hi, center, scale, coef, missing_coef``:
    ``coef * (clip(x or fill, lo, hi) - center) / scale + missing_coef * missing``, with
    ``np.clip``'s own rule (``NaN`` propagates from the value or a bound). A categorical
    input holds codes (-1 missing) into ``lookup[lookup_at[k]:lookup_at[k + 1]]``, whose last
    entry is the missing coefficient.
    """
    m = centre.shape[0]
    t = np.zeros(m)
    for i in range(values.shape[0]):
        for k in range(values.shape[1]):
            x = values[i, k]
            if is_cat[k]:
                c = int(x)
                t[cols[k]] = lookup[lookup_at[k] + c] if c >= 0 else lookup[lookup_at[k + 1] - 1]
                continue
            missing = np.isnan(x)
            v = params[k, 0] if missing else x
            lo, hi = params[k, 1], params[k, 2]
            v = v if (np.isnan(v) or v >= lo) else lo  # as np.clip: ties (-0.0, 0.0) keep v
            v = v if (np.isnan(v) or v <= hi) else hi
            z = (v - params[k, 3]) / params[k, 4]
            t[cols[k]] = params[k, 5] * z + params[k, 6] * (1.0 if missing else 0.0)
        if mode == 0:
            for j in range(m):
                out[i, j] = t[j]
        elif mode == 1:
            for j in range(m):
                out[i, j] = t[j] - centre[j]
        else:
            for j in range(m):
                out[i, j] += t[j] - centre[j]
