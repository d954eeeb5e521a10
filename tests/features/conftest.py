"""Fixtures shared by the partitioned materialization tests and their Spark twins."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.catalogue import Catalogue
from core.tables import Tables, contract_products, write_tables
from features.synthetic import generate_bank
from tests.support.small_banks import AS_OF, PARTITIONS


@pytest.fixture(scope="module")
def partitioned_bank(catalogue: Catalogue) -> Tables:
    """900 customers x 6 months (seed 5)."""
    return generate_bank(900, 6, 5, catalogue, AS_OF)


@pytest.fixture(scope="module")
def partitioned_dir(
    partitioned_bank: Tables, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """``partitioned_bank`` written in :data:`PARTITIONS` partitions."""
    folder = tmp_path_factory.mktemp("partitioned")
    ids = [p.id for p in catalogue.holdable]
    write_tables(partitioned_bank, folder, ids, contract_products(catalogue), partitions=PARTITIONS)
    return folder
