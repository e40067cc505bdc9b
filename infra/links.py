"""Network links the infra daemons own: the ``ip`` command, and bridges made for them."""

from __future__ import annotations

import json
import subprocess

from infra.errors import InfraError
from tasks.programs import find_program


def ip(args: list[str], check: bool = True) -> str:
    """Run ``ip ARGS``; its stdout, or ``InfraError`` with its stderr when ``check``."""
    proc = subprocess.run([find_program("ip"), *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise InfraError(f"ip {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout


def link_names() -> list[str]:
    """Names of every network interface."""
    return [link["ifname"] for link in json.loads(ip(["-j", "link", "show"]) or "[]")]


def create_bridge(name: str, address: str) -> None:
    """Create bridge ``name`` with ``address`` (CIDR) and bring it up; a leftover of the
    same name (from a crash) is replaced."""
    if name in link_names():
        ip(["link", "delete", name])
    ip(["link", "add", name, "type", "bridge"])
    ip(["addr", "add", address, "dev", name])
    ip(["link", "set", name, "up"])
