"""Scanners, the swappable part of the scan stage: one interface, a factory by config.

``make_scanner`` picks the implementation the matrix's ``scanner.kind`` names:

- ``trivy``: ``trivy image`` once per scan (standalone);
- ``trivy-server``: clients of a ``trivy server`` the scanner starts and stops, which
  keeps the DB and the layer cache warm in one process (warm scans take about 0.1 s).

Trivy never goes online from here: no version check, no telemetry, no DB download
(``--skip-db-update``) unless a DB repository is configured, images only from the
archive (``--input``).
"""

from __future__ import annotations

from pathlib import Path

from tasks.scanners.base import ScanError, Scanner
from tasks.scanners.config import ScannerConfig
from tasks.scanners.trivy import TrivyScanner, TrivyServer, TrivyServerScanner

# Under the cache dir: each scan's documents, kept until the run is published.
DOCUMENTS_FOLDER = "documents"


def make_scanner(config: ScannerConfig, cache_dir: Path) -> Scanner:
    """The scanner a matrix config asks for, ready to scan; close it when done.

    ``config.db_dir`` is a Trivy cache dir holding ``db/``; without it the fixture DB
    that ``infra up`` writes to ``cache_dir / "trivy"`` is used. Each scan keeps its
    documents (report, SBOM, SARIF) in a folder under ``cache_dir / "documents"`` until
    the run is published (``ScanResult.documents``).
    """
    db_cache = config.db_dir if config.db_dir is not None else cache_dir / "trivy"
    documents = cache_dir / DOCUMENTS_FOLDER
    if config.kind == "trivy-server":
        if config.db_repository:
            raise ScanError("scan: scanner.db_repository works with kind trivy only")
        server = TrivyServer(db_cache)
        server.start()
        return TrivyServerScanner(
            server, config.timeout_seconds, owns_server=True, documents_dir=documents
        )
    return TrivyScanner(db_cache, config.timeout_seconds, config.db_repository, documents)


__all__ = ["DOCUMENTS_FOLDER", "ScanError", "Scanner", "make_scanner"]
