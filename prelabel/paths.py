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

import os
import posixpath
import re
import unicodedata
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["IMAGE_EXTENSIONS", "at_least", "image_name", "is_absolute", "is_url", "safe_join", "safe_relative",
           "why_unsafe"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_absolute(name: str) -> bool:
    """True for a POSIX or Windows absolute path (``/a``, ``\\a``, ``C:...``)."""
    norm = name.replace("\\", "/")
    return norm.startswith("/") or (len(norm) > 1 and norm[1] == ":")


def why_unsafe(name: str) -> str | None:
    """Why ``name`` cannot be used as a relative file name, or None when it can."""
    if not name:
        return "empty file name"
    if "\x00" in name:
        return "file name contains a NUL byte"
    if is_absolute(name):
        return "absolute path"
    norm = name.replace("\\", "/")
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        return "'..' segment escapes the root"
    if not parts:
        return "empty file name"
    return None


def safe_relative(name: str) -> str | None:
    """The clean relative POSIX form of ``name`` (NFC-normalized), or None when it is unsafe."""
    if name.isascii() and name.isprintable() and "/" not in name and "\\" not in name and name[1:2] != ":" \
            and name not in ("", ".", ".."):
        return name  # a plain file name (most of them): already its clean form, as the lines below would give
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


_HEX_PREFIX = re.compile(r"^[0-9a-f]{8}-(?=.)")
# a Label Studio upload URL whose file name is plain ASCII (no escapes, no query): image_name's answer at once
_UPLOAD_URL = re.compile(r"/data/upload/[0-9]+/[0-9a-f]{8}-([A-Za-z0-9_.\-]+)")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")


def is_url(name: str) -> bool:
    """Whether an image reference is a URL (``scheme://...``) rather than a file name.

    >>> is_url("s3://bucket/a.jpg"), is_url("https://h/a.jpg?sig=1"), is_url("dir/a.jpg"), is_url("C:/a.jpg")
    (True, True, False, False)
    """
    return _SCHEME.match(name) is not None


def image_name(url: str) -> tuple[str | None, str]:
    """The file name a user knows for an image reference, one rule for every format: ``(name, "")`` or
    ``(None, why not)``. ``s3://bucket/key`` (any ``scheme://bucket/key`` but http) gives ``key``;
    ``http(s)://host/path?query`` and host paths ``/...`` give their last path component (URL-decoded);
    Label Studio's ``/data/upload/<project>/<8 hex>-<name>`` gives ``name`` and ``/data/local-files/?d=<path>``
    gives ``path``; a relative name is kept (made safe: see :func:`safe_relative`).

    Example:
        >>> image_name("/data/upload/3/1a2b3c4d-photo.jpg")[0], image_name("s3://bkt/dir/a.png")[0]
        ('photo.jpg', 'dir/a.png')
        >>> image_name("/data/local-files/?d=ds%2Fimg%201.jpg")[0], image_name("../x.jpg")
        ('ds/img 1.jpg', (None, "'..' segment escapes the root"))
    """
    fast = _UPLOAD_URL.fullmatch(url)
    if fast is not None and fast[1] not in (".", ".."):  # the common case, as the general path reads it
        return fast[1], ""
    u = url.strip()
    if not u:
        return None, "empty image URL"
    if u.lower().startswith("data:"):
        return None, "inline data: URL (no file name)"
    parts = urlsplit(u)
    scheme = parts.scheme.lower()
    if len(scheme) == 1:
        return None, "absolute path"  # a Windows drive letter
    name: str
    if scheme in ("", "http", "https") and (scheme or u.startswith("/")):
        path = unquote(parts.path)
        if "/data/local-files" in path and parts.query:
            d = parse_qs(parts.query).get("d")
            if not d:
                return None, "local-files URL without ?d="
            name = d[0]
        else:
            name = path.rsplit("/", 1)[-1]
            if "/data/upload/" in path:
                name = _HEX_PREFIX.sub("", name)
            if not name:
                return None, "URL has no file name"
    elif scheme:
        if not parts.netloc:
            return None, f"{scheme}: URL without a bucket"
        name = parts.path.lstrip("/")
        if not name:
            return None, f"{scheme}: URL without a key"
    else:
        name = u
    safe = safe_relative(name)
    if safe is None:
        return None, why_unsafe(name) or "unsafe file name"
    return safe, ""


def moved(path: str, old: str, new: str) -> str:
    """``path`` with the folder ``old`` it is under (or is) replaced by ``new``; other paths as they are. What
    a part's files become once copied elsewhere (a Dask worker's folder).

    >>> moved(os.path.join("data", "labels", "a.txt"), "data", "work") == os.path.join("work", "labels", "a.txt")
    True
    """
    if not old or old == new:
        return path
    if path == old:
        return new
    prefix = old.rstrip(os.sep) + os.sep
    return new.rstrip(os.sep) + os.sep + path[len(prefix):] if path.startswith(prefix) else path


def at_least(path: Path, limit: int) -> bool:
    """Whether the file, or the files under the folder, hold at least ``limit`` bytes (stops counting there).

    >>> at_least(Path("sample_data/voc"), 1), at_least(Path("sample_data/voc"), 2**40)
    (True, False)
    """
    try:
        if not path.is_dir():
            return path.stat().st_size >= limit
        total = 0
        stack = [str(path)]
        while stack:
            with os.scandir(stack.pop()) as entries:
                for e in entries:
                    if e.is_dir(follow_symlinks=True):
                        stack.append(e.path)
                    elif e.is_file(follow_symlinks=True):
                        total += e.stat(follow_symlinks=True).st_size
                        if total >= limit:
                            return True
        return False
    except OSError:
        return False
