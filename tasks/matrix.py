"""The matrix configuration: loaded and validated once, then expanded into cells.

A config file is YAML; it becomes a ``MatrixConfig`` or a ``ConfigError`` that names the
file, the key path and what is allowed. Nothing downstream reads raw YAML. Every string
that ends up in a build (versions, image references) is checked against a strict pattern
here, so a config cannot inject into a Dockerfile or a shell.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from tasks.apps import APPS_DIR, SINGLE_STAGE, App, Name, load_app
from tasks.catalogue import (
    BaseSpec,
    Capabilities,
    ImageRef,
    Linkage,
    Version,
    fit,
    load_catalogue,
)
from tasks.catalogue import (
    Name as CatalogueName,
)
from tasks.config_file import ConfigError, read_mapping, validate
from tasks.dataset.output import S3Config, check_output
from tasks.hosts.config import HostConfig, default_host
from tasks.records import BuildTool, Cell
from tasks.scanners.config import ScannerConfig

Registry = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]+(:[0-9]{1,5})?$")]
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]  # "~/x" means what a shell means
Glob = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.*?-]{1,64}$")]

DEFAULT_REGISTRY = "127.0.0.1:5000"
DEFAULT_CACHE = Path.home() / ".cache" / "basebench"


class CellFilter(BaseModel):
    """Matches cells by glob on each given coordinate (like a CI matrix exclude)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: Glob | None = None
    toolchain: Glob | None = None
    base: Glob | None = None

    @model_validator(mode="after")
    def _some_key(self) -> CellFilter:
        # An entry without keys would match every cell: an exclude of the whole matrix.
        if self.app is None and self.toolchain is None and self.base is None:
            raise ValueError("give at least one of app, toolchain, base")
        return self

    def matches(self, cell: Cell | LeftOut) -> bool:
        pairs = [
            (self.app, cell.app),
            (self.toolchain, cell.toolchain_version),
            (self.base, cell.base),
        ]
        return all(p is None or fnmatch.fnmatchcase(v, p) for p, v in pairs)


def format_filters(only: list[CellFilter] | None) -> str:
    """``--only`` filters as one canonical text (``base=distroless-*,toolchain=1.25.*``;
    "" for none): what a run records, so that only runs of the same filters compare."""
    pairs = {
        f"{key}={glob}"
        for cell_filter in only or []
        for key, glob in cell_filter.model_dump(exclude_none=True).items()
    }
    return ",".join(sorted(pairs))


def parse_only(pairs: list[str]) -> list[CellFilter]:
    """``--only base=distroless-* --only toolchain=1.22.*`` -> one filter all cells must match."""
    fields: dict[str, str] = {}
    for pair in pairs:
        key, sep, glob = pair.partition("=")
        if not sep or key not in CellFilter.model_fields:
            allowed = ", ".join(CellFilter.model_fields)
            raise ConfigError(f"--only {pair!r}: expected KEY=GLOB with KEY one of {allowed}")
        fields[key] = glob
    try:
        return [CellFilter.model_validate(fields)] if fields else []
    except ValidationError as exc:
        raise ConfigError(f"--only: {exc.errors()[0]['msg']} ({' '.join(pairs)})") from exc


class CustomBase(BaseModel):
    """A base a matrix adds: its reference and what it can run (see tasks/catalogue.yaml)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ref: ImageRef
    capabilities: Capabilities
    generation: CatalogueName | None = None


# Either one list of versions (apps of one language) or language -> versions.
Toolchains = Annotated[
    Annotated[list[Version], Tag("(list)")]
    | Annotated[dict[Name, list[Version]], Tag("(mapping)")],
    Discriminator(lambda value: "(mapping)" if isinstance(value, dict) else "(list)"),
]


class ExtraCell(BaseModel):
    """A cell added by ``include``: every coordinate given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: Name
    toolchain: Version
    base: Name


