"""How basebench reaches a Docker engine: one interface, one implementation per transport.

``DockerHost`` is the swappable part: ``docker_host(config)`` picks the implementation
by the url's scheme (``HOST_KINDS``), and every implementation passes the suite in
``conformance.hosts``. Stages get their ``docker.DockerClient`` from ``connect``;
nothing else constructs a client.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import ClassVar

import docker
import docker.constants
import docker.errors
import docker.tls

from tasks.hosts.config import HostConfig, TlsFiles
from tasks.hosts.ssh_tunnel import SshTunnel, TunnelError

MIN_API_VERSION = docker.constants.MINIMUM_DOCKER_API_VERSION
DEFAULT_API_VERSION = docker.constants.DEFAULT_DOCKER_API_VERSION


class HostUnavailable(ConnectionError):
    """The Docker engine did not answer; the message names host, url and cause."""


class DockerHost(ABC):
    """One Docker engine, reached over one kind of transport.

    Subclasses implement ``_client``; connecting, pinging and version negotiation are
    shared. A client from ``connect`` releases its transport when closed.
    """

    scheme: ClassVar[str]

    def __init__(self, config: HostConfig) -> None:
        self.config = config

    @abstractmethod
    def _client(self, timeout: float, version: str) -> docker.DockerClient:
        """A client speaking API ``version``; every call waits at most ``timeout`` s."""

    def connect(self, timeout: int = 600, ping_timeout: float = 10.0) -> docker.DockerClient:
        """A client for this engine that has answered within ``ping_timeout`` seconds.

        ``timeout`` then applies to every later API call (builds can be long). Raises
        ``HostUnavailable`` with one line: host name, url and the cause.
        """
        try:
            version = self._negotiate_api_version(ping_timeout)
            return self._client(timeout, version)
        except Exception as exc:
            raise HostUnavailable(f"{self}: {describe_error(exc)}") from exc

    def responds(self, timeout: float = 5.0) -> bool:
        """Whether the engine answers a ping within ``timeout`` seconds, on a fresh
        connection (a run's own client would wait its long API timeout)."""
        try:
            client = self._client(max(timeout, 0.1), MIN_API_VERSION)
        except Exception:
            return False
        try:
            return bool(client.ping())
        except Exception:
            return False
        finally:
            client.close()

    def _negotiate_api_version(self, ping_timeout: float) -> str:
        # DockerClient(version=None) asks the engine inside __init__, before trust_env can
        # be turned off (this machine's REQUESTS_CA_BUNDLE would break TLS there): ask
        # with a pinned old version first, then pin what both sides speak.
        probe = self._client(max(ping_timeout, 0.1), MIN_API_VERSION)
        try:
            server = str(probe.api.version(api_version=False)["ApiVersion"])
        finally:
            probe.close()
        return str(min(server, DEFAULT_API_VERSION, key=_version_key))

    @contextlib.contextmanager
    def cli_arguments(self) -> Iterator[list[str]]:
        """Global ``docker`` CLI options that reach this engine, valid inside the block."""
        yield ["--host", self.config.url]

    def __str__(self) -> str:
        return f"{self.config.name} ({self.config.url})"


def _sdk_client(
    url: str,
    timeout: float,
    version: str,
    tls: TlsFiles | None = None,
    kind: type[docker.DockerClient] = docker.DockerClient,
) -> docker.DockerClient:
    client = kind(
        base_url=url,
        version=version,
        timeout=timeout,  # requests takes float seconds
        tls=_tls_config(tls) if tls else False,
    )
    # This machine's REQUESTS_CA_BUNDLE would otherwise override the engine's TLS CA.
    client.api.trust_env = False
    return client


class SocketHost(DockerHost):
    """An engine on this machine's unix socket."""

    scheme = "unix"

    def _client(self, timeout: float, version: str) -> docker.DockerClient:
        return _sdk_client(self.config.url, timeout, version)


class TcpHost(DockerHost):
    """An engine on ``tcp://host:port``, with mutual TLS (or plain, when ``insecure``)."""

    scheme = "tcp"

    def _client(self, timeout: float, version: str) -> docker.DockerClient:
        return _sdk_client(self.config.url, timeout, version, self.config.tls)

    @contextlib.contextmanager
    def cli_arguments(self) -> Iterator[list[str]]:
        tls = self.config.tls
        if tls is None:
            yield ["--host", self.config.url]
            return
        files = ["--tlscacert", str(tls.ca), "--tlscert", str(tls.cert), "--tlskey", str(tls.key)]
        yield ["--host", self.config.url, "--tlsverify", *files]


class SshHost(DockerHost):
    """An engine behind ``ssh://user@host``: its socket forwarded by OpenSSH.

    The Docker SDK's own ssh transport reads only the user's ~/.ssh; a forwarded socket
    takes the host's ``ssh`` options (identity, known hosts) from the matrix.
    """

    scheme = "ssh"

    def _client(self, timeout: float, version: str) -> docker.DockerClient:
        tunnel = SshTunnel(self.config.url, self.config.ssh)
        try:
            client = _sdk_client(tunnel.open(timeout), timeout, version, kind=_TunnelledClient)
        except Exception:
            tunnel.close()
            raise
        client.tunnel = tunnel
        return client

    @contextlib.contextmanager
    def cli_arguments(self) -> Iterator[list[str]]:
        # The docker CLI's own ssh transport has the SDK's limits: forward the socket too.
        with SshTunnel(self.config.url, self.config.ssh) as url:
            yield ["--host", url]


class _TunnelledClient(docker.DockerClient):  # type: ignore[misc]  # the SDK is untyped
    """A client that closes its ssh tunnel with itself."""

    tunnel: SshTunnel | None = None

    def close(self) -> None:
        try:
            super().close()
        finally:
            if self.tunnel is not None:
                self.tunnel.close()


HOST_KINDS: dict[str, type[DockerHost]] = {
    kind.scheme: kind for kind in (SocketHost, TcpHost, SshHost)
}


def docker_host(config: HostConfig) -> DockerHost:
    """The ``DockerHost`` for ``config``, chosen by its url's scheme."""
    return HOST_KINDS[config.url.partition("://")[0]](config)


def connect(
    host: HostConfig, timeout: int = 600, ping_timeout: float = 10.0
) -> docker.DockerClient:
    """``docker_host(host).connect(...)``: a client that has answered a ping."""
    return docker_host(host).connect(timeout, ping_timeout)


def responds(host: HostConfig, timeout: float = 5.0) -> bool:
    """``docker_host(host).responds(timeout)``: is the engine there right now?"""
    return docker_host(host).responds(timeout)


def describe_error(exc: BaseException) -> str:
    """One line naming the cause of a failed connection, the common ones in plain words."""
    text = " ".join(str(exc).split())
    chain = _chain_text(exc)
    if isinstance(exc, TunnelError):
        return text
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        return " ".join(str(exc.explanation).split())  # the engine's words, not the HTTP call
    if "CERTIFICATE_VERIFY_FAILED" in chain or "certificate verify failed" in chain:
        return (
            "TLS: certificate verify failed: the engine's certificate is not signed by tls.ca"
            " (or does not name this address)"
        )
    # TLS 1.3: an engine refusing our client certificate sends an alert, or (depending on
    # timing) the client only sees the connection close mid-handshake.
    rejected = ("certificate required", "bad certificate", "EOF occurred in violation of protocol")
    if any(text in chain for text in rejected):
        return "TLS: the engine rejected the client certificate (tls.cert/tls.key) or got none"
    if "client_cert" in chain and "must be provided" in chain:
        return "TLS: client certificate or key file missing (tls.cert, tls.key)"
    if "Connection refused" in chain:
        return "connection refused: nothing listens there"
    if "No such file or directory" in chain:
        return "no such socket: nothing listens there"
    if "timed out" in chain.lower() or "timeout" in chain.lower():
        return "no answer: timed out"
    return text or type(exc).__name__


def _tls_config(files: TlsFiles) -> docker.tls.TLSConfig:
    return docker.tls.TLSConfig(
        client_cert=(str(files.cert), str(files.key)), ca_cert=str(files.ca), verify=True
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def _chain_text(exc: BaseException) -> str:
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


__all__ = [
    "HOST_KINDS",
    "DockerHost",
    "HostUnavailable",
    "SocketHost",
    "SshHost",
    "TcpHost",
    "connect",
    "describe_error",
    "docker_host",
    "responds",
]
