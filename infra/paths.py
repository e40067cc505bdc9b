"""Where infra keeps things: the cache (registry storage, wheels, apt lists) and run state."""

from __future__ import annotations

from pathlib import Path

from tasks.matrix import DEFAULT_CACHE

DEFAULT_CACHE_DIR = DEFAULT_CACHE
# The host's own apt sources: mmdebstrap and apt-get use it as their mirror, so no
# mirror host is ever written into the repository.
DEFAULT_APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEFAULT_REGISTRY_PORT = 5000


def state_dir(cache_dir: Path) -> Path:
    """Pidfiles and logs of the daemons infra starts."""
    return cache_dir / "run"
