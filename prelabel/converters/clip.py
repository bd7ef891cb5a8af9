"""Geometry clipping: every annotation cut to its image, repaired, and dropped (with its reason) when nothing is left.

Rules, per kind of row:

boxes (``segmentation`` None)
    clipped to ``[0, W] x [0, H]`` (numpy, vectorized). A box with a NaN or infinite value is dropped
    (``dropped.nonfinite``), one with ``w <= 0`` or ``h <= 0`` too (``dropped.degenerate``), one with nothing
    left inside the image (``dropped.outside``; touching the border is nothing left).
polygons (a list of flat ``[x1, y1, ...]`` parts)
    a part with fewer than 3 points (or an odd number of values) is removed; an annotation with no part left is
    dropped (``dropped.degenerate``); any non-finite value drops the annotation (``dropped.nonfinite``).
    Fast path: an annotation whose parts are all valid and all inside the image is left as it came (the same
    objects, so the same bytes). The others go through shapely 2 in bulk: invalid parts (a bow-tie, a ring
    that touches itself) are repaired with ``make_valid`` (``repaired``), then intersected with the image
    rectangle (``clipped``). Every polygonal piece of the result becomes one polygon of the SAME annotation
    (a polygon split in two by the border gives one annotation with two parts); lines and points left by the
    repair or the cut are discarded. An annotation whose repaired geometry has zero area is dropped as
    ``dropped.degenerate``; one with area but nothing inside the image as ``dropped.outside``.
    Holes: COCO polygons cannot express a hole, so an annotation any of whose pieces has a hole becomes a COCO
    RLE mask of the image's size: the pixels pycocotools' polygon rasterization puts inside an outer ring,
    minus the pixels it puts inside a hole. A mask with no pixel left is dropped (``dropped.degenerate``).
RLE masks
    cropped by construction; the RLE's ``size`` must equal the image's ``[height, width]``, otherwise the row
    is dropped (``dropped.invalid``, the message gives both sizes); an empty mask is ``dropped.degenerate``.
keypoints
    a keypoint outside the image (or with a non-finite value) becomes ``x = y = 0, v = 0`` (``clipped``). A
    keypoint annotation whose box is missing (non-finite or empty) first gets the extent of its labelled
    keypoints as its box (``recomputed``).

``x, y, w, h`` are then recomputed from the geometry (the enclosing box of the polygons or of the mask; for
boxes, the clipped box), which is what the writer's ``bbox`` and ``area`` come from. ``min_area`` drops what
is smaller than that area in pixels² (``dropped.min_area``: polygon area, mask pixel count, or ``w * h``).

``enabled=False`` (``--no-clip``) keeps geometry that extends outside the image as it came; repairs and the
non-finite, degenerate, invalid-RLE and ``min_area`` drops still apply. Annotations for an image that does not
exist or has no size are dropped (``dropped.no_image``).

Example:
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.clip import clip
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [100], "height": [50]},
    ...     annotations={"image": [0, 0], "category": ["cat", "cat"], "x": [90.0, 200.0], "y": [10.0, 0.0],
    ...                  "w": [20.0, 5.0], "h": [20.0, 5.0]})
    >>> out = clip(ds)
    >>> out.boxes.tolist(), out.report.dropped_counts()
    ([[90.0, 10.0, 10.0, 20.0]], {'dropped.outside': 1})
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..geometry import rle_area, rle_bbox, rle_decode, rle_encode, rle_from_polygons
from ..model import Dataset
from ..report import CODES, step_phase

__all__ = ["clip"]

_CHANGE_ORDER = ("clipped", "repaired", "recomputed")
_DROP_RANK = {code: k for k, code in enumerate(sorted(c for c in CODES if c.startswith("dropped.")))}


def _g(v: float) -> str:
    return f"{float(v):.6g}"


def _box_text(x: float, y: float, w: float, h: float) -> str:
    return f"[{_g(x)}, {_g(y)}, {_g(w)}, {_g(h)}]"


def _gs(values: np.ndarray) -> np.ndarray:
    """``_g`` of each value, as an object array (so that ``+`` concatenates element-wise)."""
    return np.array([f"{v:.6g}" for v in values.tolist()], dtype=object)


def _box_texts(x: np.ndarray, y: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    out: np.ndarray = "[" + _gs(x) + ", " + _gs(y) + ", " + _gs(w) + ", " + _gs(h) + "]"
    return out


class _Ledger:
    """Per-row drop reasons (the first one wins) and change messages, turned into Report entries at the end."""

    def __init__(self, n: int) -> None:
        self.reason = np.full(n, None, dtype=object)
        self.message = np.full(n, "", dtype=object)
        self.changes: dict[str, dict[int, str]] = {c: {} for c in _CHANGE_ORDER}
        self.bulk: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {c: [] for c in _CHANGE_ORDER}

    @property
    def alive(self) -> np.ndarray:
        return np.asarray(pd.isna(self.reason))

    def drop(self, rows: np.ndarray, reason: str, messages: Sequence[str] | str) -> None:
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        if len(rows) == 0:
            return
        msgs = [messages] * len(rows) if isinstance(messages, str) else list(messages)
        free = pd.isna(self.reason[rows])
        sel = rows[free]
        self.reason[sel] = reason
        self.message[sel] = np.asarray(msgs, dtype=object)[free]

    def change(self, code: str, row: int, message: str) -> None:
        book = self.changes[code]
        book[row] = f"{book[row]}; {message}" if row in book else message

    def change_many(self, code: str, rows: np.ndarray, messages: np.ndarray) -> None:
        """Changes of distinct rows, each changed once by this call (kept as arrays: no Python step per row)."""
        if len(rows):
            self.bulk[code].append((np.asarray(rows, dtype=np.int64), np.asarray(messages, dtype=object)))

    def changed_rows(self, code: str, alive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, messages) of the rows still alive that ``code`` changed, rows ascending, one message each."""
        book = self.changes[code]
        rows = [r for r, _ in self.bulk[code]]
        msgs = [m for _, m in self.bulk[code]]
        if book:
            rows.append(np.fromiter(book, dtype=np.int64, count=len(book)))
            msgs.append(np.array(list(book.values()), dtype=object))
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
        if len(rows) == 1 and not book:  # one bulk call: distinct rows, already ascending
            keep = alive[rows[0]]
            return rows[0][keep], msgs[0][keep]
        r, m = np.concatenate(rows), np.concatenate(msgs)
        keep = alive[r]
        r, m = r[keep], m[keep]
        if len(np.unique(r)) != len(r):  # one row changed by several steps: one entry, messages joined
            joined = pd.Series(m).groupby(r, sort=True).agg("; ".join)
            return joined.index.to_numpy(dtype=np.int64), joined.to_numpy(dtype=object)
        order = np.argsort(r, kind="stable")
        return r[order], m[order]


