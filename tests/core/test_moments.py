"""The moments config: the shipped file loads, and every bad key is named."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.moments import DEFAULT_MOMENTS_PATH, MomentsError, load_moments


def _raw() -> dict:
    return yaml.safe_load(DEFAULT_MOMENTS_PATH.read_text(encoding="utf-8"))


def _write(tmp_path: Path, raw: object) -> Path:
    path = tmp_path / "moments.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_the_shipped_file_holds_the_issue_rules() -> None:
    config = load_moments()
    assert config.upgrade.min_growth == 0.20 and config.upgrade.months == 3
    assert config.tiers.tier_for(99_999.99) == "mass"
    assert config.tiers.tier_for(100_000.0) == "affluent"
    assert config.tiers.tier_for(999_999.99) == "affluent"
    assert config.tiers.tier_for(1_000_000.0) == "private"


@pytest.mark.parametrize(
    ("section", "key", "value", "named"),
    [
        ("tiers", "private_from", -1, "tiers.private_from"),
        ("tiers", "private_from", 50_000, "private_from must exceed affluent_from"),
        ("upgrade", "months", 4, "upgrade.months"),
        ("upgrade", "min_growth", "lots", "upgrade.min_growth"),
        ("lifecycle", "win_back_months", -2, "lifecycle.win_back_months"),
        ("lifecycle", "dormant_months_inactive", 2, "dormant_months_inactive must exceed"),
        ("lifecycle", "new_stage_months", 3, "lifecycle.new_stage_months"),  # unknown key
    ],
)
def test_a_bad_key_is_named(
    tmp_path: Path, section: str, key: str, value: object, named: str
) -> None:
    raw = _raw()
    raw[section][key] = value
    path = _write(tmp_path, raw)
    with pytest.raises(MomentsError) as caught:
        load_moments(path)
    assert str(caught.value).startswith(str(path))
    assert named in str(caught.value)


def test_a_missing_section_is_named(tmp_path: Path) -> None:
    raw = _raw()
    del raw["lifecycle"]
    with pytest.raises(MomentsError, match="lifecycle: Field required"):
        load_moments(_write(tmp_path, raw))


def test_bad_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "moments.yaml"
    path.write_text("version: '1'\ntiers: [\n", encoding="utf-8")
    with pytest.raises(MomentsError, match=r"moments.yaml:\d+:\d+: invalid YAML"):
        load_moments(path)


def test_not_a_mapping_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(MomentsError, match="expected a mapping"):
        load_moments(_write(tmp_path, [1, 2]))
    with pytest.raises(MomentsError, match="cannot read moments config"):
        load_moments(tmp_path / "absent.yaml")
