"""The run's terminal output: errors are printed as they are, never read as rich markup."""

from __future__ import annotations

import dataclasses

import pytest

from tasks.dataset.writer import PublishOutcome
from tasks.render import terminal
from tests.records_factory import failed_cell, make_run


def test_an_error_with_brackets_is_printed_as_it_is(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # BuildKit's log names steps like "[build 4/4] RUN [/bin/sh -c go build]".
    error = "build: docker build exited 1: ERROR [build 4/4] RUN [/bin/sh -c go build] [/x]"
    cell = dataclasses.replace(failed_cell(), error=error)
    outcome = terminal_outcome(make_run(cells=(cell,)))
    monkeypatch.setattr(terminal, "console", terminal.Console(width=400))
    terminal.render_summary(outcome)  # type: ignore[arg-type]
    out = capsys.readouterr().out
    assert f"go-hello go1.22.10 bookworm: failed: {error}" in out


def terminal_outcome(run: object) -> object:
    published = PublishOutcome("run-1", "/tmp/results", attempts=1)
    return type("Outcome", (), {"record": run, "published": published, "comparison": None})()
