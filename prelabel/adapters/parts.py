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

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..model import Dataset
from ..report import Diagnostic, Report
from . import get
from .base import ReadOptions

__all__ = ["ByteRange", "FilesPart", "Part", "RowRange", "kind_order", "merge", "merge_reports", "merge_source",
           "names_shared", "read_one_part"]


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
    """Bytes ``start``..``stop`` of the file ``source``, cut at record boundaries; ``context`` as for
    :class:`FilesPart`."""

    source: str
    start: int
    stop: int
    context: Any = None


@dataclass(frozen=True, kw_only=True)
class RowRange:
    """Rows ``start``..``stop`` of the table ``source``; ``context`` as for :class:`FilesPart`."""

    source: str
    start: int
    stop: int
    context: Any = None


Part = FilesPart | ByteRange | RowRange


def read_one_part(name: str, part: Part, options: ReadOptions) -> Dataset:
    """One part read by the adapter ``name``'s ``read_part`` (a module-level function: what a process pool or
    a Dask worker runs)."""
    adapter: Any = get(name)  # an adapter with a plan (plan and read_part are optional)
    got: Dataset = adapter.read_part(part, options=options)
    return got

_TASK_COUNTS = "task inferred from the column counts: "


TallyKey = tuple[str, str, str, str]  # code, source without its ":line", severity, template


def _tally_key(d: Diagnostic) -> TallyKey:
    """What a tally counts: one note of a whole read (its source's line, where the first counted thing is, may
    differ from part to part)."""
    source = d.source if d.tally_source is None else d.tally_source
    head, _, line = source.rpartition(":")
    tally = d.tally or ("", ())
    return d.code, head if head and line.isdigit() else source, d.severity, tally[0]


def _dedupe_diagnostics(reports: Sequence[Report], kind_order: Sequence[str]) -> None:
    """The parts' reports, in plan order, edited in place: notes every part makes about the whole source
    (``category.unnamed``, ...) are kept once, YOLO's "task inferred" counts are added up into one note (kinds in
    ``kind_order``), as a whole read writes it, and so are the tallies (:func:`_add_up`)."""
    seen: set[Diagnostic] = set()
    first_task: tuple[int, int] | None = None
    counts: dict[str, int] = {}
    tallies: dict[TallyKey, tuple[list[int], list[str]]] = {}  # the sums, and the sources that counted any
    for k, rep in enumerate(reports):
        diags = rep.diagnostics
        kept: list[Diagnostic] = []
        for d in diags:
            if d.tally is not None:
                sums, sources = tallies.setdefault(_tally_key(d), ([0] * len(d.tally[1]), []))
                sums[:] = [a + b for a, b in zip(sums, d.tally[1], strict=True)]
                if any(d.tally[1]):
                    sources.append(d.source)
            elif d.code == "task.inferred" and d.message.startswith(_TASK_COUNTS) and ";" not in d.message:
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
        rep.diagnostics = kept
    if first_task is not None:
        k, i = first_task
        d = reports[k].diagnostics[i]
        order = list(kind_order)
        text = ", ".join(f"{counts[kind]} {kind}" for kind in sorted(counts, key=lambda x: (
            order.index(x) if x in order else len(order), x)) if counts[kind])
        if text:  # (every part of a plan writes the note, with its counts of 0, so that it stands where read()'s does)
            reports[k].diagnostics[i] = Diagnostic(d.code, d.source, f"{_TASK_COUNTS}{text} file(s)",
                                                     d.severity)
        else:
            del reports[k].diagnostics[i]
    if tallies:
        _add_up(reports, tallies)


def _add_up(reports: Sequence[Report], tallies: dict[TallyKey, tuple[list[int], list[str]]]) -> None:
    """Each tally (:meth:`Report.tally`) once, with the parts' counts added up, where the last part's stands
    (the first part's for a tally written ``first``)
    (a reader writes its tallies after the notes about its files; every part writes them, counts of 0 too, and
    a tally whose counts add up to 0 is left out, as a whole read leaves it out), with the source of the first
    part that counted any (``file:line`` of the first thing counted). The closing tallies (``end``) stand after
    the last part's other notes, by ``end``, then in the order the parts first wrote them."""
    last: dict[TallyKey, tuple[int, int]] = {}
    closing: dict[TallyKey, tuple[int, int, int]] = {}  # (end, part, index) where first written
    for k, rep in enumerate(reports):
        for i, d in enumerate(rep.diagnostics):
            if d.tally is None:
                continue
            key = _tally_key(d)
            if d.tally_end:
                closing.setdefault(key, (d.tally_end, k, i))
            elif not (d.tally_first and key in last):
                last[key] = (k, i)

    def added(d: Diagnostic) -> Diagnostic | None:
        sums, sources = tallies[_tally_key(d)]
        if not any(sums) or d.tally is None:
            return None
        return Diagnostic(d.code, sources[0], d.tally[0].format(*sums), d.severity, tally=(d.tally[0], tuple(sums)),
                          tally_first=d.tally_first, tally_end=d.tally_end, tally_source=d.tally_source)

    ends: dict[TallyKey, Diagnostic] = {}
    for k, rep in enumerate(reports):
        out: list[Diagnostic] = []
        for i, d in enumerate(rep.diagnostics):
            if d.tally is None:
                out.append(d)
                continue
            key = _tally_key(d)
            if d.tally_end:
                if closing[key][1:] == (k, i) and (sum_ := added(d)) is not None:
                    ends[key] = sum_
            elif last[key] == (k, i) and (sum_ := added(d)) is not None:
                out.append(sum_)
        rep.diagnostics = out
    if ends and reports:
        reports[-1].diagnostics.extend(ends[key] for key in sorted(ends, key=closing.__getitem__))


