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

How it stays fast (docs/performance.md): :class:`CocoTables` sorts the annotation columns once. Box rows (no
segmentation, no keypoints: the bulk of a detection dataset) never become dicts: their JSON is assembled from
whole columns serialized by orjson, so the numbers are formatted exactly as ``orjson.dumps`` formats them in a
dict and the bytes equal ``orjson.dumps(to_coco(ds))``; :func:`validate_dataset` checks them with numpy, with
the same rules and messages as :func:`validate`. Rows with a segmentation or keypoints take the dict path and
the per-annotation checks of :func:`validate`.

Example:
    >>> import orjson
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.coco import coco_bytes, to_coco, validate, validate_dataset
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [64], "height": [48]},
    ...                    annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [2.0],
    ...                                 "w": [3.0], "h": [4.0]})
    >>> coco = to_coco(ds)
    >>> coco["annotations"][0]["bbox"], coco["annotations"][0]["area"], coco["categories"][0]["id"]
    ([1.0, 2.0, 3.0, 4.0], 12.0, 1)
    >>> validate(coco).ok, validate_dataset(ds).ok, orjson.loads(coco_bytes(ds)) == coco
    (True, True, True)
"""

from __future__ import annotations

import math
import mmap
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import orjson
import pandas as pd

from ..errors import ReadError, ValidationError
from ..gcpause import gc_paused
from ..geometry import bbox_of_polygons, polygons_area, rle_area, rle_bbox, rle_compress, rle_uncompress
from ..imagesize import image_size
from ..model import Dataset
from ..paths import safe_join, why_unsafe

__all__ = ["DEFAULT_MAX_FILE_SIZE", "CocoTables", "ValidationResult", "category_ids", "coco_bytes", "load",
           "to_coco", "validate", "validate_dataset", "write", "write_json_atomic"]

DEFAULT_MAX_FILE_SIZE = 25 * 1024 * 1024
_INFO = {"description": "written by prelabel", "version": "1.0", "year": 0, "contributor": "", "url": "",
         "date_created": ""}
JSON_OPT = orjson.OPT_SERIALIZE_NUMPY
_CHUNK = 8192  # box rows assembled per step: bounds the temporary lists (~10 small objects per row)


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


def category_dicts(categories: pd.DataFrame, ids: np.ndarray | None = None) -> list[dict[str, Any]]:
    """The COCO ``categories`` list of a category table (``ids``: :func:`category_ids`, computed when None)."""
    cids = category_ids(categories) if ids is None else ids
    out: list[dict[str, Any]] = []
    for cid, row in zip(cids.tolist(), categories.itertuples(index=False), strict=True):
        c: dict[str, Any] = {"id": cid, "name": str(row.name), "supercategory": str(row.supercategory or "")}
        if row.keypoints is not None:
            c["keypoints"] = [str(k) for k in row.keypoints]
            c["skeleton"] = [[int(a), int(b)] for a, b in (row.skeleton or [])]
        out.append(c)
    return out




def _segmentation(seg: Any, rle_mode: str) -> tuple[Any, float, tuple[float, float, float, float]]:
    """(segmentation for COCO, area, bbox) of one row's segmentation."""
    if isinstance(seg, Mapping):
        rle = rle_compress(dict(seg)) if rle_mode == "compressed" else rle_uncompress(dict(seg))
        return rle, rle_area(rle), rle_bbox(rle)
    polys = [np.asarray(p, dtype=np.float64) for p in seg]
    return [p.tolist() for p in polys], polygons_area(polys), bbox_of_polygons(polys)


def _notna(col: pd.Series) -> np.ndarray:
    return np.asarray(col.notna().to_numpy(), dtype=bool)


