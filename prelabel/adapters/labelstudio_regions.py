"""Label Studio regions: the kinds of results, one region's value read into numbers, and a polygon's, ellipse's
or brush's geometry (:func:`region_geometry`).
Used by the reader (:mod:`prelabel.adapters.labelstudio_reader`).

Example:
    >>> region_geometry(POLY, {"points": [[10, 20], [60, 20], [60, 50]]}, 200, 100)[1]
    (20.0, 20.0, 100.0, 30.0)
"""

from __future__ import annotations

import math
import reprlib
from collections.abc import Iterable
from itertools import chain
from typing import Any, NamedTuple

import numpy as np

from ..geometry import ellipse_polygon, ls_rle_decode, rle_bbox, rle_encode
from ..imagesize import MAX_SIDE

RECT, POLY, ELLIPSE, KP, BRUSH = range(5)
TYPE_KIND = {
    "rectanglelabels": RECT, "rectangle": RECT, "polygonlabels": POLY, "polygon": POLY,
    "ellipselabels": ELLIPSE, "ellipse": ELLIPSE, "keypointlabels": KP, "keypoint": KP,
    "brushlabels": BRUSH, "brush": BRUSH,
}
KIND_NAME = {RECT: "rectangle", POLY: "polygon", ELLIPSE: "ellipse", KP: "keypoint", BRUSH: "brush"}
# classifications: the key of their payload in value
CLASSIFICATION = {"choices": "choices", "taxonomy": "taxonomy", "textarea": "text", "rating": "rating",
                  "number": "number", "datetime": "datetime"}
# JSON-MIN drops "type": the value's label key tells it
MIN_TYPE_KEYS = ("rectanglelabels", "polygonlabels", "ellipselabels", "keypointlabels", "brushlabels",
                 "choices", "taxonomy", "labels", "rating", "number", "datetime")
MIN_RESERVED = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement",
                "history", "was_cancelled", "drafts", "predictions", "annotations"}
NUM = (int, float)


def has_labels(task: dict[str, Any]) -> bool:
    return any(isinstance(task.get(k), list) for k in ("annotations", "predictions", "completions"))


def is_min(doc: list[Any]) -> bool:
    """A JSON-MIN export: its first record is an object with no ``data`` and no labelled results."""
    return bool(doc) and isinstance(doc[0], dict) and "data" not in doc[0] and not has_labels(doc[0])


