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
    "angle_lerp",
    "bbox_of_polygons",
    "coco_to_cvat_rle",
    "cvat_rle_decode",
    "cvat_rle_encode",
    "cvat_rle_runs",
    "cvat_rle_to_coco",
    "ellipse_polygon",
    "keyframe_lerp",
    "ls_rle_decode",
    "ls_rle_encode",
    "ls_rle_pack",
    "ls_rle_unpack",
    "paste_clipped",
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


def keyframe_lerp(v0: Any, v1: Any, t: Any) -> Any:
    """The value at fraction ``t`` (0 at v0, 1 at v1) of the straight line from v0 to v1: how CVAT and Label
    Studio both draw a track between two keyframes (``t = (frame - frame0) / (frame1 - frame0)``). Numbers or
    numpy arrays (broadcast), so one function serves a frame at a time and whole columns of frames."""
    return v0 + (v1 - v0) * t


def angle_lerp(r0: Any, r1: Any, t: Any) -> Any:
    """Rotation between r0 and r1 (degrees) at fraction t along the shorter arc, in [0, 360): CVAT's and Label
    Studio's rule for rotation between keyframes (Label Studio's ``interpolateProp`` normalizes the difference
    to (-180, 180] and writes the angle in that range; the same angle). Numbers or numpy arrays."""
    d = ((r1 - r0 + 180.0) % 360.0) - 180.0
    return (r0 + d * t) % 360.0


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
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": _runs(m.ravel(order="F"))}


def _runs(flat: np.ndarray) -> list[int]:
    """The run lengths of a flat 0/1 array, a run of 0s first (of length 0 when it starts with a 1); ``[0]``
    for an empty one."""
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs: list[int] = np.diff(bounds).tolist()
    return [0, *runs] if flat.size and flat[0] == 1 else runs


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
# CVAT stores a mask as run lengths over the pixels of its rectangle ``left top width height`` read row by row
# (row-major, unlike COCO's column-major), starting with a background run (0 when the first pixel is set).
def cvat_rle_runs(rle: str | Sequence[int]) -> np.ndarray:
    """The int64 run lengths of CVAT's ``rle`` attribute (``"3, 5, 7"`` or a sequence of ints).

    Raises ValueError on a token that is not a non-negative integer.

    >>> cvat_rle_runs("3, 5,7").tolist()
    [3, 5, 7]
    """
    if isinstance(rle, str):
        tokens = rle.split(",")
        if len(tokens) == 1 and not tokens[0].strip():
            return np.zeros(0, dtype=np.int64)
        runs = np.array([int(t) for t in tokens], dtype=np.int64)
    else:
        runs = np.asarray(rle, dtype=np.int64).ravel()
    if runs.size and int(runs.min()) < 0:
        raise ValueError("negative run length in CVAT RLE")
    return runs


def cvat_rle_decode(rle: str | Sequence[int], width: int, height: int) -> np.ndarray:
    """The (height, width) uint8 mask of CVAT's row-major run lengths over a ``width`` x ``height`` rectangle.

    Raises ValueError when the runs do not cover exactly ``width * height`` pixels.

    >>> cvat_rle_decode("1, 2, 3", 3, 2).tolist()
    [[0, 1, 1], [0, 0, 0]]
    """
    runs = cvat_rle_runs(rle)
    total = int(runs.sum())
    if width < 1 or height < 1 or total != width * height:
        raise ValueError(f"CVAT RLE runs cover {total} pixels, not width*height = {width}*{height} = "
                         f"{width * height}")
    values = (np.arange(runs.size) % 2).astype(np.uint8)
    return np.repeat(values, runs).reshape(height, width)


def cvat_rle_to_coco(rle: str | Sequence[int], *, left: int, top: int, width: int, height: int,
                     image_width: int, image_height: int) -> dict[str, Any]:
    """The compressed COCO RLE, over the whole ``image_width`` x ``image_height`` image, of a CVAT mask.

    The mask's rectangle is placed at ``(left, top)``; any part of it outside the image is cut off.

    >>> m = cvat_rle_to_coco("1, 2, 3", left=1, top=2, width=3, height=2, image_width=4, image_height=4)
    >>> rle_decode(m).tolist()
    [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 0, 0, 0]]
    """
    full = np.zeros((image_height, image_width), dtype=np.uint8)
    paste_clipped(full, cvat_rle_decode(rle, width, height), left, top)
    return rle_encode(full)


def paste_clipped(full: np.ndarray, part: np.ndarray, left: int, top: int) -> bool:
    """OR the 2-D mask ``part`` into ``full`` with its top-left corner at ``(left, top)``, any of it outside
    ``full`` cut off; True when some of its rectangle was outside (cut off).

    >>> full = np.zeros((2, 3), dtype=np.uint8)
    >>> paste_clipped(full, np.ones((2, 2), dtype=np.uint8), 2, 1), full.tolist()
    (True, [[0, 0, 0], [0, 0, 1]])
    """
    h, w = full.shape
    ph, pw = part.shape
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + pw, w), min(top + ph, h)
    if x1 > x0 and y1 > y0:
        full[y0:y1, x0:x1] |= part[y0 - top:y1 - top, x0 - left:x1 - left]
    return left < 0 or top < 0 or left + pw > w or top + ph > h


