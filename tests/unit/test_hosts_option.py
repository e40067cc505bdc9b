"""``--host NAME=URL[,max_parallel=N][,tls=DIR][,insecure=true]`` parsing, then validation
through the matrix loader (as ``basebench run --host`` does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cli.hosts import parse_host_option, parse_host_options
from tasks.config_file import ConfigError
from tasks.hosts.config import HostConfig
from tasks.matrix import load_matrix


def write_certs(directory: Path) -> Path:
    directory.mkdir()
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (directory / name).write_text("not read by the parser\n")
    return directory


def matrix(tmp_path: Path) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text("name: m\napps: [go-hello]\ntoolchains: ['1.22.10']\nbases: [bookworm]\n")
    return path


def test_name_and_url_only() -> None:
    assert parse_host_option("local=unix:///var/run/docker.sock") == {
        "name": "local",
        "url": "unix:///var/run/docker.sock",
    }


def test_all_options(tmp_path: Path) -> None:
    certs = write_certs(tmp_path / "certs")
    entry = parse_host_option(f"tls-a=tcp://127.0.0.1:2376,max_parallel=3,tls={certs}")
    assert entry == {
        "name": "tls-a",
        "url": "tcp://127.0.0.1:2376",
        "max_parallel": "3",
        "tls": {k: str(certs / f"{k}.pem") for k in ("ca", "cert", "key")},
    }
    config = load_matrix(matrix(tmp_path), {"hosts": [entry]})
    (host,) = config.hosts
    assert (host.name, host.max_parallel, host.tls is not None) == ("tls-a", 3, True)
    assert host.tls is not None and host.tls.key == certs / "key.pem"


def test_insecure_plain_tcp(tmp_path: Path) -> None:
    entries = parse_host_options(["a=tcp://127.0.0.1:2375,insecure=true", "b=unix:///x.sock"])
    config = load_matrix(matrix(tmp_path), {"hosts": entries})
    assert [(h.name, h.insecure) for h in config.hosts] == [("a", True), ("b", False)]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("tcp://127.0.0.1:2376", "expected NAME=URL"),
        ("a=", "expected NAME=URL"),
        ("a=unix:///x.sock,color=red", "unknown option 'color=red'; allowed: max_parallel=N"),
        ("a=unix:///x.sock,insecure=yes", "insecure must be true or false"),
    ],
)
def test_malformed_values_name_the_value(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"--host '{value}'")) as caught:
        parse_host_option(value)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_duplicate_names_are_refused() -> None:
    with pytest.raises(ConfigError, match="host name 'a' given twice"):
        parse_host_options(["a=unix:///x.sock", "a=unix:///y.sock"])


def test_plain_tcp_without_insecure_is_refused_by_validation(tmp_path: Path) -> None:
    entries = parse_host_options(["a=tcp://127.0.0.1:2375"])
    with pytest.raises(ConfigError, match=r"hosts\[0\]: .*plain tcp without tls.*insecure: true"):
        load_matrix(matrix(tmp_path), {"hosts": entries})


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    entries = parse_host_options([f"a=tcp://127.0.0.1:2376,tls={tmp_path / 'none'}"])
    with pytest.raises(ConfigError, match=r"hosts\[0\]\.tls\.ca: .*no such file"):
        load_matrix(matrix(tmp_path), {"hosts": entries})


def test_bad_max_parallel_is_refused(tmp_path: Path) -> None:
    entries = parse_host_options(["a=unix:///x.sock,max_parallel=0"])
    expected = r"hosts\[0\]\.max_parallel: .*greater than or equal to 1"
    with pytest.raises(ConfigError, match=expected):
        load_matrix(matrix(tmp_path), {"hosts": entries})


def test_lane_widths_are_host_options() -> None:
    entry = parse_host_option("big=unix:///x.sock,max_parallel=4,max_builds=2,max_analyses=3")
    assert entry == {
        "name": "big",
        "url": "unix:///x.sock",
        "max_parallel": "4",
        "max_builds": "2",
        "max_analyses": "3",
    }
    host = HostConfig.model_validate(entry)
    assert (host.max_parallel, host.max_builds, host.max_analyses) == (4, 2, 3)


def test_where_a_host_analyses_is_a_host_option(tmp_path: Path) -> None:
    entry = parse_host_option("b1=ssh://ci@build-1.example,analysis=host,socket=/srv/d.sock")
    assert entry == {
        "name": "b1",
        "url": "ssh://ci@build-1.example",
        "analysis": "host",
        "socket": "/srv/d.sock",
    }
    host = HostConfig.model_validate(entry)
    assert (host.analyses_on_host, host.socket) == (True, "/srv/d.sock")
    bad = {"hosts": [parse_host_option("b=unix:///x,analysis=gpu")]}
    with pytest.raises(ConfigError) as caught:
        load_matrix(matrix(tmp_path), bad)
    assert str(caught.value) == (
        f"{tmp_path / 'm.yaml'}: hosts[0].analysis: Input should be 'auto', 'flow' or 'host'"
        " (got 'gpu')"
    )
