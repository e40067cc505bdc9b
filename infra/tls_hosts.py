"""Extra dockerd processes on this machine that stand in for remote Docker hosts.

Each one listens on ``tcp://127.0.0.1:<port>`` with mutual TLS (its own CA), keeps
everything under one root directory (data, exec state, certs, log, pidfile), runs its
containers under a cgroup parent of its own and attaches them to a bridge of its own,
so that two of them and the system engine never share state, addresses or engine IDs.
``stop_tls_host`` removes every trace, also after the daemon was SIGKILLed;
``restart_tls_host`` brings a killed daemon back on its old root (pulled images kept);
``build_step_pids`` tells from the kernel whether a build is running on one (the fault
tests SIGKILL a daemon mid-build).

Several test processes may start daemons at once: bridge and cgroup names carry the
(unique, bound) port, and a subnet slot is claimed under a lock file.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from infra.certs import make_ca, make_client_cert, make_server_cert
from infra.errors import InfraError
from infra.links import create_bridge, ip, link_names
from infra.process import exclusive_lock, running_pid, start_daemon, stop_daemon, wait_until
from tasks.hosts import HostConfig, HostUnavailable, TlsFiles, connect
from tasks.processes import alive
from tasks.programs import find_program

PROGRAM = "dockerd"
# Between choosing a free subnet slot and creating the bridge that marks it taken,
# another process must not choose the same slot.
SLOT_LOCK = Path(tempfile.gettempdir()) / "basebench-tls-hosts.lock"
# Bridge subnets 10.213.<slot>.0/24; user-defined networks from 10.<214+slot>.0.0/16.
# 10.0.0.0/8 is clear of the system engine's default pools (172.17-31/16, 192.168/16).
BRIDGE_NET = ipaddress.ip_network("10.213.0.0/16")
MAX_SLOTS = 40
SOCKET_PATH_MAX = 107  # sun_path; containerd's debug socket is the longest under exec-root
LONGEST_SOCKET = "/containerd/containerd-debug.sock"
DOCKER_PROGRAMS = {
    "dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-proxy",
}  # fmt: skip


@dataclass(frozen=True)
class TlsHost:
    """One started daemon and everything needed to reach it and to clean it up."""

    name: str
    root: Path
    port: int
    slot: int

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    @property
    def certs(self) -> Path:
        return self.root / "certs"

    @property
    def socket(self) -> Path:
        """The engine's unix socket on this machine: what its analysis containers mount
        (clients reach it over TLS only)."""
        return self.root / "engine.sock"

    @property
    def tls(self) -> TlsFiles:
        """Client-side TLS files (the CA, our client cert and key)."""
        return TlsFiles(
            ca=self.certs / f"{self.name}-ca.pem",
            cert=self.certs / "client" / "client-cert.pem",
            key=self.certs / "client" / "client-key.pem",
        )

    @property
    def bridge(self) -> str:
        # Linux interface names are at most 15 bytes; the port keeps concurrent test
        # sessions (each with its own "tls-a") apart.
        return f"bb-{self.port}"

    @property
    def bridge_network(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.213.{self.slot}.0/24")

    @property
    def pool(self) -> ipaddress.IPv4Network:
        """Where this daemon's user-defined networks get their subnets."""
        return ipaddress.IPv4Network(f"10.{214 + self.slot}.0.0/16")

    @property
    def cgroup_parent(self) -> str:
        return f"basebench-{self.name}-{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.root / "dockerd.pid"

    @property
    def log(self) -> Path:
        return self.root / "dockerd.log"

    def pid(self) -> int | None:
        """The daemon's pid while it runs."""
        return running_pid(self.pidfile, PROGRAM)

    def host_config(self, max_parallel: int = 2) -> HostConfig:
        """A matrix ``hosts:`` entry for this daemon."""
        return HostConfig(
            name=self.name,
            url=self.url,
            tls=self.tls,
            max_parallel=max_parallel,
            labels={"kind": "tls-test"},
            socket=str(self.socket),
        )


