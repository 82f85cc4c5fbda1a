"""Bundles: plain files, checksummed, identical scores after a round trip, never unpickled."""

from __future__ import annotations

import json

import numpy as np
import pytest

from leadml.data.trainset import build_scoring_set
from leadml.model.bundle import BundleError, load_bundle, save_bundle


def test_round_trip_scores_identically(trained, crm_medium, tmp_path) -> None:
    model = trained["prospect"].model
    path = save_bundle(model, tmp_path / "b")
    assert sorted(p.name for p in path.iterdir()) == ["bundle.json", "checksums.json", "model.txt"]
    loaded = load_bundle(path)
    X = build_scoring_set(crm_medium, "2025-04-01", spec=loaded.spec)
    assert np.array_equal(model.probability(X), loaded.probability(X))
    assert loaded.tier_thresholds == model.tier_thresholds
    assert loaded.spec == model.spec
    meta = json.loads((path / "bundle.json").read_text())
    for key in (
        "calibration",
        "tier_thresholds",
        "spec",
        "config",
        "metrics",
        "versions",
        "training_window",
    ):
        assert key in meta


@pytest.mark.slow
def test_same_seed_gives_identical_bundle_files(crm_medium, trained, fast_config, tmp_path):
    from leadml.model.training import train

    again = train(crm_medium, "prospect", fast_config).model  # as the fixture
    a = save_bundle(trained["prospect"].model, tmp_path / "a")
    b = save_bundle(again, tmp_path / "b")
    for name in ("model.txt", "bundle.json", "checksums.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_tampered_missing_and_foreign_bundles_are_refused(trained, tmp_path) -> None:
    path = save_bundle(trained["prospect"].model, tmp_path / "b")
    with pytest.raises(FileExistsError, match="already exists"):
        save_bundle(trained["prospect"].model, path)
    text = (path / "model.txt").read_text()
    (path / "model.txt").write_text(text.replace("shrinkage=", "shrinkage=1", 1))
    with pytest.raises(BundleError, match="checksum mismatch for model.txt"):
        load_bundle(path)
    (path / "bundle.json").unlink()
    with pytest.raises(BundleError, match="missing bundle.json"):
        load_bundle(path)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")


def test_incompatible_format_is_refused(trained, tmp_path) -> None:
    import hashlib

    path = save_bundle(trained["prospect"].model, tmp_path / "b")
    meta = json.loads((path / "bundle.json").read_text())
    meta["format"] = 99
    (path / "bundle.json").write_text(json.dumps(meta))
    sums = json.loads((path / "checksums.json").read_text())
    sums["bundle.json"] = hashlib.sha256((path / "bundle.json").read_bytes()).hexdigest()
    (path / "checksums.json").write_text(json.dumps(sums))
    with pytest.raises(BundleError, match="format 99"):
        load_bundle(path)
