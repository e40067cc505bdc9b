"""The local image registry: Debian's ``docker-registry`` on 127.0.0.1, without auth."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from infra.process import running_pid, start_daemon, stop_daemon, wait_until
from infra.registry_api import RegistryAPI
from tasks.programs import find_program

PROGRAM = "docker-registry"

# The packaged /etc/docker/registry/config.yml turns on htpasswd auth; ours has no auth.
CONFIG = """\
version: 0.1
log:
  level: info
  fields:
    service: registry
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  cache:
    blobdescriptor: inmemory
http:
  addr: 127.0.0.1:{port}
  headers:
    X-Content-Type-Options: [nosniff]
"""


@dataclass(frozen=True)
class LocalRegistry:
    """One registry process: storage in ``storage``, pidfile/log/config in ``state_dir``."""

    port: int
    storage: Path
    state_dir: Path

    @property
    def address(self) -> str:
        """``host:port`` as used in image references."""
        return f"127.0.0.1:{self.port}"

    @property
    def pidfile(self) -> Path:
        return self.state_dir / f"registry-{self.port}.pid"

    @property
    def log(self) -> Path:
        return self.state_dir / f"registry-{self.port}.log"

    @property
    def config(self) -> Path:
        return self.state_dir / f"registry-{self.port}.yml"

    def api(self) -> RegistryAPI:
        """An HTTP client for this registry."""
        return RegistryAPI(self.address)

    def pid(self) -> int | None:
        """The pid of our registry process when it runs."""
        return running_pid(self.pidfile, PROGRAM)

    def start(self, timeout: float = 20.0) -> bool:
        """Start unless ours already runs; True when this call started it."""
        if self.pid() is not None and self.api().healthy():
            return False
        self.stop()  # a dead or unhealthy leftover of ours
        check_port_free(self.port)
        self.storage.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(CONFIG.format(storage=self.storage, port=self.port))
        start_daemon([find_program(PROGRAM), "serve", str(self.config)], self.log, self.pidfile)
        if not wait_until(lambda: self.pid() is None or self.api().healthy(), timeout):
            self.stop()
            raise InfraError(f"registry on {self.address} did not answer; see {self.log}")
        if self.pid() is None:
            raise InfraError(f"registry on {self.address} exited at start; see {self.log}")
        return True

    def stop(self) -> bool:
        """Stop our registry process; True if one was running."""
        return stop_daemon(self.pidfile, PROGRAM)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_port_free(port: int) -> None:
    """InfraError naming the port when something listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Like the registry itself, ignore connections of a previous run in TIME_WAIT.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InfraError(
                    f"port {port} on 127.0.0.1 is in use by another process; "
                    "stop it or choose another with --port"
                ) from exc
            raise InfraError(f"cannot bind port {port} on 127.0.0.1: {exc.strerror}") from exc
