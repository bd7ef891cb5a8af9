"""COCO JSON as an input: re-map, merge or clip existing COCO files (the writer is ``converters/coco.py``).

Two shapes are read:

- a COCO document (a dict with ``images`` and ``annotations``: instances, keypoints, or both);
- a COCO *results* list (``[{"image_id", "category_id", "bbox" | "segmentation" | "keypoints", "score"}]``),
  whose images and categories come from the ground-truth file given as ``options.images_from``
  (``--images-from GT.json``).

What the reader tolerates, and how (each case is reported):

- Ids are only keys: images keep the file's order (output ids 1..N follow it), categories keep the file's
  order with their names and ``supercategory``; ids from 0, gaps (1, 2, 4) and string ids (``"5"`` and ``5``
  are the same image) all work.
- ``iscrowd`` written as ``"false"``/``"true"``/``"0"``/``"1"``/``false``/``true`` becomes 0/1
  (``value.coerced``, info); a missing ``iscrowd``, ``area`` or ``info`` is fine (area is recomputed on writing).
- The box of an annotation with a polygon or an RLE is the geometry's enclosing box; when the stored ``bbox``
  disagrees by more than 0.01 px it is ``recomputed`` (a change with the location ``file#annotations[i]``).
- Uncompressed RLE (``counts`` as a list) is kept as an RLE dict (the writer compresses it).
- Keypoints become (K, 3) arrays; a category's ``keypoints`` names are kept, or named ``kp1..kpK`` when the
  file gives none (``value.coerced``); a skeleton holding an index 0 is 0-based and is shifted to COCO's
  1-based form (``skeleton.shifted``).
- An annotation whose image or category does not exist is dropped (``dropped.no_image``,
  ``dropped.unknown_category``); an image whose ``file_name`` is unsafe (absolute, ``..``) is left out with
  an ``image.unsafe_name`` note and its annotations dropped as ``dropped.no_image``. An image without
  width/height takes its size from its file under the images root, else it is left out the same way.
- Polygon parts of fewer than 3 points are removed (``repaired``); an RLE whose size is not the image's is
  dropped as ``dropped.invalid``; so is one malformed annotation (not an object, no ``image_id``, a bad
  ``bbox``, ``keypoints``, ``iscrowd`` or ``score``, no geometry), with the location ``file#annotations[3]``
  and what is wrong, and the rest of the file is read. A file that is not a COCO document raises
  :class:`~prelabel.errors.ReadError` naming the file and the element.
- A stored ``area`` further than max(1 px², 1 %) from the area written (polygon or mask area, else w*h) is
  ``recomputed`` too (one change per annotation, the message giving the stored and the new values).

Example:
    >>> import json, tempfile, pathlib
    >>> from prelabel.adapters import coco
    >>> from prelabel.adapters.base import ReadOptions
    >>> from prelabel.report import Report
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "gt.json"
    >>> _ = p.write_text(json.dumps({
    ...     "images": [{"id": 0, "file_name": "a.jpg", "width": 10, "height": 10}],
    ...     "categories": [{"id": 0, "name": "cat"}],
    ...     "annotations": [{"id": 0, "image_id": 0, "category_id": 0, "bbox": [1, 2, 3, 4], "iscrowd": "false"}]}))
    >>> coco.detect(p)
    0.9
    >>> ds = coco.read(p, options=ReadOptions(), report=Report())
    >>> ds.annotations[["image", "category", "x", "y", "w", "h", "iscrowd"]].values.tolist()
    [[0, 'cat', 1.0, 2.0, 3.0, 4.0, 0]]
"""

from __future__ import annotations

import math
import mmap
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..converters.coco import load
from ..errors import ReadError, option
from ..gcpause import gc_paused
from ..geometry import bbox_of_polygons, polygons_area, rle_area, rle_bbox
from ..images import ImageRoot
from ..imagesize import MAX_SIDE
from ..model import Dataset
from ..paths import is_url
from ..report import Diagnostic, Report
from .base import NeedsWholeRead, ReadOptions
from .json_array import LIST_START, MAX_MISSES, Scan, closing, scan, walk_far
from .parts import ByteRange

__all__ = ["DESCRIPTION", "NAME", "AnnotationRun", "detect", "plan", "read", "read_part"]

NAME = "coco"
DESCRIPTION = "COCO JSON (instances, keypoints; results lists with --images-from GT.json)"

