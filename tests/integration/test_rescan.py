"""End to end: `basebench run` against fixture DB A, then `basebench rescan` of its stored
SBOMs against fixture DB B (A with one advisory added, one withdrawn and one severity
changed), with the real trivy, embedded Prefect and a local result store. No image is
built by the rescan; every vulnerability change is the DB's, and compare says so."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from cli.main import main
from infra.trivydb.fixture import DEFAULT_ADVISORIES, write_fixture_db
from tasks.dataset.reader import list_runs, read_table
from tasks.dataset.stores import LocalStore

pytestmark = pytest.mark.integration

# DB B differs from DB A (the shipped advisories) by exactly these three advisories.
ADDED = "CVE-2026-90091"  # new: glibc in Debian 12, HIGH (distroless base has libc6 only)
WITHDRAWN = "CVE-2026-90004"  # tzdata in Debian 12, LOW: gone from DB B
RESEVERED = "CVE-2026-90002"  # openssl: HIGH in DB A, CRITICAL in DB B
CELL = "go-hello go1.22.10 distroless-base-debian12"


def write_db_b(path: Path) -> Path:
    """The shipped advisories with one added, one withdrawn and one severity changed,
    written as an advisories file for the fixture DB writer."""
    data = yaml.safe_load(DEFAULT_ADVISORIES.read_text())
    for source in data["sources"]:
        for advisory in source["advisories"]:
            if advisory["id"] == RESEVERED:
                advisory["severity"] = "CRITICAL"
        if source["data_source"]["bucket"] == "debian 12":
            source["advisories"] = [a for a in source["advisories"] if a["id"] != WITHDRAWN]
            source["advisories"].append(
                {
                    "id": ADDED,
                    "source_package": "glibc",
                    "fixed_version": "2.36-9+deb12u99",
                    "severity": "HIGH",
                    "title": "fixture: glibc advisory published after the build",
                }
            )
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@dataclass
class Rescanned:
    output: str
    source_id: str
    rescan_id: str
    run_exit: int
    rescan_exit: int
    rescan_out: str
    runs: list[dict[str, Any]]
    results: pd.DataFrame
    vulnerabilities: pd.DataFrame
    db_b: Path
    tmp: Path


@pytest.fixture(scope="module")
def rescanned(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rescanned]:
    tmp = tmp_path_factory.mktemp("rescan")
    db_a = write_fixture_db(DEFAULT_ADVISORIES, tmp / "db-a").parent
    db_b = write_fixture_db(write_db_b(tmp / "advisories-b.yaml"), tmp / "db-b").parent
    output = str(tmp / "results")
    config = tmp / "matrix.yaml"
    config.write_text(
        f"""
