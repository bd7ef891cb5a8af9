"""YOLO rows to COCO geometry: the kept rows' normalized boxes, polygons (segment, OBB corners) and keypoints
in pixels with their scores and track ids, and the class names to the category table (keypoint names,
skeleton)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ReadError
from ..report import Report
from .yolo_layout import Config, rel_path
from .yolo_rows import OBB, POSE, SEGMENT, Lines, per_entry_any


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + l)`` for every (s, l)."""
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total)


def convert_rows(lines: Lines, keep: np.ndarray, kind_all: np.ndarray, img_all: np.ndarray, widths: np.ndarray,
                 heights: np.ndarray, kpt_shape: tuple[int, int] | None, n_entries: int) -> dict[str, Any]:
    """The annotation columns of the kept rows, in reading order."""
    vals = lines.vals
    first = lines.first[keep]
    ncol = lines.ncol[keep]
    kind = kind_all[keep]
    entry = lines.entry[keep]
    n = len(first)
    W = widths[img_all[keep]].astype(np.float64)
    H = heights[img_all[keep]].astype(np.float64)
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    w = np.full(n, np.nan)
    h = np.full(n, np.nan)
    segs = np.full(n, None, dtype=object)
    kps = np.full(n, None, dtype=object)
    attrs = np.full(n, None, dtype=object)

    # what the geometry is, and how many values it takes
    poly = ((kind == SEGMENT) & (ncol >= 7)) | (kind == OBB)
    box = ~poly & (kind != POSE)
    geo = np.where(box, 5, 0)
    geo = np.where(kind == OBB, 9, geo)
    seg_rows = (kind == SEGMENT) & (ncol >= 7)
    geo = np.where(seg_rows, ncol - ((ncol - 1) % 2), geo)  # odd: all polygon; even: polygon + score
    if kpt_shape is not None:
        geo = np.where(kind == POSE, 5 + kpt_shape[0] * kpt_shape[1], geo)
    extras = ncol - geo

    # trailing columns: score, track id
    score = np.full(n, np.nan)
    track = np.full(n, np.nan)
    one = extras == 1
    if one.any():
        v = vals[first[one] + ncol[one] - 1]
        not_whole = per_entry_any(entry[one], ~(np.isfinite(v) & (v == np.floor(v))), n_entries)
        above_one = per_entry_any(entry[one], v > 1, n_entries)
        is_track = (~not_whole & above_one)[entry[one]]
        score[np.flatnonzero(one)[~is_track]] = v[~is_track]
        track[np.flatnonzero(one)[is_track]] = v[is_track]
    two = extras == 2
    if two.any():
        score[two] = vals[first[two] + ncol[two] - 2]
        track[two] = vals[first[two] + ncol[two] - 1]

    # boxes (detect, pose, and box rows of segment files)
    bx = box | (kind == POSE)
    if bx.any():
        f = first[bx]
        cx, cy, bw, bh = vals[f + 1], vals[f + 2], vals[f + 3], vals[f + 4]
        Wb, Hb = W[bx], H[bx]
        x[bx] = cx * Wb - bw * Wb / 2
        y[bx] = cy * Hb - bh * Hb / 2
        w[bx] = bw * Wb
        h[bx] = bh * Hb

    # polygons (segment, OBB corners)
    if poly.any():
        rows = np.flatnonzero(poly)
        ncoord = geo[rows] - 1
        idx = _ranges(first[rows] + 1, ncoord)
        coords = vals[idx]
        owner = np.repeat(np.arange(len(rows)), ncoord)
        pos = idx - np.repeat(first[rows] + 1, ncoord)
        is_x = pos % 2 == 0
        coords = coords * np.where(is_x, W[rows][owner], H[rows][owner])
        bounds = np.concatenate(([0], np.cumsum(ncoord)))
        xs_min = _segment_reduce(np.where(is_x, coords, np.inf), bounds, np.minimum)
        xs_max = _segment_reduce(np.where(is_x, coords, -np.inf), bounds, np.maximum)
        ys_min = _segment_reduce(np.where(is_x, np.inf, coords), bounds, np.minimum)
        ys_max = _segment_reduce(np.where(is_x, -np.inf, coords), bounds, np.maximum)
        nonfinite = per_entry_any(owner, ~np.isfinite(coords), len(rows))
        xs_min[nonfinite] = np.nan  # NaN anywhere makes the box NaN (the clipping step drops it)
        x[rows], y[rows] = xs_min, ys_min
        w[rows], h[rows] = xs_max - xs_min, ys_max - ys_min
        parts = np.split(coords, bounds[1:-1])
        for r, part in zip(rows.tolist(), parts, strict=True):
            segs[r] = [part]

    # keypoints
    pose = kind == POSE
    if pose.any() and kpt_shape is not None:
        k, d = kpt_shape
        rows = np.flatnonzero(pose)
        kp = vals[first[rows][:, None] + 5 + np.arange(k * d)[None, :]].reshape(len(rows), k, d)
        px = kp[..., 0] * W[rows][:, None]
        py = kp[..., 1] * H[rows][:, None]
        conf: np.ndarray | None = None
        if d == 2:
            v = np.where((kp[..., 0] < 0) | (kp[..., 1] < 0) | ((kp[..., 0] == 0) & (kp[..., 1] == 0)), 0.0, 2.0)
        else:
            third = kp[..., 2]
            odd = ~np.isin(third, (0.0, 1.0, 2.0)).all(axis=1) | (extras[rows] > 0)
            conf_entry = per_entry_any(entry[rows], odd, n_entries)[entry[rows]]
            v = np.where(conf_entry[:, None], np.where(third > 0.5, 2.0, 1.0), third)
            if conf_entry.any():
                conf = np.where(conf_entry[:, None], third, np.nan)
        px = np.where(v == 0, 0.0, px)
        py = np.where(v == 0, 0.0, py)
        out = np.ascontiguousarray(np.stack([px, py, v], axis=-1))
        for j, r in enumerate(rows.tolist()):
            kps[r] = out[j]
        if conf is not None:
            for j in np.flatnonzero(~np.isnan(conf[:, 0])).tolist():
                attrs[rows[j]] = {"keypoint_scores": conf[j].tolist()}

    has_track = ~np.isnan(track)
    for r in np.flatnonzero(has_track).tolist():
        t = float(track[r])
        tid: int | float = int(t) if np.isfinite(t) and t == int(t) else t
        if attrs[r] is None:
            attrs[r] = {"track_id": tid}
        else:
            attrs[r]["track_id"] = tid
    return {"x": x, "y": y, "w": w, "h": h, "score": score, "segmentation": segs, "keypoints": kps,
            "attributes": attrs}


