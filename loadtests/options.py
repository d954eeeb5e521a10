"""The options of ``nbo loadtest`` (``loadtests.run``) and the checks made before any load.

Bad options, an unreadable customer file or a service that does not answer raise
:class:`LoadInputError`, which the command turns into exit code 2 with its message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx

from loadtests.wrk import wrk_path

MAX_RATE = 50000.0
"""Requests/s the runner accepts (the Python client's own ceiling is far lower: ~460/s)."""
GENERATORS = ("auto", "wrk", "python")
PYTHON_MAX_RATE = 5000.0  # above it one Python client measures itself, not the server
MAX_DURATION_SECONDS = 600.0
MAX_ROUNDS = 20


class LoadInputError(ValueError):
    """Bad options, an unreadable customer file or a dead URL: exit 2 with this message."""


@dataclass(frozen=True)
class LoadOptions:
    url: str
    rate: float
    duration: float
    customers: Path
    unknown_share: float = 0.05
    workers: int = 2
    warmup: float = 3.0
    timeout: float = 2.0
    pool: int = 100
    connections: int = 16
    seed: int = 7
    baseline: bool = False
    find_max: bool = False
    step_duration: float = 10.0
    redis_stats: bool = False
    redis_url: str | None = None
    api_key: str | None = None  # sent as X-API-Key (scope recommend)
    rounds: int = 1  # with baseline: service, baseline, ... alternated this many times
    generator: str = "python"  # "wrk", "python" or "auto" (wrk when installed)
    threads: int = 2  # wrk threads

    @property
    def uses_wrk(self) -> bool:
        return self.generator == "wrk" or (self.generator == "auto" and wrk_path() is not None)

    def validate(self) -> None:
        if self.generator not in GENERATORS:
            raise LoadInputError(
                f"--generator {self.generator!r} is not one of {', '.join(GENERATORS)}"
            )
        if self.generator == "wrk" and wrk_path() is None:
            raise LoadInputError(
                "--generator wrk: wrk is not installed (Debian: apt-get install wrk); "
                "use --generator python"
            )
        if self.threads < 1:
            raise LoadInputError(f"--threads {self.threads} must be >= 1")
        if not self.url.startswith(("http://", "https://")):
            raise LoadInputError(f"--url {self.url!r} is not an http(s) URL")
        if not 0 < self.rate <= MAX_RATE:
            raise LoadInputError(
                f"--rate {self.rate:g} is impossible: give requests/s above 0 and at most "
                f"{MAX_RATE:g}"
            )
        if not self.uses_wrk and self.rate > PYTHON_MAX_RATE:
            raise LoadInputError(
                f"--rate {self.rate:g} is impossible for the Python client (at most "
                f"{PYTHON_MAX_RATE:g}): use --generator wrk"
            )
        if not 0 < self.duration <= MAX_DURATION_SECONDS:
            raise LoadInputError(
                f"--duration {self.duration:g} must be above 0 and at most "
                f"{MAX_DURATION_SECONDS:g} seconds"
            )
        if not 0 <= self.unknown_share <= 1:
            raise LoadInputError(f"--unknown-share {self.unknown_share:g} must be within 0-1")
        if self.workers < 1 or self.pool < 1 or self.timeout <= 0 or self.warmup < 0:
            raise LoadInputError("--workers and --pool must be >= 1, --timeout > 0, --warmup >= 0")
        if not 1 <= self.connections <= self.pool:
            raise LoadInputError(
                f"--connections {self.connections} must be within 1 and --pool ({self.pool})"
            )
        if self.find_max and not 0 < self.step_duration <= MAX_DURATION_SECONDS:
            raise LoadInputError(f"--step-duration {self.step_duration:g} is out of range")
        if not 1 <= self.rounds <= MAX_ROUNDS:
            raise LoadInputError(f"--rounds {self.rounds} must be within 1 and {MAX_ROUNDS}")
        if self.rounds > 1 and (not self.baseline or self.find_max):
            raise LoadInputError(
                "--rounds alternates the service and the baseline: it needs --baseline "
                "and cannot be combined with --find-max"
            )


def read_customer_ids(path: Path) -> list[str]:
    """One id per line (blank lines ignored), e.g. the ``demo_customers.txt`` of ``nbo demo``."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise LoadInputError(f"cannot read customer ids from {path}: {exc.strerror}") from None
    ids = [line.strip() for line in lines if line.strip()]
    if not ids:
        raise LoadInputError(f"{path} holds no customer ids (one per line expected)")
    return ids


def check_alive(url: str) -> None:
    """The service answers ``GET /healthz`` with 200, or a clear ``LoadInputError``."""
    health = url.rstrip("/") + "/healthz"
    try:
        response = httpx.get(health, timeout=3.0)
    except httpx.HTTPError as exc:
        raise LoadInputError(
            f"no service answers at {url} ({type(exc).__name__}: {exc}); start it first, "
            "e.g. `nbo serve --workers 2`"
        ) from None
    if response.status_code != 200:
        raise LoadInputError(f"{health} answered {response.status_code}, expected 200")
