"""The conversion's steps on one chunk of whole images, wherever the chunk is: the recorded sizes checked against
the image files, the coordinate conventions gathered, the score filter (:meth:`ChunkSteps.before`), then, after
the categories are reconciled (:class:`~prelabel.converters.reconcile.Reconciler`), clipping
(:meth:`ChunkSteps.after`). The pipeline's loop runs them here on each chunk; the Dask engine runs the same
steps on its workers, each on its own partition (:mod:`prelabel.distributed`).

Example:
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.conventions import ConventionStats
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]},
    ...     annotations={"image": [0, 0], "category": ["cat", "cat"], "x": [1.0, 6.0], "y": [1.0, 1.0],
    ...                  "w": [2.0, 4.0], "h": [2.0, 2.0], "score": [0.9, 0.2]})
    >>> steps = ChunkSteps(min_score=0.5)
    >>> kept = steps.after(steps.before(ds, ConventionStats()))
    >>> kept.boxes.tolist(), ds.report.dropped_counts()
    ([[1.0, 1.0, 2.0, 2.0]], {'dropped.min_score': 1})
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..model import Dataset
from .clip import clip
from .conventions import ConventionStats
from .score import filter_min_score
from .sizes import check_sizes

__all__ = ["ChunkSteps", "size_rule"]


def size_rule(adapter: Any) -> bool | None:
    """How an adapter's recorded image sizes are checked (:func:`check_sizes`): ``True`` when its coordinates
    are relative to the image size (they then follow the image file), ``False`` for pixel coordinates, ``None``
    when it records no size (its sizes already come from the image headers: nothing to check).

    >>> from prelabel import adapters
    >>> size_rule(adapters.get("yolo")), size_rule(adapters.get("coco"))
    (None, False)
    """
    if getattr(adapter, "SIZES_FROM_HEADERS", False):
        return None
    return bool(getattr(adapter, "RELATIVE_SIZES", False))


@dataclass(frozen=True, kw_only=True)
class ChunkSteps:
    """The options of the steps around reconciliation, as :func:`prelabel.pipeline.convert` was given them
    (``relative``: :func:`size_rule` of the source's format). Plain values: sent to Dask workers as they are."""

    min_score: float | None = None
    clip: bool = True
    min_area: float = 0.0
    min_size: float = 0.0
    relative: bool | None = False

    def before(self, chunk: Dataset, stats: ConventionStats) -> Dataset:
        """Sizes checked, conventions (and, under ``min_score``, the annotations without a score) gathered into
        ``stats``, scores filtered (what they drop or note goes to the chunk's report)."""
        if self.relative is not None:
            chunk = check_sizes(chunk, relative=self.relative)
        stats.add(chunk)
        if self.min_score is not None:
            stats.count_scores(chunk)
        return filter_min_score(chunk, self.min_score)

    def after(self, ds: Dataset) -> Dataset:
        """Clipped to the images, with ``min_area`` and ``min_size`` (or kept as they are without ``clip``)."""
        return clip(ds, enabled=self.clip, min_area=self.min_area, min_size=self.min_size)
