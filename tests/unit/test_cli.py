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


@pytest.mark.parametrize(
    ("output", "s3", "expected"),
    [
        (
            "s3://bench/a//b",
            "",
            "output: 's3://bench/a//b': prefix 'a//b' is not allowed: use '/'-separated names "
            "without empty parts ('//'), '.', '..' or '\\'",
        ),
        (
            "S3://b/x",
            "",
            "output: 'S3://b/x': unknown scheme 'S3'://; allowed: s3://<bucket>/<prefix> "
            "(lowercase) or a folder path",
        ),
        (
            "s3://B_ad/x",
            "",
            "output: 's3://B_ad/x': bucket 'B_ad' is not an S3 bucket name "
            "(3-63 lowercase letters, digits, '.' or '-')",
        ),
        (
            "s3://bench/x",
            "s3: {endpoint_url: '127.0.0.1:9000'}",
            "s3.endpoint_url: '127.0.0.1:9000' is not an endpoint URL; "
            "give http://host:port or https://host[:port]",
        ),
        (
            "s3://bench/x",
            "s3: {endpoint_url: 'http://127.0.0.1:99999'}",
            "s3.endpoint_url: 'http://127.0.0.1:99999': the port is not a number from 1 to 65535",
        ),
    ],
)
def test_bad_store_settings_exit_2_before_any_work(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    output: str,
    s3: str,
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)  # a wrongly accepted URL would become a folder here
    config = tmp_path / "matrix.yaml"
    config.write_text(GOOD.format(output=f"'{output}'") + s3 + "\n")
    assert main(["run", str(config)]) == 2
    assert capsys.readouterr().err == f"basebench: {config}: {expected}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matrix.yaml"]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["run", "{config}", "--output", "s3://bench/a//b"],
            "argument --output: 's3://bench/a//b'",
        ),
        (["run", "{config}", "--output", "S3://b/x"], "argument --output: 'S3://b/x': unknown"),
        (["compare", "S3://b/x"], "argument URL: 'S3://b/x': unknown scheme"),
        (["report", "s3://b//x"], "argument URL: 's3://b//x': bucket 'b' is not"),
        (
            ["publish", "kept", "--output", "s3://bench/x", "--s3-endpoint", "localhost:9000"],
            "argument --s3-endpoint: 'localhost:9000' is not an endpoint URL",
        ),
    ],
)
def test_bad_store_options_exit_2(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    expected: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "matrix.yaml"
    config.write_text(GOOD.format(output=tmp_path / "results"))
    with pytest.raises(SystemExit) as exited:
        main([arg.format(config=config) for arg in argv])
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["matrix.yaml"]


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