class MatrixConfig(BaseModel):
    """A whole matrix run: what to build, how to measure, where results go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    apps: list[Name] = Field(min_length=1)
    toolchains: Toolchains
    bases: list[Name] = Field(min_length=1)
    custom_bases: dict[Name, CustomBase] = {}
    include: list[ExtraCell] = []
    exclude: list[CellFilter] = []
    repeat: int = Field(5, ge=1, le=100)
    probe_timeout_seconds: float = Field(30.0, gt=0, le=600)
    keep_images: bool = False
    # buildkit: Docker's builder since Engine 23; legacy: the SDK's classic builder.
    build_tool: BuildTool = "buildkit"
    # upstream registry host -> replacement; {} pulls from the upstream registries.
    mirrors: dict[Registry, Registry] = {"docker.io": DEFAULT_REGISTRY, "gcr.io": DEFAULT_REGISTRY}
    scanner: ScannerConfig = ScannerConfig()
    # Default: the engine the docker CLI would use (DOCKER_HOST, DOCKER_CONTEXT, ...).
    hosts: list[HostConfig] = Field(default_factory=lambda: [default_host()], min_length=1)
    output: Annotated[str, AfterValidator(check_output)] = "results"
    s3: S3Config = S3Config()
    cache_dir: UserPath = DEFAULT_CACHE
    apps_dir: UserPath = APPS_DIR

    @field_validator("hosts")
    @classmethod
    def _unique_host_names(cls, hosts: list[HostConfig]) -> list[HostConfig]:
        names = [host.name for host in hosts]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"host names must be unique; given more than once: {', '.join(twice)}")
        return hosts

    def versions_for(self, language: str) -> list[str]:
        """The toolchain versions the matrix asks for ``language``."""
        if isinstance(self.toolchains, list):
            return list(self.toolchains)
        return list(self.toolchains.get(language, []))

    def image_sources(self) -> str:
        """The registries images come from, as one canonical text: the mirrors as JSON
        (``{}``: the upstream registries). Runs compare only with the same sources."""
        return json.dumps(self.mirrors, sort_keys=True, separators=(",", ":"))

    def config_hash(self) -> str:
        """Stable hash of the settings that define what is measured."""
        payload = self.model_dump(
            mode="json",
            exclude={
                "output": True,
                "s3": True,
                "hosts": True,
                "cache_dir": True,
                "apps_dir": True,
                "scanner": {"max_db_age_hours"},
            },
        )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def apply_mirror(ref: str, mirrors: dict[str, str]) -> str:
    """Rewrite an upstream reference onto its mirror, e.g. docker.io/x -> 127.0.0.1:5000/x."""
    registry, _, path = ref.partition("/")
    mirror = mirrors.get(registry)
    return f"{mirror}/{path}" if mirror else ref


def load_matrix(path: Path, overrides: dict[str, Any] | None = None) -> MatrixConfig:
    """Read and validate a matrix file; ``overrides`` are top-level keys from the CLI.

    Beyond the file's shape, everything a plan needs is checked here, so that bad input
    stops before any work: known bases, apps whose language has a builder, toolchain
    versions the catalogue can supply, and ``include`` cells that can run.
    """
    raw = {**read_mapping(path, ConfigError), **(overrides or {})}
    config = validate(MatrixConfig, raw, path, ConfigError)
    _check_names(path, config)
    return config


def _check_names(path: Path, config: MatrixConfig) -> None:
    catalogue = load_catalogue()
    built_in = catalogue.base_names()
    for name in config.custom_bases:
        if name in built_in or name == SINGLE_STAGE:
            raise ConfigError(
                f"{path}: custom_bases.{name}: {name!r} is a built-in base; choose another name"
            )
    allowed_bases = [*built_in, *config.custom_bases, SINGLE_STAGE]
    named = [(f"bases[{i}]", b) for i, b in enumerate(config.bases)]
    named += [(f"include[{i}].base", c.base) for i, c in enumerate(config.include)]
    for key, base in named:
        if base not in allowed_bases:
            raise ConfigError(
                f"{path}: {key}: unknown base {base!r}; allowed: {', '.join(allowed_bases)}"
            )
    apps = {}
    for key, app in [("apps", a) for a in config.apps] + [
        (f"include[{i}].app", c.app) for i, c in enumerate(config.include)
    ]:
        try:
            apps[app] = load_app(app, config.apps_dir)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from exc
    _check_toolchains(path, config, [apps[a] for a in config.apps])
    for i, extra in enumerate(config.include):
        language = apps[extra.app].language
        try:
            catalogue.toolchain(language, extra.toolchain)
        except LookupError as exc:
            raise ConfigError(f"{path}: include[{i}].toolchain: {exc}") from exc
        outcome = make_cell(config, apps[extra.app], extra.toolchain, extra.base)
        if isinstance(outcome, LeftOut):
            raise ConfigError(f"{path}: include[{i}]: {outcome.label} cannot run: {outcome.reason}")


def _check_toolchains(path: Path, config: MatrixConfig, apps: list[App]) -> None:
    catalogue = load_catalogue()
    languages = sorted({app.language for app in apps})
    if isinstance(config.toolchains, list):
        if len(languages) > 1:
            raise ConfigError(
                f"{path}: toolchains: a list of versions serves apps of one language; these "
                f"apps use {', '.join(languages)}: give toolchains as language -> versions"
            )
        keyed = [(f"toolchains[{i}]", languages[0], v) for i, v in enumerate(config.toolchains)]
    else:
        for language in config.toolchains:
            if language not in catalogue.languages:
                allowed = ", ".join(catalogue.languages)
                raise ConfigError(
                    f"{path}: toolchains.{language}: unknown language; allowed: {allowed}"
                )
        for app in apps:
            if not config.toolchains.get(app.language):
                raise ConfigError(
                    f"{path}: toolchains: no {app.language} versions for app {app.name}; "
                    f"add toolchains.{app.language}"
                )
        keyed = [
            (f"toolchains.{language}[{i}]", language, version)
            for language, versions in config.toolchains.items()
            for i, version in enumerate(versions)
        ]
    for key, language, version in keyed:
        try:
            catalogue.toolchain(language, version)
        except LookupError as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from exc


def cell_id(app: str, language: str, version: str, base: str) -> str:
    """Stable id of a cell: the same coordinates give the same id in every run."""
    key = f"{app}|{language}|{version}|{base}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class LeftOut:
    """A coordinate of the matrix that cannot run, and why (from the bases' capabilities)."""

    app: str
    language: str
    toolchain_version: str
    base: str
    reason: str

    @property
    def label(self) -> str:
        """``python-hello python3.13.5 on distroless-static-debian12``."""
        return f"{self.app} {self.language}{self.toolchain_version} on {self.base}"


@dataclass(frozen=True)
class Plan:
    """What a matrix expands to: the cells that run, the coordinates left out, and the
    apps they build (each read once, here: a run's stages take them from the plan)."""

    cells: list[Cell]
    left_out: list[LeftOut]
    apps: dict[str, App]


def base_spec(config: MatrixConfig, name: str) -> BaseSpec:
    """The base ``name`` of the catalogue or of the matrix's ``custom_bases``."""
    custom = config.custom_bases.get(name)
    if custom is not None:
        return BaseSpec(
            ref=custom.ref, capabilities=custom.capabilities, generation=custom.generation
        )
    return load_catalogue().base(name)


def make_cell(config: MatrixConfig, app: App, version: str, base: str) -> Cell | LeftOut:
    """The cell of these coordinates, or why it cannot run."""
    catalogue = load_catalogue()
    spec = catalogue.languages[app.language]
    toolchain = catalogue.toolchain(app.language, version)
    builder = apply_mirror(toolchain.builder_ref, config.mirrors)
    single = base == SINGLE_STAGE
    base_ref = builder
    own = app.own_dockerfile(base) if app.dockerfiles else None
    linkage: Linkage
    if app.dockerfiles and own is None:
        bases = ", ".join(app.dockerfiles)
        return LeftOut(
            app.name, app.language, version, base, f"{app.name} has Dockerfiles for {bases} only"
        )
    if own is not None:
        # The app's Dockerfile decides; it is built and measured even where the binary
        # cannot run (the seed's alpine cell): the probe then says why.
        linkage = own.linkage
        if not single:
            base_ref = apply_mirror(base_spec(config, base).ref, config.mirrors)
    elif single:
        # Built and run on the builder: it has the toolchain's runtime and libraries.
        linkage = "runtime" if spec.runtime else "dynamic"
    else:
        target = base_spec(config, base)
        found = fit(spec, toolchain, target.capabilities)
        if found.linkage is None:
            return LeftOut(app.name, app.language, version, base, found.reason or "")
        linkage, base_ref = found.linkage, apply_mirror(target.ref, config.mirrors)
    return Cell(
        cell_id=cell_id(app.name, app.language, version, base),
        app=app.name,
        language=app.language,
        toolchain_version=version,
        base=base,
        variant="single-stage" if single else "multi-stage",
        builder_ref=builder,
        base_ref=base_ref,
        cgo_enabled=app.language == "go" and linkage == "dynamic",
        linkage=linkage,
    )


def plan(config: MatrixConfig, only: list[CellFilter] | None = None) -> Plan:
    """The product of apps x their language's versions x bases, minus ``exclude``, plus
    ``include``, then ``only``; coordinates no base can run are left out with the reason."""
    names = dict.fromkeys([*config.apps, *(extra.app for extra in config.include)])
    apps = {name: load_app(name, config.apps_dir) for name in names}
    coordinates = [
        (apps[name], version, base)
        for name in config.apps
        for version in config.versions_for(apps[name].language)
        for base in config.bases
    ]
    outcomes = [make_cell(config, *c) for c in coordinates]
    outcomes = [o for o in outcomes if not any(f.matches(o) for f in config.exclude)]
    outcomes += [make_cell(config, apps[c.app], c.toolchain, c.base) for c in config.include]
    if only:
        _check_only(outcomes, only)
        outcomes = [o for o in outcomes if all(f.matches(o) for f in only)]
    cells = list({o.cell_id: o for o in outcomes if isinstance(o, Cell)}.values())
    left_out = list({o.label: o for o in outcomes if isinstance(o, LeftOut)}.values())
    return Plan(cells, left_out, apps)


def _check_only(outcomes: list[Cell | LeftOut], only: list[CellFilter]) -> None:
    # A filter that matches nothing is a typo, not a request for an empty run.
    coordinates = {
        "app": sorted({o.app for o in outcomes}),
        "toolchain": sorted({o.toolchain_version for o in outcomes}),
        "base": sorted({o.base for o in outcomes}),
    }
    for cell_filter in only:
        for key, glob in cell_filter.model_dump(exclude_none=True).items():
            if not any(fnmatch.fnmatchcase(value, glob) for value in coordinates[key]):
                raise ConfigError(
                    f"--only {key}={glob}: matches no {key} of the matrix; "
                    f"its {key}s: {', '.join(coordinates[key])}"
                )
    if not any(all(f.matches(o) for f in only) for o in outcomes):
        raise ConfigError(f"--only {format_filters(only)}: no cell of the matrix matches them all")


def expand(config: MatrixConfig, only: list[CellFilter] | None = None) -> list[Cell]:
    """The cells of a matrix that can run (see ``plan``)."""
    return plan(config, only).cells
