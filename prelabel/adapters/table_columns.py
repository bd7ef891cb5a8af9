"""Columns of a prediction table (:mod:`prelabel.adapters.predictions`): which column plays which role (found
by name, case-insensitively, or named by the user), the box conventions (``xyxy``, ``xywh``, ``cxcywh``, one
``[x, y, w, h]`` column), and the cells read as numbers, categories, polygons, masks and keypoints.

Example:
    >>> roles = resolve_roles(["filename", "class", "x", "y", "w", "h"], overrides={}, box_format=None, file="t")
    >>> roles.box_format, roles.found["category"]
    ('xywh', 'class')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import ReadError, UsageError, option

__all__ = ["BOX_FORMATS", "ROLE_COLUMNS", "Cats", "Roles", "category_codes", "category_codes_of",
           "iscrowd_column", "keypoint_rows", "name_lookup", "numeric_column", "parse_cell",
           "polygon_parts", "repeat_str", "resolve_roles", "rle_cell", "split_bbox"]

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

# ---------------------------------------------------------------------------------------------- columns
@dataclass
class Roles:
    """Role -> actual column name, and the box format the box roles describe."""

    found: dict[str, str] = field(default_factory=dict)
    box_format: str | None = None


def resolve_roles(columns: Sequence[Any], *, overrides: Mapping[str, str], box_format: str | None,
                   file: str) -> Roles:
    """Map roles to columns (overrides first, then the default names); raise ReadError when required ones miss."""
    actual = [str(c) for c in columns]
    lower: dict[str, str] = {}
    for c in actual:
        lower.setdefault(c.strip().lower(), c)
    roles = Roles()
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
        name = _first_free(role, lower, used)
        if name is not None:
            roles.found[role] = name
            used.add(name)
        return name

    if pick("image") is None:
        pick("image_id")
    if pick("category") is None:
        pick("class_id")

    if box_format is not None and box_format not in BOX_FORMATS:
        raise UsageError(f"unknown box format {box_format!r}", hint="use xyxy, xywh or cxcywh")
    fmt = box_format
    if fmt is None:  # an override of a format-specific role decides (the only box roles found yet)
        for name, rs in BOX_FORMATS.items():
            if any(r in roles.found for r in rs[:2]):
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
            hit = _first_free(r, lower, taken)
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


def _first_free(role: str, lower: Mapping[str, str], used: set[str]) -> str | None:
    """The first of the role's column names in the table (``lower``: lower-cased name -> column) not yet used."""
    return next((lower[c] for c in ROLE_COLUMNS[role] if c in lower and lower[c] not in used), None)


def _box_fallbacks(roles: Roles, lower: Mapping[str, str], used: set[str], *, fmt: str | None) -> None:
    """The common layouts that match no box format by name: ``xmin, ymin, width, height`` (a corner and a size,
    with no ``xmax``) and one ``bbox`` column holding ``[x, y, w, h]``; both are ``xywh``."""
    def first(role: str) -> str | None:
        return _first_free(role, lower, used)

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


def split_bbox(df: pd.DataFrame, roles: Roles) -> tuple[pd.DataFrame, Roles]:
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
    return out, Roles(found=found, box_format=roles.box_format)


def _to_float(v: Any) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.inf if not str(v).strip().startswith("-") else -math.inf
    except (TypeError, ValueError):
        return math.nan


def numeric_column(col: pd.Series, *, role: str, file: str, lines: np.ndarray,
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
    # a bool among other values (an object column of a DataFrame): to_numeric makes it 1 or 0; not a number
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


def repeat_str(value: str, n: int) -> np.ndarray:
    """An object array of ``n`` references to one string (np.full with a str is 10x slower)."""
    return np.array([value], dtype=object)[np.zeros(n, dtype=np.intp)]


# ---------------------------------------------------------------------------------------------- categories
def name_lookup(names: Sequence[str] | Mapping[int, str] | None) -> tuple[np.ndarray, list[str]] | None:
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
class Cats:
    """Categories as codes into ``names`` (-1 = unknown, ``why`` says why), not one string per row."""

    codes: np.ndarray
    names: np.ndarray          # object array of distinct names
    why: np.ndarray            # object array per row: the reason where codes == -1

    def per_row(self, rows: np.ndarray) -> np.ndarray:
        """Names of some rows (a boolean mask or positions), None where unknown."""
        ext = np.concatenate([self.names, np.array([None], dtype=object)])
        c = self.codes[rows]
        return np.asarray(ext[np.where(c >= 0, c, len(self.names))], dtype=object)


def category_codes_of(values: np.ndarray) -> Cats:
    """Codes of an object array of names (None = unknown)."""
    codes, uniq = pd.factorize(pd.Series(values, dtype=object), sort=False, use_na_sentinel=True)
    codes = np.asarray(codes, dtype=np.int64)
    why = np.empty(len(codes), dtype=object)
    why[codes < 0] = "no category"
    return Cats(codes=codes, names=np.asarray(list(uniq), dtype=object), why=why)


def category_codes(col: pd.Series, *, as_index: bool, names: Sequence[str] | Mapping[int, str] | None, file: str,
                lines: np.ndarray) -> Cats:
    """Category codes of a name column, or of an index column through ``names``."""
    n = len(col)
    why = np.empty(n, dtype=object)
    lookup = name_lookup(names)
    numeric = pd.api.types.is_numeric_dtype(col.dtype) and not pd.api.types.is_bool_dtype(col.dtype)
    if as_index or numeric:
        idx_f = numeric_column(col, role="class_id", file=file, lines=lines)
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
            return Cats(codes=codes, names=np.asarray(arr, dtype=object), why=why)
        fcodes, uniq = pd.factorize(idx[integral], sort=False)
        codes = np.full(n, -1, dtype=np.int64)
        codes[integral] = fcodes
        return Cats(codes=codes, names=np.asarray([str(int(v)) for v in uniq], dtype=object), why=why)
    raw, uniq = pd.factorize(col, sort=False, use_na_sentinel=True)
    strs = pd.Series([str(v).strip() for v in uniq], dtype=object).replace("", None)
    f2, names_u = pd.factorize(strs, sort=False, use_na_sentinel=True)   # "cat" and "cat " are one name
    f2 = np.append(np.asarray(f2, dtype=np.int64), -1)
    codes = f2[np.where(raw >= 0, raw, len(f2) - 1)]
    why[codes < 0] = "no category"
    return Cats(codes=codes, names=np.asarray(list(names_u), dtype=object), why=why)


# ---------------------------------------------------------------------------------------------- geometry cells
def parse_cell(v: Any, *, what: str, file: str, line: int) -> Any:
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


def polygon_parts(v: Any, *, file: str, line: int) -> list[np.ndarray]:
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


def rle_cell(v: Any, *, file: str, line: int) -> dict[str, Any]:
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


def keypoint_rows(v: Any, *, file: str, line: int) -> np.ndarray:
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


def iscrowd_column(col: pd.Series, *, file: str, lines: np.ndarray) -> np.ndarray:
    if col.dtype == object or pd.api.types.is_string_dtype(col.dtype):
        col = col.map(lambda v: {"true": 1, "false": 0}.get(v.strip().lower(), v) if isinstance(v, str) else v)
    vals = numeric_column(col, role="iscrowd", file=file, lines=lines)
    vals = np.where(np.isnan(vals), 0.0, vals)
    bad = ~np.isin(vals, (0.0, 1.0))
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ReadError(file, f"column {col.name!r} (iscrowd): {col.to_numpy()[k]!r} is not 0 or 1",
                        line=int(lines[k]))
    return vals.astype(np.int8)
