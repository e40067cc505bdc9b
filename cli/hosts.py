"""``basebench hosts CONFIG``: ask every Docker host of a matrix whether it answers."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tasks.hosts.health import HostHealth, check_hosts
from tasks.matrix import ConfigError, load_matrix
from tasks.render.units import format_bytes

HOST_OPTION = "NAME=URL[,max_parallel=N][,tls=DIR][,insecure=true]"
TLS_FILES = {"ca": "ca.pem", "cert": "cert.pem", "key": "key.pem"}  # the Docker CLI's names


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hosts`` on the CLI's subparsers (``add_subparsers()`` result)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "hosts", help="check that every Docker host of a matrix answers; show version and disk"
    )
    parser.add_argument("config", help="matrix YAML file, e.g. configs/default.yaml")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for each host (default 5)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per host")
    parser.set_defaults(func=func)
    return parser


def func(args: argparse.Namespace) -> int:
    """Print one line per host; 0 when at least one host answers, else 1."""
    config = load_matrix(Path(args.config))
    health = check_hosts(config.hosts, timeout=args.timeout)
    if args.json:
        print(json.dumps([asdict(h) for h in health], indent=2))
    else:
        print("\n".join(format_health(health)))
    return 0 if any(h.ok for h in health) else 1


def format_health(health: list[HostHealth]) -> list[str]:
    """Aligned lines: name, ok/unreachable, version, platform, free disk (or the error)."""
    width = max((len(h.name) for h in health), default=0)
    lines = []
    for h in health:
        if h.ok:
            details = f"{h.version}  {h.platform}  free {format_bytes(h.free_disk_bytes)}"
            lines.append(f"{h.name:<{width}}  ok           {details}  ({h.url})")
        else:
            lines.append(f"{h.name:<{width}}  unreachable  {h.error}")
    return lines


def parse_host_options(values: list[str]) -> list[dict[str, Any]]:
    """``--host`` values -> raw ``hosts:`` entries (validated later with the matrix).

    ``tls=DIR`` means DIR/ca.pem, DIR/cert.pem and DIR/key.pem, as ``docker --tlsverify``
    reads them from ``DOCKER_CERT_PATH``.
    """
    entries = [parse_host_option(value) for value in values]
    names = [entry["name"] for entry in entries]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"--host: host name {duplicates[0]!r} given twice")
    return entries


def parse_host_option(value: str) -> dict[str, Any]:
    """One ``--host NAME=URL[,max_parallel=N][,tls=DIR][,insecure=true]`` value."""
    head, *options = value.split(",")
    name, sep, url = head.partition("=")
    if not sep or not name or not url:
        raise ConfigError(f"--host {value!r}: expected {HOST_OPTION}")
    entry: dict[str, Any] = {"name": name, "url": url}
    for option in options:
        key, sep, setting = option.partition("=")
        if not sep or key not in ("max_parallel", "tls", "insecure"):
            raise ConfigError(
                f"--host {value!r}: unknown option {option!r}; allowed: max_parallel=N, "
                "tls=DIR, insecure=true"
            )
        if key == "tls":
            entry["tls"] = {k: str(Path(setting) / f) for k, f in TLS_FILES.items()}
        elif key == "insecure":
            if setting not in ("true", "false"):
                raise ConfigError(f"--host {value!r}: insecure must be true or false")
            entry["insecure"] = setting == "true"
        else:
            entry["max_parallel"] = setting  # pydantic checks the number and its bounds
    return entry
