"""Docker hosts as a matrix names them: validated models, and Docker CLI contexts.

A host is a local socket (``unix://``), a TLS-protected ``tcp://host:port``, an
``ssh://user@host`` engine, or a Docker CLI context by name. With no host named, the
default is the engine the docker CLI would use (``default_host``). Certificate and key
*paths* may appear in errors and reprs; their contents are never read here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from docker.context.config import get_current_context_name
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from tasks.hosts.ssh_tunnel import SshOptions

DEFAULT_URL = "unix:///var/run/docker.sock"
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
    ssh: SshOptions | None = None  # identity and known hosts for ssh:// urls
    insecure: bool = False
    max_parallel: int = Field(2, ge=1, le=64)  # cells in flight on the host
    # Lanes (tasks/sessions/lanes.py): builds and analyses (save, inspect, scan) at once.
    max_builds: int = Field(1, ge=1, le=64)
    max_analyses: int = Field(1, ge=1, le=64)
    labels: dict[LabelKey, str] = {}
    # Where probes publish container ports and connect to them; see _default_publish_address.
    publish_address: str = ""
    # Where save, inspect and scan run: "flow" streams each image to this machine, "host"
    # analyses it in a container beside it (tasks/stages/analyse_on_host.py); "auto": flow
    # for an engine on this machine, where that is faster (benchmarks/README.md), else host.
    analysis: Literal["auto", "flow", "host"] = "auto"
    # The engine's unix socket as a path on the host itself, mounted into the analysis
    # container; default: a unix:// url's path, ssh's remote_socket, /var/run/docker.sock.
    socket: str = ""

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
        if self.ssh is not None and scheme != "ssh":
            raise ValueError(f"ssh: applies to ssh:// urls only, not {scheme}:// ({self.url})")
        if scheme == "tcp" and self.tls is None and not self.insecure:
            raise ValueError(
                f"url {self.url}: plain tcp without tls gives root on the engine to anyone who"
                " can reach the port; add tls: {ca, cert, key} or set insecure: true"
            )
        for key in ("max_builds", "max_analyses"):
            if getattr(self, key) > self.max_parallel:
                raise ValueError(
                    f"{key} is {getattr(self, key)} but max_parallel is {self.max_parallel}:"
                    f" each build or analysis is a cell in flight; {key} must be at most"
                    " max_parallel"
                )
        if not self.publish_address:
            # Frozen model: the default is computed once, here, from the url.
            object.__setattr__(self, "publish_address", _default_publish_address(self.url))
        if not self.socket:
            known = {"unix": urlsplit(self.url).path, "ssh": self.ssh and self.ssh.remote_socket}
            fallback = DEFAULT_URL.removeprefix("unix://")
            object.__setattr__(self, "socket", known.get(scheme) or fallback)
        if not self.socket.startswith("/"):
            raise ValueError(f"socket {self.socket!r}: expected an absolute path on the host")
        return self

    @property
    def analyses_on_host(self) -> bool:
        """True when save, inspect and scan run in a container on the host."""
        return self.analysis == "host" or (self.analysis == "auto" and not self.is_local)

    @property
    def is_local(self) -> bool:
        """True when the engine runs on this machine (unix socket or a loopback tcp url)."""
        return _is_loopback_url(self.url)


def resolve_context(name: str, config_dir: Path | None = None) -> dict[str, Any]:
    """The ``url`` (and ``tls`` files when the context has them) of a Docker CLI context.

    Contexts live in ``$DOCKER_CONFIG`` (default ``~/.docker``): ``contexts/meta/<sha256
    of name>/meta.json`` names the endpoint, ``contexts/tls/<same>/docker/`` holds
    ``ca.pem``, ``cert.pem`` and ``key.pem``.
    """
    if name == "default":
        return {"url": os.environ.get("DOCKER_HOST") or DEFAULT_URL}
    # Read as the docker CLI does: the SDK's own loader looks for the store beside an
    # existing config.json only, and misses contexts on machines that have none.
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


def default_host() -> HostConfig:
    """The engine the docker CLI would use: ``DOCKER_HOST`` (with ``DOCKER_CERT_PATH``
    for TLS), else the context named by ``DOCKER_CONTEXT``, else the CLI's current
    context (``currentContext`` in its config.json), else the default socket."""
    url = os.environ.get("DOCKER_HOST")
    if url:
        certs = os.environ.get("DOCKER_CERT_PATH")
        tls = (
            {"ca": f"{certs}/ca.pem", "cert": f"{certs}/cert.pem", "key": f"{certs}/key.pem"}
            if certs and url.startswith("tcp://")
            else None
        )
        return HostConfig.model_validate({"url": url, **({"tls": tls} if tls else {})})
    context = os.environ.get("DOCKER_CONTEXT") or get_current_context_name()
    if context and context != "default":
        return HostConfig(context=context)
    return HostConfig()
