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

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pandas as pd

from ..adapters.base import ReadOptions
from ..adapters.parts import Part, merge
from ..model import Dataset
from ..report import Report
from ..workers import process_pool
from .run import how_many, portable, read_one_part, with_workers

__all__ = ["STREAM_PART_BYTES", "PartStream", "parts_for"]

STREAM_PART_BYTES = 16 * 2**20  # bytes of a source a streamed part (about 50,000 boxes of a CVAT or Label Studio file)

Tables = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


def parts_for(path: Path, *, workers: int, part_bytes: int = STREAM_PART_BYTES) -> int:
    """How many parts to cut ``path`` into for a stream: one a worker at least, and none over ``part_bytes``
    of a single file (a folder is cut one part a worker: its plan cuts runs of files).

    >>> parts_for(Path("sample_data/voc"), workers=2)
    2
    """
    if path.is_file():
        size = path.stat().st_size
        return max(workers, -(-size // max(1, part_bytes)))
    return max(1, workers)


class PartStream:
    """Iterate over ``(images, categories, annotations)`` of each part of ``adapter.plan(path)`` in plan order;
    :attr:`report` is the merged report (what ``read()`` reports) once the iteration ended.

    ``parts``: how many parts (None: :func:`parts_for`); ``workers``: processes (None:
    :func:`prelabel.engine.how_many`). With several workers the parts are read in a process pool, at most
    ``workers + 1`` parts in flight. A part's error is raised as it is, in plan order: the first error of a
    part is the one ``read()`` meets first. ``NeedsWholeRead`` passes through (the caller reads the source
    whole)."""

    def __init__(self, adapter: Any, path: Path, *, options: ReadOptions, parts: int | None = None,
                 workers: int | None = None, part_bytes: int = STREAM_PART_BYTES) -> None:
        self.adapter = adapter
        self.path = path
        self.options = options
        self.workers = how_many(adapter, path, options, workers)
        self.parts = parts if parts is not None else parts_for(path, workers=self.workers, part_bytes=part_bytes)
        self.report = Report()

    def __iter__(self) -> Iterator[Tables]:
        plan: list[Part] = self.adapter.plan(self.path, options=self.options, parts=self.parts)
        reports: list[Report] = []
        for ds in self._read(plan):
            reports.append(ds.report)
            tables = ds.images, ds.categories, ds.annotations
            del ds  # nothing of this part is held here while the next one is read
            yield tables
            del tables
        shells = [Dataset.build(report=r) for r in reports]
        kinds = list(getattr(self.adapter, "KIND_NAMES", {}).values())
        self.report = merge(shells, report=Report(), kind_order=kinds).report

    def _read(self, plan: list[Part]) -> Iterator[Dataset]:
        name = self.adapter.NAME
        opts = portable(self.options)
        pool = process_pool(min(self.workers, len(plan))) if self.workers > 1 else None
        if pool is None:  # one process: the parts one after the other, here
            for part in plan:
                yield read_one_part(name, part, opts if self.workers > 1 else with_workers(self.options, 1))
            return
        try:
            ahead: deque[Future[Dataset]] = deque()
            todo = iter(plan)
            for part in todo:
                ahead.append(pool.submit(read_one_part, name, part, opts))
                if len(ahead) > self.workers:
                    yield ahead.popleft().result()
            while ahead:
                yield ahead.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
