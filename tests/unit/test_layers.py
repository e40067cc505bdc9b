"""The layer order in pyproject.toml (``[tool.importlinter]``) holds, and breaks on a
wrong-way import: a copy of the code with one bad import is linted the same way."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("tests", "conformance", "cli", "flows", "infra", "tasks")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the packages under ``root`` (it puts its cwd first on the path)."""
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


def copy_of_the_code(root: Path) -> Path:
    """The packages and the contract copied under ``root``, to be broken there."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, root / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "pyproject.toml", root)
    return root


def test_the_code_keeps_its_layers() -> None:
    done = lint_imports(REPO)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # A stage reaching up into a run's session (as analyse_on_host once did).
        (
            "tasks/stages/build.py",
            "from tasks.sessions.session import HostSession",
            "tasks.stages.build -> tasks.sessions.session",
        ),
        # Reaching a host from the session layer is fine; a host module using a session is not.
        (
            "tasks/hosts/health.py",
            "from tasks.sessions.pool import HostPool",
            "tasks.hosts.health -> tasks.sessions.pool",
        ),
        # Runtime code importing the conformance suites (and through them, pytest).
        (
            "flows/benchmark.py",
            "import conformance.stores",
            "flows.benchmark -> conformance.stores",
        ),
        ("tasks/records.py", "import pytest", "tasks.records -> pytest"),
    ],
)
def test_a_wrong_way_import_breaks_the_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    source = copy_of_the_code(tmp_path) / module
    source.write_text(f"{line}  # noqa\n{source.read_text()}")
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(rf"^-\s+{re.escape(broken)} \(l\.1\)$", done.stdout, re.MULTILINE)


def test_a_module_outside_the_layer_order_breaks_the_contract(tmp_path: Path) -> None:
    # Exhaustive: a new module of tasks/ must be given its place in the order.
    new = copy_of_the_code(tmp_path) / "tasks" / "newcomer.py"
    new.write_text('"""Not in the layer order yet."""\n')
    done = lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "tasks.newcomer" in done.stdout
