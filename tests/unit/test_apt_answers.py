"""AptIndex keeps apt's answers while its lists stay as they are, on a real apt over a
local flat repository (a Packages file on disk, no network)."""

from __future__ import annotations

from pathlib import Path

from infra.forge.apt import AptIndex


def stanza(name: str, version: str, depends: str = "") -> str:
    fields = [
        f"Package: {name}",
        f"Version: {version}",
        "Architecture: all",
        "Priority: optional",
        f"Filename: ./{name}_{version}_all.deb",
        "Size: 1",
    ]
    if depends:
        fields.append(f"Depends: {depends}")
    return "\n".join(fields) + "\n"


def repository(root: Path, *stanzas: str) -> Path:
    """A flat repository in ``root/repo`` and a deb822 sources file naming it."""
    repo = root / "repo"
    repo.mkdir(exist_ok=True)
    (repo / "Packages").write_text("\n".join(stanzas))
    sources = root / "local.sources"
    sources.write_text(f"Types: deb\nURIs: file:{repo}\nSuites: ./\nTrusted: yes\n")
    return sources


def test_answers_are_kept_until_the_lists_change(tmp_path: Path) -> None:
    sources = repository(tmp_path, stanza("app", "1.0", "libfoo"), stanza("libfoo", "2.0"))
    apt = AptIndex(sources, tmp_path / "apt")
    apt.update()
    assert apt.resolve(["app"]) == {"app": "1.0", "libfoo": "2.0"}
    assert apt.candidates(["libfoo"]) == {"libfoo": "2.0"}
    [answers] = (tmp_path / "apt" / "answers").iterdir()
    assert len(list(answers.iterdir())) == 2  # one per question, nothing half-written

    # A kept answer is what the next call reads: apt is not asked again.
    [kept] = [p for p in answers.iterdir() if "Inst app" in p.read_text()]
    kept.write_text(kept.read_text().replace("libfoo (2.0", "libfoo (2.0-kept"))
    assert apt.resolve(["app"]) == {"app": "1.0", "libfoo": "2.0-kept"}

    # New lists (the mirror moved on): apt answers again, the old answers are dropped.
    repository(tmp_path, stanza("app", "1.1", "libfoo"), stanza("libfoo", "2.1"))
    apt.update()
    assert apt.resolve(["app"]) == {"app": "1.1", "libfoo": "2.1"}
    assert [p.name for p in (tmp_path / "apt" / "answers").iterdir()] != [answers.name]
    assert len(list((tmp_path / "apt" / "answers").iterdir())) == 1
