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
    (or call ``close``). Every implementation passes ``tasks.scanners.conformance``.
    """

    name: str

    @abstractmethod
    def scan(self, archive: Path) -> ScanResult:
        """OS, packages and vulnerability findings of the image saved at ``archive``.

        Raises ``ScanError`` when no report comes out."""

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
