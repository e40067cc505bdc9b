"""Docker hosts: how a matrix names them (``config``), how basebench reaches them
(``connection``: one ``DockerHost`` per transport), whether they answer (``health``),
a run's footprint on each (``session``), slots and failover (``pool``), and limits
shared by every flow run on a Prefect server (``limits``).

The names below are the public API (infra/ and other callers use only these).
"""

from tasks.hosts.config import DEFAULT_URL, HostConfig, TlsFiles, default_host
from tasks.hosts.connection import (
    DockerHost,
    HostUnavailable,
    connect,
    describe_error,
    docker_host,
    responds,
)
from tasks.hosts.health import HostHealth, check_host, check_hosts

__all__ = [
    "DEFAULT_URL",
    "DockerHost",
    "HostConfig",
    "HostHealth",
    "HostUnavailable",
    "TlsFiles",
    "check_host",
    "check_hosts",
    "connect",
    "default_host",
    "describe_error",
    "docker_host",
    "responds",
]
