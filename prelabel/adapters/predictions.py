"""Prediction tables: CSV / TSV / Parquet files and pandas DataFrames; :func:`from_columns` builds the Dataset
of model objects (:mod:`prelabel.adapters.objects`: supervision, Ultralytics, torchvision, Hugging Face).

One row per object. Columns are found by *role*, case-insensitively, from the names below (the first that
exists wins); ``columns={"role": "column"}`` (``--column role=column`` on the command line) overrides any role.

========== ==========================================================================================
role       recognised column names (case-insensitive, first match wins)
========== ==========================================================================================
image      ``image``, ``filename``, ``file_name``, ``image_path``, ``img_filename``, ``path``,
           ``img_path``, ``image_name``, ``image_file`` (a file name relative to the images root)
image_id   ``image_id``, ``img_id`` (used when there is no file-name column; an ``image_sizes`` table
           with ``id``/``image_id`` and ``file_name`` columns gives the names, else the id is the name)
category   ``class``, ``category``, ``label``, ``class_name``, ``cat_name``, ``name``, ``category_name``,
           ``label_name`` (a category name)
class_id   ``class_id``, ``category_id``, ``cls``, ``cat_id``, ``label_id``, ``class_index`` (an index into
           ``names``; without ``names`` the index itself is the name). A numeric ``category`` column is
           read as an index too.
box        ``xyxy``: ``xmin, ymin, xmax, ymax`` / ``x1, y1, x2, y2`` / ``x_min, ...`` / ``left, top,
           right, bottom`` / ``ann_bbox_xmin, ...`` (pylabel); ``cxcywh``: ``cx, cy`` / ``x_center,
           y_center`` / ``xc, yc`` / ``center_x, center_y`` with ``w, h`` / ``width, height``; ``xywh``:
           ``x, y`` with ``w, h`` / ``width, height``. Tried in that order unless ``box_format`` says
           which. Roles for overrides: ``x1 y1 x2 y2``, ``cx cy``, ``x y``, ``w h``.
score      ``score``, ``confidence``, ``conf``, ``probability``, ``prob``
width      ``width``, ``img_width``, ``image_width``, ``img_w``, ``image_w`` (image size, pixels; a column
height     ``height``, ``img_height``, ``image_height``, ``img_h``, ``image_h``  the box already uses is skipped)
polygon    ``polygon``, ``segmentation``, ``points``, ``poly`` (flat ``[x1, y1, ...]``, a list of such
           lists, or ``[[x, y], ...]``; a list or a JSON string)
rle        ``rle``, ``mask`` (a COCO RLE dict ``{"size": [h, w], "counts": ...}`` or its JSON string)
keypoints  ``keypoints``, ``kpts`` (flat ``[x, y, v, ...]``, ``(K, 3)`` or ``(K, 2)``; a list or JSON)
iscrowd    ``iscrowd``
========== ==========================================================================================

So the TensorFlow Object Detection CSV (``filename,width,height,class,xmin,ymin,xmax,ymax`` plus an optional
``score``) needs no options at all.

Decisions (documented, tested):

- **Image sizes** come from the width/height columns, else ``image_sizes`` (a ``{file_name: (w, h)}``
  mapping or a DataFrame with a name or id column and width/height), else the image file's header under the
  images root (``images=`` / ``--images``; never decoded), else a supervision mask's shape. A row whose image
  has no size, no name, or an unsafe name (``../x.jpg``) is dropped as ``dropped.no_image`` with its row.
  Absolute image paths are made relative to the images root when under it, else to their common folder;
  only files under the images root are ever opened (an absolute path elsewhere needs a size column).
  The images table holds the images the rows name, in first-seen order.
- **Normalized or pixels**: ``normalized=True/False`` (``--normalized/--absolute``) decides. Left unset,
  boxes whose values are *all* within [0, 1] while every known image is larger than 2 px are read as
  normalized, and a ``coordinates.suspect`` warning says so (``--strict`` then fails: be explicit).
- **NaN / infinite boxes** are dropped here as ``dropped.nonfinite`` (with their row), not passed on.
- **Non-numeric box values** raise :class:`~prelabel.errors.ReadError` naming the file and line.
- Source locations: CSV ``file:line`` with the header on line 1 (first data row = line 2), Parquet
  ``file:row`` (1-based), DataFrames ``dataframe:row`` with the 1-based row position (``dataframe:1`` is the
  first row; a 0-based index would read as "no line"). Model objects: ``source[image]:k``, the k-th object.
- Rows with a polygon or mask take their box from the geometry (``recomputed`` when it differed).
- **Streaming** (:func:`iter_chunks`, for huge files): the same dataset and report as :func:`read`, in chunks
  of whole images, when each image's rows are together (one model output per image); otherwise, or when the
  whole file decides something late (normalized boxes, a class column of numbers and text), it raises
  ``NeedsWholeRead`` and the caller reads the file whole.

Everything is done on whole columns (numpy and pandas), never row by row; only polygon, mask and keypoint
cells are parsed one by one.

Example:
    >>> import pandas as pd
    >>> from prelabel.adapters.predictions import from_dataframe
    >>> df = pd.DataFrame({"filename": ["a.jpg", "a.jpg"], "width": [100, 100], "height": [50, 50],
    ...                    "class": ["cat", "dog"], "xmin": [10, 0], "ymin": [5, 0], "xmax": [30, 8],
    ...                    "ymax": [25, 8], "score": [0.9, 0.2]})
    >>> ds = from_dataframe(df, min_score=0.5)
    >>> ds.annotations[["category", "x", "y", "w", "h", "score"]].values.tolist()
    [['cat', 10.0, 5.0, 20.0, 20.0, 0.9]]
    >>> ds.report.dropped_counts()
    {'dropped.min_score': 1}
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import posixpath
import re
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..converters.score import filter_min_score
from ..errors import ReadError, UsageError, option
from ..geometry import bbox_of_polygons, rle_bbox
from ..imagesize import image_sizes as read_image_sizes
from ..model import ANNOTATION_COLUMNS, Dataset
from ..paths import image_name, is_url, safe_relative, why_unsafe
from ..report import Report
from .base import DEFAULT_CHUNK_ROWS, NeedsWholeRead, ReadOptions
from .parts import RowRange

__all__ = ["BOX_FORMATS", "DESCRIPTION", "NAME", "ROLE_COLUMNS", "auto_workers", "detect", "from_columns",
           "from_dataframe", "iter_chunks", "plan", "read", "read_part"]

NAME = "predictions"
DESCRIPTION = "prediction tables: CSV / TSV / Parquet (TF Object Detection CSV, pylabel, ...) and DataFrames"

ROLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "image": ("image", "filename", "file_name", "image_path", "img_filename", "path", "img_path", "image_name",
              "image_file"),
    "image_id": ("image_id", "img_id"),
    "category": ("class", "category", "label", "class_name", "cat_name", "name", "category_name", "label_name"),
    "class_id": ("class_id", "category_id", "cls", "cat_id", "label_id", "class_index"),
    "x1": ("xmin", "x1", "x_min", "left", "ann_bbox_xmin", "bbox_xmin"),
    "y1": ("ymin", "y1", "y_min", "top", "ann_bbox_ymin", "bbox_ymin"),
    "x2": ("xmax", "x2", "x_max", "right", "ann_bbox_xmax", "bbox_xmax"),
    "y2": ("ymax", "y2", "y_max", "bottom", "ann_bbox_ymax", "bbox_ymax"),
    "cx": ("cx", "x_center", "xc", "center_x", "x_c", "cx_norm"),
    "cy": ("cy", "y_center", "yc", "center_y", "y_c", "cy_norm"),
    "x": ("x", "bbox_x", "box_x"),
    "y": ("y", "bbox_y", "box_y"),
    "w": ("w", "width", "bbox_w", "box_w", "bbox_width", "box_width"),
    "h": ("h", "height", "bbox_h", "box_h", "bbox_height", "box_height"),
    "score": ("score", "confidence", "conf", "probability", "prob"),
    "width": ("width", "img_width", "image_width", "img_w", "image_w"),
    "height": ("height", "img_height", "image_height", "img_h", "image_h"),
    "polygon": ("polygon", "segmentation", "points", "poly"),
    "rle": ("rle", "mask"),
    "keypoints": ("keypoints", "kpts"),
    "iscrowd": ("iscrowd",),
    "bbox": ("bbox", "box", "bounding_box"),  # one column holding a box as "[x, y, w, h]" (Kaggle style)
}
BOX_FORMATS: dict[str, tuple[str, str, str, str]] = {
    "xyxy": ("x1", "y1", "x2", "y2"),
    "cxcywh": ("cx", "cy", "w", "h"),
    "xywh": ("x", "y", "w", "h"),
}
_ROLE_ALIASES = {"xmin": "x1", "ymin": "y1", "xmax": "x2", "ymax": "y2", "class": "category", "label": "category",
                 "filename": "image", "file_name": "image", "confidence": "score", "conf": "score",
                 "mask": "rle", "segmentation": "polygon", "x_center": "cx", "y_center": "cy", "cls": "class_id",
                 "category_id": "class_id"}
_NA_TOKENS = {"", "nan", "na", "n/a", "null", "none", "-nan", "inf", "-inf", "+inf", "infinity", "-infinity"}
_SUFFIXES_CSV = (".csv", ".tsv", ".tab")
_SUFFIXES_PARQUET = (".parquet", ".pq")
_BOX_TOLERANCE = 0.01  # px: a stored box further than this from its geometry's box is reported as recomputed


# ---------------------------------------------------------------------------------------------- columns
@dataclass
class _Roles:
    """Role -> actual column name, and the box format the box roles describe."""

    found: dict[str, str] = field(default_factory=dict)
    box_format: str | None = None


def _resolve_roles(columns: Sequence[Any], *, overrides: Mapping[str, str], box_format: str | None,
                   file: str) -> _Roles:
    """Map roles to columns (overrides first, then the default names); raise ReadError when required ones miss."""
    actual = [str(c) for c in columns]
    lower: dict[str, str] = {}
    for c in actual:
        lower.setdefault(c.strip().lower(), c)
    roles = _Roles()
    used: set[str] = set()
    for role, col in overrides.items():
        key = _ROLE_ALIASES.get(role.strip().lower(), role.strip().lower())
        if key not in ROLE_COLUMNS:
            raise UsageError(f"unknown column role {role!r}",
                             hint=f"roles are: {', '.join(ROLE_COLUMNS)}")
        name = col if col in actual else lower.get(str(col).strip().lower())
        if name is None:
            raise ReadError(file, f"column {col!r} (given for role {role!r}) is not in the table; columns found: "
                                  f"{', '.join(actual) or '(none)'}",
                            hint=f"check the spelling of {option('columns', 'ROLE=NAME')}")
        roles.found[key] = name
        used.add(name)

    def pick(role: str) -> str | None:
        if role in roles.found:
            return roles.found[role]
        for cand in ROLE_COLUMNS[role]:
            name = lower.get(cand)
            if name is not None and name not in used:
                roles.found[role] = name
                used.add(name)
                return name
        return None

    if pick("image") is None:
        pick("image_id")
    if pick("category") is None:
        pick("class_id")

    if box_format is not None and box_format not in BOX_FORMATS:
        raise UsageError(f"unknown box format {box_format!r}", hint="use xyxy, xywh or cxcywh")
    fmt = box_format
    if fmt is None:  # an override of a format-specific role decides
        for name, rs in BOX_FORMATS.items():
            if any(r in _override_roles(overrides) for r in rs[:2]):
                fmt = name
                break
    candidates = [fmt] if fmt else list(BOX_FORMATS)
    for fmt_name in candidates:
        rs = BOX_FORMATS[fmt_name]
        trial = {r: roles.found.get(r) for r in rs}
        taken = set(used)
        ok = True
        for r in rs:
            if trial[r] is not None:
                continue
            hit = next((lower[c] for c in ROLE_COLUMNS[r] if c in lower and lower[c] not in taken), None)
            if hit is None:
                ok = False
                break
            trial[r] = hit
            taken.add(hit)
        if ok:
            for r, chosen in trial.items():
                if chosen is not None:
                    roles.found[r] = chosen
                    used.add(chosen)
            roles.box_format = fmt_name
            break
    if roles.box_format is None and fmt in (None, "xywh"):
        _box_fallbacks(roles, lower, used, fmt=fmt)
    for role in ("score", "width", "height", "polygon", "rle", "keypoints", "iscrowd"):
        pick(role)

    missing: list[str] = []
    if "image" not in roles.found and "image_id" not in roles.found:
        missing.append("image (" + ", ".join(ROLE_COLUMNS["image"][:6]) + ", or image_id)")
    if "category" not in roles.found and "class_id" not in roles.found:
        missing.append("category (" + ", ".join(ROLE_COLUMNS["category"][:6]) + ", or class_id with names)")
    if roles.box_format is None and "polygon" not in roles.found and "rle" not in roles.found:
        if fmt:
            want = ", ".join(BOX_FORMATS[fmt])
            missing.append(f"box ({fmt}: columns for roles {want})")
        else:
            missing.append("box (xmin, ymin, xmax, ymax | x, y, w, h | cx, cy, w, h)")
    if missing:
        raise ReadError(file, f"missing columns for role(s): {'; '.join(missing)}. Columns found: "
                              f"{', '.join(actual) or '(none)'}",
                        hint=f"name them with {option('columns', 'ROLE=NAME')}, for example "
                             f"{option('columns', 'image=<file-name column>')}"
                             + (f"; a box as x, y, width, height columns: {option('columns', 'x=xmin')} "
                                f"{option('columns', 'w=width')} ... with {option('box_format', 'xywh')}"
                                if any(m.startswith("box") for m in missing) else ""))
    return roles


def _box_fallbacks(roles: _Roles, lower: Mapping[str, str], used: set[str], *, fmt: str | None) -> None:
    """The common layouts that match no box format by name: ``xmin, ymin, width, height`` (a corner and a size,
    with no ``xmax``) and one ``bbox`` column holding ``[x, y, w, h]``; both are ``xywh``."""
    def first(role: str) -> str | None:
        return next((lower[c] for c in ROLE_COLUMNS[role] if c in lower and lower[c] not in used), None)

    corner = (first("x1"), first("y1"), first("w"), first("h"))
    if all(corner) and first("x2") is None and first("y2") is None:
        for role, col in zip(("x", "y", "w", "h"), corner, strict=True):
            roles.found[role] = str(col)
            used.add(str(col))
        roles.box_format = "xywh"
        return
    col = first("bbox")
    if col is not None:
        roles.found["bbox"] = col
        used.add(col)
        roles.box_format = fmt or "xywh"


def _split_bbox(df: pd.DataFrame, roles: _Roles) -> tuple[pd.DataFrame, _Roles]:
    """A ``bbox`` column of ``"[x, y, w, h]"`` texts as four numeric columns (a cell that is not four numbers
    gives NaN there, dropped with its line as any missing coordinate)."""
    col = roles.found["bbox"]
    text = df[col].astype(str).str.strip().str.strip("[]()").str.strip()
    parts = text.str.split(r"\s*[,;\s]\s*", expand=True, regex=True)
    parts = parts.reindex(columns=range(max(4, parts.shape[1])))
    nums = parts.iloc[:, :4].apply(pd.to_numeric, errors="coerce")
    if parts.shape[1] > 4:  # more than four numbers: not a box
        nums[parts.iloc[:, 4:].notna().to_numpy().any(axis=1)] = np.nan
    out = df.copy()
    names = BOX_FORMATS[roles.box_format or "xywh"]
    found = dict(roles.found)
    for i, role in enumerate(names):
        key = f"{col}[{i}]"
        out[key] = nums[i].to_numpy(dtype=np.float64)
        found[role] = key
    return out, _Roles(found=found, box_format=roles.box_format)


def _override_roles(overrides: Mapping[str, str]) -> set[str]:
    return {_ROLE_ALIASES.get(k.strip().lower(), k.strip().lower()) for k in overrides}


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if not str(v).strip().startswith("-") else -math.inf
    except (TypeError, ValueError):
        return math.nan


def _numeric(col: pd.Series, *, role: str, file: str, lines: np.ndarray,
             invalid: dict[int, str] | None = None) -> np.ndarray:
    """A float64 array of a column. A value that is neither a number nor empty raises ReadError (file, line),
    or, given ``invalid`` (row -> why), is NaN there and its row is recorded in it: the row is dropped as
    ``dropped.invalid`` and the rest of the table converts."""
    def refuse(rows: np.ndarray, shown: Any) -> None:
        if invalid is None:
            k = int(rows[0])
            raise ReadError(file, f"column {col.name!r} ({role}): {shown(k)!r} is not a number", line=int(lines[k]))
        for k in rows.tolist():
            invalid.setdefault(int(k), f"column {col.name!r} ({role}): {shown(k)!r} is not a number")

    dt = col.dtype
    if pd.api.types.is_bool_dtype(dt):  # true / false (pandas reads a column of them as bool): not coordinates
        present = np.flatnonzero(col.notna().to_numpy())
        if len(present):
            refuse(present, lambda k: bool(col.to_numpy()[k]))
        return np.full(len(col), np.nan)
    if isinstance(dt, np.dtype) and dt.kind in "fiu":
        return np.asarray(col.to_numpy(dtype=np.float64))
    if pd.api.types.is_numeric_dtype(dt):  # nullable extension types
        return np.asarray(col.to_numpy(dtype=np.float64, na_value=np.nan))
    try:
        conv = pd.to_numeric(col, errors="coerce")
    except OverflowError:  # an integer of hundreds of digits: too large for any float, so infinite
        conv = pd.Series([_to_float(v) for v in col.to_numpy()], index=col.index, dtype=np.float64)
    out = np.array(conv.to_numpy(dtype=np.float64, na_value=np.nan), dtype=np.float64)
    raw_values = col.to_numpy()
    # a bool among other values (pieces of a table joined): to_numeric makes it 1 or 0; it is not a number
    is_bool = np.fromiter((type(v) is bool or type(v) is np.bool_ for v in raw_values), dtype=bool,
                          count=len(raw_values))
    out[is_bool] = np.nan
    bad = np.isnan(out) & col.notna().to_numpy()
    if bad.any():
        idx = np.flatnonzero(bad)
        raw = col.to_numpy()[idx]
        tokens = np.array([str(v).strip().lower() for v in raw], dtype=object)
        real = ~np.isin(tokens, list(_NA_TOKENS))
        if real.any():
            refuse(idx[np.flatnonzero(real)], lambda k: col.to_numpy()[k])
        out[idx[np.isin(tokens, ["inf", "+inf", "infinity"])]] = np.inf
        out[idx[np.isin(tokens, ["-inf", "-infinity"])]] = -np.inf
    return out


def _repeat(value: str, n: int) -> np.ndarray:
    """An object array of ``n`` references to one string (np.full with a str is 10x slower)."""
    return np.array([value], dtype=object)[np.zeros(n, dtype=np.intp)]


# ---------------------------------------------------------------------------------------------- images
def _id_key(v: Any) -> str:
    """A lookup key for an image id: 5, 5.0 and "5" are the same image."""
    if isinstance(v, (bool, np.bool_)):
        return str(v)
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)) and math.isfinite(v) and float(v).is_integer():
        return str(int(v))
    s = str(v).strip()
    return str(int(s)) if re.fullmatch(r"[+-]?\d+", s) else s


@dataclass
class _SizeTable:
    by_name: dict[str, tuple[int, int]] = field(default_factory=dict)
    by_id: dict[str, tuple[int, int]] = field(default_factory=dict)
    name_of_id: dict[str, str] = field(default_factory=dict)


def _valid_size(w: Any, h: Any) -> tuple[int, int] | None:
    try:
        fw, fh = float(w), float(h)
    except (TypeError, ValueError):
        return None
    if not (math.isfinite(fw) and math.isfinite(fh)) or fw < 1 or fh < 1:
        return None
    return int(round(fw)), int(round(fh))


def _size_table(image_sizes: Any) -> _SizeTable:
    out = _SizeTable()
    if image_sizes is None:
        return out
    if isinstance(image_sizes, pd.DataFrame):
        cols = {str(c).strip().lower(): c for c in image_sizes.columns}

        def first(cands: Sequence[str]) -> Any:
            return next((cols[c] for c in cands if c in cols), None)

        name_col = first(ROLE_COLUMNS["image"])
        id_col = first(("id", *ROLE_COLUMNS["image_id"]))
        w_col = first(ROLE_COLUMNS["width"])
        h_col = first(ROLE_COLUMNS["height"])
        if (name_col is None and id_col is None) or w_col is None or h_col is None:
            raise UsageError("image_sizes: the table needs a file-name (or id) column and width/height columns",
                             hint=f"columns found: {', '.join(map(str, image_sizes.columns))}")
        names = image_sizes[name_col].tolist() if name_col is not None else None
        ids = image_sizes[id_col].tolist() if id_col is not None else None
        for k, (w, h) in enumerate(zip(image_sizes[w_col].tolist(), image_sizes[h_col].tolist(), strict=True)):
            size = _valid_size(w, h)
            if names is not None and names[k] is not None and not _isna(names[k]):
                if size is not None:
                    out.by_name[str(names[k])] = size
                if ids is not None:
                    out.name_of_id[_id_key(ids[k])] = str(names[k])
            if ids is not None and size is not None:
                out.by_id[_id_key(ids[k])] = size
        return out
    if isinstance(image_sizes, Mapping):
        for key, val in image_sizes.items():
            if isinstance(val, Mapping):
                size = _valid_size(val.get("width"), val.get("height"))
            else:
                try:
                    size = _valid_size(val[0], val[1])
                except (TypeError, IndexError, KeyError):
                    size = None
            if size is None:
                raise UsageError(f"image_sizes[{key!r}]: expected (width, height) in pixels, got {val!r}")
            out.by_name[str(key)] = size
            out.by_id[_id_key(key)] = size
        return out
    raise UsageError("image_sizes must be a mapping {file_name: (width, height)} or a DataFrame")


def _isna(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


@dataclass
class _Images:
    """Per-row image index (-1 when the row's image is unusable), why, and the images table."""

    row_image: np.ndarray
    raw_codes: np.ndarray
    why: dict[int, str]                # raw image code -> why its rows are dropped
    table: pd.DataFrame
    row_name: np.ndarray               # per row: code into ``names`` (-1 = no usable name)
    names: np.ndarray                  # object array: every distinct image name, with a size or not


_MAX_SIDE = 2**31 - 1  # the largest image width/height accepted


def _is_absolute(name: str) -> bool:
    n = name.replace("\\", "/")
    return n.startswith("/") or (len(n) > 1 and n[1] == ":")


def _strip_drive(p: str) -> str:
    return p[2:] if len(p) > 1 and p[1] == ":" else p


def _raw_name(v: Any, *, is_id: bool, sizes: _SizeTable) -> str | None:
    """The image name a distinct value of the image (or image id) column stands for; None when empty."""
    if is_id:
        k = _id_key(v)
        return sizes.name_of_id.get(k, k)
    s = str(v).strip()
    return s or None


def _roots_posix(root: Path | None) -> list[str]:
    """The images root made absolute and symlink-resolved (whichever the table's paths were written from),
    longest first: absolute names under one of them are related to it."""
    if root is None:
        return []
    return sorted({p.as_posix().rstrip("/") for p in (root.absolute(), root.resolve())}, key=len, reverse=True)


def _place(name: str, *, root: Path | None, roots_posix: Sequence[str]) -> tuple[str | None, str | None, str]:
    """(relative name, local path, kind) of a raw image name; kind is ``ok``, ``outside`` (an absolute path
    outside every root: named relative to the common folder of all such paths, never opened) or ``unsafe``.
    A URL (``s3://bucket/key``, ``https://host/a.jpg?sig=...``) is named by the shared rule,
    :func:`prelabel.paths.image_name`."""
    if is_url(name):
        u, _ = image_name(name)
        return (u, str(root / u) if root is not None else None, "ok") if u is not None else (None, None, "unsafe")
    r = safe_relative(name)
    if r is not None:
        return r, (str(root / r) if root is not None else None), "ok"
    norm = name.replace("\\", "/")
    if _is_absolute(name) and "\x00" not in name and ".." not in norm.split("/"):
        under = next((rp for rp in roots_posix if norm.startswith(rp + "/")), None)
        if under is not None:  # under the images root: its header may be read
            return safe_relative(norm[len(under) + 1:]), name, "ok"
        return None, None, "outside"
    return None, None, "unsafe"


def _outside_path(name: str) -> str:
    """An absolute name outside the roots as a POSIX path without a drive letter."""
    return _strip_drive(name.replace("\\", "/"))


def _images(keys: pd.Series, *, is_id: bool, col_w: np.ndarray | None, col_h: np.ndarray | None,
            sizes: _SizeTable, root: Path | None, extra_sizes: Mapping[str, tuple[int, int]] | None,
            report: Report, file: str, stream: _Stream | None = None, whole: _Whole | None = None) -> _Images:
    """Factorize the image column, make names safe, and find every image's size (columns, table, headers).

    Works per distinct image; rows only meet two ``take``s. With ``stream`` (a chunk of :func:`iter_chunks`),
    the common folder of absolute names is the whole file's and the notes are counted there, not written; with
    ``whole`` (a part of :func:`plan`) the common folder is the plan's, the last part writes the note about the
    absolute names, and every part tallies the sizes read from headers."""
    if whole is not None and whole.last and whole.absolute is not None:
        report.note("image.unsafe_name", file, _unsafe_name_note(*whole.absolute), severity="info")
    raw_codes, uniques = pd.factorize(keys, sort=False, use_na_sentinel=True)
    raw_codes = np.asarray(raw_codes, dtype=np.int64)
    u = list(uniques)
    nu = len(u)
    raw_names = [_raw_name(v, is_id=is_id, sizes=sizes) for v in u]
    why: dict[int, str] = {}
    rel: list[str | None] = [None] * nu
    local: list[str | None] = [None] * nu
    absolute: list[int] = []
    roots_posix = _roots_posix(root)
    for i, name in enumerate(raw_names):
        if name is None:
            why[i] = "no image name"
            continue
        rel[i], local[i], kind = _place(name, root=root, roots_posix=roots_posix)
        if kind == "outside":
            absolute.append(i)
        elif kind == "unsafe":
            why[i] = f"unsafe image file name {name!r}: {why_unsafe(name)}"
    if absolute:
        paths = [_outside_path(str(raw_names[i])) for i in absolute]
        common = (stream.common_folder() if stream is not None else whole.common if whole is not None and
                  whole.common is not None else posixpath.commonpath([posixpath.dirname(p) for p in paths]))
        for i, p in zip(absolute, paths, strict=True):
            rel[i] = safe_relative(posixpath.relpath(p, common))
            if rel[i] is None:
                why[i] = f"unsafe image file name {raw_names[i]!r}"
        example = f"{raw_names[absolute[0]]!r} -> {rel[absolute[0]]!r}"
        if stream is not None:
            stream.n_absolute += len(absolute)
            stream.absolute_example = stream.absolute_example or example
        elif whole is None:
            report.note("image.unsafe_name", file, _unsafe_name_note(len(absolute), common, example),
                        severity="info")
    # several raw names may be one image ("./a.jpg", "a.jpg")
    final_codes, final_names = pd.factorize(pd.Series(rel, dtype=object), sort=False, use_na_sentinel=True)
    final_codes = np.asarray(final_codes, dtype=np.int64)
    nf = len(final_names)
    fw = np.full(nf, np.nan)
    fh = np.full(nf, np.nan)
    flocal: list[str | None] = [None] * nf
    fraw: list[str] = [""] * nf
    for i in range(nu):
        c = int(final_codes[i])
        if c >= 0 and not fraw[c]:
            flocal[c] = local[i]
            fraw[c] = str(u[i])
    # 1. width/height columns: each image's first row with a usable size
    if col_w is not None and col_h is not None and nf:
        ok = (raw_codes >= 0) & np.isfinite(col_w) & np.isfinite(col_h) & (col_w >= 1) & (col_h >= 1)
        if ok.any():
            rc = raw_codes[ok][::-1]           # reversed: with repeated indices the last assignment wins,
            rw = np.full(nu, np.nan)            # so each image keeps its first row's size
            rh = np.full(nu, np.nan)
            rw[rc] = col_w[ok][::-1]
            rh[rc] = col_h[ok][::-1]
            have = (final_codes >= 0) & ~np.isnan(rw)
            fc = final_codes[have][::-1]
            fw[fc] = np.round(rw[have][::-1])
            fh[fc] = np.round(rh[have][::-1])
    # 2. the image table / mapping / mask shapes
    extra = extra_sizes or {}
    for c in np.flatnonzero(np.isnan(fw)).tolist():
        name = str(final_names[c])
        hit = ((sizes.by_id.get(_id_key(fraw[c])) if is_id else None) or sizes.by_name.get(fraw[c])
               or sizes.by_name.get(name) or extra.get(fraw[c]) or extra.get(name))
        if hit is not None:
            fw[c], fh[c] = hit
    # sizes no image can have (above int32, as pycocotools) are unknown: the header, else a drop, decides
    with np.errstate(invalid="ignore"):
        too_big = (fw > _MAX_SIDE) | (fh > _MAX_SIDE)
    fw[too_big] = np.nan
    fh[too_big] = np.nan
    # 3. the image files' headers
    todo = [c for c in np.flatnonzero(np.isnan(fw)).tolist() if flocal[c] is not None]
    n_hdr = 0
    if todo:
        found = read_image_sizes([str(flocal[c]) for c in todo])
        for c, size in zip(todo, found, strict=True):
            if size is not None:
                fw[c], fh[c] = size
                n_hdr += 1
        if stream is not None:
            stream.n_header += n_hdr
        elif n_hdr and whole is None:
            report.note("image.size_from_header", str(root or file), _header_note(n_hdr), severity="info")
    if whole is not None:  # every part, counts of 0 too: the merge adds them up where the last part's stands
        report.tally("image.size_from_header", str(root or file), _HEADER_NOTE, (n_hdr,), severity="info")
    has_size = ~np.isnan(fw)
    keep_idx = np.flatnonzero(has_size)          # images without a size are not in the table
    new_index = np.full(nf + 1, -1, dtype=np.int64)   # [nf] = -1 for "no image"
    new_index[keep_idx] = np.arange(len(keep_idx))
    raw_to_row = np.append(new_index[np.where(final_codes >= 0, final_codes, nf)], -1)  # [nu] = -1 for NaN
    for i in range(nu):
        c = int(final_codes[i])
        if i in why or c < 0 or has_size[c]:
            continue
        hint = ("no such file under the images root" if flocal[c] is not None and root is not None
                else f"give width/height columns, image_sizes, or the images root ({option('images')})")
        why[i] = f"image {final_names[c]!r} has no known size ({hint})"
    row_image = raw_to_row[np.where(raw_codes >= 0, raw_codes, nu)]
    table = pd.DataFrame({
        "file_name": pd.Series([str(final_names[c]) for c in keep_idx], dtype=object),
        "width": fw[keep_idx].astype(np.int64),
        "height": fh[keep_idx].astype(np.int64),
        "path": pd.Series([flocal[c] for c in keep_idx], dtype=object),
        "src_file": pd.Series(_repeat(file, len(keep_idx)), dtype=object),
    })
    row_name = np.append(final_codes, -1)[np.where(raw_codes >= 0, raw_codes, nu)]
    return _Images(row_image=row_image, raw_codes=raw_codes, why=why, table=table, row_name=row_name,
                   names=np.asarray(list(final_names), dtype=object))


def _unsafe_name_note(n: int, common: str, example: str) -> str:
    return (f"{n} absolute image path(s) written relative to {common} (e.g. {example}); give the images root "
            f"({option('images')}) to choose")


_HEADER_NOTE = "{} image size(s) read from the image files' headers"


def _header_note(n: int) -> str:
    return _HEADER_NOTE.format(n)


# ---------------------------------------------------------------------------------------------- categories
def _name_lookup(names: Sequence[str] | Mapping[int, str] | None) -> tuple[np.ndarray, list[str]] | None:
    """(index -> name array with None for gaps, names in index order) or None."""
    if names is None:
        return None
    if isinstance(names, Mapping):
        keyed = {int(k): str(v) for k, v in names.items()}
        size = max(keyed) + 1 if keyed else 0
        arr = np.full(size, None, dtype=object)
        for k, v in keyed.items():
            if k >= 0:
                arr[k] = v
        return arr, [keyed[k] for k in sorted(keyed) if k >= 0]
    lst = [str(n) for n in names]
    return np.asarray(lst, dtype=object).reshape(-1), lst


@dataclass
class _Cats:
    """Categories as codes into ``names`` (-1 = unknown, ``why`` says why), not one string per row."""

    codes: np.ndarray
    names: np.ndarray          # object array of distinct names
    why: np.ndarray            # object array per row: the reason where codes == -1

    def per_row(self, rows: np.ndarray) -> np.ndarray:
        """Names of some rows (a boolean mask or positions), None where unknown."""
        ext = np.concatenate([self.names, np.array([None], dtype=object)])
        c = self.codes[rows]
        return np.asarray(ext[np.where(c >= 0, c, len(self.names))], dtype=object)


def _categories_of(values: np.ndarray) -> _Cats:
    """Codes of an object array of names (None = unknown)."""
    codes, uniq = pd.factorize(pd.Series(values, dtype=object), sort=False, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    why = np.empty(len(codes), dtype=object)
    why[codes < 0] = "no category"
    return _Cats(codes=codes, names=np.asarray(list(uniq), dtype=object), why=why)


def _categories(col: pd.Series, *, as_index: bool, names: Sequence[str] | Mapping[int, str] | None, file: str,
                lines: np.ndarray) -> _Cats:
    """Category codes of a name column, or of an index column through ``names``."""
    n = len(col)
    why = np.empty(n, dtype=object)
    lookup = _name_lookup(names)
    numeric = pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)
    if as_index or numeric:
        idx_f = _numeric(col, role="class_id", file=file, lines=lines)
        fin = np.isfinite(idx_f)
        safe = np.where(fin, idx_f, 0.0)
        integral = fin & (np.floor(safe) == safe)
        if (fin & ~integral).any():
            k = int(np.flatnonzero(fin & ~integral)[0])
            raise ReadError(file, f"column {col.name!r} (class index): {idx_f[k]!r} is not an integer",
                            line=int(lines[k]))
        idx = np.where(integral, idx_f, -1).astype(np.int64)
        why[~fin] = "no category"
        if lookup is not None:
            arr = lookup[0]
            codes = np.full(n, -1, dtype=np.int64)
            inr = integral & (idx >= 0) & (idx < len(arr))
            codes[inr] = idx[inr]
            gaps = np.flatnonzero(pd.isna(arr))
            if len(gaps):
                codes[np.isin(codes, gaps)] = -1
            miss = integral & (codes < 0)
            if miss.any():
                why[miss] = [f"class index {int(i)} is not in names (0..{len(arr) - 1})" for i in idx[miss]]
            return _Cats(codes=codes, names=np.asarray(arr, dtype=object), why=why)
        fcodes, uniq = pd.factorize(idx[integral], sort=False)
        codes = np.full(n, -1, dtype=np.int64)
        codes[integral] = fcodes
        return _Cats(codes=codes, names=np.asarray([str(int(v)) for v in uniq], dtype=object), why=why)
    raw, uniq = pd.factorize(col, sort=False, use_na_sentinel=True)
    strs = pd.Series([str(v).strip() for v in uniq], dtype=object).replace("", None)
    f2, names_u = pd.factorize(strs, sort=False, use_na_sentinel=True)   # "cat" and "cat " are one name
    f2 = np.append(np.asarray(f2, dtype=np.int64), -1)
    codes = f2[np.where(raw >= 0, raw, len(f2) - 1)]
    why[codes < 0] = "no category"
    return _Cats(codes=codes, names=np.asarray(list(names_u), dtype=object), why=why)


# ---------------------------------------------------------------------------------------------- geometry cells
def _cell(v: Any, *, what: str, file: str, line: int) -> Any:
    """A list/dict cell, parsing JSON strings; None for empty cells."""
    if v is None:
        return None
    if isinstance(v, (str, bytes)):
        s = v.strip()
        if not s:
            return None
        try:
            return orjson.loads(s)
        except orjson.JSONDecodeError as e:
            raise ReadError(file, f"{what}: not valid JSON ({e.msg})", line=line) from None
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def _polygons(v: Any, *, file: str, line: int) -> list[np.ndarray]:
    """A polygon cell as a list of flat float64 arrays (parts with < 3 points removed)."""
    try:
        if isinstance(v, np.ndarray) and v.dtype != object:
            arrs = [v.astype(np.float64)]
        else:
            items = list(v)
            if items and all(isinstance(t, (int, float, np.integer, np.floating)) for t in items):
                arrs = [np.asarray(items, dtype=np.float64)]
            else:
                arrs = [np.asarray(t, dtype=np.float64) for t in items]
        parts: list[np.ndarray] = []
        for a in arrs:
            if a.ndim == 2 and a.shape[1] == 2:  # [[x, y], ...] points
                a = a.ravel()
            elif a.ndim == 2 and a.shape[0] == 1:
                a = a.ravel()
            if a.ndim != 1:
                raise ValueError(f"shape {a.shape}")
            parts.append(a)
    except (TypeError, ValueError) as e:
        raise ReadError(file, f"polygon: expected [x1, y1, x2, y2, ...] or a list of them ({e})", line=line) from None
    return [p for p in parts if p.size >= 6 and p.size % 2 == 0]


def _rle(v: Any, *, file: str, line: int) -> dict[str, Any]:
    if not isinstance(v, Mapping) or "size" not in v or "counts" not in v:
        raise ReadError(file, "mask: expected a COCO RLE {\"size\": [h, w], \"counts\": ...}", line=line)
    try:
        h, w = (int(t) for t in v["size"])
    except (TypeError, ValueError):
        raise ReadError(file, f"mask: size must be [height, width], got {v['size']!r}", line=line) from None
    counts = v["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    elif not isinstance(counts, str):
        try:
            counts = [int(t) for t in counts]
        except (TypeError, ValueError):
            raise ReadError(file, "mask: counts must be a string or a list of integers", line=line) from None
    return {"size": [h, w], "counts": counts}


def _keypoints(v: Any, *, file: str, line: int) -> np.ndarray:
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError):
        raise ReadError(file, "keypoints: expected numbers [x, y, v, ...]", line=line) from None
    if a.ndim == 2 and a.shape[1] in (2, 3):
        if a.shape[1] == 2:
            a = np.column_stack([a, np.full(len(a), 2.0)])
        return a
    if a.ndim == 1 and a.size % 3 == 0:
        return a.reshape(-1, 3)
    raise ReadError(file, f"keypoints: expected x, y, v triples or (K, 2) / (K, 3), got shape {a.shape}", line=line)


# ---------------------------------------------------------------------------------------------- assembly
@dataclass
class _Input:
    """Columns in their source form, every array of the same length n."""

    n: int
    image: pd.Series
    image_is_id: bool
    cats: _Cats
    box: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None   # raw values in box_format, or None
    box_format: str
    score: np.ndarray | None
    width: np.ndarray | None
    height: np.ndarray | None
    src_line: np.ndarray
    file: str = "dataframe"            # for ReadError and notes; the src_file of every row unless src_files
    src_files: np.ndarray | None = None
    polygon: pd.Series | None = None
    rle: pd.Series | None = None
    keypoints: pd.Series | None = None
    iscrowd: np.ndarray | None = None
    ready_segmentation: np.ndarray | None = None  # object array of already-built segmentation (model objects)
    extra_sizes: Mapping[str, tuple[int, int]] | None = None
    attributes: np.ndarray | None = None          # object array of attribute dicts (model objects)
    invalid: Mapping[int, str] | None = None      # row -> why it cannot be read (a value that is not a number)


_SUSPECT_NORMALIZED = ("every box value is within [0, 1]: read as normalized (fractions of the image size); "
                       f"say {option('normalized', True)} or {option('normalized', False)} to silence this")


def _suspect_pixels(top: float) -> str:
    return (f"{option('normalized', True)} but box values reach {top:g}: are they pixels? "
            f"({option('normalized', False)})")


def _annotation_frame(cols: Mapping[str, Any]) -> pd.DataFrame:
    """The annotations table in the model's column order and dtypes, built without per-row conversion."""
    data: dict[str, Any] = {}
    for name, dtype in ANNOTATION_COLUMNS.items():
        v = cols[name]
        data[name] = pd.Series(v, dtype=object, copy=False) if dtype is object else np.asarray(v, dtype=dtype)
    return pd.DataFrame(data, copy=False)


def _assemble(inp: _Input, *, normalized: bool | None, names: Sequence[str] | Mapping[int, str] | None,
              image_sizes: Any, images: Path | None, report: Report, stream: _Stream | None = None,
              whole: _Whole | None = None) -> Dataset:
    """The Dataset of one table. With ``stream`` the table is one chunk of :func:`iter_chunks`: the rows are
    counted in ``report`` at once, but drops, changes and notes wait in ``stream`` for the end of the file.
    With ``whole`` the table is a part of :func:`plan`, read with what the plan decided for the whole table."""
    n = inp.n
    file = inp.file
    lines = inp.src_line
    cats = inp.cats
    report.add_read(n)
    imgs = _images(inp.image, is_id=inp.image_is_id, col_w=inp.width, col_h=inp.height,
                   sizes=_size_table(image_sizes), root=images, extra_sizes=inp.extra_sizes, report=report,
                   file=file, stream=stream, whole=whole)
    if stream is not None:
        stream.check_grouped(imgs, lines)
    row_image = imgs.row_image
    table = imgs.table

    def src_files(rows: np.ndarray) -> np.ndarray:
        if inp.src_files is not None:
            return np.asarray(inp.src_files[rows], dtype=object)
        return _repeat(file, int(rows.sum()) if rows.dtype == bool else len(rows))

    def rows_of(rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"category": cats.per_row(rows), "src_file": src_files(rows), "src_line": lines[rows]})

    def drop(slot: int, reason: str, mask: np.ndarray, messages: Any) -> None:
        """Drop rows; ``slot`` is the place of this drop in read()'s order, which streaming keeps."""
        if mask.any():
            rows = rows_of(mask).assign(message=messages)
            if stream is None:
                report.drop(reason, rows, phase=slot + 2)
            else:
                stream.defer(slot, reason, rows)

    def change(slot: int, code: str, rows: pd.DataFrame, message: str) -> None:
        if stream is None:
            report.change(code, rows, message, phase=slot + 1)
        else:
            stream.defer(slot, code, rows, message=message, change=True)

    unreadable = np.zeros(n, dtype=bool)   # a value that is not a number: dropped first, saying which
    if inp.invalid:
        unreadable[np.fromiter(inp.invalid, dtype=np.intp, count=len(inp.invalid))] = True
        drop(-1, "dropped.invalid", unreadable, [inp.invalid[i] for i in np.flatnonzero(unreadable).tolist()])
    alive = (row_image >= 0) & ~unreadable
    no_image = (row_image < 0) & ~unreadable
    if no_image.any():
        codes = imgs.raw_codes[no_image]
        drop(0, "dropped.no_image", no_image, [imgs.why.get(int(c), "no image name") for c in codes])
    unknown = alive & (cats.codes < 0)
    if unknown.any():
        drop(1, "dropped.unknown_category", unknown, cats.why[unknown])
        alive &= ~unknown

    ri = np.where(row_image >= 0, row_image, len(table))
    W = np.append(table["width"].to_numpy(dtype=np.float64), np.nan)[ri]
    H = np.append(table["height"].to_numpy(dtype=np.float64), np.nan)[ri]

    # boxes
    if inp.box is None:
        x, y, w, h = (np.full(n, np.nan) for _ in range(4))
    else:
        c0, c1, c2, c3 = inp.box
        fin = alive & np.isfinite(c0) & np.isfinite(c1) & np.isfinite(c2) & np.isfinite(c3)
        if fin.all():
            subs = [c0, c1, c2, c3, W, H]
        else:
            subs = [c[fin] for c in (c0, c1, c2, c3, W, H)]
        if fin.any():
            lo = min(float(c.min()) for c in subs[:4])
            hi = max(float(c.max()) for c in subs[:4])
            small = float(min(subs[4].min(), subs[5].min()))
        else:
            lo, hi, small = 0.0, 0.0, 0.0
        if stream is not None:
            def geometry() -> int | None:  # the first row whose reading depends on normalized, box or not
                cells = [s.notna().to_numpy() for s in (inp.polygon, inp.keypoints) if s is not None]
                rows = alive & np.logical_or.reduce(cells) if cells else np.zeros(0, dtype=bool)
                return int(lines[np.argmax(rows)]) if rows.any() else None

            def violation() -> int:  # the line of the first box that is not normalized-looking
                with np.errstate(invalid="ignore"):
                    out = np.logical_or.reduce([(c < 0.0) | (c > 1.0) for c in (c0, c1, c2, c3)]) | (W <= 2) | (H <= 2)
                return int(lines[np.argmax(fin & out)])

            normalized = stream.box_mode(any_fin=bool(fin.any()), lo=lo, hi=hi, small=small, geometry=geometry,
                                         violation=violation)
        elif whole is not None:
            normalized = whole.box_mode(fin, fits=lo >= 0.0 and hi <= 1.0 and small > 2, lines=lines)
            if whole.last and whole.candidate and normalized:
                report.note("coordinates.suspect", file, _SUSPECT_NORMALIZED)
        elif normalized is None:
            normalized = bool(fin.any()) and lo >= 0.0 and hi <= 1.0 and small > 2
            if normalized:
                report.note("coordinates.suspect", file, _SUSPECT_NORMALIZED)
        elif normalized and max(abs(lo), abs(hi)) > 1.5:
            report.note("coordinates.suspect", file, _suspect_pixels(max(abs(lo), abs(hi))))
        if inp.box_format == "xyxy":
            x, y, w, h = c0, c1, c2 - c0, c3 - c1
        elif inp.box_format == "xywh":
            x, y, w, h = c0, c1, c2, c3
        else:  # cxcywh
            x, y, w, h = c0 - c2 / 2.0, c1 - c3 / 2.0, c2, c3
        if normalized:
            x, w = x * W, w * W
            y, h = y * H, h * H
        else:
            x, y, w, h = (np.array(v, dtype=np.float64) for v in (x, y, w, h))  # own copies: rows get rewritten
    normalized = bool(normalized)

    # segmentation and keypoints (only the cells that hold something)
    seg = np.full(n, None, dtype=object) if inp.ready_segmentation is None else inp.ready_segmentation.copy()
    has_geo = np.zeros(n, dtype=bool) if inp.ready_segmentation is None else ~pd.isna(seg)
    has_geo &= alive
    kps = np.full(n, None, dtype=object)
    invalid: dict[int, str] = {}
    for i in np.flatnonzero(has_geo).tolist():  # masks given as arrays (model objects) must fit their image
        if isinstance(seg[i], Mapping) and list(seg[i]["size"]) != [int(H[i]), int(W[i])]:
            invalid[i] = f"mask size {list(seg[i]['size'])} is not the image's [h, w] = [{int(H[i])}, {int(W[i])}]"
            has_geo[i] = False
    repaired: list[int] = []
    for kind, series in (("rle", inp.rle), ("polygon", inp.polygon)):
        if series is None:
            continue
        vals = series.to_numpy(dtype=object)
        for i in np.flatnonzero(alive & series.notna().to_numpy()).tolist():
            if has_geo[i]:  # a mask wins over a polygon
                continue
            line = int(lines[i])
            v = _cell(vals[i], what=kind, file=file, line=line)
            if v is None or (isinstance(v, (list, tuple)) and not v):
                continue
            if kind == "rle":
                r = _rle(v, file=file, line=line)
                if r["size"] != [int(H[i]), int(W[i])]:
                    invalid[i] = f"mask size {r['size']} is not the image's [h, w] = [{int(H[i])}, {int(W[i])}]"
                    continue
                seg[i] = r
            else:
                parts = _polygons(v, file=file, line=line)
                if not parts:
                    repaired.append(i)
                    continue
                if normalized:
                    for part in parts:
                        part[0::2] *= W[i]
                        part[1::2] *= H[i]
                seg[i] = parts
            has_geo[i] = True
    if inp.keypoints is not None:
        vals = inp.keypoints.to_numpy(dtype=object)
        for i in np.flatnonzero(alive & inp.keypoints.notna().to_numpy()).tolist():
            v = _cell(vals[i], what="keypoints", file=file, line=int(lines[i]))
            if v is None:
                continue
            karr = _keypoints(v, file=file, line=int(lines[i]))
            if normalized:
                karr[:, 0] *= W[i]
                karr[:, 1] *= H[i]
            kps[i] = karr
    if invalid:
        m = np.zeros(n, dtype=bool)
        m[list(invalid)] = True
        drop(2, "dropped.invalid", m, [invalid[i] for i in np.flatnonzero(m).tolist()])
        alive &= ~m
        has_geo &= ~m

    # the box of a row with geometry is the geometry's box
    changed: list[int] = []
    for i in np.flatnonzero(has_geo).tolist():
        s = seg[i]
        bb = rle_bbox(dict(s)) if isinstance(s, Mapping) else bbox_of_polygons(s)
        old = (x[i], y[i], w[i], h[i])
        if inp.box is not None and all(math.isfinite(v) for v in old) and \
                max(abs(p - q) for p, q in zip(bb, old, strict=True)) > _BOX_TOLERANCE:
            changed.append(i)
        x[i], y[i], w[i], h[i] = bb
    if changed:
        ch = np.asarray(changed, dtype=np.intp)
        change(0, "recomputed", rows_of(ch), "the box was recomputed from the polygon or mask")
    if repaired and inp.box is not None:
        change(1, "repaired", rows_of(np.asarray(repaired, dtype=np.intp)),
               "polygon with fewer than 3 points removed; the box is kept")
    nonfinite = alive & ~(np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(h))
    if nonfinite.any():
        drop(3, "dropped.nonfinite", nonfinite,
             "NaN or infinite box values" if inp.box is not None else "no box and no usable polygon or mask")
        alive &= ~nonfinite
    # (an infinite score is dropped by the shared clip step, for every source)

    every = bool(alive.all())
    keep = np.flatnonzero(alive)
    k = len(keep)

    def kept(a: np.ndarray) -> np.ndarray:
        return a if every else a[keep]

    kept_codes = kept(cats.codes)
    # categories: the names list first (all of it, in index order), then the others in first-seen order
    lookup = _name_lookup(names)
    order: list[str] = list(dict.fromkeys(lookup[1])) if lookup is not None else []
    known = set(order)
    for c in pd.unique(kept_codes).tolist():
        name = str(cats.names[c])
        if name not in known:
            known.add(name)
            order.append(name)
    if stream is not None:  # the categories declared so far: every chunk's table extends the previous one
        stream.categories.update(dict.fromkeys(order))
        order = list(stream.categories)
    base = Dataset.build(images=table, categories={"name": order}, report=report)
    ann = _annotation_frame({
        "image": kept(row_image), "category": cats.names[kept_codes] if k else np.zeros(0, dtype=object),
        "x": kept(x), "y": kept(y), "w": kept(w), "h": kept(h),
        "score": kept(inp.score) if inp.score is not None else np.full(k, np.nan),
        "iscrowd": kept(inp.iscrowd) if inp.iscrowd is not None else np.zeros(k, dtype=np.int8),
        "segmentation": kept(seg), "keypoints": kept(kps),
        "attributes": kept(inp.attributes) if inp.attributes is not None else np.full(k, None, dtype=object),
        "src_file": src_files(keep), "src_line": kept(lines),
    })
    return base.replace(annotations=ann)


