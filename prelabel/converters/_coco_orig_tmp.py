"""The compliant COCO writer and the validator.

Rules the writer always follows (see docs/coco.md):

- ``info``, ``licenses``, ``images``, ``annotations``, ``categories`` are always present.
- Image, annotation and category ids start at 1 (an annotation id of 0 silently breaks COCOeval).
  Images keep the Dataset's order; annotations are ordered by image, then by reading order; categories
  take the target schema's ids when reconciliation assigned them, else 1..K in the Dataset's order.
- ``iscrowd`` is an int; ``area`` is the polygon or mask area for segmented objects and ``w*h`` only for
  boxes; ``bbox`` is derived from the geometry; RLE is compressed unless ``rle="uncompressed"``; ``score`` is
  kept for predictions; pose categories carry ``keypoints`` and a 1-based ``skeleton``, pose annotations
  ``keypoints`` and ``num_keypoints``.
- Same input, same bytes: no timestamps, orjson, stable order. Files are written atomically. A file over
  ``max_file_size`` is split into shards of whole images (``out-001.json``, ...), each a complete COCO file
  with the same categories and globally unique ids.

Example:
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.coco import to_coco, validate
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [64], "height": [48]},
    ...                    annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [2.0],
    ...                                 "w": [3.0], "h": [4.0]})
    >>> coco = to_coco(ds)
    >>> coco["annotations"][0]["bbox"], coco["annotations"][0]["area"], coco["categories"][0]["id"]
    ([1.0, 2.0, 3.0, 4.0], 12.0, 1)
    >>> validate(coco).ok
    True
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import orjson
import pandas as pd

from ..errors import ReadError, ValidationError
from ..geometry import bbox_of_polygons, polygons_area, rle_area, rle_bbox, rle_compress, rle_uncompress
from ..model import Dataset
from ..paths import why_unsafe

__all__ = ["DEFAULT_MAX_FILE_SIZE", "ValidationResult", "category_ids", "load", "to_coco", "validate", "write",
           "write_json_atomic"]

DEFAULT_MAX_FILE_SIZE = 25 * 1024 * 1024
_INFO = {"description": "written by prelabel", "version": "1.0", "year": 0, "contributor": "", "url": "",
         "date_created": ""}


def category_ids(categories: pd.DataFrame) -> np.ndarray:
    """The id of each category row: the schema's id where one was assigned, else the next free from 1 up."""
    ids = categories["id"]
    if len(ids) and ids.notna().all():
        return np.asarray(ids.to_numpy(dtype=np.int64))
    out = np.zeros(len(categories), dtype=np.int64)
    have = ids.notna().to_numpy()
    out[have] = ids[have].to_numpy(dtype=np.int64)
    used = set(out[have].tolist())
    nxt = 1
    for i in np.flatnonzero(~have):
        while nxt in used:
            nxt += 1
        out[i] = nxt
        used.add(nxt)
    return out


def _segmentation(seg: Any, rle_mode: str) -> tuple[Any, float, tuple[float, float, float, float]]:
    """(segmentation for COCO, area, bbox) of one row's segmentation."""
    if isinstance(seg, Mapping):
        rle = rle_compress(dict(seg)) if rle_mode == "compressed" else rle_uncompress(dict(seg))
        return rle, rle_area(rle), rle_bbox(rle)
    polys = [np.asarray(p, dtype=np.float64) for p in seg]
    return [p.tolist() for p in polys], polygons_area(polys), bbox_of_polygons(polys)