def start_tls_host(name: str, root: Path, port: int, timeout: float = 60.0) -> TlsHost:
    """Generate certificates and start a TLS dockerd on 127.0.0.1:``port`` under ``root``.

    Returns once the engine answers over TLS. On failure everything made so far is
    removed again and ``InfraError`` names the log to read.
    """
    if len(name) > 12 or not name.replace("-", "").isalnum():
        raise InfraError(f"tls host name {name!r}: use at most 12 letters, digits or '-'")
    root = root.resolve()
    if len(str(root / "exec") + LONGEST_SOCKET) > SOCKET_PATH_MAX:
        raise InfraError(f"tls host root {root} is too long for dockerd's unix sockets")
    with exclusive_lock(SLOT_LOCK):
        host = TlsHost(name=name, root=root, port=port, slot=_free_slot())
        try:
            _create_bridge(host)  # its address marks the slot as taken
        except Exception:
            _delete_links(host)
            raise
    try:
        _write_certs(host)
        _start(host, timeout)
    except Exception as exc:
        log_tail = _log_tail(host.log)
        stop_tls_host(host)
        raise InfraError(f"tls host {name}: {exc}; last log line: {log_tail}") from exc
    return host


def restart_tls_host(host: TlsHost, timeout: float = 60.0) -> None:
    """Start a killed daemon again on its old root, as a host that comes back.

    What the dead daemon left (processes, mounts, cgroups, networks and their bridges)
    is swept first; images it had pulled are still there. Raises ``InfraError`` when it
    still runs or does not answer within ``timeout`` seconds.
    """
    if host.pid() is not None:
        raise InfraError(f"tls host {host.name} is still running (pid {host.pid()})")
    _kill_leftover_processes(host)
    _unmount_under(host.root)
    _remove_cgroups(host.cgroup_parent)
    (host.root / "dockerd.self.pid").unlink(missing_ok=True)  # dockerd refuses a stale one
    # A dockerd with default-address-pools that finds its old "bridge" network at start
    # deletes the interface named docker0 (moby's configureNetworking), whatever its own
    # --bridge is: that is the machine's engine's bridge. Forget the old networks instead;
    # their bridges are deleted just below.
    (host.root / "data" / "network" / "files" / "local-kv.db").unlink(missing_ok=True)
    with exclusive_lock(SLOT_LOCK):
        _delete_links(host)
        _create_bridge(host)
    try:
        _start(host, timeout)
    except Exception as exc:
        raise InfraError(
            f"tls host {host.name}: restart: {exc}; last log line: {_log_tail(host.log)}"
        ) from exc


def _start(host: TlsHost, timeout: float) -> None:
    start_daemon(_dockerd_argv(host), host.log, host.pidfile)
    if not wait_until(lambda: _answers(host), timeout, interval=0.1):
        raise InfraError(f"dockerd {host.name} did not answer on {host.url} in {timeout:.0f} s")


def kill_tls_host(host: TlsHost) -> None:
    """SIGKILL the daemon (a host lost mid-run); its containers and mounts stay behind."""
    pid = host.pid()
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: host.pid() is None, 10)
        _reap(pid)


def stop_tls_host(host: TlsHost) -> None:
    """Stop exactly this daemon and remove all it left: processes, mounts, links, cgroups, root.

    Safe to call twice, after a failed start and after ``kill_tls_host``.
    """
    _kill_containers(host)
    stop_daemon(host.pidfile, PROGRAM, timeout=15)
    _kill_leftover_processes(host)
    _unmount_under(host.root)
    _delete_links(host)
    _remove_cgroups(host.cgroup_parent)
    shutil.rmtree(host.root, ignore_errors=True)
    if host.root.exists():
        raise InfraError(f"tls host {host.name}: could not remove {host.root}")


