"""Where the partition functions of the offline jobs run: ``local`` or ``spark``.

The batch jobs (``features/materialize.py``, ``training/batch_scoring.py``) are written as
one function of a partition number ``k`` (read partition ``k``'s Parquet files, compute,
write or score). The ``local`` engine calls it for ``k = 0 .. P-1`` in this process, one
partition after another. The ``spark`` engine (:class:`SparkEngine`) runs the *same*
function on Apache Spark through PySpark: an RDD of ``range(P)`` in ``P`` slices, one task
per partition, each task calling the function on an executor and returning its small
result to the driver, which gets them back in partition order. It is not a rewrite of the
jobs in Spark SQL: the executors run the project's own Python code (so they need the
project installed in the Python they run: docs/operations.md).

A failed task fails the job (after Spark's own retries, ``spark.task.maxFailures``): the
driver cancels what still runs, waits for the running tasks to stop, and raises
:class:`PartitionJobError` naming the partition and the error raised in it. A task
retried by Spark calls the function again for the same ``k``: the functions must be
idempotent per partition (materialization overwrites the same keys; the driver collects
exactly one result per partition, from the attempt that succeeded).

PySpark is an optional extra (``pip install 'nbo[spark]'``): it is imported only when the
spark engine is chosen, and :func:`check_engine` says which extra to install without it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

ENGINES = ("local", "spark")
SPARK_EXTRA = "nbo[spark]"
DEFAULT_SPARK_MASTER = "local[*]"
"""The master when neither ``--spark-master`` nor ``spark-submit --master`` names one."""
CANCEL_WAIT_SECONDS = 120.0
"""How long a failed job waits for its still-running tasks to stop after the cancel."""

R = TypeVar("R")


class EngineUnavailableError(ValueError):
    """The engine cannot run here (unknown name, PySpark not installed, bad option mix)."""


class PartitionJobError(RuntimeError):
    """A partition failed, so the whole job failed; the message names partition and error."""


class PartitionTaskError(RuntimeError):
    """Raised inside a Spark task: the partition's error with the partition number."""


@dataclass(frozen=True)
class EngineChoice:
    """The engine a command runs its partitions on (validated by :func:`check_engine`)."""

    name: str = "local"
    spark_master: str | None = None

    @property
    def spark(self) -> bool:
        return self.name == "spark"


def check_engine(name: str, spark_master: str | None = None) -> EngineChoice:
    """Validate ``--engine`` / ``--spark-master``; for ``spark``, that PySpark imports.

    Raises :class:`EngineUnavailableError` with the fix in the message.
    """
    if name not in ENGINES:
        raise EngineUnavailableError(
            f"--engine {name!r} is not one of {', '.join(ENGINES)}",
        )
    if name == "local":
        if spark_master is not None:
            raise EngineUnavailableError("--spark-master needs --engine spark")
        return EngineChoice()
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise EngineUnavailableError(
            f"--engine spark needs PySpark, which is not installed: pip install '{SPARK_EXTRA}'"
        ) from None
    return EngineChoice("spark", spark_master)


@dataclass(frozen=True)
class _Guarded(Generic[R]):
    """The task Spark runs for partition ``k``: ``(k, fn(k))``, and any error of ``fn``
    re-raised as one :class:`PartitionTaskError` line naming the partition."""

    fn: Callable[[int], R]

    def __call__(self, k: int) -> tuple[int, R]:
        try:
            return k, self.fn(k)
        except Exception as exc:
            raise PartitionTaskError(f"partition {k}: {type(exc).__name__}: {exc}") from exc


