"""Exact TreeSHAP contributions -> grouped, ranked, plain-language reasons.

**Contributions** are exact path-dependent TreeSHAP values of the model's raw margin (log-odds),
shape ``(rows, features + 1)`` with the expected value in the last column, so that
``expected value + Σ contributions = margin`` for every row. Three engines compute the same
numbers (:data:`ENGINES`):

- ``"leadml"`` (default): :mod:`leadml.explain._treeshap`, the package's own engine, several times faster;
  falls back to ``"lightgbm"`` (with a log message) if it cannot run (numba missing, or a model
  shape it does not support);
- ``"lightgbm"``: ``booster.predict(X, pred_contrib=True)``;
- ``"shap"``: ``shap.TreeExplainer(booster).shap_values(X)``, the reference (in its default mode
  shap itself calls ``pred_contrib`` for LightGBM models).

A **reason** is a group of features (``FeatureSpec.groups``: all windows and the recency of one
event type; one fit attribute; overall engagement; tenure). Its contribution ``φ_g`` is the sum
of its features' contributions.

**Points** (what a rep reads) add up: ``score = base + Σ points`` exactly. The *base* is the
score of this lead with every reason at its average, i.e. ``100 · calibrate(E + φ_context)``
(``E`` the expected value; the *context* groups, :data:`CONTEXT_GROUPS`: current stage, days in
it and past disqualifications, are true but nothing to act on, so they set the base of "a
typical lead in this stage" instead of appearing as reasons). The probability gap between the
lead and its base is split over the other groups in proportion to their log-odds contributions,
``points_g = 100 · s · φ_g`` with ``s = (p - p_base) / (m - m_base)``, the calibration curve's
secant slope between the two margins (its derivative when they coincide): stable when
contributions cancel, signed like ``φ_g``, and exactly additive. Rounding rule: the base is
rounded to 0.1 point, the score to a whole point (``round(100 p)``), and the groups' shares to
0.1 point by largest remainder so that ``base + Σ points = score`` holds exactly; a group's
points are within 0.1 of its exact share plus its part of the score's own rounding. A reason's
``effect`` is its points as a probability (0.041 = ``+4.1 pts``); groups worth 0.0 points are no
reason; the points of the groups not listed are reported as ``other_points``.

Per row, positive reasons are ranked by points, largest first, then negative ones, most negative
first; ties break on ``φ_g``, then on the spec's group order. The
sentence is rendered by ``FeatureSpec.describe`` from the lead's own value of the group's most
influential feature for that row (largest ``|contribution|`` within the group), e.g. *Viewed the
pricing page 3 times in the last 7 days*.
"""

from __future__ import annotations

import functools
import logging
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import lightgbm as lgb

    from leadml.data.features import FeatureSpec
    from leadml.model.stage import StageModel

__all__ = [
    "CONTEXT_GROUPS",
    "ENGINES",
    "REASON_FIELDS",
    "Reasons",
    "additive_points",
    "additivity_error",
    "contributions",
    "explain_contributions",
    "explain_ranked",
    "explain_reasons",
    "global_importance",
    "group_contributions",
    "reason_effects",
    "parse_reason_sentence",
    "plain",
    "reason_cell",
    "ranked_reasons",
    "reason_sentence",
    "reasons",
]

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("leadml", "lightgbm", "shap")

_fallback_noted: set[str] = set()


