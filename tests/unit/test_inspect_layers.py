"""Layer reading: whiteouts, opaque dirs, gzip size and the docker save layout."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

from tasks.inspect import SHELLS, has_any, merge_layers, read_saved_image, summarize_layer


def layer_tar(files: dict[str, bytes | None], setuid: tuple[str, ...] = ()) -> bytes:
    """A layer tar: value None makes a directory."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o4755 if name in setuid else 0o644
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


def test_read_saved_image_orders_layers_by_manifest() -> None:
    first = layer_tar({"a": b"1"})
    second = layer_tar({"b": b"2"})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as saved:
        # Members in the opposite order of the manifest, as engines may write them.
        for name, data in [("l2/layer.tar", second), ("l1/layer.tar", first)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            saved.addfile(info, io.BytesIO(data))
        manifest = json.dumps([{"Layers": ["l1/layer.tar", "l2/layer.tar"]}]).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        saved.addfile(info, io.BytesIO(manifest))
    data = buffer.getvalue()
    chunks = iter([data[i : i + 777] for i in range(0, len(data), 777)])
    layers = read_saved_image(chunks)
    assert [list(layer.entries) for layer in layers] == [["a"], ["b"]]