def _iscrowd(col: pd.Series, *, file: str, lines: np.ndarray) -> np.ndarray:
    if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
        col = col.map(lambda v: {"true": 1, "false": 0}.get(v.strip().lower(), v) if isinstance(v, str) else v)
    vals = _numeric(col, role="iscrowd", file=file, lines=lines)
    vals = np.where(np.isnan(vals), 0.0, vals)
    bad = ~np.isin(vals, (0.0, 1.0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ReadError(file, f"column {col.name!r} (iscrowd): {col.to_numpy()[k]!r} is not 0 or 1",
                        line=int(lines[k]))
    return vals.astype(np.int8)


def _from_frame(df: pd.DataFrame, *, roles: _Roles, names: Sequence[str] | Mapping[int, str] | None,
                normalized: bool | None, image_sizes: Any, images: Path | None, file: str, src_line: np.ndarray,
                report: Report, stream: _Stream | None = None, whole: _Whole | None = None) -> Dataset:
    if "bbox" in roles.found:
        df, roles = _split_bbox(df, roles)
    f = roles.found
    if "category" in f:
        cats = _categories(df[f["category"]], as_index=False, names=names, file=file, lines=src_line)
    else:
        cats = _categories(df[f["class_id"]], as_index=True, names=names, file=file, lines=src_line)
    bad: dict[int, str] = {}   # rows with a value that is not a number: dropped at their line
    box = None
    if roles.box_format is not None:
        r0, r1, r2, r3 = BOX_FORMATS[roles.box_format]
        box = (_numeric(df[f[r0]], role=r0, file=file, lines=src_line, invalid=bad),
               _numeric(df[f[r1]], role=r1, file=file, lines=src_line, invalid=bad),
               _numeric(df[f[r2]], role=r2, file=file, lines=src_line, invalid=bad),
               _numeric(df[f[r3]], role=r3, file=file, lines=src_line, invalid=bad))

    def opt_num(role: str) -> np.ndarray | None:
        return _numeric(df[f[role]], role=role, file=file, lines=src_line, invalid=bad) if role in f else None

    image_is_id = "image" not in f
    inp = _Input(
        n=len(df), image=df[f["image_id"] if image_is_id else f["image"]], image_is_id=image_is_id,
        cats=cats, box=box, box_format=roles.box_format or "xywh",
        score=opt_num("score"), width=opt_num("width"), height=opt_num("height"), src_line=src_line, file=file,
        polygon=df[f["polygon"]] if "polygon" in f else None, rle=df[f["rle"]] if "rle" in f else None,
        keypoints=df[f["keypoints"]] if "keypoints" in f else None,
        iscrowd=_iscrowd(df[f["iscrowd"]], file=file, lines=src_line) if "iscrowd" in f else None, invalid=bad)
    return _assemble(inp, normalized=normalized, names=names, image_sizes=image_sizes, images=images,
                     report=report, stream=stream, whole=whole)


# ---------------------------------------------------------------------------------------------- public API
def from_dataframe(df: pd.DataFrame, *, images: str | Path | None = None, image_sizes: Any = None,
                   columns: Mapping[str, str] | None = None, box_format: str | None = None,
                   normalized: bool | None = None, names: Sequence[str] | Mapping[int, str] | None = None,
                   min_score: float | None = None, source: str = "dataframe",
                   report: Report | None = None) -> Dataset:
    """A Dataset from a table of predictions, one row per object (see the module docstring for the columns).

    ``images`` is the images root (sizes from headers), ``image_sizes`` a ``{file_name: (w, h)}`` mapping or a
    DataFrame, ``columns`` role -> column overrides, ``names`` class index -> name, ``min_score`` drops
    lower scores (``dropped.min_score``), ``source`` names the table in the report (``source:row``).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"image": ["a.jpg"], "cls": [1], "cx": [0.5], "cy": [0.5], "w": [0.2],
        ...                    "h": [0.4], "conf": [0.8]})
        >>> ds = from_dataframe(df, image_sizes={"a.jpg": (200, 100)}, names=["cat", "dog"], normalized=True)
        >>> ds.annotations[["category", "x", "y", "w", "h"]].values.tolist()
        [['dog', 80.0, 30.0, 40.0, 40.0]]
    """
    if not isinstance(df, pd.DataFrame):
        raise UsageError(f"from_dataframe needs a pandas DataFrame, got {type(df).__name__}")
    rep = report if report is not None else Report()
    if not rep.input:
        rep.input = {"format": NAME, "source": source}
    roles = _resolve_roles(list(df.columns), overrides=columns or {}, box_format=box_format, file=source)
    lines = np.arange(1, len(df) + 1, dtype=np.int64)
    ds = _from_frame(df.reset_index(drop=True), roles=roles, names=names, normalized=normalized,
                     image_sizes=image_sizes, images=Path(images) if images is not None else None, file=source,
                     src_line=lines, report=rep)
    return filter_min_score(ds, min_score)


def from_columns(*, image: np.ndarray, category: np.ndarray, xyxy: np.ndarray, score: np.ndarray | None = None,
                 why: np.ndarray | None = None, segmentation: np.ndarray | None = None,
                 keypoints: np.ndarray | None = None, attributes: np.ndarray | None = None,
                 src_file: np.ndarray | None = None, src_line: np.ndarray | None = None,
                 mask_sizes: Mapping[str, tuple[int, int]] | None = None, categories: Sequence[str] | None = None,
                 image_sizes: Any = None, images: str | Path | None = None, min_score: float | None = None,
                 source: str = "objects", report: Report | None = None) -> Dataset:
    """The shared builder of the readers of model objects (:mod:`prelabel.adapters.objects`): one row per
    object, boxes ``xyxy`` in pixels (an (N, 4) array), ``category`` names (None: unknown, ``why`` says why),
    ``segmentation`` / ``keypoints`` / ``attributes`` object arrays already in the model's form (pixels; a
    mask's RLE size must be the image's), ``mask_sizes`` ``{image: (w, h)}`` known from masks, and
    ``categories`` the names declared first, in order. Image names, sizes (``image_sizes``, ``images``), drops,
    the box of a geometry and ``min_score`` go as for :func:`from_dataframe`.

    Example:
        >>> import numpy as np
        >>> ds = from_columns(image=np.array(["a.jpg"], dtype=object), category=np.array(["car"], dtype=object),
        ...                   xyxy=np.array([[10.0, 10.0, 50.0, 30.0]]), score=np.array([0.9]),
        ...                   image_sizes={"a.jpg": (64, 48)})
        >>> ds.annotations[["category", "x", "y", "w", "h", "score"]].values.tolist()
        [['car', 10.0, 10.0, 40.0, 20.0, 0.9]]
    """
    rep = report if report is not None else Report()
    if not rep.input:
        rep.input = {"format": NAME, "source": source}
    n = len(image)
    box = np.asarray(xyxy, dtype=np.float64).reshape(n, 4)
    cats = _categories_of(np.asarray(category, dtype=object))
    if why is not None:
        cats.why = np.where(cats.codes < 0, np.asarray(why, dtype=object), cats.why)
    kps = pd.Series(keypoints, dtype=object) if keypoints is not None else None
    inp = _Input(
        n=n, image=pd.Series(np.asarray(image, dtype=object), dtype=object), image_is_id=False, cats=cats,
        box=(box[:, 0], box[:, 1], box[:, 2], box[:, 3]), box_format="xyxy",
        score=np.asarray(score, dtype=np.float64) if score is not None else None, width=None, height=None,
        src_line=np.asarray(src_line, dtype=np.int64) if src_line is not None else np.arange(1, n + 1),
        file=source, src_files=np.asarray(src_file, dtype=object) if src_file is not None else None,
        keypoints=kps, ready_segmentation=np.asarray(segmentation, dtype=object) if segmentation is not None
        else None, extra_sizes=mask_sizes, attributes=attributes)
    ds = _assemble(inp, normalized=False, names=list(categories) if categories is not None else None,
                   image_sizes=image_sizes, images=Path(images) if images is not None else None, report=rep)
    return filter_min_score(ds, min_score)


# ---------------------------------------------------------------------------------------------- files
def _header(path: Path) -> list[str] | None:
    """Column names of a CSV / TSV / Parquet file, or None when they cannot be read."""
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES_PARQUET:
        try:
            pq = importlib.import_module("pyarrow.parquet")
        except ImportError:
            return None
        try:
            return [str(c) for c in pq.read_schema(path).names]
        except Exception:  # noqa: BLE001 - any pyarrow failure means "not a readable parquet file"
            return []
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            first = fh.readline(65536)
    except (OSError, UnicodeDecodeError):
        return []
    try:
        row = next(csv.reader([first], delimiter=_separator(suffix, first)), [])
    except csv.Error:
        return []
    return [c.strip() for c in row]


def detect(path: Path) -> float:
    """0.9 for a .csv / .tsv / .parquet file whose header has box-like columns (0.5 for a Parquet file when
    pyarrow is missing, so that reading says what to install), else 0."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in _SUFFIXES_CSV + _SUFFIXES_PARQUET:
        return 0.0
    cols = _header(p)
    if cols is None:
        return 0.5
    lower = {c.lower() for c in cols}
    for rs in (*BOX_FORMATS.values(), ("x1", "y1", "w", "h"), ("bbox",)):
        if all(any(c in lower for c in ROLE_COLUMNS[r]) for r in rs):
            return 0.9
    return 0.0


_LINE_RE = re.compile(r"line (\d+)")


@contextlib.contextmanager
def _table_errors(file: str) -> Iterator[None]:
    """pandas' CSV failures as a ReadError naming the file (and line); rows with more fields than the header
    names are an error, not a warning."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            yield
    except pd.errors.ParserWarning:
        raise ReadError(file, "rows have more fields than the header names",
                        hint="check the delimiter and quoting (a comma inside a value needs quotes)") from None
    except pd.errors.EmptyDataError:
        raise ReadError(file, "the file is empty (no header line)") from None
    except pd.errors.ParserError as e:
        m = _LINE_RE.search(str(e))
        raise ReadError(file, f"not a valid table: {str(e).strip()}", line=int(m.group(1)) if m else None) from None
    except UnicodeDecodeError as e:
        raise ReadError(file, f"not UTF-8 text: {e.reason} at byte {e.start}") from None
    except OSError as e:
        raise ReadError(file, f"cannot read: {e.strerror or e}") from None


def _csv_layout(path: Path, roles_for: Any, *, names: Any) -> tuple[str, _Roles, dict[str, Any]]:
    """(separator, roles, ``read_csv`` dtypes) of a CSV / TSV file, from its header."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        sep = _separator(path.suffix.lower(), fh.readline(65536))
    head = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8-sig")
    roles = roles_for(list(head.columns))
    text_roles = ["image", "image_id", "polygon", "rle", "keypoints", "bbox"]
    if names is None:  # without names a numeric class column is a name ("01" stays "01")
        text_roles.append("category")
    return sep, roles, {roles.found[r]: str for r in text_roles if r in roles.found}


def _read_csv(path: Path, *, sep: str, dtype: Mapping[str, Any], data: Any = None, **kw: Any) -> Any:
    """``pd.read_csv`` with the table reader's options: only empty cells are missing values. ``data``: a
    buffer holding some of ``path``'s rows under its header (the decimal mark is still ``path``'s)."""
    return pd.read_csv(path if data is None else data, sep=sep, dtype=dict(dtype), keep_default_na=False,
                       na_values=[""], index_col=False, encoding="utf-8-sig", decimal=_decimal(path, sep), **kw)


def _separator(suffix: str, header: str) -> str:
    """Tab for .tsv / .tab; for .csv a comma, or a semicolon when the header has more of them (Excel in the
    locales that write decimal commas)."""
    if suffix in (".tsv", ".tab"):
        return "\t"
    return ";" if header.count(";") > header.count(",") else ","


_DECIMAL_COMMA = re.compile(r"(?:^|;)\s*-?[0-9]+,[0-9]+\s*(?:;|$)")


def _decimal(path: Path, sep: str) -> str:
    """``","`` for a semicolon-separated file whose first rows write numbers with a decimal comma, else ``"."``."""
    if sep != ";":
        return "."
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        rows = [fh.readline(65536) for _ in range(21)][1:]
    return "," if any(_DECIMAL_COMMA.search(r.strip()) for r in rows) else "."


def _parquet_error(file: str, e: Exception) -> ReadError:
    return ReadError(file, f"cannot read Parquet: {e}")


def _read_table(path: Path, roles_for: Any, *, names: Any) -> tuple[pd.DataFrame, _Roles, int]:
    """(table, roles, line of the first row) of a CSV / TSV / Parquet file."""
    file = str(path)
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES_PARQUET:
        try:
            importlib.import_module("pyarrow")
        except ImportError:
            raise ReadError(file, "reading Parquet files needs pyarrow, which is not installed",
                            hint="pip install prelabel[parquet]") from None
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - OSError, ValueError, pyarrow's own ArrowInvalid etc.
            raise _parquet_error(file, e) from None
        return df, roles_for(list(df.columns)), 1
    with _table_errors(file):
        sep, roles, dtype = _csv_layout(path, roles_for, names=names)
        df = _read_csv(path, sep=sep, dtype=dtype)
    return df, roles, 2


def _table_path(path: Path) -> Path:
    """``path`` when it is a table prelabel reads (CSV, TSV, Parquet), else the ReadError saying what to give."""
    p = Path(path)
    if not p.is_file():
        raise ReadError(str(p), "not a file: give a .csv, .tsv or .parquet predictions table")
    if p.suffix.lower() not in _SUFFIXES_CSV + _SUFFIXES_PARQUET:
        raise ReadError(str(p), f"unsupported table type {p.suffix or '(none)'!r}: give a .csv, .tsv or .parquet "
                                "file")
    return p


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a predictions CSV / TSV / Parquet file (``--from predictions``)."""
    p = _table_path(path)
    file = str(p)

    def roles_for(cols: list[Any]) -> _Roles:
        return _resolve_roles(cols, overrides=options.columns, box_format=options.box_format, file=file)

    df, roles, first_line = _read_table(p, roles_for, names=options.names)
    df = df.reset_index(drop=True)
    lines = np.arange(first_line, first_line + len(df), dtype=np.int64)
    return _from_frame(df, roles=roles, names=options.names, normalized=options.normalized,
                       image_sizes=None, images=options.images, file=file, src_line=lines, report=report)


# ---------------------------------------------------------------------------------------------- parts
@dataclass(frozen=True)
class _Whole:
    """What :func:`plan` decided once for the whole table, carried by each of its parts (``RowRange.context``)."""

    common: str | None = None                     # the common folder of the absolute image names outside the root
    absolute: tuple[int, str, str] | None = None  # their note: count, common folder, example
    normalized: bool = False                      # the boxes are fractions of the image size
    candidate: bool = False                       # ``normalized`` is the plan's finding (the option was not given)
    witness: int | None = None                    # the line that shows it; the part holding it checks it
    class_text: bool = False                      # the class column is read as text (the whole column is not numbers)
    last: bool = False                            # this part writes the notes about the whole table
    byte_range: tuple[int, int] | None = None     # CSV: the bytes of the part's rows, and of the header line
    header: int = 0

    def box_mode(self, fin: np.ndarray, *, fits: bool, lines: np.ndarray) -> bool:
        """``normalized`` for this part, after checking that its boxes agree with the plan's finding (read()
        decides on every box of the table at once): else the table is read whole."""
        if not self.candidate:
            return self.normalized
        w = self.witness
        held = w is not None and len(lines) > 0 and int(lines[0]) <= w <= int(lines[-1])
        shown = held and bool(fin[lines == w].any())
        if self.normalized:
            ok = (fits or not fin.any()) and (shown or not held)
        else:
            ok = (not held or (shown and not fits)) and (self.witness is not None or not fin.any())
        if not ok:
            raise NeedsWholeRead("whether the boxes are normalized is decided by the whole table")
        return self.normalized


_RECORD_BLOCK = 1 << 24


def _records(path: Path) -> np.ndarray | None:
    """Byte offsets of a CSV file's records: where each line that is not blank starts (quoted line breaks kept
    inside their record), then the file's size; the header line is the first. None when the file has line
    ends other than LF / CRLF or starts with a blank line (then it is read as one part)."""
    starts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    marks: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]   # bytes that are not blank before each start
    parity = 0
    seen = 0
    pos = 0
    with open(path, "rb") as fh:
        while data := fh.read(_RECORD_BLOCK):
            a = np.frombuffer(data, dtype=np.uint8)
            cr = np.flatnonzero(a == 13)
            if len(cr):
                nxt = np.append(a, 10 if len(data) == _RECORD_BLOCK else 0)[cr + 1]
                if (nxt != 10).any():
                    return None
            q = np.cumsum(a == 34, dtype=np.int64) + parity
            mark = np.cumsum(~np.isin(a, (9, 10, 13, 32)), dtype=np.int64) + seen
            nl = np.flatnonzero((a == 10) & (q % 2 == 0))
            starts.append(pos + nl + 1)
            marks.append(mark[nl])
            parity, seen = int(q[-1]) % 2, int(mark[-1])
            pos += len(data)
    st = np.concatenate(starts)
    mk = np.concatenate(marks)
    if st[-1] < pos:  # the last line without its line end
        st = np.append(st, pos)
        mk = np.append(mk, seen)
    filled = np.diff(mk) > 0          # record i holds something besides blanks
    if not len(filled) or not filled[0]:
        return None
    return np.append(st[:-1][filled], pos)


