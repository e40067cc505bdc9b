"""What users expect of a command-line tool: --version, JSON output, the docker CLI's
default engine, boto3's region chain, and one line instead of a traceback."""

from __future__ import annotations

import argparse
import json
from importlib.metadata import version
from pathlib import Path

import pytest

from cli import main as cli_main
from tasks.dataset.stores import S3Store
from tasks.hosts.config import DEFAULT_URL, default_host
from tests.unit.test_docker_host import write_context

CONFIG = str(Path(__file__).resolve().parents[2] / "configs" / "default.yaml")


@pytest.fixture(autouse=True)
def no_docker_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "BASEBENCH_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker"))


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli_main.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"basebench {version('basebench')}\n"


def test_plan_json_lists_every_cell(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["plan", CONFIG, "--only", "base=distroless-*"]) == 0
    text_lines = capsys.readouterr().out.splitlines()
    assert cli_main.main(["plan", CONFIG, "--only", "base=distroless-*", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)
    cells = planned["cells"]
    assert text_lines[-1] == f"{len(cells)} cells"
    assert {c["base"] for c in cells} == {
        f"distroless-{flavour}-debian{n}" for flavour in ("static", "base") for n in (12, 13)
    } | {"distroless-python3-debian13", "distroless-nodejs20-debian13"}
    assert {c["toolchain_version"] for c in cells} == {"1.25.5", "3.13.5", "20.19.2"}
    assert all(c["variant"] == "multi-stage" for c in cells)
    assert len(cells) == 4 + 2  # Go on four, Python and Node.js on one each
    # Python and Node.js run on no distroless image but their own runtime's.
    left_out = {(o["app"], o["base"]): o["reason"] for o in planned["left_out"]}
    assert left_out[("python-hello", "distroless-static-debian12")] == "no python runtime"
    assert len(left_out) == 2 * 4 + 2  # each of them on the four static and base images,
    # and on the other's runtime image


def test_default_host_is_the_default_socket() -> None:
    assert default_host().url == DEFAULT_URL


def test_default_host_follows_docker_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/elsewhere.sock")
    assert default_host().url == "unix:///run/elsewhere.sock"
    certs = tmp_path / "certs"
    certs.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (certs / name).write_text("x")
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.1.2.3:2376")
    monkeypatch.setenv("DOCKER_CERT_PATH", str(certs))
    host = default_host()
    assert (host.url, host.tls and host.tls.ca) == ("tcp://10.1.2.3:2376", certs / "ca.pem")


def test_default_host_follows_docker_context_then_current_context(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_dir = tmp_path / "docker"
    write_context(config_dir, "lab", "unix:///run/lab.sock", with_tls=False)
    write_context(config_dir, "ci", "unix:///run/ci.sock", with_tls=False)
    (config_dir / "config.json").write_text(json.dumps({"currentContext": "lab"}))
    assert default_host().url == "unix:///run/lab.sock"  # the CLI's current context
    monkeypatch.setenv("DOCKER_CONTEXT", "ci")
    assert default_host().url == "unix:///run/ci.sock"
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/first.sock")
    assert default_host().url == "unix:///run/first.sock"  # DOCKER_HOST wins, as in the CLI


def test_s3_region_comes_from_boto3s_chain_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "eu-north-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-north-1")
    assert S3Store("bucket")._client.meta.region_name == "eu-north-1"
    assert S3Store("bucket", region="ap-south-2")._client.meta.region_name == "ap-south-2"


def broken_command(args: argparse.Namespace) -> int:
    raise KeyError("the unexpected")


def test_unexpected_error_is_one_line_unless_debug(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = cli_main.build_parser()
    real_parse = parser.parse_args

    def parse(argv: list[str] | None = None) -> argparse.Namespace:
        args = real_parse(argv)
        args.func = broken_command
        return args

    monkeypatch.setattr(parser, "parse_args", parse)
    monkeypatch.setattr(cli_main, "build_parser", lambda: parser)
    assert cli_main.main(["plan", CONFIG]) == cli_main.EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert err == (
        "basebench plan: unexpected error: KeyError: 'the unexpected' "
        "(run with --debug or BASEBENCH_DEBUG=1 for the traceback)\n"
    )
    monkeypatch.setenv("BASEBENCH_DEBUG", "1")
    assert cli_main.main(["plan", CONFIG]) == cli_main.EXIT_UNEXPECTED
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.splitlines()[-1].startswith("basebench plan: unexpected error: KeyError")


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"name: x\napps: [go-hello]\ntoolchains: ['1.22']\nbases: [nope]\n")
    assert cli_main.main(["plan", str(bad)]) == cli_main.EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert err.startswith(f"basebench: {bad}") and "nope" in err
    assert "Traceback" not in err
