"""Churn batch scoring on Apache Spark (local mode): the same partition function as the
local engine, one Spark task per partition, and the same retention list."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from core.catalogue import Catalogue
from core.engines import PartitionJobError, SparkEngine
from core.scoring.churn import LinearChurnModel
from core.settings import Settings
from core.tables import Tables, contract_products, read_partition, write_tables
from registry.client import Registry
from tests.support.small_banks import AS_OF, PARTITIONS
from tests.support.spark import pickle_by_value
from training.batch_scoring import retention_list_partitions


@pytest.fixture
def spark(spark_session: Any) -> SparkEngine:
    pickle_by_value(sys.modules[__name__])
    return SparkEngine(session=spark_session)


def _write(scoring_bank: Tables, catalogue: Catalogue, folder: Path) -> Path:
    ids = [p.id for p in catalogue.holdable]
    write_tables(scoring_bank, folder, ids, contract_products(catalogue), partitions=PARTITIONS)
    return folder


def _read_failing_partition_1(data_dir: Path, k: int) -> Tables:
    if k == 1:
        raise OSError(f"{data_dir.name}/behaviour/part-00001.parquet: truncated file")
    return read_partition(data_dir, k)


def test_spark_scores_equal_the_local_engine_and_a_failure_fails_the_job(
    scoring_bank: Tables,
    catalogue: Catalogue,
    scoring_model: LinearChurnModel,
    tmp_path: Path,
    spark: SparkEngine,
) -> None:
    settings = Settings(home=tmp_path)
    data = _write(scoring_bank, catalogue, tmp_path / "data")
    read = functools.partial(read_partition, data)
    local = retention_list_partitions(scoring_model, PARTITIONS, read, catalogue, settings, AS_OF)
    on_spark = retention_list_partitions(
        scoring_model, PARTITIONS, read, catalogue, settings, AS_OF, spark=spark
    )
    pd.testing.assert_frame_equal(on_spark, local)  # same rows, same order, same values
    with pytest.raises(PartitionJobError, match=r"partition 1: OSError: .*part-00001.*truncated"):
        retention_list_partitions(
            scoring_model,
            PARTITIONS,
            functools.partial(_read_failing_partition_1, data),
            catalogue,
            settings,
            AS_OF,
            spark=spark,
        )


@pytest.mark.slow  # an MLflow registry and a model load beside Spark: ~20 s on the loaded machine
def test_the_cli_scores_on_spark(
    scoring_bank: Tables,
    catalogue: Catalogue,
    scoring_model: LinearChurnModel,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    spark: SparkEngine,
) -> None:
    from cli.score import app as score_app

    app = typer.Typer()
    app.add_typer(score_app, name="score")
    home = tmp_path / "home"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("NBO_HOME", str(home))
    monkeypatch.setenv("NBO_MLFLOW_TRACKING_URI", uri)
    settings = Settings(home=home, mlflow_tracking_uri=uri)
    _write(scoring_bank, catalogue, settings.data_dir)
    registry = Registry(settings)
    version = registry.log_and_register(scoring_model, settings.churn_model_name)
    registry.promote(settings.churn_model_name, version.version)
    out = tmp_path / "retention.parquet"
    args = ["score", "churn", "--as-of", f"{AS_OF:%Y-%m-%d}", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--engine", "spark"])
    assert result.exit_code == 0, result.output
    read = functools.partial(read_partition, settings.data_dir)
    expected = retention_list_partitions(
        scoring_model, PARTITIONS, read, catalogue, settings, AS_OF
    )
    pd.testing.assert_frame_equal(pd.read_parquet(out), expected, check_dtype=False)


def test_the_cli_checks_the_engine_before_anything_else(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.score import app as score_app

    app = typer.Typer()
    app.add_typer(score_app, name="score")
    monkeypatch.setenv("NBO_HOME", str(tmp_path / "home"))
    args = ["score", "churn", "--as-of", f"{AS_OF:%Y-%m-%d}", "--out", str(tmp_path / "l.csv")]
    local_only = CliRunner().invoke(app, [*args, "--spark-master", "local[2]"])
    assert local_only.exit_code == 2 and "--spark-master needs --engine spark" in local_only.output
    monkeypatch.setitem(sys.modules, "pyspark", None)  # import pyspark -> ImportError
    missing = CliRunner().invoke(app, [*args, "--engine", "spark"])
    assert missing.exit_code == 2 and "pip install 'nbo[spark]'" in missing.output
    assert "Traceback" not in missing.output
