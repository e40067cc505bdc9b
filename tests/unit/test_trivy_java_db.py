"""The empty Trivy Java DB that lets Trivy scan images with .jar files offline."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from infra.trivy_java_db import SCHEMA_VERSION, write_java_db


def test_schema_and_metadata_as_trivy_reads_them(tmp_path: Path) -> None:
    folder = write_java_db(tmp_path / "trivy")
    assert folder == tmp_path / "trivy" / "java-db"
    with sqlite3.connect(folder / "trivy-java.db") as connection:
        names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        rows = connection.execute("SELECT count(*) FROM indices").fetchone()
    connection.close()
    assert names == {
        "artifacts", "indices", "artifacts_idx", "indices_artifact_idx", "indices_sha1_idx"
    }  # fmt: skip
    assert rows == (0,)
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["Version"] == SCHEMA_VERSION == 1
    assert metadata["NextUpdate"] > metadata["UpdatedAt"]


def test_an_existing_db_is_kept(tmp_path: Path) -> None:
    folder = write_java_db(tmp_path)
    (folder / "metadata.json").write_text('{"Version": 1, "kept": true}')
    assert write_java_db(tmp_path) == folder
    assert json.loads((folder / "metadata.json").read_text())["kept"] is True
    assert not list(folder.glob("*.partial"))
