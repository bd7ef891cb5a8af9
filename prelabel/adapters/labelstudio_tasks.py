"""Label Studio exports as bytes: where the top-level tasks of a JSON list start and end, found without parsing
the whole file, and runs of whole tasks parsed a piece at a time.

A Label Studio JSON export is one list of tasks. The reader cuts it at task boundaries twice over: into the
parts of :func:`prelabel.adapters.labelstudio.plan` (exact cuts and the number of tasks before each, so that
every part numbers its tasks as the whole file does: :func:`cuts`) and, inside a run of tasks, into pieces of
a few MB parsed one at a time (bounded memory: :func:`piece`). Both look for the same candidates,
``}, {"id": <integer>`` (results have string ids), and check them: a piece by parsing it, a cut by counting
the brackets outside strings from the previous cut (:func:`~prelabel.adapters.json_array.count_values`).

Example:
    >>> doc = b'[{"id": 1, "data": {"t": "}, {\\\\"id\\\\": 5"}}, {"id": 2, "data": {}}, {"id": 3}]'
    >>> [(doc[a - 1:a], doc[b:b + 1], n) for a, b, n in cuts(doc, 1, [len(doc) // 2])]
    [(b'}', b'{', 1)]
    >>> count_values(doc[1:doc.index(b"]")]), count_values(b'{"a": [1}')
    (3, None)
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import orjson

from ..errors import ReadError
from ..gcpause import gc_paused
from ..memory import let_go
from .json_array import LIST_START, MAX_MISSES, count_values

__all__ = ["LIST_START", "NEXT_TASK", "Bytes", "cuts", "list_start", "loads", "piece",
           "valid_json"]

# where the next top-level task may start: "}" "," "{" then an integer "id" (results have string ids)
NEXT_TASK = re.compile(rb'\}\s*,\s*(\{)\s*"id"\s*:\s*-?\d')


def loads(data: bytes, file: str) -> Any:
    """The JSON document ``data`` (a UTF-8 BOM skipped; NaN / Infinity read as :mod:`json` reads them, so that
    the check of numbers names the task), else the ReadError of a file that is not JSON."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    with gc_paused():
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError as e:
            first = e
        if b"NaN" in data or b"Infinity" in data:
            try:
                return json.loads(data)
            except (ValueError, RecursionError):
                pass
        raise ReadError(file, f"not valid JSON: {first}")


def valid_json(raw: bytes, file: str) -> None:
    """Raise the whole file's ReadError when ``raw`` is not JSON (a syntax error further on is the error a
    whole read reports)."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        loads(raw, file)


def list_start(raw: Any) -> int | None:
    """Where the first task of the JSON list ``raw`` starts (after ``[``, a BOM and blanks), None: not a list."""
    opening = LIST_START.match(raw, 3 if raw[:3] == b"\xef\xbb\xbf" else 0)
    return opening.end() if opening is not None else None


class Bytes:
    """Byte ranges of a file read as a JSON list into one buffer (one copy; the memory map of the file is only
    searched for boundaries)."""

    def __init__(self, f: Any) -> None:
        self.f = f
        self.buf = bytearray()

    def as_list(self, a: int, b: int, *, close: bool) -> memoryview:
        """``[`` + bytes ``a:b`` (+ ``]`` when ``close``)."""
        n = b - a
        if len(self.buf) < n + 2:
            self.buf = bytearray(n + 2 + (n >> 3))
        view = memoryview(self.buf)
        view[0] = 0x5B
        self.f.seek(a)
        got = 1
        while got <= n:
            k = self.f.readinto(view[got:n + 1])
            if not k:
                raise OSError(f"{self.f.name}: the file got shorter while read")
            got += k
        if close:
            view[n + 1] = 0x5D
            return view[:n + 2]
        return view[:n + 1]


def piece(raw: Any, data: Bytes, start: int, stop: int, size: int) -> tuple[Any, int]:
    """The tasks of the piece of about ``size`` bytes that starts at ``start`` (the first byte of a top-level
    task) and where the next piece starts (-1: this one ran to ``stop``); (None, -1) when the rest does not
    parse. ``stop``: the end of the run of tasks, ``len(raw)`` (the file's own ``]`` closes the list) or the
    byte after a task's ``}``. Each candidate boundary is checked by parsing the piece it ends."""
    if start + size < stop:
        for _, m in zip(range(MAX_MISSES), NEXT_TASK.finditer(raw, start + size, stop), strict=False):
            try:
                return orjson.loads(data.as_list(start, m.start() + 1, close=True)), m.start(1)
            except orjson.JSONDecodeError:  # not a top-level boundary: try the next one
                pass
    try:  # the rest in one go
        return orjson.loads(data.as_list(start, stop, close=stop < len(raw))), -1
    except orjson.JSONDecodeError:
        return None, -1


def cuts(raw: Any, start: int, targets: Sequence[int]) -> list[tuple[int, int, int]]:
    """Task boundaries near the byte offsets ``targets`` (ascending) of the JSON list ``raw`` whose first task
    starts at ``start``: (the byte after the last task before it, the first byte of the next task, the number of
    tasks before it). A target without a checked boundary after it (and before the next target's) is skipped."""
    out: list[tuple[int, int, int]] = []
    a, n = start, 0
    for target in targets:
        m = NEXT_TASK.search(raw, max(target, a))
        for _ in range(MAX_MISSES):
            if m is None:
                break
            got = count_values(raw[a:m.start() + 1])
            if got is not None:
                n += got
                out.append((m.start() + 1, m.start(1), n))
                let_go(raw, a, m.start(1))  # (searched and counted: a file of GBs is never resident whole)
                a = m.start(1)
                break
            m = NEXT_TASK.search(raw, m.start() + 1)
        if m is None:
            break
    return out
