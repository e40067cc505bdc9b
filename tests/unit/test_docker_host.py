"""HostConfig validation, publish addresses, Docker contexts and error wording (no engine)."""

from __future__ import annotations

import hashlib
import json
import ssl
from pathlib import Path

import pytest
import requests
from pydantic import ValidationError

from cli.hosts import format_health
from tasks.config_file import ConfigError
from tasks.hosts.config import DEFAULT_URL, HostConfig, resolve_context
from tasks.hosts.connection import describe_error
from tasks.hosts.health import HostHealth
from tasks.matrix import load_matrix
from tasks.units import format_bytes


@pytest.fixture
def tls_files(tmp_path: Path) -> dict[str, str]:
    files = {}
    for key in ("ca", "cert", "key"):
        path = tmp_path / f"{key}.pem"
        path.write_text("-----BEGIN SECRET-----\nnot a real key\n")
        files[key] = str(path)
    return files


def test_defaults_are_the_local_socket() -> None:
    host = HostConfig()
    assert (host.name, host.url, host.max_parallel) == ("local", DEFAULT_URL, 2)
    assert host.publish_address == "127.0.0.1"
    assert host.is_local and host.tls is None and host.labels == {}


@pytest.mark.parametrize(
    ("url", "address", "local"),
    [
        ("unix:///var/run/docker.sock", "127.0.0.1", True),
        ("tcp://127.0.0.1:2376", "127.0.0.1", True),
        ("tcp://127.0.0.5:2376", "127.0.0.1", True),
        ("tcp://localhost:2376", "127.0.0.1", True),
        ("tcp://10.1.2.3:2376", "10.1.2.3", False),
        ("tcp://builder.example:2376", "builder.example", False),
        ("ssh://bench@runner-7", "runner-7", False),
        ("ssh://bench@runner-7:2222", "runner-7", False),
    ],
)
def test_publish_address_follows_the_url(url: str, address: str, local: bool) -> None:
    host = HostConfig(url=url, insecure=True)
    assert host.publish_address == address
    assert host.is_local is local


def test_publish_address_can_be_set() -> None:
    host = HostConfig(url="tcp://10.1.2.3:2375", insecure=True, publish_address="192.0.2.9")
    assert host.publish_address == "192.0.2.9"


def test_plain_tcp_is_refused_without_insecure() -> None:
    with pytest.raises(ValidationError, match="plain tcp without tls") as caught:
        HostConfig(url="tcp://10.1.2.3:2375")
    assert "insecure: true" in str(caught.value)
    assert HostConfig(url="tcp://10.1.2.3:2375", insecure=True).insecure


def test_tls_files_must_exist_and_the_key_is_named(
    tmp_path: Path, tls_files: dict[str, str]
) -> None:
    missing = {**tls_files, "cert": str(tmp_path / "gone.pem")}
    with pytest.raises(ValidationError) as caught:
        HostConfig(url="tcp://10.1.2.3:2376", tls=missing)
    (error,) = caught.value.errors()
    assert error["loc"] == ("tls", "cert")
    assert f"no such file: {tmp_path / 'gone.pem'}" in error["msg"]


def test_tls_needs_all_three_files(tls_files: dict[str, str]) -> None:
    without_key = {k: v for k, v in tls_files.items() if k != "key"}
    with pytest.raises(ValidationError) as caught:
        HostConfig(url="tcp://10.1.2.3:2376", tls=without_key)
    assert [e["loc"] for e in caught.value.errors()] == [("tls", "key")]


def test_tls_only_for_tcp(tls_files: dict[str, str]) -> None:
    with pytest.raises(ValidationError, match="tls: applies to tcp:// urls only"):
        HostConfig(url="unix:///var/run/docker.sock", tls=tls_files)


