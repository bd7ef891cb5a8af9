"""Give memory back to the operating system: freed heap between big documents, a mapped file's pages once read.

After a parsed COCO shard (hundreds of thousands of small objects) is freed, glibc keeps the freed heap pages
mapped: the next shard's parse then stacks on them and the process's peak grows with the number of shards.
:func:`release_memory` asks glibc to return them (``malloc_trim``); elsewhere (macOS, musl) it does nothing.

Example:
    >>> from prelabel.memory import release_memory
    >>> release_memory() in (True, False)
    True
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

__all__ = ["let_go", "release_memory"]


def _trim() -> object | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return getattr(libc, "malloc_trim", None)
    except OSError:
        return None


_MALLOC_TRIM = _trim()


def release_memory() -> bool:
    """Return the heap's free pages to the system; True when the C library did (glibc only)."""
    if _MALLOC_TRIM is None:
        return False
    return bool(_MALLOC_TRIM(0))  # type: ignore[operator]


_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def let_go(mm: mmap.mmap, start: int, stop: int) -> None:
    """Drop bytes ``start``..``stop`` of a file mapped read-only from this process's resident memory once they
    have been read (they stay in the system's file cache; a later read maps them again). A plan that scans a
    file of hundreds of MB part by part then holds one part's pages, not the file's. Does nothing where
    ``madvise`` is missing (Windows).

    >>> import tempfile
    >>> with tempfile.TemporaryFile() as f:
    ...     _ = f.write(b"x" * 3 * mmap.PAGESIZE)
    ...     f.flush()
    ...     with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
    ...         let_go(mm, 0, len(mm))
    ...         mm[mmap.PAGESIZE:mmap.PAGESIZE + 3]
    b'xxx'
    """
    if _DONTNEED is None or not hasattr(mm, "madvise"):
        return
    first = start - start % mmap.PAGESIZE   # whole pages: from the page holding start
    if stop > first:
        try:
            mm.madvise(_DONTNEED, first, stop - first)
        except (OSError, ValueError):
            pass
