"""File names written inside input files, resolved without ever escaping their root.

A COCO ``file_name``, a VOC ``<filename>``, a Label Studio URL or a CVAT ``name`` is data, not a path to trust.
:func:`safe_relative` turns it into a clean relative POSIX name or refuses it; :func:`safe_join` joins a clean
name to a root. Symbolic links inside the user's own folders are followed (checked lexically, not by realpath),
because dataset folders often link to shared image storage.

Example:
    >>> from prelabel.paths import safe_relative
    >>> safe_relative("images/./a.jpg"), safe_relative("../etc/passwd"), safe_relative("/abs/a.jpg")
    ('images/a.jpg', None, None)
"""

from __future__ import annotations

import posixpath
import unicodedata
from pathlib import Path

__all__ = ["IMAGE_EXTENSIONS", "safe_join", "safe_relative", "why_unsafe"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def why_unsafe(name: str) -> str | None:
    """Why ``name`` cannot be used as a relative file name, or None when it can."""
    if not name:
        return "empty file name"
    if "\x00" in name:
        return "file name contains a NUL byte"
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        return "absolute path"
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return "'..' segment escapes the root"
    if not parts:
        return "empty file name"
    return None


def safe_relative(name: str) -> str | None:
    """The clean relative POSIX form of ``name`` (NFC-normalized), or None when it is unsafe."""
    if why_unsafe(name) is not None:
        return None
    norm = unicodedata.normalize("NFC", name.replace("\\", "/"))
    return posixpath.normpath("/".join(p for p in norm.split("/") if p not in ("", ".")))


def safe_join(root: str | Path, name: str) -> Path | None:
    """``root / name`` when ``name`` is a safe relative name, else None. Does not touch the disk."""
    rel = safe_relative(name)
    if rel is None:
        return None
    return Path(root) / rel