def _sizes(ds: Dataset, ann: pd.DataFrame, led: _Ledger) -> tuple[np.ndarray, np.ndarray]:
    """Per-row image width and height (0 where the image is missing: those rows are dropped)."""
    n = len(ann)
    img = ann["image"].to_numpy(dtype=np.int64)
    iw = ds.images["width"].to_numpy(dtype=np.float64)
    ih = ds.images["height"].to_numpy(dtype=np.float64)
    ok = (img >= 0) & (img < len(iw))
    w = np.zeros(n, dtype=np.float64)
    h = np.zeros(n, dtype=np.float64)
    w[ok] = iw[img[ok]]
    h[ok] = ih[img[ok]]
    bad = ~ok | ~(w > 0) | ~(h > 0)
    if bad.any():
        led.drop(bad, "dropped.no_image",
                 [f"image index {i} does not exist or has no size" for i in img[bad].tolist()])
    return w, h


# ------------------------------------------------------------------------------------------------ boxes
_BOX_CHUNK = 65536  # boxes clipped per step: bounds the temporary arrays (peak memory), same result


def _clip_boxes(rows: np.ndarray, box: np.ndarray, W: np.ndarray, H: np.ndarray, enabled: bool,
                led: _Ledger) -> None:
    """Clip the boxes of ``rows`` in place in ``box`` (N, 4), a chunk of rows at a time."""
    for start in range(0, len(rows), _BOX_CHUNK):
        _clip_box_rows(rows[start:start + _BOX_CHUNK], box, W, H, enabled, led)