def explain_contributions(
    booster: lgb.Booster,
    X: pd.DataFrame | np.ndarray,
    engine: str = "leadml",
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """Exact TreeSHAP of a LightGBM booster's raw margin.

    Parameters
    ----------
    booster : lightgbm.Booster
        A binary (or regression) model.
    X : DataFrame or ndarray
        Rows with the model's features in training order (``category`` columns as trained).
    engine : {"leadml", "lightgbm", "shap"}
        Which implementation computes them (see the module docs); the values are the same.
    n_threads : int, optional
        Threads for the ``leadml`` and ``lightgbm`` engines (default: all cores). Results do not
        depend on it.

    Returns
    -------
    ndarray
        Shape ``(rows, features + 1)``, float64; the last column is the expected value. Each row
        sums to ``booster.predict(X, raw_score=True)``.
    """
    if engine not in ENGINES:
        raise ValueError(
            f"unknown explainer {engine!r}; expected one of {', '.join(ENGINES)} "
            "(config explain.engine or --explainer)"
        )
    if engine == "leadml":
        fast = _leadml_engine()
        if fast is not None:
            explain_margin, error_type = fast
            try:
                return np.asarray(explain_margin(booster, X, n_threads=n_threads), dtype=float)
            except error_type as e:
                _note_fallback(f"leadml TreeSHAP cannot explain this model ({e})")
            except Exception as e:
                # A nightly job should not die on the fast path when the reference path gives
                # the same numbers; the log says what broke.
                _note_fallback(f"leadml TreeSHAP failed ({type(e).__name__}: {e})")
        engine = "lightgbm"
    if engine == "lightgbm":
        params: dict[str, Any] = {} if n_threads is None else {"num_threads": n_threads}
        return np.asarray(booster.predict(X, pred_contrib=True, **params), dtype=float)
    import shap

    with warnings.catch_warnings():
        # shap notes a change of its *multi-output* return type whenever the booster's objective
        # is binary; ours is one margin, returned as one matrix either way.
        warnings.filterwarnings(
            "ignore", message="LightGBM binary classifier", category=UserWarning
        )
        explainer = shap.TreeExplainer(booster)
        values = np.asarray(explainer.shap_values(X), dtype=float)
    if values.ndim == 3:  # one matrix per output in some shap versions
        values = values[..., -1]
    base = np.full((values.shape[0], 1), float(np.ravel(explainer.expected_value)[-1]))
    return np.hstack([values, base])


def _leadml_engine() -> tuple[Any, type[Exception]] | None:
    try:
        from leadml.explain._treeshap import TreeShapError, explain_margin
    except ImportError as e:  # numba is optional at run time
        _note_fallback(f"leadml TreeSHAP is unavailable ({e})")
        return None
    return explain_margin, TreeShapError


def _note_fallback(why: str) -> None:
    if why not in _fallback_noted:
        _fallback_noted.add(why)
        log.warning("%s; using LightGBM pred_contrib (same values, slower)", why)


def contributions(
    model: StageModel,
    X: pd.DataFrame,
    engine: str = "leadml",
    *,
    n_threads: int | None = None,
) -> np.ndarray:
    """:func:`explain_contributions` of a stage model on a features frame (extra columns such as
    ``lead_id`` are ignored; the model's features are selected in its order). A model boosted
    from a linear base adds that part's exact Shapley values (:mod:`leadml.model.linear`)."""
    F = model.features(X)
    contrib = explain_contributions(model.booster, F, engine, n_threads=n_threads)
    if model.linear is not None:
        # In place: the engines return a fresh array (a copy if it was read-only or shared).
        if not contrib.flags.writeable or not contrib.flags.owndata:
            contrib = contrib.copy()
        contrib = model.linear.contributions(F, model.spec.names, add_to=contrib)
    return contrib


def additivity_error(model: StageModel, X: pd.DataFrame, contrib: np.ndarray) -> float:
    """Largest ``|expected value + Σ contributions - margin|`` over the rows."""
    return float(np.max(np.abs(contrib.sum(axis=1) - model.margin(X)), initial=0.0))


def _membership(spec: FeatureSpec) -> tuple[list[str], np.ndarray]:
    """Reason groups in spec order and the (features x groups) 0/1 membership matrix."""
    groups = list(spec.group_names)
    index = {g: i for i, g in enumerate(groups)}
    member = np.zeros((len(spec.names), len(groups)))
    for j, n in enumerate(spec.names):
        member[j, index[spec.groups[n]]] = 1.0
    return groups, member


def _members(member: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The features of each group as one array and each group's first position in it (group
    ``g``'s are ``members[first[g]:first[g + 1]]``, in spec order)."""
    features, groups = np.nonzero(member.T)[::-1]  # group by group, features in order
    first = np.searchsorted(groups, np.arange(member.shape[1] + 1)).astype(np.int64)
    return features.astype(np.int64), first


def group_contributions(model: StageModel, contrib: np.ndarray) -> pd.DataFrame:
    """Per-row contribution (log-odds of the raw margin) of each reason group, in spec order."""
    groups, member = _membership(model.spec)
    return pd.DataFrame(contrib[:, :-1] @ member, columns=groups)


def reason_effects(calibration: Any, margin: np.ndarray, group_phi: np.ndarray) -> np.ndarray:
    """``calibrate(margin) - calibrate(margin - φ_g)`` for every row and group (probabilities).

    Parameters
    ----------
    calibration : callable
        Margin -> probability (``StageModel.calibration``).
    margin : ndarray, shape (rows,)
    group_phi : ndarray, shape (rows, groups)

    Examples
    --------
    >>> from leadml.model.stage import Calibration
    >>> e = reason_effects(Calibration("platt", 1.0, 0.0), np.array([0.0]), np.array([[1.0, -1.0]]))
    >>> np.round(e, 4).tolist()
    [[0.2311, -0.2311]]
    """
    margin = np.asarray(margin, dtype=float)
    p = np.asarray(calibration(margin), dtype=float)
    return p[:, None] - np.asarray(calibration(margin[:, None] - group_phi), dtype=float)


#: Reason groups that are context, not reasons: a lead's current stage, days in it and past
#: disqualifications are true and nothing a rep can act on, so they are part of its base score.
CONTEXT_GROUPS = frozenset({"stage_history"})


#: The fields of one reason, in the order of the scores file's ``reasons`` structs.
REASON_FIELDS = ("group", "text", "direction", "effect", "evidence")


@dataclass(frozen=True)
class Reasons:
    """Ranked reasons per row and the numbers they add up to (:func:`ranked_reasons`), held as
    columns: row ``i``'s reasons are entries ``offsets[i]:offsets[i + 1]`` of ``group``,
    ``text``, ``direction``, ``effect`` and ``evidence`` (one entry per reason, in rank order).
    A million rows' lists of dicts cost seconds to build; the columns become the scores file's
    Arrow column without them (:meth:`arrow`), and :attr:`lists` builds the dicts on demand.

    ``base_score[i] + sum(100 * effect over row i's reasons) + other_points[i]`` equals the
    row's score (``round(100 p)``) exactly, in tenths of a point.
    """

    offsets: np.ndarray  # (rows + 1,) int64
    _group: np.ndarray | None  # object (str), one per reason; None: from ``coded``
    _text: np.ndarray | None
    _direction: np.ndarray | None
    effect: np.ndarray  # float64
    _evidence: np.ndarray | None
    base_score: np.ndarray  # points, multiples of 0.1
    other_points: np.ndarray  # points of the reasons not listed, multiples of 0.1
    #: The text fields also as ``(codes, distinct values)`` where known: ``field[i] ==
    #: values[codes[i]]``. :meth:`arrow` then builds the column from the few distinct values,
    #: and a field given as None is built from them only when read.
    coded: dict[str, tuple[np.ndarray, list[str]]] = field(default_factory=dict)

    def _field(self, name: str) -> np.ndarray:
        held = getattr(self, f"_{name}")
        if held is None:
            codes, values = self.coded[name]
            held = np.asarray(values, dtype=object)[codes]
            object.__setattr__(self, f"_{name}", held)  # built once
        return held

    @property
    def group(self) -> np.ndarray:
        """Each reason's group (object array of str)."""
        return self._field("group")

    @property
    def text(self) -> np.ndarray:
        """Each reason's sentence."""
        return self._field("text")

    @property
    def direction(self) -> np.ndarray:
        """Each reason's ``"+"`` or ``"-"``."""
        return self._field("direction")

    @property
    def evidence(self) -> np.ndarray:
        """Each reason's evidence sentence (``""`` where there is none)."""
        return self._field("evidence")

    @classmethod
    def empty(cls, n: int) -> Reasons:
        """``n`` rows without reasons, base score and other points NaN (nothing explained)."""
        none = np.empty(0, dtype=object)
        return cls(
            np.zeros(n + 1, np.int64),
            none,
            none,
            none,
            np.zeros(0),
            none,
            np.full(n, np.nan),
            np.full(n, np.nan),
        )

    @classmethod
    def scatter(cls, n: int, parts: Sequence[tuple[np.ndarray, Reasons]]) -> Reasons:
        """One ``Reasons`` of ``n`` rows from parts, each ``(rows, reasons of those rows)``;
        rows no part covers have none (and NaN numbers)."""
        counts = np.zeros(n, np.int64)
        base, other = np.full(n, np.nan), np.full(n, np.nan)
        for at, r in parts:
            counts[at] = np.diff(r.offsets)
            base[at], other[at] = r.base_score, r.other_points
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum(counts, out=offsets[1:])
        total = int(offsets[-1])
        texts = [f for f in REASON_FIELDS if f != "effect"]
        coded: dict[str, tuple[np.ndarray, list[str]]] = {
            f: (np.empty(total, dtype=np.int32), [])
            for f in texts
            if all(f in r.coded for _, r in parts)
        }
        cols = {f: np.empty(total, dtype=object) for f in texts if f not in coded}
        effect = np.zeros(total)
        for at, r in parts:
            size = np.diff(r.offsets)
            row_of = np.repeat(np.arange(len(at)), size)
            dest = offsets[np.asarray(at)[row_of]] + (np.arange(len(row_of)) - r.offsets[row_of])
            for f, col in cols.items():
                col[dest] = r._field(f)
            for f, (codes, values) in coded.items():
                part_codes, part_values = r.coded[f]
                codes[dest] = part_codes + len(values)
                values.extend(part_values)
            effect[dest] = r.effect
        return cls(
            offsets,
            cols.get("group"),
            cols.get("text"),
            cols.get("direction"),
            effect,
            cols.get("evidence"),
            base,
            other,
            coded,
        )

    @property
    def lists(self) -> list[list[dict[str, Any]]]:
        """One list per row of ``{group, text, direction, effect, evidence}`` dicts."""
        flat = [
            {"group": g, "text": t, "direction": d, "effect": e, "evidence": v}
            for g, t, d, e, v in zip(
                self.group.tolist(),
                self.text.tolist(),
                self.direction.tolist(),
                self.effect.tolist(),
                self.evidence.tolist(),
                strict=True,
            )
        ]
        o = self.offsets.tolist()
        return [flat[o[i] : o[i + 1]] for i in range(len(o) - 1)]

    def arrow(self) -> Any:
        """The reasons as one Arrow ``list<struct<group, text, direction, effect, evidence>>``
        array, one list per row (the scores file's ``reasons`` column), built from the columns
        without a Python object per reason."""
        import pyarrow as pa

        def text(name: str) -> Any:
            if name not in self.coded:
                return pa.array(self._field(name), type=pa.string())
            codes, values = self.coded[name]
            return pa.DictionaryArray.from_arrays(
                pa.array(codes, type=pa.int32()), pa.array(values, type=pa.string())
            ).cast(pa.string())

        fields = [
            text("group"),
            text("text"),
            text("direction"),
            pa.array(self.effect, type=pa.float64()),
            text("evidence"),
        ]
        values = pa.StructArray.from_arrays(fields, names=list(REASON_FIELDS))
        return pa.ListArray.from_arrays(pa.array(self.offsets, type=pa.int32()), values)


def additive_points(
    model: StageModel, contrib: np.ndarray, G: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Each reason group's points, adding up to the score exactly (module docs, Points).

    Returns ``(points, raw, base, total)``: ``points`` (rows x groups) in tenths of a point,
    integers as floats, summing per row to ``total = 10 * score - 10 * base`` (context groups
    get 0: they are in the base); ``raw`` the exact shares before rounding (tenths); ``base``
    the base score in points (multiples of 0.1). ``G``: the group contributions, when the caller
    has them already (rows x groups, :func:`group_contributions` order).
    """
    groups, member = _membership(model.spec)
    if G is None:
        G = contrib[:, :-1] @ member
    ctx = np.array([g in CONTEXT_GROUPS for g in groups], dtype=bool)
    cal = model.calibration
    base_margin = contrib[:, -1] + G[:, ctx].sum(axis=1)
    # The score from the contributions' own margin (equal to the model's to ~1e-12).
    p = np.asarray(cal(contrib.sum(axis=1)), dtype=float)
    pb = np.asarray(cal(base_margin), dtype=float)
    d = contrib.sum(axis=1) - base_margin
    h = 1e-6
    deriv = (np.asarray(cal(base_margin + h)) - np.asarray(cal(base_margin - h))) / (2 * h)
    flat = np.abs(d) < 1e-9
    slope = np.where(flat, deriv, (p - pb) / np.where(flat, 1.0, d))
    raw = 1000.0 * slope[:, None] * np.where(ctx, 0.0, G)
    base_t = np.rint(1000.0 * pb)
    total = 10.0 * model.to_score(p) - base_t
    q = np.rint(raw)
    diff = (total - q.sum(axis=1)).astype(np.int64)
    rem = raw - q
    # Largest remainders take the units rounding lost (or gave back): each group ends within one
    # tenth of a point of its exact share, plus what the score's own rounding moved.
    # Only groups that contribute take units; a row where none does keeps its (sub-point)
    # rounding difference, which ranked_reasons reports with the other points.
    from leadml._kernels import settle_units

    settle_units(q, rem, raw, ctx[None, :] | (G == 0), diff)
    return q, raw, base_t / 10.0, total


def ranked_reasons(
    model: StageModel,
    X: pd.DataFrame,
    contrib: np.ndarray,
    *,
    n_positive: int = 4,
    n_negative: int = 2,
) -> Reasons:
    """Ranked reasons per row with their additive points, the base score and the points of
    the reasons not listed (module docs, Points)."""
    n = len(X)
    spec = model.spec
    groups, member = _membership(spec)
    phi = contrib[:, :-1]
    G = phi @ member
    q, raw, base, total = additive_points(model, contrib, G)
    # Rank on (share, φ, group order); a context group or a group worth 0.0 points is no reason.
    from leadml._kernels import top_groups

    order = top_groups(q, raw, G, n_positive, n_negative)
    rows, slots = np.nonzero(order >= 0)  # row-major: each row's reasons in rank order
    k = order[rows, slots]
    # The group's most influential feature for this row speaks for it.
    from leadml._kernels import speaking_features

    names = list(spec.names)
    members, first = _members(member)
    feature = speaking_features(phi, rows, k, members, first)
    values = model.features(X)
    tenths = q[rows, k]
    coded = {
        "group": (k.astype(np.int32), list(groups)),
        "text": _sentences(spec, values, names, rows, feature),
        "direction": ((tenths > 0).astype(np.int32), ["-", "+"]),
        "evidence": _evidence(model, values, names, rows, feature),
    }
    bounds = np.searchsorted(rows, np.arange(n + 1)).astype(np.int64)
    shown = np.bincount(rows, weights=tenths, minlength=n)[:n]
    other = (total - shown) / 10.0
    return Reasons(
        bounds,
        None,  # the text fields are built from ``coded`` only when read
        None,
        None,
        np.round(tenths / 1000.0, 4) + 0.0,  # + 0.0 turns -0.0 into 0.0
        None,
        base,
        other + 0.0,
        coded,
    )


def reasons(
    model: StageModel,
    X: pd.DataFrame,
    contrib: np.ndarray,
    *,
    n_positive: int = 4,
    n_negative: int = 2,
) -> list[list[dict[str, Any]]]:
    """Ranked reasons per row: lists of ``{group, text, direction, effect, evidence}``.

    Parameters
    ----------
    model : StageModel
        Gives the feature spec (groups, sentences) and the calibration.
    X : DataFrame
        The rows explained (features frame); values feed the sentences.
    contrib : ndarray
        Their contributions, from :func:`contributions`.
    n_positive, n_negative : int
        How many reasons of each sign to keep at most.

    Returns
    -------
    list of list of dict
        One list per row: positive reasons first (most points first), then negative ones
        (most negative first). ``direction`` is ``"+"`` or ``"-"``, ``effect`` the reason's
        additive points as a probability (0.041 = +4.1 points; module docs, Points),
        ``evidence`` how past leads like this one converted (:mod:`leadml.model.evidence`;
        ``""`` when the training rows were too few).
        :func:`ranked_reasons` also gives each row's base score and the points of the
        reasons not listed.
    """
    return ranked_reasons(model, X, contrib, n_positive=n_positive, n_negative=n_negative).lists


def _sentences(
    spec: FeatureSpec,
    values: pd.DataFrame,
    names: list[str],
    rows: np.ndarray,
    feature: np.ndarray,
) -> tuple[np.ndarray, list[str]]:
    """``spec.describe(feature, value)`` for each (row, feature) pair, as ``(codes, sentences)``
    (row ``i``'s sentence is ``sentences[codes[i]]``), each distinct sentence rendered once
    (:func:`_render_codes`; per distinct value when that does not apply)."""
    from leadml.model.evidence import floats

    out = np.zeros(len(rows), dtype=np.int32)
    sentences: list[str] = []
    for f in np.unique(feature):
        at = np.flatnonzero(feature == f)
        name = names[f]
        picked = values[name].array.take(rows[at])  # an array: a Series costs far more
        if spec.kinds.get(name) != "categorical":
            v = floats(picked)
            codes = _render_codes(spec.templates[name], v)
            if codes is None:  # per distinct value, by its bits: -0.0 prints apart from 0.0
                codes = v.view(np.int64)
            _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
            out[at] = len(sentences) + inverse.ravel()
            if _template_fields(_items(spec.templates[name])) is None:
                sentences += [spec.describe(name, float(v[i])) for i in first]
            else:
                sentences += _describe_numbers(spec, name, v[first])
            continue
        codes, uniques = pd.factorize(picked, use_na_sentinel=True)
        texts = [spec.describe(name, plain(u)) for u in uniques]
        missing = spec.describe(name, float("nan")) if (codes < 0).any() else ""
        out[at] = len(sentences) + np.where(codes < 0, len(texts), codes)
        sentences += [*texts, missing]
    return out, sentences


def _render_codes(templates: Any, v: np.ndarray) -> np.ndarray | None:
    """Integer codes per value such that equal codes render the same sentence under
    :meth:`FeatureSpec.describe`'s numeric rule, or ``None`` when a template reads something
    this does not model (then each distinct value is rendered).

    describe() picks ``missing`` for NaN, ``zero`` at rounded count ``n = 0``, ``negative``
    below 0, else ``value``, and fills ``{n}``, ``{s}`` (from ``n``), ``{value:SPEC}``,
    ``{abs:SPEC}`` and ``{num}``. The code combines the template's choice and ``n`` with each
    other field's own rendering (``format`` per row: far cheaper than a sentence per row, and
    exact, since it is the very call describe makes). A count like "Last visited the website 3
    days ago" thus renders once per day count, not once per fractional day."""
    fields = _template_fields(_items(templates))
    if fields is None:
        return None
    n = np.floor(np.abs(v) + 0.5)
    key = np.where(np.isnan(v), -1.0, n)
    key = np.where(v < 0, -2.0 - key, key)  # -0.3 may take the "negative" text, 0.3 not
    code = pd.factorize(key)[0].astype(np.int64)
    # Each distinct value (by its bits: -0.0 prints apart from 0.0) is formatted once.
    bits, inverse = np.unique(
        np.ascontiguousarray(v, dtype=np.float64).view(np.int64), return_inverse=True
    )
    distinct = bits.view(np.float64)
    for part_name, fmt in sorted(fields):
        if part_name in ("n", "s"):
            continue
        x = np.abs(distinct) if part_name == "abs" else distinct
        part = _format_codes(x, "num" if part_name == "num" else fmt)[inverse]
        code = pd.factorize(code * (int(part.max(initial=0)) + 1) + part)[0].astype(np.int64)
    return code


def _items(templates: Any) -> tuple[tuple[str, str], ...] | None:
    if not isinstance(templates, Mapping):
        return None
    return tuple(sorted((str(k), str(t)) for k, t in templates.items()))


@functools.lru_cache(maxsize=1024)
def _template_fields(
    items: tuple[tuple[str, str], ...] | None,
) -> tuple[tuple[str, str], ...] | None:
    """The ``(field, format spec)`` pairs a feature's templates read, sorted; None when one
    reads anything but ``n``, ``s``, ``value``, ``abs`` and ``num`` (or has a conversion)."""
    import string

    if items is None:
        return None
    fields: set[tuple[str, str]] = set()
    for _, text in items:
        for _, part_name, fmt, conv in string.Formatter().parse(text):
            if part_name is None:
                continue
            if conv or part_name not in ("n", "s", "value", "abs", "num"):
                return None
            fields.add((part_name, fmt or ""))
    return tuple(sorted(fields))


#: Sentences of numeric features by what they print, per (feature, templates): a nightly job
#: explains chunk after chunk with the same few thousand prints.
_PRINTED: dict[tuple[str, Any], dict[tuple[Any, ...], str]] = {}
_PRINTED_MAX = 20_000  # prints kept per feature (a job sees a few thousand)


def _describe_numbers(spec: FeatureSpec, name: str, v: np.ndarray) -> list[str]:
    """``[spec.describe(name, x) for x in v]`` for a numeric feature whose templates
    :func:`_template_fields` reads: a sentence is fixed by the template describe picks
    (missing, ``n``, the sign) and the fields it prints, so each is rendered once per job."""
    from leadml.data.features import _number

    items = _items(spec.templates[name])
    fields = _template_fields(items)
    if fields is None:
        raise ValueError(f"{name}: its templates read more than n, s, value, abs and num")
    cache = _PRINTED.setdefault((name, items), {})
    if len(cache) > _PRINTED_MAX:
        cache.clear()
    x = v.tolist()
    parts = [
        [
            _number(a) if f == "num" else format(a, fmt)
            for a in (np.abs(v).tolist() if f == "abs" else x)
        ]
        for f, fmt in fields
        if f not in ("n", "s")
    ]
    n = np.floor(np.abs(v) + 0.5).tolist()
    keys = zip(np.isnan(v).tolist(), n, (v < 0).tolist(), *parts, strict=True)
    out: list[str] = []
    for key, a in zip(keys, x, strict=True):
        text = cache.get(key)
        if text is None:
            text = cache[key] = spec.describe(name, a)
        out.append(text)
    return out


_FIXED = re.compile(r"^\.(\d{1,2})f$")
#: 10**k for k = 0..22, each exact (``float(int)`` rounds correctly; ``pow`` need not).
_POW10 = np.array([float(10**k) for k in range(23)])


def _format_codes(x: np.ndarray, fmt: str) -> np.ndarray:
    """Integer codes of ``x`` such that equal codes format the same: ``_number(v)`` for
    ``fmt="num"``, else ``format(v, fmt)``.

    Python formats a float from its exact binary value, correctly rounded half to even. Where
    that rounding is settled by arithmetic here (``num``: integers, ``,.0f`` beyond 1000 and 3
    significant digits below; ``.Nf``), a value's code is the rounded number it prints; a value
    within a few ulps of a rounding tie, or out of those ranges, is formatted itself. Codes
    stand for distinct prints, not always one per print (harmless: they pick what is rendered)."""
    from leadml.data.features import _number

    x = np.ascontiguousarray(x, dtype=np.float64)
    kind = np.zeros(len(x), dtype=np.int64)  # 0: formatted as is
    key = np.zeros(len(x), dtype=np.float64)
    a = np.abs(x)
    finite = np.isfinite(x)
    with np.errstate(all="ignore"):
        if fmt == "num":
            whole = finite & (x == np.trunc(x)) & (a < 1e15)
            kind[whole], key[whole] = 1, x[whole] + 0.0  # f"{int(v):,}": -0.0 prints as 0
            big = finite & ~whole & (a >= 1000)
            kind[big], key[big] = 2, np.rint(x[big])  # f"{v:,.0f}"
            small = finite & ~whole & ~big & (a > 0)  # f"{v:.3g}"
            e = np.floor(np.log10(np.where(small, a, 1.0)))
            scale = 2 - e  # in 2..326
            ok = small & (scale >= 0) & (scale <= 22)
            m = a * _POW10[np.where(ok, scale, 0).astype(np.int64)]
            ok &= (m >= 100) & (m < 1000) & _clear_of_ties(m)
            kind[ok] = np.where(x[ok] < 0, 4, 3)
            key[ok] = np.rint(m[ok]) + 1000 * (e[ok] + 400)  # the 3 digits and the exponent
        elif (fixed := _FIXED.match(fmt)) is not None and int(fixed[1]) <= 15:
            y = x * _POW10[int(fixed[1])]
            ok = finite & (np.abs(y) < 2.0**52) & _clear_of_ties(np.abs(y))
            kind[ok] = np.where(np.signbit(x[ok]), 6, 5)  # "-0.0" is not "0.0"
            key[ok] = np.abs(np.rint(y[ok]))
    rest = np.flatnonzero(kind == 0)
    if len(rest):
        text = [_number(v) if fmt == "num" else format(v, fmt) for v in x[rest].tolist()]
        key[rest] = pd.factorize(np.asarray(text, dtype=object))[0]
    codes = np.empty(len(x), dtype=np.int64)
    start = 0
    for k in np.unique(kind):  # (kind, key) pairs numbered kind by kind
        at = np.flatnonzero(kind == k)
        found, uniques = pd.factorize(key[at])
        codes[at] = start + found
        start += len(uniques)
    return codes


def _clear_of_ties(y: np.ndarray) -> np.ndarray:
    """Where ``y`` (non-negative, a product with a rounding error of at most half an ulp) is far
    enough from a half-integer that ``rint`` of it rounds the exact product the same way."""
    frac = y - np.floor(y)
    return np.abs(frac - 0.5) > 4 * np.spacing(np.maximum(y, 1.0))


#: What the probability is about, in the evidence sentences, per transition.
_OUTCOMES = {"prospect": "became prospects", "opportunity": "became opportunities"}


def _evidence(
    model: StageModel, values: pd.DataFrame, names: list[str], rows: np.ndarray, feature: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """The evidence sentence (:mod:`leadml.model.evidence`) of each (row, speaking feature), as
    ``(codes, sentences)`` like :func:`_sentences`."""
    from leadml.model.evidence import evidence_codes

    stats = model.metadata.get("evidence")
    out = np.zeros(len(rows), dtype=np.int32)
    sentences = [""]
    if not stats:
        return out, sentences
    outcome = _OUTCOMES.get(model.transition, "converted")
    for f in np.unique(feature):
        at = np.flatnonzero(feature == f)
        picked = values[names[f]].array.take(rows[at])
        codes, texts = evidence_codes(stats, names[f], picked, outcome)
        out[at] = len(sentences) + codes
        sentences += texts
    return out, sentences


def plain(v: Any) -> Any:
    """A numpy scalar as the Python number it holds (messages and templates print it plainly)."""
    if isinstance(v, np.floating):
        return float(v)
    if isinstance(v, np.integer):
        return int(v)
    return v


#: ``+ Viewed the pricing page 3 times in the last 7 days (+4.1 pts)``, parsed back.
_SENTENCE = re.compile(r"^\s*([+-])\s+(.*?)(?:\s+\(([+-]?\d+(?:\.\d+)?) pts\))?\s*$")


def reason_sentence(r: Mapping[str, Any]) -> str:
    """One reason as the sentence the CSV files and the terminal show: sign, text, points.

    Examples
    --------
    >>> reason_sentence({"direction": "+", "text": "Visited the pricing page", "effect": 0.041})
    '+ Visited the pricing page (+4.1 pts)'
    >>> parse_reason_sentence('+ Visited the pricing page (+4.1 pts)')["effect"]
    0.041
    """
    effect = float(r["effect"])
    size = "" if math.isnan(effect) else f" ({100 * effect:+.1f} pts)"
    return f"{r['direction']} {r['text']}{size}"


def reason_cell(r: Mapping[str, Any]) -> str:
    """One reason for a spreadsheet (the CRM export): :func:`reason_sentence` without its leading
    sign, which a spreadsheet reads as a formula; the points keep the direction.

    >>> reason_cell({"direction": "-", "text": "Country: DE", "effect": -0.012})
    'Country: DE (-1.2 pts)'
    """
    effect = float(r["effect"])
    if math.isnan(effect):
        return f"{r['text']} ({'raises' if r['direction'] == '+' else 'lowers'} the score)"
    return f"{r['text']} ({100 * effect:+.1f} pts)"


def parse_reason_sentence(text: Any) -> dict[str, Any] | None:
    """A reason dict (without its group) from :func:`reason_sentence`'s text, or None."""
    m = _SENTENCE.match(text) if isinstance(text, str) else None
    if m is None:
        return None
    effect = round(float(m[3]) / 100, 6) if m[3] else float("nan")
    return {"group": "", "text": m[2], "direction": m[1], "effect": effect}


def explain_reasons(
    model: StageModel,
    X: pd.DataFrame,
    *,
    engine: str = "leadml",
    n_positive: int = 4,
    n_negative: int = 2,
    n_threads: int | None = None,
) -> list[list[dict[str, Any]]]:
    """:func:`contributions` then :func:`reasons`, for a features frame."""
    return explain_ranked(
        model, X, engine=engine, n_positive=n_positive, n_negative=n_negative, n_threads=n_threads
    ).lists


def explain_ranked(
    model: StageModel,
    X: pd.DataFrame,
    *,
    engine: str = "leadml",
    n_positive: int = 4,
    n_negative: int = 2,
    n_threads: int | None = None,
) -> Reasons:
    """:func:`contributions` then :func:`ranked_reasons`, for a features frame."""
    from leadml._timing import stage

    with stage("explain"):
        contrib = contributions(model, X, engine, n_threads=n_threads)
    with stage("reasons"):
        return ranked_reasons(model, X, contrib, n_positive=n_positive, n_negative=n_negative)


def global_importance(model: StageModel, X: pd.DataFrame, engine: str = "leadml") -> pd.DataFrame:
    """How much each reason group moves this model's scores, over the rows of ``X``.

    Returns
    -------
    DataFrame
        Indexed by group (largest first), columns ``label`` (for people), ``mean_abs_shap``
        (mean ``|φ_g|``, log-odds of the raw margin), ``share`` (of the summed ``mean_abs_shap``)
        and ``mean_abs_effect`` (mean ``|effect_g|``, probability).
    """
    contrib = contributions(model, X, engine)
    groups, member = _membership(model.spec)
    G = contrib[:, :-1] @ member
    effect = reason_effects(model.calibration, contrib.sum(axis=1), G)
    mean_abs = np.abs(G).mean(axis=0) if len(G) else np.zeros(len(groups))
    total = float(mean_abs.sum())
    table = pd.DataFrame(
        {
            "label": [model.spec.group_label(g) for g in groups],
            "mean_abs_shap": mean_abs,
            "share": mean_abs / total if total > 0 else np.zeros(len(groups)),
            "mean_abs_effect": np.abs(effect).mean(axis=0) if len(G) else np.zeros(len(groups)),
        },
        index=pd.Index(groups, name="group"),
    )
    return table.sort_values("mean_abs_shap", ascending=False, kind="stable")
