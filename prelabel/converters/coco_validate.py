"""The COCO validator: the rules of docs/coco.md checked on a COCO document (:func:`validate`), or on the
tables about to be written (:func:`validate_dataset`: box rows checked with numpy, with the same rules and
messages as :func:`validate`).

Example:
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.coco_tables import to_coco
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [64], "height": [48]},
    ...                    annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [2.0],
    ...                                 "w": [3.0], "h": [4.0]})
    >>> validate(to_coco(ds)).ok, validate_dataset(ds).ok
    (True, True)
    >>> doc = to_coco(ds)
    >>> doc["annotations"][0]["bbox"] = [1, 2, -3, 4]
    >>> validate(doc).errors
    ['annotations[0] (id 1): bbox [1, 2, -3, 4] has zero or negative size']
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np

from ..errors import ValidationError
from ..imagesize import image_size
from ..model import Dataset
from ..paths import safe_join, why_unsafe
from .coco_tables import CocoTables, load, tables_of

__all__ = ["ValidationResult", "adder", "check_category_table", "fail_if_invalid", "duplicate_names", "names_plainly_safe",
           "validate", "validate_dataset"]



# ---------------------------------------------------------------------------------------------- validator
@dataclass
class ValidationResult:
    """What :func:`validate` found: ``errors`` make a file invalid, ``warnings`` do not."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"valid": self.ok, "errors": self.errors, "warnings": self.warnings, "counts": self.counts}


_MAX_LISTED = 200


def _is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    """A finite int or float (not a bool; an int too large for a float is not a usable number)."""
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:
        return False


def adder(err: list[str]) -> Callable[[str], None]:
    def add(msg: str) -> None:
        if len(err) < _MAX_LISTED:
            err.append(msg)
        elif len(err) == _MAX_LISTED:
            err.append("... more problems not listed")
    return add


def duplicate_names(names: list[Any], ids: list[Any], add: Callable[[str], None], *, base: int = 0,
                    seen: dict[str, tuple[int, Any]] | None = None) -> None:
    """Report every file_name that an earlier image already has (``seen``: the names of earlier chunks, by
    position and id; updated). Two images under one name are one picture to every target: the boxes of both
    would land on it.

    >>> errors = []
    >>> duplicate_names(["a.jpg", "b.jpg", "a.jpg"], [1, 2, 3], errors.append)
    >>> errors
    ["images[2] (id 3): file_name 'a.jpg' is also the name of images[0] (id 1): two records name the same image"]
    """
    seen = {} if seen is None else seen
    if len(set(names)) == len(names) and seen.keys().isdisjoint(names):
        seen.update((n, (base + k, i)) for k, (n, i) in enumerate(zip(names, ids, strict=True)))
        return
    for k, (n, i) in enumerate(zip(names, ids, strict=True)):
        if not isinstance(n, str) or not n:
            continue
        first = seen.get(n)
        if first is None:
            seen[n] = (base + k, i)
        else:
            add(f"images[{base + k}] (id {i}): file_name {n!r} is also the name of images[{first[0]}] "
                f"(id {first[1]}): two records name the same image")


def _check_image(i: int, iid: Any, width: Any, height: Any, file_name: Any, bad_size: bool,
                 add: Callable[[str], None]) -> None:
    """The size (``bad_size``: not integers >= 1) and the file name of ``images[i]`` (id ``iid``) checked."""
    if bad_size:
        add(f"images[{i}] (id {iid}): width and height must be integers >= 1, got {width!r} x {height!r}")
    if not isinstance(file_name, str) or not file_name:
        add(f"images[{i}] (id {iid}): file_name must be a non-empty string")
    else:
        why = why_unsafe(file_name)
        if why:
            add(f"images[{i}] (id {iid}): file_name {file_name!r} is unsafe: {why}")


def _check_images(images: Iterable[Any], add: Callable[[str], None]) -> dict[int, tuple[int, int, str]]:
    out: dict[int, tuple[int, int, str]] = {}
    names: list[Any] = []
    ids: list[Any] = []
    for i, im in enumerate(images):
        where = f"images[{i}]"
        if not isinstance(im, Mapping):
            add(f"{where}: not an object")
            continue
        iid, w, h, fn = im.get("id"), im.get("width"), im.get("height"), im.get("file_name")
        if not _is_int(iid) or iid < 1:
            add(f"{where}: id must be an integer >= 1, got {iid!r}")
            continue
        if iid in out:
            add(f"{where}: duplicate image id {iid}")
        bad_size = not _is_int(w) or not _is_int(h) or w < 1 or h < 1
        _check_image(i, iid, w, h, fn, bad_size, add)
        if bad_size:
            w, h = 0, 0
        if not isinstance(fn, str):
            fn = ""
        out[iid] = (int(w or 0), int(h or 0), str(fn))
        names.append(fn)
        ids.append(iid)
    duplicate_names(names, ids, add)
    return out


