"""Coordinates written in another convention than the source's format says (normalized boxes where pixels were
expected): :func:`convention_hints` for a whole dataset, :class:`ConventionStats` gathered chunk by chunk by the
pipeline. ``prelabel inspect`` lists the hints and ``convert`` adds them to the report. Under a score filter the
stats also count the annotations that have no score, which the filter keeps (:meth:`ConventionStats.score_note`).

Example:
    >>> from prelabel.model import Dataset
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [640], "height": [480]},
    ...     annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [2.0], "w": [30.0], "h": [40.0]})
    >>> convention_hints(ds)
    []
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import option
from ..model import Dataset
from ..report import Diagnostic

__all__ = ["ConventionStats", "convention_hints", "source_text"]


def convention_hints(ds: Dataset) -> list[Diagnostic]:
    """Diagnostics (code ``coordinates.suspect``) when the boxes look written in another coordinate convention.

    - every box lies within ``[0, 1]`` although its image is larger than 2 px: the boxes look normalized;
    - else every box lies in the top-left 1/100 (of the width and of the height) of its image: the same.

    Only rows with finite boxes on images larger than 2 x 2 px are looked at; no rows, no hint. (The VOC
    adapter notes 0-based VOC files itself.)

    >>> from prelabel.model import Dataset
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [640], "height": [480]},
    ...     annotations={"image": [0], "category": ["cat"], "x": [0.1], "y": [0.2], "w": [0.3], "h": [0.4]})
    >>> [d.message for d in convention_hints(ds)]
    ['all 1 box(es) lie within [0, 1] although the images are up to 640x480 px: the boxes look normalized: use ReadOptions(normalized=True)']
    """
    stats = ConventionStats()
    stats.add(ds)
    return stats.hints(source_text(ds.report.input.get("source")))


class ConventionStats:
    """What :func:`convention_hints` looks at, gathered one chunk at a time (the streaming pipeline): the
    number of boxes looked at, their extent, and whether every one lies in the top-left 1/100 of its image."""

    def __init__(self) -> None:
        self.k = 0
        self.lo = np.inf    # the smallest x or y of any box corner
        self.hi = -np.inf   # the largest x or y of any box corner
        self.tiny = True    # every box within the top-left 1/100 of its image
        self.max_w = 0
        self.max_h = 0
        self.scored = 0     # annotations the score filter looked at
        self.unscored = 0   # of them, those without a score (kept)

    def count_scores(self, ds: Dataset) -> None:
        """Count the annotations of ``ds`` that the score filter looks at, and those of them without a score."""
        score = ds.annotations["score"].to_numpy(dtype=np.float64)
        self.scored += len(score)
        self.unscored += int(np.isnan(score).sum())

    def score_note(self, src: str, min_score: float | None) -> list[Diagnostic]:
        """``score.missing`` when ``min_score`` kept annotations that have no score: ground truth, or a source
        whose scores were not read (a table's score column under a name prelabel does not know). A warning when
        no annotation had one (the filter did nothing), else info.

        >>> stats = ConventionStats()
        >>> stats.count_scores(Dataset.build(images={"file_name": ["a.jpg"], "width": [9], "height": [9]},
        ...     annotations={"image": [0, 0], "category": ["cat", "cat"], "x": [1.0, 2.0], "y": [1.0, 1.0],
        ...                  "w": [2.0, 2.0], "h": [2.0, 2.0]}))
        >>> [(d.severity, d.message) for d in stats.score_note("preds.csv", 0.5)]  # doctest: +NORMALIZE_WHITESPACE
        [('warning', "none of the 2 annotation(s) has a score: min_score=0.5 kept them all (ground truth, or scores
          not read: a table names its score column with ReadOptions(columns={'score': 'NAME'}))")]
        """
        if min_score is None or not self.unscored:
            return []
        why = f"(ground truth, or scores not read: a table names its score column with {option('columns', 'score=NAME')})"
        if self.unscored == self.scored:
            return [Diagnostic("score.missing", src, f"none of the {self.scored} annotation(s) has a score: "
                                                     f"{option('min_score', min_score)} kept them all {why}")]
        return [Diagnostic("score.missing", src, f"{self.unscored} of {self.scored} annotation(s) have no score: "
                                                 f"{option('min_score', min_score)} kept them {why}", "info")]

    def add(self, ds: Dataset) -> None:
        ann = ds.annotations
        if len(ann) == 0 or len(ds.images) == 0:
            return
        idx = ann["image"].to_numpy(dtype=np.int64)
        valid = (idx >= 0) & (idx < len(ds.images))
        W = np.zeros(len(ann))
        H = np.zeros(len(ann))
        W[valid] = ds.images["width"].to_numpy(dtype=np.float64)[idx[valid]]
        H[valid] = ds.images["height"].to_numpy(dtype=np.float64)[idx[valid]]
        box = ds.boxes
        use = valid & np.isfinite(box).all(axis=1) & (W > 2) & (H > 2)
        k = int(use.sum())
        if k == 0:
            return
        b, W, H = box[use], W[use], H[use]
        x1 = b[:, 0] + b[:, 2]
        y1 = b[:, 1] + b[:, 3]
        self.k += k
        self.lo = min(self.lo, float(min(b[:, 0].min(), b[:, 1].min(), x1.min(), y1.min())))
        self.hi = max(self.hi, float(max(b[:, 0].max(), b[:, 1].max(), x1.max(), y1.max())))
        self.tiny = self.tiny and bool(np.all(x1 <= W / 100.0)) and bool(np.all(y1 <= H / 100.0)) and bool(
            np.all(b[:, 0] <= W / 100.0)) and bool(np.all(b[:, 1] <= H / 100.0))
        self.max_w = max(self.max_w, int(W.max()))
        self.max_h = max(self.max_h, int(H.max()))

    def merge(self, other: ConventionStats) -> None:
        """Add what ``other`` gathered (another part of the same source, gathered elsewhere)."""
        self.k += other.k
        self.lo = min(self.lo, other.lo)
        self.hi = max(self.hi, other.hi)
        self.tiny = self.tiny and other.tiny
        self.max_w = max(self.max_w, other.max_w)
        self.max_h = max(self.max_h, other.max_h)
        self.scored += other.scored
        self.unscored += other.unscored

    def hints(self, src: str) -> list[Diagnostic]:
        if self.k == 0:
            return []
        size = f"{self.max_w}x{self.max_h} px"
        if self.lo >= 0 and self.hi <= 1:
            return [Diagnostic("coordinates.suspect", src,
                               f"all {self.k} box(es) lie within [0, 1] although the images are up to {size}: "
                               f"the boxes look normalized: use {option('normalized', True)}")]
        if self.lo >= 0 and self.tiny:
            return [Diagnostic("coordinates.suspect", src,
                               f"all {self.k} box(es) lie in the top-left 1/100 of their images (up to {size}): "
                               f"the boxes look normalized: use {option('normalized', True)}")]
        return []


def source_text(src: Any) -> str:
    """A report's ``input.source`` as text (several sources joined with commas)."""
    if src is None:
        return ""
    if isinstance(src, (list, tuple)):
        return ", ".join(str(s) for s in src)
    return str(src)