def names_shared(adapter: Any, parts: Sequence[Dataset], seen: set[str] | None = None) -> bool:
    """Whether an image file name of one part is also another part's, for an adapter whose ``read()`` makes
    one image of the records that name the same image (``SAME_NAME_ONE_IMAGE = True``: Label Studio tasks):
    its parts cannot merge such images, and the source must be read whole. ``seen``: the names of the parts
    before these (updated), for parts that come one at a time.

    >>> class LS: SAME_NAME_ONE_IMAGE = True
    >>> a = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]})
    >>> names_shared(LS, [a, a]), names_shared(object(), [a, a])
    (True, False)
    """
    if not getattr(adapter, "SAME_NAME_ONE_IMAGE", False):
        return False
    known = set() if seen is None else seen
    for ds in parts:
        names = set(ds.images["file_name"])
        if not known.isdisjoint(names):
            return True
        known |= names
    return False


def merge(parts: Sequence[Dataset], *, report: Report | None = None, kind_order: Sequence[str] = ()) -> Dataset:
    """The parts' datasets as one, in plan order (:meth:`Dataset.concat`), the notes about the whole source
    kept once, the counts of their tallies added up (:meth:`~prelabel.report.Report.tally`) and their drops and
    changes in phase order (:meth:`~prelabel.report.Report.order_phases`). ``report``: the result's report (else
    a new one). The parts' reports are edited in place."""
    _dedupe_diagnostics([ds.report for ds in parts], kind_order)
    if len(parts) == 1 and _as_built(parts[0]):  # one part (a source read whole): its tables, not a copy
        ds = parts[0]
        rep = ds.report if report is None else report
        if rep is not ds.report:
            rep.merge(ds.report)
        rep.order_phases()
        return Dataset(images=ds.images, categories=ds.categories, annotations=ds.annotations, report=rep)
    ds = Dataset.concat(parts, report=report)
    ds.report.order_phases()
    return ds


def kind_order(adapter: Any) -> list[str]:
    """The kinds whose "task inferred" counts :func:`merge` adds up, in the adapter's order (its
    ``KIND_NAMES``; none for an adapter without).

    >>> from prelabel import adapters
    >>> kind_order(adapters.get("yolo")), kind_order(adapters.get("voc"))
    (['detect', 'segment', 'obb', 'pose'], [])
    """
    return list(getattr(adapter, "KIND_NAMES", {}).values())


def merge_source(parts: Sequence[Dataset], *, adapter: Any, source: str | Path) -> Dataset:
    """The parts of ``source``, read by ``adapter`` in plan order, merged (:func:`merge`, a new report) into
    the dataset its ``read()`` gives, the report's ``input`` naming the format and the source."""
    ds = merge(parts, report=Report(), kind_order=kind_order(adapter))
    ds.report.input = {"format": adapter.NAME, "source": str(source)}
    return ds


def merge_reports(reports: Sequence[Report], *, kind_order: Sequence[str] = ()) -> Report:
    """The parts' reports merged as :func:`merge` merges them (its ``report``, a new one, without the parts'
    tables): for a caller that has handed the tables on and kept the reports. The reports are edited in place.

    >>> a, b = Report(), Report()
    >>> a.add_read(2); b.add_read(3)
    >>> merge_reports([a, b]).read
    5
    """
    _dedupe_diagnostics(reports, kind_order)
    rep = Report()
    merged: set[int] = {id(rep)}
    for r in reports:  # each distinct report once (Dataset.concat)
        if id(r) not in merged:
            merged.add(id(r))
            rep.merge(r)
    rep.order_phases()
    return rep


def _as_built(ds: Dataset) -> bool:
    """Whether :meth:`Dataset.concat` of ``ds`` alone would give its own tables (indexes 0..n-1, no category
    name twice)."""
    return (not ds.categories["name"].duplicated().any()
            and all(isinstance(t.index, pd.RangeIndex) and t.index.start == 0 and t.index.step == 1
                    for t in (ds.images, ds.categories, ds.annotations)))
