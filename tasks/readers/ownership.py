"""Which package owns each file of an image, read from the package databases in it.

Three databases list the files of their packages:

- dpkg (Debian images): ``/var/lib/dpkg/info/<package>[:<arch>].list``, one absolute path
  a line, with the diversions of ``/var/lib/dpkg/diversions`` (a file another package
  diverts lives under its diverted name);
- distroless (no dpkg): ``/var/lib/dpkg/status.d/<package>.md5sums``, ``<md5>  <path>``
  a line, paths relative to the root (conffiles are not in them, as in any .deb);
- apk (Alpine): ``/lib/apk/db/installed``, records with the package in ``P:``, a folder
  in ``F:`` and the files of that folder in ``R:``.

The paths a database lists are the ones its package manager wrote, so they are resolved
through the image's symlinks before they are compared with the image's files: on merged
/usr, dpkg's ``/lib/x86_64-linux-gnu/libc.so.6`` is the file
``usr/lib/x86_64-linux-gnu/libc.so.6``.

Pure functions over the databases' contents: callers read the files (``is_database_file``
says which) and resolve paths (``tasks.readers.layers`` does both, from an image's
layers). Standard library only: the layer reader also runs inside the analysis
container on a build host.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Mapping

# Paths relative to the image's root, as the layer reader keys them.
DPKG_INFO = "var/lib/dpkg/info/"
DPKG_DIVERSIONS = "var/lib/dpkg/diversions"
DISTROLESS_STATUS = "var/lib/dpkg/status.d/"
APK_INSTALLED = "lib/apk/db/installed"
# The databases' own folders: their files are the package manager's records, read by
# every scanner, and never count as files no package owns.
DATABASE_FOLDERS = ("var/lib/dpkg/", "lib/apk/db/")
# A database file larger than this is not read (its packages' files count as unowned):
# an image is untrusted, and real ones are far smaller (the 206 dpkg lists of the golang
# builder are 0.7 MB together).
MAX_DATABASE_BYTES = 64 << 20

# A path as listed -> the image's own path (relative, directories' symlinks followed),
# None when no such file is in the image.
Resolver = Callable[[str], str | None]


def is_database_file(path: str) -> bool:
    """True for a package database file that lists packages' files (``path`` relative)."""
    if path.startswith(DPKG_INFO):
        return path.endswith(".list") and "/" not in path[len(DPKG_INFO) :]
    if path.startswith(DISTROLESS_STATUS):
        return path.endswith(".md5sums") and "/" not in path[len(DISTROLESS_STATUS) :]
    return path in (DPKG_DIVERSIONS, APK_INSTALLED)


def in_database(path: str) -> bool:
    """True for a file of a package database itself (``path`` relative, resolved)."""
    return path.startswith(DATABASE_FOLDERS)


def listed_files(databases: Mapping[str, str]) -> dict[str, str]:
    """Absolute path as listed -> package, from the database files (path -> text) that
    ``is_database_file`` picks. A path two packages list keeps the first one's name."""
    diversions = _diversions(databases.get(DPKG_DIVERSIONS, ""))
    listed: dict[str, str] = {}

    def add(package: str, paths: Iterable[str]) -> None:
        for path in paths:
            diverted, by = diversions.get(path, (path, package))
            listed.setdefault(path if by == package else diverted, package)

    for path, text in sorted(databases.items()):
        name = posixpath.basename(path)
        if path.startswith(DPKG_INFO):
            add(name.removesuffix(".list").split(":")[0], _lines(text))
        elif path.startswith(DISTROLESS_STATUS):
            sums = (line.split(maxsplit=1) for line in _lines(text))
            add(name.removesuffix(".md5sums"), (f"/{s[1].strip()}" for s in sums if len(s) == 2))
        elif path == APK_INSTALLED:
            for package, files in _apk_packages(text):
                add(package, files)
    return listed


def owners(databases: Mapping[str, str], resolve: Resolver) -> dict[str, str]:
    """The image's path (relative, as ``resolve`` gives it) -> its package, for every
    file the databases list that is in the image."""
    found: dict[str, str] = {}
    for listed, package in listed_files(databases).items():
        path = resolve(listed)
        if path:
            found.setdefault(path, package)
    return found


def unowned_files(regular_files: Iterable[str], owned: Mapping[str, str]) -> list[str]:
    """The regular files (relative paths) no package owns, the databases' own left out."""
    return sorted(p for p in regular_files if p not in owned and not in_database(p))


def _lines(text: str) -> list[str]:
    # dpkg's lists start with "/.", the root, which is no file.
    return [line for line in text.splitlines() if line.strip() and line != "/."]


def _apk_packages(text: str) -> Iterable[tuple[str, list[str]]]:
    """(package, absolute paths of its files) per record of apk's installed database."""
    for record in text.split("\n\n"):
        package, folder, files = "", "", []
        for line in record.splitlines():
            key, _, value = line.partition(":")
            if key == "P":
                package = value
            elif key == "F":
                folder = value
            elif key == "R":
                files.append(f"/{posixpath.join(folder, value)}")
        if package:
            yield package, files


def _diversions(text: str) -> dict[str, tuple[str, str]]:
    """dpkg's diversions: path -> (its diverted name, the package diverting it). Every
    other package's file of that path lives under the diverted name (``:`` diverts for
    the local admin, so every package's)."""
    lines = _lines(text)
    triples = zip(lines[0::3], lines[1::3], lines[2::3], strict=False)
    return {original: (diverted, by) for original, diverted, by in triples}