class Drop(Exception):
    """A region that cannot be kept: reason code and message (caught per region)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def num(v: Any) -> float:
    """A JSON number as float; anything else (bool, str, None) raises TypeError."""
    if type(v) is float:
        return v
    if type(v) is int:
        if abs(v) > 2**1023:  # json's fallback parser (NaN in the file) reads any integer exactly
            raise ValueError(f"number too large: {reprlib.repr(v)}")
        return float(v)
    raise TypeError(f"expected a number, got {reprlib.repr(v)}")


def labels_of(v: dict[str, Any], t: str) -> Any:
    labs = v.get(t) if t != "labels" else None
    if not labs:
        labs = v.get("labels")
    if not labs:
        for k, val in v.items():
            if k.endswith("labels") and isinstance(val, list) and val:
                return val
    return labs


def infer_kind(v: dict[str, Any]) -> int | None:
    if "points" in v:
        return POLY
    if "rle" in v or v.get("format") in ("rle", "brush"):
        return BRUSH
    if "radiusX" in v:
        return ELLIPSE
    if "x" in v and "y" in v:
        return RECT if "height" in v else KP
    return None


def annotation_order(a: dict[str, Any]) -> tuple[str, float]:
    stamp = a.get("updated_at") or a.get("created_at") or ""
    aid = a.get("id")
    return (str(stamp), float(aid) if isinstance(aid, NUM) and not isinstance(aid, bool) else -math.inf)


def annotator_name(cb: Any) -> Any:
    if isinstance(cb, dict):
        return cb.get("email") or cb.get("id")
    return cb


def source_name(base: dict[str, Any] | None) -> str:
    if not base:
        return "annotation"
    if "prediction_id" in base or "model_version" in base:
        return f"prediction {base.get('prediction_id', base.get('model_version'))}"
    return f"annotation {base.get('annotation_id')}"


def what_is_wrong(e: Exception) -> str:
    """What a malformed task or region has, from the exception reading it raised."""
    if isinstance(e, KeyError):
        return f"missing field {e.args[0]!r}"
    return "a value is nested too deeply" if isinstance(e, RecursionError) else str(e)


def region_id(r: Any) -> Any:
    return r.get("id") if isinstance(r, dict) else None


def region_label(r: Any) -> str | None:
    """The first label of a region, when it has a readable one (the category a dropped region is counted in)."""
    v = r.get("value") if isinstance(r, dict) else None
    labs = labels_of(v, str(r.get("type"))) if isinstance(v, dict) else None
    return labs[0] if isinstance(labs, list) and labs and isinstance(labs[0], str) else None


def is_region(r: dict[str, Any]) -> bool:
    t = r.get("type")
    return t != "relation" and t not in CLASSIFICATION


NONE = object()  # no such value (None is a value)  # the line given to _select in a worker: a group with another line has one of its own
PLAIN = frozenset((float, int))
BIG = float(2**63)


class Seg(NamedTuple):
    """A run of annotation rows' geo values: ``start`` is its first row; ``rows`` a float64 array (its values
    were all Python floats and ints of ``types``, see :func:`as_block`) or the 7-tuples as read."""

    start: int
    rows: Any
    types: frozenset[type]


def as_block(rows: list[tuple[Any, ...]]) -> tuple[np.ndarray | None, frozenset[type]]:
    """``rows`` (7-tuples as read) as a float64 array, and the Python types of their values, when every value
    is a float or an int of magnitude under 2**63 (they convert exactly as one array of all rows would,
    whatever the other rows); else (None, types)."""
    types = frozenset(map(type, chain.from_iterable(rows)))
    if not rows or not types <= PLAIN:
        return None, types
    try:
        arr = np.array(rows, dtype=np.float64)  # as float(v) for each: exact below 2**63
    except OverflowError:  # an int past the largest float (json reads any integer): checked at the end
        return None, types
    if not (np.abs(arr) < BIG).all():  # an int near or past 2**63 (or a float as large): checked at the end
        return None, types
    return arr, types


def task_size(results: Iterable[list[Any]]) -> tuple[int, int] | None:
    """The size the first region of ``results`` (result lists) with a valid original_width/height gives."""
    for rs in results:
        for r in rs:
            if isinstance(r, dict):
                w, h = r.get("original_width"), r.get("original_height")
                if (isinstance(w, NUM) and isinstance(h, NUM) and not isinstance(w, bool) and 0 < w <= MAX_SIDE
                        and 0 < h <= MAX_SIDE and float(w).is_integer() and float(h).is_integer()):
                    return int(w), int(h)
    return None


def region_geometry(kind: int, v: dict[str, Any], ow: float, oh: float) -> tuple[Any, tuple[float, float, float, float]]:
    """(segmentation, pixel box) of a polygon, ellipse or brush value (a rectangle is read as it stands and its
    numbers checked with all the rows' at the end, by the reader)."""
    if kind == POLY:
        pts = v["points"]
        try:
            arr = np.asarray(pts) if isinstance(pts, list) else None
        except ValueError:  # ragged
            arr = None
        if arr is None or (arr.size and (arr.ndim != 2 or arr.shape[1] != 2 or arr.dtype.kind not in "fiu")):
            raise TypeError("value.points must be a list of [x, y] number pairs")
        arr = arr.reshape(-1, 2)
        if arr.shape[0] < 3:
            raise Drop("dropped.degenerate", f"a polygon of {arr.shape[0]} point(s) (3 needed)")
        flat = (arr.astype(np.float64) * np.array([ow / 100.0, oh / 100.0])).ravel()
        if not np.isfinite(flat).all():
            raise ValueError("polygon points must be finite numbers")
        xs, ys = flat[0::2], flat[1::2]
        x0, y0 = float(xs.min()), float(ys.min())
        return [flat], (x0, y0, float(xs.max()) - x0, float(ys.max()) - y0)
    if kind == ELLIPSE:
        cx, cy = num(v["x"]) * ow / 100.0, num(v["y"]) * oh / 100.0
        rx, ry = num(v["radiusX"]) * ow / 100.0, num(v["radiusY"]) * oh / 100.0
        rot = num(v.get("rotation") or 0)
        if not all(math.isfinite(q) for q in (cx, cy, rx, ry, rot)):
            raise ValueError("ellipse values must be finite numbers")
        if rx <= 0 or ry <= 0:
            raise Drop("dropped.degenerate", f"an ellipse with radii {rx:g} x {ry:g} px")
        poly = ellipse_polygon(cx, cy, rx, ry, rot)
        xs, ys = poly[0::2], poly[1::2]
        x0, y0 = float(xs.min()), float(ys.min())
        return [poly], (x0, y0, float(xs.max()) - x0, float(ys.max()) - y0)
    # brush
    if v.get("format", "rle") != "rle" or "rle" not in v:
        raise Drop("dropped.unsupported", f"a brush in format {v.get('format')!r} (only 'rle' is read)")
    if not float(ow).is_integer() or not float(oh).is_integer():
        raise ValueError(f"original_width/height must be whole pixels for a brush mask, got {ow} x {oh}")
    rle_bytes = v["rle"]
    if not isinstance(rle_bytes, list):
        raise TypeError("value.rle must be a list of byte values")
    mask = ls_rle_decode(rle_bytes, int(oh), int(ow))
    if not mask.any():
        raise Drop("dropped.degenerate", "an empty brush mask")
    rle = rle_encode(mask > 0)
    return rle, rle_bbox(rle)
