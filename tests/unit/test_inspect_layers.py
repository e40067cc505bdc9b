"""Layer reading: whiteouts, opaque dirs, gzip size, the docker save layout and the
layer cache."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest

from tasks.readers.layers import (
    SHELLS,
    LayerCache,
    LayerSummary,
    has_any,
    merge_layers,
    privileged_files,
    read_archive,
    summarize_layer,
)


def layer_tar(
    files: dict[str, bytes | None],
    setuid: tuple[str, ...] = (),
    modes: dict[str, int] | None = None,
) -> bytes:
    """A layer tar: value None makes a directory; ``modes`` sets permission bits by name."""
    modes = modes or {}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, modes.get(name, 0o755)
                tar.addfile(info)
            else:
                info.size = len(data)
                info.mode = modes.get(name, 0o4755 if name in setuid else 0o644)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_summary_counts_gzip_size_of_the_layer() -> None:
    raw = layer_tar({"etc": None, "etc/hostname": b"x" * 10_000})
    summary = summarize_layer(io.BytesIO(raw))
    assert set(summary.entries) == {"etc", "etc/hostname"}
    # Same algorithm and level as gzip -6, so within a few header bytes of gzip's output.
    assert abs(summary.compressed_bytes - len(gzip.compress(raw, 6))) <= 16
    assert summary.compressed_bytes < len(raw) / 10


def test_whiteouts_and_opaque_dirs_apply_in_order() -> None:
    bottom = summarize_layer(
        io.BytesIO(
            layer_tar(
                {
                    "bin": None,
                    "bin/sh": b"#!",
                    "bin/su": b"su",
                    "var/cache": None,
                    "var/cache/a": b"1",
                    "var/cache/b": b"2",
                },
                setuid=("bin/su",),
            )
        )
    )
    top = summarize_layer(
        io.BytesIO(
            layer_tar({"bin/.wh.sh": b"", "var/cache/.wh..wh..opq": b"", "var/cache/c": b"3"})
        )
    )
    tree = merge_layers([bottom, top])
    assert "bin/sh" not in tree
    assert sorted(p for p in tree if p.startswith("var/cache/")) == ["var/cache/c"]
    assert "var/cache" in tree
    assert not has_any(tree, SHELLS)
    assert has_any(merge_layers([bottom]), SHELLS)
    setuid = [p for p, mode in tree.items() if mode & 0o100000 and mode & 0o4000]
    assert setuid == ["bin/su"]


def test_setuid_and_setgid_files_are_counted_apart_from_directories_and_links() -> None:
    raw = layer_tar(
        {
            "usr/bin/su": b"su",  # setuid root, as Debian ships it
            "usr/bin/chage": b"c",  # setgid shadow
            "usr/bin/both": b"b",  # both bits: counted once
            "usr/bin/ls": b"l",
            "var/mail": None,  # a setgid directory: not a file
        },
        modes={
            "usr/bin/su": 0o4755,
            "usr/bin/chage": 0o2755,
            "usr/bin/both": 0o6755,
            "var/mail": 0o2775,
        },
    )
    buffer = io.BytesIO(raw)
    with tarfile.open(fileobj=buffer, mode="a") as tar:
        link = tarfile.TarInfo("usr/bin/su-link")
        link.type, link.linkname, link.mode = tarfile.SYMTYPE, "su", 0o6777
        tar.addfile(link)
    tree = merge_layers([summarize_layer(io.BytesIO(buffer.getvalue()))])
    assert privileged_files(tree) == (2, 3)  # setuid: su, both; either bit: su, chage, both


def saved_archive(folder: Path, layers: dict[str, bytes], order: list[str]) -> Path:
    """A docker save archive whose manifest lists ``order``; members in reverse order,
    as engines may write them."""
    path = folder / "image.tar"
    with tarfile.open(path, mode="w") as saved:
        for name, data in reversed(layers.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            saved.addfile(info, io.BytesIO(data))
        manifest = json.dumps([{"Layers": order}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        saved.addfile(info, io.BytesIO(manifest))
    return path


def test_read_archive_orders_layers_by_manifest(tmp_path: Path) -> None:
    layers = {"l1/layer.tar": layer_tar({"a": b"1"}), "l2/layer.tar": layer_tar({"b": b"2"})}
    archive = saved_archive(tmp_path, layers, ["l1/layer.tar", "l2/layer.tar"])
    summaries = read_archive(archive, ["sha256:1", "sha256:2"])
    assert [list(layer.entries) for layer in summaries] == [["a"], ["b"]]


def test_read_archive_rejects_a_layer_count_that_differs_from_the_image(tmp_path: Path) -> None:
    archive = saved_archive(tmp_path, {"l1/layer.tar": layer_tar({"a": b"1"})}, ["l1/layer.tar"])
    with pytest.raises(ValueError, match=r"^inspect: image\.tar has 1 layers, the image 2$"):
        read_archive(archive, ["sha256:1", "sha256:2"])


def test_archive_without_manifest_is_named(tmp_path: Path) -> None:
    path = tmp_path / "image.tar"
    with tarfile.open(path, mode="w") as saved:
        info = tarfile.TarInfo("l1/layer.tar")
        saved.addfile(info, io.BytesIO(b""))
    with pytest.raises(ValueError, match=r"^inspect: image\.tar has no manifest\.json$"):
        read_archive(path, ["sha256:1"])


def test_cacheable_layers_are_summarised_once(tmp_path: Path) -> None:
    base, app = layer_tar({"bin/sh": b"#!"}), layer_tar({"hello": b"x" * 100})
    archive = saved_archive(tmp_path, {"base.tar": base, "app.tar": app}, ["base.tar", "app.tar"])
    cache = LayerCache(tmp_path / "layers")
    first = read_archive(archive, ["sha256:base", "sha256:app"], cache, {"sha256:base"})
    # Only the base layer is kept, under its diff id; the app layer is new every build.
    assert sorted(p.name for p in cache.folder.iterdir()) == ["base.json"]
    assert cache.get("sha256:base") == first[0]
    assert cache.get("sha256:app") is None
    # A cached summary is used as is: the layer is not read again.
    planted = LayerSummary(1, {"planted": 0o100644}, (), ())
    cache.put("sha256:base", planted)
    again = read_archive(archive, ["sha256:base", "sha256:app"], cache, {"sha256:base"})
    assert again == [planted, first[1]]


def test_an_unreadable_cache_entry_is_summarised_again(tmp_path: Path) -> None:
    archive = saved_archive(tmp_path, {"base.tar": layer_tar({"etc": None})}, ["base.tar"])
    cache = LayerCache(tmp_path / "layers")
    cache.folder.mkdir()
    (cache.folder / "base.json").write_text("{not json")
    [summary] = read_archive(archive, ["sha256:base"], cache, {"sha256:base"})
    assert summary.entries == {"etc": 0o040755}
    assert cache.get("sha256:base") == summary


def test_top_level_dotfiles_and_whiteouts_keep_their_dot() -> None:
    # ``.wh.opt`` at the root deletes /opt; ``./.profile`` is the dotfile .profile.
    bottom = summarize_layer(
        io.BytesIO(layer_tar({"opt": None, "opt/tool": b"t", "bin": None, "bin/sh": b"s"}))
    )
    top = summarize_layer(
        io.BytesIO(
            layer_tar({".wh.opt": b"", "./.profile": b"p", "/.topdot": b"d", ".wh.bin": b""})
        )
    )
    assert top.whiteouts == ("opt", "bin")
    assert sorted(top.entries) == [".profile", ".topdot"]
    assert sorted(merge_layers([bottom, top])) == [".profile", ".topdot"]
    assert has_any(merge_layers([bottom, top]), SHELLS) is False
