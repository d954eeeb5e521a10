"""How every ``nbo`` command reports an expected failure: one line on stderr, exit code 2."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis
import typer

EXIT_BAD_INPUT = 2


def fail(message: str) -> typer.Exit:
    """Print ``error: message`` on stderr and return the exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_BAD_INPUT)


@contextmanager
def exit_on(*expected: type[BaseException]) -> Iterator[None]:
    """Turn the ``expected`` exceptions into one line on stderr and exit code 2 (no traceback).

    Anything else is a bug and keeps its traceback.
    """
    try:
        yield
    except expected as exc:
        if isinstance(exc, redis.RedisError):
            typer.echo(f"Redis unavailable: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        raise fail(str(exc)) from None
