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


def test_default_fixture_buckets(tmp_path: Path) -> None:
    db_dir = write_fixture_db(DEFAULT_ADVISORIES, tmp_path)
    assert db_dir == tmp_path / "db"
    tree = boltdb.read(db_dir / "trivy.db")
    assert set(tree) == {b"data-source", b"debian 12", b"vulnerability"}
    source = tree[b"data-source"]
    assert isinstance(source, dict)
    assert json.loads(source[b"debian 12"])["ID"] == "debian"  # type: ignore[arg-type]
    packages = tree[b"debian 12"]
    assert isinstance(packages, dict)
    assert set(packages) == {b"glibc", b"openssl", b"apt", b"tzdata", b"base-files"}
    assert packages[b"glibc"] == {b"CVE-2026-90001": b'{"FixedVersion":"2.36-9+deb12u99"}'}
    vulns = tree[b"vulnerability"]
    assert isinstance(vulns, dict)
    glibc = json.loads(vulns[b"CVE-2026-90001"])  # type: ignore[arg-type]
    assert glibc["Severity"] == "CRITICAL"
    assert glibc["VendorSeverity"] == {"debian": 4}
    metadata = json.loads((db_dir / "metadata.json").read_text())
    assert metadata["Version"] == 2
    assert set(metadata) == {"Version", "NextUpdate", "UpdatedAt", "DownloadedAt"}


def test_rewrite_is_skipped_when_content_unchanged(tmp_path: Path) -> None:
    db = write_fixture_db(DEFAULT_ADVISORIES, tmp_path) / "trivy.db"
    first = db.stat().st_ino, (tmp_path / "db" / "metadata.json").read_text()
    write_fixture_db(DEFAULT_ADVISORIES, tmp_path)
    assert (db.stat().st_ino, (tmp_path / "db" / "metadata.json").read_text()) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["db"]  # no temp dirs left


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


GOOD_ENTRY = "  - {id: CVE-2026-10001, source_package: glibc, severity: LOW, title: t}\n"
HEAD = "data_source: {bucket: debian 12, id: debian, name: fixture}\nadvisories:\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            HEAD + GOOD_ENTRY + GOOD_ENTRY.replace("LOW", "SEVERE").replace("-1", "-2"),
            r"advisories\[1\]\.severity: Input should be 'CRITICAL', 'HIGH', 'MEDIUM', 'LOW'"
            r" or 'UNKNOWN' \(got 'SEVERE'\)",
        ),
        (
            HEAD + "  - {id: CVE-2026-10001, severity: LOW, title: t}\n",
            r"advisories\[0\]\.source_package: required key is missing",
        ),
        (HEAD + GOOD_ENTRY.replace("t}", "t, cwe: 79}"), r"advisories\[0\]\.cwe: unknown key"),
        ("data_source: [unclosed\n", "not valid YAML"),
        ("- just\n- a list\n", "top level must be a mapping of keys, got list"),
        (HEAD + GOOD_ENTRY + GOOD_ENTRY, r"advisories\[1\]: CVE-2026-10001 on glibc repeats"),
        (
            HEAD + GOOD_ENTRY + GOOD_ENTRY.replace("glibc", "apt").replace("LOW", "HIGH"),
            r"advisories\[1\]\.severity: CVE-2026-10001 is LOW elsewhere",
        ),
        (
            HEAD + GOOD_ENTRY.replace("CVE-2026-10001", "bad id"),
            r"advisories\[0\]\.id: String should",
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
