"""Every Scanner passes ``conformance.scanners``: one subclass per ``scanner.kind``.

Each subclass gets its scanner from ``make_scanner`` (the suite's ``scanner`` fixture),
then adds what only that implementation does.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.scanners import (
    SCANNER_KINDS,
    TIMEOUT,
    ScannerConformance,
    scanner_config,
)
from tasks.scanners import make_scanner
from tasks.scanners.base import ScanError, Scanner
from tasks.scanners.trivy import TrivyScanner, TrivyServer, TrivyServerScanner

pytestmark = pytest.mark.integration


class TestTrivyScanner(ScannerConformance):
    kind = "trivy"

    def test_is_the_standalone_scanner(self, scanner: Scanner) -> None:
        assert type(scanner) is TrivyScanner

    def test_cache_without_db_is_a_scan_error(
        self, tmp_path: Path, images: dict[str, Path]
    ) -> None:
        scanner = make_scanner(scanner_config("trivy", tmp_path), tmp_path)
        with pytest.raises(ScanError, match="--skip-db-update cannot be specified on the first"):
            scanner.scan(images["noos"])


class TestTrivyServerScanner(ScannerConformance):
    kind = "trivy-server"

    def test_is_a_client_of_its_own_server(self, scanner: Scanner) -> None:
        assert isinstance(scanner, TrivyServerScanner) and type(scanner) is TrivyServerScanner
        assert scanner.owns_server and scanner.server.url.startswith("http://127.0.0.1:")

    def test_a_second_scan_is_served_by_the_same_warm_server(
        self, scanner: Scanner, images: dict[str, Path]
    ) -> None:
        # How much faster a warm scan is belongs to benchmarks/, not to a timed test.
        assert isinstance(scanner, TrivyServerScanner)
        url = scanner.server.url
        first = scanner.scan(images["dpkg"])
        second = scanner.scan(images["dpkg"])
        assert scanner.server.url == url
        assert (second.packages, second.findings) == (first.packages, first.findings)
        assert len(first.packages) > 0

    def test_wrong_token_is_refused(self, scanner: Scanner, images: dict[str, Path]) -> None:
        assert isinstance(scanner, TrivyServerScanner)
        impostor = TrivyServer(scanner.server.cache_dir)
        impostor.url = scanner.server.url  # the real server, the wrong token
        with pytest.raises(ScanError, match=r"^scan: .*unauthenticated: invalid token"):
            TrivyServerScanner(impostor, TIMEOUT).scan(images["noos"])

    def test_scans_fail_once_stopped(self, db_cache: Path) -> None:
        with TrivyServer(db_cache) as server:
            url = server.url
        assert server.url == url
        scanner = TrivyServerScanner(server, TIMEOUT)
        with pytest.raises(ScanError, match=r"^scan: "):
            scanner.scan(Path("anything.tar"))

    def test_closing_stops_the_server_it_owns(
        self, db_cache: Path, images: dict[str, Path]
    ) -> None:
        scanner = make_scanner(scanner_config("trivy-server", db_cache), db_cache.parent)
        assert isinstance(scanner, TrivyServerScanner)
        assert len(scanner.scan(images["dpkg"]).findings) == 3
        scanner.close()
        with pytest.raises(ScanError, match=r"^scan: .*connection refused"):
            scanner.scan(images["noos"])


def test_every_kind_has_a_suite() -> None:
    assert sorted(c.kind or "" for c in ScannerConformance.__subclasses__()) == sorted(
        SCANNER_KINDS
    )