def build_step_pids(host: TlsHost) -> list[int]:
    """Processes of the build steps (a Dockerfile's ``RUN``) running on ``host`` right now.

    The daemon's BuildKit runs each step in a cgroup of its own under the daemon's cgroup
    parent, ``<parent>/buildkit/<step id>``, apart from containers (``<parent>/<id>``):
    what the kernel shows there is a build in progress, whatever the client says.
    """
    steps = [
        step
        for hierarchy in _cgroup_mounts()
        for step in (hierarchy / host.cgroup_parent / "buildkit").glob("*")
        if step.is_dir()
    ]
    return sorted({pid for step in steps for pid in _procs(step)})


def leftovers(host: TlsHost) -> list[str]:
    """What of ``host`` still exists (mounts, links, cgroups, root); [] when clean."""
    found = [f"mount {m}" for m in _mounts_under(host.root)]
    found += [f"link {link}" for link in _links_of(host)]
    found += [f"cgroup {c}" for c in _cgroup_dirs(host.cgroup_parent)]
    if host.root.exists():
        found.append(f"dir {host.root}")
    return found


def _dockerd_argv(host: TlsHost) -> list[str]:
    config = host.root / "daemon.json"
    config.write_text(
        json.dumps(
            {
                # Own key: else every daemon on the machine reports the same engine ID.
                "deprecated-key-path": str(host.root / "key.json"),
                "default-address-pools": [{"base": str(host.pool), "size": 24}],
                "shutdown-timeout": 3,
                "max-concurrent-downloads": 2,  # two cores: keep extra daemons light
            }
        )
    )
    server = host.certs / "server"
    return [
        find_program(PROGRAM),
        "--config-file", str(config),
        "--data-root", str(host.root / "data"),
        "--exec-root", str(host.root / "exec"),
        "--pidfile", str(host.root / "dockerd.self.pid"),
        "--containerd-namespace", f"basebench-{host.name}",
        "--containerd-plugins-namespace", f"basebench-{host.name}-plugins",
        "--cgroup-parent", host.cgroup_parent,
        # Stay off the host's firewall and sysctls; docker-proxy still publishes ports.
        "--iptables=false",
        "--ip-forward=false",
        "--bridge", host.bridge,
        "--tlsverify",
        "--tlscacert", str(host.tls.ca),
        "--tlscert", str(server / "server-cert.pem"),
        "--tlskey", str(server / "server-key.pem"),
        "-H", host.url,
        "-H", f"unix://{host.socket}",
    ]  # fmt: skip


def _write_certs(host: TlsHost) -> None:
    ca = make_ca(host.certs, host.name)
    make_server_cert(ca, host.certs / "server")
    make_client_cert(ca, host.certs / "client")


def _answers(host: TlsHost) -> bool:
    if host.pid() is None:
        raise InfraError("dockerd exited")
    try:
        connect(host.host_config(), ping_timeout=3).close()
    except HostUnavailable:
        return False
    return True


def _free_slot() -> int:
    # A slot is taken when any interface already has an address in its bridge subnet or pool.
    used = _interface_networks()
    for slot in range(MAX_SLOTS):
        bridge = ipaddress.ip_network(f"10.213.{slot}.0/24")
        pool = ipaddress.ip_network(f"10.{214 + slot}.0.0/16")
        if not any(n.overlaps(bridge) or n.overlaps(pool) for n in used):
            return slot
    raise InfraError(f"no free subnet for another tls host (all {MAX_SLOTS} slots in use)")


def _interface_networks() -> list[ipaddress.IPv4Network]:
    out = ip(["-j", "-4", "addr", "show"])
    networks = []
    for link in json.loads(out or "[]"):
        for addr in link.get("addr_info", []):
            networks.append(
                ipaddress.IPv4Network(f"{addr['local']}/{addr['prefixlen']}", strict=False)
            )
    return networks


def _create_bridge(host: TlsHost) -> None:
    gateway = f"{next(host.bridge_network.hosts())}/{host.bridge_network.prefixlen}"
    create_bridge(host.bridge, gateway)


