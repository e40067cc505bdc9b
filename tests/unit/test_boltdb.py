"""The bbolt writer/reader round trip and the fixture DB built on it (pure file I/O).

That trivy itself reads these files is proved by tests/integration/test_scanners.py.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from infra.trivydb import boltdb
from infra.trivydb.fixture import (
    DEFAULT_ADVISORIES,
    HASH_FILE,
    FixtureError,
    load_advisories,
    write_fixture_db,
)

PAGE = boltdb.PAGE_SIZE


def page_flags(data: bytes, pgid: int) -> int:
    flags: int = boltdb.PAGE_HEADER.unpack_from(data, pgid * PAGE)[1]
    return flags


def test_fnv64a_known_vectors() -> None:
    assert boltdb.fnv64a(b"") == 0xCBF29CE484222325
    assert boltdb.fnv64a(b"a") == 0xAF63DC4C8601EC8C
    assert boltdb.fnv64a(b"foobar") == 0x85944171F73967E8


def test_round_trip_nested_buckets() -> None:
    tree: boltdb.Tree = {
        b"vulnerability": {b"CVE-1": b'{"Severity":"LOW"}', b"CVE-2": b""},
        b"debian 12": {b"glibc": {b"CVE-1": b"{}"}, b"tzdata": {b"CVE-2": b"{}"}},
        b"empty": {},
    }
    assert boltdb.decode(boltdb.encode(tree)) == tree


def test_layout_meta_freelist_and_inline_buckets() -> None:
    data = boltdb.encode({b"outer": {b"small": {b"k": b"v"}}})
    assert len(data) % PAGE == 0
    assert [page_flags(data, p) for p in range(len(data) // PAGE)] == [
        boltdb.META_PAGE,
        boltdb.META_PAGE,
        boltdb.FREELIST_PAGE,
        boltdb.LEAF_PAGE,  # "outer" (holds the inline "small")
        boltdb.LEAF_PAGE,  # root
    ]
    for pgid in (0, 1):
        offset = pgid * PAGE + boltdb.PAGE_HEADER.size
        fields = boltdb.META_FIELDS.unpack_from(data, offset)
        magic, version, page_size, _, root, _, freelist, page_count, txid = fields
        assert (magic, version, page_size) == (0xED0CDAED, 2, 4096)
        assert (root, freelist, page_count, txid) == (4, 2, 5, pgid)


def test_large_buckets_split_into_branch_and_overflow_pages() -> None:
    many = {f"CVE-2026-{i:05d}".encode(): b"x" * 100 for i in range(2000)}
    huge = {b"big": b"y" * (3 * PAGE)}  # one value larger than a page: overflow pages
    tree: boltdb.Tree = {b"many": many, b"huge": huge}
    data = boltdb.encode(tree)
    flags = [page_flags(data, p) for p in range(len(data) // PAGE)]
    assert boltdb.BRANCH_PAGE in flags
    assert boltdb.decode(data) == tree


def test_file_round_trip(tmp_path: Path) -> None:
    tree: boltdb.Tree = {b"a": {b"b": {b"c": {b"d": b"deep"}}}}
    boltdb.write(tmp_path / "x.db", tree)
    assert boltdb.read(tmp_path / "x.db") == tree


def test_bad_checksum_is_detected() -> None:
    data = bytearray(boltdb.encode({b"a": {b"k": b"v"}}))
    checksum_at = boltdb.PAGE_HEADER.size + boltdb.META_FIELDS.size
    struct.pack_into("<Q", data, checksum_at, 12345)
    with pytest.raises(boltdb.BoltFormatError, match="meta page 0: checksum mismatch"):
        boltdb.decode(bytes(data))


def test_top_level_values_are_rejected() -> None:
    with pytest.raises(TypeError, match="must be a bucket"):
        boltdb.encode({b"a": b"value"})


# --- the fixture DB ----------------------------------------------------------------


SOURCE_IDS = {
    b"debian 12": "debian",
    b"debian 13": "debian",
    b"alpine 3.20": "alpine",
    b"go::The Go Vulnerability Database": "govulndb",
    b"pip::GitHub Security Advisory pip": "ghsa",
    b"npm::GitHub Security Advisory npm": "ghsa",
}


def test_default_fixture_buckets(tmp_path: Path) -> None:
    db_dir = write_fixture_db(DEFAULT_ADVISORIES, tmp_path)
    assert db_dir == tmp_path / "db"
    tree = boltdb.read(db_dir / "trivy.db")
    assert set(tree) == {b"data-source", b"vulnerability", *SOURCE_IDS}
    source = tree[b"data-source"]
    assert isinstance(source, dict)
    assert {k: json.loads(v)["ID"] for k, v in source.items()} == SOURCE_IDS  # type: ignore[arg-type]
    packages = tree[b"debian 12"]
    assert isinstance(packages, dict)
    assert set(packages) == {b"glibc", b"openssl", b"apt", b"tzdata", b"base-files"}
    assert packages[b"glibc"] == {b"CVE-2026-90001": b'{"FixedVersion":"2.36-9+deb12u99"}'}
    assert set(tree[b"debian 13"]) == {b"glibc", b"openssl", b"tzdata"}  # type: ignore[arg-type]
    assert tree[b"debian 13"][b"glibc"] == {  # type: ignore[index]
        b"CVE-2026-90001": b'{"FixedVersion":"2.41-1"}',
        b"CVE-2026-90011": b'{"FixedVersion":"2.41-12+deb13u99"}',
    }
    alpine = tree[b"alpine 3.20"]
    assert isinstance(alpine, dict)
    assert set(alpine) == {b"openssl", b"busybox"}  # origins, not libcrypto3 / libssl3
    assert tree[b"go::The Go Vulnerability Database"] == {
        b"stdlib": {
            b"CVE-2026-90031": b'{"PatchedVersions":["1.23.0"],"VulnerableVersions":["<1.23.0"]}',
            b"CVE-2026-90032": b'{"PatchedVersions":["1.24.12","1.25.6"],'
            b'"VulnerableVersions":["<1.24.12",">=1.25.0, <1.25.6"]}',
        }
    }
    assert set(tree[b"pip::GitHub Security Advisory pip"]) == {b"six"}  # type: ignore[arg-type]
    assert set(tree[b"npm::GitHub Security Advisory npm"]) == {b"ms"}  # type: ignore[arg-type]
    vulns = tree[b"vulnerability"]
    assert isinstance(vulns, dict)
    glibc = json.loads(vulns[b"CVE-2026-90001"])  # type: ignore[arg-type]
    assert glibc["Severity"] == "CRITICAL"
    assert glibc["VendorSeverity"] == {"debian": 4}
    # One entry per id; each data source that lists it reads its severity under its ID.
    openssl = json.loads(vulns[b"CVE-2026-90002"])  # type: ignore[arg-type]
    assert openssl["VendorSeverity"] == {"alpine": 3, "debian": 3}
    stdlib = json.loads(vulns[b"CVE-2026-90031"])  # type: ignore[arg-type]
    assert (stdlib["Severity"], stdlib["VendorSeverity"]) == ("HIGH", {"govulndb": 3})
    metadata = json.loads((db_dir / "metadata.json").read_text())
    assert metadata["Version"] == 2
    assert set(metadata) == {"Version", "NextUpdate", "UpdatedAt", "DownloadedAt"}


def test_rewrite_is_skipped_when_content_unchanged(tmp_path: Path) -> None:
    db = write_fixture_db(DEFAULT_ADVISORIES, tmp_path) / "trivy.db"
    first = db.stat().st_ino, (tmp_path / "db" / "metadata.json").read_text()
    write_fixture_db(DEFAULT_ADVISORIES, tmp_path)
    assert (db.stat().st_ino, (tmp_path / "db" / "metadata.json").read_text()) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # no temp dirs left


def test_an_unchanged_db_past_its_next_update_gets_fresh_timestamps(tmp_path: Path) -> None:
    db = write_fixture_db(DEFAULT_ADVISORIES, tmp_path)
    metadata = db / "metadata.json"
    stale = {**json.loads(metadata.read_text()), "UpdatedAt": "2026-01-01T00:00:00.000000Z"}
    stale["NextUpdate"] = "2026-01-02T00:00:00.000000Z"
    metadata.write_text(json.dumps(stale))
    trivy_db = (db / "trivy.db").read_bytes()
    write_fixture_db(DEFAULT_ADVISORIES, tmp_path)
    fresh = json.loads(metadata.read_text())
    assert fresh["UpdatedAt"] > "2026-11-29" and fresh["NextUpdate"] > fresh["UpdatedAt"]
    assert (db / "trivy.db").read_bytes() == trivy_db  # the content is the same DB


def test_changed_content_is_rewritten(tmp_path: Path) -> None:
    write_fixture_db(DEFAULT_ADVISORIES, tmp_path)
    changed = tmp_path / "changed.yaml"
    changed.write_text(DEFAULT_ADVISORIES.read_text().replace("severity: LOW", "severity: HIGH"))
    db_dir = write_fixture_db(changed, tmp_path)
    vulns = boltdb.read(db_dir / "trivy.db")[b"vulnerability"]
    assert isinstance(vulns, dict)
    assert json.loads(vulns[b"CVE-2026-90004"])["Severity"] == "HIGH"  # type: ignore[arg-type]
    assert (db_dir / HASH_FILE).read_text().strip() != ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["changed.yaml", "db"]


def test_bad_input_leaves_previous_db_untouched(tmp_path: Path) -> None:
    db_dir = write_fixture_db(DEFAULT_ADVISORIES, tmp_path)
    before = {p.name: p.read_bytes() for p in db_dir.iterdir()}
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_ADVISORIES.read_text().replace("severity: LOW", "severity: SEVERE"))
    with pytest.raises(FixtureError):
        write_fixture_db(bad, tmp_path)
    assert {p.name: p.read_bytes() for p in db_dir.iterdir()} == before


GOOD_ENTRY = "      - {id: CVE-2026-10001, source_package: glibc, severity: LOW, title: t}\n"
HEAD = (
    "sources:\n  - data_source: {bucket: debian 12, id: debian, name: fixture}\n    advisories:\n"
)
GO_HEAD = (
    "  - data_source: {bucket: 'go::The Go Vulnerability Database', id: govulndb, name: g}\n"
    "    advisories:\n"
)
RANGE = ", vulnerable_versions: ['<1.23.0']"
GO_ENTRY = f"      - {{id: CVE-2026-10002, package: stdlib{RANGE}, severity: HIGH, title: t}}\n"
AT = r"sources\[0\]\.advisories"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            HEAD + GOOD_ENTRY + GOOD_ENTRY.replace("LOW", "SEVERE").replace("-1", "-2"),
            AT + r"\[1\]\.severity: Input should be 'CRITICAL', 'HIGH', 'MEDIUM', 'LOW'"
            r" or 'UNKNOWN' \(got 'SEVERE'\)",
        ),
        (
            HEAD + "      - {id: CVE-2026-10001, severity: LOW, title: t}\n",
            AT + r"\[0\]\.source_package: required key is missing \(OS data source 'debian 12'\)",
        ),
        (HEAD + GOOD_ENTRY.replace("t}", "t, cwe: 79}"), AT + r"\[0\]\.cwe: unknown key"),
        ("sources: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping of keys, got list"),
        (HEAD + GOOD_ENTRY + GOOD_ENTRY, AT + r"\[1\]: CVE-2026-10001 on glibc repeats"),
        (
            HEAD + GOOD_ENTRY + GOOD_ENTRY.replace("glibc", "apt").replace("LOW", "HIGH"),
            AT + r"\[1\]\.severity: CVE-2026-10001 is LOW elsewhere",
        ),
        (
            HEAD + GOOD_ENTRY.replace("CVE-2026-10001", "bad id"),
            AT + r"\[0\]\.id: String should",
        ),
        (
            HEAD + GOOD_ENTRY + GO_HEAD + GO_ENTRY.replace("10002", "10001"),
            r"sources\[1\]\.advisories\[0\]\.severity: CVE-2026-10001 is LOW elsewhere",
        ),
        (
            HEAD + GOOD_ENTRY.replace("glibc", "glibc, vulnerable_versions: ['<2']"),
            AT + r"\[0\]\.vulnerable_versions: not a key of an advisory of OS data source"
            r" 'debian 12'; allowed: id, source_package, fixed_version, severity, title",
        ),
        (
            HEAD + GOOD_ENTRY + GO_HEAD + GO_ENTRY.replace("package", "source_package"),
            r"sources\[1\]\.advisories\[0\]\.package: required key is missing"
            r" \(language data source 'go::The Go Vulnerability Database'\)",
        ),
        (
            HEAD + GOOD_ENTRY + GO_HEAD + GO_ENTRY.replace(RANGE, ""),
            r"sources\[1\]\.advisories\[0\]\.vulnerable_versions: required key is missing",
        ),
        (
            HEAD + GOOD_ENTRY + HEAD.removeprefix("sources:\n") + GOOD_ENTRY,
            r"sources\[1\]\.data_source\.bucket: 'debian 12' repeats sources\[0\]",
        ),
        (
            HEAD.replace("debian 12", "rubygems::GitHub Security Advisory RubyGems") + GOOD_ENTRY,
            r"sources\[0\]\.data_source\.bucket: String should match pattern",
        ),
    ],
)
def test_validation_errors_name_file_key_and_allowed(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "advisories.yaml"
    path.write_text(text)
    with pytest.raises(FixtureError, match=message) as caught:
        load_advisories(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "db").exists()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FixtureError, match=r"nope\.yaml: cannot read: No such file"):
        write_fixture_db(tmp_path / "nope.yaml", tmp_path)
