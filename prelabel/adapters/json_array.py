"""JSON as bytes: the structure of a run of a JSON text found without parsing it, for plans that cut a file's
array of records at record boundaries (Label Studio tasks, COCO annotations).

A run of bytes is checked by counting its brackets outside strings, the strings found without a pass in
Python (escapes removed, then everything but quotes and brackets, then the empty strings left; a string with a
bracket in it leaves quotes: then the quotes' parity tells which brackets are inside one).

Example:
    >>> count_values(b'{"a": "}"}, [1, {"b": 2}], {}'), count_values(b'{"a": [1}')
    (2, None)
    >>> walk(b'"images": [{"id": 1}], ').balanced, walk(b'"a": "[').in_string
    (True, True)
    >>> doc = b'{"annotations": [{"a": "]\\\\"}, {"b": "\\"]"}], "categories": []}'
    >>> doc[closing(doc, doc.index(b"[{") + 1)]
    93
    >>> doc[closing(doc, doc.index(b"[{") + 1):]
    b'], "categories": []}'
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..memory import let_go

__all__ = ["LIST_START", "MAX_MISSES", "Scan", "Walk", "closing", "count_values", "scan", "walk", "walk_far"]

LIST_START = re.compile(rb"\s*\[")  # blanks, then the ``[`` that opens an array
MAX_MISSES = 8  # candidates tried for one boundary (or a key of the top-level object) before giving up

_ESCAPE = re.compile(rb"\\.", re.S)
_STRUCTURE = b'"{}[]'
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in _STRUCTURE)


def _outside(run: bytes, in_string: bool = False) -> tuple[np.ndarray, bool]:
    """The brackets of ``run`` outside strings (byte codes, in order), and whether it ends inside a string
    (``in_string``: whether it starts inside one)."""
    if b"\\" in run:
        run = _ESCAPE.sub(b"", run)
    s = np.frombuffer(run.translate(None, _NOT_STRUCTURE).replace(b'""', b""), dtype=np.uint8)
    quote = s == 0x22
    n_quotes = int(np.count_nonzero(quote))
    if n_quotes:
        outside = (np.cumsum(quote) & 1) == int(in_string)
        s = s[outside & ~quote]
    elif in_string:
        s = s[:0]
    return s, in_string != bool(n_quotes & 1)


def _steps(brackets: np.ndarray) -> np.ndarray:
    """+1 for each opening bracket (byte codes), -1 for each closing one: their cumulative sum is the depth."""
    step: np.ndarray = (brackets == 0x7B).astype(np.int64) + (brackets == 0x5B) - (brackets == 0x7D) - (brackets == 0x5D)
    return step


def count_values(run: bytes) -> int | None:
    """The number of top-level objects in ``run`` (bytes from an object's ``{`` to an object's ``}``), or None when ``run`` is not a run of whole values (it starts or ends inside one or inside a string) or
    holds no bracket."""
    s, _ = _outside(run)
    if not len(s):
        return None
    step = _steps(s)
    depth = np.cumsum(step)
    if depth[-1] != 0 or (depth < 0).any():
        return None
    return int(np.count_nonzero((depth == 1) & (s == 0x7B)))


@dataclass(frozen=True)
class Walk:
    """What :func:`walk` found in a run: the depth at its end and the least on the way (0 = the depth where it
    started, unless given), whether it ends inside a string, and how many objects and arrays it opened at depth
    1 (the top level of the run)."""

    depth: int
    least: int
    in_string: bool
    values: int

    @property
    def balanced(self) -> bool:
        """Whether the run is whole values and the text between them (it never closes a bracket it did not
        open, and ends outside any value and string)."""
        return self.depth == 0 and self.least >= 0 and not self.in_string


def walk(run: bytes, *, depth: int = 0, in_string: bool = False) -> Walk:
    """The structure of ``run`` (see :class:`Walk`), which starts at ``depth``, inside a string or not."""
    s, ends_in = _outside(run, in_string)
    if not len(s):
        return Walk(depth, depth, ends_in, 0)
    step = _steps(s)
    levels = depth + np.cumsum(step)
    opened = (levels == 1) & ((s == 0x7B) | (s == 0x5B))
    return Walk(int(levels[-1]), min(depth, int(levels.min())), ends_in, int(np.count_nonzero(opened)))


_BLOCK = 2 * 2**20  # bytes scanned at a time by scan() and walk_far()


def walk_far(raw: Any, start: int, stop: int, *, block: int = _BLOCK) -> Walk:
    """:func:`walk` of ``raw[start:stop]``, a block at a time: a long run (a memory map's) is never copied whole.

    >>> walk_far(b'{"a": "x\\\\"}, [1, 2], "b": ', 0, 25, block=8) == walk(b'{"a": "x\\\\"}, [1, 2], "b": ')
    True
    """
    depth, least, in_string, values, pos = 0, 0, False, 0, start
    while pos < stop:
        end = min(stop, pos + block)
        while end < stop and raw[end - 1] == 0x5C:  # a run of backslashes stays in one block
            end += 1
        w = walk(raw[pos:end], depth=depth, in_string=in_string)
        depth, least, in_string, values, pos = w.depth, min(least, w.least), w.in_string, values + w.values, end
    return Walk(depth, least, in_string, values)
_LOOKUP = np.zeros(256, dtype=bool)
_LOOKUP[list(b'"\\{}[]')] = True


@dataclass(frozen=True)
class Scan:
    """What :func:`scan` found: where the array or object ends (``end``: its closing bracket, None: not closed)
    and, at the start of each block scanned, the position, depth, whether inside a string, and the values
    opened at depth 1 before it (``marks``)."""

    end: int | None
    marks: tuple[tuple[int, int, bool, int], ...]

    def at(self, raw: Any, pos: int) -> Walk:
        """The structure from the scan's start to ``pos`` (before ``end``): depth, inside a string, and the
        values opened at depth 1 (``least``: from the block before ``pos`` only; the scan never went below 0
        before ``end``)."""
        k = max(0, bisect.bisect_right([m[0] for m in self.marks], pos) - 1)
        start, depth, in_string, values = self.marks[k]
        w = walk(raw[start:pos], depth=depth, in_string=in_string)
        return Walk(w.depth, w.least, w.in_string, values + w.values)


def scan(raw: Any, at: int, *, block: int = _BLOCK) -> Scan:
    """Scan the array or object ``at`` stands in (``at``: outside strings, between two of its values) a block at
    a time (the brackets outside strings counted as :func:`walk` counts them; in the block that closes it, the
    bracket found by its place): see :class:`Scan`."""
    depth, in_string, values, pos, n = 0, False, 0, at, len(raw)
    marks: list[tuple[int, int, bool, int]] = []
    while pos < n:
        marks.append((pos, depth, in_string, values))
        end = min(n, pos + block)
        while end < n and raw[end - 1] == 0x5C:  # a run of backslashes stays in one block
            end += 1
        run = raw[pos:end]
        w = walk(run, depth=depth, in_string=in_string)
        if w.least < 0:
            return Scan(pos + _place(run, in_string, depth), tuple(marks))
        values += w.values
        depth = w.depth
        let_go(raw, pos, end)  # (a mapped file's block, scanned: the file is never resident whole)
        in_string, pos = w.in_string, end
    return Scan(None, tuple(marks))


def closing(raw: Any, at: int, *, block: int = _BLOCK) -> int | None:
    """Where the bracket that closes the array or object ``at`` stands in is (:func:`scan`); None when it is
    not closed."""
    return scan(raw, at, block=block).end


def _place(run: bytes, in_string: bool, depth: int) -> int:
    """Where in ``run`` (which starts at ``depth``, inside a string or not) the depth first goes below 0."""
    chunk = np.frombuffer(run, dtype=np.uint8)
    idx = np.flatnonzero(_LOOKUP[chunk])
    ch = chunk[idx]
    slash = ch == 0x5C
    if slash.any():  # the character after an odd run of backslashes is escaped
        where = idx[slash]
        breaks = np.flatnonzero(np.diff(where) != 1)
        first = np.concatenate([[0], breaks + 1])
        last = np.concatenate([breaks, [len(where) - 1]])
        escaped = where[last[((last - first + 1) & 1) == 1]] + 1
        keep = ~slash & ~np.isin(idx, escaped)
        idx, ch = idx[keep], ch[keep]
    quote = ch == 0x22
    outside = ~quote & (((np.cumsum(quote) - quote) & 1) == int(in_string))
    brackets, places = ch[outside], idx[outside]
    step = _steps(brackets)
    return int(places[np.flatnonzero(depth + np.cumsum(step) < 0)[0]])
