"""The app served by a real uvicorn over TCP, in a thread of the test process."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import uvicorn

from core.settings import Settings
from service.app import create_app
from tests.support.paths import free_port


@dataclass(frozen=True)
class LiveServer:
    """Where the server listens, and the thread it runs in."""

    url: str
    thread: threading.Thread


@contextmanager
def running_service(settings: Settings) -> Iterator[LiveServer]:
    """``create_app(settings)`` under uvicorn on a free loopback port (FastAPI's real thread
    pool), yielded once it has started. Leaving the block asks uvicorn to exit and waits up
    to 15 s for its thread; whether it stopped is the caller's to check."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        yield LiveServer(url=f"http://127.0.0.1:{port}", thread=thread)
    finally:
        server.should_exit = True
        thread.join(15)
