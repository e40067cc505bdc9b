"""Reading apt sources files: deb822 and one-line formats, and the early check."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.errors import InfraError
from infra.forge.sources import (
    SourceEntry,
    check_sources,
    for_suite,
    parse_sources,
    rewrite_suite,
)

DEB822 = """\
# the main archive
Types: deb deb-src
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By:
 -----BEGIN PGP PUBLIC KEY BLOCK-----
 .
 -----END PGP PUBLIC KEY BLOCK-----

Types: deb
Enabled: no
URIs: http://mirror.invalid/other
Suites: trixie
Components: main

Types: deb-src
URIs: http://mirror.invalid/src
Suites: sid
Components: main
"""

ONE_LINE = """\
deb http://mirror.invalid/debian bookworm main contrib
# deb http://mirror.invalid/debian trixie main
deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.invalid/x bookworm-updates main
deb-src http://mirror.invalid/debian bookworm main
"""


HOST_DEB822 = """\
Types: deb
# a comment with: a colon
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://other.invalid/repo
Suites: nodistro
Components: main
"""


def test_deb822_keeps_enabled_binary_stanzas() -> None:
    assert parse_sources(DEB822, deb822=True) == [
        SourceEntry(
            ("http://mirror.invalid/debian",), ("bookworm", "bookworm-updates"), ("main", "contrib")
        ),
        SourceEntry(("http://mirror.invalid/debian-security",), ("bookworm-security",), ("main",)),
    ]


def test_one_line_format_with_options() -> None:
    assert parse_sources(ONE_LINE, deb822=False) == [
        SourceEntry(("http://mirror.invalid/debian",), ("bookworm",), ("main", "contrib")),
        SourceEntry(("http://mirror.invalid/x",), ("bookworm-updates",), ("main",)),
    ]


def test_check_sources_accepts_a_bookworm_file(tmp_path: Path) -> None:
    path = tmp_path / "host.sources"
    path.write_text(DEB822)
    assert len(check_sources(path)) == 2


def test_missing_file_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match=r"missing\.sources: cannot read: No such file"):
        check_sources(tmp_path / "missing.sources")


def test_file_without_the_suite_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "trixie.list"
    path.write_text("deb http://mirror.invalid/debian trixie main\n")
    with pytest.raises(InfraError, match="no enabled 'deb' entry for suite bookworm"):
        check_sources(path)


def test_wrong_extension_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "sources.txt"
    path.write_text(ONE_LINE)
    with pytest.raises(InfraError, match=r"must end in \.sources or \.list"):
        check_sources(path)


def test_for_suite_renames_the_host_suite_in_deb822(tmp_path: Path) -> None:
    path = tmp_path / "host.sources"
    path.write_text(DEB822)
    out = for_suite(path, "bookworm", "trixie", tmp_path / "out")
    assert out == tmp_path / "out" / "trixie.sources"
    assert parse_sources(out.read_text(), deb822=True) == [
        SourceEntry(("http://mirror.invalid/debian",), ("trixie", "trixie-updates"),
                    ("main", "contrib")),
        SourceEntry(("http://mirror.invalid/debian-security",), ("trixie-security",), ("main",)),
    ]  # fmt: skip
    assert "# the main archive" in out.read_text()
    assert "-----BEGIN PGP PUBLIC KEY BLOCK-----" in out.read_text()


def test_for_suite_renames_one_line_entries(tmp_path: Path) -> None:
    path = tmp_path / "host.list"
    path.write_text(ONE_LINE)
    out = for_suite(path, "bookworm", "trixie", tmp_path)
    # Comments and deb-src entries are left out, as other suites' entries are.
    assert [line for line in out.read_text().splitlines() if line] == [
        "deb http://mirror.invalid/debian trixie main contrib",
        "deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.invalid/x "
        "trixie-updates main",
    ]


def test_for_the_host_suite_is_a_plain_copy(tmp_path: Path) -> None:
    path = tmp_path / "host.sources"
    path.write_text(DEB822)
    assert for_suite(path, "bookworm", "bookworm", tmp_path / "o").read_text() == DEB822 + "\n"


def test_deb822_suites_are_renamed_and_other_repositories_dropped() -> None:
    assert rewrite_suite(HOST_DEB822, deb822=True, host_suite="bookworm", suite="trixie") == (
        "Types: deb\n"
        "# a comment with: a colon\n"
        "URIs: http://mirror.invalid/debian\n"
        "Suites: trixie trixie-updates\n"
        "Components: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        "Types: deb\n"
        "URIs: http://mirror.invalid/debian-security\n"
        "Suites: trixie-security\n"
        "Components: main\n"
    )


def test_one_line_suites_are_renamed() -> None:
    text = (
        "deb [signed-by=/k.gpg arch=amd64] http://mirror.invalid/debian bookworm main\n"
        "# deb http://mirror.invalid/debian bookworm contrib\n"
        "deb http://mirror.invalid/debian-security bookworm-security main contrib\n"
        "deb http://other.invalid/repo nodistro main\n"
    )
    assert rewrite_suite(text, deb822=False, host_suite="bookworm", suite="trixie") == (
        "deb [signed-by=/k.gpg arch=amd64] http://mirror.invalid/debian trixie main\n"
        "deb http://mirror.invalid/debian-security trixie-security main contrib\n"
    )


def test_for_suite_writes_into_the_folder_with_the_host_suffix(tmp_path: Path) -> None:
    host = tmp_path / "debian.sources"
    host.write_text(HOST_DEB822)
    written = for_suite(host, "bookworm", "trixie", tmp_path / "apt")
    assert written == tmp_path / "apt" / "trixie.sources"
    assert "Suites: trixie trixie-updates\n" in written.read_text()


def test_for_suite_without_the_host_suite_is_an_error(tmp_path: Path) -> None:
    host = tmp_path / "other.list"
    host.write_text("deb http://other.invalid/repo nodistro main\n")
    with pytest.raises(InfraError, match=r"other\.list: no enabled 'deb' entry for suite bookworm"):
        for_suite(host, "bookworm", "trixie", tmp_path / "out")
    assert not (tmp_path / "out").exists()
