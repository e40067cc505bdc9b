"""The embedded Prefect API of ``basebench run``: a temporary server on 127.0.0.1.

Prefect starts such a server by itself when no API URL is configured, but only when the
flow is called, and only after importing its server code into the calling process.
Started first thing instead, it comes up on another core while basebench loads, which
takes about three seconds off every run. The server is Prefect's own ephemeral API app
(no UI, no background services) on the SQLite database under ``PREFECT_HOME``.
"""

from __future__ import annotations

import sys
from typing import Any

from tasks.child_server import ChildServer, ChildServerError

STARTUP_SECONDS = 60.0


class EmbeddedPrefectError(RuntimeError):
    """The embedded server did not come up; the message carries its own error line."""


def create_app() -> Any:
    """The ASGI app uvicorn serves (``--factory``): Prefect's API in ephemeral mode."""
    from prefect.server.api.server import create_app as create_prefect_app

    return create_prefect_app(ephemeral=True, final=True)


class EmbeddedPrefect:
    """The Prefect API server process; ``start`` returns at once, ``wait_ready`` blocks."""

    def __init__(self) -> None:
        self._child = ChildServer(_uvicorn_argv, "/api/health")

    @property
    def api_url(self) -> str:
        return f"{self._child.base_url}/api"

    @property
    def pids(self) -> set[int]:
        """The server's process id, while it runs (an interrupt must not stop it first)."""
        return {self._child.pid} if self._child.pid is not None else set()

    def start(self) -> None:
        """Spawn the server on a free port (inheriting this process's environment)."""
        self._child.start()

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        """Block until the API answers its health check."""
        try:
            self._child.wait_ready(timeout)
        except ChildServerError as exc:
            cause = _error_line(exc.output)
            raise EmbeddedPrefectError(f"embedded Prefect server {exc}: {cause}") from exc

    def stop(self) -> None:
        """Let this process send its last logs and events, then stop the server."""
        if "prefect" in sys.modules:
            _drain_prefect_workers()
        self._child.stop(grace=5)


def _uvicorn_argv(port: int) -> list[str]:
    return [
        sys.executable,
        *("-m", "uvicorn", "--factory", f"{__name__}:create_app"),
        *("--host", "127.0.0.1", "--port", str(port)),
        *("--log-level", "error", "--lifespan", "on"),
    ]


def _error_line(output: str) -> str:
    """The last line naming an exception in a server's output (its traceback's cause)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "Error" in line and "uvicorn.error" not in line]
    return (errors or lines or ["no output"])[-1]


def _drain_prefect_workers() -> None:
    # Prefect sends logs and events from background workers, drained at interpreter
    # exit; this server stops before that, so drain them while it still answers.
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)
