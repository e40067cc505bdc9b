"""Install the Debian packages of the declared programs (tasks/programs.tsv) that are missing."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from infra.errors import InfraError
from tasks.programs import Program, ProgramMissing, find_program, programs

DEBIAN_VERSION = Path("/etc/debian_version")
# Another apt run (a parallel session, unattended upgrades) may hold dpkg's lock for a while.
APT_OPTIONS = ["-q", "-o", "DPkg::Lock::Timeout=300"]


def missing(needed_for: Iterable[str]) -> dict[str, list[Program]]:
    """Debian package -> its programs of the ``needed_for`` rows that are not installed."""
    by_package: dict[str, list[Program]] = {}
    for kind in sorted(needed_for):
        for program in programs(kind):
            if program.debian and not _installed(program.name):
                by_package.setdefault(program.package, []).append(program)
    return by_package


def install_missing(needed_for: set[str]) -> list[str]:
    """Install the packages whose programs of the ``needed_for`` rows are missing, one line
    per package; the packages installed ([] when nothing was missing)."""
    wanted = missing(needed_for)
    if not wanted:
        return []
    names = " ".join(wanted)
    if not DEBIAN_VERSION.exists():
        raise InfraError(f"missing programs of Debian packages {names}; install them by hand")
    if os.geteuid() != 0:
        raise InfraError(f"missing Debian packages {names}; as root: apt-get install {names}")
    with programs_as_infra_errors():
        apt_get = find_program("apt-get")
    for package, progs in wanted.items():
        what = "; ".join(f"{p.name}: {p.why}" for p in progs)
        print(f"basebench: installing Debian package {package} for {what}", flush=True)
    _apt([apt_get, "update", *APT_OPTIONS], names)
    _apt([apt_get, "install", "-y", "--no-install-recommends", *APT_OPTIONS, *wanted], names)
    still = missing(needed_for)
    if still:
        raise InfraError(
            f"apt-get installed {' '.join(still)} but their programs are still missing"
        )
    return list(wanted)


@contextmanager
def programs_as_infra_errors() -> Iterator[None]:
    """Turn ``ProgramMissing`` into ``InfraError``, which the CLI prints as one line."""
    try:
        yield
    except ProgramMissing as exc:
        raise InfraError(str(exc)) from None


def _installed(name: str) -> bool:
    try:
        find_program(name)
    except ProgramMissing:
        return False
    return True


def _apt(argv: list[str], packages: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise InfraError(f"apt-get {argv[1]} for {packages} failed: {last}")
