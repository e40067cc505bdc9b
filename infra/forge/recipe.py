"""What every forged image has in common: a recipe, its content hash, its labels."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from infra.forge.apt import AptIndex
from tasks.labels import DEVIATION, FORGED, PACKAGES, RECIPE_HASH, UPSTREAM

# Bump when the way images are forged changes, so every image is rebuilt once.
RECIPE_CODE_VERSION = "2"

LABEL_FORGED, LABEL_HASH, LABEL_UPSTREAM = FORGED, RECIPE_HASH, UPSTREAM
LABEL_PACKAGES, LABEL_DEVIATION = PACKAGES, DEVIATION


@dataclass(frozen=True)
class Output:
    """One tag made from a recipe's rootfs, with its image settings (Dockerfile lines)."""

    tag: str
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rootfs:
    """A built root filesystem tarball and the Debian packages it holds (name -> version)."""

    tarball: Path
    packages: dict[str, str]


class Recipe(ABC):
    """A stand-in for one upstream image, built from Debian packages (and a Go wheel).

    Subclasses say which packages they need (``resolve``) and how to lay them out
    (``build``); the forge does hashing, reuse, import and push.
    """

    #: repository path under the registry, as upstream names it ("library/debian")
    repository: str
    #: the upstream image this stands in for (shown in labels and logs)
    upstream: str
    outputs: tuple[Output, ...]
    #: why this cannot match upstream exactly, or None
    deviation: str | None = None
    #: the Debian suite whose packages ``resolve`` and ``build`` see (the forge gives
    #: them an apt view of that suite on the host's mirrors)
    suite: str = "bookworm"
    #: the cached rootfs part this recipe builds or reuses (None: nothing shared); recipes
    #: that share one are forged one after the other, so it is built once
    shares: str | None = None

    @property
    def name(self) -> str:
        """Short name for logs: repository:first-tag."""
        return f"{self.repository}:{self.outputs[0].tag}"

    def hash_inputs(self) -> dict[str, str]:
        """Inputs beside the packages that change the image (e.g. the Go version)."""
        return {}

    @abstractmethod
    def resolve(self, apt: AptIndex) -> dict[str, str]:
        """The exact Debian packages (name -> version) this image will contain."""

    @abstractmethod
    def build(self, apt: AptIndex, packages: dict[str, str], workdir: Path) -> Rootfs:
        """Build the rootfs tarball in ``workdir`` (which the caller removes)."""

    def recipe_hash(self, packages: Mapping[str, str]) -> str:
        """The content hash of this recipe for the resolved ``packages``."""
        inputs = {"kind": type(self).__name__, "repository": self.repository}
        inputs |= {"outputs": repr(self.outputs), **self.hash_inputs()}
        return recipe_hash(inputs, packages)


def recipe_hash(inputs: Mapping[str, str], packages: Mapping[str, str]) -> str:
    """Stable hash over the code version, the recipe's inputs and name=version pairs."""
    payload = {
        "code": RECIPE_CODE_VERSION,
        "inputs": dict(sorted(inputs.items())),
        "packages": sorted(f"{n}={v}" for n, v in packages.items()),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def labels(recipe: Recipe, digest: str, packages: Mapping[str, str]) -> dict[str, str]:
    """The org.basebench.* labels of a forged image."""
    result = {
        LABEL_FORGED: "true",
        LABEL_HASH: digest,
        LABEL_UPSTREAM: recipe.upstream,
        LABEL_PACKAGES: ",".join(f"{n}={v}" for n, v in sorted(packages.items())),
    }
    if recipe.deviation:
        result[LABEL_DEVIATION] = recipe.deviation
    return result
