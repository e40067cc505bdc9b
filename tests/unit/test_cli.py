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


@pytest.mark.parametrize(
    ("extra", "argv", "expected"),
    [
        (
            "exclude: [{}]\n",
            [],
            "basebench: {config}: exclude[0]: give at least one of app, toolchain, base\n",
        ),
        (
            "",
            ["--only", "base=distroless-nope"],
            "basebench: --only base=distroless-nope: matches no base of the matrix; "
            "its bases: distroless-static\n",
        ),
        (
            "",
            ["--only", "toolchain=1.25.*"],
            "basebench: --only toolchain=1.25.*: matches no toolchain of the matrix; "
            "its toolchains: 1.22.10\n",
        ),
        (
            "exclude: [{base: distroless-static}]\n",
            [],
            "basebench: {config}: no cell can run (0 left out, `basebench plan {config}` says "
            "why); nothing was built or published\n",
        ),
    ],
)
def test_a_run_of_no_cells_is_an_error(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: str,
    argv: list[str],
    expected: str,
) -> None:
    output = tmp_path / "results"
    config = tmp_path / "matrix.yaml"
    config.write_text(GOOD.format(output=output) + f"cache_dir: {tmp_path}/cache\n" + extra)
    assert main(["run", str(config), *argv]) == 2
    assert capsys.readouterr().err == expected.format(config=config)
    assert not output.exists()
    assert not (tmp_path / "cache").exists()


def test_only_filters_that_match_no_cell_together_are_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "matrix.yaml"
    config.write_text(
        GOOD.format(output=tmp_path / "results").replace("]\nout", ", bookworm]\nout")
        + "exclude: [{base: bookworm}]\n"
        + "include: [{app: go-hello, toolchain: 1.25.5, base: bookworm}]\n"
    )
    argv = ["plan", str(config), "--only", "base=bookworm", "--only", "toolchain=1.22.10"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        "basebench: --only base=bookworm,toolchain=1.22.10: "
        "no cell of the matrix matches them all\n"
    )
