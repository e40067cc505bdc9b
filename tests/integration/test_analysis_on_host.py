"""A host told to analyse its own images that cannot: `basebench run` says why, at once.

Analysis on the host mounts the engine's socket into the analysis container; when the
socket named for the host is not there, the host is dropped while it is readied (the
engine refuses the toolbox's container), before any build, with the engine's reason.
(The path that works is tests/integration/test_seed.py: that run analyses on the host.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from infra.up import InfraState

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
