"""Exact path-dependent TreeSHAP for LightGBM, many times faster than ``pred_contrib``.

The values are the ones LightGBM's ``booster.predict(X, pred_contrib=True)`` and
``shap.TreeExplainer(booster).shap_values(X)`` return (the latter calls the former): the exact
path-dependent Shapley values of the raw margin, laid out as ``(rows, features + 1)`` with the
expected value in the last column.

How
---
A tree's SHAP values are the sum over its leaves of the Shapley values of one small game per
leaf (the path decomposition of GPUTreeShap, Mitchell et al. 2022). Along the root-to-leaf path
the splits on the same feature are merged into one *path element* ``k`` with

- a zero fraction ``z_k``: the product of the cover ratios ``count(child) / count(node)`` of its
  splits (the share of the training data that follows the path when the feature is unknown), and
- a one fraction ``o_k`` in {0, 1}: whether the row satisfies every split of the element.

With ``d`` elements and leaf value ``v`` the Shapley value of element ``j`` is::

    phi_j = v (o_j - z_j) * sum_{S ⊆ P∖{j}} |S|! (d-1-|S|)! / d! * prod_{k∈S} o_k prod_{k∉S} z_k
          = v (o_j - z_j) * integral_0^1 prod_{k≠j} (z_k (1 - t) + o_k t) dt

(the Beta-integral form behind Linear TreeShap, Yu et al. 2022; Gauss-Legendre quadrature with
``ceil(d / 2)`` nodes is exact for it). ``phi`` depends on the row only through the bit pattern of
its one fractions, so, as in FastTreeSHAP v2 (Yang 2021), it can be tabulated once per model.

We tabulate whole bottom subtrees rather than single leaves: below a node ``s`` every leaf's
pattern is fixed by the row's pattern at ``s`` (``d_s`` bits) and the row's decisions at the
subtree's internal nodes, so one table keyed by those ``d_s + n_s`` bits holds the summed
contributions of all the subtree's leaves. The trees are cut into the largest subtrees whose key
has at most ``max_table_bits`` bits (a leaf alone is the smallest such subtree). Explaining a
row is then one pass over each tree's nodes (the decisions LightGBM's prediction makes, carried
down as bit masks) and one table row per subtree: a handful of additions per tree instead of
LightGBM's ``O(leaves × depth²)`` recursion.

Memory is bounded by ``max_table_bytes``: tables are granted smallest first; a subtree that does
not fit is split into its children, and a leaf that cannot get a table (more than
``max_table_bits`` distinct features on its path, or out of budget) is explained per row by the
quadrature above, exactly, in ``O(d²)``.

Inputs are converted exactly as LightGBM converts them for prediction (pandas ``category``
columns through the booster's ``pandas_categorical``, the same float32/float64 dtype choice, tiny
values to zero) and every node repeats LightGBM's ``Tree::Decision``: numerical ``<=`` with
missing type None / Zero / NaN and the stored default direction, categorical bit sets with NaN
and negative codes going right.
"""

from __future__ import annotations

import heapq
import itertools
import weakref
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from leadml.model.matrix import prediction_matrix
from leadml.model.trees import (
    UnsupportedTrees,
    category_words,
    n_iterations,
    node_decision,
    per_booster,
)

__all__ = [
    "DEFAULT_MAX_TABLE_BITS",
    "DEFAULT_MAX_TABLE_BYTES",
    "TreeShapError",
    "TreeShapModel",
    "explain_margin",
]

DEFAULT_MAX_TABLE_BITS = 10
"""Largest key of one lookup table: ``2^10`` rows of a few doubles (tens of KiB)."""

DEFAULT_MAX_TABLE_BYTES = 128 * 2**20
"""Cap on the memory of all lookup tables of one model."""

_TABLE_BITS_LIMIT = 24  # beyond this one table would not fit any sensible cap
_MAX_MASK_BITS = 62  # path elements past this never get a table, so their mask bit is unused


