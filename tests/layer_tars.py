"""Hand-made image layers and ``docker save`` archives for tests of the layer reader."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

# (name, kind, data): kind file (mode 0755), plain (0644), dir, link (data: the target),
# char (a character device, as /dev/null).
Entry = tuple[str, str, bytes | str | None]


def layer(entries: list[Entry]) -> bytes:
    """A layer tar of ``entries``, in order."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            elif kind == "char":
                info.type, info.mode, info.devmajor, info.devminor = tarfile.CHRTYPE, 0o666, 1, 3
                tar.addfile(info)
            else:
                raw = data.encode() if isinstance(data, str) else data or b""
                info.size, info.mode = len(raw), 0o755 if kind == "file" else 0o644
                tar.addfile(info, io.BytesIO(raw))
    return buffer.getvalue()


def archive(tmp_path: Path, layers: list[bytes]) -> Path:
    """A ``docker save`` archive (legacy layout) of one image with ``layers``."""
    path = tmp_path / "image.tar"
    names = [f"{i}/layer.tar" for i in range(len(layers))]
    with tarfile.open(path, "w") as tar:
        for name, data in [*zip(names, layers, strict=True), ("manifest.json", None)]:
            raw = data if data is not None else json.dumps([{"Layers": names}]).encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path