def _clip_box_rows(rows: np.ndarray, box: np.ndarray, W: np.ndarray, H: np.ndarray, enabled: bool,
                   led: _Ledger) -> None:
    if len(rows) == 0:
        return
    x, y, w, h = (box[rows, k] for k in range(4))
    fin = np.isfinite(x) & np.isfinite(y) & np.isfinite(w) & np.isfinite(h)
    led.drop(rows[~fin], "dropped.nonfinite",
             [f"box {_box_text(*b)} has a NaN or infinite value" for b in box[rows[~fin]].tolist()])
    deg = fin & ((w <= 0) | (h <= 0))
    led.drop(rows[deg], "dropped.degenerate",
             [f"box {_box_text(*b)} has zero or negative size" for b in box[rows[deg]].tolist()])
    ok = fin & ~deg
    rows, x, y, w, h = rows[ok], x[ok], y[ok], w[ok], h[ok]
    if not enabled or len(rows) == 0:
        return
    Wr, Hr = W[rows], H[rows]
    need = (x < 0) | (y < 0) | (x + w > Wr) | (y + h > Hr)
    x0, x1 = np.clip(x, 0, Wr), np.clip(x + w, 0, Wr)
    y0, y1 = np.clip(y, 0, Hr), np.clip(y + h, 0, Hr)
    nw, nh = x1 - x0, y1 - y0
    out = need & ((nw <= 0) | (nh <= 0))
    led.drop(rows[out], "dropped.outside",
             [f"box {_box_text(*b)} lies outside the image ({_g(iw)}x{_g(ih)})"
              for b, iw, ih in zip(box[rows[out]].tolist(), Wr[out].tolist(), Hr[out].tolist(), strict=True)])
    cl = need & ~out
    nx, ny = np.where(cl, x0, x), np.where(cl, y0, y)
    nw, nh = np.where(cl, nw, w), np.where(cl, nh, h)
    ch = cl & ((nx != x) | (ny != y) | (nw != w) | (nh != h))
    if ch.any():
        led.change_many("clipped", rows[ch],
                        "box " + _box_texts(x[ch], y[ch], w[ch], h[ch]) + " clipped to "
                        + _box_texts(nx[ch], ny[ch], nw[ch], nh[ch]) + " (image " + _gs(Wr[ch]) + "x"
                        + _gs(Hr[ch]) + ")")
    box[rows, 0], box[rows, 1], box[rows, 2], box[rows, 3] = nx, ny, nw, nh


