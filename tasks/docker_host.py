"""Docker hosts: how a matrix names them, how we connect, and whether they are healthy.

Every stage talks to its host through ``connect``; nothing else constructs a client.
A host is a local socket (``unix://``), a TLS-protected ``tcp://host:port``, an
``ssh://user@host`` engine, or a Docker CLI context by name. Certificate and key
*paths* may appear in errors and reprs; their contents are never read here at all
(the SDK hands the paths to the ssl module).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import docker
import docker.constants
import docker.tls
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

DEFAULT_URL = "unix:///var/run/docker.sock"
MIN_API_VERSION = docker.constants.MINIMUM_DOCKER_API_VERSION
DEFAULT_API_VERSION = docker.constants.DEFAULT_DOCKER_API_VERSION
SCHEMES = ("unix", "tcp", "ssh")
LOOPBACK = "127.0.0.1"
LabelKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._/-]{0,62}$")]


class TlsFiles(BaseModel):
    """Client side of mutual TLS: the CA that signed the engine, our certificate and key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ca: Path
    cert: Path
    key: Path

    @field_validator("ca", "cert", "key")
    @classmethod
    def _exists(cls, path: Path) -> Path:
        # The loc (hosts.N.tls.<key>) names the key; the message names the path only.
        if not path.expanduser().is_file():
            raise ValueError(f"no such file: {path}")
        return path.expanduser()


