"""The local registry process: start, reuse, stop, and a busy port."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from infra.errors import InfraError
from infra.registry import LocalRegistry, free_port
from infra.up import down, registry_for

pytestmark = pytest.mark.integration


def test_start_is_idempotent_and_stop_stops_it(tmp_path: Path) -> None:
    registry = LocalRegistry(free_port(), tmp_path / "storage", tmp_path / "run")
    try:
        assert registry.start() is True
        pid = registry.pid()
        assert pid is not None
        assert registry.api().healthy()
        assert registry.api().repositories() == []
        assert registry.start() is False  # already ours and healthy
        assert registry.pid() == pid
        assert "auth" not in registry.config.read_text()
    finally:
        stopped = registry.stop()
    assert stopped is True
    assert registry.pid() is None
    assert not registry.api().healthy()
    assert registry.stop() is False


def test_busy_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        registry = LocalRegistry(port, tmp_path / "storage", tmp_path / "run")
        with pytest.raises(InfraError, match=f"^port {port} on 127.0.0.1 is in use") as info:
            registry.start()
    assert "\n" not in str(info.value)
    assert not (tmp_path / "storage").exists()


def test_down_stops_what_up_started_for_a_cache_dir(tmp_path: Path) -> None:
    port = free_port()
    registry = registry_for(tmp_path, port)
    assert registry.start() is True
    assert registry.storage == tmp_path / "registry"
    assert down(tmp_path) == [f"registry 127.0.0.1:{port}"]
    assert registry.pid() is None
    assert down(tmp_path) == []
