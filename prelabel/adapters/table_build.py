"""The Dataset of a table of objects, one row per object: the one builder of prediction tables
(:mod:`prelabel.adapters.predictions`) and model objects (:func:`from_columns`, for
:mod:`prelabel.adapters.objects`). Image names made safe and their sizes found (columns, a size table, image
headers), categories, geometry cells, normalized boxes, and the drops, changes and notes of the ledger; and
what a plan decided for the whole table (:class:`PartContext`).

Example:
    >>> import numpy as np
    >>> ds = from_columns(image=np.array(["a.jpg"], dtype=object), category=np.array(["car"], dtype=object),
    ...                   xyxy=np.array([[1.0, 2.0, 5.0, 6.0]]), image_sizes={"a.jpg": (8, 8)})
    >>> ds.annotations[["category", "x", "y", "w", "h"]].values.tolist()
    [['car', 1.0, 2.0, 4.0, 4.0]]
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..converters.score import filter_min_score
from ..errors import UsageError, option
from ..geometry import bbox_of_polygons, rle_bbox
from ..images import ImageRoot
from ..imagesize import MAX_SIDE
from ..model import ANNOTATION_COLUMNS, Dataset
from ..report import Report, format_source
from .base import NeedsWholeRead
from .table_columns import (
    BOX_FORMATS,
    ROLE_COLUMNS,
    Cats,
    Roles,
    category_codes,
    category_codes_of,
    iscrowd_column,
    keypoint_rows,
    name_lookup,
    numeric_column,
    parse_cell,
    polygon_parts,
    repeat_str,
    rle_cell,
    split_bbox,
)

__all__ = ["Images", "id_key", "is_missing", "PartContext", "SizeTable", "from_columns", "from_frame", "raw_image_name",
           "resolve_images"]

NAME = "predictions"
_BOX_TOLERANCE = 0.01  # px: a stored box further than this from its geometry's box is reported as recomputed


# ---------------------------------------------------------------------------------------------- images
def id_key(v: Any) -> str:
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
class SizeTable:
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


def _size_table(image_sizes: Any) -> SizeTable:
    out = SizeTable()
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
            if names is not None and names[k] is not None and not is_missing(names[k]):
                if size is not None:
                    out.by_name[str(names[k])] = size
                if ids is not None:
                    out.name_of_id[id_key(ids[k])] = str(names[k])
            if ids is not None and size is not None:
                out.by_id[id_key(ids[k])] = size
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
            out.by_id[id_key(key)] = size
        return out
    raise UsageError("image_sizes must be a mapping {file_name: (width, height)} or a DataFrame")


def is_missing(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


@dataclass
class Images:
    """Per-row image index (-1 when the row's image is unusable), why, and the images table."""

    row_image: np.ndarray
    raw_codes: np.ndarray
    why: dict[int, str]                # raw image code -> why its rows are dropped
    table: pd.DataFrame
    row_name: np.ndarray               # per row: code into ``names`` (-1 = no usable name)
    names: np.ndarray                  # object array: every distinct image name, with a size or not


def raw_image_name(v: Any, *, is_id: bool, sizes: SizeTable) -> str | None:
    """The image name a distinct value of the image (or image id) column stands for; None when empty."""
    if is_id:
        k = id_key(v)
        return sizes.name_of_id.get(k, k)
    s = str(v).strip()
    return s or None


def resolve_images(keys: pd.Series, *, is_id: bool, col_w: np.ndarray | None, col_h: np.ndarray | None,
            sizes: SizeTable, root: Path | None, extra_sizes: Mapping[str, tuple[int, int]] | None,
            report: Report, file: str, whole: PartContext | None = None, lines: np.ndarray | None = None,
            src_files: np.ndarray | None = None) -> Images:
    """Factorize the image column, make names safe, and find every image's size (columns, table, headers).

    Works per distinct image; rows only meet two ``take``s. Names are made safe and related to the images root
    (:meth:`prelabel.images.ImageRoot.relate_all`, with its note about absolute names outside the root), and
    the headers are read, and their note written, by the same :class:`~prelabel.images.ImageRoot` (the tally
    shown at the first row of the first image whose header gave its size: ``lines`` and ``src_files``, each
    row's line and file, else ``file``). With ``whole`` (a part of :func:`prelabel.adapters.predictions.plan`)
    the common folder of absolute names is the plan's, the last part writes the note about them, and every part
    tallies the sizes read from headers (counts of 0 too)."""
    resolver = ImageRoot(root, report=report, given=False)  # names, paths under the root, header sizes
    if whole is not None and whole.last and whole.absolute is not None:
        resolver.outside_note(*whole.absolute, at=file)
    raw_codes, uniques = pd.factorize(keys, sort=False, use_na_sentinel=True)
    raw_codes = np.asarray(raw_codes, dtype=np.int64)
    u = uniques.tolist()   # (a list of Python values at once: iterating Arrow-backed strings is slow)
    nu = len(u)
    named = resolver.relate_all([raw_image_name(v, is_id=is_id, sizes=sizes) for v in u],
                                common=whole.common if whole is not None else None)
    rel, local, why = named.names, named.paths, named.why
    if named.outside and whole is None:
        resolver.outside_note(len(named.outside), str(named.common), named.example, at=file)
    # several raw names may be one image ("./a.jpg", "a.jpg")
    final_codes, final_names = pd.factorize(pd.Series(rel, dtype=object), sort=False, use_na_sentinel=True)
    final_codes = np.asarray(final_codes, dtype=np.int64)
    nf = len(final_names)
    fw = np.full(nf, np.nan)
    fh = np.full(nf, np.nan)
    flocal: list[str | None] = [None] * nf
    fraw: list[str] = [""] * nf
    ffirst = np.zeros(nf, dtype=np.int64)  # each image's first raw value (its rows come first)
    for i in range(nu):
        c = int(final_codes[i])
        if c >= 0 and not fraw[c]:
            flocal[c] = local[i]
            fraw[c] = str(u[i])
            ffirst[c] = i
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
        hit = ((sizes.by_id.get(id_key(fraw[c])) if is_id else None) or sizes.by_name.get(fraw[c])
               or sizes.by_name.get(name) or extra.get(fraw[c]) or extra.get(name))
        if hit is not None:
            fw[c], fh[c] = hit
    # sizes no image can have (above int32, as pycocotools) are unknown: the header, else a drop, decides
    with np.errstate(invalid="ignore"):
        too_big = (fw > MAX_SIDE) | (fh > MAX_SIDE)
    fw[too_big] = np.nan
    fh[too_big] = np.nan
    # 3. the image files' headers (the paths under the root, not looked up: a file not there gives no size)
    todo = [c for c in np.flatnonzero(np.isnan(fw)).tolist() if flocal[c] is not None]
    if todo:
        first_row = np.zeros(nu, dtype=np.int64)     # each raw value's first row: the last assignment wins
        with_name = np.flatnonzero(raw_codes >= 0)[::-1]
        first_row[raw_codes[with_name]] = with_name
        rows = first_row[ffirst[todo]]
        at_files = src_files[rows].tolist() if src_files is not None else repeat_str(file, len(rows)).tolist()
        at_lines = lines[rows].tolist() if lines is not None else [0] * len(rows)
        placed = resolver.settle_all([str(final_names[c]) for c in todo], [flocal[c] for c in todo],
                                     at=[format_source(str(f), int(n)) for f, n in zip(at_files, at_lines,
                                                                                       strict=True)],
                                     sizes=[None] * len(todo))
        for c, img in zip(todo, placed, strict=True):
            if img.size is not None:
                fw[c], fh[c] = img.size
    # (a part writes its count of 0 too: the merge adds them up where the last part's stands)
    resolver.notes(source=str(root or file), part=whole is not None)
    has_size = ~np.isnan(fw)
    keep_idx = np.flatnonzero(has_size)          # images without a size are not in the table
    new_index = np.full(nf + 1, -1, dtype=np.int64)   # [nf] = -1 for "no image"
    new_index[keep_idx] = np.arange(len(keep_idx))
    raw_to_row = np.append(new_index[np.where(final_codes >= 0, final_codes, nf)], -1)  # [nu] = -1 for NaN
    for i in range(nu):
        c = int(final_codes[i])
        if i in why or c < 0 or has_size[c]:
            continue
        why[i] = resolver.why_unsized(str(final_names[c]), flocal[c], lacks="no width/height columns or image_sizes")
    row_image = raw_to_row[np.where(raw_codes >= 0, raw_codes, nu)]
    table = pd.DataFrame({
        "file_name": pd.Series([str(final_names[c]) for c in keep_idx], dtype=object),
        "width": fw[keep_idx].astype(np.int64),
        "height": fh[keep_idx].astype(np.int64),
        "path": pd.Series([flocal[c] for c in keep_idx], dtype=object),
        "src_file": pd.Series(repeat_str(file, len(keep_idx)), dtype=object),
    })
    row_name = np.append(final_codes, -1)[np.where(raw_codes >= 0, raw_codes, nu)]
    return Images(row_image=row_image, raw_codes=raw_codes, why=why, table=table, row_name=row_name,
                   names=np.asarray(list(final_names), dtype=object))


# ---------------------------------------------------------------------------------------------- assembly
@dataclass
class _Input:
    """Columns in their source form, every array of the same length n."""

    n: int
    image: pd.Series
    image_is_id: bool
    cats: Cats
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
              image_sizes: Any, images: Path | None, report: Report, whole: PartContext | None = None) -> Dataset:
    """The Dataset of one table. With ``whole`` the table is a part of
    :func:`prelabel.adapters.predictions.plan`, read with what the plan decided for the whole table."""
    n = inp.n
    file = inp.file
    lines = inp.src_line
    cats = inp.cats
    report.add_read(n)
    imgs = resolve_images(inp.image, is_id=inp.image_is_id, col_w=inp.width, col_h=inp.height,
                   sizes=_size_table(image_sizes), root=images, extra_sizes=inp.extra_sizes, report=report,
                   file=file, whole=whole, lines=lines, src_files=inp.src_files)
    row_image = imgs.row_image
    table = imgs.table

    def src_files(rows: np.ndarray) -> np.ndarray:
        if inp.src_files is not None:
            return np.asarray(inp.src_files[rows], dtype=object)
        return repeat_str(file, int(rows.sum()) if rows.dtype == bool else len(rows))

    def rows_of(rows: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame({"category": cats.per_row(rows), "src_file": src_files(rows), "src_line": lines[rows]})

    def drop(slot: int, reason: str, mask: np.ndarray, messages: Any) -> None:
        """Drop rows; ``slot`` is the place of this drop in read()'s order, which the merge of parts keeps."""
        if mask.any():
            report.drop(reason, rows_of(mask).assign(message=messages), phase=slot + 2)

    def change(slot: int, code: str, rows: pd.DataFrame, message: str) -> None:
        report.change(code, rows, message, phase=slot + 1)

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
        if whole is not None:
            normalized = whole.box_mode(fin, fits=lo >= 0.0 and hi <= 1.0 and small > 2, lines=lines)
            if whole.last and whole.candidate and normalized:
                report.note("coordinates.suspect", file, _SUSPECT_NORMALIZED)
            elif whole.last and whole.top is not None:
                report.note("coordinates.suspect", file, _suspect_pixels(whole.top[0]))
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
            v = parse_cell(vals[i], what=kind, file=file, line=line)
            if v is None or (isinstance(v, (list, tuple)) and not v):
                continue
            if kind == "rle":
                r = rle_cell(v, file=file, line=line)
                if r["size"] != [int(H[i]), int(W[i])]:
                    invalid[i] = f"mask size {r['size']} is not the image's [h, w] = [{int(H[i])}, {int(W[i])}]"
                    continue
                seg[i] = r
            else:
                parts = polygon_parts(v, file=file, line=line)
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
            v = parse_cell(vals[i], what="keypoints", file=file, line=int(lines[i]))
            if v is None:
                continue
            karr = keypoint_rows(v, file=file, line=int(lines[i]))
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
    lookup = name_lookup(names)
    order: list[str] = list(dict.fromkeys(lookup[1])) if lookup is not None else []
    known = set(order)
    for c in pd.unique(kept_codes).tolist():
        name = str(cats.names[c])
        if name not in known:
            known.add(name)
            order.append(name)
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


def from_frame(df: pd.DataFrame, *, roles: Roles, names: Sequence[str] | Mapping[int, str] | None,
                normalized: bool | None, image_sizes: Any, images: Path | None, file: str, src_line: np.ndarray,
                report: Report, whole: PartContext | None = None) -> Dataset:
    if "bbox" in roles.found:
        df, roles = split_bbox(df, roles)
    f = roles.found
    if "category" in f:
        cats = category_codes(df[f["category"]], as_index=False, names=names, file=file, lines=src_line)
    else:
        cats = category_codes(df[f["class_id"]], as_index=True, names=names, file=file, lines=src_line)
    bad: dict[int, str] = {}   # rows with a value that is not a number: dropped at their line

    def num(role: str) -> np.ndarray:
        return numeric_column(df[f[role]], role=role, file=file, lines=src_line, invalid=bad)

    def opt_num(role: str) -> np.ndarray | None:
        return num(role) if role in f else None

    box = None
    if roles.box_format is not None:
        r0, r1, r2, r3 = BOX_FORMATS[roles.box_format]
        box = (num(r0), num(r1), num(r2), num(r3))

    image_is_id = "image" not in f
    inp = _Input(
        n=len(df), image=df[f["image_id"] if image_is_id else f["image"]], image_is_id=image_is_id,
        cats=cats, box=box, box_format=roles.box_format or "xywh",
        score=opt_num("score"), width=opt_num("width"), height=opt_num("height"), src_line=src_line, file=file,
        polygon=df[f["polygon"]] if "polygon" in f else None, rle=df[f["rle"]] if "rle" in f else None,
        keypoints=df[f["keypoints"]] if "keypoints" in f else None,
        iscrowd=iscrowd_column(df[f["iscrowd"]], file=file, lines=src_line) if "iscrowd" in f else None, invalid=bad)
    return _assemble(inp, normalized=normalized, names=names, image_sizes=image_sizes, images=images,
                     report=report, whole=whole)


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
    cats = category_codes_of(np.asarray(category, dtype=object))
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


@dataclass(frozen=True)
class PartContext:
    """What :func:`plan` decided once for the whole table, carried by each of its parts (``RowRange.context``)."""

    common: str | None = None                     # the common folder of the absolute image names outside the root
    absolute: tuple[int, str, str] | None = None  # their note: count, common folder, example
    normalized: bool = False                      # the boxes are fractions of the image size
    candidate: bool = False                       # ``normalized`` is the plan's finding (the option was not given)
    witness: int | None = None                    # the line of the plan's first box out of [0, 1] (pixels) or
                                                  # first finite box (normalized): its part checks it keeps such
    top: tuple[float, int] | None = None          # normalized=True: the largest value of a finite box (over 1.5,
                                                  # the note names it) and its line, checked by the part holding it
    class_text: bool = False                      # the class column is read as text (the whole column is not numbers)
    last: bool = False                            # this part writes the notes about the whole table
    byte_range: tuple[int, int] | None = None     # CSV: the bytes of the part's rows, and of the header line
    header: int = 0
    unsplit: str = ""                             # why the table cannot be cut (read() is its one part)

    def box_mode(self, fin: np.ndarray, *, fits: bool, lines: np.ndarray) -> bool:
        """``normalized`` for this part, after checking that its boxes agree with the plan's finding (read()
        decides on every box of the table at once, and names the largest one it kept): else the table is read
        whole."""
        if self.top is not None:
            at = self.top[1]
            if len(lines) and int(lines[0]) <= at <= int(lines[-1]) and not bool(fin[lines == at].any()):
                raise NeedsWholeRead(f"the largest box value (line {at}) is on a row read() does not keep")
        if not self.candidate:
            return self.normalized
        w = self.witness
        held = w is not None and len(lines) > 0 and int(lines[0]) <= w <= int(lines[-1])
        kept = bool(fin.any())   # this part has a finite box that read() keeps
        if self.normalized:  # every part's boxes fit, and the part of the plan's first finite box keeps one
            ok = (fits or not kept) and (kept or not held)
        else:  # the part of the plan's first box out of [0, 1] keeps one that does not fit (none: no box at all)
            ok = (not held or (kept and not fits)) and (w is not None or not kept)
        if not ok:
            raise NeedsWholeRead("whether the boxes are normalized is decided by the whole table")
        return self.normalized
