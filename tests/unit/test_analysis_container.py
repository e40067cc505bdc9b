"""Analysis on the host: where it runs by default, what the flow sends and reads back,
and a toolbox that holds everything the container imports."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from pydantic import ValidationError

from tasks.containers.analysis import ARCHIVE_MARK, Spec, run_scan
from tasks.hosts.config import HostConfig
from tasks.readers.layers import LayerFacts
from tasks.records import ProgramFacts
from tasks.scanners.trivy import TrivyScanner
from tasks.sessions.toolbox import PYTHON_MODULES, pack_toolbox


@pytest.mark.parametrize(
    ("host", "on_host", "socket"),
    [
        ({}, False, "/var/run/docker.sock"),
        ({"url": "unix:///run/user/1000/docker.sock"}, False, "/run/user/1000/docker.sock"),
        ({"url": "ssh://ci@build-1.example"}, True, "/var/run/docker.sock"),
        ({"url": "ssh://ci@build-1.example", "analysis": "flow"}, False, "/var/run/docker.sock"),
        (
            {"url": "ssh://ci@build-2.example", "ssh": {"remote_socket": "/run/user/1000/d.sock"}},
            True,
            "/run/user/1000/d.sock",
        ),
        ({"url": "tcp://127.0.0.1:2376", "insecure": True}, False, "/var/run/docker.sock"),
        ({"analysis": "host", "socket": "/srv/engine.sock"}, True, "/srv/engine.sock"),
    ],
)
def test_where_a_host_analyses_and_which_socket_it_mounts(
    host: dict[str, object], on_host: bool, socket: str
) -> None:
    config = HostConfig.model_validate(host)
    assert (config.analyses_on_host, config.socket) == (on_host, socket)


def test_a_socket_must_be_an_absolute_path_on_the_host() -> None:
    relative = re.escape("socket 'docker.sock': expected an absolute path on the host")
    with pytest.raises(ValidationError, match=relative):
        HostConfig.model_validate({"analysis": "host", "socket": "docker.sock"})
    with pytest.raises(ValidationError, match="analysis\n  Input should be 'auto', 'flow' or"):
        HostConfig.model_validate({"analysis": "here"})


def test_spec_and_layer_facts_cross_as_json_unchanged() -> None:
    spec = Spec("sha256:ab", ["sha256:cd"], ["trivy", "image", "--input", ARCHIVE_MARK], 60)
    assert Spec.parse(spec.to_json()) == spec
    program = ProgramFacts("/app/main", "dynamic", "/lib64/ld-linux-x86-64.so.2", ("libc.so.6",))
    facts = LayerFacts(5_432_100, 412, False, False, 0, 1, program)
    assert LayerFacts.from_json(json.loads(json.dumps(facts.to_json()))) == facts
    no_program = LayerFacts(10, 1, True, True, 3, 4, None)
    assert LayerFacts.from_json(json.loads(json.dumps(no_program.to_json()))) == no_program


def test_the_scan_command_gets_the_archive_and_its_outcome_is_kept(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys; print(sys.argv[1]); sys.exit(3)", ARCHIVE_MARK]
    outcome = run_scan(Spec("sha256:ab", [], argv, 30), tmp_path / "image.tar")
    assert outcome == {"returncode": 3, "stdout": f"{tmp_path / 'image.tar'}\n", "stderr": ""}
    slow = [sys.executable, "-c", "import time; time.sleep(5)"]
    assert run_scan(Spec("sha256:ab", [], slow, 1), tmp_path / "image.tar")["returncode"] is None


def test_the_toolbox_holds_all_the_container_imports_and_is_packed_once(tmp_path: Path) -> None:
    scanner = TrivyScanner(tmp_path / "no-db", timeout_seconds=30)
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "toolbox-0123456789abcdef.tar").write_text("an older version")
    toolbox = pack_toolbox(scanner, tmp_path / "packed")
    assert list((tmp_path / "packed").iterdir()) == [toolbox.archive]
    written = toolbox.archive.stat().st_mtime_ns
    assert pack_toolbox(scanner, tmp_path / "packed") == toolbox
    assert toolbox.archive.stat().st_mtime_ns == written
    assert toolbox.volume == f"basebench-toolbox-{toolbox.digest[:16]}"
    with tarfile.open(toolbox.archive) as tar:
        names = tar.getnames()
        tar.extractall(tmp_path / "volume", filter="data")
    assert names[-1] == ".complete"  # last: a volume without it was filled in part
    assert {f"python/tasks/{m}" for m in PYTHON_MODULES} | {"bin/trivy"} <= set(names)
    # The distroless image has Python and nothing else: the toolbox alone must do.
    check = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import tasks.containers.analysis; "
        "print(sorted(m for m in ('docker', 'prefect', 'pydantic', 'yaml') if m in sys.modules))"
    )
    done = subprocess.run(
        ["/usr/bin/python3", "-I", "-S", "-c", check, str(tmp_path / "volume" / "python")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "[]\n", "")
