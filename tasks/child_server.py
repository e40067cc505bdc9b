"""A server this process runs as a child on 127.0.0.1: spawned on a free port, waited
for until its health check answers, then stopped. The Trivy server and the embedded
Prefect API are such servers."""

from __future__ import annotations

import ctypes
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable

# Health checks go straight to 127.0.0.1, never through a proxy from the environment.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ChildServerError(RuntimeError):
    """The server exited at start-up or never answered; ``output`` is what it printed."""

    def __init__(self, message: str, output: str) -> None:
        super().__init__(message)
        self.output = output


class ChildServer:
    """One server process; ``argv(port)`` is its command line for a given port."""

    def __init__(
        self,
        argv: Callable[[int], list[str]],
        health_path: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self._argv = argv
        self._health_path = health_path
        self._env = env
        self.base_url = ""
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed by stop())

    def start(self) -> None:
        """Spawn the server on a free port; returns at once."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self._process = subprocess.Popen(
            self._argv(port),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=self._env,
            preexec_fn=_end_with_parent,
        )

    @property
    def pid(self) -> int | None:
        """The server process's id, once started."""
        return self._process.pid if self._process is not None else None

    def wait_ready(self, timeout: float) -> None:
        """Block until the health check answers 200; ``ChildServerError`` when the server
        exits first or ``timeout`` seconds pass (the server is then stopped)."""
        assert self._process is not None, "start() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                raise ChildServerError(f"exited at start-up (code {code})", self.output())
            try:
                with _NO_PROXY.open(self.base_url + self._health_path, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        output = self.output()
        self.stop()
        raise ChildServerError(f"not ready after {timeout:g} s", output)

    @property
    def running(self) -> bool:
        """True while the server process lives."""
        return self._process is not None and self._process.poll() is None

    def output(self) -> str:
        """What the server wrote to stderr so far."""
        if self._log.closed:
            return ""
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def stop(self, grace: float = 10.0) -> None:
        """Terminate the server, kill it after ``grace`` seconds; safe to call twice."""
        if self._process is not None and self.running:
            self._process.terminate()
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        self._log.close()


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _end_with_parent() -> None:
    """In the child, before exec: ask the kernel for SIGTERM when our parent dies, so a
    killed ``basebench run`` leaves no server behind (the kernel sends it when the thread
    that spawned the child ends: servers are started from the run's main thread)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
