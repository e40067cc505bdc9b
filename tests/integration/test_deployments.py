"""basebench through a real Prefect server and process worker on 127.0.0.1.

One server (SQLite, its own PREFECT_HOME) and one process worker serve the whole module.
``basebench deploy`` creates the deployments and host limits; two ad-hoc runs of a
2-cell matrix start at once on one Docker host with ``max_parallel: 1`` and publish to
moto S3; a third, of 3 cells, is cancelled through the API once a cell has finished.
Every process the module starts carries a marker in its environment, so teardown can
stop the server, the worker and every flow-run process they spawned, even after a
failure. A sampler watches their sockets the whole time: nothing may leave 127.0.0.0/8.
"""

from __future__ import annotations

import contextlib
import contextvars
import ipaddress
import itertools
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

from cli.deploy import repository_source, wait_for_flow_run
from infra.registry import free_port
from infra.up import InfraState
from tasks import labels
from tasks.dataset.output import S3Config
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.stores import open_store
from tasks.hosts.limits import HostLimitMissing, host_limit
from tasks.records import INTERRUPTED
from tests.integration.conftest import marked_pids
from tests.s3_server import S3Server

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable  # the repo's .venv python: the worker runs flows with it
BASEBENCH = str(Path(PYTHON).parent / "basebench")
HOST = "solo"  # the test matrix's only Docker host, max_parallel 1
MARKER_VAR = "BASEBENCH_TEST_PREFECT_STACK"
RUN_TIMEOUT = 1200.0  # two runs of a cell each, serialised on one host, on 2 cores


