"""`basebench run` over a pool of two TLS Docker daemons ("remote" hosts on 127.0.0.1):
scheduling, per-host limits, scanning on the building host, failover when one daemon is
SIGKILLed mid-build and the other mid-probe, and the ways a pool can be unusable
(nothing published then)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pandas as pd
import pytest
from prefect.logging.configuration import ensure_logging_setup

from cli.main import main
from infra.tls_hosts import TlsHost, build_step_pids, kill_tls_host, restart_tls_host
from tasks import labels
from tasks.apps import APPS_DIR
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.stores import open_store
from tasks.hosts.config import HostConfig, TlsFiles
from tasks.hosts.connection import connect
from tasks.records import cell_label
from tests.docker_daemons import free_port

pytestmark = pytest.mark.integration

BASES = ["distroless-static", "distroless-base", "bookworm-slim", "bookworm"]


def host_entry(host: HostConfig) -> dict[str, Any]:
    return host.model_dump(mode="json", exclude={"publish_address", "context", "labels"})


def write_matrix(
    directory: Path,
    infra: Any,
    hosts: list[dict[str, Any]],
    *,
    bases: list[str] | None = None,
    include: list[dict[str, str]] | None = None,
    keep_images: bool = False,
) -> tuple[Path, Path]:
    """A Go 1.22.10 matrix on ``bases`` (default ``BASES``) plus ``include``; returns
    (config, output dir)."""
    directory.mkdir(parents=True, exist_ok=True)
    apps = directory / "apps"
    if not apps.exists():
        shutil.copytree(APPS_DIR / "go-hello", apps / "go-hello")
        shutil.copytree(APPS_DIR / "go-hello", apps / "go-hello-twin")
    output = directory / "results"
    config = directory / "matrix.json"
    config.write_text(
        json.dumps(
            {
                "name": "multi-host",
                "apps": ["go-hello"],
                "toolchains": ["1.22.10"],
                "bases": bases or BASES,
                "include": include or [],
                "repeat": 2,
                "probe_timeout_seconds": 5,
                "keep_images": keep_images,
                "apps_dir": str(apps),
                "cache_dir": str(infra.cache_dir),
                "hosts": hosts,
                "output": str(output),
            }
        )
    )
    return config, output


@dataclass
class Run:
    exit_code: int
    run_id: str
    results: pd.DataFrame
    vulnerabilities: pd.DataFrame
    runs: list[dict[str, Any]]
    run_hosts: list[str]  # the runs table's hosts: those that answered
    warnings: list[str]


def run_matrix(config: Path, output: Path) -> Run:
    """``basebench run CONFIG``; read back what it published and what it warned."""
    # Prefect sets up its loggers once, when its flow API is first imported (inside the
    # CLI's run), removing the handlers they had: have it do that before ours is added.
    ensure_logging_setup()
    warnings = WarningLines()
    logger = logging.getLogger("prefect")
    logger.addHandler(warnings)
    try:
        exit_code = main(["run", str(config)])
    finally:
        logger.removeHandler(warnings)
    store = open_store(str(output))
    runs = list_runs(store)
    return Run(
        exit_code=exit_code,
        run_id=runs[-1]["run_id"],
        results=read_table(store, "results"),
        vulnerabilities=read_table(store, "vulnerabilities"),
        runs=runs,
        run_hosts=sorted(read_table(store, "runs")["hosts"].iloc[-1]),
        warnings=warnings.lines,
    )


class WarningLines(logging.Handler):
    """Collects the flow's warnings (Prefect loggers are children of ``prefect``)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def peak_parallel(rows: pd.DataFrame) -> int:
    """Most cells whose [started_at, finished_at) intervals overlap at one instant."""
    events = sorted(
        [(t, 1) for t in rows["started_at"]] + [(t, -1) for t in rows["finished_at"]],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    running = peak = 0
    for _, step in events:
        running += step
        peak = max(peak, running)
    return peak


def run_leftovers(host: HostConfig, run_id: str) -> list[str]:
    """Containers, images and networks carrying the run's label on ``host``."""
    client = connect(host)
    label = {"label": f"{labels.RUN}={run_id}"}
    try:
        return [
            *(f"container {c.name}" for c in client.containers.list(all=True, filters=label)),
            *(f"image {i.id}" for i in client.images.list(all=True, filters=label)),
            *(f"network {n.name}" for n in client.networks.list(filters=label)),
        ]
    finally:
        client.close()


def has_image(host: HostConfig, image_id: str) -> bool:
    client = connect(host)
    try:
        client.images.get(image_id)
    except docker.errors.ImageNotFound:
        return False
    finally:
        client.close()
    return True


def remove_run_images(hosts: list[HostConfig], run_id: str) -> None:
    for host in hosts:
        client = connect(host)
        for image in client.images.list(filters={"label": f"{labels.RUN}={run_id}"}):
            client.images.remove(image.id, force=True)
        client.close()


# --- a matrix across two TLS hosts ------------------------------------------------------


@dataclass
class PoolRun:
    run: Run
    hosts: dict[str, HostConfig]
    local: HostConfig


@pytest.fixture(scope="module")
def pool_run(
    infra: Any, tls_hosts: list[TlsHost], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PoolRun]:
    a, b = tls_hosts[0].host_config(max_parallel=1), tls_hosts[1].host_config(max_parallel=2)
    gone = HostConfig(name="gone", url=f"tcp://127.0.0.1:{free_port()}", insecure=True)
    config, output = write_matrix(
        tmp_path_factory.mktemp("pool"),
        infra,
        [host_entry(a), host_entry(b), host_entry(gone)],
        keep_images=True,  # to show which engine holds each image; removed below
    )
    run = run_matrix(config, output)
    try:
        yield PoolRun(run, {"tls-a": a, "tls-b": b}, HostConfig(url=infra.docker_url))
    finally:
        remove_run_images([a, b], run.run_id)


def test_every_cell_has_an_ok_row(pool_run: PoolRun) -> None:
    results = pool_run.run.results
    assert pool_run.run.exit_code == 0
    assert sorted(results["base"]) == sorted(BASES)
    assert set(results["status"]) == {"ok"}
    assert set(results["attempts"]) == {1}
    assert len(pool_run.run.runs) == 1


def test_both_hosts_did_work_and_the_dead_one_was_dropped(pool_run: PoolRun) -> None:
    results = pool_run.run.results
    assert set(results["host"]) == {"tls-a", "tls-b"}
    assert pool_run.run.run_hosts == ["tls-a", "tls-b"]
    dropped = [line for line in pool_run.run.warnings if line.startswith("dropping host")]
    assert len(dropped) == 1
    assert dropped[0].startswith("dropping host gone (tcp://127.0.0.1:")
    assert dropped[0].endswith("connection refused: nothing listens there")
    assert "\n" not in dropped[0]


def test_no_host_exceeded_max_parallel(pool_run: PoolRun) -> None:
    results = pool_run.run.results
    peaks = {name: peak_parallel(rows) for name, rows in results.groupby("host")}
    # tls-a has one slot; tls-b two, and at the start it runs two cells at once.
    assert peaks == {"tls-a": 1, "tls-b": 2}


def test_each_image_was_built_and_scanned_on_its_own_host(pool_run: PoolRun) -> None:
    results = pool_run.run.results
    for _, row in results.iterrows():
        built_on = pool_run.hosts[row["host"]]
        others = [h for name, h in pool_run.hosts.items() if name != row["host"]]
        assert has_image(built_on, row["image_id"]), row["base"]
        # Nowhere else to read it from: the scan (an --image-src docker scan) used its host.
        assert not any(has_image(h, row["image_id"]) for h in [*others, pool_run.local])
    by_base = results.set_index("base")
    assert by_base.loc["bookworm", "os_family"] == "debian"
    # slim drops documentation files, not packages
    assert by_base.loc["bookworm", "packages"] == by_base.loc["bookworm-slim", "packages"] > 50
    assert 0 < by_base.loc["distroless-static", "packages"] < 10
    found = pool_run.run.vulnerabilities.merge(results[["cell_id", "base"]], on="cell_id")
    cves = found.groupby("base")["vulnerability_id"].apply(lambda s: sorted(set(s)))
    # Go 1.22.10's standard library: 90031 and 90032, beside each base's own advisories.
    stdlib = ["CVE-2026-90031", "CVE-2026-90032"]
    assert cves["distroless-static"] == ["CVE-2026-90004", *stdlib]
    assert cves["distroless-base"] == [
        "CVE-2026-90001",
        "CVE-2026-90002",
        "CVE-2026-90004",
        *stdlib,
    ]


# --- failover ---------------------------------------------------------------------------


def link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def engine_bridge() -> str:
    """The machine engine's default bridge, seen before any TLS host is killed: restarting
    one must leave it alone."""
    assert link_exists("docker0"), "the engine under test has no docker0 to begin with"
    return "docker0"


@pytest.fixture
def killed(tls_hosts: list[TlsHost]) -> Iterator[list[TlsHost]]:
    """Hosts a test kills go here; they are restarted afterwards, also when it failed."""
    victims: list[TlsHost] = []
    yield victims
    for host in victims:
        if host.pid() is None:
            restart_tls_host(host)


POLL_SECONDS = 0.05  # a probe lasts over a second (its first container idles 0.5 s)


@dataclass
class Kill:
    """SIGKILL ``host`` once, as soon as ``at_stage()`` sees it doing ``stage``."""

    host: TlsHost
    stage: str
    at_stage: Callable[[], bool]
    at: datetime | None = None


class StageKiller:
    """Watches the hosts from a thread of its own while the run goes on; each ``Kill``
    happens once. Victims go to ``victims`` before the kill (the ``killed`` fixture
    restarts them, also when the test fails)."""

    def __init__(self, kills: list[Kill], victims: list[TlsHost]) -> None:
        self.kills = kills
        self.victims = victims
        self.errors: list[BaseException] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="stage-killer", daemon=True)

    def __enter__(self) -> StageKiller:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def _watch(self) -> None:
        try:
            while not self._done.is_set():
                pending = [kill for kill in self.kills if kill.at is None]
                if not pending:
                    return
                for kill in pending:
                    if kill.at_stage():
                        self.victims.append(kill.host)
                        kill.at = datetime.now(UTC)  # before: the cell may fail at once
                        kill_tls_host(kill.host)
                self._done.wait(POLL_SECONDS)
        except BaseException as exc:  # the test asserts there was none
            self.errors.append(exc)


