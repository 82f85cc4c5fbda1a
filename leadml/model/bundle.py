"""The trained artifact as plain files: nothing in a bundle is ever unpickled.

A bundle directory holds:

- ``model.txt``: the LightGBM booster in its own text format (category levels included);
- ``bundle.json``: the linear base margin's coefficients (if any), calibration, tier thresholds and conversion rates, the feature spec, config,
  metrics, library versions and the training data window;
- ``checksums.json``: SHA-256 of both files. Loading verifies them and the format version.

Everything is written in a deterministic order, so the same training run gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leadml import __version__
from leadml._io import exists_error
from leadml._json import jsonable
from leadml.data.features import FeatureSpec
from leadml.model.linear import LinearBase
from leadml.model.stage import Calibration, StageModel

__all__ = [
    "BUNDLE_FORMAT",
    "BundleError",
    "CheckedBundle",
    "check_bundle",
    "load_bundle",
    "save_bundle",
]

#: 2: ``bundle.json`` may hold a linear base margin (``linear``); format 1 never does.
BUNDLE_FORMAT = 2
READABLE_FORMATS = (1, 2)
_FILES = ("model.txt", "bundle.json")


class BundleError(ValueError):
    """A model bundle is missing, corrupted or from an incompatible version."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions() -> dict[str, str]:
    import lightgbm
    import pandas
    import sklearn

    return {
        "leadml": __version__,
        "lightgbm": lightgbm.__version__,
        "pandas": pandas.__version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
    }


_TREE_ARRAYS = {  # key: expected length as a function of num_leaves (n)
    "split_feature": lambda n: n - 1,
    "threshold": lambda n: n - 1,
    "decision_type": lambda n: n - 1,
    "left_child": lambda n: n - 1,
    "right_child": lambda n: n - 1,
    "leaf_value": lambda n: n,
}


def check_model_text(text: str) -> list[str]:
    """Structural problems of a LightGBM model text, checked in Python first.

    LightGBM parses trees in parallel threads, and some malformed texts (a wrong ``tree_sizes``,
    a non-number in an array, a child index out of range) abort the whole process instead of
    raising. This checks what those paths read: the header, each tree block's size against
    ``tree_sizes``, the array lengths, that they are numbers, and feature and child indices in
    range. An empty list means LightGBM may read it (its own errors are then caught as usual).
    """
    head, sep, rest = text.partition("\n\n")
    header = dict(line.split("=", 1) for line in head.splitlines()[1:] if "=" in line)
    if not text.startswith("tree\n") or not sep:
        return ["it does not start with LightGBM's 'tree' header"]
    problems = [f"no {k} in the header" for k in ("version", "max_feature_idx") if k not in header]
    try:
        n_features = int(header.get("max_feature_idx", "-2")) + 1
        sizes = [int(v) for v in header.get("tree_sizes", "").split()]
    except ValueError:
        return ["a header number is not a number"]
    body, _, _ = rest.partition("end of trees")
    starts = [m.start() for m in re.finditer(r"^Tree=\d+$", body, flags=re.M)]
    if len(starts) != len(sizes):
        problems.append(f"{len(starts)} trees but {len(sizes)} tree_sizes")
        return problems
    for k, (a, size) in enumerate(zip(starts, sizes, strict=True)):
        block = body[a : a + size]
        end = starts[k + 1] if k + 1 < len(starts) else len(body)
        if body[a + size : end].strip():
            problems.append(f"tree {k}: tree_sizes says {size} bytes, the block differs")
            continue
        kv = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        try:
            n = int(kv.get("num_leaves", ""))
            arrays = {key: np.array(kv.get(key, "").split(), dtype=float) for key in _TREE_ARRAYS}
        except ValueError:
            problems.append(f"tree {k}: a value is not a number")
            continue
        wrong = [key for key, want in _TREE_ARRAYS.items() if len(arrays[key]) != want(n)]
        if n < 1 or wrong:
            problems.append(f"tree {k}: wrong length of {', '.join(wrong) or 'num_leaves'}")
            continue
        feats, kids = arrays["split_feature"], np.r_[arrays["left_child"], arrays["right_child"]]
        if n > 1 and (
            feats.min() < 0
            or feats.max() >= n_features
            or kids.min() < -n
            or kids.max() >= n - 1
            or not np.isfinite(arrays["leaf_value"]).all()
        ):
            problems.append(f"tree {k}: a feature, child index or leaf value out of range")
    return problems