@dataclass
class Stack:
    """The running server and worker, the matrix file and what the module observed."""

    api_url: str
    matrix: Path
    output: str
    s3: S3Config
    marker: str
    home: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sockets_seen: int = 0  # sampled sockets of the stack's processes, any peer
    foreign: list[str] = field(default_factory=list)  # connections leaving 127.0.0.0/8

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a process of the stack: server URL, no telemetry, the marker."""
        return {
            **os.environ,
            "PREFECT_API_URL": self.api_url,
            "PREFECT_HOME": str(self.home / "client"),
            "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            MARKER_VAR: self.marker,
            **extra,
        }


def peer_is_loopback(peer: str) -> bool:
    """``127.0.0.1:5000``, ``[::1]:80``, ``[::ffff:127.0.0.1]:80`` and unconnected ``*``."""
    address, _, port = peer.rpartition(":")
    address = address.strip("[]").split("%")[0]
    if port == "*" or address in ("*", "0.0.0.0", "::"):
        return True
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def sockets_of(pids: set[int]) -> list[tuple[str, bool]]:
    """TCP and UDP sockets of ``pids`` (any state), each with: is its peer on loopback?"""
    listing = subprocess.run(
        ["ss", "-tuanpH"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    found = []
    for line in listing:
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        columns = line.split()  # netid state recv-q send-q local peer process
        if owners & pids and len(columns) >= 6:
            found.append((line, peer_is_loopback(columns[5])))
    return found


def watch_sockets(stack: Stack, stop: threading.Event) -> None:
    while not stop.wait(0.5):
        sockets = sockets_of(marked_pids(MARKER_VAR, stack.marker))
        stack.sockets_seen += len(sockets)
        stack.foreign += [line for line, loopback in sockets if not loopback]


def start(stack: Stack, command: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=stack.env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped as a whole
        )
    stack.processes.append(process)
    return process


def stop_everything(stack: Stack) -> list[int]:
    """TERM each process group, then KILL whatever still carries the marker; the survivors."""
    for process in reversed(stack.processes):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in reversed(stack.processes):
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    for pid in marked_pids(MARKER_VAR, stack.marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    return sorted(marked_pids(MARKER_VAR, stack.marker))


def wait_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert server.poll() is None, f"prefect server exited:\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"prefect server not healthy after 90 s:\n{log.read_text()[-3000:]}")


def write_matrix(path: Path, infra: InfraState, s3: S3Server, output: str) -> None:
    matrix = {
        "name": "deploy-test",
        "apps": ["go-hello"],
        "toolchains": ["1.22.10"],
        "bases": ["distroless-static"],  # one cell a run: the two runs still share the host
        "repeat": 1,
        "hosts": [{"name": HOST, "url": infra.docker_url, "max_parallel": 1}],
        "output": output,
        "s3": {"endpoint_url": s3.endpoint_url},
        "cache_dir": str(infra.cache_dir),
    }
    path.write_text(yaml.safe_dump(matrix))


def trigger_adhoc(stack: Stack, matrix: Path) -> subprocess.Popen[str]:
    """``basebench trigger adhoc --matrix MATRIX`` as a process; its output names the run."""
    return subprocess.Popen(
        [BASEBENCH, "trigger", "adhoc", "--matrix", str(matrix), "--api-url", stack.api_url],
        cwd=REPO_ROOT,
        env=stack.env(),
        stdout=subprocess.PIPE,
        text=True,
    )


def flow_run_id(process: subprocess.Popen[str]) -> uuid.UUID:
    """The id of the flow run a ``trigger_adhoc`` process started."""
    out, _ = process.communicate(timeout=120)
    assert process.returncode == 0, out
    found = re.search(r"\(([0-9a-f-]{36})\) of basebench/adhoc", out)
    assert found, out
    return uuid.UUID(found.group(1))


def basebench(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """``basebench deploy|trigger`` as a process."""
    return subprocess.run(
        [BASEBENCH, *args, "--api-url", stack.api_url],
        cwd=REPO_ROOT,
        env=stack.env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, infra: InfraState, s3_server: S3Server
) -> Iterator[Stack]:
    """Server + deploy + worker on 127.0.0.1; all stopped afterwards, whatever happened."""
    tmp = tmp_path_factory.mktemp("prefect-stack")
    output = f"s3://{s3_server.bucket}/deploy-test/{uuid.uuid4().hex[:8]}"
    port = free_port()
    stack = Stack(
        api_url=f"http://127.0.0.1:{port}/api",
        matrix=tmp / "matrix.yaml",
        output=output,
        s3=S3Config(endpoint_url=s3_server.endpoint_url),
        marker=uuid.uuid4().hex,
        home=tmp,
    )
    write_matrix(stack.matrix, infra, s3_server, output)
    stop = threading.Event()
    watcher = threading.Thread(target=watch_sockets, args=(stack, stop), daemon=True)
    watcher.start()
    try:
        server_log = tmp / "server.log"
        server = start(
            stack,
            [
                PYTHON,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-ui",
            ],
            server_log,
            PREFECT_HOME=str(tmp / "server"),
            PREFECT_UI_ENABLED="false",
            PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS="5",
        )
        wait_healthy(stack.api_url, server, server_log)
        deployed = basebench(stack, "deploy", "--matrix", str(stack.matrix))
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        # Only the adhoc queue: a nightly run falling due mid-test must not start here.
        start(
            stack,
            [
                PYTHON,
                "-m",
                "prefect",
                "worker",
                "start",
                "--pool",
                "basebench",
                "--work-queue",
                "adhoc",
                "--name",
                f"test-{stack.marker[:8]}",
            ],
            tmp / "worker.log",
            PREFECT_HOME=str(tmp / "worker"),
            PREFECT_WORKER_QUERY_SECONDS="2",
        )
        yield stack
    finally:
        stop.set()
        watcher.join()
        survivors = stop_everything(stack)
        assert not survivors, f"processes of the stack still running: {survivors}"


@pytest.fixture(scope="module")
def prefect_client(stack: Stack) -> Iterator[Any]:
    """A sync Prefect client of the stack's server (settings scoped to this fixture)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: stack.api_url}),
        get_client(sync_client=True) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def adhoc_runs(stack: Stack, prefect_client: Any) -> list[Any]:
    """Two ad-hoc runs of the test matrix, triggered at once, waited for."""
    triggered = [trigger_adhoc(stack, stack.matrix) for _ in range(2)]
    ids = [flow_run_id(process) for process in triggered]
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        states = [wait_for_flow_run(flow_run_id, RUN_TIMEOUT) for flow_run_id in ids]
    worker_log = (stack.home / "worker.log").read_text()[-4000:]
    for state in states:
        assert state.is_completed(), f"{state.name}: {state.message}\n{worker_log}"
    return [prefect_client.read_flow_run(flow_run_id) for flow_run_id in ids]


def results(stack: Stack) -> Any:
    return read_table(open_store(stack.output, stack.s3), "results")


def test_deploy_creates_both_deployments_and_the_host_limits(
    stack: Stack, prefect_client: Any
) -> None:
    adhoc = prefect_client.read_deployment_by_name("basebench/adhoc")
    assert adhoc.schedules == []
    assert adhoc.work_pool_name == "basebench"
    assert adhoc.parameters == {"matrix": "configs/default.yaml", "only": []}
    source = repository_source()
    assert adhoc.pull_steps == [
        {
            "prefect.deployments.steps.git_clone": {
                "id": "clone",
                "repository": source["BASEBENCH_REPOSITORY"],
                "branch": source["BASEBENCH_BRANCH"],
            }
        }
    ]
    names = ("docker-host:local", f"docker-host:{HOST}")
    names += ("docker-host-quiet:local", f"docker-host-quiet:{HOST}")
    limits = {
        name: prefect_client.read_global_concurrency_limit_by_name(name).limit for name in names
    }
    assert limits == {
        "docker-host:local": 2,
        f"docker-host:{HOST}": 1,
        "docker-host-quiet:local": 2,
        f"docker-host-quiet:{HOST}": 1,
    }
    assert prefect_client.read_work_pool("basebench").type == "process"


