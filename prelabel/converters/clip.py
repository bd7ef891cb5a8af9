"""Geometry clipping to each image (skeleton: the full implementation comes with the clipping work)."""

from __future__ import annotations

from ..model import Dataset

__all__ = ["clip"]


def clip(ds: Dataset, *, enabled: bool = True, min_area: float = 0.0) -> Dataset:
    """Clip every annotation to its image and drop what is empty, degenerate or non-finite."""
    return ds
