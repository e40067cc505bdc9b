"""Language builder stand-ins (python, node, eclipse-temurin, rust): Debian plus packages.

Upstream builds these FROM debian:<suite>[-slim] (or Ubuntu, for eclipse-temurin) and adds
a toolchain built elsewhere; the stand-in installs Debian's own toolchain packages with
mmdebstrap, maintainer scripts and all, so the image is a working Debian system (pip,
the JDK's alternatives and CA keystore, cargo). The toolchain version the catalogue
promises is checked against the package apt resolves: a mirror that moved on fails the
forge, not a build later.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from infra.errors import InfraError
from infra.forge.apt import AptIndex
from infra.forge.debian import DEBIAN_ENV, DebianRecipe, installed_packages, mmdebstrap
from infra.forge.recipe import Output, Rootfs

REFERENCE = re.compile(r"^(?P<registry>[^/]+)/(?P<repository>[^:@]+):(?P<tag>[^:@/]+)$")


def split_reference(ref: str) -> tuple[str, str]:
    """``docker.io/library/python:3.11.2-slim-bookworm`` -> (``library/python``, tag)."""
    match = REFERENCE.match(ref)
    if match is None:
        raise InfraError(f"builder reference {ref!r}: expected registry/repository:tag")
    return match["repository"], match["tag"]


def debian_version_matches(debian_version: str, version: str) -> bool:
    """Whether Debian's ``1:3.11.2-6+deb12u9`` is upstream ``version`` (3.11.2; 17 for
    17.0.21.1+2-1): the epoch dropped, the version followed by a separator or nothing."""
    upstream = debian_version.split(":", 1)[-1]
    return re.match(re.escape(version) + r"([.+~-]|$)", upstream) is not None


class BuilderRecipe(DebianRecipe):
    """A builder image ``ref`` (upstream reference) from debian:``suite``[-slim] with
    ``packages`` and the ``toolchain`` packages, whose first carries ``version``."""

    def __init__(
        self,
        ref: str,
        suite: str,
        version: str,
        toolchain: Sequence[str],
        packages: Sequence[str],
        slim: bool = True,
        env: Mapping[str, str] | None = None,
        cmd: Sequence[str] = (),
        deviation: str | None = None,
    ) -> None:
        super().__init__(suite, slim=slim)
        if not toolchain:
            raise ValueError(f"{ref}: the toolchain needs at least one package")
        self.repository, tag = split_reference(ref)
        self.upstream = ref
        self.version = version
        self.toolchain = tuple(toolchain)
        self.packages = tuple(packages)
        self.deviation = deviation
        changes = [*DEBIAN_ENV, *(f"ENV {k}={v}" for k, v in (env or {}).items())]
        if cmd:
            changes.append(f"CMD {json.dumps(list(cmd))}")
        self.outputs = (Output(tag, tuple(changes)),)

    def include(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.packages, *self.toolchain)))

    def hash_inputs(self) -> dict[str, str]:
        return {"suite": self.suite, "slim": str(self.slim), "include": " ".join(self.include())}

    def build(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Rootfs:
        tarball = workdir / "rootfs.tar"
        # Slim leaves out /usr/share/man, yet the JDK's postinst registers its man pages
        # with update-alternatives, which fails without the folder (the upstream slim
        # images' Dockerfiles make it for the same reason).
        hooks = ('mkdir -p "$1/usr/share/man/man1"',) if self.slim else ()
        mmdebstrap(apt.sources, self.suite, self.include(), self.slim, tarball, workdir, hooks)
        return Rootfs(tarball, installed_packages(tarball))

    def resolve(self, apt: AptIndex) -> dict[str, str]:
        resolved = super().resolve(apt)
        carrier = self.toolchain[0]
        found = resolved.get(carrier, "")
        if not debian_version_matches(found, self.version):
            raise InfraError(
                f"{self.upstream}: Debian {self.suite} has {carrier} {found or '(none)'}, "
                f"not {self.version}; fix the toolchain version in tasks/catalogue.yaml"
            )
        return resolved
