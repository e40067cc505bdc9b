"""Where infra keeps things: the cache (registry storage, wheels, apt lists) and run state."""

from __future__ import annotations

from pathlib import Path

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "basebench"
# The host's own apt sources: mmdebstrap and apt-get use it as their mirror, so no
# mirror host is ever written into the repository.
DEFAULT_APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
DEFAULT_REGISTRY_PORT = 5000


def state_dir(cache_dir: Path) -> Path:
    """Pidfiles and logs of the daemons infra starts."""
    return cache_dir / "run"
