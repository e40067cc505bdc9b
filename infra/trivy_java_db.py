"""An empty Trivy Java DB, so that Trivy scans images holding .jar files offline.

Trivy looks every .jar it finds up in its Java DB (Maven coordinates by SHA-1), which it
normally downloads from a registry; with ``--skip-java-db-update`` and no DB it refuses to
scan at all ("'--skip-java-db-update' cannot be specified on the first run"). An empty
DB of the same schema (aquasecurity/trivy-java-db, schema version 1) lets the scan run:
jars are then named from their own manifests and pom.properties. Against real images,
a real Java DB sits beside the real vulnerability DB in ``scanner.db_dir``.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

SCHEMA_VERSION = 1
TABLES = (
    "CREATE TABLE artifacts(id INTEGER PRIMARY KEY, group_id TEXT, artifact_id TEXT)",
    "CREATE TABLE indices(artifact_id INTEGER, version TEXT, sha1 BLOB, archive_type TEXT,"
    " foreign key (artifact_id) references artifacts(id))",
    "CREATE UNIQUE INDEX artifacts_idx ON artifacts(artifact_id, group_id)",
    "CREATE INDEX indices_artifact_idx ON indices(artifact_id)",
    "CREATE UNIQUE INDEX indices_sha1_idx ON indices(sha1)",
)


def write_java_db(trivy_cache: Path) -> Path:
    """``<trivy_cache>/java-db/`` with an empty trivy-java.db and its metadata.json; kept
    when it is there already. Returns the folder."""
    folder = trivy_cache / "java-db"
    database, metadata = folder / "trivy-java.db", folder / "metadata.json"
    if database.exists() and metadata.exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    partial = database.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(partial) as connection:
        for statement in TABLES:
            connection.execute(statement)
    connection.close()
    partial.rename(database)
    now = datetime.now(UTC)
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    metadata.write_text(
        json.dumps(
            {
                "Version": SCHEMA_VERSION,
                # Far ahead: Trivy never wants to replace it (and runs with updates skipped).
                "NextUpdate": (now + timedelta(days=3650)).strftime(stamp),
                "UpdatedAt": now.strftime(stamp),
                "DownloadedAt": now.strftime(stamp),
            }
        )
    )
    return folder
