"""numba kernels of the exact TreeSHAP engine (see ``leadml.explain._treeshap`` for the maths).

:func:`build_tables` fills the lookup tables once per model and :func:`shap_rows` explains rows.
Both are compiled on first use and cached on disk.

Every row's result is a sum in a fixed order (trees, then table blocks, then features; table
entries are themselves sums in a fixed order), and rows never share accumulators, so the output
does not depend on the number of threads or on how rows are chunked.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from leadml._kernels import category_goes_left

ROWS_PER_BLOCK = 64


@njit(cache=True, nogil=True)
def _path_phi(
    z: np.ndarray,
    o: np.ndarray,
    v: float,
    d: int,
    gx: np.ndarray,
    gw: np.ndarray,
    pre: np.ndarray,
    acc: np.ndarray,
    phi: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Shapley values of one root-to-leaf path for one pattern of one fractions.

    ``phi[j] = v (o_j - z_j) * integral_0^1 prod_{k != j} (z_k (1 - t) + o_k t) dt``, the integral
    taken exactly by Gauss-Legendre quadrature on ``(gx, gw)`` (enough nodes for degree d - 1).
    """
    for j in range(d):
        acc[j] = 0.0
    for i in range(gx.shape[0]):
        t = gx[i]
        s = 1.0 - t
        p = 1.0
        for k in range(d):
            pre[k] = p
            p *= z[k] * s + o[k] * t
        q = gw[i]
        for k in range(d - 1, -1, -1):
            acc[k] += pre[k] * q
            q *= z[k] * s + o[k] * t
    for j in range(d):
        phi[j] = v * (o[j] - z[j]) * acc[j]


@njit(parallel=True, cache=True, nogil=True)
def build_tables(
    blocks: np.ndarray,
    st_ds: np.ndarray,
    st_noff: np.ndarray,
    st_uoff: np.ndarray,
    st_loff: np.ndarray,
    st_leaves: np.ndarray,
    st_tab: np.ndarray,
    leaf_d: np.ndarray,
    leaf_eoff: np.ndarray,
    leaf_poff: np.ndarray,
    leaf_value: np.ndarray,
    elem_z: np.ndarray,
    elem_u: np.ndarray,
    path_left: np.ndarray,
    path_elem: np.ndarray,
    path_keypos: np.ndarray,
    gauss_x: np.ndarray,
    gauss_w: np.ndarray,
    tables: np.ndarray,
) -> None:  # pragma: no cover - compiled
    """Fill the table of every block in ``blocks`` (zeroed by the caller).

    A block's key holds the row's mask at the block root (``ds`` bits) and the decisions of the
    block's internal nodes; its entry is the sum over the block's leaves of their Shapley values
    for the one-fraction pattern the key implies, spread over the block's features.
    """
    for a in prange(blocks.shape[0]):
        s = blocks[a]
        ds = st_ds[s]
        bits = ds + st_noff[s + 1] - st_noff[s]
        u = st_uoff[s + 1] - st_uoff[s]
        tab = st_tab[s]
        dmax = 1
        for i in range(st_loff[s], st_loff[s + 1]):
            dmax = max(dmax, leaf_d[st_leaves[i]])
        leaf_table = np.empty((1 << dmax) * dmax)
        o = np.empty(dmax)
        pre = np.empty(dmax)
        acc = np.empty(dmax)
        phi = np.empty(dmax)
        for i in range(st_loff[s], st_loff[s + 1]):
            leaf = st_leaves[i]
            d = leaf_d[leaf]
            eo = leaf_eoff[leaf]
            nq = (d + 1) // 2
            z = elem_z[eo : eo + d]
            for m in range(1 << d):
                for k in range(d):
                    o[k] = (m >> k) & 1
                _path_phi(
                    z, o, leaf_value[leaf], d, gauss_x[nq, :nq], gauss_w[nq, :nq], pre, acc, phi
                )
                for j in range(d):
                    leaf_table[m * d + j] = phi[j]
            # Elements past ds start satisfied; the block's own splits may then clear them.
            inherited = (np.int64(1) << ds) - 1
            fresh = ((np.int64(1) << d) - 1) & ~inherited
            for key in range(np.int64(1) << bits):
                m = (key & inherited) | fresh
                for p in range(leaf_poff[leaf], leaf_poff[leaf + 1]):
                    kp = path_keypos[p]
                    if kp >= 0 and ((key >> kp) & 1) != path_left[p]:
                        m &= ~(np.int64(1) << path_elem[p])
                row = tab + key * u
                for j in range(d):
                    tables[row + elem_u[eo + j]] += leaf_table[m * d + j]


