"""Is a Docker host healthy, and what does it run on: asked once before any work."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.hosts.config import HostConfig
from tasks.hosts.connection import HostUnavailable, connect, describe_error
from tasks.records import MachineFacts


@dataclass(frozen=True)
class HostHealth:
    """What a host said when asked: reachable or not, and what it runs on."""

    name: str
    url: str
    ok: bool
    version: str | None = None  # engine version, e.g. "20.10.24+dfsg1"
    platform: str | None = None  # os/arch as in image platforms, e.g. "linux/amd64"
    free_disk_bytes: int | None = None  # free bytes where the engine keeps images; None = unknown
    cpus: int | None = None
    memory_bytes: int | None = None
    kernel: str | None = None
    storage_driver: str | None = None
    cpu_model: str | None = None  # known for an engine on this machine only
    seconds: float = 0.0  # how long the check took
    error: str | None = None  # one line, when not ok


def check_host(host: HostConfig, timeout: float = 5.0) -> HostHealth:
    """Ask ``host`` for its version, platform, machine and free disk; never raises."""
    started = time.monotonic()
    try:
        client = connect(host, timeout=int(max(timeout, 1)), ping_timeout=timeout)
    except HostUnavailable as exc:
        return HostHealth(host.name, host.url, False, seconds=_since(started), error=str(exc))
    try:
        version = client.version()
        info = client.info()
    except Exception as exc:
        error = f"{host.name} ({host.url}): {describe_error(exc)}"
        return HostHealth(host.name, host.url, False, seconds=_since(started), error=error)
    finally:
        client.close()
    return HostHealth(
        name=host.name,
        url=host.url,
        ok=True,
        version=str(version.get("Version")),
        platform=f"{version.get('Os')}/{version.get('Arch')}",
        free_disk_bytes=_free_disk(host, info),
        cpus=info.get("NCPU"),
        memory_bytes=info.get("MemTotal"),
        kernel=info.get("KernelVersion"),
        storage_driver=info.get("Driver"),
        cpu_model=_cpu_model() if host.is_local else None,
        seconds=_since(started),
    )


def machine_facts(health: HostHealth, builder: str) -> MachineFacts:
    """The facts a run records about a host it used (``builder``: its build tool)."""
    return MachineFacts(
        host=health.name,
        cpu_model=health.cpu_model,
        cpus=health.cpus,
        memory_bytes=health.memory_bytes,
        kernel=health.kernel,
        platform=health.platform,
        engine_version=health.version,
        storage_driver=health.storage_driver,
        builder=builder,
    )


def _cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    # The engine API does not say which CPU it runs on; this machine's kernel does.
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "model name":
            return " ".join(value.split()) or None
    return None


def check_hosts(hosts: list[HostConfig], timeout: float = 5.0) -> list[HostHealth]:
    """``check_host`` for every host at once; results in the order of ``hosts``."""
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
        return list(pool.map(lambda h: check_host(h, timeout), hosts))


def _free_disk(host: HostConfig, info: dict[str, Any]) -> int | None:
    # The engine API reports used space (``df``) but not free space. For an engine on this
    # machine we measure its data root with statvfs (what ``df`` prints); for a remote one
    # it is unknown (None) rather than a guess.
    root = info.get("DockerRootDir")
    if not host.is_local or not root:
        return None
    try:
        stat = os.statvfs(root)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
