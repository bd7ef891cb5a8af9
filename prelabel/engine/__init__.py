"""The engine: where a source's parts are read (this process, a process pool, a Dask cluster).

An adapter that can split its source exposes ``plan(path, *, options, parts) -> list[Part]`` and
``read_part(part, *, options) -> Dataset`` (:mod:`prelabel.adapters.parts`); :func:`read_parts` runs the parts
and concatenates them in plan order, the result being the dataset the adapter's whole ``read`` gives. How
many processes: the one worker policy (:func:`prelabel.workers.wanted_workers`: ``workers=N`` here and on
:func:`prelabel.convert`, ``--workers N`` on the command line, ``PRELABEL_WORKERS``; the old per-format
switches are its aliases), processes started as :func:`prelabel.workers.start_method` says.

Example:
    >>> from pathlib import Path
    >>> from prelabel.engine import read_parts
    >>> ds = read_parts(Path("sample_data/voc"), fmt="voc", workers=1)
    >>> len(ds.images) > 0
    True
"""

from __future__ import annotations

from .run import ENGINES, how_many, read_parts, with_workers
from .stream import PartStream

__all__ = ["ENGINES", "PartStream", "how_many", "read_parts", "with_workers"]