class TreeShapError(ValueError):
    """A model or input the TreeSHAP engine cannot explain, with what was expected instead."""


@dataclass(frozen=True, eq=False)
class TreeShapModel:
    """A LightGBM model prepared for exact TreeSHAP: flattened trees and lookup tables.

    Build it once per model with :meth:`from_booster` and reuse it for every chunk of rows.

    Attributes
    ----------
    n_features : int
        Number of model features (the output has one more column).
    feature_names : tuple of str
        The booster's feature names, in column order.
    expected_value : float
        The bias column: the sum over trees of the cover-weighted mean leaf value.
    n_trees : int
        Trees explained (the booster's ``best_iteration`` if set, else all, as ``predict``).
    n_leaves : int
        Leaves of all multi-leaf trees.
    n_fallback_leaves : int
        Leaves without a table, explained per row (too many path features, or out of budget).
    n_tables : int
        Lookup tables (one per tabulated subtree).
    max_path_features : int
        Largest number of distinct features on a root-to-leaf path.
    table_bytes : int
        Memory held by the lookup tables.
    """

    n_features: int
    feature_names: tuple[str, ...]
    expected_value: float
    n_trees: int
    n_leaves: int
    n_fallback_leaves: int
    n_tables: int
    max_path_features: int
    table_bytes: int
    _pandas_categorical: list[list[Any]] | None = field(repr=False)
    _arrays: dict[str, np.ndarray] = field(repr=False)
    _sizes: tuple[int, int, int] = field(repr=False)

    @classmethod
    def from_booster(
        cls,
        booster: lgb.Booster,
        *,
        max_table_bits: int = DEFAULT_MAX_TABLE_BITS,
        max_table_bytes: int = DEFAULT_MAX_TABLE_BYTES,
    ) -> TreeShapModel:
        """Parse ``booster.dump_model()`` and precompute the lookup tables.

        Parameters
        ----------
        booster : lightgbm.Booster
            A model with one tree per iteration (binary, regression, ...), without linear trees.
        max_table_bits : int, default 10
            Largest table key (``2^bits`` rows). Leaves with more distinct path features are
            explained per row (at most 24; 0 disables the tables).
        max_table_bytes : int, default 128 MiB
            Memory cap of all tables together.

        Returns
        -------
        TreeShapModel
        """
        if not isinstance(booster, lgb.Booster):
            raise TreeShapError(
                f"expected a lightgbm.Booster, got {type(booster).__name__}; pass "
                "model.booster_ for a scikit-learn LightGBM estimator"
            )
        if not 0 <= max_table_bits <= _TABLE_BITS_LIMIT:
            raise TreeShapError(
                f"max_table_bits={max_table_bits}; expected 0 to {_TABLE_BITS_LIMIT}"
            )
        if max_table_bytes < 0:
            raise TreeShapError(f"max_table_bytes={max_table_bytes}; expected >= 0")
        dump = booster.dump_model(num_iteration=n_iterations(booster))
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise TreeShapError(
                f"model has {dump['num_tree_per_iteration']} trees per iteration (multiclass); "
                "expected a binary or regression model with one tree per iteration"
            )
        if dump.get("average_output", False):
            raise TreeShapError(
                "model averages its trees (boosting='rf'); expected a boosted model (gbdt, goss, "
                "dart); use booster.predict(X, pred_contrib=True) for random forests"
            )
        import leadml.explain._treeshap_kernels as k

        trees = [_parse_tree(t) for t in dump["tree_info"]]
        flat = _Flat()
        for tree, blocks in zip(trees, _plan(trees, max_table_bits, max_table_bytes), strict=True):
            flat.add(tree, blocks)
        arrays = flat.arrays()
        gauss_x, gauss_w = _gauss_legendre_01((flat.max_d + 1) // 2)
        arrays["gauss_x"] = gauss_x
        arrays["gauss_w"] = gauss_w
        tables = np.zeros(flat.table_size)
        tabled = np.flatnonzero(arrays["st_tab"] >= 0).astype(np.int64)
        if tabled.size:
            k.build_tables(
                tabled,
                *(arrays[name] for name in _BUILD_ARRAYS),
                gauss_x,
                gauss_w,
                tables,
            )
        arrays["tables"] = tables
        fallback = np.flatnonzero(arrays["st_tab"] < 0)
        st_loff = arrays["st_loff"]
        return cls(
            n_features=int(dump["max_feature_idx"]) + 1,
            feature_names=tuple(dump["feature_names"]),
            expected_value=_sum_expected_values(trees),
            n_trees=len(trees),
            n_leaves=len(arrays["leaf_d"]),
            n_fallback_leaves=int(np.sum(st_loff[fallback + 1] - st_loff[fallback])),
            n_tables=int(tabled.size),
            max_path_features=flat.max_d,
            table_bytes=int(tables.nbytes),
            _pandas_categorical=booster.pandas_categorical,
            _arrays=arrays,
            _sizes=(flat.max_nodes, flat.max_leaves, flat.max_d),
        )

    def explain_margin(
        self, X: pd.DataFrame | np.ndarray, *, n_threads: int | None = None
    ) -> np.ndarray:
        """Exact TreeSHAP of the raw margin, shape ``(rows, n_features + 1)``.

        See :func:`explain_margin`.
        """
        data = self._matrix(X)
        out = np.empty((data.shape[0], self.n_features + 1))
        if data.shape[0]:
            self._run(data, out, n_threads)
            out[:, -1] = self.expected_value
        return out

    def _matrix(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        data = prediction_matrix(X, self._pandas_categorical)
        if data.ndim != 2 or data.shape[1] != self.n_features:
            shape = "x".join(str(s) for s in data.shape)
            raise TreeShapError(
                f"X has shape {shape}; expected (rows, {self.n_features}) with the model's "
                f"features in training order ({', '.join(self.feature_names[:5])}"
                f"{', ...' if self.n_features > 5 else ''})"
            )
        return data

    def _run(self, data: np.ndarray, out: np.ndarray, n_threads: int | None) -> None:
        import numba

        import leadml.explain._treeshap_kernels as k

        if n_threads is not None and n_threads < 1:
            raise TreeShapError(f"n_threads={n_threads}; expected a positive int or None")
        args = [self._arrays[name] for name in _ROW_ARRAYS]
        previous = numba.get_num_threads()
        if n_threads is not None:
            numba.set_num_threads(min(n_threads, numba.config.NUMBA_NUM_THREADS))
        try:
            k.shap_rows(data, out, *args, *self._sizes)
        finally:
            numba.set_num_threads(previous)


_BUILD_ARRAYS = (
    "st_ds",
    "st_noff",
    "st_uoff",
    "st_loff",
    "st_leaves",
    "st_tab",
    "leaf_d",
    "leaf_eoff",
    "leaf_poff",
    "leaf_value",
    "elem_z",
    "elem_u",
    "path_left",
    "path_elem",
    "path_keypos",
)

_ROW_ARRAYS = (
    "tree_node_off",
    "tree_st_off",
    "node_feature",
    "node_threshold",
    "node_is_cat",
    "node_nan_left",
    "node_zero_left",
    "node_cat_off",
    "node_cat_n",
    "node_bit",
    "node_left",
    "node_right",
    "cat_words",
    "st_row",
    "st_ds",
    "st_noff",
    "st_nodes",
    "st_uoff",
    "st_ufeat",
    "st_loff",
    "st_leaves",
    "st_tab",
    "leaf_d",
    "leaf_eoff",
    "leaf_poff",
    "leaf_value",
    "elem_feature",
    "elem_z",
    "path_node",
    "path_left",
    "path_elem",
    "tables",
    "gauss_x",
    "gauss_w",
)


@dataclass
class _Node:
    """An internal node as the kernel needs it, plus what the table planning needs."""

    feature: int
    is_cat: int
    threshold: float
    nan_left: int
    zero_left: int
    cats: list[int]
    feats: list[int]  # distinct features on the path above the node, in order of first use
    elem: int  # path element of the node's own feature
    left: int = 0  # child: internal node id if >= 0, else ~leaf index
    right: int = 0
    n_internal: int = 1  # internal nodes in the subtree rooted here


@dataclass
class _Leaf:
    value: float
    count: float
    feats: list[int]  # path elements' features
    zs: list[float]  # path elements' zero fractions
    steps: list[tuple[int, int, int]]  # (node, went left, element) from the root down


@dataclass
class _Tree:
    index: int
    nodes: list[_Node]
    leaves: list[_Leaf]
    expected_value: float


@dataclass
class _Block:
    """A subtree explained by one table: key = (mask at its root, decisions of its nodes)."""

    ref: int  # root: internal node id, or ~leaf index for a lone leaf
    ds: int  # path elements inherited from above the root (low bits of the key)
    nodes: list[int]  # internal nodes, in key order
    features: list[int]  # output columns of a table row
    leaves: list[int]

    @property
    def bits(self) -> int:
        return self.ds + len(self.nodes)

    @property
    def size(self) -> int:
        return (1 << self.bits) * len(self.features)


def _is_leaf(node: dict[str, Any]) -> bool:
    return "split_index" not in node


def _count(node: dict[str, Any]) -> float:
    return float(node["leaf_count"] if _is_leaf(node) else node["internal_count"])


def _parse_tree(info: dict[str, Any]) -> _Tree:
    """One tree of ``dump_model()``: nodes numbered so parents precede children, and each
    leaf's path elements (zero fractions merged per feature, as LightGBM's TreeSHAP does)."""
    index = int(info.get("tree_index", -1))
    root = info["tree_structure"]
    if _is_leaf(root):
        return _Tree(index, [], [], float(root["leaf_value"]))
    n_leaves = int(info["num_leaves"])
    n_nodes = n_leaves - 1
    nodes: list[_Node | None] = [None] * n_nodes
    leaves: list[_Leaf | None] = [None] * n_leaves
    # Iterative depth first, so deep unbounded trees do not hit the recursion limit. Node ids
    # are handed out when a node is first seen, so every child's id exceeds its parent's.
    stack: list[tuple[dict[str, Any], int, list[int], list[float], list[tuple[int, int, int]]]]
    stack = [(root, 0, [], [], [])]
    next_id = 1
    while stack:
        node, n, feats, zs, steps = stack.pop()
        if _is_leaf(node):
            if "leaf_coeff" in node:
                raise TreeShapError(
                    "model has linear trees (linear_tree=True); expected constant leaves; "
                    "LightGBM's pred_contrib does not explain linear trees either"
                )
            i = int(node["leaf_index"])
            if not 0 <= i < n_leaves or leaves[i] is not None:
                raise TreeShapError(
                    f"tree {index}: leaf index {i} is out of range or repeated; expected each "
                    f"of 0..{n_leaves - 1} once, as LightGBM >= 4 dumps them"
                )
            leaves[i] = _Leaf(float(node["leaf_value"]), _count(node), feats, zs, steps)
            continue
        if n >= n_nodes:
            raise TreeShapError(
                f"tree {index} has more than num_leaves - 1 = {n_nodes} internal nodes; "
                "expected a model dumped by LightGBM >= 4"
            )
        f = int(node["split_feature"])
        e = feats.index(f) if f in feats else len(feats)
        rec = _Node(feature=f, feats=feats, elem=e, **_decision(node, index))
        w = _count(node)
        for side, went_left in (("right_child", 0), ("left_child", 1)):
            child = node[side]
            if _is_leaf(child):
                c, ref = -1, ~int(child["leaf_index"])
            else:
                c = ref = next_id
                next_id += 1
            if went_left:
                rec.left = ref
            else:
                rec.right = ref
            # LightGBM: data_count(child) / data_count(node), multiplied into the element.
            ratio = _count(child) / w if w > 0 else float("nan")
            child_zs = list(zs)
            if e < len(feats):
                child_feats = feats
                child_zs[e] *= ratio
            else:
                child_feats = [*feats, f]
                child_zs.append(ratio)
            stack.append((child, c, child_feats, child_zs, [*steps, (n, went_left, e)]))
        nodes[n] = rec
    if next_id != n_nodes or any(x is None for x in nodes) or any(x is None for x in leaves):
        raise TreeShapError(
            f"tree {index}: structure does not match num_leaves = {n_leaves}; expected a model "
            "dumped by LightGBM >= 4"
        )
    done_nodes = [x for x in nodes if x is not None]
    done_leaves = [x for x in leaves if x is not None]
    for node_ in reversed(done_nodes):
        node_.n_internal = 1 + sum(
            done_nodes[c].n_internal for c in (node_.left, node_.right) if c >= 0
        )
    # LightGBM's Tree::ExpectedValue, in its order: leaf by leaf, count share times value.
    total = _count(root)
    ev = 0.0
    for leaf in done_leaves:
        ev += (leaf.count / total) * leaf.value
    return _Tree(index, done_nodes, done_leaves, ev)


def _decision(node: dict[str, Any], tree_index: int) -> dict[str, Any]:
    """A node's rule in the form the kernel evaluates (:func:`leadml.model.trees.node_decision`)."""
    try:
        return node_decision(node, tree_index)
    except UnsupportedTrees as e:
        raise TreeShapError(str(e)) from None


def _block(tree: _Tree, ref: int) -> _Block:
    if ref < 0:
        leaf = tree.leaves[~ref]
        return _Block(ref, len(leaf.feats), [], list(leaf.feats), [~ref])
    nodes: list[int] = []
    leaves: list[int] = []
    stack = [ref]
    while stack:
        r = stack.pop()
        if r < 0:
            leaves.append(~r)
        else:
            nodes.append(r)
            stack += (tree.nodes[r].right, tree.nodes[r].left)
    nodes.sort()
    leaves.sort()
    features = list(tree.nodes[ref].feats)
    for n in nodes:
        if tree.nodes[n].feature not in features:
            features.append(tree.nodes[n].feature)
    return _Block(ref, len(tree.nodes[ref].feats), nodes, features, leaves)


def _cut(tree: _Tree, ref: int, max_bits: int) -> list[int]:
    """The largest subtrees under ``ref`` whose table key has at most ``max_bits`` bits (a key
    never grows going down, so they partition the leaves)."""
    out: list[int] = []
    stack = [ref]
    while stack:
        r = stack.pop()
        if r < 0 or len(tree.nodes[r].feats) + tree.nodes[r].n_internal <= max_bits:
            out.append(r)
        else:
            stack += (tree.nodes[r].right, tree.nodes[r].left)
    return out


def _plan(trees: list[_Tree], max_bits: int, max_bytes: int) -> list[list[tuple[_Block, bool]]]:
    """Cut every tree into blocks and decide which get a table (True) within the memory cap.

    While the tables exceed the cap, the largest is split into its two subtrees (smaller keys,
    roughly half the memory, a few more additions per row); a lone leaf that is the largest is
    explained per row instead, as are leaves with more than ``max_bits`` path features.
    """
    plan: list[list[tuple[_Block, bool]]] = [[] for _ in trees]
    heap: list[tuple[int, int, int, _Block]] = []  # max-heap on size via negated sizes
    order = itertools.count()  # ties broken by insertion order, never by comparing blocks
    used = 0
    for ti, tree in enumerate(trees):
        if not tree.nodes:
            continue
        for ref in _cut(tree, 0, max_bits):
            b = _block(tree, ref)
            if max_bits == 0 or b.bits > max_bits or b.bits > _MAX_MASK_BITS:
                plan[ti].append((b, False))
            else:
                heapq.heappush(heap, (-b.size, next(order), ti, b))
                used += 8 * b.size
    while heap and used > max_bytes:
        neg_size, _, ti, b = heapq.heappop(heap)
        used += 8 * neg_size
        if b.ref < 0:
            plan[ti].append((b, False))
            continue
        node = trees[ti].nodes[b.ref]
        for ref in (node.left, node.right):
            child = _block(trees[ti], ref)
            heapq.heappush(heap, (-child.size, next(order), ti, child))
            used += 8 * child.size
    for _, _, ti, b in heap:
        plan[ti].append((b, True))
    for blocks in plan:
        blocks.sort(key=lambda item: item[0].leaves[0])
    return plan


class _Flat:
    """All trees flattened into the arrays the kernels read."""

    def __init__(self) -> None:
        self.lists: dict[str, list[Any]] = {name: [] for name in _INT_ARRAYS + _FLOAT_ARRAYS}
        self.lists["tree_node_off"].append(0)
        self.lists["tree_st_off"].append(0)
        for name in ("st_noff", "st_uoff", "st_loff", "leaf_eoff", "leaf_poff"):
            self.lists[name].append(0)
        self.table_size = 0
        self.max_nodes = 0
        self.max_leaves = 0
        self.max_d = 0

    def add(self, tree: _Tree, blocks: list[tuple[_Block, bool]]) -> None:
        a = self.lists
        if not tree.nodes:
            return
        n_nodes = len(tree.nodes)
        leaf_base = len(a["leaf_d"])
        for node in tree.nodes:
            a["node_feature"].append(node.feature)
            a["node_threshold"].append(node.threshold)
            a["node_is_cat"].append(node.is_cat)
            a["node_nan_left"].append(node.nan_left)
            a["node_zero_left"].append(node.zero_left)
            words = category_words(node.cats)
            a["node_cat_off"].append(len(a["cat_words"]))
            a["node_cat_n"].append(len(words))
            a["cat_words"].extend(words)
            a["node_bit"].append((1 << node.elem) if node.elem < _MAX_MASK_BITS else 0)
            a["node_left"].append(node.left if node.left >= 0 else n_nodes + ~node.left)
            a["node_right"].append(node.right if node.right >= 0 else n_nodes + ~node.right)
        keypos = [-1] * n_nodes
        leaf_block: list[_Block | None] = [None] * len(tree.leaves)
        for b, granted in blocks:
            for i, n in enumerate(b.nodes):
                keypos[n] = b.ds + i
            for i in b.leaves:
                leaf_block[i] = b
            a["st_row"].append(b.ref if b.ref >= 0 else n_nodes + ~b.ref)
            a["st_ds"].append(b.ds)
            a["st_nodes"].extend(b.nodes)
            a["st_noff"].append(len(a["st_nodes"]))
            a["st_ufeat"].extend(b.features)
            a["st_uoff"].append(len(a["st_ufeat"]))
            a["st_leaves"].extend(leaf_base + i for i in b.leaves)
            a["st_loff"].append(len(a["st_leaves"]))
            a["st_tab"].append(self.table_size if granted else -1)
            if granted:
                self.table_size += b.size
        for leaf, block in zip(tree.leaves, leaf_block, strict=True):
            if block is None:  # pragma: no cover - _plan covers every leaf
                raise AssertionError("leaf outside every table block")
            a["leaf_d"].append(len(leaf.feats))
            a["leaf_value"].append(leaf.value)
            a["elem_feature"].extend(leaf.feats)
            a["elem_z"].extend(leaf.zs)
            a["elem_u"].extend(block.features.index(f) for f in leaf.feats)
            a["leaf_eoff"].append(len(a["elem_feature"]))
            for n, went_left, e in leaf.steps:
                a["path_node"].append(n)
                a["path_left"].append(went_left)
                a["path_elem"].append(e)
                a["path_keypos"].append(keypos[n])
            a["leaf_poff"].append(len(a["path_node"]))
            self.max_d = max(self.max_d, len(leaf.feats))
        a["tree_node_off"].append(len(a["node_feature"]))
        a["tree_st_off"].append(len(a["st_tab"]))
        self.max_nodes = max(self.max_nodes, n_nodes)
        self.max_leaves = max(self.max_leaves, len(tree.leaves))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {name: np.asarray(self.lists[name], dtype=np.int64) for name in _INT_ARRAYS}
        out.update({n: np.asarray(self.lists[n], dtype=np.float64) for n in _FLOAT_ARRAYS})
        out["cat_words"] = out["cat_words"].astype(np.uint32)
        return out


_INT_ARRAYS = (
    "tree_node_off",
    "tree_st_off",
    "node_feature",
    "node_is_cat",
    "node_nan_left",
    "node_zero_left",
    "node_cat_off",
    "node_cat_n",
    "node_bit",
    "node_left",
    "node_right",
    "cat_words",
    "st_row",
    "st_ds",
    "st_noff",
    "st_nodes",
    "st_uoff",
    "st_ufeat",
    "st_loff",
    "st_leaves",
    "st_tab",
    "leaf_d",
    "leaf_eoff",
    "leaf_poff",
    "elem_feature",
    "elem_u",
    "path_node",
    "path_left",
    "path_elem",
    "path_keypos",
)
_FLOAT_ARRAYS = ("node_threshold", "leaf_value", "elem_z")


def _sum_expected_values(trees: list[_Tree]) -> float:
    # LightGBM adds each tree's expected value to the bias column in tree order.
    total = 0.0
    for tree in trees:
        total += tree.expected_value
    return total


def _gauss_legendre_01(max_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [0, 1]; row ``q`` holds the ``q``-node rule."""
    size = max(max_nodes, 1)
    gx = np.zeros((size + 1, size))
    gw = np.zeros((size + 1, size))
    for q in range(1, size + 1):
        x, w = np.polynomial.legendre.leggauss(q)
        gx[q, :q] = (x + 1.0) / 2.0
        gw[q, :q] = w / 2.0
    return gx, gw


_CACHE: weakref.WeakKeyDictionary[lgb.Booster, tuple[tuple[int, int], TreeShapModel]]
_CACHE = weakref.WeakKeyDictionary()


def explain_margin(
    booster: lgb.Booster | TreeShapModel,
    X: pd.DataFrame | np.ndarray,
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Exact path-dependent TreeSHAP of the raw margin of a LightGBM model.

    Equal to ``booster.predict(X, pred_contrib=True)`` and ``shap.TreeExplainer(booster)`` (to
    rounding, ~1e-15 relative), many times faster.

    Parameters
    ----------
    booster : lightgbm.Booster or TreeShapModel
        The model. A Booster's :class:`TreeShapModel` is built on first use and cached for as
        long as the Booster lives (rebuilt if it gains iterations); build it yourself with
        :meth:`TreeShapModel.from_booster` to control table memory or time the precompute.
    X : pandas.DataFrame or numpy.ndarray
        Rows to explain, with the model's features in training order; ``category`` columns are
        mapped through the booster's training categories exactly as ``Booster.predict`` does.
    n_threads : int, optional
        Threads to use (default: numba's default, all cores). Results do not depend on it.

    Returns
    -------
    numpy.ndarray
        Shape ``(rows, n_features + 1)``: one column per feature, the expected value last. Each
        row sums to the raw margin ``booster.predict(X, raw_score=True)``.

    Examples
    --------
    >>> import lightgbm as lgb, numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 3))
    >>> y = (X[:, 0] + rng.normal(size=500) > 0).astype(int)
    >>> booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), 5)
    >>> phi = explain_margin(booster, X[:4])
    >>> phi.shape
    (4, 4)
    >>> bool(np.allclose(phi, booster.predict(X[:4], pred_contrib=True), atol=1e-12))
    True
    """
    if isinstance(booster, TreeShapModel):
        model = booster
    else:
        model = _cached_model(booster)
    return model.explain_margin(X, n_threads=n_threads)


def _cached_model(booster: lgb.Booster) -> TreeShapModel:
    model: TreeShapModel = per_booster(_CACHE, booster, TreeShapModel.from_booster)
    return model
