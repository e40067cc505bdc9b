"""``basebench hosts CONFIG``: ask every Docker host of a matrix whether it answers;
``basebench gc CONFIG``: remove what dead runs left on those hosts and in the cache."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from tasks.config_file import ConfigError
from tasks.hosts.health import HostHealth, check_hosts
from tasks.hosts.sweep import DEFAULT_MAX_AGE, RunLeases, sweep_archives, sweep_hosts
from tasks.matrix import load_matrix
from tasks.units import format_bytes

HOST_OPTION = (
    "NAME=URL[,max_parallel=N][,max_builds=N][,max_analyses=N][,tls=DIR][,insecure=true]"
    "[,analysis=auto|flow|host][,socket=PATH]"
)
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
    gc = subparsers.add_parser(
        "gc", help="remove containers, networks, images and archives of runs that died"
    )
    gc.add_argument("config", help="matrix YAML file whose hosts and cache to sweep")
    gc.add_argument(
        "--older-than",
        type=float,
        default=DEFAULT_MAX_AGE.total_seconds() / 3600,
        metavar="HOURS",
        help="a run with no lease on this machine counts as dead after this (default 24)",
    )
    gc.add_argument("--dry-run", action="store_true", help="list what would go, remove nothing")
    gc.set_defaults(func=cmd_gc)
    return parser


def cmd_gc(args: argparse.Namespace) -> int:
    """One line per host and one for this machine's archives; 1 when a host is unreachable."""
    if args.older_than <= 0:
        raise ConfigError(f"--older-than {args.older_than}: must be more than 0 hours")
    config = load_matrix(Path(args.config))
    leases = RunLeases(config.cache_dir, timedelta(hours=args.older_than))
    verb = "would remove" if args.dry_run else "removed"
    code = 0
    for host in sweep_hosts(config.hosts, leases.alive, args.dry_run):
        if host.swept is None:
            print(f"{host.host}: unreachable: {host.error}")
            code = 1
        else:
            print(f"{host.host}: {verb} {host.swept.summary()}")
    swept = sweep_archives(config.cache_dir / "archives", leases.alive, args.dry_run)
    print(f"archives in {config.cache_dir / 'archives'}: {verb} {swept.summary()}")
    return code


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


# Host options HostConfig takes as given (it checks numbers, bounds and choices).
PLAIN = ("max_parallel", "max_builds", "max_analyses", "analysis", "socket")


def parse_host_option(value: str) -> dict[str, Any]:
    """One ``--host`` value, ``HOST_OPTION``."""
    head, *options = value.split(",")
    name, sep, url = head.partition("=")
    if not sep or not name or not url:
        raise ConfigError(f"--host {value!r}: expected {HOST_OPTION}")
    entry: dict[str, Any] = {"name": name, "url": url}
    for option in options:
        key, sep, setting = option.partition("=")
        if not sep or key not in (*PLAIN, "tls", "insecure"):
            raise ConfigError(
                f"--host {value!r}: unknown option {option!r}; allowed: max_parallel=N, "
                "max_builds=N, max_analyses=N, tls=DIR, insecure=true, "
                "analysis=auto|flow|host, socket=PATH"
            )
        if key == "tls":
            entry["tls"] = {k: str(Path(setting) / f) for k, f in TLS_FILES.items()}
        elif key == "insecure":
            if setting not in ("true", "false"):
                raise ConfigError(f"--host {value!r}: insecure must be true or false")
            entry["insecure"] = setting == "true"
        else:
            entry[key] = setting
    return entry
