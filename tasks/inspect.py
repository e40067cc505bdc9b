"""Inspect stage: what is inside a built image, read from its layers.

The image is read through ``docker save``, so the same code works on every base,
including those with no shell to run commands in. Each layer tar is parsed as it streams
past and gzip-compressed on the fly: the compressed size is what a registry push would
transfer. Whiteouts are applied in layer order to get the final filesystem.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
import threading
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import docker

from tasks.build import PulledImage
from tasks.records import BuildResult, InspectResult

SHELLS = ("bin/sh", "bin/bash", "bin/ash", "bin/dash", "bin/busybox")
PACKAGE_MANAGERS = ("bin/dpkg", "bin/apt", "bin/apt-get", "sbin/apk", "bin/rpm", "bin/dnf")
ROOT_USERS = ("", "root", "0", "root:root", "0:0")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayerSummary:
    """One layer: its digest, its gzip size and what it adds, changes or deletes."""

    digest: str  # sha256 of the uncompressed layer tar (the image's diff_id)
    compressed_bytes: int
    entries: dict[str, int]  # path -> tar mode bits, with the file type in the high bits
    whiteouts: tuple[str, ...]  # paths this layer deletes
    opaque_dirs: tuple[str, ...]  # directories this layer empties first


class LayerSizes:
    """Gzip sizes of layers already seen, persisted in a JSON file.

    Compressing is most of the cost of inspecting an image, and base layers recur in
    every cell. Keys are the names ``docker save`` gives layers (content-derived ids);
    each entry keeps the layer digest too, and a digest that does not match on reuse
    invalidates the cache for that image.
    """

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._sizes: dict[str, tuple[str, int]] = {}
        if path and path.is_file():
            self._sizes = {k: (d, n) for k, (d, n) in json.loads(path.read_text()).items()}

    def get(self, key: str) -> tuple[str, int] | None:
        with self._lock:
            return self._sizes.get(key)

    def update(self, entries: dict[str, tuple[str, int]]) -> None:
        with self._lock:
            self._sizes.update(entries)
            if self._path:
                self._path.parent.mkdir(parents=True, exist_ok=True)
                temporary = self._path.with_suffix(f".{threading.get_ident()}.tmp")
                temporary.write_text(json.dumps(self._sizes))
                temporary.replace(self._path)


class _LayerReader:
    """A read-through file object that hashes what passes and, optionally, gzips it."""

    def __init__(self, source: IO[bytes], compress: bool) -> None:
        self._source = source
        self._sha256 = hashlib.sha256()
        self._gzip = zlib.compressobj(6, zlib.DEFLATED, 31) if compress else None
        self.compressed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self._sha256.update(data)
        if self._gzip:
            self.compressed += len(self._gzip.compress(data))
        return data

    def finish(self) -> str:
        while self.read(_CHUNK):
            pass
        if self._gzip:
            self.compressed += len(self._gzip.flush())
        return f"sha256:{self._sha256.hexdigest()}"


_TYPE_BITS = {tarfile.DIRTYPE: 0o040000, tarfile.SYMTYPE: 0o120000, tarfile.LNKTYPE: 0o100000}


def summarize_layer(stream: IO[bytes], known_size: int | None = None) -> LayerSummary:
    """Read one uncompressed layer tar from ``stream``; gzip it unless its size is known."""
    reader = _LayerReader(stream, compress=known_size is None)
    entries: dict[str, int] = {}
    whiteouts: list[str] = []
    opaque: list[str] = []
    with tarfile.open(fileobj=reader, mode="r|") as layer:  # type: ignore[call-overload]
        for member in layer:
            path = posixpath.normpath(member.name.lstrip("./") or ".")
            directory, name = posixpath.split(path)
            if name == ".wh..wh..opq":
                opaque.append(directory)
            elif name.startswith(".wh."):
                whiteouts.append(posixpath.join(directory, name[4:]))
            else:
                entries[path] = member.mode | _TYPE_BITS.get(member.type, 0o100000)
    digest = reader.finish()
    size = reader.compressed if known_size is None else known_size
    return LayerSummary(digest, size, entries, tuple(whiteouts), tuple(opaque))


def merge_layers(layers: Iterable[LayerSummary]) -> dict[str, int]:
    """The final filesystem (path -> mode) after applying layers bottom to top."""
    tree: dict[str, int] = {}
    for layer in layers:
        for directory in layer.opaque_dirs:
            _delete_below(tree, directory, keep_self=True)
        for path in layer.whiteouts:
            _delete_below(tree, path, keep_self=False)
        tree.update(layer.entries)
    return tree


def _delete_below(tree: dict[str, int], path: str, keep_self: bool) -> None:
    prefix = path + "/"
    for existing in [p for p in tree if p.startswith(prefix) or (p == path and not keep_self)]:
        del tree[existing]


class StaleLayerSizes(ValueError):
    """A cached layer size belongs to different content than the layer read."""


def read_saved_image(
    chunks: Iterator[bytes], sizes: LayerSizes | None = None
) -> list[LayerSummary]:
    """Layer summaries, bottom to top, from a ``docker save`` stream of one image.

    Handles both the legacy layout (``<id>/layer.tar``, repeated layers as symlinks)
    and the OCI layout of newer engines (``blobs/sha256/<digest>``, where non-layer
    blobs are skipped).
    """
    summaries: dict[str, LayerSummary] = {}
    links: dict[str, str] = {}
    manifest: list[dict[str, list[str]]] = []
    with tarfile.open(fileobj=_ChunkReader(chunks), mode="r|") as saved:  # type: ignore[call-overload]
        for member in saved:
            if member.issym():
                target = posixpath.dirname(member.name) + "/" + member.linkname
                links[member.name] = posixpath.normpath(target)
            elif not member.isfile():
                continue
            elif member.name == "manifest.json":
                manifest = json.load(saved.extractfile(member))
            elif member.name.endswith("layer.tar") or member.name.startswith("blobs/"):
                known = sizes.get(member.name) if sizes else None
                try:
                    summary = summarize_layer(saved.extractfile(member), known and known[1])
                except tarfile.ReadError:
                    continue  # a config or index blob, not a layer
                if known and known[0] != summary.digest:
                    raise StaleLayerSizes(member.name)
                summaries[member.name] = summary
    if not manifest:
        raise ValueError("inspect: docker save stream has no manifest.json")
    if sizes:
        sizes.update({k: (v.digest, v.compressed_bytes) for k, v in summaries.items()})
    return [summaries[links.get(name, name)] for name in manifest[0]["Layers"]]


class _ChunkReader:
    """Adapts the SDK's chunk iterator to the ``read`` that tarfile's stream mode uses."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            self._buffer += chunk
        if size < 0:
            size = len(self._buffer)
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def has_any(tree: dict[str, int], candidates: Iterable[str]) -> bool:
    """True when any candidate exists under / or /usr (merged-usr images link one to the other)."""
    return any(path in tree or f"usr/{path}" in tree for path in candidates)


def inspect_image(
    client: docker.DockerClient,
    build: BuildResult,
    builder: PulledImage,
    base: PulledImage,
    sizes: LayerSizes | None = None,
) -> InspectResult:
    """Size, layers, user and content facts of a built image."""
    image = client.images.get(build.image_id)
    try:
        layers = read_saved_image(image.save(chunk_size=_CHUNK), sizes)
    except StaleLayerSizes:
        layers = read_saved_image(image.save(chunk_size=_CHUNK))
    tree = merge_layers(layers)
    user = image.attrs["Config"].get("User") or ""
    return InspectResult(
        size_bytes=int(image.attrs["Size"]),
        compressed_bytes=sum(layer.compressed_bytes for layer in layers),
        layers=len(image.attrs["RootFS"]["Layers"]),
        user=user,
        runs_as_root=user in ROOT_USERS,
        has_shell=has_any(tree, SHELLS),
        has_package_manager=has_any(tree, PACKAGE_MANAGERS),
        setuid_files=sum(1 for mode in tree.values() if mode & 0o100000 and mode & 0o4000),
        files=sum(1 for mode in tree.values() if not mode & 0o040000),
        base_forged=base.forged,
        builder_forged=builder.forged,
    )
