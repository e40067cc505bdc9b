"""What a built image runs, as measured (part of the inspect stage): the file its
entrypoint or command names, read from the saved archive, and how it is linked.

The file is found as the engine finds it: a name without a slash on the image's ``PATH``,
a relative path from its working directory, symlinks followed through the layers (the
merged tree says which layer holds each path). An ELF file is ``static`` (no program
interpreter) or ``dynamic`` with its interpreter (``PT_INTERP``) and the libraries it
needs (``DT_NEEDED``), read with pyelftools; a Go binary's build settings give whether
cgo was on. A ``#!`` file is a ``script`` whose interpreter is the ``#!`` line's program.
"""

from __future__ import annotations

import contextlib
import posixpath
import tarfile
from collections.abc import Mapping, Sequence
from typing import IO, Any, Self

from elftools.common.exceptions import ELFError
from elftools.elf.dynamic import DynamicSegment
from elftools.elf.elffile import ELFFile
from elftools.elf.segments import InterpSegment

from tasks.records import ProgramFacts

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # Docker's
MAX_LINKS = 40  # as Linux's ELOOP limit
GO_BUILDINFO_MAGIC = b"\xff Go buildinf:"
_TYPE_MASK, _DIRECTORY, _SYMLINK = 0o170000, 0o040000, 0o120000
_EXECUTABLE = 0o111


def entry_path(name: str) -> str:
    """A layer tar member's path relative to the root: ``./etc/x`` and ``/etc/x`` -> ``etc/x``.
    Only a leading ``./`` or ``/`` goes: a top-level dotfile (``.dockerenv``) or whiteout
    (``.wh.opt``, deleting ``/opt``) keeps its dot."""
    while name.startswith(("./", "/")):
        name = name[1:] if name.startswith("/") else name[2:]
    return posixpath.normpath(name or ".")


def command(config: Mapping[str, Any]) -> list[str]:
    """What the container runs: the entrypoint, then the command (its arguments)."""
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


class ImageFiles:
    """The files of one image in a ``docker save`` archive, read on demand.

    ``layer_paths`` are the layers' paths in the archive and ``layer_entries`` their
    entries (path -> mode, as the inspect stage summarised them), bottom to top; ``tree``
    is the merged filesystem. A layer is opened only when a file is read from it; use as
    a context manager to close the layers it opened.
    """

    def __init__(
        self,
        saved: tarfile.TarFile,
        layer_paths: Sequence[str],
        layer_entries: Sequence[Mapping[str, int]],
        tree: Mapping[str, int],
    ) -> None:
        self._saved = saved
        self._paths = layer_paths
        self._entries = layer_entries
        self.tree = tree
        self._opened: dict[int, dict[str, tuple[tarfile.TarFile, tarfile.TarInfo]]] = {}
        self._layers = contextlib.ExitStack()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self._layers.close()

    def _member(self, path: str) -> tuple[tarfile.TarFile, tarfile.TarInfo]:
        # The topmost layer holding ``path`` provides it (the path is in the merged tree).
        index = next(i for i in reversed(range(len(self._entries))) if path in self._entries[i])
        if index not in self._opened:
            stream = self._saved.extractfile(self._paths[index])
            if stream is None:
                raise ValueError(f"inspect: layer {self._paths[index]} is not a file")
            opened = tarfile.open(fileobj=stream, mode="r:")  # noqa: SIM115 (closed on exit)
            layer = self._layers.enter_context(opened)
            self._opened[index] = {entry_path(m.name): (layer, m) for m in layer.getmembers()}
        return self._opened[index][path]

    def resolve(self, path: str) -> str | None:
        """``path`` (absolute) with every symlink followed; None when it does not exist."""
        pending = [part for part in path.split("/") if part]
        current, links = "", 0
        while pending:
            part = pending.pop(0)
            if part == ".":
                continue
            if part == "..":
                current = posixpath.dirname(current)
                continue
            candidate = posixpath.join(current, part) if current else part
            mode = self.tree.get(candidate)
            if mode is None:
                if not pending:
                    return None
                current = candidate  # a directory no layer lists itself
            elif mode & _TYPE_MASK == _SYMLINK:
                links += 1
                if links > MAX_LINKS:
                    return None
                target = self._member(candidate)[1].linkname
                current = "" if target.startswith("/") else current
                pending = [p for p in target.split("/") if p] + pending
            else:
                current = candidate
        return current

    def open(self, path: str) -> IO[bytes]:
        """A regular file of the image (a resolved path), seekable."""
        layer, member = self._member(path)
        stream = layer.extractfile(member)
        if stream is None:
            raise ValueError(f"inspect: /{path} is not a regular file")
        return stream

    def find_program(self, name: str, config: Mapping[str, Any]) -> str | None:
        """The resolved path of the program ``name`` as the engine would run it."""
        if "/" in name:
            workdir = config.get("WorkingDir") or "/"
            return self._runnable(posixpath.join(workdir, name))
        variables = [item.partition("=") for item in config.get("Env") or []]
        path = next((value for key, _, value in variables if key == "PATH"), DEFAULT_PATH)
        for directory in path.split(":"):
            found = self._runnable(posixpath.join(directory or ".", name))
            if found is not None:
                return found
        return None

    def _runnable(self, path: str) -> str | None:
        resolved = self.resolve(path if path.startswith("/") else f"/{path}")
        if resolved is None:
            return None
        mode = self.tree.get(resolved, 0)
        is_file = mode & _TYPE_MASK not in (_DIRECTORY, _SYMLINK)
        return resolved if is_file and mode & _EXECUTABLE else None


