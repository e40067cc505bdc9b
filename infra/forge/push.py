"""Import a rootfs tarball into the engine as tagged images, then push them."""

from __future__ import annotations

import json
from collections.abc import Mapping

import docker

from infra.errors import InfraError
from infra.forge.recipe import Recipe, Rootfs


def import_outputs(
    client: docker.DockerClient, registry: str, recipe: Recipe, rootfs: Rootfs,
    labels: Mapping[str, str],
) -> list[str]:  # fmt: skip
    """Import ``rootfs`` once per output tag (settings + labels); the image references."""
    label_lines = [f"LABEL {json.dumps(k)}={json.dumps(v)}" for k, v in labels.items()]
    refs = []
    for output in recipe.outputs:
        repository = f"{registry}/{recipe.repository}"
        try:
            client.api.import_image(
                src=str(rootfs.tarball),
                repository=repository,
                tag=output.tag,
                changes=[*output.changes, *label_lines],
            )
        except docker.errors.APIError as exc:
            raise InfraError(
                f"import of {repository}:{output.tag} failed: {exc.explanation}"
            ) from exc
        refs.append(f"{repository}:{output.tag}")
    return refs


def push(client: docker.DockerClient, ref: str) -> str:
    """Push ``ref`` to its registry; the pushed digest."""
    repository, _, tag = ref.rpartition(":")
    digest = ""
    try:
        for event in client.images.push(repository, tag=tag, stream=True, decode=True):
            if "error" in event:
                raise InfraError(f"push of {ref} failed: {event['error']}")
            digest = (event.get("aux") or {}).get("Digest", digest)
    except docker.errors.APIError as exc:
        raise InfraError(f"push of {ref} failed: {exc.explanation}") from exc
    return digest
