"""The Docker engine: use the one that answers, or start the project's own dockerd."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from infra.errors import InfraError
from infra.links import create_bridge, ip
from infra.process import running_pid, start_daemon, stop_daemon, wait_until
from tasks.hosts import DEFAULT_URL, HostConfig, responds
from tasks.programs import find_program

PIDFILE = "dockerd.pid"
LOGFILE = "dockerd.log"
BRIDGEFILE = "dockerd.bridge"


def engine_answers(url: str) -> bool:
    """True when a Docker engine at ``url`` answers a ping within a few seconds."""
    try:
        host = HostConfig(name="engine", url=url, insecure=True)  # only pinged, never used
    except ValueError:
        return False
    return responds(host, timeout=5.0)


def ensure_engine(state_dir: Path, url: str | None = None, timeout: float = 60.0) -> str:
    """The URL of a Docker engine that answers.

    ``url`` defaults to DOCKER_HOST, then the default socket. When nothing answers there
    and we are root on Debian, start a dockerd of our own on that socket (log and pidfile
    in ``state_dir``); ``infra up`` has installed ``docker.io`` before.
    """
    url = url or os.environ.get("DOCKER_HOST") or DEFAULT_URL
    if engine_answers(url):
        return url
    if not (
        url.startswith("unix://") and os.geteuid() == 0 and Path("/etc/debian_version").exists()
    ):
        raise InfraError(f"no Docker engine at {url}; start one or set DOCKER_HOST")
    _start_dockerd(state_dir, url)
    if not wait_until(lambda: engine_answers(url), timeout):
        log = state_dir / LOGFILE
        stop_engine(state_dir)
        raise InfraError(f"dockerd at {url} did not answer within {timeout:.0f} s; see {log}")
    return url


def stop_engine(state_dir: Path) -> bool:
    """Stop the dockerd that ``ensure_engine`` started with this ``state_dir`` (if any)."""
    stopped = stop_daemon(state_dir / PIDFILE, "dockerd", timeout=30)
    bridge_file = state_dir / BRIDGEFILE
    if bridge_file.exists():
        ip(["link", "delete", bridge_file.read_text().strip()], check=False)
        bridge_file.unlink()
    return stopped


def engine_pid(state_dir: Path) -> int | None:
    """The pid of our own dockerd, when one runs."""
    return running_pid(state_dir / PIDFILE, "dockerd")


def _start_dockerd(state_dir: Path, url: str) -> None:
    socket = url.removeprefix("unix://")
    argv = [find_program("dockerd"), "-H", url, "--pidfile", str(state_dir / "dockerd.self.pid")]
    if url != DEFAULT_URL:
        argv += _isolation_args(state_dir / "engine", Path(socket).stem)
        argv += ["--bridge", _own_bridge(state_dir, url)]
    Path(socket).parent.mkdir(parents=True, exist_ok=True)
    start_daemon(argv, state_dir / LOGFILE, state_dir / PIDFILE)


def _isolation_args(root: Path, name: str) -> list[str]:
    # A second daemon beside the system one needs its own roots, containerd namespaces
    # and key (else both report the same engine ID), and stays off the host's iptables.
    root.mkdir(parents=True, exist_ok=True)
    config = root / "daemon.json"
    config.write_text(json.dumps({"deprecated-key-path": str(root / "key.json")}))
    return [
        "--config-file", str(config),
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--containerd-namespace", f"basebench-{name}",
        "--containerd-plugins-namespace", f"basebench-{name}-plugins",
        "--iptables=false",
    ]  # fmt: skip


def _own_bridge(state_dir: Path, url: str) -> str:
    # Not --bridge=none: a dockerd started so deletes the host's docker0 (it assumes it
    # owns the network namespace), breaking the system engine's default network.
    digest = hashlib.sha256(url.encode()).digest()
    name = f"bb-e-{digest.hex()[:8]}"
    address = f"10.212.{digest[0] % 250 + 1}.1/24"
    create_bridge(name, address)
    (state_dir / BRIDGEFILE).write_text(name)
    return name
