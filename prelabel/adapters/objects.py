"""What the readers of model objects share: arrays from tensors, class names, masks, and one collector whose
columns go to the shared builder :func:`prelabel.adapters.predictions.from_columns`.

The readers (:mod:`~prelabel.adapters.supervision_detections`, :mod:`~prelabel.adapters.ultralytics_results`,
:mod:`~prelabel.adapters.torchvision_outputs`, :mod:`~prelabel.adapters.huggingface_outputs`) only turn their
framework's objects into per-image arrays (pixel ``xyxy`` boxes, names, scores, masks as RLE, polygons,
keypoints); image names and sizes, drops, boxes of geometries and ``min_score`` are the shared builder's, as for
every prediction table. Every object read is counted in the report: written, or dropped with its reason.

Example:
    >>> import numpy as np
    >>> from prelabel.adapters.objects import Objects
    >>> objs = Objects("demo")
    >>> objs.add("a.jpg", np.array([[0.0, 0.0, 4.0, 2.0]]), category=np.array(["car"], dtype=object),
    ...          score=np.array([0.5]))
    >>> ds = objs.dataset(image_sizes={"a.jpg": (8, 8)})
    >>> ds.annotations[["category", "w", "h", "score", "src_file", "src_line"]].values.tolist()
    [['car', 4.0, 2.0, 0.5, 'demo[a.jpg]', 1]]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ReadError, UsageError
from ..geometry import rle_encode
from ..model import Dataset
from ..report import Report
from .table_build import from_columns

__all__ = ["COCO_KEYPOINTS", "COCO_SKELETON", "Objects", "array", "class_names", "keypoint_arrays",
           "mask_rles", "name_table", "sizes_by_name", "track_attributes", "with_keypoint_names"]

COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")
COCO_SKELETON = ((16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
                 (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7))  # 1-based, as COCO


def array(x: Any, *, dtype: Any = None) -> np.ndarray:
    """A numpy array of a torch tensor (``.detach().cpu().numpy()``), a numpy array or a list. Asked for
    float64, float32 (and float16) values become the shortest decimal they print as, not their binary widening.

    >>> array([[1, 2]], dtype=np.float64).tolist(), array(np.float32([0.66]), dtype=np.float64).tolist()
    ([[1.0, 2.0]], [0.66])
    """
    if hasattr(x, "detach"):
        x = x.detach()
    if hasattr(x, "cpu"):
        x = x.cpu()
    if hasattr(x, "numpy") and not isinstance(x, np.ndarray):
        x = x.numpy()
    a = np.asarray(x)
    if a.dtype in (np.float32, np.float16) and np.dtype(dtype or a.dtype) == np.float64:
        # a model's float32 0.66 is 0.6600000262 as float64: take the decimal it prints as (0.66)
        return np.asarray(a.astype(str).astype(np.float64))
    return np.asarray(a, dtype=dtype)


def name_table(names: Sequence[str] | Mapping[int, str] | None) -> dict[int, str] | None:
    """Class index -> name from a list (index order) or a mapping (Ultralytics' ``.names``).

    >>> name_table(["cat", "dog"]), name_table({1: "dog"})
    ({0: 'cat', 1: 'dog'}, {1: 'dog'})
    """
    if names is None:
        return None
    if isinstance(names, Mapping):
        return {int(k): str(v) for k, v in names.items()}
    if isinstance(names, str):
        raise UsageError("names must be a list of class names (index order) or a {index: name} mapping, "
                         f"not the string {names!r}")
    return {i: str(v) for i, v in enumerate(names)}


def class_names(ids: np.ndarray, table: Mapping[int, str] | None, *,
                skip: frozenset[str] = frozenset()) -> tuple[np.ndarray, np.ndarray]:
    """(names, why) of class indices: a name through ``table`` (the index itself without one), None with the
    reason where the index is not in the table or its name is in ``skip`` (placeholders such as torchvision's
    ``N/A``).

    >>> class_names(np.array([0, 5]), {0: "cat"})[0].tolist()
    ['cat', None]
    """
    flat = np.asarray(ids).reshape(-1)
    names = np.full(len(flat), None, dtype=object)
    why = np.full(len(flat), "no category", dtype=object)
    for k, v in enumerate(flat.tolist()):
        f = float(v)
        if not np.isfinite(f) or f != int(f):
            why[k] = f"class index {v!r} is not an integer"
            continue
        i = int(f)
        if table is None:
            names[k] = str(i)
        elif i not in table:
            why[k] = f"class index {i} is not in names ({len(table)} names)"
        elif table[i] in skip:
            why[k] = f"class index {i} is {table[i]!r} in names, not a category"
        else:
            names[k] = table[i]
    return names, why


def mask_rles(masks: np.ndarray, *, where: str) -> np.ndarray:
    """COCO RLEs of (N, H, W) boolean masks, None for an empty mask (the object keeps its box)."""
    m = np.asarray(masks)
    if m.ndim != 3:
        raise ReadError(where, f"masks: expected shape (N, H, W), got {m.shape}")
    out = np.full(len(m), None, dtype=object)
    for k in range(len(m)):
        if m[k].any():
            out[k] = rle_encode(m[k].astype(bool))
    return out


def sizes_by_name(image_sizes: Any, names: Sequence[str], *, each: str,
                  size: Callable[[Any], Any] = tuple) -> Any:
    """``image_sizes`` as given when None, a mapping or a table; a list of sizes, one per ``each`` (the images
    ``names``, in order), as ``{name: size(s)}``."""
    if image_sizes is None or isinstance(image_sizes, Mapping) or hasattr(image_sizes, "columns"):
        return image_sizes
    listed = list(image_sizes)
    if len(listed) != len(names):
        raise UsageError(f"{len(listed)} image sizes for {len(names)} {each}s",
                         hint=f"give one (width, height) per {each}, or a {{file_name: (w, h)}} mapping")
    return {n: size(s) for n, s in zip(names, listed, strict=True)}


def track_attributes(track: Any, n: int) -> np.ndarray | None:
    """The attributes ``{"track_id": id}`` of ``n`` objects from their track ids; None without track ids."""
    if track is None:
        return None
    out = np.empty(n, dtype=object)
    out[:] = [{"track_id": int(t)} for t in array(track).reshape(-1)]
    return out


def keypoint_arrays(xy: np.ndarray, v: np.ndarray,
                    scores: np.ndarray | None) -> tuple[list[np.ndarray], list[dict[str, Any]] | None]:
    """(COCO (K, 3) keypoints, attributes ``{"keypoint_scores": [...]}`` or None) of N objects from (N, K, 2+)
    pixels ``xy``, (N, K) visibilities ``v`` (a point with ``v = 0`` is ``0, 0, 0``) and (N, K) ``scores``.

    >>> kps, attrs = keypoint_arrays(np.array([[[3.0, 4.0], [5.0, 6.0]]]), np.array([[2.0, 0.0]]), None)
    >>> kps[0].tolist(), attrs
    ([[3.0, 4.0, 2.0], [0.0, 0.0, 0.0]], None)
    """
    kps = [np.column_stack([np.where(vi > 0, p[:, 0], 0.0), np.where(vi > 0, p[:, 1], 0.0), vi])
           for p, vi in zip(xy, v, strict=True)]
    if scores is None:
        return kps, None
    return kps, [{"keypoint_scores": [float(s) for s in row]} for row in scores]


def with_keypoint_names(ds: Dataset, names: Sequence[str] | Mapping[str, Sequence[str]] | None) -> Dataset:
    """``ds`` whose categories that carry keypoints are given the keypoint ``names`` (one list for all, or
    ``{category: list}``), with COCO's skeleton when they are the 17 COCO person keypoints; ``ds`` itself when
    ``names`` is None.

    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]},
    ...     annotations={"image": [0], "category": ["hand"], "x": [1.0], "y": [1.0], "w": [2.0], "h": [2.0],
    ...                  "keypoints": [np.array([[1.0, 1.0, 2.0]])]})
    >>> with_keypoint_names(ds, ["tip"]).categories[["name", "keypoints"]].values.tolist()
    [['hand', ['tip']]]
    """
    if names is None:
        return ds
    cats = ds.categories.copy()
    used = set(ds.annotations.loc[ds.annotations["keypoints"].notna(), "category"])
    for i in cats.index[cats["name"].isin(used)]:
        own = names.get(str(cats.at[i, "name"])) if isinstance(names, Mapping) else names
        if own is None:
            continue
        cats.at[i, "keypoints"] = [str(v) for v in own]
        cats.at[i, "skeleton"] = [list(p) for p in COCO_SKELETON] if list(own) == list(COCO_KEYPOINTS) else None
    return ds.replace(categories=cats)


@dataclass
class Objects:
    """The objects of many images, collected image by image, then built into one Dataset."""

    source: str
    parts: dict[str, list[np.ndarray]] = field(default_factory=dict)
    mask_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)   # image -> (w, h) of its masks
    changes: list[tuple[str, int, str]] = field(default_factory=list)  # kept but changed: (code, row, message)

    def add(self, image: str, xyxy: np.ndarray, *, category: np.ndarray | None, why: np.ndarray | None = None,
            score: np.ndarray | None = None, segmentation: np.ndarray | Sequence[Any] | None = None,
            keypoints: np.ndarray | Sequence[Any] | None = None, attributes: np.ndarray | Sequence[Any] | None = None,
            lines: np.ndarray | None = None) -> None:
        """One image's objects: (N, 4) pixel boxes and N names (None: no category); the other arrays (or lists),
        when given, hold N values. ``lines``: each object's 1-based position in its image's list (default 1..N)."""
        box = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        n = len(box)
        where = f"{self.source}[{image}]"

        def col(v: Any, fill: Any, dtype: Any) -> np.ndarray:
            if v is None:
                return np.full(n, fill, dtype=dtype)
            a = np.asarray(v, dtype=dtype)
            if dtype is object and a.ndim != 1:   # cells that are arrays themselves
                a = np.empty(n, dtype=object)
                a[:] = list(v)
            a = a.reshape(-1)
            if len(a) != n:
                raise ReadError(where, f"{len(a)} values for {n} boxes")
            return a

        for name, value in (("image", np.full(n, image, dtype=object)), ("xyxy", box),
                            ("category", col(category, None, object)), ("why", col(why, "no category", object)),
                            ("score", col(score, np.nan, np.float64)),
                            ("segmentation", col(segmentation, None, object)),
                            ("keypoints", col(keypoints, None, object)), ("attributes", col(attributes, None, object)),
                            ("src_file", np.full(n, where, dtype=object)),
                            ("src_line", col(lines, 0, np.int64) if lines is not None
                             else np.arange(1, n + 1, dtype=np.int64))):
            self.parts.setdefault(name, []).append(value)

    def masks(self, image: str, masks: np.ndarray, n: int, *, shape: str) -> np.ndarray:
        """The RLEs of one image's (N, H, W) boolean masks (:func:`mask_rles`), whose (W, H) is the image's size;
        ``shape`` says the shape expected when they are not ``n`` such masks (a ReadError)."""
        where = f"{self.source}[{image}]"
        if masks.ndim != 3 or len(masks) != n:
            raise ReadError(where, f"{shape} with N = {n}, got {masks.shape}")
        self.mask_sizes[image] = (int(masks.shape[2]), int(masks.shape[1]))
        return mask_rles(masks, where=where)

    def column(self, name: str, dtype: Any, shape: tuple[int, ...] = (0,)) -> np.ndarray:
        got = self.parts.get(name)
        return np.concatenate(got) if got else np.zeros(shape, dtype=dtype)

    def dataset(self, *, categories: Sequence[str] | None = None, image_sizes: Any = None,
                images: str | Path | None = None, min_score: float | None = None,
                report: Report | None = None) -> Dataset:
        """The Dataset of everything added (the shared builder), with ``categories`` declared first."""
        rep = report if report is not None else Report()
        ds = from_columns(
            image=self.column("image", object), category=self.column("category", object),
            xyxy=self.column("xyxy", np.float64, (0, 4)), score=self.column("score", np.float64),
            why=self.column("why", object), segmentation=self.column("segmentation", object),
            keypoints=self.column("keypoints", object), attributes=self.column("attributes", object),
            src_file=self.column("src_file", object), src_line=self.column("src_line", np.int64),
            mask_sizes=self.mask_sizes, categories=categories, image_sizes=image_sizes, images=images,
            min_score=min_score, source=self.source, report=rep)
        if self.changes:   # the readers' own changes (e.g. a mask with no polygon: the box is kept)
            rows = np.asarray([r for _, r, _ in self.changes], dtype=np.intp)
            cats = self.column("category", object)[rows]
            for code in dict.fromkeys(c for c, _, _ in self.changes):
                pick = np.asarray([c == code for c, _, _ in self.changes])
                rep.change(code, pd.DataFrame({
                    "category": cats[pick], "src_file": self.column("src_file", object)[rows[pick]],
                    "src_line": self.column("src_line", np.int64)[rows[pick]],
                    "message": [m for (c, _, m) in self.changes if c == code]}))
        return ds

    @property
    def count(self) -> int:
        """The objects added so far (the row the next one gets, 0-based)."""
        return sum(len(p) for p in self.parts.get("score", []))