def _links_of(host: TlsHost) -> list[str]:
    """Our bridge, plus bridges dockerd made for networks in our pool."""
    names = []
    for link in json.loads(ip(["-j", "-4", "addr", "show"]) or "[]"):
        for addr in link.get("addr_info", []):
            if ipaddress.ip_address(addr["local"]) in host.pool:
                names.append(link["ifname"])
    if host.bridge in link_names():
        names.append(host.bridge)
    return sorted(set(names))


def _delete_links(host: TlsHost) -> None:
    for name in _links_of(host):
        ip(["link", "delete", name], check=False)


def _kill_containers(host: TlsHost) -> None:
    # Quicker than dockerd's own shutdown (which stops containers one by one).
    if host.pid() is None:
        return
    try:
        client = connect(host.host_config(), timeout=10, ping_timeout=3)
        for container in client.containers.list():
            container.kill()
        client.close()
    except Exception:
        return  # the cgroup sweep in stop_tls_host catches whatever survives


def _kill_leftover_processes(host: TlsHost) -> None:
    """SIGKILL what a killed daemon leaves: shims, containerd, proxies, container processes."""
    pids = set(_cgroup_pids(host.cgroup_parent))
    root = str(host.root)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [a.decode(errors="replace") for a in argv]
        if Path(words[0]).name not in DOCKER_PROGRAMS:
            continue  # only ever the engine's own programs; container processes come from cgroups
        if any(root in w for w in words) or _is_our_proxy(words, host):
            pids.add(int(proc.name))
    pids.discard(os.getpid())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(p) for p in pids), 10, interval=0.05)
    for pid in pids:
        _reap(pid)


def _is_our_proxy(argv: list[str], host: TlsHost) -> bool:
    if not argv[0].endswith("docker-proxy") or "-container-ip" not in argv:
        return False
    address = ipaddress.ip_address(argv[argv.index("-container-ip") + 1])
    return address in host.bridge_network or address in host.pool


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    mounts = []
    for line in Path("/proc/mounts").read_text().splitlines():
        # Fields escape blanks as octal (\040); decode before comparing paths.
        point = line.split()[1].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            mounts.append(point)
    return mounts


def _unmount_under(root: Path) -> None:
    # Deepest first; lazy so a busy mount does not block the rest. Repeat because
    # a bind mount may hide another one at the same point.
    for _ in range(5):
        mounts = _mounts_under(root)
        if not mounts:
            return
        umount = find_program("umount")
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run([umount, "--lazy", point], capture_output=True)
    remaining = _mounts_under(root)
    if remaining:
        raise InfraError(f"could not unmount {remaining[0]} (and {len(remaining) - 1} more)")


def _cgroup_dirs(parent: str) -> list[Path]:
    dirs = []
    for hierarchy in _cgroup_mounts():
        top = hierarchy / parent
        if top.is_dir():
            dirs += [p for p in top.rglob("*") if p.is_dir()] + [top]
    return dirs


def _cgroup_mounts() -> list[Path]:
    points = []
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if fields[2] in ("cgroup", "cgroup2"):
            points.append(Path(fields[1]))
    return points


def _cgroup_pids(parent: str) -> list[int]:
    return [pid for directory in _cgroup_dirs(parent) for pid in _procs(directory)]


def _procs(directory: Path) -> list[int]:
    """The pids in one cgroup; none when it is gone (a step or container just ended)."""
    try:
        return [int(p) for p in (directory / "cgroup.procs").read_text().split()]
    except OSError:
        return []


def _remove_cgroups(parent: str) -> None:
    # rmdir deepest first; a cgroup with processes left refuses, so retry briefly.
    deadline = time.monotonic() + 10
    while True:
        dirs = sorted(_cgroup_dirs(parent), key=lambda p: len(p.parts), reverse=True)
        for directory in dirs:
            with contextlib.suppress(OSError):
                directory.rmdir()
        if not _cgroup_dirs(parent):
            return
        if time.monotonic() > deadline:
            raise InfraError(f"could not remove cgroup {_cgroup_dirs(parent)[0]}")
        time.sleep(0.1)


def _log_tail(log: Path) -> str:
    try:
        lines = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