_BOX_TOLERANCE = 0.01   # px: a stored bbox further than this from the geometry's box is reported as recomputed
# a stored area further than max(1 px², 1 %) from the area written (polygon, RLE pixel count, else w*h) is
# reported as recomputed: pycocotools' own areas (rasterized polygons) stay within it
_AREA_TOLERANCE = 1.0
_AREA_RELATIVE = 0.01
_ISCROWD = {"0": 0, "1": 1, "false": 0, "true": 1}


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _key(v: Any) -> Any:
    """The lookup key of an id: ints stay ints, "5" becomes 5, other strings stay strings."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float) and math.isfinite(v) and v.is_integer():
        return int(v)
    if isinstance(v, str):
        s = v.strip()
        if s.lstrip("+-").isdigit():
            return int(s)
        return s
    return None  # unhashable or null: no such key


# ---------------------------------------------------------------------------------------------- detect
def detect(path: Path) -> float:
    """0.9 for a .json whose top level is an object with an ``images`` array and an ``annotations`` key; 0.5 for
    an array whose first value is an object with ``image_id`` and ``bbox`` / ``segmentation`` / ``keypoints`` (a
    results file); else 0.

    Told from the bytes around those keys (:mod:`prelabel.adapters.json_array`), never by parsing the whole
    file, however large: a COCO file of any size is found, at no cost in memory, its ``annotations`` key
    however far behind its images (a file malformed further on is COCO: its read says where)."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() != ".json":
        return 0.0
    try:
        with open(p, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as raw:
            return _detect(raw)
    except (OSError, ValueError):  # unreadable, or empty (an empty file cannot be mapped)
        return 0.0


def _detect(raw: Any) -> float:
    at = _skip_space(raw, 3 if raw[:3] == b"\xef\xbb\xbf" else 0)  # after a UTF-8 byte order mark, as load() does
    if at >= len(raw):
        return 0.0
    if raw[at] == 0x7B:  # {
        return 0.9 if _top_key(raw, at + 1, _IMAGES_KEY) and _top_key(raw, at + 1, _ANNOTATIONS_ANY) else 0.0
    if raw[at] != 0x5B:  # [
        return 0.0
    first = _skip_space(raw, at + 1)
    end = closing(raw, first + 1) if first < len(raw) and raw[first] == 0x7B else None
    if end is None:
        return 0.0
    try:
        doc = orjson.loads(raw[first:end + 1])
    except orjson.JSONDecodeError:
        return 0.0
    if isinstance(doc, dict) and "image_id" in doc and any(k in doc for k in ("bbox", "segmentation", "keypoints")):
        return 0.5
    return 0.0


def _skip_space(raw: Any, at: int) -> int:
    while at < len(raw) and raw[at] in b" \t\r\n":
        at += 1
    return at


def _top_key(raw: Any, inside: int, key: re.Pattern[bytes]) -> re.Match[bytes] | None:
    """The first match of ``key`` that is a key of the object whose body starts at ``inside`` (not of an object
    inside it), among its first candidates; None when there is none."""
    for _, m in zip(range(MAX_MISSES), key.finditer(raw, inside), strict=False):
        if walk_far(raw, inside, m.start()).balanced:
            return m
    return None


# ---------------------------------------------------------------------------------------------- images
@dataclass
class _Images:
    table: pd.DataFrame
    row_of: dict[Any, int] = field(default_factory=dict)     # id key -> row position
    why: dict[Any, str] = field(default_factory=dict)        # id key -> why its annotations are dropped
    # a part's images (rows lo..hi of the file's): the ids of the file's other images (sorted int64, or a set
    # when some are strings); an annotation of one of them raises NeedsWholeRead
    elsewhere: Any = None

    def run(self, lo: int, hi: int) -> _Images:
        """The images of rows ``lo``..``hi`` (renumbered from 0), knowing the others' ids."""
        keys = list(self.row_of)
        mine = {k: r - lo for k, r in self.row_of.items() if lo <= r < hi}
        others = [k for k in keys if not lo <= self.row_of[k] < hi]
        elsewhere: Any = (np.sort(np.asarray(others, dtype=np.int64))
                          if all(type(k) is int and -2**63 <= k < 2**63 for k in others)
                          else frozenset(others))
        return _Images(table=self.table.iloc[lo:hi].reset_index(drop=True), row_of=mine, why=self.why,
                       elsewhere=elsewhere)

    def is_elsewhere(self, key: Any) -> bool:
        """Whether ``key`` is the id of an image of another part."""
        if self.elsewhere is None or key is None:
            return False
        if isinstance(self.elsewhere, np.ndarray):
            if type(key) is not int or not len(self.elsewhere) or not -2**63 <= key < 2**63:
                return False
            at = int(np.searchsorted(self.elsewhere, key))
            return at < len(self.elsewhere) and int(self.elsewhere[at]) == key
        return key in self.elsewhere


_NO_SIZE = "no width/height in the file"  # what an image without a size lacks (ImageRoot.why_unsized)
_MAX_KEYPOINTS = 100_000  # keypoint names synthesized for a category that names none (kp1..kpK)


def _int_size(v: Any) -> int | None:
    if _is_num(v) and math.isfinite(v) and float(v).is_integer() and 1 <= v <= MAX_SIDE:
        return int(v)
    if isinstance(v, str) and v.strip().isdigit() and len(v.strip()) <= 10 and 1 <= int(v) <= MAX_SIDE:
        return int(v)
    return None


def _images(items: Any, *, file: str, root: Path | None, report: Report) -> _Images:
    if not isinstance(items, list):
        raise ReadError(file, "'images' must be a list", element="images")
    names: list[str] = []
    widths: list[int] = []
    heights: list[int] = []
    paths: list[str | None] = []
    attrs: list[Any] = []
    keys: list[Any] = []
    out = _Images(table=pd.DataFrame())
    pending: list[tuple[int, Any, str, str, str]] = []  # (position, key, name, local path, where): header size
    # names, paths under the root (not looked up: only an image without a size needs its file) and header sizes
    images = ImageRoot(root, report=report, given=False)
    seen: set[Any] = set()
    for i, im in enumerate(items):
        el = f"images[{i}]"
        if not isinstance(im, Mapping):
            raise ReadError(file, "not an object", element=el)
        key = _key(im.get("id"))
        if key is None:
            raise ReadError(file, f"id must be an integer or a string, got {im.get('id')!r}", element=el)
        if key in seen:
            raise ReadError(file, f"duplicate image id {im.get('id')!r}", element=el)
        seen.add(key)
        fn = im.get("file_name")
        if not isinstance(fn, str) or not fn.strip():
            raise ReadError(file, f"file_name must be a non-empty string, got {fn!r}", element=el)
        url = fn if is_url(fn) else None   # s3://bucket/key, https://host/a.jpg?sig=...: the shared rule
        rel = images.name(fn, at=f"{file}#{el}", urls=True,
                          refused="the image is left out and its annotations dropped")
        if rel is None:
            out.why[key] = f"image {fn!r} has an unsafe file_name ({images.why_refused(fn, urls=True)})"
            continue
        local = images.path_of(rel)
        w, h = _int_size(im.get("width")), _int_size(im.get("height"))
        if (im.get("width") is not None and w is None) or (im.get("height") is not None and h is None):
            raise ReadError(file, f"width and height must be integers from 1 to {MAX_SIDE}, got {im.get('width')!r} x "
                                  f"{im.get('height')!r}", element=el)
        if w is None or h is None:
            if local is None:
                out.why[key] = images.why_unsized(rel, None, lacks=_NO_SIZE)
                report.note("image.missing", f"{file}#{el}", f"{out.why[key]}; its annotations are dropped")
                continue
            pending.append((len(names), key, rel, local, f"{file}#{el}"))
            w, h = 0, 0
        keys.append(key)
        names.append(rel)
        widths.append(w)
        heights.append(h)
        paths.append(local)
        a = im.get("attributes")
        attr = dict(a) if isinstance(a, Mapping) and a else None
        if url is not None:
            attr = {**(attr or {}), "url": url}
        attrs.append(attr)
    if pending:
        placed = images.settle_all([t[2] for t in pending], [t[3] for t in pending], at=[t[4] for t in pending],
                                   sizes=[None] * len(pending))
        gone: set[int] = set()
        for (pos, key, rel, local, _at), img in zip(pending, placed, strict=True):
            if img.size is None:
                gone.add(pos)
                out.why[key] = images.why_unsized(rel, local, lacks=_NO_SIZE)
                report.note("image.missing", file, f"{out.why[key]}; its annotations are dropped")
            else:
                widths[pos], heights[pos] = img.size
        images.notes(source=str(root))  # the sizes read from headers: one note, at the first image counted
        if gone:
            keep = [k for k in range(len(names)) if k not in gone]
            names = [names[k] for k in keep]
            widths = [widths[k] for k in keep]
            heights = [heights[k] for k in keep]
            paths = [paths[k] for k in keep]
            attrs = [attrs[k] for k in keep]
            keys = [keys[k] for k in keep]
    out.row_of = {key: pos for pos, key in enumerate(keys)}
    out.table = pd.DataFrame({"file_name": names, "width": np.asarray(widths, dtype=np.int64),
                              "height": np.asarray(heights, dtype=np.int64), "path": paths,
                              "attributes": pd.Series(attrs, dtype=object), "src_file": file})
    return out


# ---------------------------------------------------------------------------------------------- categories
@dataclass
class _Category:
    name: str
    supercategory: str
    keypoints: list[str] | None
    skeleton: list[list[int]] | None
    element: str


def _categories(items: Any, *, file: str, report: Report) -> tuple[list[_Category], dict[Any, str]]:
    if not isinstance(items, list):
        raise ReadError(file, "'categories' must be a list", element="categories")
    cats: list[_Category] = []
    name_of: dict[Any, str] = {}
    by_name: dict[str, _Category] = {}
    for i, c in enumerate(items):
        el = f"categories[{i}]"
        if not isinstance(c, Mapping):
            raise ReadError(file, "not an object", element=el)
        key = _key(c.get("id"))
        if key is None:
            raise ReadError(file, f"id must be an integer or a string, got {c.get('id')!r}", element=el)
        if key in name_of:
            raise ReadError(file, f"duplicate category id {c.get('id')!r}", element=el)
        name = c.get("name")
        if not isinstance(name, (str, int)) or isinstance(name, bool) or not str(name).strip():
            raise ReadError(file, f"name must be a non-empty string, got {name!r}", element=el)
        name = str(name)
        name_of[key] = name
        if name in by_name:
            report.note("category.matched", f"{file}#{el}",
                        f"category id {c.get('id')!r} repeats the name {name!r}: merged into one category")
            continue
        kp = c.get("keypoints")
        if kp is not None and (not isinstance(kp, list) or not all(isinstance(k, (str, int)) for k in kp)):
            raise ReadError(file, "keypoints must be a list of names", element=el)
        sk = c.get("skeleton")
        skeleton: list[list[int]] | None = None
        if sk is not None:
            try:
                skeleton = [[int(a), int(b)] for a, b in sk]
            except (TypeError, ValueError):
                raise ReadError(file, f"skeleton must be a list of [a, b] keypoint indices, got {sk!r}",
                                element=el) from None
            if skeleton and any(v == 0 for e in skeleton for v in e):
                skeleton = [[a + 1, b + 1] for a, b in skeleton]
                report.note("skeleton.shifted", f"{file}#{el}",
                            f"category {name!r}: the skeleton uses index 0, so it is 0-based; shifted to 1-based")
            if any(v < 1 for e in skeleton for v in e):
                raise ReadError(file, f"skeleton indices must be >= 0, got {sk!r}", element=el)
        sc = c.get("supercategory")
        cat = _Category(name=name, supercategory="" if sc is None else str(sc),
                        keypoints=[str(k) for k in kp] if kp is not None else None, skeleton=skeleton, element=el)
        by_name[name] = cat
        cats.append(cat)
    return cats, name_of


# ---------------------------------------------------------------------------------------------- annotations
def _polygons(seg: list[Any], *, file: str, el: str) -> tuple[list[np.ndarray], bool]:
    """(parts with >= 3 points, whether short parts were removed)."""
    try:
        if seg and all(_is_num(v) for v in seg):
            parts = [np.asarray(seg, dtype=np.float64)]
        else:
            parts = [np.asarray(p, dtype=np.float64) for p in seg]
    except (TypeError, ValueError):
        raise ReadError(file, "segmentation: polygons must be lists of numbers", element=el) from None
    if any(p.ndim != 1 for p in parts):
        raise ReadError(file, "segmentation: each polygon must be a flat list [x1, y1, x2, y2, ...]", element=el)
    good = [p for p in parts if p.size >= 6 and p.size % 2 == 0]
    return good, len(good) != len(parts)


def _rle(seg: Mapping[str, Any], *, file: str, el: str) -> dict[str, Any]:
    size, counts = seg.get("size"), seg.get("counts")
    if not isinstance(size, list) or len(size) != 2 or not all(_is_num(v) for v in size):
        raise ReadError(file, f"segmentation: RLE size must be [height, width], got {size!r}", element=el)
    h, w = int(size[0]), int(size[1])
    if isinstance(counts, str):
        return {"size": [h, w], "counts": counts}
    if isinstance(counts, list) and all(_is_num(v) for v in counts):
        return {"size": [h, w], "counts": [int(v) for v in counts]}
    raise ReadError(file, "segmentation: RLE counts must be a string or a list of integers", element=el)


def _iscrowd(v: Any, *, file: str, el: str) -> tuple[int, bool]:
    """(0 or 1, whether the value had to be coerced)."""
    if type(v) is int and v in (0, 1):
        return v, False
    if v is None:
        return 0, False
    if isinstance(v, bool):
        return int(v), True
    if isinstance(v, float) and v in (0.0, 1.0):
        return int(v), True
    if isinstance(v, str) and v.strip().lower() in _ISCROWD:
        return _ISCROWD[v.strip().lower()], True
    raise ReadError(file, f"iscrowd must be 0 or 1, got {v!r}", element=el)


@dataclass
class _Rows:
    keep: list[int] = field(default_factory=list)
    image: list[int] = field(default_factory=list)
    category: list[str] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    w: list[float] = field(default_factory=list)
    h: list[float] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    iscrowd: list[int] = field(default_factory=list)
    seg: list[Any] = field(default_factory=list)
    kps: list[Any] = field(default_factory=list)
    attrs: list[Any] = field(default_factory=list)


def _annotations(items: Any, *, file: str, prefix: str, imgs: _Images, name_of: Mapping[Any, str],
                 report: Report, first: int = 0,
                 part: bool = False) -> tuple[_Rows, dict[str, list[tuple[int, str | None, str]]]]:
    """Parse the annotations; returns the kept rows and the dropped ones by reason: (index, category, why).
    ``first``: the number of the first annotation in the file (a part of a plan); ``part``: write the count of
    coerced values even when it is 0 (a tally that the parts add up)."""
    if not isinstance(items, list):
        raise ReadError(file, f"'{prefix or 'results'}' must be a list", element=prefix or None)
    rows = _Rows()
    drops: dict[str, list[tuple[int, str | None, str]]] = {}
    changed: list[int] = []
    changed_msg: list[str] = []
    repaired: list[int] = []
    coerced = 0
    table = imgs.table
    img_w = table["width"].to_numpy(dtype=np.int64) if len(table) else np.zeros(0, dtype=np.int64)
    img_h = table["height"].to_numpy(dtype=np.int64) if len(table) else np.zeros(0, dtype=np.int64)
    for i, a in enumerate(items, start=first):
        el = f"{prefix}[{i}]"
        cat: str | None = None
        try:
            if not isinstance(a, Mapping):
                raise ReadError(file, "not an object", element=el)
            ck = _key(a.get("category_id"))
            cat = name_of.get(ck) if ck is not None else None
            got = _one(a, file=file, el=el, imgs=imgs, img_w=img_w, img_h=img_h, cat=cat)
        except ReadError as e:  # one malformed annotation: dropped with its location, the rest is read
            drops.setdefault("dropped.invalid", []).append((i, cat, e.reason))
            continue
        if not isinstance(got, _One):
            drops.setdefault(got[0], []).append((i, cat, got[1]))
            continue
        k = len(rows.keep)
        if got.repaired:
            repaired.append(k)
        if got.changed:
            changed.append(k)
            changed_msg.append(got.changed)
        coerced += got.coerced
        cat = got.category
        box = got.box
        rows.keep.append(i)
        rows.image.append(got.row)
        rows.category.append(cat)
        rows.x.append(box[0])
        rows.y.append(box[1])
        rows.w.append(box[2])
        rows.h.append(box[3])
        rows.score.append(got.score)
        rows.iscrowd.append(got.iscrowd)
        rows.seg.append(got.geom)
        rows.kps.append(got.kps)
        rows.attrs.append(got.attrs)
    where = f"{file}#{prefix}"
    if changed:  # (phases: the parts' changes, merged, stand as read() lists them, recomputed first)
        report.change("recomputed", pd.DataFrame({
            "category": [rows.category[k] for k in changed],
            "src_file": [f"{where}[{rows.keep[k]}]" for k in changed], "src_line": 0,
            "message": changed_msg}), phase=1)
    if repaired:
        report.change("repaired", pd.DataFrame({
            "category": [rows.category[k] for k in repaired],
            "src_file": [f"{where}[{rows.keep[k]}]" for k in repaired], "src_line": 0}),
            "polygon part(s) with fewer than 3 points removed", phase=2)
    if coerced or part:
        report.tally("value.coerced", file, "iscrowd written as a string or boolean in {} annotation(s): "
                     "read as 0/1", (coerced,), severity="info", first=True)
    return rows, drops


@dataclass
class _One:
    """One annotation as read (see :func:`_one`)."""

    row: int
    category: str
    box: tuple[float, float, float, float]
    score: float
    iscrowd: int
    geom: Any
    kps: Any
    attrs: Any
    repaired: bool
    changed: str        # why the stored bbox or area was recomputed ('' when it was not)
    coerced: int


def _one(a: Mapping[str, Any], *, file: str, el: str, imgs: _Images, img_w: np.ndarray, img_h: np.ndarray,
         cat: str | None) -> _One | tuple[str, str]:
    """One annotation: its row, or (drop reason, why). A malformed field raises ReadError (the caller drops
    the annotation with its location)."""
    if "image_id" not in a:
        raise ReadError(file, "no image_id", element=el)
    ik = _key(a["image_id"])
    row = imgs.row_of.get(ik) if ik is not None else None
    if row is None:
        if imgs.is_elsewhere(ik):  # (a part of a plan: an annotation of another part's image)
            raise NeedsWholeRead(f"{file}: {el} is on another part's image")
        return "dropped.no_image", imgs.why.get(ik) or f"image_id {a['image_id']!r} is not an image of the file"
    if cat is None:
        return "dropped.unknown_category", f"category_id {a.get('category_id')!r} is not in categories"
    seg = a.get("segmentation")
    geom: Any = None
    was_repaired = False
    if isinstance(seg, Mapping):
        rle = _rle(seg, file=file, el=el)
        if rle["size"] != [int(img_h[row]), int(img_w[row])]:
            return "dropped.invalid", f"RLE size {rle['size']} is not the image's [h, w] = [{img_h[row]}, {img_w[row]}]"
        if isinstance(rle["counts"], list) and sum(rle["counts"]) != rle["size"][0] * rle["size"][1]:
            return "dropped.invalid", f"uncompressed RLE counts sum to {sum(rle['counts'])}, not h*w"
        geom = rle
    elif isinstance(seg, list) and seg:
        parts, was_repaired = _polygons(seg, file=file, el=el)
        geom = parts or None
    elif seg not in (None, []):
        raise ReadError(file, "segmentation must be a list of polygons or an RLE object", element=el)
    bb = a.get("bbox")
    stored: tuple[float, float, float, float] | None = None
    if bb is not None:
        if not isinstance(bb, list) or len(bb) != 4 or not all(_is_num(v) for v in bb):
            raise ReadError(file, f"bbox must be 4 numbers [x, y, w, h], got {bb!r}", element=el)
        stored = (float(bb[0]), float(bb[1]), float(bb[2]), float(bb[3]))
    kp = a.get("keypoints")
    karr = None
    if kp is not None:
        if not isinstance(kp, list) or len(kp) % 3 or not all(_is_num(v) for v in kp):
            raise ReadError(file, "keypoints must be a flat list of x, y, v triples", element=el)
        karr = np.asarray(kp, dtype=np.float64).reshape(-1, 3) if kp else None
        if karr is not None and not np.isin(karr[:, 2], (0.0, 1.0, 2.0)).all():
            bad_v = karr[:, 2][~np.isin(karr[:, 2], (0.0, 1.0, 2.0))][0]
            raise ReadError(file, f"keypoint visibility must be 0, 1 or 2, got {bad_v:g}", element=el)
    box: tuple[float, float, float, float]
    why: list[str] = []
    if geom is not None:
        box = rle_bbox(geom) if isinstance(geom, dict) else bbox_of_polygons(geom)
        if stored is not None and max(abs(p - q) for p, q in zip(box, stored, strict=True)) > _BOX_TOLERANCE:
            why.append(f"stored bbox {list(stored)} differs from the geometry's {list(box)}")
    elif stored is not None:
        box = stored
    elif karr is not None:
        x0, y0 = float(karr[:, 0].min()), float(karr[:, 1].min())
        box = (x0, y0, float(karr[:, 0].max()) - x0, float(karr[:, 1].max()) - y0)
    else:
        raise ReadError(file, "no bbox, segmentation or keypoints", element=el)
    area: Any = a.get("area")
    if _is_num(area):
        new = (rle_area(geom) if isinstance(geom, dict) else polygons_area(geom) if geom is not None
               else box[2] * box[3])
        if abs(float(area) - new) > max(_AREA_TOLERANCE, _AREA_RELATIVE * abs(new)):
            why.append(f"stored area {float(area):g} differs from the geometry's {new:g}")
    ic, was = _iscrowd(a.get("iscrowd"), file=file, el=el)
    sc = a.get("score")
    if sc is not None and not _is_num(sc):
        raise ReadError(file, f"score must be a number, got {sc!r}", element=el)
    at = a.get("attributes")
    return _One(row=row, category=cat, box=box, score=float(sc) if sc is not None else math.nan, iscrowd=ic,
                geom=geom, kps=karr, attrs=dict(at) if isinstance(at, Mapping) and at else None,
                repaired=was_repaired, changed="; ".join(why), coerced=was)


def _keypoint_names(cats: list[_Category], rows: _Rows, *, file: str, prefix: str,
                    report: Report) -> None:
    """Give every category its keypoint names (synthesized when absent) and check the annotations' counts."""
    counts: dict[str, dict[int, int]] = {}   # category -> K -> first row with it
    for k, (cat, arr) in enumerate(zip(rows.category, rows.kps, strict=True)):
        if arr is not None:
            counts.setdefault(cat, {}).setdefault(len(arr), k)
    for c in cats:
        ks = counts.get(c.name, {})
        sk_max = max((v for e in c.skeleton or [] for v in e), default=0)
        if c.keypoints:
            n = len(c.keypoints)
        elif ks or sk_max:
            n = max([*ks, sk_max])
            if n > _MAX_KEYPOINTS:
                raise ReadError(file, f"category {c.name!r} names no keypoints and its skeleton or annotations "
                                      f"imply {n}: more than {_MAX_KEYPOINTS}", element=c.element)
            c.keypoints = [f"kp{j}" for j in range(1, n + 1)]
            report.note("value.coerced", f"{file}#{c.element}",
                        f"category {c.name!r} names no keypoints: named kp1..kp{n}", severity="info")
        else:
            continue
        for kk, first in ks.items():
            if kk != n:
                raise ReadError(file, f"{kk} keypoints but category {c.name!r} has {n}",
                                element=f"{prefix}[{rows.keep[first]}]")
        if sk_max > n:
            raise ReadError(file, f"skeleton index {sk_max} but category {c.name!r} has {n} keypoints",
                            element=c.element)
        if c.skeleton is None:
            c.skeleton = []


def _drop(report: Report, drops: Mapping[str, list[tuple[int, str | None, str]]], where: str) -> None:
    """The drops reason by reason, the reasons in the order of their first annotation (``first``: so that the
    drops of a plan's parts, merged, are listed so too)."""
    for reason, lst in drops.items():
        report.drop(reason, pd.DataFrame({
            "category": pd.Series([t[1] for t in lst], dtype=object),
            "src_file": [f"{where}[{t[0]}]" for t in lst], "src_line": 0, "message": [t[2] for t in lst]}),
            first=lst[0][0])


def _finish(cats: list[_Category], imgs: _Images, rows: _Rows,
            drops: Mapping[str, list[tuple[int, str | None, str]]], *, n_read: int, file: str, prefix: str,
            report: Report) -> Dataset:
    """The end of a read (of the file or of a part): the ``n_read`` annotations counted, the drops reported,
    the keypoint names settled, then the Dataset."""
    where = f"{file}#{prefix}"
    report.add_read(n_read)
    _drop(report, drops, where)
    _keypoint_names(cats, rows, file=file, prefix=prefix, report=report)
    categories = {
        "name": [c.name for c in cats], "supercategory": [c.supercategory for c in cats],
        "keypoints": pd.Series([c.keypoints for c in cats], dtype=object),
        "skeleton": pd.Series([c.skeleton if c.keypoints is not None else None for c in cats], dtype=object),
    }
    n = len(rows.keep)
    annotations = {
        "image": np.asarray(rows.image, dtype=np.int64), "category": pd.Series(rows.category, dtype=object),
        "x": np.asarray(rows.x, dtype=np.float64), "y": np.asarray(rows.y, dtype=np.float64),
        "w": np.asarray(rows.w, dtype=np.float64), "h": np.asarray(rows.h, dtype=np.float64),
        "score": np.asarray(rows.score, dtype=np.float64), "iscrowd": np.asarray(rows.iscrowd, dtype=np.int8),
        "segmentation": pd.Series(rows.seg, dtype=object), "keypoints": pd.Series(rows.kps, dtype=object),
        "attributes": pd.Series(rows.attrs, dtype=object),
        "src_file": pd.Series([f"{where}[{i}]" for i in rows.keep], dtype=object),
        "src_line": np.zeros(n, dtype=np.int64),
    }
    return Dataset.build(images=imgs.table, categories=categories, annotations=annotations, report=report)


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a COCO file, or a COCO results list with ``options.images_from`` (see the module docstring)."""
    p = Path(path)
    file = str(p)
    doc = load(p)
    if isinstance(doc, list):
        if options.images_from is None:
            raise ReadError(file, "a COCO results list (no images or categories): the image table must come "
                                  "from the ground-truth file", hint=f"give {option('images_from', 'GT.json')}")
        (gt_file, gt), items, prefix = _ground_truth(options.images_from), doc, ""
    elif isinstance(doc, dict):
        if not isinstance(doc.get("images"), list):
            raise ReadError(file, "not a COCO file: no 'images' list at the top level",
                            hint="a COCO file is an object with images, annotations and categories")
        gt_file, gt, items, prefix = file, doc, doc.get("annotations", []), "annotations"
    else:
        raise ReadError(file, "not a COCO file: expected an object with images/annotations or a results list")
    try:
        imgs, cats, name_of = _tables(gt, file=gt_file, options=options, report=report)
        rows, drops = _annotations(items, file=file, prefix=prefix, imgs=imgs, name_of=name_of, report=report)
    except RecursionError:  # a value nested ~1000 deep (orjson allows 1024) whose repr would name it
        raise ReadError(file, "a value is nested too deeply to be a COCO field") from None
    return _finish(cats, imgs, rows, drops, n_read=len(items), file=file, prefix=prefix, report=report)


def _ground_truth(path: Path | str) -> tuple[str, dict[str, Any]]:
    """The ground truth of a results list (``--images-from``): its file's name, and the COCO document."""
    gt = load(path)
    if not isinstance(gt, dict) or not isinstance(gt.get("images"), list):
        raise ReadError(str(path), f"{option('images_from')} must be a COCO file with 'images' and 'categories'")
    return str(path), gt


def _tables(doc: Mapping[str, Any], *, file: str, options: ReadOptions, report: Report
            ) -> tuple[_Images, list[_Category], dict[Any, str]]:
    """The images and categories of ``doc``: a COCO file's own, or the ground truth of a results list."""
    categories = doc.get("categories", [])
    imgs = _images(doc["images"], file=file, root=options.images, report=report)
    cats, name_of = _categories(categories if categories is not None else [], file=file, report=report)
    return imgs, cats, name_of


# ---------------------------------------------------------------------------------------------- plan
# where the next annotation may start: "}" "," "{" (checked by counting the brackets since the last cut)
_NEXT = re.compile(rb"\}\s*,\s*(\{)")
_ANNOTATIONS_KEY = re.compile(rb'"annotations"\s*:\s*\[')
_ANNOTATIONS_ANY = re.compile(rb'"annotations"\s*:')
_IMAGES_KEY = re.compile(rb'"images"\s*:\s*\[')
_OBJECT = re.compile(rb"\s*\{")
_CUT = b'"prelabel: the annotations, cut by the plan"'  # what stands for the annotations when the rest is parsed
_MAX_WALK = 5000       # annotations looked at after a cut for one whose image differs from the one before


@dataclass(frozen=True)
class AnnotationRun:
    """What a part of :func:`plan` reads (its ``context``): annotations ``first``.. (``count`` objects and
    arrays, as counted by the plan) of the file's ``annotations`` array, whose images are rows ``lo``..``hi`` of
    the images table (``images``: those rows, and the ids of the others); the categories, and the notes the
    plan wrote about the images and categories it read (``notes``: the first part writes them)."""

    first: int
    count: int
    lo: int
    hi: int
    images: _Images
    categories: tuple[_Category, ...]
    name_of: Mapping[Any, str]
    notes: tuple[Diagnostic, ...] = ()
    prefix: str = "annotations"   # "" for a results list (its annotations are named file#[i])


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[ByteRange]:
    """A COCO file cut into up to ``parts`` runs of its ``annotations`` array (:class:`ByteRange` parts, each
    with its :class:`AnnotationRun`), read by :func:`read_part`; their datasets merged in this order give
    :func:`read`'s. The plan parses the rest of the file once (images, categories: each part gets them) and
    cuts the annotations between two whose images differ, so that each part holds whole images: rows
    ``lo``..``hi`` of the images table (a part that finds an annotation of another part's image raises
    NeedsWholeRead: the file is not in image order). A results list (``options.images_from``) is cut the same
    way, its images and categories read from the ground truth. A file whose annotations are not in the order of
    its images at the cuts, or one that is not a COCO document, is one part (:func:`read` reads it).

    >>> import json, tempfile
    >>> p = Path(tempfile.mkdtemp()) / "gt.json"
    >>> _ = p.write_text(json.dumps({
    ...     "images": [{"id": k, "file_name": f"{k}.jpg", "width": 9, "height": 9} for k in (1, 2, 3)],
    ...     "annotations": [{"id": k, "image_id": i, "category_id": 1, "bbox": [1, 1, 2, 2]}
    ...                     for k, i in enumerate([1, 1, 1, 2, 2, 2, 3, 3, 3])],
    ...     "categories": [{"id": 1, "name": "cat"}]}))
    >>> [(r.context.first, r.context.count, r.context.lo, r.context.hi) for r in plan(p, options=ReadOptions(), parts=2)]
    [(0, 6, 0, 2), (6, 3, 2, 3)]
    >>> len(plan(p, options=ReadOptions(), parts=1))
    1
    """
    p = Path(path)
    whole = [ByteRange(source=str(p), start=0, stop=-1)]
    if parts < 2 or not p.is_file():
        return whole
    try:
        with open(p, "rb", buffering=0) as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            got = _plan(mm, str(p), options, parts)
    except (OSError, ValueError, ReadError, RecursionError, orjson.JSONDecodeError):
        return whole  # read() says what is wrong, in its own words
    return got if got is not None and len(got) > 1 else whole


def _plan(raw: Any, file: str, options: ReadOptions, parts: int) -> list[ByteRange] | None:
    at = 3 if raw[:3] == b"\xef\xbb\xbf" else 0
    opening = _OBJECT.match(raw, at)
    prefix = "annotations"
    if opening is not None:
        start = _first_annotation(raw, opening.end())
    else:  # a results list (its images and categories are the ground truth's), or not COCO
        opening = LIST_START.match(raw, at)
        if opening is None or options.images_from is None:
            return None
        prefix, start = "", _first_value(raw, opening.end())
    if start is None:
        return None
    structure = scan(raw, start)  # one pass over the array's quotes and brackets: its "]", and marks to count
    end = structure.end
    if end is None or raw[end] != 0x5D:
        return None
    if prefix:
        gt_file, gt = file, _rest(raw, opening.end() - 1, start, end)
    elif options.images_from is not None and _skip_space(raw, end + 1) == len(raw):
        gt_file, gt = _ground_truth(options.images_from)
    else:  # bytes after the list: read() says what is wrong
        return None
    if gt is None:
        return None
    report = Report()
    imgs, cats, name_of = _tables(gt, file=gt_file, options=options, report=report)
    notes = report.diagnostics
    starts, stops, los = [start], [], [0]   # each part's first byte, last byte + 1, and first image row
    for k in range(1, parts):
        cut = _cut(raw, structure, starts[-1], end, start + (end - start) * k // parts, imgs)
        if cut is None:
            continue
        stop, nxt, row = cut
        if row <= los[-1]:  # the annotations are not in the order of the images
            return None
        stops.append(stop)
        starts.append(nxt)
        los.append(row)
    stops.append(end)
    if not structure.at(raw, end).balanced:
        return None
    firsts = [structure.at(raw, b).values for b in starts] + [structure.at(raw, end).values]
    his = [*los[1:], len(imgs.table)]
    return [ByteRange(source=file, start=starts[k], stop=stops[k], context=AnnotationRun(
        first=firsts[k], count=firsts[k + 1] - firsts[k], lo=los[k], hi=his[k], images=imgs.run(los[k], his[k]),
        categories=tuple(cats), name_of=name_of, notes=tuple(notes) if k == 0 else (), prefix=prefix))
        for k in range(len(starts))]


def _first_annotation(raw: Any, inside: int) -> int | None:
    """Where the first annotation of the COCO object whose body starts at ``inside`` starts; None: no
    top-level ``annotations`` array, or an empty one."""
    m = _top_key(raw, inside, _ANNOTATIONS_KEY)
    return None if m is None else _first_value(raw, m.end())


def _first_value(raw: Any, inside: int) -> int | None:
    """Where the first value of the array whose body starts at ``inside`` starts; None when it is empty."""
    start = _skip_space(raw, inside)
    return None if start >= len(raw) or raw[start] == 0x5D else start


def _rest(raw: Any, begin: int, start: int, end: int) -> dict[str, Any] | None:
    """The document without its annotations, parsed (None: not a COCO document: read() raises its own error)."""
    key_at = raw.rfind(b"[", 0, start)
    with gc_paused():
        doc = orjson.loads(raw[begin:key_at] + _CUT + raw[end + 1:])
    if not isinstance(doc, dict) or doc.get("annotations") != orjson.loads(_CUT) \
            or not isinstance(doc.get("images"), list):
        return None
    return doc


def _cut(raw: Any, structure: Scan, a: int, end: int, target: int, imgs: _Images) -> tuple[int, int, int] | None:
    """A cut near ``target`` of the annotations from ``a`` on: (the byte after the last annotation before it, the
    first byte of the next, the row of the next one's image), between two annotations of different images; None:
    none found before ``end``. A candidate ``}, {`` is a boundary when the brackets before it are balanced."""
    m = _NEXT.search(raw, max(target, a), end)
    for _ in range(MAX_MISSES):
        if m is None:
            return None
        if structure.at(raw, m.start() + 1).balanced:
            break
        m = _NEXT.search(raw, m.start() + 1, end)
    else:
        return None
    at, before = m.start(1), None
    for _ in range(_MAX_WALK):
        got = _one_record(raw, at, end)
        if got is None:
            return None
        record, nxt = got
        row = imgs.row_of.get(_key(record.get("image_id"))) if isinstance(record, dict) else None
        if row is not None and before is not None and row != before:
            return raw.rfind(b"}", a, at) + 1, at, row
        if row is not None:
            before = row
        if nxt is None:
            return None
        at = nxt
    return None


def _one_record(raw: Any, at: int, end: int) -> tuple[Any, int | None] | None:
    """The annotation object that starts at ``at`` and where the next one starts (None: it was the last)."""
    m = _NEXT.search(raw, at, end)
    for _ in range(MAX_MISSES):
        if m is None:
            break
        try:
            return orjson.loads(raw[at:m.start() + 1]), m.start(1)
        except orjson.JSONDecodeError:
            m = _NEXT.search(raw, m.start() + 1, end)
    try:
        return orjson.loads(raw[at:end]), None
    except orjson.JSONDecodeError:
        return None


def read_part(part: ByteRange, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`, read in this process with its own report: its annotations read as
    :func:`read` reads them (numbered as in the file), its images rows ``lo``..``hi`` of the images table.
    Raises NeedsWholeRead when what it read depends on the rest of the file (an annotation of another part's
    image; keypoints of a category that names none: their count is the largest of the file's) and ReadError
    when its bytes are not JSON (read() then says what is wrong).

    >>> import json, tempfile
    >>> p = Path(tempfile.mkdtemp()) / "gt.json"
    >>> _ = p.write_text(json.dumps({
    ...     "images": [{"id": k, "file_name": f"{k}.jpg", "width": 9, "height": 9} for k in (1, 2, 3)],
    ...     "annotations": [{"id": k, "image_id": i, "category_id": c, "bbox": [1, 1, 2, 2]}
    ...                     for k, (i, c) in enumerate([(1, 1)] * 3 + [(2, 1)] * 3 + [(3, 7), (3, 1), (3, 1)])],
    ...     "categories": [{"id": 1, "name": "cat"}]}))
    >>> second = plan(p, options=ReadOptions(), parts=2)[1]
    >>> ds = read_part(second, options=ReadOptions())
    >>> ds.images["file_name"].tolist(), ds.annotations["src_file"].str.rpartition("#")[2].tolist()
    (['3.jpg'], ['annotations[7]', 'annotations[8]'])
    >>> ds.report.read, ds.report.drops["source"].str.rpartition("#")[2].tolist()
    (3, ['annotations[6]'])
    """
    run = part.context
    report = Report()
    f = Path(part.source)
    if not isinstance(run, AnnotationRun):
        return read(f, options=options, report=report)
    file = str(f)
    report.diagnostics.extend(run.notes)
    with open(f, "rb") as fh:
        fh.seek(part.start)
        data = b"[" + fh.read(part.stop - part.start) + b"]"
    try:
        with gc_paused():
            items = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ReadError(file, "not valid JSON") from None
    del data
    if len(items) != run.count or sum(isinstance(a, (dict, list)) for a in items) != run.count:
        raise NeedsWholeRead(f"{file}: annotations {run.first}.. are not the ones the plan counted")
    prefix = run.prefix
    imgs = run.images
    cats = [replace(c) for c in run.categories]
    try:
        rows, drops = _annotations(items, file=file, prefix=prefix, imgs=imgs, name_of=run.name_of,
                                   report=report, first=run.first, part=True)
    except RecursionError:
        raise ReadError(file, "a value is nested too deeply to be a COCO field") from None
    named = {c.name for c in cats if c.keypoints}
    if any(k is not None and c not in named for c, k in zip(rows.category, rows.kps, strict=True)):
        raise NeedsWholeRead(f"{file}: keypoints of a category that names none (their count is the file's)")
    return _finish(cats, imgs, rows, drops, n_read=len(items), file=file, prefix=prefix, report=report)
