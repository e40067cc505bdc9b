"""The program of the analysis container: save, inspect and scan next to the image.

``python3 -m tasks.containers.analysis SPEC`` runs in a container on the build
host (``tasks.stages.analyse_on_host`` starts it) with the host engine's socket mounted
at ``ENGINE_SOCKET``. It saves the image onto the container's own disk (the host's),
then reads its layers and runs the scanner's command on the archive side by side, and
leaves in ``OUT`` what the flow fetches, kilobytes instead of the image:

- ``facts.json``: the layer facts (``tasks.readers.layers.LayerFacts``), or ``inspect.error``;
- ``scan.json``: the scanner's exit code, stdout and stderr, for the scanner to read.

Standard library and pyelftools only: the container runs a distroless python3 image,
and talks to the engine over plain HTTP on its socket (the Docker SDK is not there).
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tasks.readers.layers import LayerCache, LayerFacts, read_layer_facts

ENGINE_SOCKET = "/run/basebench/engine.sock"
TOOLBOX_MOUNT = "/toolbox"  # the toolbox volume (read-only): this code, the scanner
OUT = Path("/out")
ARCHIVE = Path("/work/image.tar")  # in the container's writable layer: the host's disk
LAYER_CACHE = Path("/cache/layers")  # a volume kept on the host across runs
ARCHIVE_MARK = "{archive}"  # stands for the saved image in the scan command
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Spec:
    """What the flow asks for: one image, the layers worth caching, the scan's argv."""

    image_id: str
    cacheable: list[str]
    scan: list[str]
    scan_timeout_seconds: int

    @classmethod
    def parse(cls, text: str) -> Spec:
        return cls(**json.loads(text))

    def to_json(self) -> str:
        return json.dumps(asdict(self))


class _EngineConnection(http.client.HTTPConnection):
    """HTTP to the Docker engine over its unix socket."""

    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self._path)


def _engine_get(path: str) -> http.client.HTTPResponse:
    connection = _EngineConnection(ENGINE_SOCKET)
    connection.request("GET", path)
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"engine GET {path}: {response.status} {response.read()[:500]!r}")
    return response


def save_image(image_id: str, archive: Path) -> dict[str, Any]:
    """Write ``image_id`` as a ``docker save`` archive to ``archive``; the image's attrs."""
    name = quote(image_id, safe="")
    attrs: dict[str, Any] = json.load(_engine_get(f"/images/{name}/json"))
    archive.parent.mkdir(parents=True, exist_ok=True)
    with _engine_get(f"/images/{name}/get") as stream, archive.open("wb") as out:
        while chunk := stream.read(_CHUNK):
            out.write(chunk)
    return attrs


def run_scan(spec: Spec, archive: Path) -> dict[str, Any]:
    """The scan command's exit code, stdout and stderr."""
    argv = [str(archive) if arg == ARCHIVE_MARK else arg for arg in spec.scan]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=spec.scan_timeout_seconds, check=False
        )
    except subprocess.TimeoutExpired:
        return {"returncode": None, "stdout": "", "stderr": ""}
    return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def analyse(spec: Spec, out: Path) -> None:
    """Save, then inspect and scan side by side, leaving the outcomes in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    try:
        attrs = save_image(spec.image_id, ARCHIVE)
    except Exception as exc:  # every failure is the flow's to report, as a line
        (out / "inspect.error").write_text(f"save: {exc}")
        return
    with ThreadPoolExecutor(max_workers=2) as threads:
        facts = threads.submit(
            read_layer_facts,
            ARCHIVE,
            attrs["RootFS"]["Layers"],
            attrs["Config"],
            LayerCache(LAYER_CACHE),
            set(spec.cacheable),
        )
        scanned = threads.submit(run_scan, spec, ARCHIVE)
        (out / "scan.json").write_text(json.dumps(scanned.result()))
        try:
            found: LayerFacts = facts.result()
        except Exception as exc:
            (out / "inspect.error").write_text(str(exc))
        else:
            (out / "facts.json").write_text(json.dumps(found.to_json()))


if __name__ == "__main__":
    analyse(Spec.parse(sys.argv[1]), OUT)
