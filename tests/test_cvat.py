"""The CVAT adapter (CVAT for images 1.1 / for video 1.1 XML) and the CVAT RLE helpers of prelabel.geometry.

Every expected coordinate below is worked out by hand from the XML in a comment, not copied from the code.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from prelabel.adapters import cvat
from prelabel.adapters.base import ReadOptions
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import ReadError
from prelabel.geometry import (
    coco_to_cvat_rle,
    cvat_rle_decode,
    cvat_rle_encode,
    polygon_area,
    rle_decode,
)
from prelabel.model import Dataset
from prelabel.report import Report

CVAT = Path("cvat")
FOR_IMAGES = CVAT / "cvat-ai__datumaro/tests/assets/cvat_dataset/for_images"
FOR_VIDEO = CVAT / "cvat-ai__datumaro/tests/assets/cvat_dataset/for_video/annotations.xml"
PROJECT = CVAT / "openvinotoolkit__datumaro/tests/assets/cvat_dataset/for_images/export_project/annotations.xml"
TASK = CVAT / "openvinotoolkit__datumaro/tests/assets/cvat_dataset/for_images/export_task/train.xml"
DOC_EXAMPLE = CVAT / "cvat-ai__cvat/site/content/en/docs/other/xml_format.md.example_annotation.xml"

HEAD = "<annotations><version>1.1</version>"


def _read(path: Path, **opts: object) -> Dataset:
    return cvat.read(path, options=ReadOptions(**opts), report=Report())  # type: ignore[arg-type]


def _write(tmp_path: Path, text: str, name: str = "annotations.xml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def _images_xml(body: str, *, labels: str = "<label><name>car</name></label>", w: int = 100, h: int = 60) -> str:
    return (f"{HEAD}<meta><task><mode>annotation</mode><labels>{labels}</labels></task></meta>\n"
            f'<image id="0" name="a.jpg" width="{w}" height="{h}">\n{body}\n</image></annotations>')


def _ok(coco: dict, self_ap, *iou_types: str) -> None:
    res = validate(coco)
    assert res.ok, res.errors
    for t in iou_types or ("bbox",):
        doc = coco
        if t == "segm":  # segm AP over the segmented objects (a plain box has segmentation [])
            doc = dict(coco, annotations=[a for a in coco["annotations"] if a["segmentation"]])
        assert self_ap(doc, t) == pytest.approx(1.0)


def _balanced(ds: Dataset) -> None:
    r = ds.report
    r.set_written(len(ds))
    assert r.balanced, (r.read, len(ds), r.dropped)


# ----------------------------------------------------------------------------------------------- geometry
def test_cvat_rle_decode_is_row_major_and_round_trips():
    # runs 1,2,3 over a 3x2 rectangle read row by row: 1 background, 2 set, 3 background
    m = cvat_rle_decode("1, 2, 3", 3, 2)
    assert m.tolist() == [[0, 1, 1], [0, 0, 0]]
    assert cvat_rle_encode(m) == [1, 2, 3]
    # a mask whose first pixel is set starts with a background run of 0
    assert cvat_rle_encode(np.array([[1, 0], [0, 1]])) == [0, 1, 2, 1]
    with pytest.raises(ValueError, match="cover 5 pixels, not width\\*height = 3\\*2 = 6"):
        cvat_rle_decode("1, 2, 2", 3, 2)
    with pytest.raises(ValueError):
        cvat_rle_decode("1, -2, 7", 3, 2)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.data())
def test_cvat_rle_round_trip(h, w, data):
    bits = data.draw(st.lists(st.integers(0, 1), min_size=h * w, max_size=h * w))
    m = np.array(bits, dtype=np.uint8).reshape(h, w)
    np.testing.assert_array_equal(cvat_rle_decode(cvat_rle_encode(m), w, h), m)


# ----------------------------------------------------------------------------------------------- shapes
def test_rotated_box_on_a_non_square_image_is_the_rotated_rectangle(tmp_path, self_ap):
    # box 10,20 -> 50,40 (40 x 20) turned 30 degrees clockwise on screen about its centre (30, 30), image 100x60.
    # half extents dx = +-20, dy = +-10; x' = 30 + dx cos30 - dy sin30, y' = 30 + dx sin30 + dy cos30
    # (cos30 = 0.8660254, sin30 = 0.5):
    #   top-left     (-20,-10): 30 - 17.320508 + 5 = 17.679492,  30 - 10 - 8.660254 = 11.339746
    #   top-right    ( 20,-10): 30 + 17.320508 + 5 = 52.320508,  30 + 10 - 8.660254 = 31.339746
    #   bottom-right ( 20, 10): 30 + 17.320508 - 5 = 42.320508,  30 + 10 + 8.660254 = 48.660254
    #   bottom-left  (-20, 10): 30 - 17.320508 - 5 =  7.679492,  30 - 10 + 8.660254 = 28.660254
    # enclosing box: x 7.679492..52.320508 (w 44.641016), y 11.339746..48.660254 (h 37.320508); area 40*20 = 800
    p = _write(tmp_path, _images_xml(
        '<box label="car" occluded="0" xtl="10" ytl="20" xbr="50" ybr="40" rotation="30" z_order="2"/>'))
    ds = _read(p)
    row = ds.annotations.iloc[0]
    corners = np.asarray(row["segmentation"][0]).reshape(4, 2)
    np.testing.assert_allclose(corners, [[17.679492, 11.339746], [52.320508, 31.339746],
                                         [42.320508, 48.660254], [7.679492, 28.660254]], atol=1e-6)
    np.testing.assert_allclose(ds.boxes[0], [7.679492, 11.339746, 44.641016, 37.320508], atol=1e-6)
    assert row["attributes"] == {"occluded": False, "z_order": 2, "rotation": 30.0}
    coco = to_coco(ds)
    assert coco["annotations"][0]["area"] == pytest.approx(800.0)
    _ok(coco, self_ap, "bbox", "segm")


def test_ellipse_becomes_a_polygon_of_nearly_its_area(tmp_path, self_ap):
    # ellipse centre (50, 30), radii 20 x 10: pi * 20 * 10 = 628.3185; extremes at x 30..70, y 20..40
    p = _write(tmp_path, _images_xml('<ellipse label="car" cx="50" cy="30" rx="20" ry="10" occluded="0"/>'))
    ds = _read(p)
    poly = ds.annotations.loc[0, "segmentation"][0]
    assert polygon_area(poly) == pytest.approx(math.pi * 200, rel=0.005)
    np.testing.assert_allclose(ds.boxes[0], [30.0, 20.0, 40.0, 20.0], atol=1e-9)
    _ok(to_coco(ds), self_ap, "bbox", "segm")


def test_tags_are_image_attributes_not_annotations(tmp_path):
    p = _write(tmp_path, _images_xml('<tag label="day" source="manual"/><tag label="rain"/>'
                                     '<box label="car" xtl="1" ytl="1" xbr="3" ybr="3"/>'))
    ds = _read(p)
    assert ds.images.loc[0, "attributes"] == {"tags": ["day", "rain"]}
    assert len(ds) == 1 and ds.report.read == 1
    notes = [d for d in ds.report.diagnostics if d.code == "image.attribute"]
    assert len(notes) == 1 and notes[0].severity == "info" and notes[0].source == f"{p}:3"
    assert "2 tag(s)" in notes[0].message


def test_group_source_and_typed_attributes_are_kept(tmp_path):
    labels = ("<label><name>car</name><attributes>"
              "<attribute><name>parked</name><input_type>checkbox</input_type></attribute>"
              "<attribute><name>doors</name><input_type>number</input_type></attribute>"
              "<attribute><name>color</name><input_type>select</input_type></attribute>"
              "</attributes></label>")
    p = _write(tmp_path, _images_xml(
        '<polygon label="car" points="1,1;9,1;9,5" group_id="3" source="auto" occluded="1" z_order="-1">'
        '<attribute name="parked">true</attribute><attribute name="doors">4</attribute>'
        '<attribute name="color">red</attribute></polygon>', labels=labels))
    ds = _read(p)
    assert ds.annotations.loc[0, "attributes"] == {
        "occluded": True, "z_order": -1, "group_id": 3, "source": "auto", "parked": True, "doors": 4,
        "color": "red"}
    # polygon (1,1) (9,1) (9,5): enclosing box x 1..9, y 1..5
    assert ds.boxes[0].tolist() == [1.0, 1.0, 8.0, 4.0]
    assert ds.annotations.loc[0, "src_line"] == 3


# ----------------------------------------------------------------------------------------------- fixtures
def test_docs_example_mask_decodes_pixel_by_pixel(fixtures_dir, self_ap):
    ds = _read(fixtures_dir / DOC_EXAMPLE)
    masks = ds.annotations[ds.annotations["segmentation"].map(lambda s: isinstance(s, dict))]
    assert len(masks) == 1
    row = masks.iloc[0]
    assert row["category"] == "car" and row["iscrowd"] == 0
    # rle "3, 5, 7, 7, 5, 9, 3, 11, 2, 11, 2, 12, 1, 12, 1, 26, 1, 12, 1, 12, 2, 11, 3, 9, 5, 7, 7, 5, 3"
    # read row by row over 13 columns (background first): 3 bg, 5 fg, then 5 of the 7 bg end row 0; the other
    # 2 bg open row 1, then 7 fg, 4 of the 5 bg; ... the run of 26 fills rows 7 and 8.
    rows = ["0001111100000",
            "0011111110000",
            "0111111111000",
            "1111111111100",
            "1111111111100",
            "1111111111110",
            "1111111111110",
            "1111111111111",
            "1111111111111",
            "0111111111111",
            "0111111111111",
            "0011111111111",
            "0001111111110",
            "0000111111100",
            "0000011111000"]
    expected = np.zeros((1200, 1600), dtype=np.uint8)
    expected[888:903, 707:720] = np.array([[int(c) for c in r] for r in rows], dtype=np.uint8)
    got = rle_decode(row["segmentation"])
    assert got.shape == (1200, 1600)
    np.testing.assert_array_equal(got, expected)
    assert int(expected.sum()) == 149  # 5+7+9+11+11+12+12+13+13+12+12+11+9+7+5
    assert [row["x"], row["y"], row["w"], row["h"]] == [707.0, 888.0, 13.0, 15.0]
    # and back to CVAT's own form: the same runs (the rectangle is already tight)
    runs, left, top, width, height = coco_to_cvat_rle(row["segmentation"])
    assert (left, top, width, height) == (707, 888, 13, 15)
    assert runs == [3, 5, 7, 7, 5, 9, 3, 11, 2, 11, 2, 12, 1, 12, 1, 26, 1, 12, 1, 12, 2, 11, 3, 9, 5, 7, 7, 5, 3]
    coco = to_coco(ds)
    mask_ann = next(a for a in coco["annotations"] if isinstance(a["segmentation"], dict))
    assert mask_ann["area"] == 149
    _ok(coco, self_ap, "bbox", "segm")


def test_docs_example_shapes_tag_and_skeleton(fixtures_dir):
    path = fixtures_dir / DOC_EXAMPLE
    ds = _read(path)
    a = ds.annotations
    assert ds.category_names == ["car", "traffic_line", "wheel", "plate", "s1"]
    # plate: xtl 797.33 ytl 870.92 xbr 965.52 ybr 928.94 -> w 168.19, h 58.02
    plate = a[a["category"] == "plate"].iloc[0]
    np.testing.assert_allclose([plate.x, plate.y, plate.w, plate.h], [797.33, 870.92, 168.19, 58.02], atol=1e-9)
    assert plate.attributes == {"occluded": False, "z_order": 4}
    # skeleton s1: nodes 1, 2, 3 at (54.47, 94.81), (68.02, 162.34), (125.87, 62.85), all visible;
    # svg edges 2->3 and 1->2 (node ids 1..3 carry label names "1".."3")
    s1 = ds.categories.set_index("name").loc["s1"]
    assert s1.keypoints == ["1", "2", "3"] and s1.skeleton == [[2, 3], [1, 2]]
    kp = a[a["category"] == "s1"].iloc[0]
    assert kp.keypoints.tolist() == [[54.47, 94.81, 2.0], [68.02, 162.34, 2.0], [125.87, 62.85, 2.0]]
    np.testing.assert_allclose([kp.x, kp.y, kp.w, kp.h], [54.47, 62.85, 125.87 - 54.47, 162.34 - 62.85])
    assert ds.images.loc[0, "attributes"] == {"tags": ["good_frame"]}
    # 2 polylines + 1 points dropped; box, polygon, skeleton, mask kept
    assert len(ds) == 4
    assert ds.report.dropped_counts() == {"dropped.unsupported": 3}
    assert sorted(ds.report.drops["source"]) == [f"{path}:85", f"{path}:87", f"{path}:89"]
    _balanced(ds)


def test_for_images_fixture(fixtures_dir, self_ap):
    path = fixtures_dir / FOR_IMAGES / "train.xml"
    assert cvat.detect(path) == 0.95
    ds = _read(path)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["img0.jpg", 8, 8],
                                                                           ["img1.jpg", 10, 10]]
    # images/ beside the XML: the local paths are found
    assert ds.images["path"].tolist() == [str(path.parent / "images" / "img0.jpg"),
                                          str(path.parent / "images" / "img1.jpg")]
    assert ds.category_names == ["label1", "label2", "skeleton"]
    skel = ds.categories.set_index("name").loc["skeleton"]
    # svg: line data-node-from="3" data-node-to="2", then from 1 to 4
    assert skel.keypoints == ["1", "2", "3", "4"] and skel.skeleton == [[3, 2], [1, 4]]
    a = ds.annotations
    # box xtl=0 ytl=2 xbr=4 ybr=4 -> [0, 2, 4, 2]
    box = a.iloc[0]
    assert (box.category, [box.x, box.y, box.w, box.h]) == ("label1", [0.0, 2.0, 4.0, 2.0])
    assert box.attributes == {"occluded": True, "z_order": 1, "a1": True, "a2": "v3", "a3": "0003", "a4": 2.4}
    # img0 skeleton: node 1 outside -> (0, 0, 0); nodes 2..4 at (2,2) (3,3) (4,4) -> bbox [2, 2, 2, 2]
    sk0 = a[(a["category"] == "skeleton") & (a["image"] == 0)].iloc[0]
    assert sk0.keypoints.tolist() == [[0, 0, 0], [2, 2, 2], [3, 3, 2], [4, 4, 2]]
    assert [sk0.x, sk0.y, sk0.w, sk0.h] == [2.0, 2.0, 2.0, 2.0]
    # img1 skeleton: node 3 outside; visible (3,3) (4,4) (6,6) -> bbox [3, 3, 3, 3]
    sk1 = a[(a["category"] == "skeleton") & (a["image"] == 1)].iloc[0]
    assert sk1.keypoints.tolist() == [[3, 3, 2], [4, 4, 2], [0, 0, 0], [6, 6, 2]]
    assert [sk1.x, sk1.y, sk1.w, sk1.h] == [3.0, 3.0, 3.0, 3.0]
    # the label="" polyline and polygon, and the label2 points, are accounted for
    assert ds.report.read == 6
    assert ds.report.dropped_counts() == {"dropped.unknown_category": 2, "dropped.unsupported": 1}
    assert sorted(ds.report.drops["source"]) == [f"{path}:103", f"{path}:104", f"{path}:90"]
    _balanced(ds)
    coco = to_coco(ds)
    assert [a["num_keypoints"] for a in coco["annotations"] if "keypoints" in a] == [3, 3]
    _ok(coco, self_ap, "bbox")


def test_points_as_keypoints(fixtures_dir, self_ap):
    ds = _read(fixtures_dir / FOR_IMAGES / "train.xml", cvat_points="keypoints")
    a = ds.annotations
    pts = a[a["category"] == "label2"].iloc[0]
    # points="1,2;3,4;5,6" -> three visible keypoints, bbox x 1..5, y 2..6
    assert pts.keypoints.tolist() == [[1, 2, 2], [3, 4, 2], [5, 6, 2]]
    assert [pts.x, pts.y, pts.w, pts.h] == [1.0, 2.0, 4.0, 4.0]
    assert ds.categories.set_index("name").loc["label2"].keypoints == ["1", "2", "3"]
    assert ds.report.dropped_counts() == {"dropped.unknown_category": 2}
    _balanced(ds)
    _ok(to_coco(ds), self_ap, "bbox")


def test_folder_input(fixtures_dir):
    folder = fixtures_dir / FOR_IMAGES
    assert cvat.detect(folder) == 0.9
    ds = _read(folder)
    assert ds.images["file_name"].tolist() == ["img0.jpg", "img1.jpg"] and len(ds) == 3


def test_task_export_with_empty_labels(fixtures_dir, self_ap):
    path = fixtures_dir / TASK
    ds = _read(path)
    # only the label1 box (0,2)-(4,4) has a label and an area
    assert ds.boxes.tolist() == [[0.0, 2.0, 4.0, 2.0]]
    assert ds.report.dropped_counts() == {"dropped.unknown_category": 2, "dropped.unsupported": 1}
    _balanced(ds)
    _ok(to_coco(ds), self_ap)


def test_project_export_keeps_subsets_apart(fixtures_dir, self_ap):
    ds = _read(fixtures_dir / PROJECT)
    im = ds.images
    # ids 0 and 1 repeat in each subset: six images, named <subset>/<name> as CVAT lays out their files
    assert im["file_name"].tolist() == ["Test/img0.jpg", "Test/img1.jpg", "Train/img0.jpg", "Train/img1.jpg",
                                        "Validation/img0.jpg", "Validation/img1.jpg"]
    [note] = [d for d in ds.report.diagnostics if d.code == "image.by_subset"]
    assert note.message == ("a project export of the subsets Test, Train, Validation: each image is named "
                            "<subset>/<name> (the same name may be a different picture in each subset)")
    assert [a["subset"] for a in im["attributes"]] == ["Test", "Test", "Train", "Train", "Validation", "Validation"]
    assert {a["task_id"] for a in im["attributes"]} == {39}
    assert ds.category_names == ["label1", "label2"]
    a = ds.annotations
    assert a["image"].tolist() == [0, 1, 2, 3, 4, 5]
    # polygon 1,2;3,4;6,5 -> enclosing box x 1..6, y 2..5
    assert a[a["image"] == 3].iloc[0][["x", "y", "w", "h"]].tolist() == [1.0, 2.0, 5.0, 3.0]
    assert ds.report.dropped_counts() == {"dropped.unsupported": 6}
    _balanced(ds)
    _ok(to_coco(ds), self_ap, "bbox", "segm")


def test_video_fixture(fixtures_dir, self_ap):
    path = fixtures_dir / FOR_VIDEO
    ds = _read(path)
    # start_frame 10, stop_frame 19, step=3 -> frames 10, 13, 16, 19 of original_size 25x20
    assert ds.images["file_name"].tolist() == ["frame_000010.png", "frame_000013.png", "frame_000016.png",
                                               "frame_000019.png"]
    assert set(ds.images["width"]) == {25} and set(ds.images["height"]) == {20}
    assert ds.category_names == ["klhg", "z U k", "II", "skeleton"]
    a = ds.annotations
    # track 0 (II): box 3,4 -> 10,5 at frame 10; outside from 13 on -> one box [3, 4, 7, 1]
    boxes = a[a["category"] == "II"]
    assert len(boxes) == 1
    b = boxes.iloc[0]
    assert (b.image, [b.x, b.y, b.w, b.h]) == (0, [3.0, 4.0, 7.0, 1.0])
    assert b.attributes == {"track_id": 0, "keyframe": True, "occluded": True, "z_order": 0}
    # track 3 (skeleton) on every frame 10..19 (last listed at 16, repeated to the end of the task);
    # node 3 is outside from frame 13
    sk = a[a["category"] == "skeleton"]
    assert sk["image"].tolist() == [0, 1, 2, 3]
    assert sk.iloc[0].keypoints.tolist() == [[48.8, 111.77, 2], [48.8, 156.28, 2], [83.27, 106.61, 2],
                                             [89.11, 159.91, 2]]
    assert sk.iloc[1].keypoints.tolist() == [[48.8, 111.77, 2], [48.8, 156.28, 2], [0, 0, 0], [89.11, 159.91, 2]]
    assert [r["keyframe"] for r in sk["attributes"]] == [True, False, False, False]
    # the points track (frame 10) and the polyline track (frame 13) are not areas
    assert ds.report.dropped_counts() == {"dropped.unsupported": 2}
    assert ds.report.read == 7
    _balanced(ds)
    # the fixture's skeleton lies outside its 25x20 frames (clipping is a later step): check the boxes here
    coco = to_coco(ds.filter((a["category"] == "II").to_numpy()))
    _ok(coco, self_ap)


# ----------------------------------------------------------------------------------------------- video
VIDEO = """<annotations><version>1.1</version><meta><task><size>7</size><mode>interpolation</mode>
<start_frame>0</start_frame><stop_frame>12</stop_frame><frame_filter>step=2</frame_filter>
<labels><label><name>car</name></label><label><name>road</name></label></labels>
<original_size><width>100</width><height>60</height></original_size></task></meta>
<track id="7" label="car" source="manual">
<box frame="0" outside="0" occluded="0" keyframe="1" xtl="10" ytl="10" xbr="30" ybr="20" z_order="0"/>
<box frame="4" outside="0" occluded="1" keyframe="1" xtl="30" ytl="20" xbr="50" ybr="40" z_order="0"/>
<box frame="6" outside="1" occluded="0" keyframe="1" xtl="30" ytl="20" xbr="50" ybr="40" z_order="0"/>
<box frame="10" outside="0" occluded="0" keyframe="1" xtl="60" ytl="30" xbr="80" ybr="50" z_order="0"/>
</track>
<track id="8" label="car">
<box frame="0" outside="0" occluded="0" keyframe="1" xtl="10" ytl="10" xbr="30" ybr="20" rotation="350"/>
<box frame="4" outside="0" occluded="0" keyframe="1" xtl="10" ytl="10" xbr="30" ybr="20" rotation="30"/>
<box frame="6" outside="1" occluded="0" keyframe="1" xtl="10" ytl="10" xbr="30" ybr="20" rotation="30"/>
</track>
<track id="9" label="road">
<polygon frame="0" outside="0" occluded="0" keyframe="1" points="0,0;10,0;0,10"/>
<polygon frame="4" outside="1" occluded="0" keyframe="1" points="4,4;14,4;4,14"/>
</track>
<tag frame="2" label="night"/>
</annotations>
"""


def test_video_interpolation_outside_gap_and_reappearance(tmp_path, self_ap):
    p = _write(tmp_path, VIDEO)
    ds = _read(p, frame_pattern="clip/{frame:04d}.jpg")
    # frames 0, 2, ..., 12 (step 2, stop 12)
    assert ds.images["file_name"].tolist() == [f"clip/{f:04d}.jpg" for f in range(0, 13, 2)]
    assert ds.images.loc[1, "attributes"] == {"frame": 2, "tags": ["night"]}
    a = ds.annotations
    t7 = a[[r.get("track_id") == 7 for r in a["attributes"]]]
    frames = [int(ds.images.loc[i, "attributes"]["frame"]) for i in t7["image"]]
    # visible on 0, 2 (interpolated), 4; outside on 6 and 8 (nothing written); back at 10, repeated on 12
    assert frames == [0, 2, 4, 10, 12]
    # frame 2 is halfway from 10,10-30,20 to 30,20-50,40: 20,15 -> 40,30
    mid = t7.iloc[1]
    assert [mid.x, mid.y, mid.w, mid.h] == [20.0, 15.0, 20.0, 15.0]
    assert [r["keyframe"] for r in t7["attributes"]] == [True, False, True, True, False]
    assert t7.iloc[2].attributes["occluded"] is True and t7.iloc[0].attributes["source"] == "manual"
    assert [t7.iloc[3].x, t7.iloc[4].x] == [60.0, 60.0]
    # track 8: rotation 350 -> 30 takes the short way (+40), so at frame 2 it is 10 degrees, not 190
    t8 = a[[r.get("track_id") == 8 for r in a["attributes"]]]
    assert [r.get("rotation") for r in t8["attributes"]] == [350.0, 10.0, 30.0]
    # track 9: triangle 0,0;10,0;0,10 moving to 4,4;14,4;4,14 (outside at 4): at frame 2 -> 2,2;12,2;2,12
    t9 = a[a["category"] == "road"]
    assert len(t9) == 2
    assert t9.iloc[1].segmentation[0].tolist() == [2.0, 2.0, 12.0, 2.0, 2.0, 12.0]
    assert ds.report.read == len(ds) == 10
    _balanced(ds)
    _ok(to_coco(ds), self_ap, "bbox", "segm")


def test_video_shape_on_a_frame_the_task_lacks(tmp_path):
    # frames are 0, 2, 4, ... : a keyframe at 3 names no image; frame 4 lies between 3 and 5 and is written
    xml = VIDEO.replace('<tag frame="2" label="night"/>', '<track id="11" label="car">'
                        '<box frame="3" outside="0" occluded="0" keyframe="1" xtl="0" ytl="0" xbr="4" ybr="4"/>'
                        '<box frame="5" outside="1" occluded="0" keyframe="1" xtl="2" ytl="2" xbr="6" ybr="6"/>'
                        '</track>')
    p = _write(tmp_path, xml)
    ds = _read(p)
    t11 = ds.annotations[[r.get("track_id") == 11 for r in ds.annotations["attributes"]]]
    # frame 4: halfway from 0,0-4,4 to 2,2-6,6 -> 1,1-5,5
    assert t11[["x", "y", "w", "h"]].values.tolist() == [[1.0, 1.0, 4.0, 4.0]]
    assert ds.report.dropped_counts() == {"dropped.no_image": 1}
    # the new track replaces the <tag> on line 20 of VIDEO, all on that one line
    assert ds.report.drops.loc[0, "source"] == f"{p}:20"
    _balanced(ds)


def test_video_without_stop_frame_ends_at_the_last_named_frame(tmp_path):
    xml = VIDEO.replace("<size>7</size>", "").replace("<stop_frame>12</stop_frame>", "")
    ds = _read(_write(tmp_path, xml))
    # the last frame any track names is 10: frames 0..10 step 2
    assert ds.images["file_name"].tolist() == [f"frame_{f:06d}.png" for f in range(0, 11, 2)]


# ----------------------------------------------------------------------------------------------- errors
def test_billion_laughs_refused(tmp_path):
    p = _write(tmp_path, '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
                         '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>\n'
                         f'{HEAD}<image id="0" name="&lol2;" width="2" height="2"/></annotations>')
    with pytest.raises(ReadError) as e:
        _read(p)
    assert str(e.value) == f"{p}:2: DOCTYPE / DTD refused (entities and DTDs are not allowed in CVAT XML)"


def test_xxe_refused(tmp_path):
    p = _write(tmp_path, '<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
                         f'{HEAD}<image id="0" name="&xxe;" width="2" height="2"/></annotations>')
    with pytest.raises(ReadError, match="DOCTYPE / DTD refused") as e:
        _read(p)
    assert e.value.file == str(p)
    # an entity used without any declaration is refused by the parser too
    q = _write(tmp_path, f'{HEAD}<image id="0" name="&xxe;" width="2" height="2"/></annotations>', "b.xml")
    with pytest.raises(ReadError, match="undefined entity"):
        _read(q)


@pytest.mark.parametrize(("body", "message"), [
    ('<box label="car" xtl="x" ytl="0" xbr="1" ybr="1"/>', "<box>: bad value: could not convert string to float: 'x'"),
    ('<box label="car" ytl="0" xbr="1" ybr="1"/>', "<box>: missing attribute 'xtl'"),
    ('<polygon label="car" points="1,2;3"/>', "<polygon>: points '1,2;3' has an odd number of coordinates"),
    ('<mask label="car" rle="1, 2" left="0" top="0" width="2" height="2"/>',
     "<mask>: bad value: CVAT RLE runs cover 3 pixels, not width*height = 2*2 = 4"),
])
def test_a_malformed_shape_is_dropped_at_its_line_and_the_rest_converts(tmp_path, body, message):
    good = '<box label="car" xtl="0" ytl="0" xbr="1" ybr="2"/>'
    p = _write(tmp_path, _images_xml(body + "\n" + good))
    ds = _read(p)
    assert ds.report.drops[["reason", "category", "source", "message"]].values.tolist() == [
        ["dropped.invalid", "car", f"{p}:3", message]]
    assert ds.annotations[["x", "y", "w", "h"]].values.tolist() == [[0.0, 0.0, 1.0, 2.0]]  # the next shape read
    assert ds.report.read == 2


def test_unsafe_image_name_and_wrong_root(tmp_path):
    p = _write(tmp_path, f'{HEAD}\n<image id="0" name="../../etc/passwd" width="2" height="2"/></annotations>')
    with pytest.raises(ReadError, match=r":2#image: image name '../../etc/passwd' is unsafe"):
        _read(p)
    q = _write(tmp_path, "<annotation><filename>a.jpg</filename></annotation>", "voc.xml")
    assert cvat.detect(q) == 0.0
    with pytest.raises(ReadError, match="the root element is <annotation>, expected <annotations>"):
        _read(q)


def test_a_malformed_keyframe_drops_its_track_and_the_rest_converts(tmp_path):
    # track 0's second keyframe has xtl="abc": the track cannot be interpolated, so it is dropped at its line (7);
    # track 1 is read: box 50,10 -> 60,20 on frames 0 and 1, outside from frame 2
    p = _write(tmp_path, """<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><size>3</size><mode>interpolation</mode><start_frame>0</start_frame><stop_frame>2</stop_frame>
  <original_size><width>100</width><height>80</height></original_size>
  <labels><label><name>car</name></label></labels></task></meta>
  <track id="0" label="car">
    <box frame="0" xtl="10" ytl="10" xbr="20" ybr="20" outside="0" occluded="0" keyframe="1"/>
    <box frame="2" xtl="abc" ytl="10" xbr="30" ybr="20" outside="0" occluded="0" keyframe="1"/>
  </track>
  <track id="1" label="car">
    <box frame="0" xtl="50" ytl="10" xbr="60" ybr="20" outside="0" occluded="0" keyframe="1"/>
    <box frame="2" xtl="50" ytl="10" xbr="60" ybr="20" outside="1" occluded="0" keyframe="1"/>
  </track>
</annotations>
""")
    ds = _read(p)
    assert ds.annotations[["image", "x", "y", "w", "h"]].values.tolist() == [[0, 50, 10, 10, 10], [1, 50, 10, 10, 10]]
    assert ds.report.drops[["reason", "category", "source", "message"]].values.tolist() == [
        ["dropped.invalid", "car", f"{p}:7", "track 0: <box> at line 9: bad value: could not convert string to "
                                            "float: 'abc'; the track is dropped (its frames cannot be interpolated)"]]