def test_repr_and_errors_carry_paths_never_contents(tls_files: dict[str, str]) -> None:
    host = HostConfig(url="tcp://10.1.2.3:2376", tls=tls_files)
    assert tls_files["key"] in repr(host)
    assert "BEGIN" not in repr(host) and "not a real key" not in repr(host)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://10.1.2.3:2375", "scheme must be one of unix, tcp, ssh"),
        ("tcp://10.1.2.3", "expected tcp://HOST:PORT"),
        ("unix://", "expected unix:///path/to/docker.sock"),
        ("ssh://", "expected ssh://"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        HostConfig(url=url, insecure=True)


@pytest.mark.parametrize("value", [0, 65])
def test_max_parallel_bounds(value: int) -> None:
    with pytest.raises(ValidationError, match="max_parallel"):
        HostConfig(max_parallel=value)


def test_labels_and_unknown_keys() -> None:
    assert HostConfig(labels={"platform": "linux/amd64"}).labels == {"platform": "linux/amd64"}
    with pytest.raises(ValidationError, match="labels"):
        HostConfig(labels={"Bad Key": "x"})
    with pytest.raises(ValidationError, match="extra"):
        HostConfig.model_validate({"name": "a", "cpus": 4})


def test_matrix_error_names_the_host_key(tmp_path: Path) -> None:
    config = tmp_path / "m.yaml"
    config.write_text(
        "name: m\napps: [go-hello]\ntoolchains: ['1.22.10']\nbases: [bookworm]\n"
        f"hosts:\n  - name: far\n    url: tcp://10.1.2.3:2376\n    tls:\n"
        f"      ca: {tmp_path}/ca.pem\n      cert: {tmp_path}/c.pem\n      key: {tmp_path}/k.pem\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_matrix(config)
    message = str(caught.value)
    assert f"{config}: hosts[0].tls.ca: no such file: {tmp_path}/ca.pem" in message
    assert "hosts[0].tls.cert" in message and "hosts[0].tls.key" in message


def write_context(config_dir: Path, name: str, host: str, with_tls: bool) -> Path:
    digest = hashlib.sha256(name.encode()).hexdigest()
    meta = config_dir / "contexts" / "meta" / digest / "meta.json"
    meta.parent.mkdir(parents=True)
    endpoint = {"Host": host, "SkipTLSVerify": False}
    meta.write_text(json.dumps({"Name": name, "Metadata": {}, "Endpoints": {"docker": endpoint}}))
    tls_dir = config_dir / "contexts" / "tls" / digest / "docker"
    if with_tls:
        tls_dir.mkdir(parents=True)
        for file in ("ca.pem", "cert.pem", "key.pem"):
            (tls_dir / file).write_text("x")
    return tls_dir


def test_context_resolves_url_and_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    tls_dir = write_context(tmp_path, "lab", "tcp://10.9.8.7:2376", with_tls=True)
    write_context(tmp_path, "other", "unix:///run/other.sock", with_tls=False)
    host = HostConfig(name="lab", context="lab")
    assert host.url == "tcp://10.9.8.7:2376"
    assert host.tls is not None and host.tls.key == tls_dir / "key.pem"
    assert host.publish_address == "10.9.8.7"
    assert HostConfig(context="other").url == "unix:///run/other.sock"


def test_context_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    write_context(tmp_path, "plain", "tcp://10.9.8.7:2375", with_tls=False)
    with pytest.raises(ValidationError, match="plain tcp without tls"):
        HostConfig(context="plain")
    assert HostConfig(context="plain", insecure=True).url == "tcp://10.9.8.7:2375"
    with pytest.raises(ValidationError, match=r"context 'nope' not found .*known: plain, default"):
        HostConfig(context="nope")
    with pytest.raises(ValidationError, match="either url or context"):
        HostConfig(context="plain", url="unix:///x.sock")


def test_default_context_is_docker_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    assert resolve_context("default") == {"url": DEFAULT_URL}


def test_describe_error_wording() -> None:
    verify = requests.exceptions.SSLError(
        ssl.SSLCertVerificationError(
            1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"
        )
    )
    assert describe_error(verify).startswith("TLS: certificate verify failed")
    refused = requests.exceptions.ConnectionError("[Errno 111] Connection refused")
    assert describe_error(refused) == "connection refused: nothing listens there"
    timeout = requests.exceptions.ReadTimeout("Read timed out. (read timeout=2)")
    assert describe_error(timeout) == "no answer: timed out"
    assert describe_error(RuntimeError("odd\nthing")) == "odd thing"


def test_format_health_lines() -> None:
    lines = format_health(
        [
            HostHealth("local", "unix:///s", True, "20.10.24", "linux/amd64", 80_600_000_000),
            HostHealth("far-away", "tcp://10.1.2.3:2376", False, error="far-away (...): refused"),
            HostHealth("remote", "ssh://b@r", True, "24.0.7", "linux/arm64", None),
        ]
    )
    assert lines[0] == "local     ok           20.10.24  linux/amd64  free 80.6 GB  (unix:///s)"
    assert lines[1] == "far-away  unreachable  far-away (...): refused"
    assert lines[2].endswith("free -  (ssh://b@r)")
    assert format_bytes(999) == "999 B"
    assert format_bytes(1_500_000) == "1.5 MB"
