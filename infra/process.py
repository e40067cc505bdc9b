"""Background daemons tracked by a pidfile: start, find, stop exactly the one we started."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from tasks.processes import process_stat


def start_daemon(argv: list[str], log: Path, pidfile: Path) -> int:
    """Start ``argv`` detached from our session, output to ``log``; record its pid."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # survives our exit and our terminal's signals
        )
    pidfile.write_text(f"{proc.pid}\n")
    return proc.pid


def running_pid(pidfile: Path, program: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and is ``program`` (by process name)."""
    try:
        stat = process_stat(int(pidfile.read_text().strip()))
    except (OSError, ValueError):
        return None
    # comm (kernel-truncated to 15 chars) is set even while cmdline is still empty.
    if stat is None or stat.state == "Z" or stat.name != program[:15]:
        return None  # exited (zombie) or the pid was reused by something else
    return stat.pid


def stop_daemon(pidfile: Path, program: str, timeout: float = 20.0) -> bool:
    """Stop the process recorded in ``pidfile`` (TERM, then KILL); True if one was running."""
    pid = running_pid(pidfile, program)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running_pid(pidfile, program) is not None:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 5
        time.sleep(0.1)
    _reap(pid)
    pidfile.unlink(missing_ok=True)
    return True


def _reap(pid: int) -> None:
    # When we are the parent (same Python process started it), collect the zombie.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``check()`` until it returns True or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(interval)
    return bool(check())


@contextlib.contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