def check_category_table(categories: Iterable[Any], add: Callable[[str], None]) -> dict[int, int | None]:
    cats: dict[int, int | None] = {}
    names: set[str] = set()
    for i, c in enumerate(categories):
        where = f"categories[{i}]"
        if not isinstance(c, Mapping):
            add(f"{where}: not an object")
            continue
        cid, name = c.get("id"), c.get("name")
        if not _is_int(cid) or cid < 1:
            add(f"{where}: id must be an integer >= 1, got {cid!r}")
            continue
        if cid in cats:
            add(f"{where}: duplicate category id {cid}")
        if not isinstance(name, str) or not name:
            add(f"{where} (id {cid}): name must be a non-empty string")
        elif name in names:
            add(f"{where} (id {cid}): duplicate category name {name!r}")
        else:
            names.add(name)
        kp = c.get("keypoints")
        if kp is not None:
            if not isinstance(kp, list):
                add(f"{where} (id {cid}): keypoints must be a list of names")
                kp = []
            for pair in c.get("skeleton") or []:
                if (not isinstance(pair, list) or len(pair) != 2 or not all(_is_int(v) for v in pair)
                        or not all(1 <= v <= len(kp) for v in pair)):
                    add(f"{where} (id {cid}): skeleton edge {pair!r} must be two 1-based keypoint indices")
                    break
        cats[cid] = len(kp) if isinstance(kp, list) else None
    return cats


def _finite_list(v: Any) -> bool:
    """A list of finite numbers (floats checked in one pass; ints and bools looked at only when present)."""
    try:
        if all(type(x) is float for x in v):
            return math.isfinite(math.fsum(v)) if v else True
    except (OverflowError, TypeError, ValueError):
        pass
    return all(_is_num(x) for x in v)


def _check_annotation(i: int, a: Any, images: Mapping[int, tuple[int, int, str]], cats: Mapping[int, int | None],
                      seen: set[int], add: Callable[[str], None], warn: Callable[[str], None], *,
                      tolerance: float, allow_outside: bool) -> None:
    """The checks of one annotation dict (``i``: its position in the list)."""
    where = f"annotations[{i}]"
    if not isinstance(a, Mapping):
        add(f"{where}: not an object")
        return
    aid = a.get("id")
    if not _is_int(aid) or aid < 1:
        add(f"{where}: id must be an integer >= 1 (an id of 0 breaks COCOeval), got {aid!r}")
    elif aid in seen:
        add(f"{where}: duplicate annotation id {aid}")
    else:
        seen.add(aid)
    where = f"{where} (id {aid})"
    iid, cid = a.get("image_id"), a.get("category_id")
    img = images.get(iid) if _is_int(iid) else None
    if img is None:
        add(f"{where}: image_id {iid!r} is not an image of this file")
    if not _is_int(cid) or cid not in cats:
        add(f"{where}: category_id {cid!r} is not defined in categories")
    isc = a.get("iscrowd", 0)
    if isc not in (0, 1) or isinstance(isc, bool):
        add(f"{where}: iscrowd must be the integer 0 or 1, got {isc!r}")
    bb = a.get("bbox")
    if not isinstance(bb, list) or len(bb) != 4 or not _finite_list(bb):
        add(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bb!r}")
    else:
        x, y, w, h = bb
        if w <= 0 or h <= 0:
            add(f"{where}: bbox {bb} has zero or negative size")
        elif img is not None and img[0] and (x < -tolerance or y < -tolerance or x + w > img[0] + tolerance
                                             or y + h > img[1] + tolerance):
            msg = f"{where}: bbox {bb} extends outside image {iid} ({img[0]}x{img[1]})"
            if allow_outside:
                warn(msg)
            else:
                add(msg)
    area = a.get("area")
    if area is None or not _is_num(area) or area < 0:
        add(f"{where}: area must be a finite number >= 0, got {area!r}")
    seg = a.get("segmentation")
    if isinstance(seg, list):
        for k, poly in enumerate(seg):
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                add(f"{where}: segmentation[{k}] must be a flat polygon of >= 3 points (>= 6 numbers)")
            elif not _finite_list(poly):
                add(f"{where}: segmentation[{k}] has a non-finite or non-numeric value")
    elif isinstance(seg, Mapping):
        size, counts = seg.get("size"), seg.get("counts")
        if not isinstance(size, list) or len(size) != 2:
            add(f"{where}: RLE size must be [height, width]")
        elif img is not None and img[0] and list(size) != [img[1], img[0]]:
            add(f"{where}: RLE size {size} differs from image {iid} size [h, w] = [{img[1]}, {img[0]}]")
        if isinstance(counts, list):
            if isinstance(size, list) and len(size) == 2 and sum(counts) != size[0] * size[1]:
                add(f"{where}: uncompressed RLE counts sum to {sum(counts)}, not h*w = {size[0] * size[1]}")
        elif not isinstance(counts, str):
            add(f"{where}: RLE counts must be a string (compressed) or a list of ints")
    elif seg is not None:
        add(f"{where}: segmentation must be a list of polygons or an RLE object")
    kps = a.get("keypoints")
    if kps is not None:
        nkp: int | None = cats.get(cid) if _is_int(cid) else None
        if not isinstance(kps, list) or len(kps) % 3 or not all(_is_num(v) for v in kps):
            add(f"{where}: keypoints must be a flat list of x, y, v triples")
        else:
            if nkp is not None and len(kps) != 3 * nkp:
                add(f"{where}: {len(kps) // 3} keypoints but category {cid} defines {nkp}")
            vs = kps[2::3]
            if any(v not in (0, 1, 2) for v in vs):
                add(f"{where}: keypoint visibility must be 0, 1 or 2")
            nk = a.get("num_keypoints")
            if nk != sum(1 for v in vs if v > 0):
                add(f"{where}: num_keypoints {nk!r} != {sum(1 for v in vs if v > 0)} labelled keypoints")
    sc = a.get("score")
    if sc is not None and not _is_num(sc):
        add(f"{where}: score must be a finite number, got {sc!r}")


