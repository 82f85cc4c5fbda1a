"""LightGBM's raw prediction, compiled: ``Booster.predict(M, raw_score=True)`` to the bit.

A scoring job predicts every lead with both models; LightGBM's predictor copies each row into
a sparse row before walking the trees. Walking them straight from the prediction matrix
(:mod:`leadml.model.matrix`) on all cores takes less than half the time (1.3 s -> 0.65 s for
673k rows and 188 trees on two cores).

The same value, not a close one: every node repeats LightGBM's ``Tree::Decision`` (numerical
``<=`` with missing type None / Zero / NaN and the stored default direction, categorical bit
sets with NaN and negative codes going right), on the matrix LightGBM itself would read, and
the leaf values (printed with 17 digits by ``dump_model``, so read back exactly) are summed
tree by tree from 0.0, as ``GBDT::PredictRaw`` sums them. Models this does not cover (linear
trees, several trees per iteration, averaged forests) are predicted by LightGBM.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import lightgbm as lgb

__all__ = [
    "CompiledTrees",
    "UnsupportedTrees",
    "n_iterations",
    "node_decision",
    "per_booster",
    "raw_margin",
]


class UnsupportedTrees(ValueError):
    """A model or tree this module does not evaluate itself (LightGBM then predicts it)."""


def n_iterations(booster: lgb.Booster) -> int:
    """The iterations ``Booster.predict`` uses: ``best_iteration`` when early stopping set
    one, else all."""
    best = booster.best_iteration
    return int(best) if best and best > 0 else booster.current_iteration()


def node_decision(node: dict[str, Any], tree_index: int) -> dict[str, Any]:
    """A ``dump_model()`` node's rule in the form the kernels evaluate.

    A numerical node is LightGBM's ``NumericalDecision`` reduced to three cases: NaN goes
    ``nan_left``, zero goes ``zero_left``, anything else ``x <= threshold``. With missing type
    None NaN reads as 0; with Zero both NaN and 0 take the default direction; with NaN only NaN
    does. A categorical node goes left for the codes in ``cats``.
    """
    decision = node["decision_type"]
    if decision == "==":
        cats = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
        return {
            "is_cat": 1,
            "threshold": 0.0,
            "nan_left": 0,
            "zero_left": 0,
            "cats": [c for c in cats if c >= 0],
        }
    if decision != "<=":
        raise UnsupportedTrees(
            f"tree {tree_index} node {node['split_index']}: decision_type {decision!r}; "
            "expected '<=' (numerical) or '==' (categorical)"
        )
    missing = node.get("missing_type", "None")
    threshold = float(node["threshold"])
    default_left = int(bool(node.get("default_left", False)))
    zero_goes_left = int(0.0 <= threshold)
    if missing == "None":
        nan_left, zero_left = zero_goes_left, zero_goes_left
    elif missing == "Zero":
        nan_left, zero_left = default_left, default_left
    elif missing == "NaN":
        nan_left, zero_left = default_left, zero_goes_left
    else:
        raise UnsupportedTrees(
            f"tree {tree_index} node {node['split_index']}: missing_type {missing!r}; "
            "expected None, Zero or NaN"
        )
    return {
        "is_cat": 0,
        "threshold": threshold,
        "nan_left": nan_left,
        "zero_left": zero_left,
        "cats": [],
    }


def category_words(cats: list[int]) -> list[int]:
    """A categorical node's bit set as 32-bit words: bit ``c & 31`` of word ``c >> 5``."""
    words = [0] * ((max(cats) >> 5) + 1 if cats else 0)
    for c in cats:
        words[c >> 5] |= 1 << (c & 31)
    return words


