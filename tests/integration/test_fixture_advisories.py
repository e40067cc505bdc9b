"""The default fixture advisories beyond Debian 12 and alpine, scanned by the real trivy.

- Debian 13: a distroless-style image unpacked from Debian 13's own packages (base-files,
  libc6, libssl3t64, tzdata, with their control files in ``var/lib/dpkg/status.d``) gets
  the ``debian 13`` advisories: 90002 (openssl, on libssl3t64), 90011 (glibc, on libc6),
  90014 (tzdata). 90001 is fixed in Debian 13's glibc: the CRITICAL the same image shape
  has on Debian 12 (the forged distroless base-debian12) is gone one generation later.
- A vendored language package: the forged bookworm-slim with an app directory carrying
  a vendored pip package (six 1.16.0, its ``.dist-info``) and npm package (ms 2.1.2, its
  ``node_modules/ms/package.json``) gets 90041 and 90051 beside bookworm-slim's own.

The Go standard library advisories are checked on the alpine cells
(test_alpine_standin.py), Debian 12's per image in test_fixture_db_forged.py.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from infra.forge.alpine_standin import AlpineStandInRecipe
from infra.paths import DEFAULT_APT_SOURCES
from infra.trivydb.fixture import DEFAULT_ADVISORIES, write_fixture_db
from infra.up import InfraState, alpine_recipe
from tasks.programs import find_program
from tasks.scanners.trivy import TrivyScanner
from tasks.stages.save import save_image

pytestmark = pytest.mark.integration

DEBIAN_13_PACKAGES = ("base-files", "libc6", "libssl3t64", "tzdata")
SIX_METADATA = """\
Metadata-Version: 2.1
Name: six
Version: 1.16.0
Summary: Python 2 and 3 compatibility utilities
License: MIT
"""
MS_PACKAGE = '{"name": "ms", "version": "2.1.2", "main": "./index", "license": "MIT"}\n'
# (id, package, fixed, severity) on the forged bookworm-slim (see advisories.yaml).
BOOKWORM_SLIM = {
    ("CVE-2026-90001", "libc6", "2.36-9+deb12u99", "CRITICAL"),
    ("CVE-2026-90001", "libc-bin", "2.36-9+deb12u99", "CRITICAL"),
    ("CVE-2026-90003", "apt", "2.6.99", "MEDIUM"),
    ("CVE-2026-90003", "libapt-pkg6.0", "2.6.99", "MEDIUM"),
    ("CVE-2026-90004", "tzdata", "2099a-0+deb12u1", "LOW"),
}
Finding = tuple[str, str, str, str, str]


@pytest.fixture(scope="module")
def scanner(tmp_path_factory: pytest.TempPathFactory) -> TrivyScanner:
    cache = tmp_path_factory.mktemp("advisories-scan")
    write_fixture_db(DEFAULT_ADVISORIES, cache)
    return TrivyScanner(cache, timeout_seconds=300)


@pytest.fixture(scope="module")
def tag() -> str:
    return uuid.uuid4().hex[:10]


def findings(
    client: docker.DockerClient, scanner: TrivyScanner, ref: str, folder: Path
) -> tuple[tuple[str, str], set[Finding]]:
    result = scanner.scan(save_image.fn(client, client.images.get(ref).id, folder))
    return (result.os_family, result.os_version), {
        (f.vulnerability_id, f.package, f.installed_version, f.fixed_version, f.severity)
        for f in result.findings
    }


@pytest.fixture(scope="module")
def debian13(
    infra: InfraState,
    docker_client: docker.DockerClient,
    tmp_path_factory: pytest.TempPathFactory,
    tag: str,
) -> Iterator[tuple[str, dict[str, str]]]:
    """A distroless-style image of Debian 13 packages: (reference, name -> version)."""
    recipe = alpine_recipe(None, DEFAULT_APT_SOURCES, infra.cache_dir)
    assert isinstance(recipe, AlpineStandInRecipe)
    trixie = recipe.trixie()  # the stand-in's Debian 13 apt view of the host's mirror
    versions = trixie.candidates(DEBIAN_13_PACKAGES)
    folder = tmp_path_factory.mktemp("debian13")
    debs = trixie.download(versions, folder / "debs")
    rootfs = folder / "rootfs.tar"
    with tarfile.open(rootfs, "w", format=tarfile.GNU_FORMAT) as out:
        seen: set[str] = set()
        for name, deb in sorted(debs.items()):
            for member, data in _deb_members(deb):
                if member.name not in seen:
                    seen.add(member.name)
                    out.addfile(member, io.BytesIO(data) if data is not None else None)
            control = _dpkg_deb("--field", deb)
            info = tarfile.TarInfo(f"var/lib/dpkg/status.d/{name}")
            info.size, info.mode = len(control), 0o644
            out.addfile(info, io.BytesIO(control))
    repository = "basebench-test/debian13-advisories"
    docker_client.api.import_image(src=str(rootfs), repository=repository, tag=tag)
    ref = f"{repository}:{tag}"
    yield ref, versions
    docker_client.images.remove(ref, force=True)


def _dpkg_deb(option: str, deb: Path) -> bytes:
    return subprocess.run(
        [find_program("dpkg-deb"), option, str(deb)], capture_output=True, check=True
    ).stdout


def _deb_members(deb: Path) -> Iterator[tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(fileobj=io.BytesIO(_dpkg_deb("--fsys-tarfile", deb))) as data:
        for member in data:
            member.name = member.name.removeprefix("./").rstrip("/")
            if not member.name or member.name.startswith("usr/share/doc/"):
                continue
            handle = data.extractfile(member) if member.isfile() else None
            yield member, handle.read() if handle is not None else None


def test_debian_13_image_gets_the_debian_13_advisories(
    docker_client: docker.DockerClient,
    scanner: TrivyScanner,
    debian13: tuple[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    ref, versions = debian13
    os, found = findings(docker_client, scanner, ref, tmp_path)
    assert os[0] == "debian" and os[1].split(".")[0] == "13"
    assert found == {
        ("CVE-2026-90002", "libssl3t64", versions["libssl3t64"], "3.5.99-1~deb13u1", "HIGH"),
        ("CVE-2026-90011", "libc6", versions["libc6"], "2.41-12+deb13u99", "MEDIUM"),
        ("CVE-2026-90014", "tzdata", versions["tzdata"], "2099a-0+deb13u1", "LOW"),
    }


def test_a_generation_later_the_glibc_critical_is_fixed(
    infra: InfraState,
    docker_client: docker.DockerClient,
    scanner: TrivyScanner,
    debian13: tuple[str, dict[str, str]],
    tmp_path: Path,
) -> None:
    debian12 = f"{infra.registry}/distroless/base-debian12:latest"
    docker_client.images.pull(debian12)
    (tmp_path / "12").mkdir()
    (tmp_path / "13").mkdir()
    _, on_12 = findings(docker_client, scanner, debian12, tmp_path / "12")
    _, on_13 = findings(docker_client, scanner, debian13[0], tmp_path / "13")
    ids_12, ids_13 = {f[0] for f in on_12}, {f[0] for f in on_13}
    assert ids_12 == {"CVE-2026-90001", "CVE-2026-90002", "CVE-2026-90004"}
    assert ids_12 - ids_13 == {"CVE-2026-90001", "CVE-2026-90004"}
    assert ids_13 - ids_12 == {"CVE-2026-90011", "CVE-2026-90014"}


@pytest.fixture(scope="module")
def vendored(infra: InfraState, docker_client: docker.DockerClient, tag: str) -> Iterator[str]:
    """bookworm-slim with an app that vendors six 1.16.0 and ms 2.1.2."""
    base = f"{infra.registry}/library/debian:bookworm-slim"
    docker_client.images.pull(base)
    files = {
        "Dockerfile": f"FROM {base}\nCOPY app/ /app/\n",
        "app/vendor/six.py": '"""Vendored six (fixture)."""\n__version__ = "1.16.0"\n',
        "app/vendor/six-1.16.0.dist-info/METADATA": SIX_METADATA,
        "app/node_modules/ms/index.js": "module.exports = function ms(v) { return v; };\n",
        "app/node_modules/ms/package.json": MS_PACKAGE,
    }
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text.encode()), 0o644
            tar.addfile(info, io.BytesIO(text.encode()))
    context.seek(0)
    ref = f"basebench-test/vendored-advisories:{tag}"
    docker_client.images.build(
        fileobj=context, custom_context=True, tag=ref, network_mode="none", pull=False, rm=True
    )
    yield ref
    docker_client.images.remove(ref, force=True)


def test_vendored_pip_and_npm_packages_get_their_ecosystem_advisories(
    docker_client: docker.DockerClient, scanner: TrivyScanner, vendored: str, tmp_path: Path
) -> None:
    os, found = findings(docker_client, scanner, vendored, tmp_path)
    assert os[0] == "debian" and os[1].split(".")[0] == "12"
    language = {f for f in found if f[1] in ("six", "ms")}
    assert language == {
        ("CVE-2026-90041", "six", "1.16.0", "1.17.0", "HIGH"),
        ("CVE-2026-90051", "ms", "2.1.2", "2.1.3", "MEDIUM"),
    }
    assert {(i, p, fixed, s) for i, p, _, fixed, s in found - language} == BOOKWORM_SLIM
