"""``--engine`` / ``--spark-master`` validation and the one-line error of a failed Spark job
(no JVM needed: the Spark runs are in tests/features and tests/training)."""

from __future__ import annotations

import sys

import pytest

from core.engines import (
    EngineChoice,
    EngineUnavailableError,
    PartitionTaskError,
    SparkEngine,
    _Guarded,
    _task_error,
    check_engine,
)


def test_the_local_engine_is_the_default_and_takes_no_master() -> None:
    assert check_engine("local") == EngineChoice("local", None)
    with pytest.raises(EngineUnavailableError, match="--spark-master needs --engine spark"):
        check_engine("local", "local[2]")
    with pytest.raises(EngineUnavailableError, match="'ray' is not one of local, spark"):
        check_engine("ray")


def test_without_pyspark_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(EngineUnavailableError, match=r"pip install 'nbo\[spark\]'"):
        check_engine("spark", "local[2]")


def test_a_task_error_names_its_partition() -> None:
    def fail(k: int) -> int:
        raise OSError(f"holdings/part-0000{k}.parquet is truncated")

    with pytest.raises(PartitionTaskError) as raised:
        _Guarded(fail)(3)
    assert str(raised.value) == "partition 3: OSError: holdings/part-00003.parquet is truncated"
    assert _Guarded(lambda k: k * 2)(4) == (4, 8)


def test_the_job_error_is_the_tagged_line_of_the_executor_traceback() -> None:
    executor = Exception(
        "An exception was thrown from the Python worker:\nTraceback (most recent call last):\n"
        '  File "worker.py", line 1, in main\n'
        "core.engines.PartitionTaskError: partition 2: ValueError: bad row 17\n"
        "\tat org.apache.spark.api.python.BasePythonRunner.run(PythonRunner.scala:1)\n"
    )
    assert _task_error(executor) == "partition 2: ValueError: bad row 17"
    lost = Exception(
        "Job aborted due to stage failure: Task 1 in stage 3.0 failed 4 times: "
        "ExecutorLostFailure\n\tat org.apache.spark.scheduler.DAGScheduler.abort(x.scala:1)\n"
    )
    assert _task_error(lost).startswith("Job aborted due to stage failure: Task 1")


def test_a_spark_engine_runs_at_least_one_partition() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        SparkEngine(session=object()).run(lambda k: k, 0, "nothing")  # type: ignore[arg-type]