def run_containers(client: docker.DockerClient) -> set[str]:
    """Ids of the containers of runs on the engine: only probes make containers."""
    return {
        c.id
        for c in client.containers.list(
            all=True, filters={"label": labels.RUN}, ignore_removed=True
        )
    }


def test_hosts_killed_mid_build_and_mid_probe_lose_no_cell(
    infra: Any,
    tls_hosts: list[TlsHost],
    engine_bridge: str,
    killed: list[TlsHost],
    tmp_path: Path,
) -> None:
    # One cell on each TLS host (one slot each), the third on the survivor: tls-a is
    # SIGKILLed while its build compiles, tls-b while its probe runs. Neither frees a
    # slot before it is marked dead, so both cells move to the survivor, once each.
    a, b = tls_hosts
    survivor = HostConfig(name="local", url=infra.docker_url, max_parallel=2)
    hosts = [a.host_config(max_parallel=1), b.host_config(max_parallel=1), survivor]
    twin = [{"app": "go-hello-twin", "toolchain": "1.22.10", "base": "distroless-static"}]
    config, output = write_matrix(
        tmp_path, infra, [host_entry(h) for h in hosts], bases=BASES[:2], include=twin
    )
    b_client = connect(b.host_config())
    before = run_containers(b_client)
    kills = [
        Kill(a, "build", lambda: bool(build_step_pids(a))),
        Kill(b, "probe", lambda: bool(run_containers(b_client) - before)),
    ]
    try:
        with StageKiller(kills, killed) as killer:
            run = run_matrix(config, output)
    finally:
        b_client.close()

    assert killer.errors == []
    assert [(kill.host.name, kill.stage, kill.at is not None) for kill in kills] == [
        ("tls-a", "build", True),
        ("tls-b", "probe", True),
    ]
    results = run.results
    assert run.exit_code == 0
    assert len(results) == 3  # no cell lost
    assert set(results["status"]) == {"ok"}, results[["base", "status", "error"]]
    assert set(results["host"]) == {"local"}
    assert sorted(results["attempts"]) == [1, 2, 2]
    assert run.run_hosts == ["local", "tls-a", "tls-b"]  # all three answered at the start
    rows = {cell_label(row): row for row in results.to_dict("records")}
    for kill in kills:
        name = kill.host.name
        tail = f": host {name} lost; moving the cell"
        moving = [line.removesuffix(tail) for line in run.warnings if line.endswith(tail)]
        assert len(moving) == 1, run.warnings
        moved = rows[moving[0]]  # the line names the cell by its label
        # Moved from scratch: its row is the survivor's try, begun after the kill.
        assert moved["attempts"] == 2
        assert kill.at is not None and moved["started_at"] > pd.Timestamp(kill.at)
        lost = f"host {name} was lost: the run's images and network stay there"
        assert run.warnings.count(lost) == 1, run.warnings
    assert run_leftovers(survivor, run.run_id) == []
    assert list((infra.cache_dir / "archives").glob(f"{run.run_id}-*")) == []


