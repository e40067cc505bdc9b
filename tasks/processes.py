"""What Linux says of a process, read from ``/proc/<pid>/stat`` (one parser for all), and
the programs a run's stages start, which an interrupt stops."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# The stage programs running now (builds, scans): what ``stop_programs`` stops.
_running: set[subprocess.Popen[str]] = set()
_running_lock = threading.Lock()


@dataclass(frozen=True)
class ProcessStat:
    pid: int
    name: str  # comm: the kernel's 15-character program name
    state: str  # R, S, D, Z (a zombie: exited, not yet reaped), ...
    parent: int


def process_stat(pid: int) -> ProcessStat | None:
    """The process ``pid``, or None when there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
    name = text[text.index("(") + 1 : text.rindex(")")]
    state, parent = text[text.rindex(")") + 1 :].split()[:2]
    return ProcessStat(pid, name, state, int(parent))


def alive(pid: int) -> bool:
    """Running (not exited, and not a zombie waiting to be reaped)."""
    stat = process_stat(pid) if pid > 0 else None
    return stat is not None and stat.state != "Z"


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = process_stat(int(entry.name))
            if stat is not None and stat.parent == pid:
                found.append(stat.pid)
    return sorted(found)


def run_program(
    argv: list[str], env: Mapping[str, str] | None = None, timeout: float | None = None
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run(argv, capture_output=True, text=True)`` for a program a stage
    runs (a build, a scan), which ``stop_programs`` stops when the run is interrupted.
    ``subprocess.TimeoutExpired`` after ``timeout`` seconds (the program is killed)."""
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        with _running_lock:
            _running.add(process)
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            raise
        finally:
            with _running_lock:
                _running.discard(process)
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def stop_programs() -> int:
    """SIGTERM every program ``run_program`` runs now; how many there were."""
    with _running_lock:
        running = list(_running)
    for process in running:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
    return len(running)