def to_coco(ds: Dataset, *, rle: str = "compressed", info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The COCO document of ``ds`` as a dict (see the module docstring for the rules)."""
    if rle not in ("compressed", "uncompressed"):
        raise ValueError("rle must be 'compressed' or 'uncompressed'")
    cats = ds.categories
    cids = category_ids(cats)
    cat_list: list[dict[str, Any]] = []
    for cid, row in zip(cids.tolist(), cats.itertuples(index=False), strict=True):
        c: dict[str, Any] = {"id": cid, "name": str(row.name), "supercategory": str(row.supercategory or "")}
        if row.keypoints is not None:
            c["keypoints"] = [str(k) for k in row.keypoints]
            c["skeleton"] = [[int(a), int(b)] for a, b in (row.skeleton or [])]
        cat_list.append(c)
    name_to_id = dict(zip(cats["name"].tolist(), cids.tolist(), strict=True))

    imgs = ds.images
    img_list: list[dict[str, Any]] = []
    for i, (fn, w, h, attrs) in enumerate(zip(imgs["file_name"].tolist(), imgs["width"].tolist(),
                                              imgs["height"].tolist(), imgs["attributes"].tolist(),
                                              strict=True)):
        im: dict[str, Any] = {"id": i + 1, "file_name": fn, "width": int(w), "height": int(h)}
        if attrs:
            im["attributes"] = attrs
        img_list.append(im)

    ann = ds.annotations
    n = len(ann)
    order = np.argsort(ann["image"].to_numpy(), kind="stable")
    a = ann.iloc[order]
    unknown = set(pd.unique(a["category"])) - set(name_to_id)
    if unknown:
        raise ValidationError(f"annotations use categories that are not defined: {sorted(map(str, unknown))}")
    image_id = (a["image"].to_numpy() + 1).tolist()
    category_id = a["category"].map(name_to_id).to_numpy(dtype=np.int64).tolist()
    x = a["x"].to_numpy(dtype=np.float64)
    y = a["y"].to_numpy(dtype=np.float64)
    w = a["w"].to_numpy(dtype=np.float64)
    h = a["h"].to_numpy(dtype=np.float64)
    area = (w * h).tolist()
    bbox = np.column_stack([x, y, w, h]).tolist()
    iscrowd = a["iscrowd"].to_numpy(dtype=np.int64).tolist()
    score = a["score"].to_numpy(dtype=np.float64)
    has_score = ~np.isnan(score)
    score_l = score.tolist()
    segs = a["segmentation"].tolist()
    kps = a["keypoints"].tolist()
    attrs_l = a["attributes"].tolist()
    seg_out: list[Any] = [[]] * n
    for i in np.flatnonzero(pd.notna(a["segmentation"]).to_numpy()).tolist():
        s, ar, bb = _segmentation(segs[i], rle)
        seg_out[i] = s
        area[i] = ar
        bbox[i] = list(bb)
    out: list[dict[str, Any]] = []
    for i in range(n):
        d: dict[str, Any] = {"id": i + 1, "image_id": image_id[i], "category_id": category_id[i],
                             "segmentation": seg_out[i], "area": area[i], "bbox": bbox[i],
                             "iscrowd": iscrowd[i]}
        if has_score[i]:
            d["score"] = score_l[i]
        k = kps[i]
        if k is not None:
            arr = np.asarray(k, dtype=np.float64).reshape(-1, 3)
            flat: list[float | int] = []
            for kx, ky, kv in arr.tolist():
                flat.extend((kx, ky, int(kv)))
            d["keypoints"] = flat
            d["num_keypoints"] = int((arr[:, 2] > 0).sum())
        if attrs_l[i]:
            d["attributes"] = attrs_l[i]
        out.append(d)
    return {"info": dict(info) if info is not None else dict(_INFO), "licenses": [],
            "images": img_list, "annotations": out, "categories": cat_list}


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


def write_json_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes to ``path`` atomically: a temporary file in the same folder, fsync, then rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def shard_paths(path: str | Path, count: int) -> list[Path]:
    p = Path(path)
    return [p.with_name(f"{p.stem}-{i:03d}{p.suffix}") for i in range(1, count + 1)]


def split_shards(coco: Mapping[str, Any], *, max_file_size: int) -> list[dict[str, Any]]:
    """Split a COCO document into complete documents of whole images, each under ``max_file_size`` bytes
    where one image allows it (an image larger than the limit on its own gets a shard of its own)."""
    base = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    overhead = len(_dumps({**base, "images": [], "annotations": []}))
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    shards: list[dict[str, Any]] = []
    cur_imgs: list[dict[str, Any]] = []
    cur_anns: list[dict[str, Any]] = []
    size = overhead
    for im in coco["images"]:
        anns = by_image.get(im["id"], [])
        cost = len(_dumps(im)) + 1 + sum(len(_dumps(a)) + 1 for a in anns)
        if cur_imgs and size + cost > max_file_size:
            shards.append({**base, "images": cur_imgs, "annotations": cur_anns})
            cur_imgs, cur_anns, size = [], [], overhead
        cur_imgs.append(im)
        cur_anns.extend(anns)
        size += cost
    if cur_imgs or not shards:
        shards.append({**base, "images": cur_imgs, "annotations": cur_anns})
    return shards


def write(ds_or_coco: Dataset | Mapping[str, Any], path: str | Path, *, max_file_size: int = DEFAULT_MAX_FILE_SIZE,
          rle: str = "compressed", info: Mapping[str, Any] | None = None) -> list[Path]:
    """Write COCO to ``path`` (or to shards beside it when over ``max_file_size``); returns the paths written.

    Example:
        >>> import tempfile, pathlib
        >>> from prelabel.model import Dataset
        >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]})
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.json"
        >>> [p.name for p in write(ds, out)]
        ['out.json']
    """
    coco = to_coco(ds_or_coco, rle=rle, info=info) if isinstance(ds_or_coco, Dataset) else ds_or_coco
    data = _dumps(coco)
    if len(data) <= max_file_size:
        write_json_atomic(path, data)
        return [Path(path)]
    shards = split_shards(coco, max_file_size=max_file_size)
    paths = shard_paths(path, len(shards))
    for p, doc in zip(paths, shards, strict=True):
        write_json_atomic(p, _dumps(doc))
    return paths


def load(path: str | Path) -> Any:
    """Read a JSON file with orjson, turning a malformed file into a ReadError that names it."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ReadError(str(path), f"cannot read: {e.strerror or e}") from None
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte order mark (Windows editors) is not JSON: skip it
        data = data[3:]
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as e:
        line = data[: e.pos].count(b"\n") + 1 if e.pos is not None else None
        raise ReadError(str(path), f"not valid JSON: {e.msg}", line=line) from None


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
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def validate(coco: Mapping[str, Any] | str | Path, *, images_root: str | Path | None = None,
             tolerance: float = 1e-6, allow_outside: bool = False) -> ValidationResult:
    """Check a COCO document (or file) against the rules the writer follows and the targets rely on.

    Required keys and types, unique ids >= 1, references, boxes inside images, polygons of >= 3 points,
    RLE sizes, category ids defined, keypoint counts; with ``images_root``, every ``file_name`` present with
    the recorded size. ``allow_outside`` (used for ``--no-clip``) makes a bbox extending outside its image a
    warning instead of an error.
    """
    res = ValidationResult()
    err = res.errors

    def add(msg: str) -> None:
        if len(err) < _MAX_LISTED:
            err.append(msg)
        elif len(err) == _MAX_LISTED:
            err.append("... more problems not listed")

    doc = load(coco) if isinstance(coco, (str, Path)) else coco
    if not isinstance(doc, Mapping):
        res.errors.append("top level: expected a JSON object with images, annotations and categories")
        return res
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            add(f"top level: '{key}' must be a list")
    for key in ("info", "licenses"):
        if key not in doc:
            res.warnings.append(f"top level: '{key}' is missing (pycocotools 2.0.9-2.0.10 loadRes needs 'info')")
    if err:
        return res
    images: dict[int, tuple[int, int, str]] = {}
    for i, im in enumerate(doc["images"]):
        where = f"images[{i}]"
        if not isinstance(im, Mapping):
            add(f"{where}: not an object")
            continue
        iid, w, h, fn = im.get("id"), im.get("width"), im.get("height"), im.get("file_name")
        if not _is_int(iid) or iid < 1:
            add(f"{where}: id must be an integer >= 1, got {iid!r}")
            continue
        if iid in images:
            add(f"{where}: duplicate image id {iid}")
        if not _is_int(w) or not _is_int(h) or w < 1 or h < 1:
            add(f"{where} (id {iid}): width and height must be integers >= 1, got {w!r} x {h!r}")
            w, h = 0, 0
        if not isinstance(fn, str) or not fn:
            add(f"{where} (id {iid}): file_name must be a non-empty string")
            fn = ""
        else:
            why = why_unsafe(fn)
            if why:
                add(f"{where} (id {iid}): file_name {fn!r} is unsafe: {why}")
        images[iid] = (int(w or 0), int(h or 0), str(fn))
    cats: dict[int, int | None] = {}
    names: set[str] = set()
    for i, c in enumerate(doc["categories"]):
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
    seen: set[int] = set()
    for i, a in enumerate(doc["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(a, Mapping):
            add(f"{where}: not an object")
            continue
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
        if not isinstance(bb, list) or len(bb) != 4 or not all(_is_num(v) for v in bb):
            add(f"{where}: bbox must be 4 finite numbers [x, y, w, h], got {bb!r}")
        else:
            x, y, w, h = bb
            if w <= 0 or h <= 0:
                add(f"{where}: bbox {bb} has zero or negative size")
            elif img is not None and img[0] and (x < -tolerance or y < -tolerance or x + w > img[0] + tolerance
                                                 or y + h > img[1] + tolerance):
                if allow_outside:
                    res.warnings.append(f"{where}: bbox {bb} extends outside image {iid} ({img[0]}x{img[1]})")
                else:
                    add(f"{where}: bbox {bb} extends outside image {iid} ({img[0]}x{img[1]})")
        area = a.get("area")
        if area is None or not _is_num(area) or area < 0:
            add(f"{where}: area must be a finite number >= 0, got {area!r}")
        seg = a.get("segmentation")
        if isinstance(seg, list):
            for k, poly in enumerate(seg):
                if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                    add(f"{where}: segmentation[{k}] must be a flat polygon of >= 3 points (>= 6 numbers)")
                elif not all(_is_num(v) for v in poly):
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
    if images_root is not None:
        from ..imagesize import image_size
        from ..paths import safe_join

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


def fail_if_invalid(res: ValidationResult, what: str) -> None:
    """Raise ValidationError listing the problems of ``res``."""
    if not res.ok:
        raise ValidationError(f"{what}: {len(res.errors)} problem(s): {res.errors[0]}", problems=res.errors,
                              hint="run 'prelabel validate' on the file for the full list")


_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<n>\d{3})$")


def expand_shards(path: str | Path) -> Sequence[Path]:
    """``out.json`` if it exists, else its shards ``out-001.json``, ... in order."""
    p = Path(path)
    if p.exists():
        return [p]
    found = sorted(p.parent.glob(f"{p.stem}-[0-9][0-9][0-9]{p.suffix}"))
    return found