def save_bundle(model: StageModel, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``model`` as a bundle directory (atomically: a temp dir renamed into place)."""
    target = Path(path)
    if target.exists() and not overwrite:
        raise exists_error(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        (tmp / "model.txt").write_text(model.booster.model_to_string(), encoding="utf-8")
        meta = {
            "format": BUNDLE_FORMAT,
            "transition": model.transition,
            "label": model.label,
            "calibration": model.calibration.to_dict(),
            "tier_thresholds": list(model.tier_thresholds),
            "spec": model.spec.to_dict(),
            "linear": None if model.linear is None else model.linear.to_dict(),
            "versions": _versions(),
            **model.metadata,
        }
        (tmp / "bundle.json").write_text(
            json.dumps(jsonable(meta, keep_infinity=True), indent=2, sort_keys=True),
            encoding="utf-8",
        )
        sums = {name: _sha256(tmp / name) for name in _FILES}
        (tmp / "checksums.json").write_text(
            json.dumps(sums, indent=2, sort_keys=True), encoding="utf-8"
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


@dataclass(frozen=True)
class CheckedBundle:
    """A bundle directory whose files passed every check but LightGBM's own parse
    (:func:`check_bundle`): what a job knows of a model before it imports LightGBM."""

    path: Path
    meta: dict[str, Any]
    text: str

    @property
    def transition(self) -> str:
        return str(self.meta["transition"])

    def load(self) -> StageModel:
        """The stage model (LightGBM parses ``model.txt`` here)."""
        import lightgbm as lgb

        try:
            booster = lgb.Booster(model_str=self.text)
        except lgb.basic.LightGBMError as e:
            raise BundleError(
                f"model bundle {str(self.path)!r}: LightGBM cannot read model.txt ({e}); retrain "
                "or restore it"
            ) from None
        meta = dict(self.meta)
        spec = FeatureSpec.from_dict(meta.pop("spec"))
        calibration = Calibration.from_dict(meta.pop("calibration"))
        thresholds = tuple(float(t) for t in meta.pop("tier_thresholds"))
        transition, label = meta.pop("transition"), meta.pop("label")
        linear = meta.pop("linear", None)
        return StageModel(
            booster=booster,
            calibration=calibration,
            tier_thresholds=(thresholds[0], thresholds[1], thresholds[2]),
            spec=spec,
            transition=transition,
            label=label,
            metadata=meta,
            linear=None if linear is None else LinearBase.from_dict(linear),
        )


def check_bundle(path: str | Path) -> CheckedBundle:
    """Verify a bundle directory written by :func:`save_bundle` without importing LightGBM:
    its files, checksums, format and the structure of ``model.txt``."""
    d = Path(path)
    if not d.is_dir():
        raise BundleError(f"model bundle {str(d)!r} does not exist or is not a directory")
    missing = [n for n in (*_FILES, "checksums.json") if not (d / n).is_file()]
    if missing:
        raise BundleError(f"model bundle {str(d)!r} is missing {', '.join(missing)}")
    sums = json.loads((d / "checksums.json").read_text(encoding="utf-8"))
    bad = [n for n in _FILES if sums.get(n) != _sha256(d / n)]
    if bad:
        raise BundleError(
            f"model bundle {str(d)!r}: checksum mismatch for {', '.join(bad)}; the files were "
            "changed after training. Retrain or restore the bundle."
        )
    meta = json.loads((d / "bundle.json").read_text(encoding="utf-8"))
    if meta.get("format") not in READABLE_FORMATS:
        raise BundleError(
            f"model bundle {str(d)!r} has format {meta.get('format')!r}; this leadml reads "
            f"formats {', '.join(map(str, READABLE_FORMATS))}. Retrain with this version."
        )
    text = (d / "model.txt").read_text(encoding="utf-8")
    bad_model = check_model_text(text)
    if bad_model:
        raise BundleError(
            f"model bundle {str(d)!r}: model.txt is not a valid LightGBM model "
            f"({'; '.join(bad_model[:3])}); retrain, or restore the bundle from its source"
        )
    return CheckedBundle(d, meta, text)


def load_bundle(path: str | Path) -> StageModel:
    """Load and verify a bundle directory written by :func:`save_bundle`."""
    return check_bundle(path).load()
