"""The program an image runs: found as the engine finds it (entrypoint, command, PATH,
working directory, symlinks across layers), a script's interpreter, Go build settings.
ELF binaries are measured on real images (tests/integration/test_seed.py)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

from tasks.readers.layers import layer_paths, merge_layers, read_archive
from tasks.readers.program import ImageFiles, command, go_build_settings, read_program
from tasks.records import ProgramFacts

SCRIPT = b"#!/usr/bin/env python3\nprint('hello')\n"


def layer(entries: list[tuple[str, str, bytes | str | None]]) -> bytes:
    """A layer tar of (name, kind, data): kind file (mode 0755), plain (0644), dir, link."""
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
            else:
                assert isinstance(data, bytes)
                info.size, info.mode = len(data), 0o755 if kind == "file" else 0o644
                tar.addfile(info, io.BytesIO(data))
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


BASE = layer(
    [
        ("usr", "dir", None),
        ("usr/bin", "dir", None),
        ("bin", "link", "usr/bin"),  # merged /usr
        ("usr/bin/tool.sh", "file", b"#!/bin/sh -e\necho hi\n"),
        ("usr/bin/notes.txt", "plain", b"not a program\n"),
        ("usr/local", "dir", None),
        ("usr/local/bin", "dir", None),
        ("usr/local/bin/hello", "file", SCRIPT),
    ]
)
APP = layer(
    [
        ("app", "dir", None),
        ("app/main", "file", b"\x00\x01 not an ELF header"),
        ("app/run", "link", "../usr/local/bin/hello"),
        ("usr/bin/python3", "link", "/usr/local/bin/hello"),
    ]
)


def facts(tmp_path: Path, config: dict[str, Any]) -> ProgramFacts | None:
    saved_path = archive(tmp_path, [BASE, APP])
    layers = read_archive(saved_path, ["sha256:a", "sha256:b"])
    with (
        tarfile.open(saved_path) as saved,
        ImageFiles(
            saved,
            layer_paths(saved, saved_path),
            [summary.entries for summary in layers],
            merge_layers(layers),
        ) as files,
    ):
        return read_program(files, config)


def test_command_is_the_entrypoint_then_cmd() -> None:
    assert command({"Entrypoint": ["/usr/bin/java", "-jar"], "Cmd": ["app.jar"]}) == [
        "/usr/bin/java",
        "-jar",
        "app.jar",
    ]
    assert command({"Entrypoint": None, "Cmd": ["./main"]}) == ["./main"]
    assert command({}) == []


def test_a_relative_command_runs_from_the_working_directory(tmp_path: Path) -> None:
    found = facts(tmp_path, {"Cmd": ["./main"], "WorkingDir": "/app"})
    assert found == ProgramFacts("/app/main", None, None)


def test_symlinks_are_followed_relative_and_absolute(tmp_path: Path) -> None:
    relative = facts(tmp_path, {"Entrypoint": ["/app/run"]})
    assert relative == ProgramFacts("/usr/local/bin/hello", "script", "/usr/bin/env")
    absolute = facts(tmp_path, {"Entrypoint": ["/usr/bin/python3"], "Cmd": ["app.py"]})
    assert absolute == ProgramFacts("/usr/local/bin/hello", "script", "/usr/bin/env")


def test_a_bare_name_is_looked_up_on_the_image_path(tmp_path: Path) -> None:
    env = {"Env": ["LANG=C.UTF-8", "PATH=/nowhere:/bin"], "Cmd": ["tool.sh", "-x"]}
    # /bin is a symlink to usr/bin in the base layer.
    assert facts(tmp_path, env) == ProgramFacts("/usr/bin/tool.sh", "script", "/bin/sh")
    # Docker's default PATH when the image sets none: /usr/local/bin comes first.
    assert facts(tmp_path, {"Cmd": ["hello"]}) == ProgramFacts(
        "/usr/local/bin/hello", "script", "/usr/bin/env"
    )


def test_no_program_when_missing_not_executable_or_not_named(tmp_path: Path) -> None:
    assert facts(tmp_path, {"Cmd": ["/app/missing"]}) is None
    assert facts(tmp_path, {"Cmd": ["notes.txt"]}) is None  # on PATH, but not executable
    assert facts(tmp_path, {"Cmd": None, "Entrypoint": None}) is None


def go_buildinfo(modinfo: str, version: str = "go1.22.10") -> bytes:
    """A ``.go.buildinfo`` section as Go 1.18+ writes it: a 32-byte header (magic,
    pointer size 8, flags 2: strings inline), then length-prefixed version and module
    info, the module info framed by Go's 16-byte sentinels."""
    header = b"\xff Go buildinf:" + bytes([8, 2]) + b"\x00" * 16
    framed = (
        bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
        + modinfo.encode()
        + bytes.fromhex("f932433186182072008242104116d8f2")
    )

    def prefixed(data: bytes) -> bytes:
        length, out = len(data), b""
        while length >= 0x80:
            out += bytes([length & 0x7F | 0x80])
            length >>= 7
        return out + bytes([length]) + data

    return header + prefixed(version.encode()) + prefixed(framed) + b"\x00" * 8


MODINFO = (
    "path\tseed\nmod\tseed\t(devel)\t\n"
    "build\t-buildmode=exe\nbuild\t-compiler=gc\nbuild\tCGO_ENABLED=1\n"
    "build\tCGO_CFLAGS=\nbuild\tGOARCH=amd64\nbuild\tGOOS=linux\nbuild\tGOAMD64=v1\n"
)


def test_go_build_settings_from_the_build_info_section() -> None:
    settings = go_build_settings(go_buildinfo(MODINFO * 3))  # > 127 bytes: a 2-byte length
    assert settings == {
        "-buildmode": "exe",
        "-compiler": "gc",
        "CGO_ENABLED": "1",
        "CGO_CFLAGS": "",
        "GOARCH": "amd64",
        "GOOS": "linux",
        "GOAMD64": "v1",
    }
    off = go_build_settings(go_buildinfo(MODINFO.replace("CGO_ENABLED=1", "CGO_ENABLED=0")))
    assert off["CGO_ENABLED"] == "0"


def test_no_settings_without_the_magic_or_inline_strings() -> None:
    assert go_build_settings(b"\x7fELF" + b"\x00" * 60) == {}
    old = bytearray(go_buildinfo(MODINFO))
    old[15] = 0  # before Go 1.18: pointers to the strings, not the strings
    assert go_build_settings(bytes(old)) == {}
