"""What an image's layers hold, read from a ``docker save`` archive.

Each layer tar is parsed and gzip-compressed on the fly: the compressed size is what a
registry push would transfer. Whiteouts are applied in layer order to get the final
filesystem. Layers of the base and builder images recur in every cell, so their
summaries are cached by diff id and those layers are not read again.

Only the standard library and pyelftools (through ``tasks.readers.program``): this module
also runs inside the analysis container on a build host (``tasks.containers.analysis``).
"""

from __future__ import annotations

import json
import os
import posixpath
import tarfile
import threading
import zlib
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from tasks.readers.program import ImageFiles, entry_path, read_program
from tasks.records import ProgramFacts

SHELLS = ("bin/sh", "bin/bash", "bin/ash", "bin/dash", "bin/busybox")
PACKAGE_MANAGERS = ("bin/dpkg", "bin/apt", "bin/apt-get", "sbin/apk", "bin/rpm", "bin/dnf")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class LayerSummary:
    """One layer: its gzip size and what it adds, changes or deletes."""

    compressed_bytes: int
    entries: dict[str, int]  # path -> tar mode bits, with the file type in the high bits
    whiteouts: tuple[str, ...]  # paths this layer deletes
    opaque_dirs: tuple[str, ...]  # directories this layer empties first


