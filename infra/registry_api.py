"""A small client of the registry HTTP API (v2): health, tags, manifests, config labels."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
    ]
)

# Only 127.0.0.1 is ever contacted: no proxy from the environment may intercept it.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class RegistryAPI:
    """HTTP access to one registry at ``address`` (``host:port``, plain HTTP)."""

    def __init__(self, address: str, timeout: float = 10.0) -> None:
        self.base = f"http://{address}/v2"
        self.timeout = timeout

    def _get(self, path: str, accept: str | None = None) -> tuple[Any, dict[str, str]] | None:
        request = urllib.request.Request(self.base + path)
        if accept:
            request.add_header("Accept", accept)
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}"), dict(response.headers)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def healthy(self) -> bool:
        """True when GET /v2/ answers 200 (an auth-protected registry answers 401)."""
        try:
            return self._get("/") is not None
        except (OSError, urllib.error.URLError, ValueError):
            return False

    def repositories(self) -> list[str]:
        """Every repository in the catalog."""
        answer = self._get("/_catalog?n=1000")
        return list(answer[0].get("repositories") or []) if answer else []

    def tags(self, repository: str) -> list[str]:
        """The tags of ``repository``; [] when it does not exist."""
        answer = self._get(f"/{repository}/tags/list")
        return list(answer[0].get("tags") or []) if answer else []

    def manifest(self, repository: str, tag: str) -> tuple[dict[str, Any], str] | None:
        """The image manifest and its digest, or None when the tag does not exist."""
        answer = self._get(f"/{repository}/manifests/{tag}", MANIFEST_TYPES)
        if answer is None:
            return None
        body, headers = answer
        return body, headers.get("Docker-Content-Digest", "")

    def image_config(self, repository: str, tag: str) -> dict[str, Any] | None:
        """The image config blob (``config.Labels``, ``config.User``...), None when absent."""
        found = self.manifest(repository, tag)
        if found is None or "config" not in found[0]:
            return None
        blob = self._get(f"/{repository}/blobs/{found[0]['config']['digest']}")
        return blob[0] if blob else None

    def labels(self, repository: str, tag: str) -> dict[str, str] | None:
        """The image labels of ``repository:tag``, None when the tag does not exist."""
        config = self.image_config(repository, tag)
        if config is None:
            return None
        return dict((config.get("config") or {}).get("Labels") or {})

    def delete(self, repository: str, tag: str) -> bool:
        """Delete the manifest ``tag`` points at (every tag sharing it goes too)."""
        found = self.manifest(repository, tag)
        if found is None:
            return False
        request = urllib.request.Request(
            f"{self.base}/{repository}/manifests/{found[1]}", method="DELETE"
        )
        with _OPENER.open(request, timeout=self.timeout):
            return True
