"""The alpine stand-in's pure parts: apk database, rootfs layout, suite rewrite, choice."""

from __future__ import annotations

import tarfile
from pathlib import Path

from infra.forge.alpine import AlpineRecipe, parse_apk_installed
from infra.forge.alpine_standin import (
    APK_RECORDS,
    AlpineStandInRecipe,
    ApkRecord,
    apk_installed,
    rootfs_entries,
    shadow,
)
from infra.forge.recipe import labels
from infra.up import alpine_recipe


def test_apk_database_names_alpine_packages_versions_and_origins() -> None:
    text = apk_installed(APK_RECORDS)
    assert parse_apk_installed(text) == {
        "alpine-baselayout": "3.6.5-r0",
        "alpine-baselayout-data": "3.6.5-r0",
        "busybox": "1.36.1-r29",
        "busybox-binsh": "1.36.1-r29",
        "ca-certificates-bundle": "20240705-r0",
        "libcrypto3": "3.3.2-r0",
        "libssl3": "3.3.2-r0",
        "musl": "1.2.5-r0",
    }
    stanzas = text.rstrip("\n").split("\n\n")
    assert len(stanzas) == len(APK_RECORDS)
    origins = {s.split("\n")[0][2:]: s.split("\no:")[1].split("\n")[0] for s in stanzas}
    assert (origins["libcrypto3"], origins["libssl3"], origins["busybox-binsh"]) == (
        "openssl",
        "openssl",
        "busybox",
    )
    assert text.endswith("\n\n")


def test_apk_record_lists_files_by_directory() -> None:
    record = ApkRecord("musl", "1.2.5-r0", "musl", "libc", "MIT", ("lib/a", "lib/b", "etc/c"))
    assert apk_installed((record,)) == (
        "P:musl\nV:1.2.5-r0\nA:x86_64\nT:libc\nL:MIT\no:musl\nF:lib\nR:a\nR:b\nF:etc\nR:c\n\n"
    )


def test_openssl_records_have_no_files() -> None:
    # Debian has no musl build of OpenSSL: recorded, not shipped (see the deviation label).
    ssl = {r.name: r.files for r in APK_RECORDS if r.origin == "openssl"}
    assert ssl == {"libcrypto3": (), "libssl3": ()}


def test_every_file_a_record_owns_is_in_the_rootfs() -> None:
    entries = {info.name: info for info, _ in rootfs_entries(b"bb", b"libc", b"ca", ["bin/sh"])}
    for record in APK_RECORDS:
        for path in record.files:
            assert path in entries, f"{record.name} owns {path}, which the rootfs lacks"
    assert entries["bin/sh"].issym() and entries["bin/sh"].linkname == "/bin/busybox"
    assert entries["etc/shadow"].mode == 0o640 and entries["etc/shadow"].gid == 42
    assert entries["lib/apk/db/installed"].size == len(apk_installed(APK_RECORDS))


def test_rootfs_lists_parents_before_children_and_no_path_twice() -> None:
    names = [info.name for info, _ in rootfs_entries(b"", b"", b"", ["bin/sh", "usr/bin/wget"])]
    assert len(names) == len(set(names))
    seen: set[str] = set()
    for name in names:
        parent = name.rpartition("/")[0]
        assert not parent or parent in seen, f"{name} before {parent}"
        seen.add(name)


def test_rootfs_members_are_root_owned() -> None:
    owners = {info.name: (info.uid, info.gid) for info, _ in rootfs_entries(b"", b"", b"", [])}
    assert owners.pop("etc/shadow") == (0, 42)  # group shadow reads it, as on Alpine
    assert set(owners.values()) == {(0, 0)}


def test_shadow_locks_root() -> None:
    assert shadow().splitlines()[0] == "root:*::0:::::"
    assert all(line.split(":")[1] == "!" for line in shadow().splitlines()[1:])


def test_standin_labels_say_forged_upstream_and_deviation(tmp_path: Path) -> None:
    recipe = AlpineStandInRecipe(tmp_path / "debian.sources", tmp_path / "apt")
    debs = {"musl": "1.2.5-3.1~deb13u1"}
    found = labels(recipe, recipe.recipe_hash(debs), debs)
    assert found["org.basebench.forged"] == "true"
    assert found["org.basebench.upstream"] == "docker.io/library/alpine:3.20"
    assert (
        "libcrypto3 and libssl3 3.3.2-r0 are recorded without their files"
        in (found["org.basebench.deviation"])
    )
    assert recipe.name == "library/alpine:3.20"
    assert not (tmp_path / "apt").exists()  # nothing is touched before resolve


def test_the_user_minirootfs_wins_over_the_standin(tmp_path: Path) -> None:
    rootfs = tmp_path / "alpine-minirootfs-3.20.3-x86_64.tar"
    with tarfile.open(rootfs, "w") as tar:
        data = tmp_path / "release"
        data.write_text("3.20.3\n")
        tar.add(data, "etc/alpine-release")
    sources = tmp_path / "debian.sources"
    assert isinstance(alpine_recipe(rootfs, sources, tmp_path), AlpineRecipe)
    standin = alpine_recipe(None, sources, tmp_path)
    assert isinstance(standin, AlpineStandInRecipe)
    assert standin.repository == "library/alpine" and standin.outputs[0].tag == "3.20"
