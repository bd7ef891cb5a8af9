"""Score filtering for predictions.

Example:
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.score import filter_min_score
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
    ...     annotations={"image": [0, 0], "category": ["a", "a"], "x": [0.0, 0.0], "y": [0.0, 0.0],
    ...                  "w": [1.0, 1.0], "h": [1.0, 1.0], "score": [0.2, 0.9]})
    >>> len(filter_min_score(ds, 0.5)), ds.report.dropped_counts()
    (1, {'dropped.min_score': 1})
"""

from __future__ import annotations

import numpy as np

from ..model import Dataset
from ..report import step_phase

__all__ = ["filter_min_score"]


def filter_min_score(ds: Dataset, min_score: float | None) -> Dataset:
    """Drop predictions whose score is under ``min_score`` (ground truth, with no score, is kept)."""
    if min_score is None:
        return ds
    score = ds.annotations["score"].to_numpy(dtype=np.float64)
    low = score < float(min_score)  # NaN (ground truth) compares False: kept
    if not low.any():
        return ds
    ds.report.drop("dropped.min_score", ds.annotations[low], f"score under --min-score {min_score:g}",
                   phase=step_phase(1, 0))
    return ds.filter(~low)
