"""Reading an apt sources file (deb822 ``.sources`` or one-line ``.list``) to check it early."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError


@dataclass(frozen=True)
class SourceEntry:
    """One ``deb`` source: where from, which suites and components."""

    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_sources(text: str, deb822: bool) -> list[SourceEntry]:
    """The enabled binary (``deb``) entries of a sources file's text."""
    return _parse_deb822(text) if deb822 else _parse_one_line(text)


def _parse_deb822(text: str) -> list[SourceEntry]:
    entries = []
    for stanza in _stanzas(text):
        if "deb" not in stanza.get("types", "").split():
            continue
        if stanza.get("enabled", "yes").lower() == "no":
            continue
        entries.append(
            SourceEntry(
                uris=tuple(stanza.get("uris", "").split()),
                suites=tuple(stanza.get("suites", "").split()),
                components=tuple(stanza.get("components", "").split()),
            )
        )
    return entries


def _stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    current: dict[str, str] = {}
    key = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith("#"):
            continue
        if not line.strip():
            if current:
                stanzas.append(current)
            current, key = {}, ""
        elif line[0].isspace() and key:  # continuation of a multi-line field
            current[key] += " " + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            key = key.strip().lower()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def _parse_one_line(text: str) -> list[SourceEntry]:
    entries = []
    for raw in text.splitlines():
        words = raw.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        words = words[1:]
        if words and words[0].startswith("["):  # options such as [signed-by=...]
            while words and not words[0].endswith("]"):
                words = words[1:]
            words = words[1:]
        if len(words) >= 2:
            entries.append(SourceEntry((words[0],), (words[1],), tuple(words[2:])))
    return entries


def check_sources(path: Path, suite: str = "bookworm") -> list[SourceEntry]:
    """The entries of ``path``; InfraError unless it has a ``deb`` entry for ``suite``."""
    if path.suffix not in (".sources", ".list"):
        raise InfraError(f"apt sources file {path}: name must end in .sources or .list")
    try:
        text = path.read_text()
    except OSError as exc:
        raise InfraError(f"apt sources file {path}: cannot read: {exc.strerror}") from exc
    entries = parse_sources(text, deb822=path.suffix == ".sources")
    if not any(suite in e.suites and e.uris for e in entries):
        raise InfraError(f"apt sources file {path}: no enabled 'deb' entry for suite {suite}")
    return entries


def for_suite(path: Path, host_suite: str, suite: str, dest: Path) -> Path:
    """A copy of sources file ``path`` that names ``suite`` wherever it names ``host_suite``
    (``bookworm-security`` -> ``trixie-security``): the same mirrors, another Debian
    release. Written to ``dest`` (a folder), keeping the file's format; returns the file.
    """
    check_sources(path, host_suite)
    text = path.read_text()
    if suite != host_suite:
        text = "\n".join(_rename_suite(line, host_suite, suite) for line in text.splitlines())
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{suite}{path.suffix}"
    out.write_text(text + "\n")
    return out


def _rename_suite(line: str, old: str, new: str) -> str:
    stripped = line.lstrip()
    if stripped.startswith("#"):
        return line
    if stripped.lower().startswith("suites:"):
        key, _, value = line.partition(":")
        return f"{key}: " + " ".join(_rename_word(w, old, new) for w in value.split())
    words = line.split()
    if words and words[0] == "deb":
        # deb [options] uri suite components...: the suite follows the uri
        rest = words[1:]
        options = []
        if rest and rest[0].startswith("["):
            while rest and not rest[0].endswith("]"):
                options.append(rest.pop(0))
            options.append(rest.pop(0))
        if len(rest) >= 2:
            rest[1] = _rename_word(rest[1], old, new)
        return " ".join(["deb", *options, *rest])
    return line


def _rename_word(word: str, old: str, new: str) -> str:
    if word == old or word.startswith(old + "-"):
        return new + word[len(old) :]
    return word