def _plain_box(W: np.ndarray, H: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray,
               area: np.ndarray, *, tolerance: float) -> np.ndarray:
    """The rows (``x y w h``: their boxes; ``W``, ``H``: their image's size, 0 when it has none) of which
    :func:`_check_annotation` says nothing about the box and the area: finite, of positive size, inside the
    image, and a finite area >= 0. The one numpy statement of those rules, for :func:`validate` and
    :func:`validate_dataset`."""
    with np.errstate(invalid="ignore", over="ignore"):
        ok: np.ndarray = (np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(h) & (w > 0) & (h > 0)
                          & ((W == 0) | ~((x < -tolerance) | (y < -tolerance) | (x + w > W + tolerance)
                                          | (y + h > H + tolerance)))
                          & np.isfinite(area) & (area >= 0))
    return ok


def _types(values: list[Any]) -> set[type]:
    return set(map(type, values))


def _suspect_rows(anns: list[Any], images: Mapping[int, tuple[int, int, str]], cats: Mapping[int, int | None], *,
                  tolerance: float) -> np.ndarray | None:
    """The annotations that :func:`_check_annotation` could say something about, found with numpy: every
    other row certainly passes. None when the list is unusual (not all dicts, ids not unique ints >= 1,
    values of unexpected types): then every row is checked one by one. Rows with a segmentation, keypoints
    or anything out of the ordinary are always suspects, so the messages are exactly :func:`_check_annotation`'s.
    """
    n = len(anns)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if _types(anns) != {dict}:
        return None
    ids = [a.get("id") for a in anns]
    if _types(ids) != {int}:
        return None
    try:
        id_arr = np.array(ids, dtype=np.int64)
    except OverflowError:
        return None
    if (id_arr < 1).any() or len(np.unique(id_arr)) != n:
        return None  # duplicates: their messages depend on the order; the slow path keeps it
    suspect = np.zeros(n, dtype=bool)
    # geometry other than a plain box, keypoints, a score: the row-by-row checks
    suspect |= np.fromiter((a.get("segmentation") not in (None, []) or "keypoints" in a or "score" in a
                            for a in anns), dtype=bool, count=n)

    def int_column(key: str, default: Any = None) -> tuple[np.ndarray, np.ndarray]:
        vals = [a.get(key, default) for a in anns]
        is_int = np.fromiter((type(v) is int for v in vals), dtype=bool, count=n)
        out = np.zeros(n, dtype=np.int64)
        if is_int.all():
            try:
                out = np.array(vals, dtype=np.int64)
            except OverflowError:
                return out, np.zeros(n, dtype=bool)
        return out, is_int

    img_ids = np.array(sorted(images), dtype=np.int64)
    img_w = np.array([images[i][0] for i in img_ids.tolist()], dtype=np.float64)
    img_h = np.array([images[i][1] for i in img_ids.tolist()], dtype=np.float64)
    iid, ok_iid = int_column("image_id")
    pos = np.clip(np.searchsorted(img_ids, iid), 0, max(len(img_ids) - 1, 0))
    found = ok_iid & (len(img_ids) > 0) & (img_ids[pos] == iid if len(img_ids) else False)
    suspect |= ~found
    cid, ok_cid = int_column("category_id")
    suspect |= ~(ok_cid & np.isin(cid, np.array(list(cats), dtype=np.int64)))
    isc, ok_isc = int_column("iscrowd", 0)
    suspect |= ~(ok_isc & ((isc == 0) | (isc == 1)))
    bbs = [a.get("bbox") for a in anns]
    if _types(bbs) != {list} or set(map(len, bbs)) != {4} or not _types(
            [v for b in bbs for v in b]) <= {int, float}:
        return None
    areas = [a.get("area") for a in anns]
    if not _types(areas) <= {int, float}:
        return None
    try:
        box = np.array(bbs, dtype=np.float64)
        area = np.array(areas, dtype=np.float64)
    except OverflowError:
        return None
    W = np.where(found, img_w[pos] if len(img_ids) else 0.0, 0.0)
    H = np.where(found, img_h[pos] if len(img_ids) else 0.0, 0.0)
    x, y, w, h = box.T
    suspect |= ~_plain_box(W, H, x, y, w, h, area, tolerance=tolerance)
    return np.flatnonzero(suspect)


