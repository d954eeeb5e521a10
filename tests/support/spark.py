"""The tests' one SparkSession: Spark local mode in this machine's JVM (Java 17).

``local[2,2]``: two worker threads, and a failed task is tried twice (as on a cluster,
where ``spark.task.maxFailures`` retries it), so the tests see retries. The Python workers
run this interpreter (the project's venv), and test modules are pickled to them by value
(the executors cannot import ``tests``).
"""

from __future__ import annotations

import os
import sys
import warnings
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    warnings.filterwarnings("ignore", "PySpark does not yet fully support", FutureWarning)
    from pyspark.sql import SparkSession

SPARK_TEST_MASTER = "local[2,2]"


def start_test_session() -> SparkSession:
    warnings.filterwarnings("ignore", "PySpark does not yet fully support", FutureWarning)
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # read when the context starts
    session = (
        SparkSession.builder.master(SPARK_TEST_MASTER)
        .appName("nbo-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.log.level", "ERROR")
        .config("spark.driver.memory", "512m")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    return session


def pickle_by_value(module: ModuleType) -> None:
    """Ship ``module``'s functions and classes to the executors in the task itself."""
    from pyspark import cloudpickle

    cloudpickle.register_pickle_by_value(module)
