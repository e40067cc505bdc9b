"""What a scanner is: a saved image in, OS, packages and vulnerability findings out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType

from tasks.records import ScanResult, VulnerabilityDb


class ScanError(RuntimeError):
    """A scan that did not produce a report; the message starts with ``scan:``."""


class Scanner(ABC):
    """Scans images saved by the save stage (``docker save`` archives).

    Implementations may hold a process or a connection: use them as context managers
    (or call ``close``). Every implementation passes ``conformance.scanners``.
    """

    name: str
    timeout_seconds: int  # of one scan

    @abstractmethod
    def scan(self, archive: Path) -> ScanResult:
        """OS, packages and vulnerability findings of the image saved at ``archive``.

        Raises ``ScanError`` when no report comes out."""

    @abstractmethod
    def portable_files(self) -> dict[str, Path]:
        """The local files ``command`` needs on another machine, by their path under the
        toolbox folder there (``tasks.sessions.toolbox`` ships them to build hosts)."""

    @abstractmethod
    def command(self, archive: str, toolbox: str) -> list[str]:
        """The argv of one scan of the archive at ``archive`` on another machine, with
        ``portable_files`` under ``toolbox``; ``read_output`` reads what it printed."""

    @abstractmethod
    def read_output(
        self, returncode: int | None, stdout: str, stderr: str, what: str
    ) -> ScanResult:
        """The result of a ``command`` run elsewhere, as ``scan`` returns it (``returncode``
        None: it timed out); raises ``ScanError``. ``what`` names the image in errors."""

    def database(self) -> VulnerabilityDb | None:
        """The vulnerability DB scans run against; None when the scanner cannot say."""
        return None

    def close(self) -> None:
        """Release what the scanner holds; nothing by default."""
        return None

    def __enter__(self) -> Scanner:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
