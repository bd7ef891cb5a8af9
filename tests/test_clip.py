"""Clipping to the image: hand-checked geometry, the drop reasons, and properties on random shapes."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prelabel.converters.clip import clip
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import ValidationError
from prelabel.geometry import polygon_area, rle_decode
from prelabel.model import Dataset
from prelabel.pipeline import write_dataset


def P(*v: float) -> np.ndarray:
    return np.array(v, dtype=np.float64)


def _ds(rows: list[dict[str, Any]], *, width: int = 10, height: int = 10) -> Dataset:
    """One image ``width x height``; each row a dict with x, y, w, h and optional segmentation / keypoints."""
    cols: dict[str, list[Any]] = {k: [] for k in ("image", "category", "x", "y", "w", "h", "segmentation",
                                                  "keypoints", "src_file", "src_line")}
    for i, r in enumerate(rows):
        cols["image"].append(0)
        cols["category"].append(r.get("category", "thing"))
        for k in "xywh":
            cols[k].append(float(r.get(k, 1.0)))
        cols["segmentation"].append(r.get("segmentation"))
        cols["keypoints"].append(r.get("keypoints"))
        cols["src_file"].append("labels/a.txt")
        cols["src_line"].append(i + 1)
    return Dataset.build(images={"file_name": ["a.jpg"], "width": [width], "height": [height]}, annotations=cols)


def _points(flat: Any) -> list[tuple[float, float]]:
    a = np.asarray(flat, dtype=np.float64)
    return sorted(zip(a[0::2].tolist(), a[1::2].tolist(), strict=True))


def _changes(ds: Dataset) -> list[tuple[str, str, str]]:
    c = ds.report.changes
    return list(zip(c["reason"], c["source"], c["message"], strict=True))


def _drops(ds: Dataset) -> list[tuple[str, str, str]]:
    d = ds.report.drops
    return list(zip(d["reason"], d["source"], d["message"], strict=True))


# ------------------------------------------------------------------------------------------------ boxes
def test_box_half_outside_is_clipped_and_reported_with_its_source():
    ds = _ds([{"x": 90, "y": 10, "w": 20, "h": 20}], width=100, height=50)
    out = clip(ds)
    # x from 90 to 110 cut at the right border 100: w = 100 - 90 = 10; y 10..30 is inside the 50 px height
    assert out.boxes.tolist() == [[90.0, 10.0, 10.0, 20.0]]
    assert _changes(out) == [("clipped", "labels/a.txt:1",
                              "box [90, 10, 20, 20] clipped to [90, 10, 10, 20] (image 100x50)")]
    coco = to_coco(out)
    assert coco["annotations"][0]["bbox"] == [90.0, 10.0, 10.0, 20.0]
    assert coco["annotations"][0]["area"] == 200.0  # 10 * 20


def test_box_over_the_top_left_corner():
    out = clip(_ds([{"x": -5, "y": -2, "w": 10, "h": 4}]))
    # x -5..5 -> 0..5 (w 5); y -2..2 -> 0..2 (h 2)
    assert out.boxes.tolist() == [[0.0, 0.0, 5.0, 2.0]]


def test_box_entirely_outside_nan_and_degenerate_are_dropped_with_reasons():
    ds = _ds([
        {"x": 20, "y": 2, "w": 5, "h": 5},                 # right of a 10 px wide image
        {"x": 10, "y": 2, "w": 5, "h": 5},                 # touches the border only: nothing inside
        {"x": float("nan"), "y": 2, "w": 5, "h": 5},
        {"x": 1, "y": 2, "w": 0, "h": 5},
        {"x": 1, "y": 2, "w": 3, "h": -1},
        {"x": 1, "y": 1, "w": 2, "h": 2},                  # kept untouched
    ])
    out = clip(ds)
    assert out.boxes.tolist() == [[1.0, 1.0, 2.0, 2.0]]
    assert sorted(_drops(out)) == [
        ("dropped.degenerate", "labels/a.txt:4", "box [1, 2, 0, 5] has zero or negative size"),
        ("dropped.degenerate", "labels/a.txt:5", "box [1, 2, 3, -1] has zero or negative size"),
        ("dropped.nonfinite", "labels/a.txt:3", "box [nan, 2, 5, 5] has a NaN or infinite value"),
        ("dropped.outside", "labels/a.txt:1", "box [20, 2, 5, 5] lies outside the image (10x10)"),
        ("dropped.outside", "labels/a.txt:2", "box [10, 2, 5, 5] lies outside the image (10x10)"),
    ]
    assert out.report.changes.empty


def test_min_area_drops_small_objects_after_clipping():
    # 4x4 box clipped to 2x4 = 8 px² < 10: dropped; a 4x4 = 16 px² box stays
    out = clip(_ds([{"x": 8, "y": 0, "w": 4, "h": 4}, {"x": 0, "y": 0, "w": 4, "h": 4}]), min_area=10)
    assert out.boxes.tolist() == [[0.0, 0.0, 4.0, 4.0]]
    assert _drops(out) == [("dropped.min_area", "labels/a.txt:1", "area 8 < 10")]


# ------------------------------------------------------------------------------------------------ polygons
def test_polygon_crossing_a_corner():
    # the square (-5,-5)..(5,5) keeps its quarter (0,0)..(5,5) inside a 10x10 image: area 100 -> 25
    out = clip(_ds([{"segmentation": [P(-5, -5, 5, -5, 5, 5, -5, 5)]}]))
    seg = out.annotations.loc[0, "segmentation"]
    assert len(seg) == 1
    assert _points(seg[0]) == [(0.0, 0.0), (0.0, 5.0), (5.0, 0.0), (5.0, 5.0)]
    assert out.boxes.tolist() == [[0.0, 0.0, 5.0, 5.0]]
    assert _changes(out) == [("clipped", "labels/a.txt:1",
                              "polygon clipped to the image (10x10): area 100 -> 25, 1 part(s)")]
    a = to_coco(out)["annotations"][0]
    assert a["area"] == 25.0 and a["bbox"] == [0.0, 0.0, 5.0, 5.0]


def test_polygon_split_in_two_by_the_border_stays_one_annotation():
    # a U lying on its side, open to the left; its base x 12..14 is outside the 10 px image.
    # Cut at x = 10 it leaves two bars: [6,10]x[1,3] and [6,10]x[7,9], 4*2 = 8 px² each.
    u = P(6, 1, 14, 1, 14, 9, 6, 9, 6, 7, 12, 7, 12, 3, 6, 3)
    out = clip(_ds([{"segmentation": [u]}]))
    assert len(out) == 1
    seg = out.annotations.loc[0, "segmentation"]
    assert sorted(_points(p) for p in seg) == [
        [(6.0, 1.0), (6.0, 3.0), (10.0, 1.0), (10.0, 3.0)],
        [(6.0, 7.0), (6.0, 9.0), (10.0, 7.0), (10.0, 9.0)],
    ]
    a = to_coco(out)["annotations"][0]
    assert a["area"] == 16.0 and a["bbox"] == [6.0, 1.0, 4.0, 8.0]


def test_bow_tie_is_repaired_into_two_triangles():
    # (0,0) (2,2) (2,0) (0,2) crosses itself at (1,1): two triangles of area 1 each (shoelace of the
    # bow-tie as drawn is 0, which is why it must be repaired)
    out = clip(_ds([{"segmentation": [P(0, 0, 2, 2, 2, 0, 0, 2)]}]))
    seg = out.annotations.loc[0, "segmentation"]
    assert sorted(_points(p) for p in seg) == [[(0.0, 0.0), (0.0, 2.0), (1.0, 1.0)],
                                               [(1.0, 1.0), (2.0, 0.0), (2.0, 2.0)]]
    assert _changes(out) == [("repaired", "labels/a.txt:1", "invalid polygon repaired (Self-intersection[1 1])")]
    a = to_coco(out)["annotations"][0]
    assert a["area"] == 2.0 and a["bbox"] == [0.0, 0.0, 2.0, 2.0]


def test_polygon_with_a_hole_becomes_an_rle_mask(self_ap):
    # a keyhole ring: the square 1..9 and, through a zero-width cut, the hole 3..7 drawn backwards.
    # pycocotools fills the square's pixels 1..8 (64) and the hole's pixels 3..6 (16): 48 pixels remain.
    keyhole = P(1, 1, 9, 1, 9, 9, 1, 9, 1, 1, 3, 3, 3, 7, 7, 7, 7, 3, 3, 3)
    out = clip(_ds([{"segmentation": [keyhole]}]))
    rle = out.annotations.loc[0, "segmentation"]
    assert isinstance(rle, dict) and rle["size"] == [10, 10]
    mask = rle_decode(rle)
    expected = np.zeros((10, 10), dtype=np.uint8)
    expected[1:9, 1:9] = 1
    expected[3:7, 3:7] = 0
    assert (mask == expected).all()
    assert out.boxes.tolist() == [[1.0, 1.0, 8.0, 8.0]]
    assert [r for r, _, _ in _changes(out)] == ["repaired"]
    coco = to_coco(out)
    assert coco["annotations"][0]["area"] == 48.0
    assert validate(coco).ok
    assert self_ap(coco, "segm") == pytest.approx(1.0)


def test_polygon_entirely_outside_zero_area_and_short_parts():
    ds = _ds([
        {"segmentation": [P(20, 20, 30, 20, 30, 30)]},             # outside
        {"segmentation": [P(1, 1, 2, 2, 3, 3)]},                   # collinear: zero area
        {"segmentation": [P(1, 1, 2, 2)]},                         # 2 points
        {"segmentation": [P(1, 1, 4, 1, 4, 4), P(5, 5, 6, 6)]},    # second part has 2 points
        {"segmentation": [P(1, 1, float("inf"), 1, 4, 4)]},
    ])
    out = clip(ds)
    assert sorted(_drops(out)) == [
        ("dropped.degenerate", "labels/a.txt:2", "polygon has zero area"),
        ("dropped.degenerate", "labels/a.txt:3", "no polygon part with 3 or more points"),
        ("dropped.nonfinite", "labels/a.txt:5", "polygon has a NaN or infinite coordinate"),
        ("dropped.outside", "labels/a.txt:1", "polygon lies outside the image (10x10)"),
    ]
    assert len(out) == 1
    assert [p.tolist() for p in out.annotations.loc[0, "segmentation"]] == [[1.0, 1.0, 4.0, 1.0, 4.0, 4.0]]
    assert _changes(out) == [("repaired", "labels/a.txt:4", "1 of 2 polygon part(s) with fewer than 3 points removed")]


def test_polygons_inside_are_left_as_they_came():
    part = [1.5, 1.0, 4.25, 1.0, 4.0, 3.0]  # a plain list, not an array: kept as the very same object
    seg = [part]
    ds = _ds([{"x": 0, "y": 0, "w": 9, "h": 9, "segmentation": seg}])
    before = to_coco(ds)["annotations"][0]["segmentation"]
    out = clip(ds)
    assert out.annotations.loc[0, "segmentation"] is seg
    assert to_coco(out)["annotations"][0]["segmentation"] == before
    # the enclosing box follows the geometry: x 1.5..4.25, y 1..3
    assert out.boxes.tolist() == [[1.5, 1.0, 2.75, 2.0]]
    assert out.report.changes.empty and out.report.drops.empty


# ------------------------------------------------------------------------------------------------ keypoints / RLE
def test_keypoints_outside_become_unlabelled():
    kps = np.array([[5, 5, 2], [12, 3, 2], [-1, 4, 1]], dtype=np.float64)
    out = clip(_ds([{"x": 1, "y": 1, "w": 8, "h": 8, "keypoints": kps}]))
    assert out.annotations.loc[0, "keypoints"].tolist() == [[5, 5, 2], [0, 0, 0], [0, 0, 0]]
    assert _changes(out) == [("clipped", "labels/a.txt:1", "2 keypoint(s) outside the image or non-finite set to "
                                                           "x=y=0, v=0 (2 had been labelled)")]


def test_keypoint_annotation_without_a_box_gets_the_keypoints_extent():
    # labelled keypoints (2, 3) and (6, 8); the unlabelled one at (9, 9) does not count: box [2, 3, 4, 5]
    kps = np.array([[2, 3, 2], [6, 8, 1], [9, 9, 0]], dtype=np.float64)
    out = clip(_ds([{"x": 0, "y": 0, "w": 0, "h": 0, "keypoints": kps}]))
    assert out.boxes.tolist() == [[2.0, 3.0, 4.0, 5.0]]
    assert _changes(out) == [("recomputed", "labels/a.txt:1", "box [0, 0, 0, 0] replaced by the extent of the "
                                                              "labelled keypoints [2, 3, 4, 5]")]


def test_rle_of_another_size_is_dropped_with_both_sizes():
    rle = {"size": [5, 10], "counts": [0, 50]}
    out = clip(_ds([{"segmentation": rle}]))
    assert len(out) == 0
    assert _drops(out) == [("dropped.invalid", "labels/a.txt:1",
                            "RLE size [h, w] = [5, 10] differs from the image's [h, w] = [10, 10]")]


def test_rle_box_follows_the_mask():
    # uncompressed, column-major: 20 zeros (columns 0-1), 10 ones (column 2), 70 zeros
    rle = {"size": [10, 10], "counts": [20, 10, 70]}
    out = clip(_ds([{"x": 0, "y": 0, "w": 1, "h": 1, "segmentation": rle}]))
    assert out.boxes.tolist() == [[2.0, 0.0, 1.0, 10.0]]


# ------------------------------------------------------------------------------------------------ --no-clip
def test_no_clip_keeps_geometry_but_drops_what_cannot_be_written(tmp_path: Path):
    ds = _ds([{"x": 8, "y": 0, "w": 4, "h": 4}, {"x": float("inf"), "y": 0, "w": 1, "h": 1},
              {"x": 1, "y": 1, "w": 0, "h": 1}])
    out = clip(ds, enabled=False)
    assert out.boxes.tolist() == [[8.0, 0.0, 4.0, 4.0]]
    assert sorted(r for r, _, _ in _drops(out)) == ["dropped.degenerate", "dropped.nonfinite"]
    with pytest.raises(ValidationError, match="extends outside image 1"):
        write_dataset(out, tmp_path / "strict.json")
    res = write_dataset(out, tmp_path / "out.json", allow_outside=True)
    assert res.report.balanced and res.validation.warnings == [
        "annotations[0] (id 1): bbox [8.0, 0.0, 4.0, 4.0] extends outside image 1 (10x10)"]


# ------------------------------------------------------------------------------------------------ properties
W_H = st.integers(min_value=1, max_value=40)
coord = st.floats(min_value=-30, max_value=70, allow_nan=False, width=32)
size = st.floats(min_value=-2, max_value=50, allow_nan=False, width=32)


@st.composite
def star_polygon(draw: Any) -> np.ndarray:
    """A simple polygon, star-shaped about its centre: one point in each of n equal sectors around it (every
    gap between consecutive angles is under 180 degrees, so the centre sees the whole boundary)."""
    cx, cy = draw(coord), draw(coord)
    n = draw(st.integers(min_value=3, max_value=7))
    step = 360 / n
    jitter = draw(st.lists(st.floats(min_value=0.05, max_value=0.95), min_size=n, max_size=n))
    angles = [(k + j) * step for k, j in enumerate(jitter)]
    radii = draw(st.lists(st.floats(min_value=0.5, max_value=30), min_size=len(angles), max_size=len(angles)))
    pts = [(cx + r * math.cos(math.radians(a)), cy + r * math.sin(math.radians(a)))
           for a, r in zip(angles, radii, strict=True)]
    return np.array([v for p in pts for v in p], dtype=np.float64)


@st.composite
def shapes(draw: Any) -> tuple[int, int, list[dict[str, Any]]]:
    w, h = draw(W_H), draw(W_H)
    rows: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=1, max_value=8))):
        if draw(st.booleans()):
            rows.append({"x": draw(coord), "y": draw(coord), "w": draw(size), "h": draw(size)})
        else:
            rows.append({"segmentation": [draw(star_polygon())]})
    return w, h, rows


def _geometry_area(row: Any) -> float:
    seg = row.segmentation
    if seg is None:
        return float(row.w * row.h)
    return float(sum(polygon_area(p) for p in seg))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shapes())
def test_property_clipped_geometry_is_inside_and_smaller_and_clipping_twice_changes_nothing(case):
    w, h, rows = case
    ds = _ds(rows, width=w, height=h)
    before = {int(r.src_line): _geometry_area(r) for r in ds.annotations.itertuples()}
    once = clip(ds)
    eps = 1e-9 * max(w, h)
    for r in once.annotations.itertuples():
        assert r.x >= 0 and r.y >= 0 and r.x + r.w <= w + eps and r.y + r.h <= h + eps and r.w > 0 and r.h > 0
        if r.segmentation is not None:
            pts = np.concatenate([np.asarray(p) for p in r.segmentation])
            assert pts[0::2].min() >= 0 and pts[0::2].max() <= w and pts[1::2].min() >= 0 and pts[1::2].max() <= h
        assert _geometry_area(r) <= before[int(r.src_line)] + 1e-6
    n_changes, n_drops = len(once.report.changes), len(once.report.drops)
    twice = clip(once)
    assert len(twice.report.changes) == n_changes and len(twice.report.drops) == n_drops
    assert twice.boxes.tolist() == once.boxes.tolist()
    for a, b in zip(once.annotations["segmentation"], twice.annotations["segmentation"], strict=True):
        assert (a is None and b is None) or [list(p) for p in a] == [list(p) for p in b]
    # what survives is writable
    assert validate(to_coco(twice)).ok


def test_written_coco_scores_ap_one(self_ap):
    corner = P(-5, -5, 5, -5, 5, 5, -5, 5)
    u = P(6, 1, 14, 1, 14, 9, 6, 9, 6, 7, 12, 7, 12, 3, 6, 3)
    boxes = _ds([{"x": 90, "y": 10, "w": 20, "h": 20}, {"segmentation": [corner]}], width=100, height=50)
    polys = _ds([{"segmentation": [corner]}, {"segmentation": [u]}, {"segmentation": [P(0, 0, 2, 2, 2, 0, 0, 2)]}])
    with tempfile.TemporaryDirectory() as d:
        res = write_dataset(clip(boxes), Path(d) / "boxes.json")
        assert res.report.balanced
        assert self_ap(res.paths[0], "bbox") == pytest.approx(1.0)
        res = write_dataset(clip(polys), Path(d) / "polys.json")
        assert res.report.balanced
        assert self_ap(res.paths[0], "bbox") == pytest.approx(1.0)
        assert self_ap(res.paths[0], "segm") == pytest.approx(1.0)


def test_an_infinite_score_is_dropped_whatever_the_source() -> None:
    from prelabel.model import Dataset

    ds = Dataset.build(
        images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
        annotations={"image": [0, 0, 0], "category": ["a", "a", "a"], "x": [1.0, 1.0, 1.0], "y": [1.0, 1.0, 1.0],
                     "w": [2.0, 2.0, 2.0], "h": [2.0, 2.0, 2.0], "score": [np.inf, 0.5, np.nan],
                     "src_line": [1, 2, 3], "src_file": ["p.csv"] * 3})
    out = clip(ds)
    assert out.annotations["score"].tolist()[0] == 0.5 and len(out) == 2
    drops = ds.report.drops
    assert drops[["reason", "source", "message"]].values.tolist() == [
        ["dropped.nonfinite", "p.csv:1", "score is infinite"]]
