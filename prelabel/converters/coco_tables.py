"""COCO as bytes: the Dataset's tables sorted once and serialized column by column.

Rules every written file follows (see docs/coco.md):

- ``info``, ``licenses``, ``images``, ``annotations``, ``categories`` are always present.
- Image, annotation and category ids start at 1 (an annotation id of 0 silently breaks COCOeval).
  Images keep the Dataset's order; annotations are ordered by image, then by reading order; categories
  take the target schema's ids when reconciliation assigned them, else 1..K in the Dataset's order.
- ``iscrowd`` is an int; ``area`` is the polygon or mask area for segmented objects and ``w*h`` only for
  boxes; ``bbox`` is derived from the geometry; RLE is compressed unless ``rle="uncompressed"``; ``score`` is
  kept for predictions; pose categories carry ``keypoints`` and a 1-based ``skeleton``, pose annotations
  ``keypoints`` and ``num_keypoints``.
- Same input, same bytes: no timestamps, orjson, stable order.

How it stays fast (docs/performance.md): :class:`CocoTables` sorts the annotation columns once. Box rows (no
segmentation, no keypoints: the bulk of a detection dataset) never become dicts: their JSON is assembled from
whole columns serialized by orjson, so the numbers are formatted exactly as ``orjson.dumps`` formats them in a
dict and the bytes equal ``orjson.dumps(to_coco(ds))``. Rows with a segmentation or keypoints take the dict
path. Writing files (atomically, in shards) is :mod:`prelabel.converters.coco_write`; checking them is
:mod:`prelabel.converters.coco_validate`.

Example:
    >>> import orjson
    >>> from prelabel.model import Dataset
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [64], "height": [48]},
    ...                    annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [2.0],
    ...                                 "w": [3.0], "h": [4.0]})
    >>> coco = to_coco(ds)
    >>> coco["annotations"][0]["bbox"], coco["annotations"][0]["area"], coco["categories"][0]["id"]
    ([1.0, 2.0, 3.0, 4.0], 12.0, 1)
    >>> orjson.loads(coco_bytes(ds)) == coco
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from ..errors import ReadError, ValidationError
from ..gcpause import gc_paused
from ..geometry import bbox_of_polygons, polygons_area, rle_area, rle_bbox, rle_compress, rle_uncompress
from ..model import Dataset

__all__ = ["DEFAULT_MAX_FILE_SIZE", "JSON_OPT", "CocoTables", "category_dicts", "category_ids", "coco_bytes",
           "dumps", "load", "tables_of", "to_coco"]

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
        with np.errstate(invalid="ignore"):  # an inf side times a 0 one: NaN (the checks report the box)
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
    def annotation_chunks(self, lengths: list[np.ndarray] | None = None, *,
                          trailing_comma: bool = False) -> Iterator[bytes]:
        """The annotations as JSON, in chunks of rows each followed by a comma (but the last, unless
        ``trailing_comma``); with ``lengths``, the byte length of each row (its comma included) is appended
        there, chunk by chunk."""
        last = ((self.n - 1) // _CHUNK) * _CHUNK if not trailing_comma else -1
        for start in range(0, self.n, _CHUNK):
            with gc_paused():
                blob, ln = self.chunk_bytes(start, min(self.n, start + _CHUNK))
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

    def chunk_bytes(self, a: int, b: int) -> tuple[bytes, np.ndarray]:
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


def tables_of(ds: Dataset | CocoTables, rle: str = "compressed", info: Mapping[str, Any] | None = None) -> CocoTables:
    return ds if isinstance(ds, CocoTables) else CocoTables(ds, rle=rle, info=info)


def to_coco(ds: Dataset | CocoTables, *, rle: str = "compressed",
            info: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The COCO document of ``ds`` as a dict (see the module docstring for the rules)."""
    return tables_of(ds, rle, info).to_coco()


def coco_bytes(ds: Dataset | CocoTables, *, rle: str = "compressed", info: Mapping[str, Any] | None = None) -> bytes:
    """The COCO document of ``ds`` as JSON bytes: equal to ``orjson.dumps(to_coco(ds))``, much faster."""
    return b"".join(tables_of(ds, rle, info).document_chunks())


def dumps(doc: Any) -> bytes:
    return orjson.dumps(doc, option=JSON_OPT)


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