class HostConfig(BaseModel):
    """A Docker engine that builds and runs cells.

    Give either ``url`` or ``context`` (a Docker CLI context name). Plain ``tcp://``
    without ``tls`` is refused unless ``insecure: true``: such an engine is root for
    anyone who can reach the port.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")] = "local"
    url: str = DEFAULT_URL
    context: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")] | None = (
        None
    )
    tls: TlsFiles | None = None
    insecure: bool = False
    max_parallel: int = Field(2, ge=1, le=64)
    labels: dict[LabelKey, str] = {}
    # Where probes publish container ports and connect to them; see _default_publish_address.
    publish_address: str = ""

    @model_validator(mode="before")
    @classmethod
    def _resolve_context(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("context") is None:
            return data
        if "url" in data:
            raise ValueError("give either url or context, not both")
        resolved = resolve_context(str(data["context"]))
        tls = data.get("tls", resolved.get("tls"))
        return {**data, "url": resolved["url"], **({"tls": tls} if tls else {})}

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES:
            raise ValueError(f"url {url!r}: scheme must be one of {', '.join(SCHEMES)}")
        if parts.scheme == "unix" and not parts.path:
            raise ValueError(f"url {url!r}: expected unix:///path/to/docker.sock")
        if parts.scheme == "tcp" and (not parts.hostname or parts.port is None):
            raise ValueError(f"url {url!r}: expected tcp://HOST:PORT")
        if parts.scheme == "ssh" and not parts.hostname:
            raise ValueError(f"url {url!r}: expected ssh://[USER@]HOST[:PORT]")
        return url

    @model_validator(mode="after")
    def _check_transport(self) -> HostConfig:
        scheme = urlsplit(self.url).scheme
        if self.tls is not None and scheme != "tcp":
            raise ValueError(f"tls: applies to tcp:// urls only, not {scheme}:// ({self.url})")
        if scheme == "tcp" and self.tls is None and not self.insecure:
            raise ValueError(
                f"url {self.url}: plain tcp without tls gives root on the engine to anyone who"
                " can reach the port; add tls: {ca, cert, key} or set insecure: true"
            )
        if not self.publish_address:
            # Frozen model: the default is computed once, here, from the url.
            object.__setattr__(self, "publish_address", _default_publish_address(self.url))
        return self

    @property
    def is_local(self) -> bool:
        """True when the engine runs on this machine (unix socket or a loopback tcp url)."""
        return _is_loopback_url(self.url)


class HostUnavailable(ConnectionError):
    """The Docker engine did not answer; the message names host, url and cause."""


@dataclass(frozen=True)
class HostHealth:
    """What a host said when asked: reachable or not, and what it runs on."""

    name: str
    url: str
    ok: bool
    version: str | None = None  # engine version, e.g. "20.10.24+dfsg1"
    platform: str | None = None  # os/arch as in image platforms, e.g. "linux/amd64"
    free_disk_bytes: int | None = None  # free bytes where the engine keeps images; None = unknown
    seconds: float = 0.0  # how long the check took
    error: str | None = None  # one line, when not ok


def connect(
    host: HostConfig, timeout: int = 600, ping_timeout: float = 10.0
) -> docker.DockerClient:
    """A client for ``host`` that has answered within ``ping_timeout`` seconds.

    ``timeout`` then applies to every later API call (builds can be long). Raises
    ``HostUnavailable`` with one line: host name, url and the cause.
    """
    try:
        version = _negotiate_api_version(host, ping_timeout)
    except Exception as exc:
        raise HostUnavailable(f"{host.name} ({host.url}): {describe_error(exc)}") from exc
    return _client(host, timeout, version)


def responds(host: HostConfig, timeout: float = 5.0) -> bool:
    """Whether ``host`` answers a ping within ``timeout`` seconds, on a fresh connection.

    For "is this host lost?": a run's own client waits up to its long API timeout and
    may reuse a pooled connection, so it would be slow to notice a hung engine.
    """
    try:
        client = _client(host, max(timeout, 0.1), MIN_API_VERSION)
    except Exception:
        return False
    try:
        return bool(client.ping())
    except Exception:
        return False
    finally:
        client.close()


def _negotiate_api_version(host: HostConfig, ping_timeout: float) -> str:
    # DockerClient(version=None) asks the engine for its API version inside __init__,
    # before we can set trust_env = False, so this machine's REQUESTS_CA_BUNDLE would
    # break TLS there. Ask with a pinned old version first, then pin what both speak.
    probe = _client(host, max(ping_timeout, 0.1), MIN_API_VERSION)
    try:
        server = str(probe.api.version(api_version=False)["ApiVersion"])
    finally:
        probe.close()
    return str(min(server, DEFAULT_API_VERSION, key=_version_key))


def _client(host: HostConfig, timeout: float, version: str) -> docker.DockerClient:
    client = docker.DockerClient(
        base_url=host.url,
        version=version,
        timeout=timeout,  # requests takes float seconds
        tls=_tls_config(host.tls) if host.tls else False,
        use_ssh_client=host.url.startswith("ssh://"),
    )
    # This machine's REQUESTS_CA_BUNDLE would otherwise override the engine's TLS CA.
    client.api.trust_env = False
    return client


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def check_host(host: HostConfig, timeout: float = 5.0) -> HostHealth:
    """Ask ``host`` for its version, platform and free disk; never raises."""
    started = time.monotonic()
    try:
        client = connect(host, timeout=int(max(timeout, 1)), ping_timeout=timeout)
    except HostUnavailable as exc:
        return HostHealth(host.name, host.url, False, seconds=_since(started), error=str(exc))
    try:
        version = client.version()
        info = client.info()
        free = _free_disk(host, info)
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
        free_disk_bytes=free,
        seconds=_since(started),
    )


def check_hosts(hosts: list[HostConfig], timeout: float = 5.0) -> list[HostHealth]:
    """``check_host`` for every host at once; results in the order of ``hosts``."""
    if not hosts:
        return []
    with ThreadPoolExecutor(max_workers=min(len(hosts), 16)) as pool:
        return list(pool.map(lambda h: check_host(h, timeout), hosts))


def describe_error(exc: BaseException) -> str:
    """One line naming the cause of a failed connection, the common ones in plain words."""
    text = " ".join(str(exc).split())
    chain = _chain_text(exc)
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


def resolve_context(name: str, config_dir: Path | None = None) -> dict[str, Any]:
    """The ``url`` (and ``tls`` files when the context has them) of a Docker CLI context.

    Contexts live in ``$DOCKER_CONFIG`` (default ``~/.docker``): ``contexts/meta/<sha256
    of name>/meta.json`` names the endpoint, ``contexts/tls/<same>/docker/`` holds
    ``ca.pem``, ``cert.pem`` and ``key.pem``.
    """
    if name == "default":
        return {"url": os.environ.get("DOCKER_HOST") or DEFAULT_URL}
    base = config_dir or Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    meta_dir = base / "contexts" / "meta"
    for meta_file in sorted(meta_dir.glob("*/meta.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        if meta.get("Name") == name:
            return _context_endpoint(name, meta, base)
    known = [*sorted(_context_names(meta_dir)), "default"]
    raise ValueError(f"context {name!r} not found in {meta_dir}; known: {', '.join(known)}")


def _context_endpoint(name: str, meta: dict[str, Any], base: Path) -> dict[str, Any]:
    endpoint = meta.get("Endpoints", {}).get("docker", {})
    url = endpoint.get("Host")
    if not url:
        raise ValueError(f"context {name!r} has no docker endpoint Host")
    if endpoint.get("SkipTLSVerify"):
        raise ValueError(f"context {name!r} skips TLS verification; basebench always verifies")
    tls_dir = base / "contexts" / "tls" / hashlib.sha256(name.encode()).hexdigest() / "docker"
    files = {"ca": tls_dir / "ca.pem", "cert": tls_dir / "cert.pem", "key": tls_dir / "key.pem"}
    if all(p.is_file() for p in files.values()):
        return {"url": url, "tls": {k: str(p) for k, p in files.items()}}
    return {"url": url}


def _context_names(meta_dir: Path) -> list[str]:
    names = []
    for meta_file in meta_dir.glob("*/meta.json"):
        try:
            names.append(str(json.loads(meta_file.read_text()).get("Name")))
        except (OSError, ValueError):
            continue
    return names


def _tls_config(files: TlsFiles) -> docker.tls.TLSConfig:
    return docker.tls.TLSConfig(
        client_cert=(str(files.cert), str(files.key)), ca_cert=str(files.ca), verify=True
    )


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


def _default_publish_address(url: str) -> str:
    # Probes publish container ports on this address and connect to it: loopback when the
    # engine is on this machine, else the engine's own host name (its ports are there).
    if _is_loopback_url(url):
        return LOOPBACK
    return urlsplit(url).hostname or LOOPBACK


def _is_loopback_url(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return True
    hostname = parts.hostname or ""
    if hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def _chain_text(exc: BaseException) -> str:
    parts = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return " | ".join(parts)


def _since(started: float) -> float:
    return round(time.monotonic() - started, 3)