def _segment_reduce(values: np.ndarray, bounds: np.ndarray, op: Any) -> np.ndarray:
    return np.asarray(op.reduceat(values, bounds[:-1]), dtype=np.float64)


def category_table(names: list[str], cfg: Config, kpt_shape: tuple[int, int] | None, report: Report,
                   root: str) -> pd.DataFrame:
    """The category table of ``names`` (a name given twice: one category, noted), with keypoint names and
    skeleton for pose."""
    seen: dict[str, int] = {}
    order: list[int] = []
    for i, nm in enumerate(names):
        if nm in seen:
            report.note("category.matched", cfg.names_src or "names",
                        f"class {i} has the same name as class {seen[nm]} ({nm!r}): one category")
            continue
        seen[nm] = i
        order.append(i)
    keypoints: list[Any] = [None] * len(order)
    skeleton: Any = None
    if kpt_shape is not None:
        k = kpt_shape[0]
        where = cfg.yaml_file or "data.yaml"
        default = [f"kp{j}" for j in range(k)]
        kn = cfg.kpt_names
        keypoints = []
        for i in order:
            per: Any = kn.get(i, kn.get(str(i))) if isinstance(kn, dict) else kn
            if per is None:
                keypoints.append(default)
                continue
            if not isinstance(per, list) or len(per) != k:
                raise ReadError(where, f"kpt_names: expected {k} names per class, got {per!r}", element="kpt_names")
            keypoints.append([str(v) for v in per])
        if cfg.skeleton is not None:
            skeleton, shifted = _skeleton(cfg.skeleton, k, where)
            if shifted:
                report.note("skeleton.shifted", rel_path(where, root), "the 0-based skeleton of data.yaml was made "
                            "1-based (COCO)", severity="info")
    return pd.DataFrame({"name": [names[i] for i in order], "keypoints": keypoints,
                         "skeleton": [skeleton] * len(order)})


def _skeleton(raw: Any, k: int, where: str) -> tuple[list[list[int]], bool]:
    try:
        pairs = [[int(a), int(b)] for a, b in raw]
    except (TypeError, ValueError):
        raise ReadError(where, f"skeleton must be a list of [a, b] pairs, got {raw!r}", element="skeleton") from None
    flat = [v for pair in pairs for v in pair]
    one_based = bool(flat) and min(flat) >= 1 and max(flat) == k
    out = pairs if one_based else [[a + 1, b + 1] for a, b in pairs]
    if any(not 1 <= v <= k for pair in out for v in pair):
        raise ReadError(where, f"skeleton refers to keypoints outside 0..{k - 1}", element="skeleton")
    return out, bool(pairs) and not one_based
