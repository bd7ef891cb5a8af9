"""Hugging Face ``pipeline("object-detection")`` outputs into a Dataset.

The pipeline returns, per image, a list of ``{"score": float, "label": str, "box": {"xmin", "ymin", "xmax",
"ymax"}}`` with the box in pixels of the image it was given; for a list of images, one such list per image.
Both forms are read: a single image's list goes with one name (``image_names="a.jpg"`` or ``["a.jpg"]``), a
list of lists with one name per image, in order. The pipeline says nothing of the image size: it comes from
``image_sizes`` (``{file_name: (w, h)}``, or one ``(w, h)`` per image in order) or from the image files under
``images`` (their headers). ``label`` is the category name; ``score`` is kept. An object that is not such a
dict, or whose box misses a corner, is dropped (``dropped.invalid``, with the reason), never skipped silently.

Example:
    >>> out = [{"score": 0.98, "label": "cat", "box": {"xmin": 10, "ymin": 20, "xmax": 110, "ymax": 70}}]
    >>> ds = from_huggingface(out, image_names="cats.jpg", image_sizes={"cats.jpg": (640, 480)})
    >>> ds.annotations[["category", "x", "y", "w", "h", "score"]].values.tolist()
    [['cat', 10.0, 20.0, 100.0, 50.0, 0.98]]
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..model import Dataset
from ..report import Report
from .objects import Objects, sizes_by_name

__all__ = ["from_huggingface"]

_CORNERS = ("xmin", "ymin", "xmax", "ymax")


def _per_image(outputs: Any, image_names: str | Sequence[str]) -> list[tuple[str, list[Any]]]:
    """(name, that image's list) pairs: one list with one name, or one list per name."""
    if isinstance(outputs, Mapping):   # a single detection on its own
        outputs = [outputs]
    if not isinstance(outputs, Sequence) or isinstance(outputs, (str, bytes)):
        raise UsageError(f"from_huggingface needs the pipeline's list of detections, got {type(outputs).__name__}")
    names = [image_names] if isinstance(image_names, str) else [str(n) for n in image_names]
    single = isinstance(image_names, str) or (len(names) == 1 and (
        not outputs or any(isinstance(o, Mapping) for o in outputs)))
    if single:
        if len(names) != 1:
            raise UsageError("one image's detections need one image name")
        return [(names[0], list(outputs))]
    if len(outputs) != len(names):
        raise UsageError(f"{len(outputs)} images of detections but {len(names)} image names",
                         hint="give image_names in the order of the images given to the pipeline")
    pairs = []
    for name, dets in zip(names, outputs, strict=True):
        if isinstance(dets, Mapping) or not isinstance(dets, Sequence) or isinstance(dets, (str, bytes)):
            raise UsageError(f"image {name!r}: expected a list of detections, got {type(dets).__name__}",
                             hint="for one image, pass its list and image_names='NAME'")
        pairs.append((name, list(dets)))
    return pairs


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def from_huggingface(outputs: Any, *, image_names: str | Sequence[str], image_sizes: Any = None,
                     images: str | Path | None = None, min_score: float | None = None,
                     source: str = "huggingface", report: Report | None = None) -> Dataset:
    """A Dataset from ``pipeline("object-detection")`` outputs (see the module docstring).

    ``image_names``: the file name of each image, in the order given to the pipeline (a string for one
    image). ``image_sizes``: ``{file_name: (w, h)}`` or a list of ``(w, h)`` in that order; ``images``: the
    images root (sizes from the file headers). ``min_score`` drops lower scores (``dropped.min_score``).

    Example:
        >>> batch = [[{"score": 0.9, "label": "dog", "box": {"xmin": 0, "ymin": 0, "xmax": 32, "ymax": 16}}],
        ...          []]
        >>> ds = from_huggingface(batch, image_names=["a.jpg", "b.jpg"], image_sizes=[(64, 48), (64, 48)])
        >>> len(ds.annotations), ds.report.read
        (1, 1)
    """
    pairs = _per_image(outputs, image_names)
    sizes = sizes_by_name(image_sizes, [name for name, _ in pairs], each="image")
    objs = Objects(source)
    rep = report if report is not None else Report()
    for name, dets in pairs:
        xyxy = np.full((len(dets), 4), np.nan)
        cat = np.full(len(dets), None, dtype=object)
        score = np.full(len(dets), np.nan)
        bad: list[tuple[int, str]] = []
        for k, d in enumerate(dets):
            box = d.get("box") if isinstance(d, Mapping) else None
            if not isinstance(box, Mapping) or any(c not in box for c in _CORNERS):
                bad.append((k, "not a {score, label, box: {xmin, ymin, xmax, ymax}} detection"))
                continue
            xyxy[k] = [_number(box[c]) for c in _CORNERS]
            label = d.get("label")
            cat[k] = str(label) if label is not None and str(label).strip() else None
            score[k] = _number(d.get("score"))
        if bad:   # dropped here, with their reason: they never reach the table
            rep.add_read(len(bad))
            rep.drop("dropped.invalid", pd.DataFrame({
                "category": [None] * len(bad), "src_file": [f"{source}[{name}]"] * len(bad),
                "src_line": [k + 1 for k, _ in bad], "message": [m for _, m in bad]}))
            keep = np.setdiff1d(np.arange(len(dets)), [k for k, _ in bad])
            xyxy, cat, score = xyxy[keep], cat[keep], score[keep]
            lines = keep + 1
        else:
            lines = np.arange(1, len(dets) + 1)
        objs.add(name, xyxy, category=cat, score=score, lines=lines)
    return objs.dataset(image_sizes=sizes, images=images, min_score=min_score, report=rep)
