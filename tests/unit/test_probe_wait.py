"""Waiting for the first HTTP 200 ends early when the container is found gone."""

from __future__ import annotations

import socket
import time

import pytest

from tasks.stages import probe
from tasks.stages.probe import ContainerExited, ProbeError, wait_for_http


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_check_that_raises_ends_the_wait_long_before_the_timeout() -> None:
    calls = []

    def exited() -> None:
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise ContainerExited("GET / on port 8080", 1, ["exec ./main: no such file"], 0.1)

    started = time.monotonic()
    with pytest.raises(ContainerExited) as caught:
        wait_for_http("127.0.0.1", closed_port(), "/", timeout=30, check=exited)
    elapsed = time.monotonic() - started
    assert len(calls) == 3
    # Checked every STATE_POLL_SECONDS, not after each attempt nor at the timeout.
    assert 2 * probe.STATE_POLL_SECONDS <= elapsed < 10 * probe.STATE_POLL_SECONDS + 1
    assert str(caught.value) == (
        "probe: the container exited with code 1 before answering GET / on port 8080 "
        "(0.10 s after start); last output: exec ./main: no such file"
    )
    assert (caught.value.exit_code, caught.value.output) == (1, ["exec ./main: no such file"])


def test_no_output_is_said_so() -> None:
    error = ContainerExited("GET /health on port 3000", 139, [], 1.234)
    assert str(error).endswith("(1.23 s after start); last output: (none)")
    assert isinstance(error, ProbeError)


def test_without_a_check_the_wait_runs_to_its_timeout() -> None:
    started = time.monotonic()
    with pytest.raises(ProbeError, match=r"no HTTP 200 on / within 0.3 s \(last: "):
        wait_for_http("127.0.0.1", closed_port(), "/", timeout=0.3)
    assert time.monotonic() - started >= 0.3
