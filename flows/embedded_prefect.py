"""The embedded Prefect API of ``basebench run``: a temporary server on 127.0.0.1.

Prefect starts such a server by itself when no API URL is configured, but only when the
flow is called, and only after importing its server code into the calling process.
Started first thing instead, it comes up on another core while basebench loads, which
takes about three seconds off every run. The server is Prefect's own ephemeral API app
(no UI, no background services) on the SQLite database under ``PREFECT_HOME``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from typing import IO, Any

STARTUP_SECONDS = 60.0


class EmbeddedPrefectError(RuntimeError):
    """The embedded server did not come up; the message carries its own error line."""


def create_app() -> Any:
    """The ASGI app uvicorn serves (``--factory``): Prefect's API in ephemeral mode."""
    from prefect.server.api.server import create_app as create_prefect_app

    return create_prefect_app(ephemeral=True, final=True)


class EmbeddedPrefect:
    """A Prefect API server process; ``start`` returns at once, ``wait_ready`` blocks."""

    def __init__(self) -> None:
        self.api_url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        """Spawn the server on a free port (inheriting this process's environment)."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.api_url = f"http://127.0.0.1:{port}/api"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives until stop())
        self._process = subprocess.Popen(
            [
                sys.executable,
                *("-m", "uvicorn", "--factory", f"{__name__}:create_app"),
                *("--host", "127.0.0.1", "--port", str(port)),
                *("--log-level", "error", "--lifespan", "on"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
        )

    def wait_ready(self, timeout: float = STARTUP_SECONDS) -> None:
        """Block until the API answers its health check; ``RuntimeError`` if it never does."""
        assert self._process is not None and self._log is not None
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._log.seek(0)
                cause = _error_line(self._log.read().decode(errors="replace"))
                raise EmbeddedPrefectError(f"embedded Prefect server exited at start-up: {cause}")
            try:
                with no_proxy.open(f"{self.api_url}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise EmbeddedPrefectError(f"embedded Prefect server not ready after {timeout:g} s")

    def stop(self) -> None:
        """Let this process send its last logs and events, then stop the server
        (terminate, then kill after 5 s)."""
        if "prefect" in sys.modules:
            _drain_prefect_workers()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


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
