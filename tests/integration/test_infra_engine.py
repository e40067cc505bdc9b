"""The Docker engine: reuse the one that answers, start and stop one of our own."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from infra.engine import DEFAULT_URL, engine_answers, engine_pid, ensure_engine, stop_engine
from infra.errors import InfraError

pytestmark = pytest.mark.integration


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # dockerd's and containerd's unix sockets need short paths (108 bytes at most).
    path = Path(tempfile.mkdtemp(prefix="bbe-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_running_engine_is_used_as_is(tmp_path: Path) -> None:
    assert ensure_engine(tmp_path, DEFAULT_URL) == DEFAULT_URL
    assert engine_pid(tmp_path) is None
    assert stop_engine(tmp_path) is False  # nothing of ours to stop
    assert engine_answers(DEFAULT_URL)


def links() -> set[str]:
    """The host's network links, less those that containers and networks of tests running
    beside this one come and go with (veth pairs, user-network bridges)."""
    out = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=True)
    names = {line.split()[0].split("@")[0] for line in out.stdout.splitlines()}
    return {name for name in names if not name.startswith(("veth", "br-"))}


def test_starts_and_stops_its_own_dockerd(short_dir: Path) -> None:
    url = f"unix://{short_dir}/d.sock"
    state = short_dir / "s"
    state.mkdir()
    links_before = links()
    assert not engine_answers(url)
    try:
        assert ensure_engine(state, url) == url
        pid = engine_pid(state)
        assert pid is not None
        client = docker.DockerClient(base_url=url)
        info = client.info()
        client.close()
        assert info["DockerRootDir"] == str(state / "engine" / "data")
        assert ensure_engine(state, url) == url  # answers now: reused
        assert engine_pid(state) == pid
    finally:
        stopped = stop_engine(state)
    assert stopped is True
    assert not engine_answers(url)
    assert engine_pid(state) is None
    assert (state / "dockerd.log").stat().st_size > 0
    # The system engine's bridge (docker0) survives a second engine, whose own is gone.
    assert links() == links_before


def test_no_engine_and_not_startable_is_a_clear_error(tmp_path: Path) -> None:
    url = "tcp://127.0.0.1:9"  # nothing answers; we only start engines on unix sockets
    with pytest.raises(InfraError, match=r"^no Docker engine at tcp://127.0.0.1:9; start one"):
        ensure_engine(tmp_path, url, timeout=5)