@njit(parallel=True, cache=True, nogil=True)
def shap_rows(
    X: np.ndarray,
    out: np.ndarray,
    tree_node_off: np.ndarray,
    tree_st_off: np.ndarray,
    node_feature: np.ndarray,
    node_threshold: np.ndarray,
    node_is_cat: np.ndarray,
    node_nan_left: np.ndarray,
    node_zero_left: np.ndarray,
    node_cat_off: np.ndarray,
    node_cat_n: np.ndarray,
    node_bit: np.ndarray,
    node_left: np.ndarray,
    node_right: np.ndarray,
    cat_words: np.ndarray,
    st_row: np.ndarray,
    st_ds: np.ndarray,
    st_noff: np.ndarray,
    st_nodes: np.ndarray,
    st_uoff: np.ndarray,
    st_ufeat: np.ndarray,
    st_loff: np.ndarray,
    st_leaves: np.ndarray,
    st_tab: np.ndarray,
    leaf_d: np.ndarray,
    leaf_eoff: np.ndarray,
    leaf_poff: np.ndarray,
    leaf_value: np.ndarray,
    elem_feature: np.ndarray,
    elem_z: np.ndarray,
    path_node: np.ndarray,
    path_left: np.ndarray,
    path_elem: np.ndarray,
    tables: np.ndarray,
    gauss_x: np.ndarray,
    gauss_w: np.ndarray,
    max_nodes: int,
    max_leaves: int,
    max_d: int,
) -> None:  # pragma: no cover - compiled
    """Write every row's SHAP values (without the bias column) into ``out``.

    Rows are processed in blocks of ``ROWS_PER_BLOCK``; inside a block, tree by tree, node by
    node and table block by table block, each step a branch-free loop over the rows, so it
    vectorises and one tree's tables stay in cache. ``node_left``/``node_right`` index the
    tree's mask rows: internal nodes first, then leaves.
    """
    n = X.shape[0]
    n_cols = X.shape[1]
    n_out = out.shape[1]
    n_trees = tree_node_off.shape[0] - 1
    n_blocks = (n + ROWS_PER_BLOCK - 1) // ROWS_PER_BLOCK
    width = max(max_d, 1)
    for b in prange(n_blocks):
        r0 = b * ROWS_PER_BLOCK
        bn = min(n, r0 + ROWS_PER_BLOCK) - r0
        xt = np.empty((n_cols, ROWS_PER_BLOCK))
        ot = np.zeros((n_out, ROWS_PER_BLOCK))
        masks = np.empty((max_nodes + max_leaves, ROWS_PER_BLOCK), dtype=np.int64)
        dec = np.empty((max(max_nodes, 1), ROWS_PER_BLOCK), dtype=np.int64)
        base = np.empty(ROWS_PER_BLOCK, dtype=np.int64)
        one = np.empty((width, ROWS_PER_BLOCK))
        pre = np.empty((width, ROWS_PER_BLOCK))
        acc = np.empty((width, ROWS_PER_BLOCK))
        prod = np.empty(ROWS_PER_BLOCK)
        for r in range(bn):
            for f in range(n_cols):
                xt[f, r] = X[r0 + r, f]
        for t in range(n_trees):
            no = tree_node_off[t]
            nn = tree_node_off[t + 1] - no
            # One pass over the nodes (parents before children) carries, per row, the set of
            # path elements whose conditions the row still satisfies.
            for r in range(bn):
                masks[0, r] = -1
            for k in range(nn):
                g = no + k
                f = node_feature[g]
                if node_is_cat[g]:
                    for r in range(bn):
                        dec[k, r] = category_goes_left(
                            xt[f, r], cat_words, node_cat_off[g], node_cat_n[g]
                        )
                else:
                    thr = node_threshold[g]
                    nan_left = node_nan_left[g] != 0
                    zero_left = node_zero_left[g] != 0
                    for r in range(bn):
                        x = xt[f, r]
                        left = x <= thr
                        left = zero_left if x == 0.0 else left
                        left = nan_left if x != x else left
                        dec[k, r] = left
                bit = node_bit[g]
                cl = node_left[g]
                cr = node_right[g]
                for r in range(bn):
                    lv = dec[k, r]
                    m = masks[k, r]
                    masks[cl, r] = m & ~(bit & (lv - 1))
                    masks[cr, r] = m & ~(bit & -lv)
            for s in range(tree_st_off[t], tree_st_off[t + 1]):
                tab = st_tab[s]
                if tab >= 0:
                    ds = st_ds[s]
                    row = st_row[s]
                    low = (np.int64(1) << ds) - 1
                    for r in range(bn):
                        base[r] = masks[row, r] & low
                    shift = ds
                    for i in range(st_noff[s], st_noff[s + 1]):
                        k = st_nodes[i]
                        for r in range(bn):
                            base[r] |= dec[k, r] << shift
                        shift += 1
                    uo = st_uoff[s]
                    u = st_uoff[s + 1] - uo
                    for r in range(bn):
                        base[r] = tab + base[r] * u
                    for j in range(u):
                        f = st_ufeat[uo + j]
                        for r in range(bn):
                            ot[f, r] += tables[base[r] + j]
                    continue
                # No table (too deep or over the memory cap): each leaf's quadrature, per row,
                # vectorised over the block's rows.
                for i in range(st_loff[s], st_loff[s + 1]):
                    leaf = st_leaves[i]
                    d = leaf_d[leaf]
                    eo = leaf_eoff[leaf]
                    nq = (d + 1) // 2
                    for k in range(d):
                        for r in range(bn):
                            one[k, r] = 1.0
                            acc[k, r] = 0.0
                    for p in range(leaf_poff[leaf], leaf_poff[leaf + 1]):
                        e = path_elem[p]
                        k = path_node[p]
                        went_left = np.int64(path_left[p])
                        for r in range(bn):
                            one[e, r] = one[e, r] if dec[k, r] == went_left else 0.0
                    for qi in range(nq):
                        t = gauss_x[nq, qi]
                        st = 1.0 - t
                        for r in range(bn):
                            prod[r] = gauss_w[nq, qi]
                        for k in range(d):
                            zs = elem_z[eo + k] * st
                            for r in range(bn):
                                pre[k, r] = prod[r]
                                prod[r] *= zs + one[k, r] * t
                        for r in range(bn):
                            prod[r] = 1.0
                        for k in range(d - 1, -1, -1):
                            zs = elem_z[eo + k] * st
                            for r in range(bn):
                                acc[k, r] += pre[k, r] * prod[r]
                                prod[r] *= zs + one[k, r] * t
                    v = leaf_value[leaf]
                    for k in range(d):
                        f = elem_feature[eo + k]
                        z = elem_z[eo + k]
                        for r in range(bn):
                            ot[f, r] += v * (one[k, r] - z) * acc[k, r]
        for r in range(bn):
            for f in range(n_out):
                out[r0 + r, f] = ot[f, r]
