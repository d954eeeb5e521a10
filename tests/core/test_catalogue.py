"""The product catalogue: the shipped file is valid and complete; bad files name the problem."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from core.catalogue import Catalogue, CatalogueError, load_catalogue
from core.settings import PACKAGE_DIR

SANTANDER_CODES = {
    "ind_ahor_fin_ult1", "ind_aval_fin_ult1", "ind_cco_fin_ult1", "ind_cder_fin_ult1",
    "ind_cno_fin_ult1", "ind_ctju_fin_ult1", "ind_ctma_fin_ult1", "ind_ctop_fin_ult1",
    "ind_ctpp_fin_ult1", "ind_deco_fin_ult1", "ind_deme_fin_ult1", "ind_dela_fin_ult1",
    "ind_ecue_fin_ult1", "ind_fond_fin_ult1", "ind_hip_fin_ult1", "ind_plan_fin_ult1",
    "ind_pres_fin_ult1", "ind_reca_fin_ult1", "ind_tjcr_fin_ult1", "ind_valo_fin_ult1",
    "ind_viv_fin_ult1", "ind_nomina_ult1", "ind_nom_pens_ult1", "ind_recibo_ult1",
}  # fmt: skip


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "catalogue.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _raw() -> dict:
    return yaml.safe_load((PACKAGE_DIR / "catalogue.yaml").read_text())


def test_shipped_catalogue_covers_all_santander_products(catalogue: Catalogue) -> None:
    assert set(catalogue.by_santander_code) == SANTANDER_CODES
    assert len(catalogue.holdable) == 24
    assert catalogue.version
    retention = [p for p in catalogue.products if p.retention]
    assert len(retention) >= 2
    assert all(p.risk_level == 1 for p in retention)
    assert {p.risk_level for p in catalogue.products} == {1, 2, 3, 4, 5}
    assert any(not p.active for p in catalogue.products)


def test_junior_and_pension_have_age_limits(catalogue: Catalogue) -> None:
    assert catalogue.get("junior_account").eligibility.max_age == 17
    assert catalogue.get("pension_payroll").eligibility.min_age == 55


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("risk_level", 6, "products[13] (funds).risk_level"),
        ("risk_level", "high", "products[13] (funds).risk_level"),
        ("business_value", -1, "products[13] (funds).business_value"),
        ("category", "crypto", "products[13] (funds).category"),
        ("status", "paused", "products[13] (funds).status"),
        ("colour", "red", "products[13] (funds).colour"),
    ],
)
def test_invalid_field_is_named(tmp_path: Path, field: str, value: object, expected: str) -> None:
    raw = _raw()
    assert raw["products"][13]["id"] == "funds"
    raw["products"][13][field] = value
    path = _write(tmp_path, raw)
    with pytest.raises(CatalogueError) as err:
        load_catalogue(path)
    assert str(path) in str(err.value)
    assert expected in str(err.value)


def test_bad_eligibility_is_named(tmp_path: Path) -> None:
    raw = _raw()
    raw["products"][14]["eligibility"] = {"min_age": 70, "max_age": 18}
    with pytest.raises(CatalogueError, match=r"products\[14\] \(mortgage\).eligibility"):
        load_catalogue(_write(tmp_path, raw))


def test_duplicate_id_is_refused(tmp_path: Path) -> None:
    raw = _raw()
    raw["products"][1]["id"] = raw["products"][0]["id"]
    with pytest.raises(CatalogueError, match="duplicate product id"):
        load_catalogue(_write(tmp_path, raw))


def test_missing_version_is_named(tmp_path: Path) -> None:
    raw = _raw()
    del raw["version"]
    with pytest.raises(CatalogueError, match="version: Field required"):
        load_catalogue(_write(tmp_path, raw))


def test_broken_yaml_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text('version: "1"\nproducts:\n  - id: savings\n    name: [unclosed\n')
    with pytest.raises(CatalogueError) as err:
        load_catalogue(path)
    message = str(err.value)
    assert message.startswith(f"{path}:")
    line, column = message.split(":")[1:3]
    assert int(line) >= 4 and int(column) >= 1


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="cannot read catalogue"):
        load_catalogue(tmp_path / "absent.yaml")