def validate(coco: Mapping[str, Any] | str | Path, *, images_root: str | Path | None = None,
             tolerance: float = 1e-6, allow_outside: bool = False) -> ValidationResult:
    """Check a COCO document (or file) against the rules the writer follows and the targets rely on.

    Required keys and types, unique ids >= 1, references, boxes inside images, polygons of >= 3 points,
    RLE sizes, category ids defined, keypoint counts; with ``images_root``, every ``file_name`` present with
    the recorded size. ``allow_outside`` (used for ``--no-clip``) makes a bbox extending outside its image a
    warning instead of an error.
    """
    res = ValidationResult()
    add = adder(res.errors)
    doc = load(coco) if isinstance(coco, (str, Path)) else coco
    if not isinstance(doc, Mapping):
        res.errors.append("top level: expected a JSON object with images, annotations and categories")
        return res
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            add(f"top level: '{key}' must be a list")
    for key, why in (("info", "pycocotools 2.0.9-2.0.10 loadRes needs it"), ("licenses", "a key of the COCO format")):
        if key not in doc:
            res.warnings.append(f"top level: '{key}' is missing ({why})")
    if res.errors:
        return res
    images = _check_images(doc["images"], add)
    cats = check_category_table(doc["categories"], add)
    warn = res.warnings.append
    anns = doc["annotations"]
    suspects = _suspect_rows(anns, images, cats, tolerance=tolerance)
    rows: Iterable[int] = range(len(anns)) if suspects is None else suspects.tolist()
    seen: set[int] = set()
    for i in rows:
        _check_annotation(i, anns[i], images, cats, seen if suspects is None else set(), add, warn,
                          tolerance=tolerance, allow_outside=allow_outside)
    if images_root is not None:
        for iid, (w, h, fn) in images.items():
            p = safe_join(images_root, fn) if fn else None
            if p is None:
                continue
            if not p.is_file():
                add(f"images (id {iid}): file {fn!r} not found under {images_root}")
                continue
            size = image_size(p)
            if size is None:
                add(f"images (id {iid}): {fn!r} is not an image prelabel can read")
            elif w and size != (w, h):
                add(f"images (id {iid}): {fn!r} is {size[0]}x{size[1]} but the file records {w}x{h}")
    res.counts = {"images": len(doc["images"]), "annotations": len(doc["annotations"]),
                  "categories": len(doc["categories"])}
    return res


