"""A features frame as the float64 matrix LightGBM's C++ predictor reads.

Prediction (:meth:`leadml.model.stage.StageModel.margin`) and the TreeSHAP engine
(:mod:`leadml.explain._treeshap`) both start from this matrix, so LightGBM's conversion of a
pandas frame (a shallow copy, category codes through ``replace``, then ``to_numpy``) is not
done again inside ``Booster.predict``, and a frame of floats and categories (what
:func:`leadml.data.features.build_features` makes) is converted column by column, without
pandas' block machinery.

What LightGBM does with a frame, and so what this does:

- a category column becomes the codes of the categories the model was trained with
  (``pandas_categorical``), missing and unseen values NaN;
- any other column keeps its value; a frame of float32 only is read at float32 precision;
- the dense-row reader then reads ``|x| <= 1e-35`` (``kZeroThreshold``) as 0, and the
  decisions see values beyond ±1e300 (infinities too) as ±1e300: both are applied here, so
  the matrix gives the same predictions whoever reads it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["ZERO_THRESHOLD", "prediction_matrix"]

#: LightGBM's ``kZeroThreshold``: the float literal 1e-35f, compared after promotion to double.
ZERO_THRESHOLD = float(np.float32(1e-35))


def prediction_matrix(
    X: pd.DataFrame | np.ndarray, pandas_categorical: list[list[Any]] | None
) -> np.ndarray:
    """``X`` as the C-ordered float64 matrix LightGBM predicts from (module docs).
    ``pandas_categorical``: the booster's (``Booster.pandas_categorical``), None for a model
    trained without category columns.

    >>> X = pd.DataFrame({"n": [1.5, 1e-40, np.inf], "c": pd.Categorical(["b", None, "z"])})
    >>> prediction_matrix(X, [["a", "b"]]).tolist()
    [[1.5, 1.0], [0.0, nan], [1e+300, nan]]
    """
    if isinstance(X, pd.DataFrame):
        if X.shape[0] == 0:
            return np.empty((0, X.shape[1]))
        data = _floats_and_categories(X, pandas_categorical)
        if data is not None:
            return data
        data = _lightgbm_frame_to_numpy(X, pandas_categorical)
    else:
        data = np.asarray(X)
    if data.dtype not in (np.float32, np.float64):
        # LightGBM hands any other dtype to C++ as float32.
        data = data.astype(np.float32)
    data = np.array(data, dtype=np.float64, order="C", copy=True)
    if data.ndim == 2:
        data[np.abs(data) <= ZERO_THRESHOLD] = 0.0
        np.clip(data, -1e300, 1e300, out=data)  # NaN stays NaN
    return data


def _floats_and_categories(
    X: pd.DataFrame, pandas_categorical: list[list[Any]] | None
) -> np.ndarray | None:
    """:func:`prediction_matrix` of a frame of float64 and category columns, one column at a
    time; None for any other frame (LightGBM's own conversion then decides, errors included)."""
    dtypes = list(X.dtypes)
    is_cat = [isinstance(d, pd.CategoricalDtype) for d in dtypes]
    if not all(c or d == np.float64 for c, d in zip(is_cat, dtypes, strict=True)):
        return None
    if pandas_categorical is not None and sum(is_cat) != len(pandas_categorical):
        return None  # LightGBM raises its "categorical_feature do not match"
    trained = iter(pandas_categorical or [])
    out = np.empty(X.shape, order="F")  # columns written whole, then one C-order copy
    for j in range(X.shape[1]):
        col = X.iloc[:, j]
        if is_cat[j]:
            if pandas_categorical is not None:
                cats = next(trained)
                if list(col.cat.categories) != list(cats):
                    col = col.cat.set_categories(cats)
            codes = col.cat.codes.to_numpy()
            out[:, j] = codes
            out[codes < 0, j] = np.nan
            continue
        v = col.to_numpy()
        out[:, j] = v
        a = np.abs(v)
        odd = ((a <= ZERO_THRESHOLD) & (a > 0.0)) | (a > 1e300)
        if odd.any():
            out[odd, j] = np.clip(np.where(a[odd] <= ZERO_THRESHOLD, 0.0, v[odd]), -1e300, 1e300)
    return np.ascontiguousarray(out)


def _lightgbm_frame_to_numpy(
    X: pd.DataFrame, pandas_categorical: list[list[Any]] | None
) -> np.ndarray:
    try:
        from lightgbm.basic import _data_from_pandas
    except ImportError:  # pragma: no cover - private helper renamed in a future LightGBM
        return _frame_to_numpy(X, pandas_categorical)
    return np.asarray(
        _data_from_pandas(
            data=X,
            feature_name="auto",
            categorical_feature="auto",
            pandas_categorical=pandas_categorical,
        )[0]
    )


def _frame_to_numpy(X: pd.DataFrame, pandas_categorical: list[list[Any]] | None) -> np.ndarray:
    """What ``lightgbm.basic._data_from_pandas`` does, for LightGBM versions without it."""
    X = X.copy(deep=False)
    cat_cols = [c for c in X.columns if isinstance(X[c].dtype, pd.CategoricalDtype)]
    if pandas_categorical is not None:
        if len(cat_cols) != len(pandas_categorical):
            raise ValueError(
                f"X has {len(cat_cols)} category columns; the model was trained with "
                f"{len(pandas_categorical)}; convert the same columns to pandas 'category'"
            )
        for col, cats in zip(cat_cols, pandas_categorical, strict=True):
            if list(X[col].cat.categories) != list(cats):
                X[col] = X[col].cat.set_categories(cats)
    for col in cat_cols:
        codes = X[col].cat.codes.to_numpy(dtype=np.float64)
        codes[codes == -1] = np.nan
        X[col] = codes
    dtype = np.result_type(*[d.type for d in X.dtypes], np.float32)
    return X.to_numpy(dtype=dtype, na_value=np.nan)
