"""Save stage: one ``docker save`` of a built image into a local tar file.

The engine tars every layer when it saves an image (about 4 s for the 900 MB
single-stage image here), so the image is saved once and both the inspect stage and
the scanner read this file.
"""

from __future__ import annotations

from pathlib import Path

import docker
from prefect import task
from prefect.cache_policies import NO_CACHE

_CHUNK = 1 << 20


@task(name="save", cache_policy=NO_CACHE)
def save_image(client: docker.DockerClient, image_id: str, folder: Path) -> Path:
    """Write ``image_id`` as a ``docker save`` archive into ``folder``; its path."""
    path = folder / f"{image_id.removeprefix('sha256:')[:12]}.tar"
    with path.open("wb") as archive:
        for chunk in client.images.get(image_id).save(chunk_size=_CHUNK):
            archive.write(chunk)
    return path