# ------------------------------------------------------------------------------------------------ polygons
def _polygon_parts(geoms: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Explode multi-geometries and collections; keep the polygons with area > 0 (and their source index)."""
    import shapely

    for _ in range(8):
        if not (shapely.get_type_id(geoms) >= 4).any():
            break
        geoms, pi = shapely.get_parts(geoms, return_index=True)
        index = index[pi]
    keep = (shapely.get_type_id(geoms) == 3) & (shapely.area(geoms) > 0)
    return geoms[keep], index[keep]


def _group_starts(group: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, group[1:] != group[:-1]]) if len(group) else np.zeros(0, dtype=np.int64)


def _set_bounds(px: np.ndarray, py: np.ndarray, prow: np.ndarray, box: np.ndarray) -> None:
    """``box[row] = enclosing box`` of the points of each row (points grouped contiguously by row)."""
    if len(prow) == 0:
        return
    st = _group_starts(prow)
    rows = prow[st]
    xmin, xmax = np.minimum.reduceat(px, st), np.maximum.reduceat(px, st)
    ymin, ymax = np.minimum.reduceat(py, st), np.maximum.reduceat(py, st)
    box[rows, 0], box[rows, 1], box[rows, 2], box[rows, 3] = xmin, ymin, xmax - xmin, ymax - ymin


def _clip_polygons(rows: np.ndarray, seg: np.ndarray, box: np.ndarray, area: np.ndarray, W: np.ndarray,
                   H: np.ndarray, enabled: bool, led: _Ledger) -> None:
    """Clip and repair the polygon rows; writes ``seg``, ``box`` and ``area`` in place."""
    if len(rows) == 0:
        return
    # coordinates out of the object column (one Python step per annotation, no geometry work)
    parts: list[np.ndarray] = []
    part_row: list[int] = []
    for i in rows.tolist():
        try:
            arrs = [np.asarray(p, dtype=np.float64).ravel() for p in seg[i]]
        except (TypeError, ValueError):
            led.drop(np.array([i]), "dropped.invalid", "polygon coordinates are not numbers")
            continue
        parts.extend(arrs)
        part_row.extend([i] * len(arrs))
    if not parts:
        return
    prow = np.asarray(part_row, dtype=np.int64)
    lens = np.fromiter((a.size for a in parts), dtype=np.int64, count=len(parts))
    flat = np.concatenate(parts)
    n = len(box)
    pt_part = np.repeat(np.arange(len(parts)), lens)
    nf_part = np.bincount(pt_part, weights=~np.isfinite(flat), minlength=len(parts)) > 0
    nf_rows = np.unique(prow[nf_part])
    led.drop(nf_rows, "dropped.nonfinite", "polygon has a NaN or infinite coordinate")
    short = (lens < 6) | (lens % 2 == 1)
    alive = led.alive
    keep_part = ~short & alive[prow]
    n_parts = np.bincount(prow, minlength=n)
    n_kept = np.bincount(prow[keep_part], minlength=n)
    cand = np.unique(prow)
    cand = cand[alive[cand]]
    none_left = cand[n_kept[cand] == 0]
    led.drop(none_left, "dropped.degenerate", "no polygon part with 3 or more points")
    some_short = cand[(n_kept[cand] > 0) & (n_kept[cand] < n_parts[cand])]
    for r in some_short.tolist():
        led.change("repaired", r, f"{int(n_parts[r] - n_kept[r])} of {int(n_parts[r])} polygon part(s) with "
                                  f"fewer than 3 points removed")
    kp = np.flatnonzero(keep_part)
    if len(kp) == 0:
        return

    import shapely

    pts_mask = keep_part[pt_part]
    xy = flat[pts_mask].reshape(-1, 2)
    ring_id = np.repeat(np.arange(len(kp)), lens[kp] // 2)
    row_of = prow[kp]
    polys = shapely.polygons(shapely.linearrings(xy, indices=ring_id))
    valid = shapely.is_valid(polys)
    if enabled:
        pr = row_of[ring_id]
        px, py = xy[:, 0], xy[:, 1]
        outside_pt = (px < 0) | (px > W[pr]) | (py < 0) | (py > H[pr])
        outside_part = np.bincount(ring_id, weights=outside_pt, minlength=len(kp)) > 0
    else:
        outside_part = np.zeros(len(kp), dtype=bool)
    need_row = np.bincount(row_of, weights=~valid | outside_part, minlength=n) > 0
    work = need_row[row_of]

    # fast path: as they came (parts with < 3 points removed), box from the points
    fast = ~work
    if fast.any():
        for r in some_short.tolist():
            if not need_row[r]:
                first = int(np.searchsorted(prow, r))  # parts are grouped by row, rows ascending
                flags = keep_part[first:first + int(n_parts[r])].tolist()
                seg[r] = [p for p, ok in zip(seg[r], flags, strict=True) if ok]
        area += np.bincount(row_of[fast], weights=shapely.area(polys[fast]), minlength=n)
        fp = fast[ring_id]
        _set_bounds(xy[fp, 0], xy[fp, 1], row_of[ring_id[fp]], box)
    if not work.any():
        return

    # the others, in bulk: repair, cut, explode
    g = polys[work].copy()
    grow = row_of[work]
    gvalid = valid[work]
    gout = outside_part[work]
    reasons = shapely.is_valid_reason(g[~gvalid])
    g[~gvalid] = shapely.make_valid(g[~gvalid])
    for r, why in zip(grow[~gvalid].tolist(), reasons.tolist(), strict=True):
        led.change("repaired", r, f"invalid polygon repaired ({why})")
    cut_row = np.bincount(grow, weights=gout, minlength=n) > 0
    base_area = np.bincount(grow, weights=shapely.area(g), minlength=n)
    orig_area = np.bincount(grow, weights=shapely.area(polys[work]), minlength=n)
    pieces, src = _polygon_parts(g, np.arange(len(g)))
    if enabled and len(pieces):
        prw = grow[src]
        pieces = shapely.intersection(pieces, shapely.box(0.0, 0.0, W[prw], H[prw]))
        pieces, sub = _polygon_parts(pieces, np.arange(len(pieces)))
        src = src[sub]
    piece_row = grow[src]
    piece_area = shapely.area(pieces)
    has_hole = shapely.get_num_interior_rings(pieces) > 0
    coords, cidx = shapely.get_coordinates(shapely.get_exterior_ring(pieces), return_index=True)
    counts = np.bincount(cidx, minlength=len(pieces))
    ends = np.cumsum(counts)
    not_closing = np.ones(len(coords), dtype=bool)
    not_closing[ends[counts > 0] - 1] = False  # shapely rings repeat the first point at the end
    coords, cidx = coords[not_closing], cidx[not_closing]
    if enabled and len(coords):
        r = piece_row[cidx]
        coords[:, 0] = np.clip(coords[:, 0], 0.0, W[r])
        coords[:, 1] = np.clip(coords[:, 1], 0.0, H[r])
    starts = np.r_[0, np.cumsum(counts - 1)]
    area_rows = np.bincount(piece_row, weights=piece_area, minlength=n)

    work_rows = np.unique(grow)
    got = np.zeros(n, dtype=bool)
    got[piece_row] = True
    empty = work_rows[~got[work_rows]]
    deg = empty[base_area[empty] <= 0]
    led.drop(deg, "dropped.degenerate", "polygon has zero area")
    out = empty[base_area[empty] > 0]
    led.drop(out, "dropped.outside",
             [f"polygon lies outside the image ({_g(W[r])}x{_g(H[r])})" for r in out.tolist()])
    hole_rows = set(piece_row[has_hole].tolist())
    by_row: dict[int, list[int]] = {}
    for k, r in enumerate(piece_row.tolist()):
        by_row.setdefault(r, []).append(k)
    keep_pts = np.zeros(len(coords), dtype=bool)
    for r, ks in by_row.items():
        rings = [coords[starts[k]:starts[k + 1]].ravel() for k in ks]
        if r in hole_rows:
            h, w = int(H[r]), int(W[r])
            mask = rle_decode(rle_from_polygons(rings, h, w)).astype(bool)
            holes = [np.asarray(ring.coords, dtype=np.float64)[:-1].ravel()
                     for k in ks for ring in pieces[k].interiors]
            mask &= ~rle_decode(rle_from_polygons(holes, h, w)).astype(bool)
            if not mask.any():
                led.drop(np.array([r]), "dropped.degenerate", "polygon with holes covers no pixel")
                continue
            rle = rle_encode(mask)
            seg[r] = rle
            area[r] = float(mask.sum())
            box[r] = rle_bbox(rle)
            led.change("clipped" if cut_row[r] else "repaired", r,
                       "polygon with holes written as an RLE mask (COCO polygons cannot express holes)")
        else:
            seg[r] = rings
            area[r] = area_rows[r]
            keep_pts[starts[ks[0]]:starts[ks[-1] + 1]] = True
        if cut_row[r]:
            led.change("clipped", r, f"polygon clipped to the image ({_g(W[r])}x{_g(H[r])}): area "
                                     f"{_g(orig_area[r])} -> {_g(area_rows[r])}, {len(ks)} part(s)")
    _set_bounds(coords[keep_pts, 0], coords[keep_pts, 1], piece_row[cidx[keep_pts]], box)


# ------------------------------------------------------------------------------------------------ RLE
def _check_rles(rows: np.ndarray, seg: np.ndarray, box: np.ndarray, area: np.ndarray, W: np.ndarray,
                H: np.ndarray, led: _Ledger) -> None:
    for i in rows.tolist():
        s = seg[i]
        try:
            size = [int(s["size"][0]), int(s["size"][1])]
        except (KeyError, TypeError, ValueError, IndexError):
            led.drop(np.array([i]), "dropped.invalid", "RLE has no valid 'size' [height, width]")
            continue
        want = [int(H[i]), int(W[i])]
        if size != want:
            led.drop(np.array([i]), "dropped.invalid",
                     f"RLE size [h, w] = {size} differs from the image's [h, w] = {want}")
            continue
        try:
            a = rle_area(s)
            bb = rle_bbox(s)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, UnicodeError) as e:
            led.drop(np.array([i]), "dropped.invalid", f"RLE cannot be decoded: {e}")
            continue
        if a <= 0:
            led.drop(np.array([i]), "dropped.degenerate", "empty mask (no pixel set)")
            continue
        area[i] = a
        box[i] = bb


# ------------------------------------------------------------------------------------------------ keypoints
def _boxes_from_keypoints(rows: np.ndarray, box: np.ndarray, kps: np.ndarray, led: _Ledger) -> None:
    """A keypoint annotation with no usable box gets the extent of its labelled keypoints (as COCO's loadRes
    does for keypoint results), reported as ``recomputed``; it stays degenerate when that extent is flat."""
    b = box[rows]
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(b).all(axis=1) | (b[:, 2] <= 0) | (b[:, 3] <= 0)
    for r in rows[bad].tolist():
        try:
            k = np.asarray(kps[r], dtype=np.float64).reshape(-1, 3)
        except (TypeError, ValueError):
            continue
        k = k[(k[:, 2] > 0) & np.isfinite(k[:, 0]) & np.isfinite(k[:, 1])]
        if len(k) < 2:
            continue
        x0, y0 = float(k[:, 0].min()), float(k[:, 1].min())
        w, h = float(k[:, 0].max()) - x0, float(k[:, 1].max()) - y0
        if w > 0 and h > 0:
            led.change("recomputed", r, f"box {_box_text(*box[r].tolist())} replaced by the extent of the "
                                        f"labelled keypoints {_box_text(x0, y0, w, h)}")
            box[r] = (x0, y0, w, h)


def _clip_keypoints(rows: np.ndarray, kps: np.ndarray, W: np.ndarray, H: np.ndarray, enabled: bool,
                    led: _Ledger) -> None:
    if len(rows) == 0:
        return
    arrs: list[np.ndarray] = []
    ok_rows: list[int] = []
    for i in rows.tolist():
        try:
            arrs.append(np.asarray(kps[i], dtype=np.float64).reshape(-1, 3))
            ok_rows.append(i)
        except (TypeError, ValueError):
            led.drop(np.array([i]), "dropped.invalid", "keypoints are not x, y, v number triples")
    if not arrs:
        return
    allk = np.concatenate(arrs)
    krow = np.repeat(np.asarray(ok_rows, dtype=np.int64), [len(a) for a in arrs])
    kx, ky, kv = allk[:, 0], allk[:, 1], allk[:, 2]
    bad = ~np.isfinite(kx) | ~np.isfinite(ky) | ~np.isfinite(kv)
    if enabled:
        with np.errstate(invalid="ignore"):
            bad |= (kx < 0) | (kx > W[krow]) | (ky < 0) | (ky > H[krow])
    bad &= ~((kx == 0) & (ky == 0) & (kv == 0))
    if not bad.any():
        return
    offsets = np.r_[0, np.cumsum([len(a) for a in arrs])]
    for j in np.unique(np.searchsorted(offsets, np.flatnonzero(bad), side="right") - 1).tolist():
        r = ok_rows[j]
        local = bad[offsets[j]:offsets[j + 1]]
        arr = arrs[j].copy()
        labelled = int(((arr[:, 2] != 0) & local).sum())
        arr[local] = 0.0
        kps[r] = arr
        led.change("clipped", r, f"{int(local.sum())} keypoint(s) outside the image or non-finite set to "
                                 f"x=y=0, v=0 ({labelled} had been labelled)")


# ------------------------------------------------------------------------------------------------ clip
def clip(ds: Dataset, *, enabled: bool = True, min_area: float = 0.0, min_size: float = 0.0) -> Dataset:
    """Clip every annotation to its image and drop what is empty, degenerate or non-finite (module docstring).

    ``min_size`` drops what has a side (of its box: width or height, after clipping) under that many pixels
    (``dropped.min_size``)."""
    ann = ds.annotations.reset_index(drop=True)
    n = len(ann)
    if n == 0:
        return ds
    led = _Ledger(n)
    W, H = _sizes(ds, ann, led)
    # NaN is ground truth's "no score"; an infinite score cannot be written (every source, one place)
    led.drop(np.isinf(ann["score"].to_numpy(dtype=np.float64)) & led.alive, "dropped.nonfinite",
             "score is infinite")
    box = ann[["x", "y", "w", "h"]].to_numpy(dtype=np.float64, copy=True)
    seg = ann["segmentation"].to_numpy(dtype=object).copy()
    kps = ann["keypoints"].to_numpy(dtype=object).copy()
    area = np.zeros(n, dtype=np.float64)

    has_seg = ~pd.isna(ann["segmentation"]).to_numpy()
    is_rle = np.zeros(n, dtype=bool)
    is_poly = np.zeros(n, dtype=bool)
    for i in np.flatnonzero(has_seg).tolist():
        s = seg[i]
        if isinstance(s, Mapping):
            is_rle[i] = True
        elif isinstance(s, (list, tuple, np.ndarray)) and len(s) == 0:
            seg[i] = None  # an empty polygon list is a plain box, as in COCO
        elif isinstance(s, (list, tuple)):
            is_poly[i] = True
        else:
            led.drop(np.array([i]), "dropped.invalid", f"segmentation of type {type(s).__name__}")
    alive = led.alive
    is_box = alive & ~is_rle & ~is_poly
    has_kp = ~pd.isna(ann["keypoints"]).to_numpy()
    _boxes_from_keypoints(np.flatnonzero(is_box & has_kp), box, kps, led)
    _clip_boxes(np.flatnonzero(is_box), box, W, H, enabled, led)
    _clip_polygons(np.flatnonzero(is_poly & led.alive), seg, box, area, W, H, enabled, led)
    _check_rles(np.flatnonzero(is_rle & led.alive), seg, box, area, W, H, led)
    _clip_keypoints(np.flatnonzero(has_kp & led.alive), kps, W, H, enabled, led)
    alive = led.alive
    ab = is_box & alive
    area[ab] = box[ab, 2] * box[ab, 3]
    if min_area > 0:
        small = alive & (area < float(min_area))
        led.drop(small, "dropped.min_area", [f"area {_g(a)} < {_g(min_area)}" for a in area[small].tolist()])
        alive = led.alive
    if min_size > 0:
        side = np.minimum(box[:, 2], box[:, 3])
        thin = alive & (side < float(min_size))
        led.drop(thin, "dropped.min_size", [f"side {_g(a)} < {_g(min_size)}" for a in side[thin].tolist()])
        alive = led.alive

    rep = ds.report
    reasons = led.reason
    for reason in sorted({str(r) for r in reasons[~alive]}):
        m = reasons == reason
        rep.drop(reason, ann[m].assign(message=led.message[m]), phase=step_phase(3, _DROP_RANK.get(reason, 999)))
    for k, code in enumerate(_CHANGE_ORDER):
        idx, msgs = led.changed_rows(code, alive)
        if len(idx):
            rep.change(code, ann.iloc[idx].assign(message=msgs), phase=step_phase(3, k))

    out = ann.copy(deep=False)  # copy-on-write: the columns replaced below are new, the others shared
    out["x"], out["y"], out["w"], out["h"] = box[:, 0], box[:, 1], box[:, 2], box[:, 3]
    out["segmentation"] = pd.Series(seg, dtype=object)
    out["keypoints"] = pd.Series(kps, dtype=object)
    return ds.replace(annotations=out if alive.all() else out[alive])
