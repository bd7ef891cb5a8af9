"""The one internal annotation model every adapter produces and every later step consumes.

A :class:`Dataset` is three tables (pandas DataFrames, columns not objects) plus the run's :class:`Report`:

``images``
    one row per image, in output order. ``file_name`` (str, relative to the images root, forward slashes, as the
    target will see it), ``width`` and ``height`` (int64 pixels, as annotators see the image: EXIF orientation
    applied), ``path`` (str local path of the image file or None), ``attributes`` (dict or None: image-level
    labels such as CVAT tags or Label Studio choices, the original URL, ...), ``src_file`` (str).
``categories``
    one row per category, in output order. ``name`` (str), ``supercategory`` (str), ``keypoints`` (list of node
    names or None), ``skeleton`` (list of 1-based ``[a, b]`` pairs or None), ``id`` (nullable Int64: the target
    schema's id once reconciliation assigned one; otherwise the writer numbers them 1..K in this order).
``annotations``
    one row per object. ``image`` (int64 row position in ``images``), ``category`` (str name), ``x``, ``y``,
    ``w``, ``h`` (float64 COCO pixel box: continuous coordinates, origin at the top-left corner of the image,
    ``[0, 0, 1, 1]`` covers the first pixel), ``score`` (float64, NaN for ground truth), ``iscrowd`` (int8),
    ``segmentation`` (None for a plain box, a list of 1-D float64 arrays ``[x1, y1, x2, y2, ...]`` for
    polygons, or a COCO RLE dict ``{"size": [h, w], "counts": str | list[int]}``), ``keypoints`` (None or a
    float64 array of shape (K, 3): x, y, v with COCO visibility 0/1/2), ``attributes`` (dict or None),
    ``src_file`` (str) and ``src_line`` (int64, the 1-based line or element index, 0 when unknown): together
    the source location ``file:line``.

For rows with a segmentation, ``x, y, w, h`` is the enclosing box of the geometry. Box-only rows carry
``segmentation = None``. Boxes, scores and ids are numpy columns, so a million boxes is a few arrays, not a
million Python objects; the object columns hold ``None`` (a singleton) for rows that have nothing.

Example:
    >>> from prelabel.model import Dataset
    >>> ds = Dataset.build(
    ...     images={"file_name": ["a.jpg"], "width": [640], "height": [480]},
    ...     categories={"name": ["cat"]},
    ...     annotations={"image": [0], "category": ["cat"], "x": [10.0], "y": [20.0], "w": [30.0], "h": [40.0]},
    ... )
    >>> len(ds), float(ds.annotations.loc[0, "w"])
    (1, 30.0)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .report import Report

__all__ = ["ANNOTATION_COLUMNS", "CATEGORY_COLUMNS", "IMAGE_COLUMNS", "Dataset"]

IMAGE_COLUMNS: dict[str, Any] = {
    "file_name": object, "width": np.int64, "height": np.int64, "path": object, "attributes": object,
    "src_file": object,
}
CATEGORY_COLUMNS: dict[str, Any] = {
    "name": object, "supercategory": object, "keypoints": object, "skeleton": object, "id": "Int64",
}
ANNOTATION_COLUMNS: dict[str, Any] = {
    "image": np.int64, "category": object,
    "x": np.float64, "y": np.float64, "w": np.float64, "h": np.float64,
    "score": np.float64, "iscrowd": np.int8,
    "segmentation": object, "keypoints": object, "attributes": object,
    "src_file": object, "src_line": np.int64,
}
_DEFAULTS: dict[str, Any] = {
    "path": None, "attributes": None, "src_file": "", "supercategory": "", "keypoints": None, "skeleton": None,
    "id": pd.NA, "score": np.nan, "iscrowd": 0, "segmentation": None, "src_line": 0,
}

TableLike = Any  # a DataFrame, a mapping of column name to values, or None


def _table(data: TableLike, columns: dict[str, Any], what: str) -> pd.DataFrame:
    """The table with ``columns`` first, in that order and with those dtypes (a missing one filled with its
    default), then the other columns given; built in one step (a part's tables are built for every part of a
    stream: column by column, this took 13 ms a part and 3.6 ms an empty table)."""
    # no copy of the caller's columns: pandas' copy-on-write keeps the caller's frame unchanged when this one
    # changes; arrays from a mapping are used as they are (the adapters hand over arrays they no longer touch)
    if isinstance(data, pd.DataFrame):
        frame = data
    else:
        frame = pd.DataFrame(dict(data) if data is not None else {}, copy=False)
    index = frame.index
    if not (isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1):
        frame = frame.reset_index(drop=True)
    n = len(frame)
    given = set(frame.columns)
    out: dict[Any, Any] = {}
    for col, dtype in columns.items():
        if col in given:
            values = frame[col]
            out[col] = values if values.dtype == dtype else values.astype(dtype)
            continue
        if col not in _DEFAULTS and data is not None:
            raise KeyError(f"{what} table needs a '{col}' column")
        default = _DEFAULTS.get(col)
        if dtype is object:  # a Series: an object array of strings in a frame would be read as pandas' str
            out[col] = pd.Series(np.full(n, default, dtype=object), index=frame.index, dtype=object, copy=False)
        else:
            out[col] = np.full(n, default, dtype=dtype) if isinstance(dtype, type) else pd.array([default] * n,
                                                                                                  dtype=dtype)
    for col in frame.columns:
        if col not in columns:
            out[col] = frame[col]
    return pd.DataFrame(out, index=frame.index, copy=False)


@dataclass
class Dataset:
    """Images, categories and annotations as columns, plus the Report of everything that happened to them."""

    images: pd.DataFrame
    categories: pd.DataFrame
    annotations: pd.DataFrame
    report: Report = field(default_factory=Report)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, *, images: TableLike = None, categories: TableLike = None, annotations: TableLike = None,
              report: Report | None = None, add_missing_categories: bool = True) -> Dataset:
        """Build a Dataset from column mappings or DataFrames, filling defaults and fixing dtypes.

        Categories used by annotations but missing from ``categories`` are appended in first-seen order
        (unless ``add_missing_categories`` is False). Columns are not copied: numpy arrays given in a mapping
        become the Dataset's columns (don't change them afterwards); a DataFrame given is left unchanged
        (copy-on-write).
        """
        img = _table(images, IMAGE_COLUMNS, "images")
        cat = _table(categories, CATEGORY_COLUMNS, "categories")
        ann = _table(annotations, ANNOTATION_COLUMNS, "annotations")
        if add_missing_categories and len(ann):
            known = set(cat["name"])
            seen = pd.unique(ann["category"].to_numpy())
            missing = [c for c in seen if c not in known and c is not None]
            if missing:
                cat = pd.concat([cat, _table({"name": missing}, CATEGORY_COLUMNS, "categories")],
                                ignore_index=True)
        if report is None:
            report = Report()
            report.add_read(len(ann))  # a Dataset built from scratch has read what it holds
        return cls(images=img, categories=cat, annotations=ann, report=report)

    @classmethod
    def empty(cls) -> Dataset:
        return cls.build()

    def replace(self, *, images: pd.DataFrame | None = None, categories: pd.DataFrame | None = None,
                annotations: pd.DataFrame | None = None) -> Dataset:
        """A Dataset sharing this one's report, with some tables replaced."""
        return Dataset(
            images=self.images if images is None else images.reset_index(drop=True),
            categories=self.categories if categories is None else categories.reset_index(drop=True),
            annotations=self.annotations if annotations is None else annotations.reset_index(drop=True),
            report=self.report,
        )

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.annotations)

    def __repr__(self) -> str:
        return (f"Dataset(images={len(self.images)}, categories={len(self.categories)}, "
                f"annotations={len(self.annotations)})")

    @property
    def boxes(self) -> np.ndarray:
        """The (N, 4) float64 array of ``[x, y, w, h]`` boxes."""
        return np.asarray(self.annotations[["x", "y", "w", "h"]].to_numpy(dtype=np.float64))

    @property
    def file_names(self) -> pd.Series:
        """Each annotation's image file name, aligned with ``annotations`` (no join needed):
        ``ds.annotations.assign(file_name=ds.file_names)``.

        >>> ds = Dataset.build(images={"file_name": ["a.jpg", "b.jpg"], "width": [8, 8], "height": [8, 8]},
        ...     annotations={"image": [1], "category": ["cat"], "x": [1.0], "y": [1.0], "w": [2.0], "h": [2.0]})
        >>> ds.file_names.tolist()
        ['b.jpg']
        """
        names = self.images["file_name"].to_numpy(dtype=object)[self.annotations["image"].to_numpy()]
        return pd.Series(names, index=self.annotations.index, name="file_name", dtype=object)

    @property
    def category_names(self) -> list[str]:
        return [str(n) for n in self.categories["name"]]

    @property
    def all_category_names(self) -> list[str]:
        """The category table's names, then the names the annotations use that it lacks, in first-seen order.

        >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]},
        ...     categories={"name": ["cat"]}, annotations={"image": [0, 0], "category": ["dog", "cat"],
        ...     "x": [1.0, 1.0], "y": [1.0, 1.0], "w": [2.0, 2.0], "h": [2.0, 2.0]})
        >>> ds.all_category_names
        ['cat', 'dog']
        """
        names = self.category_names
        if len(self.annotations):
            seen = set(names)
            names.extend(str(c) for c in pd.unique(self.annotations["category"].astype(str).to_numpy())
                         if str(c) not in seen)
        return names

    def image_sizes(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-annotation image (width, height) as float64 arrays."""
        idx = self.annotations["image"].to_numpy()
        w = self.images["width"].to_numpy(dtype=np.float64)[idx]
        h = self.images["height"].to_numpy(dtype=np.float64)[idx]
        return w, h

    def filter(self, keep: np.ndarray | pd.Series, *, reason: str | None = None, message: str = "") -> Dataset:
        """Keep the annotation rows where ``keep`` is True.

        With ``reason`` (a code of your own, e.g. ``"dropped.my_filter"``) the other rows are recorded in the
        report as dropped for it, so the ledger (read = written + dropped) still balances; without it the caller
        records them (``ds.report.drop(reason, rows)``), or :func:`prelabel.write_dataset` warns that the ledger
        does not balance.

        >>> import prelabel
        >>> ds = prelabel.read("sample_data/voc")
        >>> small = ds.filter(ds.annotations["w"] >= 20, reason="dropped.too_small", message="under 20 px wide")
        >>> len(ds.annotations) == len(small.annotations) + small.report.dropped_counts()["dropped.too_small"]
        True
        """
        mask = np.asarray(keep, dtype=bool)
        if reason is not None and not mask.all():
            self.report.drop(reason, self.annotations[~mask], message)
        return self.replace(annotations=self.annotations[mask])

    # ------------------------------------------------------------------ merging
    @classmethod
    def concat(cls, datasets: Sequence[Dataset], *, report: Report | None = None) -> Dataset:
        """Merge datasets: images appended (annotation image indices shifted), categories united by name
        in first-seen order (keypoints and skeleton from the first that defines them), reports merged: each
        distinct report once (streamed chunks share one report, which then is the result's report as it is).

        >>> a = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]})
        >>> b = Dataset.build(images={"file_name": ["b.jpg"], "width": [8], "height": [8]}, report=a.report)
        >>> a.report.read = 7
        >>> merged = Dataset.concat([a, b])
        >>> len(merged.images), merged.report.read, merged.report is a.report
        (2, 7, True)
        """
        shared = {id(ds.report) for ds in datasets}
        if report is None and len(shared) == 1 and datasets:
            report = datasets[0].report
        rep = report or Report()
        merged_ids: set[int] = {id(rep)}
        imgs: list[pd.DataFrame] = []
        anns: list[pd.DataFrame] = []
        cats: list[pd.DataFrame] = []
        offset = 0
        for ds in datasets:
            imgs.append(ds.images)
            a = ds.annotations.copy()
            a["image"] = a["image"].to_numpy() + offset
            anns.append(a)
            cats.append(ds.categories)
            offset += len(ds.images)
            if id(ds.report) not in merged_ids:
                merged_ids.add(id(ds.report))
                rep.merge(ds.report)
        cat = (pd.concat(cats, ignore_index=True) if cats else None)
        if cat is not None and len(cat):
            cat = cat.drop_duplicates(subset="name", keep="first")
        return cls.build(
            images=pd.concat(imgs, ignore_index=True) if imgs else None,
            categories=cat,
            annotations=pd.concat(anns, ignore_index=True) if anns else None,
            report=rep,
        )


def object_column(values: Iterable[Any], n: int | None = None) -> pd.Series:
    """An object Series (helper for segmentation / keypoints / attributes columns)."""
    data = list(values)
    if n is not None and len(data) != n:
        raise ValueError(f"expected {n} values, got {len(data)}")
    return pd.Series(data, dtype=object)