@dataclass(frozen=True)
class CompiledTrees:
    """A booster's trees as flat arrays, for :func:`leadml._kernels.tree_margins`.

    Node ``g`` of every tree is row ``g`` of the node arrays; a child ``c >= 0`` is a node, a
    child ``c < 0`` the leaf ``~c``; a tree of one leaf has its root at that leaf.
    """

    n_features: int
    arrays: dict[str, np.ndarray] = field(repr=False)

    @classmethod
    def from_booster(cls, booster: lgb.Booster) -> CompiledTrees:
        """Flatten the trees ``Booster.predict`` uses; :class:`UnsupportedTrees` for a model
        that is not one plain tree per iteration."""
        dump = booster.dump_model(num_iteration=n_iterations(booster))
        if dump.get("num_tree_per_iteration", 1) != 1:
            raise UnsupportedTrees(f"{dump['num_tree_per_iteration']} trees per iteration")
        if dump.get("average_output", False):
            raise UnsupportedTrees("the model averages its trees (boosting='rf')")
        cols: dict[str, list[Any]] = {
            k: [] for k in ("feature", "threshold", "is_cat", "nan_left", "zero_left")
        }
        cat_off: list[int] = []
        cat_n: list[int] = []
        words: list[int] = []
        left: list[int] = []
        right: list[int] = []
        leaves: list[float] = []
        roots: list[int] = []
        for info in dump["tree_info"]:
            index = int(info.get("tree_index", len(roots)))
            # Iterative depth first: deep trees do not hit the recursion limit. ``slot`` is
            # where the node's id is written (its parent's left or right, or the root).
            stack: list[tuple[dict[str, Any], list[int], int]] = [
                (info["tree_structure"], roots, len(roots))
            ]
            roots.append(0)
            while stack:
                node, slots, at = stack.pop()
                if "split_index" not in node:
                    if "leaf_coeff" in node:
                        raise UnsupportedTrees("linear trees (linear_tree=True)")
                    leaves.append(float(node["leaf_value"]))
                    slots[at] = ~(len(leaves) - 1)
                    continue
                g = len(left)
                slots[at] = g
                rule = node_decision(node, index)
                for k in cols:
                    cols[k].append(rule[k] if k != "feature" else int(node["split_feature"]))
                bits = category_words(rule["cats"])
                cat_off.append(len(words))
                cat_n.append(len(bits))
                words.extend(bits)
                left.append(0)
                right.append(0)
                stack.append((node["right_child"], right, g))
                stack.append((node["left_child"], left, g))
        arrays: dict[str, np.ndarray] = {
            "roots": np.array(roots, dtype=np.int64),
            "feature": np.array(cols["feature"], dtype=np.int64),
            "threshold": np.array(cols["threshold"], dtype=np.float64),
            "is_cat": np.array(cols["is_cat"], dtype=np.uint8),
            "nan_left": np.array(cols["nan_left"], dtype=np.uint8),
            "zero_left": np.array(cols["zero_left"], dtype=np.uint8),
            "cat_off": np.array(cat_off, dtype=np.int64),
            "cat_n": np.array(cat_n, dtype=np.int64),
            "cat_words": np.array(words, dtype=np.uint32),
            "left": np.array(left, dtype=np.int64),
            "right": np.array(right, dtype=np.int64),
            "leaf_value": np.array(leaves, dtype=np.float64),
        }
        return cls(int(dump["max_feature_idx"]) + 1, arrays)

    def margin(self, M: np.ndarray) -> np.ndarray:
        """The raw margin of each row of a prediction matrix (C-ordered float64, the model's
        features in order)."""
        from leadml._kernels import tree_margins

        out = np.empty(M.shape[0])
        a = self.arrays
        tree_margins(
            M,
            out,
            *(a[k] for k in ("roots", "feature", "threshold", "is_cat", "nan_left")),
            *(a[k] for k in ("zero_left", "cat_off", "cat_n", "cat_words", "left", "right")),
            a["leaf_value"],
        )
        return out


def per_booster(
    cache: weakref.WeakKeyDictionary[Any, Any], booster: lgb.Booster, build: Any
) -> Any:
    """``build(booster)``, kept in ``cache`` (``booster -> (key, value)``) for as long as the
    booster lives, and built again when it gains iterations or its best iteration changes."""
    key = (booster.current_iteration(), int(booster.best_iteration or 0))
    hit = cache.get(booster)
    if hit is None or hit[0] != key:
        hit = cache[booster] = (key, build(booster))
    return hit[1]


_CACHE: weakref.WeakKeyDictionary[Any, tuple[tuple[int, int], CompiledTrees | None]]
_CACHE = weakref.WeakKeyDictionary()


def _compiled(booster: lgb.Booster) -> CompiledTrees | None:
    try:
        return CompiledTrees.from_booster(booster)
    except UnsupportedTrees:
        return None


def raw_margin(booster: lgb.Booster, M: np.ndarray) -> np.ndarray:
    """``booster.predict(M, raw_score=True)`` for a prediction matrix ``M``: compiled (cached
    for as long as the booster lives) where the model allows it, else LightGBM's own, which
    also reports a matrix of the wrong shape."""
    trees: CompiledTrees | None = per_booster(_CACHE, booster, _compiled)
    fits = M.ndim == 2 and M.dtype == np.float64 and M.flags.c_contiguous
    if trees is None or not fits or M.shape[1] != trees.n_features or not len(M):
        return np.asarray(booster.predict(M, raw_score=True), dtype=float)
    return trees.margin(M)
