"""What lies next to the data and is not data: skipped with a note, never read, never a crash.

Zips made on a Mac carry a ``__MACOSX/`` folder and ``._name`` AppleDouble files (resource forks: binary, with
the name of a real file); folders carry hidden files (``.DS_Store``, ``.git/``) and Windows' ``Thumbs.db`` /
``desktop.ini``. Every format that walks folders asks :func:`junk_reason` about each entry and records the
skips in a :class:`Skips`, which puts one ``file.skipped`` info note per reason in the report (how many, and
the first).

A file name that is not valid UTF-8 (Latin-1 bytes from a Windows zip: ``caf\\xe9.png``) cannot be written into
a COCO file or matched in a project: :meth:`Skips.check_name` collects them and :meth:`Skips.flush` raises
one :class:`~prelabel.errors.ReadError` naming them (their bytes escaped) with the command that renames them.

Example:
    >>> from prelabel.report import Report
    >>> [junk_reason(n) for n in ("__MACOSX", "._a.jpg", ".DS_Store", "Thumbs.db", "a.jpg")]
    ['macOS zip metadata folder', 'macOS AppleDouble file (resource fork)', 'hidden', 'Windows folder metadata', None]
    >>> s = Skips()
    >>> s.add("data/._a.jpg", junk_reason("._a.jpg") or "")
    >>> s.add("data/._b.txt", junk_reason("._b.txt") or "")
    >>> r = Report()
    >>> s.flush(r, "data")
    >>> [(d.code, d.message) for d in r.diagnostics]
    [('file.skipped', '2 macOS AppleDouble file(s) (resource fork) skipped (first: ._a.jpg)')]
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .errors import ReadError
from .report import Report

__all__ = ["Skips", "first_file", "is_valid_name", "junk_reason", "shown_name", "walk_files"]

_SYSTEM = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db"})
_SYSTEM_AS_WRITTEN = frozenset({"Thumbs.db", "thumbs.db", "desktop.ini", "Desktop.ini", "ehthumbs.db"})


def junk_reason(name: str) -> str | None:
    """Why the folder entry ``name`` (a file or folder name, not a path) is not data, or None when it may be."""
    if name == "__MACOSX":
        return "macOS zip metadata folder"
    if name.startswith("._"):
        return "macOS AppleDouble file (resource fork)"
    if name.startswith("."):
        return "hidden"
    if name.lower() in _SYSTEM:
        return "Windows folder metadata"
    return None


def first_file(folder: Path, suffix: str, *, depth: int) -> Path | None:
    """The first file ending in ``suffix`` (any case) under ``folder`` in sorted order, junk skipped, looking at
    most ``depth`` folders down (what a format's detector looks at); None when there is none or the folder
    cannot be listed.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b/x.XML", "a/._y.xml", "c.txt"):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     _ = (root / name).write_text("")
    >>> first_file(root, ".xml", depth=1).relative_to(root).as_posix(), first_file(root, ".xml", depth=0)
    ('b/x.XML', None)
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return None
    subdirs = []
    for e in entries:
        if junk_reason(e.name) is not None:
            continue
        if e.name.lower().endswith(suffix) and e.is_file():
            return Path(e.path)
        if e.is_dir():
            subdirs.append(e.path)
    for sub in subdirs if depth > 0 else []:
        found = first_file(Path(sub), suffix, depth=depth - 1)
        if found is not None:
            return found
    return None


def walk_files(root: Path, suffix: str, skips: Skips) -> Iterator[tuple[str, str]]:
    """(path, posix path relative to ``root``) of each file ending in ``suffix`` (lower case; the name's case
    does not matter) under ``root``, as the folders are walked (not sorted); the junk skipped and the names that
    are not UTF-8 go to ``skips``.

    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("b/x.XML", "a/._y.xml", "c.xml", "d.txt"):
    ...     (root / name).parent.mkdir(exist_ok=True)
    ...     _ = (root / name).write_text("")
    >>> skips = Skips()
    >>> sorted(rel for _, rel in walk_files(root, ".xml", skips)), list(skips.by_reason)
    (['b/x.XML', 'c.xml'], ['macOS AppleDouble file (resource fork)'])
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if skips.keep(dirpath, d)]
        reldir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        prefix = "" if reldir == "." else reldir + "/"
        for fn in filenames:
            if fn.lower().endswith(suffix) and skips.keep(dirpath, fn):
                yield os.path.join(dirpath, fn), prefix + fn


def is_valid_name(name: str) -> bool:
    """False for a name that came off the disk with bytes that are not UTF-8 (Python keeps them as surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown_name(path: str) -> str:
    """A path printable in any terminal: bytes that are not UTF-8 written as ``\\xe9``."""
    raw = os.fsencode(path)
    return raw.decode("utf-8", errors="backslashreplace")


class Skips:
    """The entries a folder walk skipped, by reason, and the names that are not UTF-8."""

    def __init__(self) -> None:
        self.by_reason: dict[str, list[str]] = {}
        self.bad_names: list[str] = []

    def add(self, path: str, reason: str) -> None:
        self.by_reason.setdefault(reason, []).append(path)

    def keep(self, folder: str, name: str) -> bool:
        """True when the entry ``name`` of ``folder`` is data; a junk entry is recorded and False; a name that is
        not UTF-8 is recorded (for :meth:`flush` to raise) and False."""
        if name.isascii() and name[:1] not in ("", ".", "_") and name not in _SYSTEM_AS_WRITTEN:
            return True  # the common case, without a look at each rule
        reason = junk_reason(name)
        if reason is not None:
            self.add(os.path.join(folder, name), reason)
            return False
        if not is_valid_name(name):
            self.bad_names.append(os.path.join(folder, name))
            return False
        return True

    def flush(self, report: Report, where: str) -> None:
        """One ``file.skipped`` info note per reason; a ReadError when names were not UTF-8."""
        self.refuse_bad_names(where)
        for reason, paths in sorted(self.by_reason.items()):
            what = "hidden file(s) or folder(s)" if reason == "hidden" else _plural(reason)
            report.note("file.skipped", where, f"{len(paths)} {what} skipped (first: {_under(paths[0], where)})",
                        severity="info")
        self.by_reason.clear()

    def refuse_bad_names(self, where: str) -> None:
        """A ReadError naming the file names found that are not UTF-8 (paths shown relative to ``where``)."""
        if self.bad_names:
            first = [_under(p, where) for p in self.bad_names[:3]]
            more = f" and {len(self.bad_names) - 3} more" if len(self.bad_names) > 3 else ""
            raise ReadError(shown_name(self.bad_names[0]), f"{len(self.bad_names)} file name(s) are not valid UTF-8 "
                            f"({', '.join(first)}{more}): such names cannot be written into COCO or matched in a "
                            "project",
                            hint=f"rename them to UTF-8 first, for example: convmv -f cp1252 -t utf-8 -r --notest "
                                 f"{shown_name(where)}")


def _under(path: str, root: str) -> str:
    """``path`` relative to ``root`` when it is under it, printable."""
    prefix = root.rstrip(os.sep) + os.sep
    return shown_name(path[len(prefix):] if path.startswith(prefix) else path)


def _plural(reason: str) -> str:
    head, _, tail = reason.partition(" (")
    return f"{head}(s)" + (f" ({tail}" if tail else "")
