"""What Linux says of a process, read from ``/proc/<pid>/stat`` (one parser for all)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


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
