"""``nbo loadtest``: the load runner (``loadtests.run``), the one command line it has.

Mounted in ``cli/main.py`` with ``app.command(name="loadtest")(loadtests.cli.loadtest)``.
"""

from __future__ import annotations

from pathlib import Path

import typer


def loadtest(
    url: str = typer.Option("http://127.0.0.1:8000", help="Service base URL."),
    rate: float = typer.Option(200.0, help="Requests per second offered (open loop)."),
    duration: float = typer.Option(20.0, help="Measured seconds."),
    customers: Path = typer.Option(
        Path("var/demo_customers.txt"), help="Customer ids, one per line (nbo demo writes it)."
    ),
    unknown_share: float = typer.Option(0.05, help="Share of requests for unknown ids."),
    baseline: bool = typer.Option(False, help="Also load the bare one-Redis-GET baseline."),
    workers: int = typer.Option(2, help="Baseline uvicorn workers (match the service's)."),
    rounds: int = typer.Option(
        1, help="With --baseline: alternate service and baseline N times, judge the median."
    ),
    find_max: bool = typer.Option(False, help="Find the highest rate with p99 < 50 ms."),
    step_duration: float = typer.Option(10.0, help="Seconds per --find-max step."),
    warmup: float = typer.Option(3.0, help="Discarded warm-up seconds before measuring."),
    timeout: float = typer.Option(2.0, help="Per-request timeout in seconds."),
    pool: int = typer.Option(100, help="Most client connections open at once."),
    connections: int = typer.Option(16, help="Connections the load takes turns on."),
    seed: int = typer.Option(7, help="Seed of the request mix (which customer when)."),
    redis_stats: bool = typer.Option(False, help="Report Redis calls and CPU per request."),
    redis_url: str | None = typer.Option(None, help="Redis for --redis-stats and the baseline."),
    api_key: str | None = typer.Option(
        None, envvar="NBO_LOADTEST_API_KEY", help="X-API-Key with the recommend scope."
    ),
    generator: str = typer.Option(
        "auto", help="Load generator: wrk (native), python, or auto (wrk when installed)."
    ),
    threads: int = typer.Option(2, help="wrk threads."),
    json_output: bool = typer.Option(False, "--json", help="Print the full JSON report."),
) -> None:
    """Drive a fixed request rate at /v1/recommendations and report latency and errors.

    Example: nbo loadtest --rate 200 --duration 20 --customers var/demo_customers.txt --baseline

    Example: nbo loadtest --rate 40 --duration 60 --baseline --rounds 5   (median of 5 pairs)

    Example: nbo loadtest --generator wrk --find-max --baseline --step-duration 10 --json
    """
    from loadtests.run import LoadOptions, execute

    options = LoadOptions(
        url=url,
        rate=rate,
        duration=duration,
        customers=customers,
        unknown_share=unknown_share,
        workers=workers,
        warmup=warmup,
        timeout=timeout,
        pool=pool,
        connections=connections,
        seed=seed,
        baseline=baseline,
        find_max=find_max,
        step_duration=step_duration,
        redis_stats=redis_stats,
        redis_url=redis_url,
        api_key=api_key,
        rounds=rounds,
        generator=generator,
        threads=threads,
    )
    code = execute(options, json_output)
    if code:
        raise typer.Exit(code)