def test_nightly_deployment_has_its_cron_schedule_and_upcoming_runs(
    stack: Stack, prefect_client: Any
) -> None:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    nightly = prefect_client.read_deployment_by_name("basebench/nightly")
    assert nightly.parameters == {"matrix": "configs/nightly.yaml", "only": []}
    assert nightly.work_queue_name == "nightly"
    [schedule] = nightly.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "0 2 * * *",
        "UTC",
        True,
    )
    deadline = time.monotonic() + 60
    while True:  # the scheduler service fills upcoming runs within a loop or two
        upcoming = prefect_client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[nightly.id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))
            ),
        )
        if len(upcoming) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(2)
    times = sorted(run.expected_start_time for run in upcoming)
    assert len(times) >= 3, times
    assert all((t.hour, t.minute, t.utcoffset().total_seconds()) == (2, 0, 0) for t in times)
    assert all((b - a).total_seconds() == 86400 for a, b in itertools.pairwise(times))


def test_rescan_deployment_has_its_own_schedule_and_queue(
    stack: Stack, prefect_client: Any
) -> None:
    rescan = prefect_client.read_deployment_by_name("basebench-rescan/rescan")
    assert rescan.parameters == {"matrix": "configs/nightly.yaml"}
    assert (rescan.work_pool_name, rescan.work_queue_name) == ("basebench", "rescan")
    assert rescan.entrypoint == "flows/deployments.py:rescan_file"
    [schedule] = rescan.schedules
    assert (schedule.schedule.cron, schedule.schedule.timezone, schedule.active) == (
        "0 14 * * *",
        "UTC",
        True,
    )


def test_adhoc_runs_publish_every_cell_to_s3(stack: Stack, adhoc_runs: list[Any]) -> None:
    manifests = list_runs(open_store(stack.output, stack.s3))
    assert len(adhoc_runs) == len(manifests) == 2
    assert {m["matrix"] for m in manifests} == {"deploy-test"}
    table = results(stack)
    assert len(table) == 2
    assert set(table["status"]) == {"ok"}
    assert set(table["host"]) == {HOST}
    for manifest in manifests:
        rows = table[table["run_id"] == manifest["run_id"]].set_index("base")
        assert list(rows.index) == ["distroless-static"]
        assert set(rows["toolchain_version"]) == {"1.22.10"}
        # The Go hello server on distroless static: about 6.9 MB.
        assert 3e6 < rows.loc["distroless-static", "size_bytes"] < 15e6


def test_two_runs_never_run_two_cells_on_a_max_parallel_1_host_at_once(
    stack: Stack, adhoc_runs: list[Any]
) -> None:
    first, second = adhoc_runs
    # Only meaningful if the two flow runs really were running at the same time.
    assert max(first.start_time, second.start_time) < min(first.end_time, second.end_time)
    table = results(stack).sort_values("started_at")
    spans = list(zip(table["started_at"], table["finished_at"], table["run_id"], strict=True))
    overlaps = [
        (a, b) for a, b in itertools.pairwise(spans) if b[0] < a[1]
    ]  # sorted by start: any overlap shows up between neighbours
    assert overlaps == [], f"cells overlapped on host {HOST}: {overlaps}"


def test_host_limit_admits_one_holder_at_a_time_on_the_server(stack: Stack) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    spans: list[tuple[float, float]] = []

    def hold() -> None:
        with host_limit(HOST, enabled=True):
            began = time.monotonic()
            time.sleep(0.4)
            spans.append((began, time.monotonic()))

    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        # Each thread runs in a copy of this context: Prefect settings live in context vars.
        threads = [
            threading.Thread(target=contextvars.copy_context().run, args=(hold,)) for _ in range(3)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    spans.sort()
    assert len(spans) == 3
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(spans)), spans


def test_host_limit_on_a_host_without_a_limit_names_the_fix(stack: Stack) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with (
        temporary_settings({PREFECT_API_URL: stack.api_url}),
        pytest.raises(HostLimitMissing, match=r"'docker-host:nowhere'.*basebench deploy"),
        host_limit("nowhere", enabled=True),
    ):
        pass


