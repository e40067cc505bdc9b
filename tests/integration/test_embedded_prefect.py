"""The embedded Prefect server of `basebench run`: up, answering, and gone after stop;
a server that cannot start is a clear error, not a hang."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from cli.embedded_prefect import EmbeddedPrefect, EmbeddedPrefectError
from cli.main import main

pytestmark = pytest.mark.integration

NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def test_serves_the_api_until_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    server = EmbeddedPrefect()
    server.start()
    try:
        server.wait_ready()
        assert server.api_url.startswith("http://127.0.0.1:")
        with NO_PROXY.open(f"{server.api_url}/health", timeout=5) as response:
            assert json.load(response) is True
    finally:
        server.stop()
    # Its SQLite database lives under PREFECT_HOME, and nothing answers any more.
    assert (tmp_path / "prefect" / "prefect.db").is_file()
    with pytest.raises(urllib.error.URLError):
        NO_PROXY.open(f"{server.api_url}/health", timeout=2)


def test_a_server_that_cannot_start_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "no-such-dir" / "prefect.db"
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{database}")
    server = EmbeddedPrefect()
    server.start()
    try:
        with pytest.raises(EmbeddedPrefectError) as raised:
            server.wait_ready(timeout=60)
    finally:
        server.stop()
    assert str(raised.value) == (
        "embedded Prefect server exited at start-up (code 3): sqlalchemy.exc.OperationalError: "
        "(sqlite3.OperationalError) unable to open database file"
    )


def test_the_cli_reports_it_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "matrix.yaml"
    config.write_text(
        "name: x\napps: [go-hello]\ntoolchains: ['1.22.10']\nbases: [distroless-static]\n"
        f"cache_dir: {tmp_path / 'cache'}\noutput: {tmp_path / 'results'}\n"
    )
    database = tmp_path / "no-such-dir" / "prefect.db"
    monkeypatch.setenv("PREFECT_API_DATABASE_CONNECTION_URL", f"sqlite+aiosqlite:///{database}")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    assert main(["run", str(config)]) == 2
    assert capsys.readouterr().err.startswith(
        "basebench: embedded Prefect server exited at start-up (code 3): "
    )
    assert not (tmp_path / "results").exists()  # nothing was built or published