name: rescan-it
apps: [go-hello]
toolchains: ["1.22.10"]
bases: [distroless-base-debian12]
repeat: 2
cache_dir: {infra.cache_dir}
scanner: {{db_dir: {db_a}}}
hosts: [{{name: local, url: "{infra.docker_url}", max_parallel: 1}}]
output: {output}
"""
    )
    run_exit = main(["run", str(config)])
    printed = io.StringIO()  # a module fixture cannot use capsys
    with contextlib.redirect_stdout(printed):
        rescan_exit = main(["rescan", output, "--db", str(db_b), "--config", str(config)])
    store = LocalStore(Path(output))
    runs = list_runs(store)
    yield Rescanned(
        output=output,
        source_id=runs[0]["run_id"],
        rescan_id=runs[-1]["run_id"],
        run_exit=run_exit,
        rescan_exit=rescan_exit,
        rescan_out=printed.getvalue(),
        runs=runs,
        results=read_table(store, "results"),
        vulnerabilities=read_table(store, "vulnerabilities"),
        db_b=db_b,
        tmp=tmp,
    )


def test_the_rescan_is_a_run_of_kind_rescan_linked_to_its_source(rescanned: Rescanned) -> None:
    assert (rescanned.run_exit, rescanned.rescan_exit) == (0, 0)
    assert len(rescanned.runs) == 2
    source, rescan = rescanned.runs
    assert source["kind"] == "benchmark" and source["source_run_id"] is None
    assert rescan["kind"] == "rescan"
    assert rescan["source_run_id"] == source["run_id"]
    assert (rescan["matrix"], rescan["config_hash"]) == (source["matrix"], source["config_hash"])
    assert rescan["hosts"] == []
    assert (rescan["cells"], rescan["cells_ok"]) == (1, 1)
    metadata = json.loads((rescanned.db_b / "db" / "metadata.json").read_text())
    assert rescan["scanner_db_version"] == 2
    updated = pd.Timestamp(metadata["UpdatedAt"])
    assert pd.Timestamp(rescan["scanner_db_updated_at"]) == updated
    started = pd.Timestamp(rescan["started_at"])
    assert rescan["scanner_db_age_seconds"] == int((started - updated).total_seconds())
    assert rescan["scanner_db_max_age_hours"] == 168.0
    assert rescan["scanner_db_stale"] is False


def test_the_rescan_carries_the_image_facts_and_measures_no_time(rescanned: Rescanned) -> None:
    source = rescanned.results[rescanned.results["run_id"] == rescanned.source_id].iloc[0]
    rescan = rescanned.results[rescanned.results["run_id"] == rescanned.rescan_id].iloc[0]
    carried = [
        "cell_id", "app", "base", "base_ref", "base_digest", "builder_digest", "image_id",
        "size_bytes", "compressed_bytes", "layers", "files", "packages", "os_family",
        "os_version", "base_forged", "packages_from_base", "packages_from_build", "host",
    ]  # fmt: skip
    assert {c: rescan[c] for c in carried} == {c: source[c] for c in carried}
    assert source["build_seconds"] > 0 and pd.isna(rescan["build_seconds"])
    assert source["startup_seconds"] > 0 and pd.isna(rescan["startup_seconds"])
    cell_documents = f"documents/{rescanned.rescan_id}/{rescan['cell_id']}"
    assert rescan["sbom_path"] == f"{cell_documents}/sbom.cdx.json"
    assert (source["scanner"], rescan["scanner"]) == ("trivy", "trivy")


def test_the_counts_follow_db_b(rescanned: Rescanned) -> None:
    def found(run_id: str) -> list[tuple[str, str, str, str | None]]:
        rows = rescanned.vulnerabilities[rescanned.vulnerabilities["run_id"] == run_id]
        columns = ("vulnerability_id", "package", "severity", "origin")
        return sorted(zip(*(rows[c] for c in columns), strict=True))

    assert found(rescanned.source_id) == [
        ("CVE-2026-90001", "libc6", "CRITICAL", "base"),
        ("CVE-2026-90002", "libssl3", "HIGH", "base"),
        ("CVE-2026-90004", "tzdata", "LOW", "base"),
        ("CVE-2026-90031", "stdlib", "HIGH", "build"),
        ("CVE-2026-90032", "stdlib", "MEDIUM", "build"),
    ]
    assert found(rescanned.rescan_id) == [
        ("CVE-2026-90001", "libc6", "CRITICAL", "base"),
        ("CVE-2026-90002", "libssl3", "CRITICAL", "base"),
        ("CVE-2026-90031", "stdlib", "HIGH", "build"),
        ("CVE-2026-90032", "stdlib", "MEDIUM", "build"),
        ("CVE-2026-90091", "libc6", "HIGH", "base"),
    ]
    counts = ["vulns_critical", "vulns_high", "vulns_medium", "vulns_low"]
    by_run = rescanned.results.set_index("run_id")[counts]
    assert by_run.loc[rescanned.source_id].tolist() == [1, 2, 1, 1]
    assert by_run.loc[rescanned.rescan_id].tolist() == [2, 2, 1, 0]


def test_compare_attributes_every_change_to_the_db(
    rescanned: Rescanned, capsys: pytest.CaptureFixture[str]
) -> None:
    # Default: the latest run (the rescan) against the run it rescanned.
    assert main(["compare", rescanned.output, "--json"]) == 0  # DB changes regress nothing
    data = json.loads(capsys.readouterr().out)
    assert (data["base_run"], data["head_run"]) == (rescanned.source_id, rescanned.rescan_id)
    changes = [
        (c["vulnerability_id"], c["change"], c["cause"], c["reason"], c["severity_before"],
         c["severity_after"], c["packages"])
        for c in data["vulnerability_changes"]
    ]  # fmt: skip
    assert changes == [
        (ADDED, "added", "db", "advisory added", None, "HIGH", ["libc6"]),
        (WITHDRAWN, "removed", "db", "advisory withdrawn", "LOW", None, ["tzdata"]),
        (RESEVERED, "severity", "db", "advisory changed: severity HIGH -> CRITICAL", "HIGH",
         "CRITICAL", ["libssl3"]),
    ]  # fmt: skip
    assert data["vulnerability_changes_by_cause"] == {
        "db": {"added": 1, "removed": 1, "severity": 1},
        "image": {"added": 0, "removed": 0, "severity": 0},
        "scanner": {"added": 0, "removed": 0, "severity": 0},
        "unknown": {"added": 0, "removed": 0, "severity": 0},
    }
    assert [(c["kind"], c["regression"], c["summary"]) for c in data["changes"]] == [
        (
            "new-cve",
            False,
            f"new HIGH {ADDED} in libc6, inherited from the base "
            "[DB changed: advisory added; not an image regression]",
        ),
        (
            "cve-severity",
            False,
            f"{RESEVERED} HIGH -> CRITICAL in libssl3, inherited from the base "
            "[DB changed: advisory changed: severity HIGH -> CRITICAL]",
        ),
    ]
    assert data["regressed"] is False


def test_compare_table_says_db_changes_are_not_image_regressions(
    rescanned: Rescanned, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", rescanned.output]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-3:] == [
        "vulnerability changes by cause: DB changed 3 (1 added, 1 gone, 1 severity changed)",
        "3 change(s) made by the DB or the scanner alone, with the same packages: "
        "not image regressions",
        "clean: no regression",
    ]
    # The rescan's own summary printed the same comparison.
    assert "vulnerability changes by cause: DB changed 3" in rescanned.rescan_out
    assert f"basebench rescan {rescanned.rescan_id} of run {rescanned.source_id}" in (
        rescanned.rescan_out
    )


def test_report_shows_the_rescan_and_the_causes(rescanned: Rescanned) -> None:
    page = rescanned.tmp / "report.html"
    assert main(["report", rescanned.output, "--html", str(page)]) == 0
    html = page.read_text()
    assert f"Rescan of run {rescanned.source_id}: its stored SBOMs scanned" in html
    assert (
        '<p class="causes">vulnerability changes by cause: DB changed 3 (1 added, 1 gone, '
        "1 severity changed)</p>"
    ) in html
    assert 'id="stale-db"' not in html


def test_a_stale_db_says_so_and_exits_5(
    rescanned: Rescanned, capsys: pytest.CaptureFixture[str]
) -> None:
    # No --run: the latest benchmark run (the source), not the rescan published since.
    code = main(
        ["rescan", rescanned.output, "--db", str(rescanned.db_b), "--max-db-age-hours", "0.0001"]
    )
    out = capsys.readouterr().out
    assert code == 5
    stale = list_runs(LocalStore(Path(rescanned.output)))[-1]
    assert (stale["kind"], stale["source_run_id"]) == ("rescan", rescanned.source_id)
    assert stale["scanner_db_stale"] is True
    assert stale["scanner_db_max_age_hours"] == 0.0001
    age_hours = stale["scanner_db_age_seconds"] / 3600
    message = (
        f"STALE DB: the vulnerability DB was {age_hours:.1f} h old when the run started, "
        "older than the limit of 0.0001 h (scanner.max_db_age_hours); its counts miss what "
        "the DB has learnt since"
    )
    assert message in " ".join(out.split())  # rich wraps the line at the console width
    page = rescanned.tmp / "stale.html"
    assert main(["report", rescanned.output, "--run", stale["run_id"], "--html", str(page)]) == 0
    assert f'<p class="stale" id="stale-db">{message}</p>' in page.read_text()


def test_bad_input_exits_2_and_publishes_nothing(
    rescanned: Rescanned, capsys: pytest.CaptureFixture[str]
) -> None:
    before = len(list_runs(LocalStore(Path(rescanned.output))))
    empty = rescanned.tmp / "no-db"
    empty.mkdir()
    assert main(["rescan", rescanned.output, "--db", str(empty)]) == 2
    assert capsys.readouterr().err == (
        f"basebench rescan: no Trivy DB in {empty} (db/trivy.db is missing): pass --db DIR, "
        "a Trivy cache dir holding db/, or write the fixture DB with `basebench infra up`; "
        "nothing was published\n"
    )
    assert main(["rescan", rescanned.output, "--run", "nope"]) == 2
    assert capsys.readouterr().err == (
        f"basebench rescan: --run nope: no complete run with that id in {rescanned.output}; "
        "nothing was published\n"
    )
    assert len(list_runs(LocalStore(Path(rescanned.output)))) == before