def _part_rows(path: Path, part: RowRange, ctx: _Whole, roles_for: Any, *, names: Any
               ) -> tuple[pd.DataFrame, _Roles, int]:
    """(rows, roles, line of the table's first row) of a part."""
    file = str(path)
    if path.suffix.lower() in _SUFFIXES_PARQUET:
        try:
            pf = importlib.import_module("pyarrow.parquet").ParquetFile(path)
            columns = list(pf.schema_arrow.empty_table().to_pandas().columns)
            groups, first = [], 0
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if first < part.stop and first + n > part.start:
                    groups.append(g)
                first += n
            start = sum(pf.metadata.row_group(g).num_rows for g in range(groups[0])) if groups else 0
            table = pf.read_row_groups(groups) if groups else pf.schema_arrow.empty_table()
            df = table.slice(part.start - start, part.stop - part.start).to_pandas()
        except Exception as e:  # noqa: BLE001 - OSError, ValueError, pyarrow's own ArrowInvalid etc.
            raise _parquet_error(file, e) from None
        return df.reset_index(drop=True), roles_for(columns), 1
    with _table_errors(file):
        sep, roles, dtype = _csv_layout(path, roles_for, names=names)
        if ctx.class_text:
            dtype = {**dtype, roles.found["category"]: str}
        a, b = ctx.byte_range or (0, 0)
        with open(path, "rb") as fh:
            head = fh.read(ctx.header)
            fh.seek(a)
            body = fh.read(b - a)
        df = _read_csv(path, sep=sep, dtype=dtype, data=io.BytesIO(head + body))
    if len(df) != part.stop - part.start:
        raise NeedsWholeRead(f"rows {part.start}..{part.stop} of the table were not found where the plan cut it")
    return df, roles, 2


