"""The real service of one ``nbo simulate`` run, under a simulated clock.

``serving`` starts ``service.app.create_app`` under uvicorn on a free local port with a
:class:`SimClock` as its clock (``Runtime.clock``): the simulator moves time forward,
never back. Production never passes a clock.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import httpx

from cli.simulation_bank import SimulationError
from core.settings import Settings


class SimClock:
    """The service's clock during a simulation: set by the simulator, never backwards."""

    def __init__(self, start: datetime) -> None:
        self._now = start
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        return self._now

    def advance_to(self, when: datetime) -> None:
        with self._lock:
            self._now = max(self._now, when)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving(settings: Settings, clock: SimClock) -> Iterator[tuple[httpx.Client, Any]]:
    """The real app with ``clock``, under uvicorn in a thread; yields a client with an
    all-scope key (development mode, this run only) and the app."""
    import uvicorn

    from cli.demo import _with_demo_key
    from service.app import create_app

    key, served = _with_demo_key(settings)
    app = create_app(served, clock=clock)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=server.run, name="nbo-simulate-service", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SimulationError("the service did not start (see the log above)")
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=base, headers={"X-API-Key": key}, timeout=60) as client:
            yield client, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(path, json=body)
    if response.status_code >= 300:
        raise SimulationError(f"POST {path} answered {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    return answer
