"""A source's parts as a stream: the parts of an adapter's ``plan`` read in plan order, in this process or in a
process pool a few parts ahead, each part's tables given to the conversion loop as soon as it is its turn.

This is the engine's streamed read: the same parts and the same merge as :func:`prelabel.engine.read_parts`
(so the concatenation of the stream is the dataset ``read()`` gives, report included), but no more than a few
parts are held at once. A part is about ``part_bytes`` of the source (from the pipeline's ``chunk_rows``).

Example:
    >>> from pathlib import Path
    >>> from prelabel import adapters
    >>> from prelabel.adapters.base import ReadOptions
    >>> stream = PartStream(adapters.get("voc"), Path("sample_data/voc"), options=ReadOptions(), parts=2)
    >>> [len(images) for images, _categories, _annotations in stream]
    [2, 3]
    >>> stream.report.read
    7
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import pandas as pd

from ..adapters.base import NeedsWholeRead, ReadOptions
from ..adapters.parts import Part, kind_order, merge_reports, names_shared, read_one_part
from ..errors import ReadError
from ..model import Dataset
from ..paths import at_least
from ..report import Report
from ..workers import process_pool, usable_cores, wanted_workers
from .run import counted, how_many, portable

__all__ = ["READ_AHEAD_MIN_BYTES", "STREAM_PART_BYTES", "PartStream", "parts_for", "read_ahead"]

STREAM_PART_BYTES = 4 * 2**20  # bytes of a source a streamed part (about 31,000 boxes of a CVAT file, 12,000 of Label Studio)

Tables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


READ_AHEAD_MIN_BYTES = 8 * 2**20  # a source this big read on one worker is read in a process of its own, ahead
FOLDER_PARTS_PER_WORKER = 8  # a folder's plan cuts runs of files: a few per worker keeps each part small


def parts_for(path: Path, *, workers: int, part_bytes: int = STREAM_PART_BYTES) -> int:
    """How many parts to cut ``path`` into for a stream: one a worker at least, and none over ``part_bytes``
    of a single file; a folder in FOLDER_PARTS_PER_WORKER parts a worker (its plan makes fewer when it has
    fewer files).

    >>> parts_for(Path("sample_data/voc"), workers=2)
    16
    """
    if path.is_file():
        size = path.stat().st_size
        return max(workers, -(-size // max(1, part_bytes)))
    return max(1, workers) * FOLDER_PARTS_PER_WORKER


def read_ahead(path: Path, options: ReadOptions) -> bool:
    """Whether a source read by one process is read in a process of its own, a part or two ahead of the
    conversion loop (both cores busy): at least READ_AHEAD_MIN_BYTES and two cores, unless one process was
    asked for (``workers=1``). ``PRELABEL_READ_IN_CHILD`` (an alias of the worker policy, kept for users'
    scripts): ``0`` never, ``always`` whatever the size.

    >>> read_ahead(Path("sample_data/voc"), ReadOptions())
    False
    """
    env = os.environ.get("PRELABEL_READ_IN_CHILD", "").lower()
    if env in ("0", "no", "off", "false"):
        return False
    if env == "always":
        return True
    if wanted_workers(options.extra) == 1:
        return False
    return usable_cores() >= 2 and at_least(path, READ_AHEAD_MIN_BYTES)


class PartStream:
    """Iterate over ``(images, categories, annotations)`` of each part of ``adapter.plan(path)`` in plan order;
    :attr:`report` is the merged report (what ``read()`` reports) once the iteration ended.

    ``parts``: how many parts (None: :func:`parts_for`); ``workers``: processes (None:
    :func:`prelabel.engine.how_many`). With several workers the parts are read in a process pool, at most
    ``workers + 1`` parts in flight; with one, in one process reading ahead when :func:`read_ahead` says so,
    else here. ``progress(done, total)``: files read, for a plan of runs of files. A part that raises a
    :class:`~prelabel.errors.ReadError` makes the whole source be read here, so that the error raised is the
    one ``read()`` raises (the first in its own order); ``NeedsWholeRead`` passes through (the caller reads
    the source whole)."""

    def __init__(self, adapter: Any, path: Path, *, options: ReadOptions, parts: int | None = None,
                 workers: int | None = None, part_bytes: int = STREAM_PART_BYTES,
                 progress: Callable[[int, int], None] | None = None) -> None:
        self.progress = progress
        self.adapter = adapter
        self.path = path
        self.options = options
        self.workers = how_many(adapter, path, options, workers)
        self.parts = parts if parts is not None else parts_for(path, workers=self.workers, part_bytes=part_bytes)
        self.report = Report()

    def __iter__(self) -> Iterator[Tables]:
        plan: list[Part] = self.adapter.plan(self.path, options=self.options, parts=self.parts)
        reports: list[Report] = []
        try:
            yield from self._parts(plan, reports)
        except ReadError:
            # read()'s own error, which may be another part's (a file whose error read() reports only once the
            # files after it are read); should the whole read pass, the part's error stands
            self.adapter.read(self.path, options=self.options, report=Report())
            raise
        self.report = merge_reports(reports, kind_order=kind_order(self.adapter))

    def _parts(self, plan: list[Part], reports: list[Report]) -> Iterator[Tables]:
        seen: set[str] = set()
        for ds in counted(plan, self._read(plan), self.progress):
            if names_shared(self.adapter, [ds], seen):  # (nothing is written: the caller reads it whole)
                raise NeedsWholeRead(f"{self.path}: an image is named in two parts")
            reports.append(ds.report)
            tables = ds.images, ds.categories, ds.annotations
            del ds  # nothing of this part is held here while the next one is read
            yield tables
            del tables

    def _read(self, plan: list[Part]) -> Iterator[Dataset]:
        name = self.adapter.NAME
        opts = portable(self.options)
        procs = min(self.workers, len(plan)) if self.workers > 1 else \
            int(len(plan) > 1 and read_ahead(self.path, self.options))
        pool = process_pool(procs, least=1) if procs else None
        if pool is None:  # one process: the parts one after the other, here
            for part in plan:
                yield read_one_part(name, part, opts)
            return
        given = 0  # parts handed out; a pool that breaks or refuses work leaves the rest to this process
        try:
            ahead: deque[Future[Dataset]] = deque()
            try:
                for part in plan:
                    ahead.append(pool.submit(read_one_part, name, part, opts))
                    if len(ahead) > procs:
                        ds = ahead.popleft().result()
                        given += 1
                        yield ds
                while ahead:
                    ds = ahead.popleft().result()
                    given += 1
                    yield ds
            except (OSError, BrokenProcessPool):
                for part in plan[given:]:
                    yield read_one_part(name, part, opts)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
