"""Parts of a source: what an adapter's ``plan`` cuts a source into and its ``read_part`` reads, and how the
datasets read from the parts are merged back into the one a whole read gives.

A part is a small picklable record, so that any engine (this process, a process pool, a Dask cluster) can
carry it to a worker: :class:`FilesPart` (a run of a folder's files), :class:`ByteRange` (bytes of one file cut
at record boundaries) or :class:`RowRange` (rows of a table). :func:`merge` concatenates the parts' datasets
in plan order, keeping the notes every part makes about the whole source once.

Example:
    >>> from prelabel.model import Dataset
    >>> part = FilesPart(source="ds", files=("Annotations/a.xml",))
    >>> part.files
    ('Annotations/a.xml',)
    >>> a = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]})
    >>> b = Dataset.build(images={"file_name": ["b.jpg"], "width": [8], "height": [8]})
    >>> list(merge([a, b]).images["file_name"])
    ['a.jpg', 'b.jpg']
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..model import Dataset
from ..report import Diagnostic, Report

__all__ = ["ByteRange", "FilesPart", "Part", "RowRange", "merge"]


@dataclass(frozen=True, kw_only=True)
class FilesPart:
    """A run of a folder source's files: ``files`` relative to ``source`` (posix), in the order read.

    ``context``: what the adapter's plan decided once for the whole source and each part needs to read its
    files on its own (YOLO: the images root, the class names, the label file of each image), opaque to the
    engines. An engine that copies a part's ``files`` elsewhere (a Dask worker reading a remote source) passes
    the part with ``source`` naming the copy's folder; the adapter reads the files there."""

    source: str
    files: tuple[str, ...]
    context: Any = None


@dataclass(frozen=True, kw_only=True)
class ByteRange:
    """Bytes ``start``..``stop`` of the file ``source``, cut at record boundaries. ``context``: what the plan
    decided once for the whole file (CVAT: its ``<meta>``), opaque to the engines."""

    source: str
    start: int
    stop: int
    context: Any = None


@dataclass(frozen=True, kw_only=True)
class RowRange:
    """Rows ``start``..``stop`` of the table ``source``."""

    source: str
    start: int
    stop: int


Part = FilesPart | ByteRange | RowRange

_TASK_COUNTS = "task inferred from the column counts: "


_COUNT_RE = re.compile(r"(\d+) (\D.*)", re.DOTALL)


def _counted(d: Diagnostic) -> tuple[int, tuple[str, str, str, str]] | None:
    """A note that counts (its message starts with a number): the count, and what it counts (the code, the
    severity, the source file without its ``:line``, the words after the number)."""
    m = _COUNT_RE.fullmatch(d.message)
    if m is None:
        return None
    head, _, line = d.source.rpartition(":")
    return int(m.group(1)), (d.code, d.severity, head if head and line.isdigit() else d.source, m.group(2))


def _add_counts(parts: Sequence[Dataset]) -> None:
    """A note that counts, written by several parts about one file (each part writes it, with its count of 0
    too, so that it stands where ``read()`` writes it), is added up into the first part's, with the source of
    the first part that counted any (``file:line`` of the first one counted); a total of 0 is left out."""
    found: dict[tuple[str, str, str, str], list[tuple[int, Diagnostic, int]]] = {}  # -> (part, note, count)
    for k, ds in enumerate(parts):
        for d in ds.report.diagnostics:
            got = _counted(d)
            if got is not None:
                found.setdefault(got[1], []).append((k, d, got[0]))
    replace: dict[int, Diagnostic | None] = {}  # id of a note -> what stands in its place (None: nothing)
    for key, notes in found.items():
        if len({k for k, _, _ in notes}) < 2 or len(notes) != len({k for k, _, _ in notes}):
            continue  # (one part's note, or several in one part: as they are)
        total = sum(n for _, _, n in notes)
        src = next((d.source for _, d, n in notes if n), notes[0][1].source)
        head = notes[0][1]
        replace[id(head)] = Diagnostic(head.code, src, f"{total} {key[3]}", head.severity) if total else None
        replace |= {id(d): None for _, d, _ in notes[1:]}
    if replace:
        for ds in parts:
            new = [replace.get(id(d), d) for d in ds.report.diagnostics]
            ds.report.diagnostics = [d for d in new if d is not None]


def _dedupe_diagnostics(parts: Sequence[Dataset], kind_order: Sequence[str]) -> None:
    """Notes every part makes about the whole source (``category.unnamed``, ...) are kept once, YOLO's
    "task inferred" counts are added up into one note (kinds in ``kind_order``), as a whole read writes it,
    and so are the notes that count (:func:`_add_counts`)."""
    seen: set[Diagnostic] = set()
    first_task: tuple[int, int] | None = None
    counts: dict[str, int] = {}
    _add_counts(parts)
    for k, ds in enumerate(parts):
        diags = ds.report.diagnostics
        kept: list[Diagnostic] = []
        for d in diags:
            if d.code == "task.inferred" and d.message.startswith(_TASK_COUNTS) and ";" not in d.message:
                for item in d.message[len(_TASK_COUNTS):].removesuffix(" file(s)").split(", "):
                    n, _, kind = item.partition(" ")
                    counts[kind] = counts.get(kind, 0) + int(n)
                if first_task is not None:
                    continue
                first_task = (k, len(kept))
            elif k and d in seen:
                continue
            kept.append(d)
        seen.update(diags)
        ds.report.diagnostics = kept
    if first_task is not None:
        k, i = first_task
        d = parts[k].report.diagnostics[i]
        order = list(kind_order)
        text = ", ".join(f"{counts[kind]} {kind}" for kind in sorted(counts, key=lambda x: (
            order.index(x) if x in order else len(order), x)) if counts[kind])
        if text:  # (every part of a plan writes the note, with its counts of 0, so that it stands where read()'s does)
            parts[k].report.diagnostics[i] = Diagnostic(d.code, d.source, f"{_TASK_COUNTS}{text} file(s)",
                                                        d.severity)
        else:
            del parts[k].report.diagnostics[i]


def merge(parts: Sequence[Dataset], *, report: Report | None = None, kind_order: Sequence[str] = ()) -> Dataset:
    """The parts' datasets as one, in plan order (:meth:`Dataset.concat`), the notes about the whole source
    kept once. ``report``: the result's report (else a new one). The parts' reports are edited in place."""
    _dedupe_diagnostics(parts, kind_order)
    if len(parts) == 1 and _as_built(parts[0]):  # one part (a source read whole): its tables, not a copy
        ds = parts[0]
        rep = ds.report if report is None else report
        if rep is not ds.report:
            rep.merge(ds.report)
        return Dataset(images=ds.images, categories=ds.categories, annotations=ds.annotations, report=rep)
    return Dataset.concat(parts, report=report)


def _as_built(ds: Dataset) -> bool:
    """Whether :meth:`Dataset.concat` of ``ds`` alone would give its own tables (indexes 0..n-1, no category
    name twice)."""
    return (not ds.categories["name"].duplicated().any()
            and all(isinstance(t.index, pd.RangeIndex) and t.index.start == 0 and t.index.step == 1
                    for t in (ds.images, ds.categories, ds.annotations)))