def _columns_of(path: Path, cols: list[str], *, names: Any, roles_for: Any) -> pd.DataFrame | None:
    """Some columns of the whole table, read as :func:`read` reads them; None when the table cannot be read."""
    try:
        if path.suffix.lower() in _SUFFIXES_PARQUET:
            return pd.read_parquet(path, columns=cols).reset_index(drop=True)
        with _table_errors(str(path)):
            sep, _, dtype = _csv_layout(path, roles_for, names=names)
            return _read_csv(path, sep=sep, dtype={c: t for c, t in dtype.items() if c in cols}, usecols=cols)
    except (ReadError, ValueError, ImportError, OSError):
        return None


def _cuts(names: np.ndarray, parts: int) -> list[int] | None:
    """Up to ``parts`` + 1 row positions cutting the table between images (``names``: each row's final image
    name code, -1 for none), about as many rows in each; None when an image's rows are not together."""
    n = len(names)
    has = np.flatnonzero(names >= 0)
    codes = names[has]
    run_start = np.ones(len(codes), dtype=bool)
    run_start[1:] = codes[1:] != codes[:-1]
    runs = codes[run_start]
    if len(np.unique(runs)) != len(runs):
        return None
    starts = has[run_start][1:]           # a cut may go where an image's first row is
    if parts <= 1 or not len(starts):
        return [0, n]
    want = [n * k // parts for k in range(1, parts)]
    at = np.searchsorted(starts, want)
    picks = sorted({int(starts[min(i, len(starts) - 1)]) for i in at.tolist()})
    return [0, *[c for c in picks if 0 < c < n], n]


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[RowRange]:
    """The table cut into up to ``parts`` row ranges between images, each read by :func:`read_part`; their
    datasets merged in this order give :func:`read`'s (:func:`prelabel.adapters.parts.merge`). The plan reads
    the image column (and the box and class columns, when the whole table decides how to read them) once; one
    part when the rows of an image are not together, the table is small, or the boxes are said to be
    normalized (the note about them names the largest value of the whole table).

    >>> [(p.start, p.stop) for p in plan(Path("sample_data/predictions/predictions.csv"), options=ReadOptions(),
    ...                                  parts=2)]
    [(0, 4), (4, 7)]
    """
    p = Path(path)
    whole = [RowRange(source=str(p), start=0, stop=0)]
    if parts <= 1 or options.normalized is True or not p.is_file() or \
            p.suffix.lower() not in _SUFFIXES_CSV + _SUFFIXES_PARQUET:
        return whole
    file = str(p)

    def roles_for(cols: list[Any]) -> _Roles:
        return _resolve_roles(cols, overrides=options.columns, box_format=options.box_format, file=file)

    try:
        if p.suffix.lower() in _SUFFIXES_PARQUET:
            pq = importlib.import_module("pyarrow.parquet")
            roles = roles_for(list(pq.ParquetFile(p).schema_arrow.empty_table().to_pandas().columns))
            records = None
        else:
            with _table_errors(file):
                _, roles, _ = _csv_layout(p, roles_for, names=options.names)
            records = _records(p)
            if records is None:
                return whole
    except (ReadError, UsageError, ImportError, OSError):
        return whole   # read() raises the error
    found = roles.found
    is_id = "image" not in found
    key = found["image_id" if is_id else "image"]
    box = [found[r] for r in BOX_FORMATS[roles.box_format]] if roles.box_format is not None and \
        "bbox" not in found else []
    if roles.box_format is not None and not box:
        return whole   # one [x, y, w, h] column: read whole
    class_col = found["category"] if "category" in found and options.names is not None else None
    cols = list(dict.fromkeys([key, *(box if options.normalized is None else []),
                               *([class_col] if class_col else [])]))
    df = _columns_of(p, cols, names=options.names, roles_for=roles_for)
    n = len(df) if df is not None else 0
    if df is None or n < 2 or (records is not None and len(records) - 2 != n):
        return whole
    class_text = False
    if class_col is not None:
        dt = df[class_col].dtype
        if pd.api.types.is_bool_dtype(dt):
            return whole
        class_text = not pd.api.types.is_numeric_dtype(dt)
    # the image names as read() makes them: the common folder of absolute names is the whole table's
    raw_codes, uniques = pd.factorize(df[key], sort=False, use_na_sentinel=True)
    raw = [_raw_name(v, is_id=is_id, sizes=_SizeTable()) for v in uniques]
    roots = _roots_posix(options.images)
    placed = [_place(nm, root=options.images, roots_posix=roots) if nm is not None else (None, None, "unsafe")
              for nm in raw]
    outside = [i for i, (_, _, kind) in enumerate(placed) if kind == "outside"]
    common: str | None = None
    absolute: tuple[int, str, str] | None = None
    rel = [r for r, _, _ in placed]
    if outside:
        common = posixpath.commonpath([posixpath.dirname(_outside_path(str(raw[i]))) for i in outside])
        for i in outside:
            rel[i] = safe_relative(posixpath.relpath(_outside_path(str(raw[i])), common))
        absolute = (len(outside), common, f"{raw[outside[0]]!r} -> {rel[outside[0]]!r}")
    final, _ = pd.factorize(pd.Series(rel, dtype=object), sort=False, use_na_sentinel=True)
    names = np.append(np.asarray(final, dtype=np.int64), -1)[np.where(raw_codes >= 0, raw_codes, len(final))]
    cuts = _cuts(names, parts)
    if cuts is None or len(cuts) < 3:
        return whole
    first_line = 1 if records is None else 2
    normalized, candidate, witness = bool(options.normalized), False, None
    if options.normalized is None and box:
        vals = [_numeric(df[c], role="box", file=file, lines=np.zeros(n, dtype=np.int64), invalid={}) for c in box]
        fin = np.logical_and.reduce([np.isfinite(v) for v in vals])
        with np.errstate(invalid="ignore"):
            out = fin & np.logical_or.reduce([(v < 0.0) | (v > 1.0) for v in vals])
        candidate = True
        if out.any():
            witness = first_line + int(np.argmax(out))
        elif fin.any():
            normalized, witness = True, first_line + int(np.argmax(fin))
    ctx = _Whole(common=common, absolute=absolute, normalized=normalized, candidate=candidate, witness=witness,
                 class_text=class_text, header=int(records[1]) if records is not None else 0)
    out_parts = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        br = (int(records[a + 1]), int(records[b + 1])) if records is not None else None
        out_parts.append(RowRange(source=file, start=a, stop=b,
                                  context=replace(ctx, last=b == n, byte_range=br)))
    return out_parts


def read_part(part: RowRange, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`: its rows read as :func:`read` reads them, with what the plan decided for the
    whole table (a part without ``context`` is the whole table)."""
    p = Path(part.source)
    ctx = part.context
    if not isinstance(ctx, _Whole):
        return read(p, options=options, report=Report())
    file = str(p)

    def roles_for(cols: list[Any]) -> _Roles:
        return _resolve_roles(cols, overrides=options.columns, box_format=options.box_format, file=file)

    df, roles, first_line = _part_rows(p, part, ctx, roles_for, names=options.names)
    text = {roles.found[r] for r in ("image", "image_id", "polygon", "rle", "keypoints", "category")
            if r in roles.found}
    for col in df.columns:
        # pandas reads a column whose values here are all true / false as bool: what read() sees depends on
        # the rest of the column
        if col not in text and pd.api.types.is_bool_dtype(df[col].dtype):
            raise NeedsWholeRead(f"column {col!r} holds true/false values")
    lines = np.arange(first_line + part.start, first_line + part.stop, dtype=np.int64)
    return _from_frame(df, roles=roles, names=options.names, normalized=ctx.normalized, image_sizes=None,
                       images=options.images, file=file, src_line=lines, report=Report(), whole=ctx)


def auto_workers(path: Path, *, options: ReadOptions) -> int:
    """1: a table reads faster in one process than its parts in several (a 300,000-row CSV: 0.5 s whole)."""
    return 1


# ---------------------------------------------------------------------------------------------- streaming
@dataclass
class _Source:
    """A table file opened for streaming: its roles, the line of its first row, its rows in pieces, one column
    of the whole file in pieces (a second pass, for what the whole file decides), and its number of rows when
    known (else a piece shorter than asked for is the last)."""

    roles: _Roles
    first_line: int
    chunks: Iterator[pd.DataFrame]
    column: Callable[[str], Iterator[pd.Series]]
    rows: int | None = None


def _csv_source(path: Path, roles_for: Any, *, names: Any, chunk_rows: int) -> _Source:
    file = str(path)
    with _table_errors(file):
        sep, roles, dtype = _csv_layout(path, roles_for, names=names)

    def pieces(**kw: Any) -> Iterator[pd.DataFrame]:
        with _table_errors(file):
            reader = _read_csv(path, sep=sep, chunksize=chunk_rows, **kw)
        with reader:
            while True:
                with _table_errors(file):
                    df = next(reader, None)
                if df is None:
                    return
                yield df

    def column(name: str) -> Iterator[pd.Series]:
        for df in pieces(dtype={name: dtype.get(name, str)}, usecols=[name]):
            yield df[name]

    return _Source(roles=roles, first_line=2, chunks=pieces(dtype=dtype), column=column)


def _parquet_source(path: Path, roles_for: Any, *, chunk_rows: int) -> _Source | None:
    """A Parquet file read in record batches; None when pyarrow is missing or cannot open it (``read()`` then
    says why)."""
    file = str(path)
    try:
        pa = importlib.import_module("pyarrow")
        pf = importlib.import_module("pyarrow.parquet").ParquetFile(path)
        schema = pf.schema_arrow
        columns = list(schema.empty_table().to_pandas().columns)  # as pd.read_parquet names them
    except Exception:  # noqa: BLE001 - any failure here is read()'s to report
        return None
    roles = roles_for(columns)

    def batches(columns: list[str] | None) -> Iterator[Any]:
        it = pf.iter_batches(batch_size=chunk_rows, columns=columns)
        while True:
            try:
                b = next(it, None)
            except Exception as e:  # noqa: BLE001 - pyarrow raises its own ArrowInvalid etc.
                raise _parquet_error(file, e) from None
            if b is None:
                return
            yield b

    def chunks() -> Iterator[pd.DataFrame]:  # batches end at row groups: gather them up to chunk_rows rows
        group: list[Any] = []
        rows = 0
        for b in batches(None):
            group.append(b)
            rows += b.num_rows
            if rows >= chunk_rows:
                yield pa.Table.from_batches(group, schema=schema).to_pandas().reset_index(drop=True)
                group, rows = [], 0
        if group:
            yield pa.Table.from_batches(group, schema=schema).to_pandas().reset_index(drop=True)

    def column(name: str) -> Iterator[pd.Series]:
        for b in batches([str(name)]):
            yield b.column(0).to_pandas()

    return _Source(roles=roles, first_line=1, chunks=chunks(), column=column, rows=int(pf.metadata.num_rows))


def _last_image_start(keys: pd.Series) -> int:
    """Where the rows of the table's last image key begin (its trailing run); the length when it has none."""
    n = len(keys)
    if n == 0 or _isna(keys.iloc[-1]):
        return n
    same = np.asarray((keys == keys.iloc[-1]).to_numpy(dtype=bool, na_value=False))
    other = np.flatnonzero(~same)
    return int(other[-1]) + 1 if len(other) else 0


@dataclass
class _Stream:
    """What :func:`iter_chunks` carries from chunk to chunk, and the drops, changes and notes that it reports
    once, when the file ends, in the order and with the counts that ``read()`` reports them."""

    file: str
    root: Path | None
    normalized: bool | None                       # the option; None: the boxes decide
    names_of_file: Callable[[], Iterator[list[str | None]]]   # the raw image names of the whole file, by piece
    guess: bool | None = None                     # normalized=None: what the first finite boxes said
    any_fin: bool = False                         # every finite box so far: the extremes of its values
    lo: float = math.inf
    hi: float = -math.inf
    n_header: int = 0                             # image sizes read from headers
    n_absolute: int = 0                           # absolute image names outside the root, and one example
    absolute_example: str = ""
    common: str | None = None                     # the common folder of all of them (the whole file's)
    categories: dict[str, None] = field(default_factory=dict)   # declared so far, in order
    seen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # hashes of yielded images
    class_kind: tuple[str, int] | None = None     # numbers or text, and the line that showed it
    deferred: dict[tuple[bool, int], tuple[str, str, list[pd.DataFrame]]] = field(default_factory=dict)

    def check_kind(self, col: pd.Series, *, first_line: int) -> None:
        """A class column read without a forced type must hold numbers (indices into names) in every piece or
        text (names) in every piece, as the whole column would."""
        if bool(col.isna().all()):
            return  # empty cells are "no category" either way
        numeric = pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)
        kind = "numbers" if numeric else "text"
        if self.class_kind is None:
            self.class_kind = (kind, first_line)
        elif self.class_kind[0] != kind:
            raise NeedsWholeRead(f"the class column {col.name!r} holds {self.class_kind[0]} from line "
                                 f"{self.class_kind[1]} and {kind} near line {first_line}: whether its values are "
                                 "class indices or names is decided by the whole column")

    def check_grouped(self, imgs: _Images, lines: np.ndarray) -> None:
        """No image of this chunk may have been in an earlier one (its rows would be split between images)."""
        names = imgs.names
        if not len(names):
            return
        h = np.asarray(pd.util.hash_array(names), dtype=np.uint64)
        if len(self.seen):  # a hash collision only costs a whole read, never a wrong result
            at = np.minimum(np.searchsorted(self.seen, h), len(self.seen) - 1)
            hit = self.seen[at] == h
            if hit.any():
                c = int(np.flatnonzero(hit)[0])
                line = int(lines[int(np.argmax(imgs.row_name == c))])
                raise NeedsWholeRead(f"rows of image {names[c]!r} are not grouped together (line {line})")
        self.seen = np.sort(np.concatenate([self.seen, h]), kind="stable")

    def common_folder(self) -> str:
        """The common folder of every absolute image name outside the root in the whole file (read once)."""
        if self.common is None:
            roots = _roots_posix(self.root)
            common: str | None = None
            for names in self.names_of_file():
                dirs = [posixpath.dirname(_outside_path(nm)) for nm in names
                        if nm is not None and _place(nm, root=self.root, roots_posix=roots)[2] == "outside"]
                if dirs:
                    common = posixpath.commonpath(dirs if common is None else [common, *dirs])
            if common is None:
                raise NeedsWholeRead("the absolute image names were not found again in a second pass")
            self.common = common
        return self.common

    def box_mode(self, *, any_fin: bool, lo: float, hi: float, small: float, geometry: Callable[[], int | None],
                 violation: Callable[[], int]) -> bool:
        """Normalized or pixels for a chunk: the option, else what the first finite boxes say, which every
        later box must agree with (read() decides it on all of them at once)."""
        if any_fin:
            self.any_fin = True
            self.lo, self.hi = min(self.lo, lo), max(self.hi, hi)
        if self.normalized is not None:
            return self.normalized
        why = ("whether boxes are normalized is decided by the whole file ({option('normalized', True)} or {option('normalized', False)} decide it "
               "up front)")
        if not any_fin:
            if self.guess is None:
                line = geometry()
                if line is not None:
                    raise NeedsWholeRead(f"line {line} has a polygon or keypoints before any finite box: {why}")
                return False  # no row of this chunk depends on it
            return self.guess
        fits = lo >= 0.0 and hi <= 1.0 and small > 2
        if self.guess is None:
            self.guess = fits
        elif self.guess and not fits:
            raise NeedsWholeRead(f"the boxes before line {violation()} look normalized (values within [0, 1]) but "
                                 f"not that line's: {why}")
        return self.guess

    def defer(self, slot: int, reason: str, rows: pd.DataFrame, *, message: str = "", change: bool = False) -> None:
        """Keep dropped (or changed) rows until the end; ``slot`` is their place in read()'s order (one reason
        and message per slot)."""
        self.deferred.setdefault((change, slot), (reason, message, []))[2].append(rows)

    def finish(self, report: Report) -> None:
        """Report the drops, changes and notes of the whole file, as read() reports them."""
        for (change, _), (reason, message, frames) in sorted(self.deferred.items()):
            rows = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
            if change:
                report.change(reason, rows, message)
            else:
                report.drop(reason, rows, message)
        self.deferred.clear()
        if self.n_absolute:
            report.note("image.unsafe_name", self.file,
                        _unsafe_name_note(self.n_absolute, str(self.common), self.absolute_example), severity="info")
        if self.n_header:
            report.note("image.size_from_header", str(self.root or self.file), _header_note(self.n_header),
                        severity="info")
        if self.normalized is None and self.guess:
            report.note("coordinates.suspect", self.file, _SUSPECT_NORMALIZED)
        elif self.normalized and self.any_fin and max(abs(self.lo), abs(self.hi)) > 1.5:
            report.note("coordinates.suspect", self.file, _suspect_pixels(max(abs(self.lo), abs(self.hi))))


def iter_chunks(path: Path, *, options: ReadOptions, report: Report,
                chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Dataset]:
    """:func:`read` in pieces of whole images, so that a huge CSV / TSV / Parquet table is read in bounded
    memory (the protocol is in :mod:`prelabel.adapters.base`).

    The file is read ``chunk_rows`` rows at a time; the rows of the last image of a piece wait for the next
    one, so each chunk holds whole images (about ``chunk_rows`` rows; one image with more rows makes a bigger
    chunk). The rows are counted in ``report`` chunk by chunk; the rows dropped or changed while reading and
    the notes are added when the file ends, as read() adds them. Raises :class:`NeedsWholeRead` when an
    image's rows are not together (an image of an earlier chunk comes back), when a class column read with
    ``names`` holds numbers in one piece and text in another, or when ``normalized`` is not given and the
    boxes of the first chunks look normalized but a later one does not, and when a piece holds a value that is
    not a number or a malformed row (read() names the file's first one in its own order, which a piece cannot
    know).
    """
    p = _table_path(path)
    file = str(p)
    if chunk_rows < 1:
        raise UsageError(f"chunk_rows must be at least 1, got {chunk_rows}")

    def roles_for(cols: list[Any]) -> _Roles:
        return _resolve_roles(cols, overrides=options.columns, box_format=options.box_format, file=file)

    if p.suffix.lower() in _SUFFIXES_PARQUET:
        src = _parquet_source(p, roles_for, chunk_rows=chunk_rows)
        if src is None:
            yield read(p, options=options, report=report)
            return
    else:
        src = _csv_source(p, roles_for, names=options.names, chunk_rows=chunk_rows)
    found = src.roles.found
    is_id = "image" not in found
    key = found["image_id"] if is_id else found["image"]
    class_col = found["category"] if "category" in found and options.names is not None else None

    def names_of_file() -> Iterator[list[str | None]]:
        for col in src.column(key):
            yield [_raw_name(v, is_id=is_id, sizes=_SizeTable()) for v in pd.unique(col.dropna())]

    lookup = _name_lookup(options.names)
    stream = _Stream(file=file, root=options.images, normalized=options.normalized, names_of_file=names_of_file,
                     categories=dict.fromkeys(lookup[1]) if lookup is not None else {})

    def chunk(frame: pd.DataFrame, start: int) -> Dataset:
        first = src.first_line + start
        lines = np.arange(first, first + len(frame), dtype=np.int64)
        return _from_frame(frame.reset_index(drop=True), roles=src.roles, names=options.names,
                           normalized=options.normalized, image_sizes=None, images=options.images, file=file,
                           src_line=lines, report=report, stream=stream)

    try:
        yield from _chunks_of(src, stream, chunk, key=key, class_col=class_col, chunk_rows=chunk_rows,
                              report=report)
    except ReadError as e:
        # the file has a bad value or row: read() names the first one in its own order (column by column over
        # the whole file), which a piece cannot know; the whole read reports it exactly
        raise NeedsWholeRead(f"{e.file}{':' + str(e.line) if e.line else ''}: {e.reason}: read whole so that the "
                             "error is the one a whole read reports first") from None


def _chunks_of(src: Any, stream: _Stream, chunk: Callable[[pd.DataFrame, int], Dataset], *, key: str,
               class_col: str | None, chunk_rows: int, report: Report) -> Iterator[Dataset]:
    """iter_chunks' loop: pieces of the table cut at image boundaries (the last image waits for the next)."""
    carry: pd.DataFrame | None = None   # the rows of the last image seen, which may go on in the next piece
    carry_start = 0                     # its position in the file (0 = the first row)
    pos = 0
    yielded = False
    text_cols = {src.roles.found[r] for r in ("image", "image_id", "polygon", "rle", "keypoints", "category")
                 if r in src.roles.found}
    for df in src.chunks:
        if class_col is not None:
            stream.check_kind(df[class_col], first_line=src.first_line + pos)
        for col in df.columns:
            # pandas reads a piece whose values are all true / false as bool, and joining it to the next piece
            # turns them into 1 and 0: read() sees the text (an error, or iscrowd's noted coercion)
            if col not in text_cols and pd.api.types.is_bool_dtype(df[col].dtype):
                raise NeedsWholeRead(f"column {col!r} holds true/false values (line {src.first_line + pos} on)")
        start = carry_start if carry is not None else pos
        buf = df if carry is None else pd.concat([carry, df], ignore_index=True)
        pos += len(df)
        final = pos >= src.rows if src.rows is not None else len(df) < chunk_rows
        del df
        cut = len(buf) if final else _last_image_start(buf[key])
        carry, carry_start = (buf.iloc[cut:].copy(), start + cut) if cut < len(buf) else (None, 0)
        if cut:
            ds = chunk(buf.iloc[:cut], start)
            del buf
            if len(ds.images):
                yielded = True
                yield ds
            del ds
    last = chunk(carry, carry_start) if carry is not None else None
    stream.finish(report)
    if last is not None and (len(last.images) or not yielded):
        yield last
    elif not yielded:  # no image at all: one empty chunk still declares the categories, as read() does
        yield Dataset.build(categories={"name": list(stream.categories)}, report=report)