class CocoTables:
    """The COCO document of a Dataset as sorted columns: what the writer, :func:`to_coco` and
    :func:`validate_dataset` share (built once per write).

    ``order`` is the Dataset row of each output annotation (sorted by image, stable); ``image_id``,
    ``category_id``, ``x y w h``, ``area``, ``iscrowd``, ``score`` are numpy columns in that order;
    ``complex_rows`` are the output rows with a segmentation or keypoints, whose dicts are in ``complex``.
    Raises ValidationError when annotations use a category the Dataset does not define.
    """

    def __init__(self, ds: Dataset, *, rle: str = "compressed", info: Mapping[str, Any] | None = None,
                 image_base: int = 0, annotation_base: int = 0) -> None:
        if rle not in ("compressed", "uncompressed"):
            raise ValueError("rle must be 'compressed' or 'uncompressed'")
        self.info: dict[str, Any] = dict(info) if info is not None else dict(_INFO)
        # a chunk of a streamed document: its image ids start at image_base + 1, its annotation ids (and the
        # positions validation messages name) at annotation_base + 1
        self.image_base, self.annotation_base = int(image_base), int(annotation_base)
        cats = ds.categories
        cids = category_ids(cats)
        self.categories = category_dicts(cats, cids)
        imgs = ds.images
        self.images: list[dict[str, Any]] = []
        with gc_paused():
            for i, (fn, w, h, attrs) in enumerate(zip(imgs["file_name"].tolist(), imgs["width"].tolist(),
                                                      imgs["height"].tolist(), imgs["attributes"].tolist(),
                                                      strict=True), start=self.image_base):
                im: dict[str, Any] = {"id": i + 1, "file_name": fn, "width": int(w), "height": int(h)}
                if attrs:
                    im["attributes"] = attrs
                self.images.append(im)

        ann = ds.annotations
        n = self.n = len(ann)
        img = ann["image"].to_numpy(dtype=np.int64)
        if n < 2 or bool((img[1:] >= img[:-1]).all()):
            order = np.arange(n)
            self.order = order

            def take(a: np.ndarray) -> np.ndarray:
                return a
        else:
            order = np.argsort(img, kind="stable")
            self.order = order

            def take(a: np.ndarray) -> np.ndarray:
                return a[order]
        codes, uniques = pd.factorize(ann["category"].to_numpy(dtype=object), use_na_sentinel=True)
        name_to_id = dict(zip(cats["name"].tolist(), cids.tolist(), strict=True))
        unknown = {u for u in uniques.tolist() if u not in name_to_id}
        if (codes < 0).any():
            unknown.add(None)
        if unknown:
            raise ValidationError(
                f"annotations use categories that are not defined: {sorted(map(str, unknown))}")
        lut = np.array([name_to_id[u] for u in uniques.tolist()], dtype=np.int64)
        # rows per category name, in first-seen order (the report's written_by_category)
        self.by_category: dict[str, int] = {
            str(u): int(c) for u, c in zip(uniques.tolist(), np.bincount(codes[codes >= 0], minlength=len(uniques))
                                           .tolist(), strict=True)}
        self.image_id = take(img) + 1 + self.image_base
        self.category_id = take(lut[codes]) if len(lut) else np.zeros(n, dtype=np.int64)
        self.x = take(ann["x"].to_numpy(dtype=np.float64))
        self.y = take(ann["y"].to_numpy(dtype=np.float64))
        self.w = take(ann["w"].to_numpy(dtype=np.float64))
        self.h = take(ann["h"].to_numpy(dtype=np.float64))
        self.area = self.w * self.h
        self.iscrowd = take(ann["iscrowd"].to_numpy(dtype=np.int64))
        self.score = take(ann["score"].to_numpy(dtype=np.float64))
        self.has_score = ~np.isnan(self.score)
        # attributes: only rows with a truthy value are written (as the dict path does: ``if attrs``)
        self.attr_vals = take(ann["attributes"].to_numpy(dtype=object))
        self.has_attr = np.fromiter(map(bool, self.attr_vals), dtype=bool, count=n)
        inv = np.empty(n, dtype=np.int64)
        inv[order] = np.arange(n)
        # rows with a segmentation or keypoints: the dict path
        seg_col, kp_col = ann["segmentation"], ann["keypoints"]
        seg_rows = np.flatnonzero(_notna(seg_col))
        kp_rows = np.flatnonzero(_notna(kp_col))
        self.complex: dict[int, dict[str, Any]] = {}
        if len(seg_rows) or len(kp_rows):
            segs = seg_col.to_numpy(dtype=object)
            kps = kp_col.to_numpy(dtype=object)
            rows = np.unique(np.concatenate([seg_rows, kp_rows]))
            with gc_paused():
                for r in sorted(inv[rows].tolist()):
                    self.complex[r] = self._complex_row(r, segs[order[r]], kps[order[r]], rle)
        self.complex_rows = np.fromiter(self.complex, dtype=np.int64, count=len(self.complex))

    def _complex_row(self, i: int, seg: Any, kp: Any, rle: str) -> dict[str, Any]:
        bbox: list[float] = [float(self.x[i]), float(self.y[i]), float(self.w[i]), float(self.h[i])]
        area = float(self.area[i])
        seg_out: Any = []
        if seg is not None and not (isinstance(seg, float) and math.isnan(seg)):
            seg_out, area, bb = _segmentation(seg, rle)
            bbox = list(bb)
            self.area[i] = area
        d: dict[str, Any] = {"id": self.annotation_base + i + 1, "image_id": int(self.image_id[i]),
                             "category_id": int(self.category_id[i]), "segmentation": seg_out, "area": area, "bbox": bbox, "iscrowd": int(self.iscrowd[i])}
        if self.has_score[i]:
            d["score"] = float(self.score[i])
        if kp is not None and not (isinstance(kp, float) and math.isnan(kp)):
            arr = np.asarray(kp, dtype=np.float64).reshape(-1, 3)
            flat: list[float | int] = []
            for kx, ky, kv in arr.tolist():
                flat.extend((kx, ky, int(kv)))
            d["keypoints"] = flat
            d["num_keypoints"] = int((arr[:, 2] > 0).sum())
        if self.has_attr[i]:
            d["attributes"] = self.attr_vals[i]
        return d

    # ------------------------------------------------------------------ dicts
    def annotation(self, i: int) -> dict[str, Any]:
        """The dict of output annotation ``i`` (0-based)."""
        if i in self.complex:
            return self.complex[i]
        d: dict[str, Any] = {"id": self.annotation_base + i + 1, "image_id": int(self.image_id[i]),
                             "category_id": int(self.category_id[i]), "segmentation": [], "area": float(self.area[i]),
                             "bbox": [float(self.x[i]), float(self.y[i]), float(self.w[i]), float(self.h[i])],
                             "iscrowd": int(self.iscrowd[i])}
        if self.has_score[i]:
            d["score"] = float(self.score[i])
        if self.has_attr[i]:
            d["attributes"] = self.attr_vals[i]
        return d

    def annotations(self) -> list[dict[str, Any]]:
        """Every annotation as a dict (what :func:`to_coco` returns)."""
        n = self.n
        image_id = self.image_id.tolist()
        category_id = self.category_id.tolist()
        area = self.area.tolist()
        bbox = np.column_stack([self.x, self.y, self.w, self.h]).tolist()
        iscrowd = self.iscrowd.tolist()
        score = self.score.tolist()
        has_score = self.has_score.tolist()
        has_attr, attrs, cplx = self.has_attr.tolist(), self.attr_vals, self.complex
        base = self.annotation_base
        out: list[dict[str, Any]] = []
        with gc_paused():
            for i in range(n):
                if i in cplx:
                    out.append(cplx[i])
                    continue
                d: dict[str, Any] = {"id": base + i + 1, "image_id": image_id[i], "category_id": category_id[i],
                                     "segmentation": [], "area": area[i], "bbox": bbox[i], "iscrowd": iscrowd[i]}
                if has_score[i]:
                    d["score"] = score[i]
                if has_attr[i]:
                    d["attributes"] = attrs[i]
                out.append(d)
        return out

    def to_coco(self) -> dict[str, Any]:
        return {"info": dict(self.info), "licenses": [], "images": list(self.images),
                "annotations": self.annotations(), "categories": list(self.categories)}

    # ------------------------------------------------------------------ bytes
    def annotation_chunks(self, lengths: list[np.ndarray] | None = None) -> Iterator[bytes]:
        """The annotations as JSON, in chunks of rows joined by commas (no comma after the last); with
        ``lengths``, the byte length of each row (its comma included) is appended there, chunk by chunk."""
        last = ((self.n - 1) // _CHUNK) * _CHUNK
        for start in range(0, self.n, _CHUNK):
            with gc_paused():
                blob, ln = self._chunk_bytes(start, min(self.n, start + _CHUNK))
            if lengths is not None:
                lengths.append(ln)
            yield blob if start != last else blob[:-1]

    def document_chunks(self, lengths: list[np.ndarray] | None = None) -> Iterator[bytes]:
        """The whole document, piece by piece (see :meth:`annotation_chunks` for ``lengths``)."""
        yield self.head()
        yield orjson.dumps(self.images, option=JSON_OPT)
        yield b',"annotations":['
        yield from self.annotation_chunks(lengths)
        yield b"]"
        yield self.tail()

    def _chunk_bytes(self, a: int, b: int) -> tuple[bytes, np.ndarray]:
        """Rows ``a`` to ``b``: one orjson call per column, one bytes formatting per row."""
        m = b - a
        box = np.column_stack([self.x[a:b], self.y[a:b], self.w[a:b], self.h[a:b]])
        cols: list[list[bytes]] = [
            _split(np.arange(self.annotation_base + a + 1, self.annotation_base + b + 1, dtype=np.int64)),
            _split(self.image_id[a:b]),
            _split(self.category_id[a:b]), _split(self.area[a:b]),
            orjson.dumps(box, option=JSON_OPT)[2:-2].split(b"],["), _split(self.iscrowd[a:b])]
        template = _ROW_START
        has_score = self.has_score[a:b]
        n_score = int(has_score.sum())
        if n_score == m:
            template += b',"score":%b'
            cols.append(_split(self.score[a:b]))
        elif n_score:
            template += b"%b"
            cols.append([b',"score":' + s if h else b""
                         for s, h in zip(_split(self.score[a:b]), has_score.tolist(), strict=True)])
        has_attr = self.has_attr[a:b]
        n_attr = int(has_attr.sum())
        if n_attr:
            rows_with = np.flatnonzero(has_attr)
            texts = _dict_texts(self.attr_vals[a:b][rows_with] if n_attr < m else self.attr_vals[a:b])
            if n_attr == m and texts is not None:
                template += b',"attributes":{%b}'
                cols.append(texts)
            else:
                full = [b""] * m
                if texts is not None:
                    for r, txt in zip(rows_with.tolist(), texts, strict=True):
                        full[r] = b',"attributes":{' + txt + b"}"
                else:
                    vals = self.attr_vals[a:b]
                    for r in rows_with.tolist():
                        full[r] = b',"attributes":' + orjson.dumps(vals[r], option=JSON_OPT)
                template += b"%b"
                cols.append(full)
        template += b"},"
        rows = list(map(template.__mod__, zip(*cols, strict=True)))
        if len(self.complex_rows):
            lo, hi = np.searchsorted(self.complex_rows, [a, b])
            for r in self.complex_rows[lo:hi].tolist():
                rows[r - a] = orjson.dumps(self.complex[r], option=JSON_OPT) + b","
        return b"".join(rows), np.fromiter(map(len, rows), dtype=np.int64, count=m)

    def head(self) -> bytes:
        """``{"info":...,"licenses":[],"images":`` (the bytes before the images list)."""
        return b'{"info":' + orjson.dumps(self.info, option=JSON_OPT) + b',"licenses":[],"images":'

    def tail(self) -> bytes:
        """``,"categories":[...]}`` (the bytes after the annotations list)."""
        return b',"categories":' + orjson.dumps(self.categories, option=JSON_OPT) + b"}"


# the start of one box row, each %b an orjson-formatted value (the key order of the dict path); then
# score and attributes when present, and "},"
_ROW_START = b'{"id":%b,"image_id":%b,"category_id":%b,"segmentation":[],"area":%b,"bbox":[%b],"iscrowd":%b'


def _split(arr: np.ndarray) -> list[bytes]:
    """The orjson text of each value of a 1-D numeric array (one orjson call for the whole column)."""
    if len(arr) == 0:
        return []
    return orjson.dumps(np.ascontiguousarray(arr), option=JSON_OPT)[1:-1].split(b",")


def _dict_texts(values: np.ndarray) -> list[bytes] | None:
    """The orjson text of each (non-empty) dict without its outer braces, from one orjson call, or None when
    a value is not a dict or the text cannot be cut safely."""
    if set(map(type, values)) != {dict}:
        return None
    data = orjson.dumps(values.tolist(), option=JSON_OPT)
    pieces = data[2:-2].split(b"},{")
    # the dicts are separated by exactly len - 1 "},{"; one inside a value would make more pieces
    return pieces if len(pieces) == len(values) else None


def _tables(ds: Dataset | CocoTables, rle: str = "compressed", info: Mapping[str, Any] | None = None) -> CocoTables:
    return ds if isinstance(ds, CocoTables) else CocoTables(ds, rle=rle, info=info)


def to_coco(ds: Dataset | CocoTables, *, rle: str = "compressed",
            info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The COCO document of ``ds`` as a dict (see the module docstring for the rules)."""
    return _tables(ds, rle, info).to_coco()


def coco_bytes(ds: Dataset | CocoTables, *, rle: str = "compressed", info: Mapping[str, Any] | None = None) -> bytes:
    """The COCO document of ``ds`` as JSON bytes: equal to ``orjson.dumps(to_coco(ds))``, much faster."""
    return b"".join(_tables(ds, rle, info).document_chunks())


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=JSON_OPT)


def _file_mode() -> int:
    """The mode a new file gets from ``open`` (0o666 less the umask): a temporary file from mkstemp is 0o600,
    which would make the outputs private to their owner. The umask is read without changing it (threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def write_json_atomic(path: str | Path, data: bytes | Iterable[bytes]) -> None:
    """Write bytes (or a sequence of byte pieces, written in order) to ``path`` atomically: a temporary file
    in the same folder, fsync, then rename. The file gets the mode ``open`` would give it (0o666 less the
    umask)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                f.writelines(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def shard_paths(path: str | Path, count: int) -> list[Path]:
    p = Path(path)
    return [p.with_name(f"{p.stem}-{i:03d}{p.suffix}") for i in range(1, count + 1)]


def greedy_shards(costs: Sequence[int], overhead: int, max_file_size: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges: whole images added while the shard stays under the limit."""
    out: list[tuple[int, int]] = []
    start, size = 0, overhead
    for i, cost in enumerate(costs):
        if i > start and size + cost > max_file_size:
            out.append((start, i))
            start, size = i, overhead
        size += cost
    if len(costs) > start or not out:
        out.append((start, len(costs)))
    return out


def split_shards(coco: Mapping[str, Any], *, max_file_size: int) -> list[dict[str, Any]]:
    """Split a COCO document into complete documents of whole images, each under ``max_file_size`` bytes
    where one image allows it (an image larger than the limit on its own gets a shard of its own)."""
    base = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    overhead = len(dumps({**base, "images": [], "annotations": []}))
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = list(coco["images"])
    costs = [len(dumps(im)) + 1 + sum(len(dumps(a)) + 1 for a in by_image.get(im["id"], [])) for im in images]
    shards: list[dict[str, Any]] = []
    for s, e in greedy_shards(costs, overhead, max_file_size):
        anns = [a for im in images[s:e] for a in by_image.get(im["id"], [])]
        shards.append({**base, "images": images[s:e], "annotations": anns})
    return shards


def _write_tables(t: CocoTables, path: str | Path, max_file_size: int) -> list[Path]:
    """Stream the document to a temporary file beside ``path`` (one chunk of rows in memory at a time); rename
    it when it is under the limit, else cut the shards out of it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        lengths: list[np.ndarray] = []
        with os.fdopen(fd, "wb") as f:
            f.writelines(t.document_chunks(lengths))
            size = f.tell()
            if size <= max_file_size:
                f.flush()
                os.fsync(f.fileno())
        if size <= max_file_size:
            os.chmod(tmp, _file_mode())
            os.replace(tmp, p)
            return [p]
        row_len = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        return _write_shards(t, tmp, row_len, p, max_file_size)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _write_shards(t: CocoTables, tmp: str, row_len: np.ndarray, path: Path, max_file_size: int) -> list[Path]:
    """Shards of whole images cut out of the full document in ``tmp`` (laid out as :func:`split_shards`
    lays them out: info, licenses, categories, images, annotations)."""
    img_bytes = [dumps(im) for im in t.images]
    start = len(t.head()) + len(dumps(t.images)) + len(b',"annotations":[')
    offsets = np.concatenate([[0], np.cumsum(row_len)])
    # annotations are sorted by image: the row range of each image
    bounds = np.searchsorted(t.image_id, np.arange(1, len(img_bytes) + 2))
    per_image = offsets[bounds[1:]] - offsets[bounds[:-1]]
    costs = (np.fromiter(map(len, img_bytes), dtype=np.int64, count=len(img_bytes)) + 1 + per_image).tolist()
    head = (b'{"info":' + dumps(t.info) + b',"licenses":[],"categories":' + dumps(t.categories)
            + b',"images":[')
    overhead = len(head) + len(b'],"annotations":[]}')
    ranges = greedy_shards(costs, overhead, max_file_size)
    paths = shard_paths(path, len(ranges))
    with open(tmp, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        for sp, (s, e) in zip(paths, ranges, strict=True):
            lo, hi = int(offsets[bounds[s]]), int(offsets[bounds[e]])
            body = mm[start + lo:start + hi - 1] if hi > lo else b""
            write_json_atomic(sp, [head, b",".join(img_bytes[s:e]), b'],"annotations":[', body, b"]}"])
    return paths


def write(ds_or_coco: Dataset | CocoTables | Mapping[str, Any], path: str | Path, *,
          max_file_size: int = DEFAULT_MAX_FILE_SIZE, rle: str = "compressed",
          info: Mapping[str, Any] | None = None) -> list[Path]:
    """Write COCO to ``path`` (or to shards beside it when over ``max_file_size``); returns the paths written.

    Example:
        >>> import tempfile, pathlib
        >>> from prelabel.model import Dataset
        >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]})
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.json"
        >>> [p.name for p in write(ds, out)]
        ['out.json']
    """
    if isinstance(ds_or_coco, (Dataset, CocoTables)):
        return _write_tables(_tables(ds_or_coco, rle, info), path, max_file_size)
    coco = ds_or_coco
    data = dumps(coco)
    if len(data) <= max_file_size:
        write_json_atomic(path, data)
        return [Path(path)]
    shards = split_shards(coco, max_file_size=max_file_size)
    paths = shard_paths(path, len(shards))
    for p, doc in zip(paths, shards, strict=True):
        write_json_atomic(p, dumps(doc))
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
        with gc_paused():
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


def _check_images(images: Iterable[Any], add: Callable[[str], None]) -> dict[int, tuple[int, int, str]]:
    out: dict[int, tuple[int, int, str]] = {}
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
        out[iid] = (int(w or 0), int(h or 0), str(fn))
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
    x, y, w, h = box.T
    with np.errstate(invalid="ignore", over="ignore"):
        W = np.where(found, img_w[pos] if len(img_ids) else 0.0, 0.0)
        H = np.where(found, img_h[pos] if len(img_ids) else 0.0, 0.0)
        good = (np.isfinite(box).all(axis=1) & (w > 0) & (h > 0)
                & ((W == 0) | ~((x < -tolerance) | (y < -tolerance) | (x + w > W + tolerance)
                                | (y + h > H + tolerance)))
                & np.isfinite(area) & (area >= 0))
    suspect |= ~good
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
    for key in ("info", "licenses"):
        if key not in doc:
            res.warnings.append(f"top level: '{key}' is missing (pycocotools 2.0.9-2.0.10 loadRes needs 'info')")
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
                     check_categories: bool = True) -> ValidationResult:
    """What :func:`validate` says of the COCO the writer makes of ``ds``, without building that document.

    Box rows are checked column by column with numpy (same rules, same messages, same order as
    :func:`validate` of ``to_coco(ds)``); rows with a segmentation or keypoints are checked one by one.
    ``check_categories=False`` leaves the category table's own problems out (a streamed chunk: the writer
    checks the final table once).

    Example:
        >>> from prelabel.model import Dataset
        >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
        ...     annotations={"image": [0], "category": ["cat"], "x": [8.0], "y": [0.0], "w": [4.0], "h": [4.0]})
        >>> validate_dataset(ds).errors
        ['annotations[0] (id 1): bbox [8.0, 0.0, 4.0, 4.0] extends outside image 1 (10x10)']
    """
    t = _tables(ds)
    res = ValidationResult()
    add = adder(res.errors)
    # images: ids are 1..N by construction; sizes and names checked
    n_img = len(t.images)
    iw = np.fromiter((im["width"] for im in t.images), dtype=np.int64, count=n_img)
    ih = np.fromiter((im["height"] for im in t.images), dtype=np.int64, count=n_img)
    bad_wh = (iw < 1) | (ih < 1)
    ib, ab = t.image_base, t.annotation_base
    names_ok = _names_plainly_safe([im["file_name"] for im in t.images])
    for k in (np.flatnonzero(bad_wh).tolist() if names_ok else range(n_img)):
        im = t.images[k]
        i = k + ib
        iid, fn = im["id"], im["file_name"]
        if bad_wh[k]:
            add(f"images[{i}] (id {iid}): width and height must be integers >= 1, got {im['width']!r} x "
                f"{im['height']!r}")
        if not isinstance(fn, str) or not fn:
            add(f"images[{i}] (id {iid}): file_name must be a non-empty string")
        else:
            why = why_unsafe(fn)
            if why:
                add(f"images[{i}] (id {iid}): file_name {fn!r} is unsafe: {why}")
    cats = check_category_table(t.categories, add if check_categories else _ignore)
    iw = np.where(bad_wh, 0, iw)
    ih = np.where(bad_wh, 0, ih)

    found: list[tuple[int, int, str]] = []  # (row, order within the row, message) of the first problems
    warnings: list[tuple[int, str]] = []

    def report(rows: np.ndarray, step: int, make: Callable[[int], str]) -> None:
        for r in rows[:_MAX_LISTED + 1].tolist():
            found.append((r, step, make(r)))

    n = t.n
    simple = np.ones(n, dtype=bool)
    simple[t.complex_rows] = False
    iid = t.image_id
    img_ok = (iid >= 1 + ib) & (iid <= ib + n_img)
    cid = t.category_id
    known = np.fromiter(cats, dtype=np.int64, count=len(cats))
    x, y, w, h = t.x, t.y, t.w, t.h

    def where(r: int) -> str:
        return f"annotations[{r + ab}] (id {r + ab + 1})"

    def bb(r: int) -> list[float]:
        return [float(x[r]), float(y[r]), float(w[r]), float(h[r])]

    report(np.flatnonzero(simple & ~img_ok), 1, lambda r: f"{where(r)}: image_id {int(iid[r])!r} is not an "
           "image of this file")
    report(np.flatnonzero(simple & ~np.isin(cid, known)), 2,
           lambda r: f"{where(r)}: category_id {int(cid[r])!r} is not defined in categories")
    report(np.flatnonzero(simple & (t.iscrowd != 0) & (t.iscrowd != 1)), 3,
           lambda r: f"{where(r)}: iscrowd must be the integer 0 or 1, got {int(t.iscrowd[r])!r}")
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(h)
        report(np.flatnonzero(simple & ~finite), 4,
               lambda r: f"{where(r)}: bbox must be 4 finite numbers [x, y, w, h], got {bb(r)!r}")
        sized = finite & (w > 0) & (h > 0)
        report(np.flatnonzero(simple & finite & ~sized), 4, lambda r: f"{where(r)}: bbox {bb(r)} has zero or "
               "negative size")
        idx = np.where(img_ok, iid - 1 - ib, 0)
        W = np.where(img_ok, iw[idx], 0).astype(np.float64)
        H = np.where(img_ok, ih[idx], 0).astype(np.float64)
        outside = simple & sized & (W > 0) & ((x < -tolerance) | (y < -tolerance) | (x + w > W + tolerance)
                                              | (y + h > H + tolerance))

        def out_msg(r: int) -> str:
            return f"{where(r)}: bbox {bb(r)} extends outside image {int(iid[r])} ({int(W[r])}x{int(H[r])})"

        if allow_outside:
            warnings.extend((r, out_msg(r)) for r in np.flatnonzero(outside).tolist())
        else:
            report(np.flatnonzero(outside), 4, out_msg)
        area = t.area
        report(np.flatnonzero(simple & ~(np.isfinite(area) & (area >= 0))), 5,
               lambda r: f"{where(r)}: area must be a finite number >= 0, got {float(area[r])!r}")
        report(np.flatnonzero(simple & t.has_score & ~np.isfinite(t.score)), 6,
               lambda r: f"{where(r)}: score must be a finite number, got {float(t.score[r])!r}")
    if len(t.complex_rows):
        images = {im["id"]: (int(iw[i]), int(ih[i]), str(im["file_name"] or "")) for i, im in enumerate(t.images)}
        seen: set[int] = set()
        for r in t.complex_rows.tolist():
            errs: list[str] = []
            warns: list[str] = []
            _check_annotation(r + ab, t.complex[r], images, cats, seen, errs.append, warns.append,
                              tolerance=tolerance, allow_outside=allow_outside)
            found.extend((r, 0, e) for e in errs)
            warnings.extend((r, m) for m in warns)
    found.sort(key=lambda f: (f[0], f[1]))
    for _, _, msg in found[:_MAX_LISTED + 1]:
        add(msg)
    warnings.sort(key=lambda wm: wm[0])
    res.warnings.extend(m for _, m in warnings)
    res.counts = {"images": n_img, "annotations": n, "categories": len(t.categories)}
    return res


# names made of plain characters: no NUL, backslash, colon or newline, not starting with "/" or "." (one per
# line of the joined text); with no ".." anywhere either, none of them can be unsafe (see paths.why_unsafe)
_PLAIN_NAMES = re.compile(r"(?:[^/\\\x00\n.:][^\\\x00\n:]*\n)*")


def _names_plainly_safe(names: list[Any]) -> bool:
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


_SHARD_RE = re.compile(r"^(?P<stem>.+)-(?P<n>\d{3})$")


def expand_shards(path: str | Path) -> Sequence[Path]:
    """``out.json`` if it exists, else its shards ``out-001.json``, ... in order."""
    p = Path(path)
    if p.exists():
        return [p]
    found = sorted(p.parent.glob(f"{p.stem}-[0-9][0-9][0-9]{p.suffix}"))
    return found
