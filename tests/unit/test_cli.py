"""The CLI's edge: a config that fails validation runs nothing and publishes nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from cli.main import main

GOOD = """name: t
apps: [go-hello]
toolchains: ["1.22.10"]
bases: [distroless-static]
output: {output}
"""


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda text: text + "colour: red\n", "colour: unknown key"),
        (lambda text: text.replace("distroless-static", "scratch"), "unknown base 'scratch'"),
        (lambda text: text.replace("1.22.10", "1.22.10`reboot`"), "toolchains[0]: String should"),
        (lambda text: text.replace("bases: [", "bases: [["), "not valid YAML"),
    ],
)
def test_invalid_config_exits_2_and_publishes_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[str], str],
    expected: str,
) -> None:
    output = tmp_path / "results"
    config = tmp_path / "matrix.yaml"
    config.write_text(change(GOOD.format(output=output)))
    assert main(["run", str(config)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"basebench: {config}: ")
    assert expected in error
    assert not output.exists()


def test_plan_prints_every_cell_without_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "matrix.yaml"
    config.write_text(
        GOOD.format(output=tmp_path / "results").replace("]\nout", ", bookworm]\nout")
    )
    assert main(["plan", str(config), "--only", "base=book*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "1 cells"
    assert "go-hello go1.22.10 bookworm" in lines[0]
    assert lines[0].endswith("127.0.0.1:5000/library/debian:bookworm")
    assert not (tmp_path / "results").exists()