def read_program(files: ImageFiles, config: Mapping[str, Any]) -> ProgramFacts | None:
    """The facts of the program the image runs; None when it names none or the program
    is not in the image."""
    argv = command(config)
    if not argv:
        return None
    path = files.find_program(argv[0], config)
    if path is None:
        return None
    with files.open(path) as stream:
        return describe(f"/{path}", stream)


def describe(path: str, stream: IO[bytes]) -> ProgramFacts:
    """How the file in ``stream`` runs: an ELF binary's linkage, or a script's interpreter."""
    head = stream.read(256)
    stream.seek(0)
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        interpreter = words[0].decode(errors="replace") if words else None
        return ProgramFacts(path, "script", interpreter)
    if not head.startswith(b"\x7fELF"):
        return ProgramFacts(path, None, None)
    try:
        elf = ELFFile(stream)
        interpreter, libraries = None, []
        for segment in elf.iter_segments():
            if isinstance(segment, InterpSegment):
                interpreter = segment.get_interp_name()
            elif isinstance(segment, DynamicSegment):
                # pyelftools names a DT_NEEDED tag's library in ``needed``.
                needed = [t for t in segment.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
                libraries = [str(tag.needed) for tag in needed]  # type: ignore[attr-defined]
        section = elf.get_section_by_name(".go.buildinfo")
        settings = go_build_settings(section.data()) if section is not None else {}
    except ELFError:
        return ProgramFacts(path, None, None)
    cgo = settings.get("CGO_ENABLED")
    return ProgramFacts(
        path=path,
        linkage="dynamic" if interpreter else "static",
        interpreter=interpreter,
        libraries=tuple(libraries),
        cgo=None if cgo is None else cgo == "1",
    )


def go_build_settings(data: bytes) -> dict[str, str]:
    """The ``build`` settings (``CGO_ENABLED``, ``GOARCH``, ...) in a Go binary's build
    info section, as ``go version -m`` prints them; empty when there are none.

    The layout since Go 1.18: a 32-byte header (magic, pointer size, flags) whose flags
    bit 2 says the version and module info follow inline as length-prefixed strings; the
    module info is framed by 16-byte sentinels.
    """
    if not data.startswith(GO_BUILDINFO_MAGIC) or len(data) < 32 or not data[15] & 2:
        return {}
    _version, position = _uvarint_bytes(data, 32)
    modinfo, _ = _uvarint_bytes(data, position)
    if len(modinfo) >= 33 and modinfo[-17:-16] == b"\n":
        modinfo = modinfo[16:-16]
    settings = {}
    for line in modinfo.decode(errors="replace").splitlines():
        kind, _, setting = line.partition("\t")
        if kind == "build":
            key, _, value = setting.partition("=")
            settings[key] = value
    return settings


def _uvarint_bytes(data: bytes, position: int) -> tuple[bytes, int]:
    length, shift = 0, 0
    while position < len(data):
        byte = data[position]
        position += 1
        length |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
    end = position + length
    return data[position:end], end
