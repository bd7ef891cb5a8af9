"""Shape conversions shared by adapters, converters and targets, so none writes its own copy.

Everything here works in COCO pixel space (continuous coordinates, origin at the top-left corner, y down).
Angles are degrees; a positive angle turns clockwise on screen (because y points down), which is the
convention of both CVAT and Label Studio.

Example:
    >>> from prelabel.geometry import rotated_box_center, polygon_area
    >>> poly = rotated_box_center(0, 0, 4, 2, 90)   # a 4x2 box turned 90 degrees about its centre
    >>> [round(float(v), 6) + 0.0 for v in poly]
    [3.0, -1.0, 3.0, 3.0, 1.0, 3.0, 1.0, -1.0]
    >>> polygon_area(poly)
    8.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "ELLIPSE_VERTICES",
    "bbox_of_polygons",
    "ellipse_polygon",
    "polygon_area",
    "polygons_area",
    "rle_area",
    "rle_bbox",
    "rle_compress",
    "rle_decode",
    "rle_encode",
    "rle_from_polygons",
    "rle_uncompress",
    "rotated_box_center",
    "rotated_box_topleft",
]

ELLIPSE_VERTICES = 64  # area of the inscribed 64-gon is 99.84% of pi*rx*ry (within 0.5%)


def _rotate(xs: np.ndarray, ys: np.ndarray, cx: float, cy: float, degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    dx, dy = xs - cx, ys - cy
    out = np.empty(2 * len(xs), dtype=np.float64)
    out[0::2] = cx + dx * c - dy * s
    out[1::2] = cy + dx * s + dy * c
    return out


def rotated_box_center(x: float, y: float, w: float, h: float, degrees: float) -> np.ndarray:
    """Corners (flat ``[x1, y1, ..., x4, y4]``) of the box ``x, y, w, h`` turned about its centre (CVAT).

    Corner order: top-left, top-right, bottom-right, bottom-left of the unrotated box.
    """
    xs = np.array([x, x + w, x + w, x], dtype=np.float64)
    ys = np.array([y, y, y + h, y + h], dtype=np.float64)
    return _rotate(xs, ys, x + w / 2.0, y + h / 2.0, degrees)


def rotated_box_topleft(x: float, y: float, w: float, h: float, degrees: float) -> np.ndarray:
    """Corners of the box whose unrotated top-left is ``(x, y)``, turned about that corner (Label Studio).

    Give pixel values: convert Label Studio's percent units to pixels before calling (units differ per axis).
    """
    xs = np.array([x, x + w, x + w, x], dtype=np.float64)
    ys = np.array([y, y, y + h, y + h], dtype=np.float64)
    return _rotate(xs, ys, x, y, degrees)


def ellipse_polygon(cx: float, cy: float, rx: float, ry: float, degrees: float = 0.0, *,
                    vertices: int = ELLIPSE_VERTICES) -> np.ndarray:
    """A polygon of ``vertices`` points on the ellipse (rotated clockwise on screen by ``degrees``)."""
    t = np.linspace(0.0, 2.0 * math.pi, vertices, endpoint=False)
    xs = cx + rx * np.cos(t)
    ys = cy + ry * np.sin(t)
    return _rotate(xs, ys, cx, cy, degrees) if degrees else np.column_stack([xs, ys]).ravel()


def polygon_area(flat: Sequence[float] | np.ndarray) -> float:
    """Shoelace area of one flat polygon ``[x1, y1, x2, y2, ...]`` (absolute value)."""
    p = np.asarray(flat, dtype=np.float64)
    xs, ys = p[0::2], p[1::2]
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2.0)


def polygons_area(polys: Sequence[Sequence[float] | np.ndarray]) -> float:
    """Sum of the areas of the parts of one annotation (parts of a COCO polygon list do not overlap)."""
    return float(sum(polygon_area(p) for p in polys))


def bbox_of_polygons(polys: Sequence[Sequence[float] | np.ndarray]) -> tuple[float, float, float, float]:
    """``(x, y, w, h)`` enclosing every point of every polygon."""
    pts = np.concatenate([np.asarray(p, dtype=np.float64) for p in polys])
    xs, ys = pts[0::2], pts[1::2]
    x0, y0 = float(xs.min()), float(ys.min())
    return x0, y0, float(xs.max()) - x0, float(ys.max()) - y0


# ---------------------------------------------------------------------------------------------- COCO RLE
def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO compressed RLE (``counts`` as str) of a 2-D boolean/uint8 mask of shape (h, w)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def _as_cocoapi(rle: dict[str, Any]) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    h, w = int(rle["size"][0]), int(rle["size"][1])
    counts = rle["counts"]
    if isinstance(counts, list):
        return dict(mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w))
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [h, w], "counts": counts}


def rle_decode(rle: dict[str, Any]) -> np.ndarray:
    """The (h, w) uint8 mask of a COCO RLE (compressed or uncompressed)."""
    from pycocotools import mask as mask_utils

    return np.asarray(mask_utils.decode(_as_cocoapi(rle)), dtype=np.uint8)


def rle_compress(rle: dict[str, Any]) -> dict[str, Any]:
    """The compressed (string counts) form of a COCO RLE."""
    c = _as_cocoapi(rle)
    counts = c["counts"]
    return {"size": [int(c["size"][0]), int(c["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def rle_uncompress(rle: dict[str, Any]) -> dict[str, Any]:
    """The uncompressed (list of run lengths, column-major) form of a COCO RLE."""
    if isinstance(rle["counts"], list):
        return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": [int(v) for v in rle["counts"]]}
    m = rle_decode(rle)
    flat = m.ravel(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat.size and flat[0] == 1:
        runs = [0, *runs]
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": [int(v) for v in runs]}


def rle_area(rle: dict[str, Any]) -> float:
    from pycocotools import mask as mask_utils

    return float(mask_utils.area(_as_cocoapi(rle)))


def rle_bbox(rle: dict[str, Any]) -> tuple[float, float, float, float]:
    from pycocotools import mask as mask_utils

    b = mask_utils.toBbox(_as_cocoapi(rle))
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def rle_from_polygons(polys: Sequence[Sequence[float] | np.ndarray], height: int, width: int) -> dict[str, Any]:
    """Rasterize polygons (pycocotools' rule) into one compressed COCO RLE."""
    from pycocotools import mask as mask_utils

    rles = mask_utils.frPyObjects([list(map(float, p)) for p in polys], height, width)
    merged = mask_utils.merge(rles)
    return {"size": [height, width], "counts": merged["counts"].decode("ascii")}


# ---------------------------------------------------------------------------------------------- CVAT RLE
# (CVAT's row-major run lengths inside "left top width height"; filled in by the CVAT adapter's work)


# ---------------------------------------------------------------------------------- Label Studio brush RLE
# (thi.ng rle-pack of the flattened RGBA image; filled in by the Label Studio adapter's work)
