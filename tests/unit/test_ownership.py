"""Which package owns each file: dpkg lists (with diversions), distroless md5sums and apk's
installed database, read from the layers, paths resolved through the image's symlinks.
On the forged images: tests/integration/test_ownership.py."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tasks.readers import layers as layers_module
from tasks.readers.layers import (
    LayerCache,
    image_files,
    read_archive,
    read_layer_facts,
    summarize_layer,
    unowned_paths,
)
from tasks.readers.ownership import is_database_file, listed_files
from tests.layer_tars import archive, layer


def unowned(tmp_path: Path, layers: list[bytes]) -> list[str]:
    saved = archive(tmp_path, layers)
    summaries = read_archive(saved, [f"sha256:{n}" for n in range(len(layers))])
    with tarfile.open(saved) as tar, image_files(tar, saved, summaries) as files:
        return unowned_paths(summaries, files)


# A merged-/usr Debian image: dpkg lists /bin and /lib paths, the files live under /usr.
DEBIAN = layer(
    [
        ("usr", "dir", None),
        ("usr/bin", "dir", None),
        ("usr/lib", "dir", None),
        ("bin", "link", "usr/bin"),
        ("lib", "link", "usr/lib"),
        ("usr/bin/bash", "file", b"bash"),
        ("usr/bin/rbash", "link", "bash"),
        ("usr/lib/libc.so.6", "file", b"libc"),
        ("usr/lib/libc-copy.so.6", "file", b"a file of libc6 outside the list: not libc6's"),
        ("etc", "dir", None),
        ("etc/passwd", "file", b"root:x:0:0"),  # written by set-up: no package's
        ("dev", "dir", None),
        ("dev/null", "char", None),  # a device node is no regular file
        ("var/lib/dpkg/status", "file", b"Package: bash"),
        ("var/lib/dpkg/info/bash.list", "file", "/.\n/bin\n/bin/bash\n/bin/rbash\n"),
        ("var/lib/dpkg/info/bash.md5sums", "file", "00  bin/bash\n"),
        ("var/lib/dpkg/info/libc6:amd64.list", "file", "/lib\n/lib/libc.so.6\n"),
    ]
)


def test_dpkg_lists_own_files_through_merged_usr_symlinks(tmp_path: Path) -> None:
    app = layer([("hello", "file", b"\x7fELF"), ("usr/lib/vendored.so", "file", b"so")])
    # The package databases' own files never count; /dev/null is no regular file.
    assert unowned(tmp_path, [DEBIAN, app]) == [
        "etc/passwd",
        "hello",
        "usr/lib/libc-copy.so.6",
        "usr/lib/vendored.so",
    ]


def test_a_removed_list_leaves_its_files_unowned(tmp_path: Path) -> None:
    # A build that removes dpkg's record of bash (not bash itself) hides bash from scanners.
    top = layer([("var/lib/dpkg/info/.wh.bash.list", "file", b"")])
    assert unowned(tmp_path, [DEBIAN, top]) == [
        "etc/passwd",
        "usr/bin/bash",
        "usr/lib/libc-copy.so.6",
    ]
    # A list rewritten in a later layer is read as that layer has it.
    grown = layer([("var/lib/dpkg/info/libc6:amd64.list", "file", "/lib/libc-copy.so.6\n")])
    assert unowned(tmp_path, [DEBIAN, grown]) == ["etc/passwd", "usr/lib/libc.so.6"]


def test_a_listed_symlink_does_not_own_its_target(tmp_path: Path) -> None:
    image = layer(
        [
            ("opt/tool/bin/real", "file", b"x"),
            ("usr/bin/tool", "link", "/opt/tool/bin/real"),
            ("var/lib/dpkg/info/tool-wrapper.list", "file", "/usr/bin/tool\n"),
        ]
    )
    assert unowned(tmp_path, [image]) == ["opt/tool/bin/real"]


def test_diverted_files_belong_to_the_package_that_shipped_them() -> None:
    # dash diverts /bin/sh away from every other package (as Debian 12 does).
    databases = {
        "var/lib/dpkg/info/dash.list": "/bin/sh\n/bin/dash\n",
        "var/lib/dpkg/info/bash.list": "/bin/sh\n/bin/bash\n",
        "var/lib/dpkg/diversions": "/bin/sh\n/bin/sh.distrib\ndash\n",
    }
    assert listed_files(databases) == {
        "/bin/sh": "dash",
        "/bin/sh.distrib": "bash",
        "/bin/dash": "dash",
        "/bin/bash": "bash",
    }
    local = {**databases, "var/lib/dpkg/diversions": "/bin/bash\n/bin/bash.orig\n:\n"}
    assert listed_files(local)["/bin/bash.orig"] == "bash"  # diverted by the local admin


def test_distroless_md5sums_own_their_files_but_not_the_conffiles(tmp_path: Path) -> None:
    image = layer(
        [
            ("etc/issue", "file", b"Debian"),  # a conffile of base-files: not in .md5sums
            ("usr/lib/os-release", "file", b"ID=debian"),
            ("etc/os-release", "link", "../usr/lib/os-release"),
            ("var/lib/dpkg/status.d/base-files", "file", b"Package: base-files"),
            ("var/lib/dpkg/status.d/base-files.md5sums", "file", "0a1b  usr/lib/os-release\n"),
            ("hello", "file", b"\x7fELF"),
        ]
    )
    assert unowned(tmp_path, [image]) == ["etc/issue", "hello"]


def test_apk_owns_each_record_s_files_by_folder(tmp_path: Path) -> None:
    installed = (
        "P:musl\nV:1.2.5-r0\nF:lib\nR:ld-musl-x86_64.so.1\nR:libc.musl-x86_64.so.1\n\n"
        "P:libcrypto3\nV:3.3.2-r0\no:openssl\n\n"  # recorded without its files
        "P:busybox\nF:bin\nR:busybox\nF:etc\nR:securetty\n"
    )
    image = layer(
        [
            ("lib/ld-musl-x86_64.so.1", "file", b"ld"),
            ("lib/libc.musl-x86_64.so.1", "link", "ld-musl-x86_64.so.1"),
            ("bin/busybox", "file", b"bb"),
            ("etc/securetty", "file", b"console"),
            ("etc/alpine-release", "file", b"3.20.3"),
            ("lib/apk/db/installed", "file", installed),
        ]
    )
    assert unowned(tmp_path, [image]) == ["etc/alpine-release"]
    assert listed_files({"lib/apk/db/installed": installed}) == {
        "/lib/ld-musl-x86_64.so.1": "musl",
        "/lib/libc.musl-x86_64.so.1": "musl",
        "/bin/busybox": "busybox",
        "/etc/securetty": "busybox",
    }


def test_only_package_database_files_are_kept_with_a_layer() -> None:
    assert is_database_file("var/lib/dpkg/info/libc6:amd64.list")
    assert is_database_file("var/lib/dpkg/status.d/tzdata.md5sums")
    assert is_database_file("var/lib/dpkg/diversions")
    assert is_database_file("lib/apk/db/installed")
    assert not is_database_file("var/lib/dpkg/info/libc6:amd64.md5sums")
    assert not is_database_file("var/lib/dpkg/status.d/tzdata")
    assert not is_database_file("usr/share/doc/x.list")
    summary = summarize_layer(io.BytesIO(DEBIAN))
    assert sorted(summary.databases) == [
        "var/lib/dpkg/info/bash.list",
        "var/lib/dpkg/info/libc6:amd64.list",
    ]
    assert summary.links == {"bin": "usr/bin", "lib": "usr/lib", "usr/bin/rbash": "bash"}


def test_a_database_too_large_to_be_real_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(layers_module, "MAX_DATABASE_BYTES", 10)
    summary = summarize_layer(io.BytesIO(DEBIAN))
    assert summary.databases["var/lib/dpkg/info/bash.list"] == ""  # 30 bytes
    assert summary.databases["var/lib/dpkg/info/libc6:amd64.list"] == ""
    found = unowned(tmp_path, [DEBIAN])
    assert found == ["etc/passwd", "usr/bin/bash", "usr/lib/libc-copy.so.6", "usr/lib/libc.so.6"]


def test_cached_layers_keep_links_and_databases(tmp_path: Path) -> None:
    saved = archive(tmp_path, [DEBIAN])
    cache = LayerCache(tmp_path / "layers")
    config = {"Entrypoint": ["/bin/bash"]}
    first = read_layer_facts(saved, ["sha256:base"], config, cache, {"sha256:base"})
    assert first.unowned_files == 2  # etc/passwd, usr/lib/libc-copy.so.6
    assert first.program is not None and first.program.path == "/usr/bin/bash"
    assert first.files == 12  # not directories: 8 regular files, 3 symlinks and /dev/null
    assert cache.get("sha256:base") == summarize_layer(io.BytesIO(DEBIAN))
    again = read_layer_facts(saved, ["sha256:base"], config, cache, {"sha256:base"})
    assert again == first
    # An entry written before summaries kept links and databases is read again.
    entry = cache.folder / "base.json"
    raw = json.loads(entry.read_text())
    entry.write_text(json.dumps({k: v for k, v in raw.items() if k not in ("links", "databases")}))
    assert cache.get("sha256:base") is None