class LayerCache:
    """Summaries of base and builder layers, one JSON file per diff id in ``folder``.

    A diff id is the sha256 of the uncompressed layer, so an entry can never describe
    other content; an unreadable entry is treated as missing and written again.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, diff_id: str) -> Path:
        return self.folder / f"{diff_id.removeprefix('sha256:')}.json"

    def get(self, diff_id: str) -> LayerSummary | None:
        try:
            raw = json.loads(self._path(diff_id).read_text())
            return LayerSummary(
                compressed_bytes=int(raw["compressed_bytes"]),
                entries={str(k): int(v) for k, v in raw["entries"].items()},
                whiteouts=tuple(raw["whiteouts"]),
                opaque_dirs=tuple(raw["opaque_dirs"]),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def put(self, diff_id: str, summary: LayerSummary) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(diff_id)
        # Written aside, then renamed: a reader in another thread never sees half a file.
        temporary = path.with_suffix(f".{os.getpid()}-{threading.get_ident()}.tmp")
        temporary.write_text(json.dumps(asdict(summary)))
        temporary.replace(path)


class _GzipCounter:
    """A read-through file object that counts the gzip size of what passes."""

    def __init__(self, source: IO[bytes]) -> None:
        self._source = source
        self._gzip = zlib.compressobj(6, zlib.DEFLATED, 31)
        self.compressed = 0

    def read(self, size: int = -1) -> bytes:
        data = self._source.read(size)
        self.compressed += len(self._gzip.compress(data))
        return data

    def finish(self) -> int:
        while self.read(_CHUNK):
            pass
        self.compressed += len(self._gzip.flush())
        return self.compressed


_TYPE_BITS = {tarfile.DIRTYPE: 0o040000, tarfile.SYMTYPE: 0o120000, tarfile.LNKTYPE: 0o100000}


def summarize_layer(stream: IO[bytes]) -> LayerSummary:
    """Read one uncompressed layer tar from ``stream``, gzipping it to count its size."""
    reader = _GzipCounter(stream)
    entries: dict[str, int] = {}
    whiteouts: list[str] = []
    opaque: list[str] = []
    with tarfile.open(fileobj=reader, mode="r|") as layer:  # type: ignore[call-overload]
        for member in layer:
            path = entry_path(member.name)
            directory, name = posixpath.split(path)
            if name == ".wh..wh..opq":
                opaque.append(directory)
            elif name.startswith(".wh."):
                whiteouts.append(posixpath.join(directory, name[4:]))
            else:
                entries[path] = member.mode | _TYPE_BITS.get(member.type, 0o100000)
    return LayerSummary(reader.finish(), entries, tuple(whiteouts), tuple(opaque))


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


def read_archive(
    archive: Path,
    diff_ids: Sequence[str],
    cache: LayerCache | None = None,
    cacheable: Collection[str] = (),
) -> list[LayerSummary]:
    """Layer summaries, bottom to top, of the one image in a ``docker save`` archive.

    ``diff_ids`` are the image's layers as the engine lists them (``RootFS.Layers``),
    in the order of the archive's manifest. Layers in ``cacheable`` are taken from (or
    added to) ``cache``. Handles the legacy layout (``<id>/layer.tar``, repeated layers
    as symlinks) and the OCI layout of newer engines (``blobs/sha256/<digest>``).
    """
    with tarfile.open(archive) as saved:
        paths = layer_paths(saved, archive)
        if len(paths) != len(diff_ids):
            raise ValueError(
                f"inspect: {archive.name} has {len(paths)} layers, the image {len(diff_ids)}"
            )
        summaries: dict[str, LayerSummary] = {}
        for path, diff_id in zip(paths, diff_ids, strict=True):
            if diff_id not in summaries:
                summaries[diff_id] = _summary(saved, path, diff_id, cache, diff_id in cacheable)
    return [summaries[diff_id] for diff_id in diff_ids]


def layer_paths(saved: tarfile.TarFile, archive: Path) -> list[str]:
    """Paths of the layer tars in a ``docker save`` archive, bottom to top."""
    try:
        manifest = saved.extractfile("manifest.json")
    except KeyError:
        manifest = None
    if manifest is None:
        raise ValueError(f"inspect: {archive.name} has no manifest.json")
    return list(json.load(manifest)[0]["Layers"])


def _summary(
    saved: tarfile.TarFile, path: str, diff_id: str, cache: LayerCache | None, cacheable: bool
) -> LayerSummary:
    if cache and cacheable and (known := cache.get(diff_id)):
        return known
    layer = saved.extractfile(path)
    if layer is None:
        raise ValueError(f"inspect: layer {path} is not a file in the archive")
    summary = summarize_layer(layer)
    if cache and cacheable:
        cache.put(diff_id, summary)
    return summary


# File type bits of a summary's modes; hard links count as regular files there.
_TYPE_MASK, _REGULAR = 0o170000, 0o100000
_SETUID, _SETGID = 0o4000, 0o2000


def privileged_files(tree: dict[str, int]) -> tuple[int, int]:
    """(files with the setuid bit, files with the setuid or the setgid bit).

    Only regular files count: setgid directories (``/var/mail``, ``/var/local`` in Debian)
    make new files inherit their group and grant nothing when run, and a symlink's mode
    bits are ignored by the kernel.
    """
    files = [mode for mode in tree.values() if mode & _TYPE_MASK == _REGULAR]
    return (
        sum(1 for mode in files if mode & _SETUID),
        sum(1 for mode in files if mode & (_SETUID | _SETGID)),
    )


def has_any(tree: dict[str, int], candidates: Iterable[str]) -> bool:
    """True when any candidate exists under / or /usr (merged-usr images link one to the other)."""
    return any(path in tree or f"usr/{path}" in tree for path in candidates)


@dataclass(frozen=True)
class LayerFacts:
    """What the inspect stage reads from an image's layers; the rest comes from the engine."""

    compressed_bytes: int
    files: int
    has_shell: bool
    has_package_manager: bool
    setuid_files: int
    setuid_or_setgid_files: int
    program: ProgramFacts | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> LayerFacts:
        program = raw["program"]
        if program is not None:
            program = ProgramFacts(**{**program, "libraries": tuple(program["libraries"])})
        return cls(**{**raw, "program": program})


def read_layer_facts(
    archive: Path,
    diff_ids: Sequence[str],
    config: Mapping[str, Any],
    cache: LayerCache | None = None,
    cacheable: Collection[str] = (),
) -> LayerFacts:
    """The layer facts of the image saved at ``archive``; ``diff_ids`` and ``config`` are
    its ``RootFS.Layers`` and ``Config`` as the engine reports them."""
    layers = read_archive(archive, diff_ids, cache, cacheable)
    tree = merge_layers(layers)
    setuid, setuid_or_setgid = privileged_files(tree)
    entries = [layer.entries for layer in layers]
    with (
        tarfile.open(archive) as saved,
        ImageFiles(saved, layer_paths(saved, archive), entries, tree) as files,
    ):
        program = read_program(files, config)
    return LayerFacts(
        compressed_bytes=sum(layer.compressed_bytes for layer in layers),
        files=sum(1 for mode in tree.values() if not mode & 0o040000),
        has_shell=has_any(tree, SHELLS),
        has_package_manager=has_any(tree, PACKAGE_MANAGERS),
        setuid_files=setuid,
        setuid_or_setgid_files=setuid_or_setgid,
        program=program,
    )
