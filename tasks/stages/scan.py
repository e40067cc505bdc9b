"""Scan stage: the saved image through the run's scanner (see ``tasks.scanners``)."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

from tasks.records import ScanResult
from tasks.scanners.base import Scanner


@task(name="scan", cache_policy=NO_CACHE)
def scan_image(scanner: Scanner, archive: Path) -> ScanResult:
    """OS, packages and vulnerabilities of the image saved at ``archive``."""
    return scanner.scan(archive)
