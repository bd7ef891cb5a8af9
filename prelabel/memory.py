"""Give freed heap memory back to the operating system between big documents.

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
import sys

__all__ = ["release_memory"]


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
