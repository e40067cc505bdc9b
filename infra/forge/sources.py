"""Reading an apt sources file (deb822 ``.sources`` or one-line ``.list``): checked early,
and rewritten for another Debian suite on the same mirrors (``for_suite``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.errors import InfraError

# The Debian release of the host's apt sources; other suites reuse its mirrors.
HOST_SUITE = "bookworm"


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


def check_sources(path: Path, suite: str = HOST_SUITE) -> list[SourceEntry]:
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
    """Sources file ``path`` for another Debian release on the same mirrors (the host's
    mirror serves every suite, and no mirror host may be written into the repository):
    ``host_suite`` and its pockets renamed to ``suite`` (``bookworm-security`` ->
    ``trixie-security``), entries for other suites (third-party repositories, deb-src)
    left out. Written to ``dest`` (a folder) as ``<suite>.sources`` or ``.list``; returns
    the file. ``InfraError`` when ``path`` has no ``deb`` entry for ``host_suite``.
    """
    check_sources(path, host_suite)
    text = path.read_text()
    if suite != host_suite:
        text = rewrite_suite(text, path.suffix == ".sources", host_suite, suite)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f"{suite}{path.suffix}"
    out.write_text(text + "\n")
    return out


def rewrite_suite(text: str, deb822: bool, host_suite: str, suite: str) -> str:
    """``text`` (a sources file) with only the entries of ``host_suite``, renamed to ``suite``."""
    return _deb822(text, suite, host_suite) if deb822 else _one_line(text, suite, host_suite)


def _rename(token: str, suite: str, host_suite: str) -> str | None:
    base, dash, pocket = token.partition("-")
    return suite + dash + pocket if base == host_suite else None


def _deb822(text: str, suite: str, host_suite: str) -> str:
    kept = []
    for stanza in text.split("\n\n"):
        lines, renamed = [], False
        for line in stanza.splitlines():
            key, colon, value = line.partition(":")
            if colon and key.strip().lower() == "suites":
                names = [_rename(t, suite, host_suite) for t in value.split()]
                line = "Suites: " + " ".join(n for n in names if n)
                renamed = any(names)
            lines.append(line)
        if renamed:
            kept.append("\n".join(lines))
    return "\n\n".join(kept) + "\n" if kept else ""


def _one_line(text: str, suite: str, host_suite: str) -> str:
    kept = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if not words or words[0] != "deb":
            continue
        # deb [options] uri suite components...: the suite follows the URI.
        at = 1
        if words[1].startswith("["):
            while not words[at].endswith("]"):
                at += 1
            at += 1
        renamed = _rename(words[at + 1], suite, host_suite) if len(words) > at + 1 else None
        if renamed:
            kept.append(" ".join([*words[: at + 1], renamed, *words[at + 2 :]]))
    return "\n".join(kept) + "\n" if kept else ""
