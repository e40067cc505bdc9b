"""The matrix's ``scanner:`` settings, read by ``make_scanner``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Trivy's own DB is rebuilt every 6 hours and a downloaded copy is due after a day; a
# week-old DB has missed a week of advisories.
DEFAULT_MAX_DB_AGE_HOURS = 168.0


class ScannerConfig(BaseModel):
    """Trivy settings. Without ``db_dir`` the fixture DB that ``infra up`` builds is used."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # trivy: one process per scan; trivy-server: one warm server for the run.
    kind: Literal["trivy", "trivy-server"] = "trivy"
    db_dir: Path | None = None  # a Trivy cache dir holding db/trivy.db and db/metadata.json
    db_repository: str | None = None  # an OCI DB mirror for real offline sites
    timeout_seconds: int = Field(300, ge=10, le=3600)
    # A run whose DB is older than this (at the run's start) is reported stale (exit 5);
    # null: no limit. Not part of the config hash: it judges a run, it measures nothing.
    max_db_age_hours: float | None = Field(DEFAULT_MAX_DB_AGE_HOURS, gt=0, le=24 * 365)
