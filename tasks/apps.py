"""The apps under test: ``apps/<name>/app.yaml`` read and validated, each once per run.

An app names its language (one with a builder in the catalogue), its port and probe path,
and either the default ``Dockerfile.single`` and ``Dockerfile.multi`` or its own
Dockerfile per base. ``tasks.matrix`` plans cells over the apps a matrix names; the
build and probe stages read an app's Dockerfile and port from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from tasks.catalogue import load_catalogue
from tasks.config_file import ConfigError, read_mapping, validate

# What apps, bases and matrices are called.
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
APPS_DIR = Path(__file__).resolve().parent.parent / "apps"

# The single-stage variant runs on the builder image itself; its ref is per toolchain.
SINGLE_STAGE = "single-stage"


class OwnDockerfile(BaseModel):
    """An app's own Dockerfile for one base, which decides the build itself (as the seed
    post's did): ``linkage`` says what it builds, in place of the catalogue's choice."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    file: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    linkage: Literal["dynamic", "static"]


class App(BaseModel):
    """An app under apps/<name>/app.yaml: how to build and how to probe it.

    By default it has Dockerfile.single and Dockerfile.multi, and the catalogue decides
    how it is linked on each base. With ``dockerfiles`` (base -> its own Dockerfile) it
    runs on those bases only, built exactly as its Dockerfiles say.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Name
    language: Name  # a language of tasks/catalogue.yaml (checked by load_app)
    port: int = Field(8080, ge=1, le=65535)
    probe_path: Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9/._-]*$")] = "/"
    directory: Path
    dockerfiles: dict[Name, OwnDockerfile] = {}

    def own_dockerfile(self, base: str) -> OwnDockerfile | None:
        """The app's own Dockerfile for ``base`` (a catalogue alias counts), if it has one."""
        names = load_catalogue().base_names()
        wanted = names.get(base, base)
        return next(
            (own for key, own in self.dockerfiles.items() if names.get(key, key) == wanted), None
        )

    def dockerfile(self, base: str) -> Path:
        """The Dockerfile that builds the app's cell on ``base``."""
        own = self.own_dockerfile(base) if self.dockerfiles else None
        if own is not None:
            return self.directory / own.file
        name = "Dockerfile.single" if base == SINGLE_STAGE else "Dockerfile.multi"
        return self.directory / name


def load_app(name: str, apps_dir: Path = APPS_DIR) -> App:
    """Read apps/<name>/app.yaml; its language must have a builder in the catalogue."""
    app_file = apps_dir / name / "app.yaml"
    if not app_file.is_file():
        known = sorted(p.parent.name for p in apps_dir.glob("*/app.yaml"))
        raise ConfigError(f"unknown app {name!r}; allowed: {', '.join(known)}")
    raw = read_mapping(app_file, ConfigError)
    app = validate(App, {**raw, "name": name, "directory": app_file.parent}, app_file, ConfigError)
    catalogue = load_catalogue()
    if app.language not in catalogue.languages:
        raise ConfigError(
            f"{app_file}: language: {app.language!r} has no builder in the catalogue; "
            f"allowed: {', '.join(catalogue.languages)}"
        )
    allowed = [*catalogue.base_names(), SINGLE_STAGE]
    for base, own in app.dockerfiles.items():
        if base not in allowed:
            raise ConfigError(
                f"{app_file}: dockerfiles.{base}: unknown base; allowed: {', '.join(allowed)}"
            )
        if not (app.directory / own.file).is_file():
            raise ConfigError(
                f"{app_file}: dockerfiles.{base}.file: no such file {own.file!r} in {app.directory}"
            )
    return app
