"""Analysis on the host, at its edges (the path that works: tests/integration/test_seed.py,
whose run analyses on the host, and the host suite in conformance/hosts.py).

- The analysis container mounts the engine's socket; when the socket named for the host
  is not there, the host is dropped while it is readied (the engine refuses the
  toolbox's container), before any build, with the engine's reason.
- Toolbox volumes of other versions stay while a run may still use them, then go.
"""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from cli.main import main
from infra.tls_hosts import TlsHost
from infra.up import InfraState
from tasks import labels
from tasks.hosts.connection import connect
from tasks.matrix import MatrixConfig
from tasks.scanners import make_scanner
from tasks.scanners.config import ScannerConfig
from tasks.sessions.toolbox import analysis_image, install_toolbox, pack_toolbox

pytestmark = pytest.mark.integration


def test_a_missing_socket_drops_the_host_before_any_build(
    infra: InfraState,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    socket = "/run/basebench-test/no-engine.sock"
    config = tmp_path / "matrix.json"
    host = {"name": "local", "url": infra.docker_url, "analysis": "host", "socket": socket}
    config.write_text(
        json.dumps(
            {
                "name": "missing-socket",
                "apps": ["go-hello"],
                "toolchains": ["1.22.10"],
                "bases": ["distroless-static"],
                "cache_dir": str(tmp_path / "cache"),
                "scanner": {"db_dir": str(infra.cache_dir / "trivy")},
                "hosts": [host],
                "output": str(tmp_path / "results"),
            }
        )
    )
    code = main(["run", str(config)])

    errors = [line for line in capsys.readouterr().err.splitlines() if "basebench:" in line]
    assert code == 2
    assert errors == [
        "basebench: no Docker host could be used, nothing was built or published: "
        f"local ({infra.docker_url}): answers but could not be readied: "
        f'invalid mount config for type "bind": bind source path does not exist: {socket}'
    ]
    assert not Path(socket).exists()  # the engine did not make it a directory either
    results = tmp_path / "results"
    assert not results.exists() or not any(results.rglob("*"))
    cache = tmp_path / "cache"
    assert not [p for f in ("archives", "journal") for p in (cache / f).glob("*")]


def test_toolboxes_of_other_versions_go_once_no_run_can_use_them(
    infra: InfraState, tls_hosts: list[TlsHost], tmp_path: Path
) -> None:
    # On a TLS daemon of this test session's own: removing every other version there
    # cannot pull a toolbox from under another test's run.
    host = tls_hosts[0].host_config()
    client = connect(host)
    other = f"basebench-toolbox-test{uuid.uuid4().hex[:8]}"
    client.volumes.create(other, labels={labels.TOOLBOX: "true"})
    image = analysis_image(MatrixConfig.model_fields["mirrors"].default)
    client.images.pull(image)
    socket = host.socket
    try:
        with make_scanner(ScannerConfig(db_dir=infra.cache_dir / "trivy"), tmp_path) as scanner:
            toolbox = pack_toolbox(scanner, tmp_path / "toolbox")
        installed = install_toolbox(client, toolbox, image, socket)
        volumes = {v.name for v in client.volumes.list(filters={"label": labels.TOOLBOX})}
        assert {installed.toolbox, other} <= volumes  # made a moment ago: may be in use
        install_toolbox(client, toolbox, image, socket, keep_others=timedelta(0))
        volumes = {v.name for v in client.volumes.list(filters={"label": labels.TOOLBOX})}
        assert installed.toolbox in volumes
        assert other not in volumes
    finally:
        for volume in client.volumes.list(filters={"label": labels.TOOLBOX}):
            volume.remove()
        client.close()
