"""A private apt view of the host's sources: resolve package versions, download .debs.

It keeps its own lists and cache under the forge cache, so the host's apt state is
neither needed nor touched.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterable
from pathlib import Path

from infra.errors import InfraError
from tasks.programs import find_program

_INST = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ")


class AptIndex:
    """apt-get/apt-cache over ``sources`` with state under ``root``."""

    def __init__(self, sources: Path, root: Path) -> None:
        self.sources = sources
        self.root = root
        self._required: list[str] | None = None
        # Recipes forged at once share a suite's view; apt's own caches under ``root``
        # are not written with concurrent callers in mind.
        self._lock = threading.Lock()

    def options(self) -> list[str]:
        """The ``-o`` options that point apt at our private state."""
        settings = {
            "Dir::Etc::SourceList": "/dev/null",
            "Dir::Etc::SourceParts": str(self.root / "sources.d"),
            "Dir::Etc::Preferences": "/dev/null",
            "Dir::Etc::PreferencesParts": "/dev/null",
            "Dir::State::Lists": str(self.root / "lists"),
            "Dir::State::status": str(self.root / "status"),
            "Dir::Cache": str(self.root / "cache"),
            # Keep apt's binary cache of the lists between calls (a container image's
            # apt.conf.d/docker-clean turns it off): each call would parse every list again.
            "Dir::Cache::pkgcache": "pkgcache.bin",
            "Dir::Cache::srcpkgcache": "srcpkgcache.bin",
            "Acquire::GzipIndexes": "false",
            "Acquire::Languages": "none",
            "APT::Sandbox::User": "root",
            "APT::Install-Recommends": "false",
        }
        return [arg for key, value in settings.items() for arg in ("-o", f"{key}={value}")]

    def update(self) -> None:
        """Refresh the package lists (a few seconds when nothing changed)."""
        for sub in ("lists/partial", "cache/archives/partial", "sources.d"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "status").touch()  # empty: resolve as for an empty root
        parts = self.root / "sources.d"
        for old in parts.iterdir():
            old.unlink()
        shutil.copyfile(self.sources, parts / f"host{self.sources.suffix}")
        self._run(["apt-get", "update", "-q"])
        self._required = None
        current = self._answers()
        for old in current.parent.glob("*"):
            if old != current:
                shutil.rmtree(old, ignore_errors=True)  # another forge may be clearing it too

    def required(self) -> list[str]:
        """Packages of Priority required (what mmdebstrap's minbase starts from)."""
        if self._required is None:
            self._required = self._scan_required()
        return self._required

    def _scan_required(self) -> list[str]:
        names: set[str] = set()
        for packages in (self.root / "lists").glob("*_Packages"):
            text = packages.read_text(errors="replace")
            for stanza in text.split("\n\n"):
                if "\nPriority: required" in stanza and stanza.startswith("Package: "):
                    names.add(stanza[9 : stanza.index("\n")].strip())
        return sorted(names)

    def resolve(self, packages: Iterable[str]) -> dict[str, str]:
        """The full set (name -> version) apt installs for ``packages`` into an empty root."""
        out = self._query(["apt-get", "install", "-s", "-q", *sorted(set(packages))])
        resolved = {m[1]: m[2] for m in map(_INST.match, out.splitlines()) if m}
        if not resolved:
            raise InfraError(f"apt-get -s install resolved nothing for {' '.join(packages)}")
        return dict(sorted(resolved.items()))

    def candidates(self, packages: Iterable[str]) -> dict[str, str]:
        """The candidate version of each package, without dependencies."""
        names = sorted(set(packages))
        out = self._query(["apt-cache", "show", "--no-all-versions", *names])
        found: dict[str, str] = {}
        for stanza in out.split("\n\n"):
            fields = dict(line.split(": ", 1) for line in stanza.splitlines() if ": " in line[:40])
            if "Package" in fields and "Version" in fields:
                found[fields["Package"]] = fields["Version"]
        missing = [n for n in names if n not in found]
        if missing:
            raise InfraError(f"apt: no candidate for {', '.join(missing)} in {self.sources}")
        return found

    def download(self, pinned: dict[str, str], dest: Path) -> dict[str, Path]:
        """Download exactly ``name=version`` .debs into ``dest``; name -> file."""
        dest.mkdir(parents=True, exist_ok=True)
        self._run(["apt-get", "download", "-q", *(f"{n}={v}" for n, v in pinned.items())], dest)
        files = {p.name.split("_", 1)[0]: p for p in dest.glob("*.deb")}
        missing = [n for n in pinned if n not in files]
        if missing:
            raise InfraError(f"apt-get download did not fetch {', '.join(missing)}")
        return files

    def _query(self, argv: list[str]) -> str:
        """``argv``'s output, kept per state of the lists: apt takes seconds to answer
        (it plans a whole install), and the answer only changes when the lists do."""
        answers = self._answers()
        kept = answers / hashlib.sha256("\0".join(argv).encode()).hexdigest()
        if kept.exists():
            return kept.read_text()
        out = self._run(argv)
        answers.mkdir(parents=True, exist_ok=True)
        partial = kept.with_suffix(f".{os.getpid()}-{threading.get_ident()}")
        partial.write_text(out)
        partial.replace(kept)  # whole or absent, also when two forges ask at once
        return out

    def _answers(self) -> Path:
        """The folder of kept answers for the lists as they are now (names, sizes, times)."""
        state = hashlib.sha256()
        for path in sorted((self.root / "lists").glob("*_*")):
            info = path.stat()
            state.update(f"{path.name} {info.st_size} {info.st_mtime_ns}\n".encode())
        return self.root / "answers" / state.hexdigest()[:16]

    def _run(self, argv: list[str], cwd: Path | None = None) -> str:
        full = [find_program(argv[0]), *self.options(), *argv[1:]]
        with self._lock:
            proc = subprocess.run(full, capture_output=True, text=True, cwd=cwd)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise InfraError(f"{argv[0]} {argv[1]} failed: {last}")
        return proc.stdout
