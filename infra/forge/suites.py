"""The host's apt sources file, rewritten for another Debian suite.

The host's mirror serves every suite (bookworm's sources file reaches trixie too), and
no mirror host may be written into the repository, so a recipe that needs another
suite's packages takes the host's file and swaps the suite names: ``bookworm`` ->
``trixie``, ``bookworm-updates`` -> ``trixie-updates``, ``bookworm-security`` ->
``trixie-security``. Entries for other suites (third-party repositories) are left out.
"""

from __future__ import annotations

from pathlib import Path

from infra.errors import InfraError

HOST_SUITE = "bookworm"


def rewrite_suite(text: str, deb822: bool, suite: str, host_suite: str = HOST_SUITE) -> str:
    """``text`` (a sources file) with ``host_suite`` and its pockets renamed to ``suite``."""
    return _deb822(text, suite, host_suite) if deb822 else _one_line(text, suite, host_suite)


def suite_sources(host: Path, suite: str, dest: Path, host_suite: str = HOST_SUITE) -> Path:
    """Write ``host`` rewritten for ``suite`` to ``dest`` (same suffix); ``dest``'s path.

    InfraError when the host file has no entry for ``host_suite`` to rewrite.
    """
    try:
        text = host.read_text()
    except OSError as exc:
        raise InfraError(f"apt sources file {host}: cannot read: {exc.strerror}") from exc
    rewritten = rewrite_suite(text, host.suffix == ".sources", suite, host_suite)
    if not rewritten.strip():
        raise InfraError(f"apt sources file {host}: no entry for suite {host_suite} to reuse")
    dest = dest.with_suffix(host.suffix)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(rewritten)
    return dest


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
