"""The cyclic garbage collector paused while bulk code makes many small objects that form no cycles.

Parsing or serializing hundreds of thousands of rows makes millions of containers; each allocation threshold
crossed starts a collection that walks them all (1.3-2.3x slower readers, ../shared/PERFORMANCE.md).

Example:
    >>> import gc
    >>> from prelabel.gcpause import gc_paused
    >>> with gc_paused():
    ...     rows = [{"id": i} for i in range(1000)]
    ...     gc.isenabled()
    False
    >>> gc.isenabled()
    True
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]


@contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off inside the block, restored to its previous state after (nested blocks are fine)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