class SparkEngine:
    """Runs a partition function on Spark, one task per partition.

    ``session``: an existing SparkSession (tests share one); otherwise one is started
    (or the one ``spark-submit`` started is joined) on the first :meth:`run` with
    ``master`` (default: ``spark.master`` of the submitted configuration, else
    ``local[*]``), and stopped by :meth:`close`.
    """

    def __init__(
        self,
        master: str | None = None,
        app_name: str = "nbo",
        session: SparkSession | None = None,
    ) -> None:
        self.master = master
        self.app_name = app_name
        self._session = session
        self._owned = False
        self._running: set[str] = set()  # job groups of the runs under way

    @classmethod
    def for_choice(cls, choice: EngineChoice, app_name: str) -> SparkEngine:
        return cls(choice.spark_master, app_name)

    @property
    def session(self) -> SparkSession:
        if self._session is None:
            try:
                self._session, self._owned = _start_session(self.master, self.app_name)
            except Exception as exc:  # no Java, a master that does not answer, ...
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                where = self.master or "from spark-submit"
                raise EngineUnavailableError(
                    f"could not start Spark (master {where}): {first}"
                ) from None
        return self._session

    def close(self) -> None:
        """Stop the session if this engine started it (not one it was given or joined)."""
        if self._session is not None and self._owned:
            self._session.stop()
        self._session, self._owned = None, False

    def __enter__(self) -> SparkEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cancel(self) -> None:
        """Cancel the jobs of the runs under way (from another thread); they raise
        :class:`PartitionJobError`."""
        if self._session is not None:
            for group in list(self._running):
                self._session.sparkContext.cancelJobGroup(group)

    @property
    def parallelism(self) -> int:
        """Tasks the cluster runs at once (``spark.default.parallelism``)."""
        return int(self.session.sparkContext.defaultParallelism)

    def run(self, fn: Callable[[int], R], partitions: int, description: str) -> list[R]:
        """``[fn(0), ..., fn(partitions - 1)]``, each call a Spark task on an executor.

        ``fn`` and what it returns are pickled (cloudpickle): keep both small (a path, a
        model, settings; counts, a schema, a score frame). Raises
        :class:`PartitionJobError` when any partition fails.
        """
        if partitions < 1:
            raise ValueError("the number of partitions must be at least 1")
        sc = self.session.sparkContext
        group = f"nbo-{uuid.uuid4().hex[:12]}"
        self._running.add(group)
        sc.setJobGroup(group, description, interruptOnCancel=True)
        started = time.perf_counter()
        try:
            pairs = sc.parallelize(range(partitions), partitions).map(_Guarded(fn)).collect()
        except Exception as exc:  # py4j / pyspark errors carry the executor's traceback
            sc.cancelJobGroup(group)
            _wait_for_tasks(sc, group)
            raise PartitionJobError(f"{description} failed on Spark: {_task_error(exc)}") from None
        finally:
            self._running.discard(group)
        log.info(
            "%s: %d partition(s) on Spark in %.1f s",
            description,
            partitions,
            time.perf_counter() - started,
        )
        by_partition = dict(pairs)
        return [by_partition[k] for k in range(partitions)]


def _start_session(master: str | None, app_name: str) -> tuple[SparkSession, bool]:
    """The active session (joined, not owned) or a new one (owned)."""
    # The jobs use RDDs of partition numbers, not pandas-on-Spark: its pandas version
    # warning is noise here.
    warnings.filterwarnings("ignore", "PySpark does not yet fully support", FutureWarning)
    from pyspark import SparkConf
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active, False
    conf = SparkConf()  # spark-submit's --master / --conf arrive here
    chosen = master or conf.get("spark.master", None) or DEFAULT_SPARK_MASTER
    builder = SparkSession.builder.master(chosen).appName(app_name)
    if chosen.startswith("local") and not _python_configured(conf):
        # local mode: the workers run this very Python (the project's environment); PySpark
        # reads PYSPARK_PYTHON when the context starts (a spark.pyspark.python set after
        # the JVM started is too late)
        os.environ["PYSPARK_PYTHON"] = sys.executable
    builder = builder.config("spark.ui.showConsoleProgress", "false")
    if not conf.get("spark.log.level", None):
        builder = builder.config("spark.log.level", "ERROR")  # the command prints its own
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session, True


def _python_configured(conf: object) -> bool:
    """Whether the executors' Python was chosen (``PYSPARK_PYTHON``, spark-submit's conf)."""
    return "PYSPARK_PYTHON" in os.environ or bool(
        conf.get("spark.pyspark.python", None)  # type: ignore[attr-defined]
    )


def _wait_for_tasks(sc: object, group: str) -> None:
    """After a cancel: wait (bounded) until no task of the group's jobs still runs, so that
    no straggler writes after the driver has cleaned up."""
    tracker = sc.statusTracker()  # type: ignore[attr-defined]
    deadline = time.monotonic() + CANCEL_WAIT_SECONDS
    while time.monotonic() < deadline:
        running = 0
        for job_id in tracker.getJobIdsForGroup(group):
            job = tracker.getJobInfo(job_id)
            for stage_id in job.stageIds if job is not None else []:
                stage = tracker.getStageInfo(stage_id)
                running += stage.numActiveTasks if stage is not None else 0
        if running == 0:
            return
        time.sleep(0.2)
    log.warning("tasks of %s still running %.0f s after the cancel", group, CANCEL_WAIT_SECONDS)


def _task_error(exc: BaseException) -> str:
    """The one line naming the failed partition and its error, from the executor's
    traceback inside a PySpark / Py4J error; else the error's first line."""
    text = str(exc)
    marker = f"{PartitionTaskError.__name__}: "
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    tagged = [line.split(marker, 1)[1] for line in lines if marker in line]
    if tagged:
        return tagged[-1]
    # not the partition function's error (an executor lost, out of memory, ...): Spark's
    # own first line says which task and why
    return lines[0] if lines else type(exc).__name__


@contextmanager
def spark_engine(choice: EngineChoice, app_name: str) -> Iterator[SparkEngine | None]:
    """The engine of a command's ``--engine`` option: ``None`` for ``local`` (the job's own
    loop), a :class:`SparkEngine` for ``spark``, closed at the end of the block."""
    if not choice.spark:
        yield None
        return
    engine = SparkEngine.for_choice(choice, app_name)
    try:
        yield engine
    finally:
        engine.close()