def cvat_rle_encode(mask: np.ndarray) -> list[int]:
    """CVAT's row-major run lengths (background run first) of a 2-D mask, e.g. the crop to its box.

    >>> cvat_rle_encode(np.array([[0, 1, 1], [0, 0, 0]]))
    [1, 2, 3]
    """
    flat = (np.asarray(mask).ravel(order="C") != 0).astype(np.int8)
    return _runs(flat) if flat.size else []


def coco_to_cvat_rle(rle: dict[str, Any]) -> tuple[list[int], int, int, int, int]:
    """``(runs, left, top, width, height)``: a COCO RLE as CVAT stores it, cropped to the mask's pixels.

    An empty mask gives ``([], 0, 0, 0, 0)``.

    >>> coco = cvat_rle_to_coco("1, 2, 3", left=1, top=2, width=3, height=2, image_width=4, image_height=4)
    >>> coco_to_cvat_rle(coco)
    ([0, 2], 2, 2, 2, 1)
    """
    m = rle_decode(rle)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return [], 0, 0, 0, 0
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()) + 1, int(ys.min()), int(ys.max()) + 1
    return cvat_rle_encode(m[y0:y1, x0:x1]), x0, y0, x1 - x0, y1 - y0


# ---------------------------------------------------------------------------------- Label Studio brush RLE
# Label Studio stores a brush mask as thi.ng rle-pack (umbrella/packages/rle-pack) of the flattened RGBA
# image (h x w x 4 values): a bit stream, MSB first, of a 32-bit value count, 5 bits word size - 1, four
# 4-bit run-length field sizes - 1, then runs of (1 flag bit, 2-bit size index, run length - 1 in that many
# bits, then one word repeated when the flag is 1, else that many literal words). The mask is the alpha channel.
_LS_RLE_SIZES = (3, 4, 8, 16)  # run-length field sizes the Label Studio sdk writes
_LS_RUN_MAX = 1 << 16  # the longest run one 16-bit length field holds
_LS_PACK_CHUNK = 1 << 18  # runs turned into bits per numpy pass (bounds the temporary arrays)


def ls_rle_unpack(rle: Sequence[int] | bytes | np.ndarray) -> np.ndarray:
    """The flat values a thi.ng rle-pack byte list decodes to (uint8/16/32 by word size).

    Raises ValueError for bytes outside 0..255 and for a truncated or overlong stream.

    Example (the Label Studio sdk's test vector):
        >>> ls_rle_unpack([0, 0, 0, 18, 57, 27, 252, 96, 32, 1, 0, 6, 0, 40, 0, 192, 3, 128, 17, 56, 32]).tolist()
        [1, 1, 1, 1, 2, 3, 5, 6, 7, 8, 4, 4, 4, 4, 4, 4, 4, 4]
    """
    raw = np.asarray(rle if not isinstance(rle, (bytes, bytearray)) else np.frombuffer(rle, dtype=np.uint8))
    if raw.ndim != 1 or (raw.size and raw.dtype.kind not in "iu"):
        raise ValueError("brush RLE must be a flat list of byte values (integers 0..255)")
    if raw.size and (int(raw.min()) < 0 or int(raw.max()) > 255):
        raise ValueError("brush RLE bytes must lie in 0..255")
    buf = raw.astype(np.uint8)
    total = buf.size * 8
    if total < 53:
        raise ValueError(f"brush RLE is too short for its 53-bit header ({buf.size} bytes)")
    data = buf.tobytes() + bytes(8)  # padding: a read near the end never runs off the buffer
    bits = np.unpackbits(buf)

    def read(pos: int, n: int) -> int:  # n <= 32 bits at bit offset pos, MSB first
        b = pos >> 3
        return (int.from_bytes(data[b:b + 5], "big") >> (40 - (pos & 7) - n)) & ((1 << n) - 1)

    num = read(0, 32)
    ws = read(32, 5) + 1
    sizes = [read(37 + 4 * k, 4) + 1 for k in range(4)]
    pos = 53
    dtype = np.uint8 if ws < 9 else np.uint16 if ws < 17 else np.uint32
    out = np.zeros(num, dtype=dtype)
    weights = (np.int64(1) << np.arange(ws - 1, -1, -1, dtype=np.int64))
    i = 0
    while i < num:
        flag = read(pos, 1)
        nbits = sizes[read(pos + 1, 2)]
        j = i + 1 + read(pos + 3, nbits)
        pos += 3 + nbits
        if j > num:
            raise ValueError(f"brush RLE run ends at value {j}, past the {num} values its header announces")
        if flag:
            out[i:j] = read(pos, ws)
            pos += ws
        else:
            words = bits[pos:pos + (j - i) * ws]
            if words.size < (j - i) * ws:
                raise ValueError("brush RLE is truncated")
            out[i:j] = words.reshape(j - i, ws).astype(np.int64) @ weights
            pos += (j - i) * ws
        if pos > total:
            raise ValueError("brush RLE is truncated")
        i = j
    return out


