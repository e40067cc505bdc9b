"""The forged golang builders compile Go offline, with and without cgo."""

from __future__ import annotations

import io
import tarfile

import docker
import pytest

from infra.up import InfraState
from tests.integration.conftest import GO_VERSIONS

pytestmark = pytest.mark.integration

PURE = """package main

import (
\t"fmt"
\t"runtime"
)

func main() { fmt.Println("pure", runtime.Version()) }
"""

CGO = """package main

// static int twice(int x) { return 2 * x; }
import "C"

import "fmt"

func main() { fmt.Println("cgo", int(C.twice(21))) }
"""

SCRIPT = """set -e
cd /src/pure && CGO_ENABLED=0 go build -o /tmp/pure . && /tmp/pure
cd /src/cgo && CGO_ENABLED=1 go build -o /tmp/cgo . && /tmp/cgo
"""


def _sources() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in {
            "src/pure/go.mod": "module pure\n\ngo 1.22\n",
            "src/pure/main.go": PURE,
            "src/cgo/go.mod": "module cgo\n\ngo 1.22\n",
            "src/cgo/main.go": CGO,
        }.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


@pytest.mark.parametrize("version", GO_VERSIONS)
def test_builder_compiles_offline_with_and_without_cgo(
    infra: InfraState, docker_client: docker.DockerClient, version: str
) -> None:
    ref = f"{infra.registry}/library/golang:{version}-bookworm"
    container = docker_client.containers.create(
        ref, command=["sh", "-c", SCRIPT], network_mode="none"
    )
    try:
        container.put_archive("/", _sources())
        container.start()
        exit_code = container.wait(timeout=600)["StatusCode"]
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    assert exit_code == 0, output
    assert output.splitlines() == [f"pure go{version}", "cgo 42"]
