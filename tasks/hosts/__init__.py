"""Reaching Docker hosts: how a matrix names them (``config``), how basebench reaches them
(``connection``: one ``DockerHost`` per transport, ``ssh_tunnel``), whether they answer
and what they run on (``health``), limits shared by every flow run on a Prefect server
(``limits``), and what dead runs left on them (``sweep``).

Nothing here belongs to one run: a run's session on a host, its slots and its lanes are
``tasks.sessions``, one layer up. The stages, below both, get what they need from the
layers above as arguments.

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