def test_restarted_host_answers_again(tls_hosts: list[TlsHost], engine_bridge: str) -> None:
    # Runs after the fault test (file order): both killed daemons are back with their
    # images, and their restarts left the machine engine's bridge in place.
    assert link_exists(engine_bridge)
    for tls_host in tls_hosts:
        client = connect(tls_host.host_config(), ping_timeout=5)
        try:
            assert client.ping()
            tags = {t for image in client.images.list() for t in image.tags}
            assert "127.0.0.1:5000/library/golang:1.22.10-bookworm" in tags
        finally:
            client.close()


# --- unusable pools: a clear error, nothing published ---------------------------------


def run_refused(
    tmp_path: Path, infra: Any, hosts: list[dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, Path]:
    config, output = write_matrix(tmp_path, infra, hosts)
    exit_code = main(["run", str(config)])
    errors = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("basebench:")
    ]
    assert len(errors) == 1, errors
    return exit_code, errors[0], output


def assert_nothing_published(output: Path) -> None:
    assert not output.exists() or not any(output.rglob("*"))


def test_wrong_ca_is_refused(
    infra: Any,
    tls_hosts: list[TlsHost],
    make_wrong_ca_host: Callable[[TlsHost], HostConfig],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = make_wrong_ca_host(tls_hosts[0])
    code, error, output = run_refused(tmp_path, infra, [host_entry(bad)], capsys)
    assert code == 2
    assert "no Docker host could be used" in error
    assert f"{bad.name} ({bad.url}): TLS: certificate verify failed" in error
    assert "BEGIN" not in error
    assert_nothing_published(output)


def test_client_certificate_of_another_ca_is_rejected(
    infra: Any, tls_hosts: list[TlsHost], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tls_hosts
    foreign = TlsFiles(ca=a.tls.ca, cert=b.tls.cert, key=b.tls.key)
    host = HostConfig(name="foreign-cert", url=a.url, tls=foreign)
    code, error, output = run_refused(tmp_path, infra, [host_entry(host)], capsys)
    assert code == 2
    assert f"foreign-cert ({a.url}): TLS: the engine rejected the client certificate" in error
    assert_nothing_published(output)


def test_missing_client_certificate_is_a_config_error(
    infra: Any, tls_hosts: list[TlsHost], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = host_entry(tls_hosts[0].host_config())
    entry["tls"]["cert"] = str(tmp_path / "nowhere" / "cert.pem")
    code, error, output = run_refused(tmp_path, infra, [entry], capsys)
    assert code == 2
    assert f"hosts[0].tls.cert: no such file: {tmp_path}/nowhere/cert.pem" in error
    assert_nothing_published(output)


def test_plain_tcp_needs_insecure(
    infra: Any, tls_hosts: list[TlsHost], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = {"name": "plain", "url": tls_hosts[0].url}
    code, error, output = run_refused(tmp_path, infra, [entry], capsys)
    assert code == 2
    assert "hosts[0]" in error and "plain tcp without tls" in error and "insecure: true" in error
    assert_nothing_published(output)


def test_all_hosts_down(infra: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    down = [
        {"name": f"down-{i}", "url": f"tcp://127.0.0.1:{free_port()}", "insecure": True}
        for i in (1, 2)
    ]
    code, error, output = run_refused(tmp_path, infra, down, capsys)
    assert code == 2
    assert error.startswith(
        "basebench: no Docker host could be used, nothing was built or published:"
    )
    assert "down-1 (tcp://127.0.0.1:" in error and "down-2 (tcp://127.0.0.1:" in error
    assert error.count("connection refused") == 2
    assert_nothing_published(output)
