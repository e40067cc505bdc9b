"""docs/dataset.md documents every column of every table, with its exact type."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from tasks.dataset.schema import SCHEMAS

DOC = Path(__file__).resolve().parents[2] / "docs" / "dataset.md"
SECTION = re.compile(r"^## `(?P<table>[a-z_]+)`\s*$")
ROW = re.compile(r"^\| `(?P<column>[a-z_]+)` \| (?P<type>[^|]+?) \|")


def documented_columns(text: str) -> dict[str, dict[str, str]]:
    """table -> column -> documented type, from '## `table`' sections and their rows."""
    tables: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if heading := SECTION.match(line):
            current = tables.setdefault(heading["table"], {})
        elif line.startswith("## "):
            current = None
        elif current is not None and (row := ROW.match(line)):
            assert row["column"] not in current, f"{row['column']} documented twice"
            current[row["column"]] = row["type"].strip()
    return tables


def type_text(field: pa.Field) -> str:
    return str(field.type) + ("" if field.nullable else " not null")


@pytest.fixture(scope="module")
def documented() -> dict[str, dict[str, str]]:
    return documented_columns(DOC.read_text())


def test_every_table_has_a_section(documented: dict[str, dict[str, str]]) -> None:
    assert sorted(documented) == sorted(SCHEMAS)


@pytest.mark.parametrize("table", sorted(SCHEMAS))
def test_columns_match_schema(table: str, documented: dict[str, dict[str, str]]) -> None:
    schema = SCHEMAS[table]
    in_doc = documented.get(table, {})
    missing = [name for name in schema.names if name not in in_doc]
    extra = [name for name in in_doc if name not in schema.names]
    assert not missing, f"{table}: columns missing from docs/dataset.md: {missing}"
    assert not extra, f"{table}: documented but not in the schema: {extra}"
    assert list(in_doc) == schema.names, f"{table}: document columns in schema order"
    wrong = {
        f.name: (in_doc[f.name], type_text(f)) for f in schema if in_doc[f.name] != type_text(f)
    }
    assert not wrong, f"{table}: documented type != schema type: {wrong}"


def test_parser_sees_a_missing_column() -> None:
    # The check above must be able to fail: drop one row and the parser notices.
    text = DOC.read_text().replace("| `layers` | int32 | count | number of image layers |\n", "")
    assert "layers" not in documented_columns(text)["results"]
    assert "layers" in documented_columns(DOC.read_text())["results"]


def meanings(text: str, table: str) -> dict[str, str]:
    """column -> documented meaning (the last cell of its row) in ``table``'s section."""
    section = text.split(f"## `{table}`", 1)[1].split("\n## ", 1)[0]
    return {
        row["column"]: line.rstrip(" |").rsplit(" | ", 1)[1]
        for line in section.splitlines()
        if (row := ROW.match(line))
    }


def test_setuid_columns_say_what_inspect_counts() -> None:
    # inspect.privileged_files counts regular files: setuid bit / setuid-or-setgid bit
    # (tests/unit/test_inspect_layers.py and tests/integration/test_inspect_privileged.py).
    meaning = meanings(DOC.read_text(), "results")
    assert meaning["setuid_files"] == "regular files with the setuid bit"
    assert "setgid" not in meaning["setuid_files"]
    assert meaning["setuid_or_setgid_files"].startswith(
        "regular files with the setuid or the setgid bit (a file with both counts once)"
    )
