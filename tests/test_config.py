from __future__ import annotations

import pytest

from leadml.config import ConfigError, LeadMLConfig, load_config


def test_defaults_match_design() -> None:
    cfg = LeadMLConfig()
    assert cfg.timeline.cadence_days == 7
    assert cfg.timeline.horizon_days == {"prospect": 30, "opportunity": 60}
    assert cfg.timeline.gap_days == 0
    assert cfg.features.windows_days == (7, 30, 90)


def test_yaml_and_toml_load_the_same(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("timeline:\n  horizon_days:\n    prospect: 45\n")
    (tmp_path / "c.toml").write_text("[timeline.horizon_days]\nprospect = 45\n")
    a, b = load_config(tmp_path / "c.yaml"), load_config(tmp_path / "c.toml")
    assert a == b
    assert a.timeline.horizon_days == {"prospect": 45, "opportunity": 60}


def test_unknown_keys_are_rejected_with_their_path(tmp_path) -> None:
    (tmp_path / "c.yaml").write_text("model:\n  num_leafs: 15\n")
    with pytest.raises(ConfigError, match=r"model\.num_leafs: Extra inputs are not permitted"):
        load_config(tmp_path / "c.yaml")


def test_invalid_values_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"timeline\.cadence_days"):
        LeadMLConfig().with_overrides({"timeline": {"cadence_days": 0}})


def test_example_config_in_repo_is_valid() -> None:
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "configs" / "example.yaml"
    cfg = load_config(example)
    assert cfg.dump() == LeadMLConfig().with_overrides(cfg.dump()).dump()


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