def validate_dataset(ds: Dataset | CocoTables, *, tolerance: float = 1e-6, allow_outside: bool = False,
                     check_categories: bool = True, seen_names: dict[str, tuple[int, Any]] | None = None) -> ValidationResult:
    """What :func:`validate` says of the COCO the writer makes of ``ds``, without building that document.

    Box rows are checked column by column with numpy (same rules, same messages, same order as
    :func:`validate` of ``to_coco(ds)``); rows with a segmentation or keypoints are checked one by one.
    ``check_categories=False`` leaves the category table's own problems out (a streamed chunk: the writer
    checks the final table once); ``seen_names``: the file names of the chunks before (duplicates across
    chunks are found too).

    Example:
        >>> from prelabel.model import Dataset
        >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
        ...     annotations={"image": [0], "category": ["cat"], "x": [8.0], "y": [0.0], "w": [4.0], "h": [4.0]})
        >>> validate_dataset(ds).errors
        ['annotations[0] (id 1): bbox [8.0, 0.0, 4.0, 4.0] extends outside image 1 (10x10)']
    """
    t = tables_of(ds)
    res = ValidationResult()
    add = adder(res.errors)
    # images: ids are 1..N by construction; sizes and names checked
    n_img = len(t.images)
    iw = np.fromiter((im["width"] for im in t.images), dtype=np.int64, count=n_img)
    ih = np.fromiter((im["height"] for im in t.images), dtype=np.int64, count=n_img)
    bad_wh = (iw < 1) | (ih < 1)
    ib, ab = t.image_base, t.annotation_base
    names_ok = names_plainly_safe([im["file_name"] for im in t.images])
    for k in (np.flatnonzero(bad_wh).tolist() if names_ok else range(n_img)):
        im = t.images[k]
        _check_image(k + ib, im["id"], im["width"], im["height"], im["file_name"], bool(bad_wh[k]), add)
    duplicate_names([im["file_name"] for im in t.images], [im["id"] for im in t.images], add, base=ib,
                    seen=seen_names)
    cats = check_category_table(t.categories, add if check_categories else _ignore)
    iw = np.where(bad_wh, 0, iw)
    ih = np.where(bad_wh, 0, ih)

    # the annotations: the rows that the columns show to be plain (image and category known, iscrowd 0 or 1,
    # box and area as _plain_box says, no score or a finite one, no segmentation or keypoints) pass; every other
    # row is checked by _check_annotation, as validate() checks it, in row order
    n = t.n
    iid = t.image_id
    img_ok = (iid >= 1 + ib) & (iid <= ib + n_img)
    idx = np.where(img_ok, iid - 1 - ib, 0)
    W = np.where(img_ok, iw[idx] if n_img else 0, 0).astype(np.float64)
    H = np.where(img_ok, ih[idx] if n_img else 0, 0).astype(np.float64)
    with np.errstate(invalid="ignore"):
        plain = (img_ok & np.isin(t.category_id, np.fromiter(cats, dtype=np.int64, count=len(cats)))
                 & ((t.iscrowd == 0) | (t.iscrowd == 1))
                 & _plain_box(W, H, t.x, t.y, t.w, t.h, t.area, tolerance=tolerance)
                 & ~(t.has_score & ~np.isfinite(t.score)))
    plain[t.complex_rows] = False
    suspects = np.flatnonzero(~plain).tolist()
    if suspects:
        images = {im["id"]: (int(iw[i]), int(ih[i]), str(im["file_name"] or "")) for i, im in enumerate(t.images)}
        seen: set[int] = set()
        warn = res.warnings.append
        for r in suspects:
            _check_annotation(r + ab, t.annotation(r), images, cats, seen, add, warn, tolerance=tolerance,
                              allow_outside=allow_outside)
            if len(res.errors) > _MAX_LISTED and not allow_outside:
                break  # the rest would not be listed (with allow_outside, every warning is)
    res.counts = {"images": n_img, "annotations": n, "categories": len(t.categories)}
    return res


# names made of plain characters: no NUL, backslash, colon or newline, not starting with "/" or "." (one per
# line of the joined text); with no ".." anywhere either, none of them can be unsafe (see paths.why_unsafe)
_PLAIN_NAMES = re.compile(r"(?:[^/\\\x00\n.:][^\\\x00\n:]*\n)*")


def names_plainly_safe(names: list[Any]) -> bool:
    """True when every name is a str that :func:`why_unsafe` certainly accepts (one regex over all of them);
    False means "look at each one"."""
    if not names:
        return True
    if set(map(type, names)) != {str}:
        return False
    joined = "\n".join(names) + "\n"
    return ".." not in joined and _PLAIN_NAMES.fullmatch(joined) is not None


def _ignore(msg: str) -> None:
    """Where problems go that the caller checks elsewhere (a streamed chunk's categories: checked once)."""


def fail_if_invalid(res: ValidationResult, what: str) -> None:
    """Raise ValidationError listing the problems of ``res``."""
    if not res.ok:
        raise ValidationError(f"{what}: {len(res.errors)} problem(s): {res.errors[0]}", problems=res.errors,
                              hint="run 'prelabel validate' on the file for the full list")
