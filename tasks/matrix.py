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
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)

from tasks.config_file import read_mapping, validate
from tasks.hosts.config import HostConfig, default_host
from tasks.records import Cell

Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
Version = Annotated[str, StringConstraints(pattern=r"^[0-9]+\.[0-9]+(\.[0-9]+)?$")]
Registry = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.-]+(:[0-9]{1,5})?$")]
BuildTool = Literal["buildkit", "legacy"]
UserPath = Annotated[Path, AfterValidator(Path.expanduser)]  # "~/x" means what a shell means
Glob = Annotated[str, StringConstraints(pattern=r"^[a-z0-9.*?-]{1,64}$")]

DEFAULT_REGISTRY = "127.0.0.1:5000"
APPS_DIR = Path(__file__).resolve().parent.parent / "apps"
DEFAULT_CACHE = Path.home() / ".cache" / "basebench"


class ConfigError(ValueError):
    """A config that cannot be used; the message names file, key and what is allowed."""


class Base(BaseModel):
    """A runtime base image as users know it (before any registry mirror)."""

    model_config = ConfigDict(frozen=True)

    ref: str
    has_libc: bool
    forgeable: bool  # can infra forge a stand-in from Debian packages?


# The single-stage variant runs on the builder image itself; its ref is per toolchain.
SINGLE_STAGE = "single-stage"

BASES: dict[str, Base] = {
    "bookworm": Base(ref="docker.io/library/debian:bookworm", has_libc=True, forgeable=True),
    "bookworm-slim": Base(
        ref="docker.io/library/debian:bookworm-slim", has_libc=True, forgeable=True
    ),
    "alpine": Base(ref="docker.io/library/alpine:3.20", has_libc=False, forgeable=False),
    "distroless-static": Base(
        ref="gcr.io/distroless/static-debian12:latest", has_libc=False, forgeable=True
    ),
    "distroless-base": Base(
        ref="gcr.io/distroless/base-debian12:latest", has_libc=True, forgeable=True
    ),
}
BUILDERS = {"go": "docker.io/library/golang:{version}-bookworm"}


class App(BaseModel):
    """An app under apps/<name>/app.yaml: how to build and how to probe it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    language: Literal["go"]
    port: int = Field(8080, ge=1, le=65535)
    probe_path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9/._-]*$")] = "/"
    directory: Path

    @property
    def dockerfile_single(self) -> Path:
        return self.directory / "Dockerfile.single"

    @property
    def dockerfile_multi(self) -> Path:
        return self.directory / "Dockerfile.multi"


class CellFilter(BaseModel):
    """Matches cells by glob on each given coordinate (like a CI matrix exclude)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: Glob | None = None
    toolchain: Glob | None = None
    base: Glob | None = None

    def matches(self, cell: Cell) -> bool:
        pairs = [
            (self.app, cell.app),
            (self.toolchain, cell.toolchain_version),
            (self.base, cell.base),
        ]
        return all(p is None or fnmatch.fnmatchcase(v, p) for p, v in pairs)


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


class ExtraCell(BaseModel):
    """A cell added by ``include``: every coordinate given."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: Name
    toolchain: Version
    base: Name


class ScannerConfig(BaseModel):
    """Trivy settings. Without ``db_dir`` the fixture DB that ``infra up`` builds is used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # trivy: one process per scan; trivy-server: one warm server for the run.
    kind: Literal["trivy", "trivy-server"] = "trivy"
    db_dir: Path | None = None  # a Trivy cache dir holding db/trivy.db and db/metadata.json
    db_repository: str | None = None  # an OCI DB mirror for real offline sites
    timeout_seconds: int = Field(300, ge=10, le=3600)


class S3Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint_url: str | None = None
    region: str | None = None  # None: boto3's own chain (AWS_REGION, profile, ...)


class MatrixConfig(BaseModel):
    """A whole matrix run: what to build, how to measure, where results go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    apps: list[Name] = Field(min_length=1)
    toolchains: list[Version] = Field(min_length=1)
    bases: list[Name] = Field(min_length=1)
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
    output: str = "results"
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

    def config_hash(self) -> str:
        """Stable hash of the settings that define what is measured."""
        payload = self.model_dump(
            mode="json", exclude={"output", "s3", "hosts", "cache_dir", "apps_dir"}
        )
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def apply_mirror(ref: str, mirrors: dict[str, str]) -> str:
    """Rewrite an upstream reference onto its mirror, e.g. docker.io/x -> 127.0.0.1:5000/x."""
    registry, _, path = ref.partition("/")
    mirror = mirrors.get(registry)
    return f"{mirror}/{path}" if mirror else ref


def load_matrix(path: Path, overrides: dict[str, Any] | None = None) -> MatrixConfig:
    """Read and validate a matrix file; ``overrides`` are top-level keys from the CLI."""
    raw = {**read_mapping(path, ConfigError), **(overrides or {})}
    config = validate(MatrixConfig, raw, path, ConfigError)
    _check_names(path, config)
    return config


def _check_names(path: Path, config: MatrixConfig) -> None:
    allowed_bases = [*BASES, SINGLE_STAGE]
    named = [("bases", b) for b in config.bases] + [("include", c.base) for c in config.include]
    for key, base in named:
        if base not in allowed_bases:
            raise ConfigError(
                f"{path}: {key}: unknown base {base!r}; allowed: {', '.join(allowed_bases)}"
            )
    for app in {*config.apps, *(c.app for c in config.include)}:
        try:
            load_app(app, config.apps_dir)
        except ConfigError as exc:
            raise ConfigError(f"{path}: apps: {exc}") from exc


def load_app(name: str, apps_dir: Path = APPS_DIR) -> App:
    """Read apps/<name>/app.yaml."""
    app_file = apps_dir / name / "app.yaml"
    if not app_file.is_file():
        known = sorted(p.parent.name for p in apps_dir.glob("*/app.yaml"))
        raise ConfigError(f"unknown app {name!r}; allowed: {', '.join(known)}")
    raw = read_mapping(app_file, ConfigError)
    return validate(App, {**raw, "name": name, "directory": app_file.parent}, app_file, ConfigError)


def cell_id(app: str, language: str, version: str, base: str) -> str:
    """Stable id of a cell: the same coordinates give the same id in every run."""
    key = f"{app}|{language}|{version}|{base}"
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def make_cell(config: MatrixConfig, app_name: str, version: str, base: str) -> Cell:
    app = load_app(app_name, config.apps_dir)
    builder = apply_mirror(BUILDERS[app.language].format(version=version), config.mirrors)
    single = base == SINGLE_STAGE
    spec = None if single else BASES[base]
    return Cell(
        cell_id=cell_id(app.name, app.language, version, base),
        app=app.name,
        language=app.language,
        toolchain_version=version,
        base=base,
        variant="single-stage" if single else "multi-stage",
        builder_ref=builder,
        base_ref=builder if spec is None else apply_mirror(spec.ref, config.mirrors),
        cgo_enabled=single or (spec is not None and spec.has_libc),
    )


def expand(config: MatrixConfig, only: list[CellFilter] | None = None) -> list[Cell]:
    """The cells of a matrix: the product, minus ``exclude``, plus ``include``, then ``only``."""
    cells = [
        make_cell(config, app, version, base)
        for app in config.apps
        for version in config.toolchains
        for base in config.bases
    ]
    cells = [c for c in cells if not any(f.matches(c) for f in config.exclude)]
    cells += [make_cell(config, c.app, c.toolchain, c.base) for c in config.include]
    unique = list({c.cell_id: c for c in cells}.values())
    if only:
        unique = [c for c in unique if all(f.matches(c) for f in only)]
    return unique