def ls_rle_pack(values: Sequence[int] | np.ndarray, *, word_size: int = 8) -> list[int]:
    """thi.ng rle-pack bytes of flat non-negative integer ``values`` (the inverse of :func:`ls_rle_unpack`).

    Runs are written with the Label Studio sdk's length fields (3, 4, 8, 16 bits); the bytes may differ
    from the sdk's encoder (which writes runs of one as literals) but decode to the same values.

    Example:
        >>> v = [1, 1, 1, 1, 2, 3, 5, 6, 7, 8] + [4] * 8
        >>> ls_rle_unpack(ls_rle_pack(v)).tolist() == v
        True
    """
    if not 1 <= word_size <= 32:
        raise ValueError("word_size must be 1..32")
    v = np.asarray(values).ravel()
    if v.size and (v.dtype.kind not in "iub" or int(v.min()) < 0 or int(v.max()) >= (1 << word_size)):
        raise ValueError(f"values must be integers in 0..{(1 << word_size) - 1}")
    n = int(v.size)
    if n >= 1 << 32:
        raise ValueError("too many values for a 32-bit count")
    header = (n << 21) | ((word_size - 1) << 16)
    for k, s in enumerate(_LS_RLE_SIZES):
        header |= (s - 1) << (12 - 4 * k)
    head_bits = np.unpackbits(np.frombuffer(header.to_bytes(7, "big"), dtype=np.uint8))[3:]  # 56 - 53
    parts = [head_bits]
    if n:
        starts = np.concatenate([[0], np.flatnonzero(v[1:] != v[:-1]) + 1])
        lengths = np.diff(np.concatenate([starts, [n]])).astype(np.int64)
        vals = v[starts].astype(np.uint64)
        reps = (lengths + _LS_RUN_MAX - 1) // _LS_RUN_MAX  # runs longer than 2**16 become several
        run = np.repeat(np.arange(lengths.size), reps)
        lens = np.full(run.size, _LS_RUN_MAX, dtype=np.int64)
        lens[np.cumsum(reps) - 1] = lengths - (reps - 1) * _LS_RUN_MAX
        vals = vals[run]
        field = lens - 1
        sidx = np.select([field < 8, field < 16, field < 256], [0, 1, 2], 3).astype(np.int64)
        nb = np.asarray(_LS_RLE_SIZES, dtype=np.int64)[sidx]
        width = 3 + nb + word_size
        code = ((np.uint64(1) << (nb + 2 + word_size).astype(np.uint64))
                | (sidx.astype(np.uint64) << (nb + word_size).astype(np.uint64))
                | (field.astype(np.uint64) << np.uint64(word_size)) | vals)
        for a in range(0, code.size, _LS_PACK_CHUNK):
            c, wd = code[a:a + _LS_PACK_CHUNK], width[a:a + _LS_PACK_CHUNK]
            owner = np.repeat(np.arange(c.size), wd)
            first = np.repeat(np.cumsum(wd) - wd, wd)
            shift = (wd[owner] - 1 - (np.arange(owner.size) - first)).astype(np.uint64)
            parts.append(((c[owner] >> shift) & np.uint64(1)).astype(np.uint8))
    return [int(b) for b in np.packbits(np.concatenate(parts)).tolist()]


def ls_rle_decode(rle: Sequence[int] | bytes | np.ndarray, height: int, width: int) -> np.ndarray:
    """The (height, width) uint8 alpha channel of a Label Studio brush RLE (non-zero = painted).

    Raises ValueError when the stream is malformed or does not hold ``height * width * 4`` values.

    Example:
        >>> m = np.array([[0, 255, 255], [0, 0, 255]], dtype=np.uint8)
        >>> ls_rle_decode(ls_rle_encode(m), 2, 3).tolist()
        [[0, 255, 255], [0, 0, 255]]
    """
    vals = ls_rle_unpack(rle)
    if vals.size != height * width * 4:
        raise ValueError(f"brush RLE holds {vals.size} values, not {height} x {width} x 4 = {height * width * 4} "
                         "(RGBA of original_height x original_width)")
    alpha: np.ndarray = np.minimum(vals.reshape(height, width, 4)[:, :, 3], 255).astype(np.uint8)
    return alpha


def ls_rle_encode(mask: np.ndarray) -> list[int]:
    """The Label Studio brush RLE (``value.rle``) of a 2-D mask.

    Every channel of a pixel gets the mask value, as the Label Studio sdk writes it (``mask2rle``). A boolean
    mask is written as 0/255 (Label Studio paints with alpha 255); integer masks must hold 0..255 and are
    written as they are, so ``ls_rle_decode(ls_rle_encode(m), h, w)`` gives ``m`` back.
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError("mask must be 2-D (height, width)")
    if m.dtype == np.bool_:
        m = m.astype(np.uint8) * np.uint8(255)
    return ls_rle_pack(np.repeat(m.ravel(), 4), word_size=8)