def test_trigger_rejects_a_bad_matrix_before_contacting_the_server(
    stack: Stack, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    matrix = yaml.safe_load(stack.matrix.read_text())
    bad.write_text(yaml.safe_dump({**matrix, "bases": [*matrix["bases"], "distroless-nope"]}))
    done = basebench(stack, "trigger", "adhoc", "--matrix", str(bad))
    assert done.returncode == 2
    assert f"{bad}: bases[1]: unknown base 'distroless-nope'" in done.stderr


# A run cancelled mid-way: max_parallel 1, so one cell finishes, one is in flight, one waits.
CANCELLED_BASES = ["distroless-static", "distroless-base", "bookworm-slim"]
# The Go 1.22.10 hello server's size on each (README: 6.9, 26 and 79 MB).
SIZE_MB = {"distroless-static": (3, 15), "distroless-base": (15, 45), "bookworm-slim": (55, 110)}


def test_cancelled_flow_run_publishes_finished_cells_and_removes_the_rest(
    stack: Stack,
    prefect_client: Any,
    infra: InfraState,
    docker_client: docker.DockerClient,
    s3_server: S3Server,
    tmp_path: Path,
) -> None:
    from prefect.client.schemas.objects import State, StateType
    from prefect.settings import PREFECT_API_URL, temporary_settings

    cache = tmp_path / "cache"  # the run's own: its journal and archives are this test's
    output = f"s3://{s3_server.bucket}/deploy-cancel/{uuid.uuid4().hex[:8]}"
    matrix = tmp_path / "cancel.yaml"
    spec = yaml.safe_load(stack.matrix.read_text())
    spec.update(
        name="deploy-cancel",
        bases=CANCELLED_BASES,
        output=output,
        cache_dir=str(cache),
        scanner={"db_dir": str(infra.cache_dir / "trivy")},
    )
    matrix.write_text(yaml.safe_dump(spec))
    flow_run = flow_run_id(trigger_adhoc(stack, matrix))
    deadline = time.monotonic() + RUN_TIMEOUT
    while not (finished := list(cache.glob("journal/*/*.pickle"))):
        state = prefect_client.read_flow_run(flow_run).state
        assert not state.is_final(), f"{state.name}: {state.message}"
        assert time.monotonic() < deadline, "no cell finished"
        time.sleep(0.5)
    run_id = finished[0].parent.name
    # What the UI's Cancel button (and `prefect flow-run cancel`) asks of the server.
    asked = prefect_client.set_flow_run_state(flow_run, State(type=StateType.CANCELLING))
    assert asked.status.value == "ACCEPT", asked
    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        state = wait_for_flow_run(flow_run, 120)
    assert state.type == StateType.CANCELLED, f"{state.name}: {state.message}"

    store = open_store(output, S3Config(endpoint_url=s3_server.endpoint_url))
    assert [m["run_id"] for m in list_runs(store)] == [run_id]
    table = read_table(store, "results").set_index("base")
    assert sorted(table.index) == sorted(CANCELLED_BASES)  # a row for every cell
    done = table[table["error"] != INTERRUPTED]
    stopped = table[table["error"] == INTERRUPTED]
    # The cells journaled before the cancel are published, with their measurements.
    assert {path.stem for path in finished} <= set(done["cell_id"])
    assert len(done) >= 1 and set(done["status"]) == {"ok"}
    for base, row in done.iterrows():
        low, high = SIZE_MB[str(base)]
        assert low * 1e6 < row["size_bytes"] < high * 1e6, (base, row["size_bytes"])
        assert row["packages"] > 0 and row["build_seconds"] > 0 and row["startup_seconds"] > 0
        assert row["vulns_high"] >= 1  # the fixture DB's Go 1.22.10 standard library HIGH
    assert len(stopped) >= 1 and set(stopped["status"]) == {"failed"}
    assert stopped["failed_stage"].isna().all()  # not a stage's fault: the run was stopped
    # Nothing the run made stays: containers, networks, images, archives, journal, lease.
    label = {"label": f"{labels.RUN}={run_id}"}
    assert docker_client.containers.list(all=True, filters=label) == []
    assert docker_client.networks.list(filters=label) == []
    assert docker_client.images.list(filters=label) == []
    assert list((cache / "archives").glob(f"{run_id}-*")) == []
    assert not (cache / "journal" / run_id).exists()
    assert not (cache / "runs" / f"{run_id}.lease").exists()


def test_nothing_left_127_0_0_0_slash_8(stack: Stack) -> None:
    time.sleep(1)  # one more sample after the last test's traffic
    assert marked_pids(MARKER_VAR, stack.marker), "the sampler watches the stack's processes"
    assert stack.sockets_seen > 100, "the sampler saw the stack's own loopback traffic"
    assert stack.foreign == []
