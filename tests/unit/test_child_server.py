"""ChildServer with a real child process (Python's http.server), no Docker."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tasks.child_server import ChildServer, ChildServerError
from tasks.processes import alive


def http_server(port: int) -> list[str]:
    return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]


def test_ready_serves_and_stops() -> None:
    server = ChildServer(http_server, "/")
    server.start()
    try:
        server.wait_ready(timeout=30)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(server.base_url + "/", timeout=5) as response:
            assert response.status == 200
        assert server.running
    finally:
        server.stop()
    assert not server.running
    server.stop()  # twice is fine
    assert server.output() == ""  # the log is closed with the process


def test_exit_at_start_up_carries_its_output() -> None:
    server = ChildServer(lambda port: [sys.executable, "-c", "import sys; sys.exit('boom')"], "/")
    server.start()
    with pytest.raises(ChildServerError, match=r"^exited at start-up \(code 1\)$") as raised:
        server.wait_ready(timeout=30)
    assert raised.value.output.strip() == "boom"
    server.stop()


def test_a_server_that_never_answers_is_stopped() -> None:
    server = ChildServer(lambda port: [sys.executable, "-c", "import time; time.sleep(60)"], "/")
    server.start()
    with pytest.raises(ChildServerError, match=r"^not ready after 0.5 s$"):
        server.wait_ready(timeout=0.5)
    assert not server.running  # stopped, not left behind


PARENT = """
import subprocess
import sys
import time
from pathlib import Path
from tasks.child_server import ChildServer
server = ChildServer(lambda port: [sys.executable, "-m", "http.server", "--bind",
                                   "127.0.0.1", str(port)], "/")
server.start()
server.wait_ready(timeout=30)
print(server._process.pid, flush=True)
sys.stdin.read()  # until killed
"""


def test_a_killed_parent_takes_its_server_with_it() -> None:
    # A SIGKILLed ``basebench run`` must not leave its Prefect or Trivy server behind.
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert Path(f"/proc/{child}").exists()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(child):
        time.sleep(0.05)
    assert not alive(child)
