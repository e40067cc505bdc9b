"""Probes run alone on a host across flow runs: four flow runs, in four processes, on
one real Prefect server, share the host ``shared-host`` (``max_parallel: 2``).

Three builds and one probe, each in its own flow run, hold their lane of a ``LaneGate``
with ``across_runs``: the server's ``docker-host-quiet:shared-host`` limit. Two builds may
run side by side; the probe never overlaps any build of any flow run.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from tasks.hosts.config import HostConfig
from tasks.hosts.limits import ensure_host_limits, host_limits
from tests.integration.test_deployments import (
    Stack,
    free_port,
    start,
    stop_everything,
    wait_healthy,
)

pytestmark = pytest.mark.integration

HOST = "shared-host"
# One flow run: say it is ready, wait for the start time the test writes once every flow
# run is ready (imports take long on two busy cores), then hold its lane ``seconds`` long
# from ``offset`` seconds after that time.
FLOW = """
import json, sys, time
from pathlib import Path
from prefect import flow
from tasks.sessions.lanes import Lane, LaneGate, LaneLimits

@flow(name="quiet-holder")
def hold(kind: str, offset: float, seconds: float, out: str, start: str) -> None:
    lanes = LaneGate(LaneLimits())
    lanes.across_runs("shared-host", 2)
    Path(out + ".ready").touch()
    while not Path(start).exists():
        time.sleep(0.05)
    at = float(Path(start).read_text()) + offset
    time.sleep(max(0.0, at - time.time()))
    with lanes.hold(Lane.BUILD if kind == "shared" else Lane.PROBE, kind):
        began = time.time()
        time.sleep(seconds)
        ended = time.time()
    with open(out, "w") as handle:
        json.dump({"kind": kind, "began": began, "ended": ended}, handle)

hold(sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5])
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("quiet")
    port = free_port()
    stack = Stack(
        api_url=f"http://127.0.0.1:{port}/api",
        matrix=tmp / "unused.yaml",
        output="",
        s3=None,  # type: ignore[arg-type]  # no store in this test
        marker=uuid.uuid4().hex,
        home=tmp,
    )
    try:
        log = tmp / "server.log"
        command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
        server = start(
            stack,
            [*command, "--port", str(port), "--no-ui"],
            log,
            PREFECT_HOME=str(tmp / "server"),
            PREFECT_UI_ENABLED="false",
        )
        wait_healthy(stack.api_url, server, log)
        yield stack
    finally:
        assert not stop_everything(stack)


def test_a_probe_never_overlaps_a_build_of_another_flow_run(stack: Stack) -> None:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: stack.api_url}):
        ensure_host_limits(host_limits([("test", HostConfig(name=HOST, max_parallel=2))]))
    script = stack.home / "holder.py"
    script.write_text(FLOW)
    start_file = stack.home / "start"
    plan = [  # kind, start offset, seconds held
        ("shared", 0.0, 6.0),
        ("shared", 0.0, 6.0),
        ("exclusive", 2.0, 3.0),  # asks while both builds run
        ("shared", 3.0, 2.0),  # asks while the probe waits or runs
    ]
    outputs = [stack.home / f"span-{n}.json" for n in range(len(plan))]
    runs = [
        start(
            stack,
            [
                sys.executable,
                str(script),
                kind,
                str(offset),
                str(seconds),
                str(out),
                str(start_file),
            ],
            stack.home / f"flow-{n}.log",
            PREFECT_HOME=str(stack.home / f"client-{n}"),
        )
        for n, ((kind, offset, seconds), out) in enumerate(zip(plan, outputs, strict=True))
    ]
    deadline = time.monotonic() + 240
    while not all(out.with_name(out.name + ".ready").exists() for out in outputs):
        assert time.monotonic() < deadline and all(run.poll() is None for run in runs)
        time.sleep(0.1)
    at = time.time() + 1.0
    start_file.write_text(repr(at))
    for n, run in enumerate(runs):
        assert run.wait(timeout=300) == 0, (stack.home / f"flow-{n}.log").read_text()[-3000:]
    spans = [json.loads(out.read_text()) for out in outputs]
    probe = spans[2]
    builds = [spans[0], spans[1], spans[3]]
    # The probe ran alone: no build of any flow run overlaps it ...
    assert [b for b in builds if b["began"] < probe["ended"] and probe["began"] < b["ended"]] == []
    assert probe["began"] >= max(spans[0]["ended"], spans[1]["ended"])
    # ... while builds did share the host (the limit is not a plain mutex).
    first, second = spans[0], spans[1]
    assert first["began"] < second["ended"] and second["began"] < first["ended"]
    assert all(s["began"] >= at - 0.5 for s in spans)
