"""Label Studio adapter and brush RLE: expected values computed by hand from the inputs (see comments)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from prelabel.adapters import labelstudio as ls
from prelabel.adapters.base import ReadOptions
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import ReadError, UsageError
from prelabel.geometry import (
    ls_rle_decode,
    ls_rle_encode,
    ls_rle_pack,
    ls_rle_unpack,
    rle_decode,
    rotated_box_topleft,
)
from prelabel.model import Dataset
from prelabel.report import Report

LS = "label_studio/HumanSignal__label-studio-sdk/tests/custom/converter/data"


def _read(path: Path, **opts: Any) -> Dataset:
    return ls.read(path, options=ReadOptions(**opts), report=Report())


def _write(tmp_path: Path, doc: Any, name: str = "export.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def _coco_ok(ds: Dataset, self_ap: Any, iou: str = "bbox") -> dict[str, Any]:
    coco = to_coco(ds)
    res = validate(coco)
    assert res.ok, res.errors
    assert self_ap(coco, iou) == pytest.approx(1.0)
    return coco


def _rect(rid: str, x: float, y: float, w: float, h: float, label: str, *, ow: int | None = 200,
          oh: int | None = 100, rotation: float = 0, **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                         "value": {"x": x, "y": y, "width": w, "height": h, "rotation": rotation,
                                   "rectanglelabels": [label]}, **extra}
    if ow is not None:
        r["original_width"], r["original_height"] = ow, oh
    return r


def _task(tid: int, results: list[dict[str, Any]], *, image: str = "a.jpg", **extra: Any) -> dict[str, Any]:
    return {"id": tid, "data": {"image": image},
            "annotations": [{"id": 100 + tid, "completed_by": 1, "result": results}], **extra}


# ============================================================================================ brush RLE
def test_brush_rle_sdk_vector():
    # the label-studio-sdk test vector: 18 values, 8-bit words, run sizes 3/4/8/16
    raw = [0, 0, 0, 18, 57, 27, 252, 96, 32, 1, 0, 6, 0, 40, 0, 192, 3, 128, 17, 56, 32]
    assert ls_rle_unpack(raw).tolist() == [1, 1, 1, 1, 2, 3, 5, 6, 7, 8, 4, 4, 4, 4, 4, 4, 4, 4]


# The 2x3 mask [[0,255,255],[0,0,255]] as the sdk writes it (RGBA: 4 x 0, 8 x 255, 8 x 0, 4 x 255). By hand:
#   0,0,0,24            32-bit count = 24 values (2*3 pixels * 4 channels)
#   57,27,252 = 00111 0010 0011 0111 1111 | 100..   word size 8, run fields of 3/4/8/16 bits
#   run 1: 1 00 011 00000000   -> 4 x 0      run 2: 1 00 111 11111111 -> 8 x 255
#   run 3: 1 00 111 00000000   -> 8 x 0      run 4: 1 00 011 11111111 -> 4 x 255, then 3 padding bits
SDK_2X3 = [0, 0, 0, 24, 57, 27, 252, 96, 19, 255, 206, 1, 31, 248]


def test_brush_decode_pixel_by_pixel():
    m = ls_rle_decode(SDK_2X3, 2, 3)
    assert m.dtype == np.uint8 and m.shape == (2, 3)
    assert m.tolist() == [[0, 255, 255], [0, 0, 255]]


def test_brush_encode_round_trips():
    rng = np.random.default_rng(7)
    for shape in [(1, 1), (2, 3), (17, 5), (64, 300)]:
        m = (rng.random(shape) > 0.6).astype(np.uint8) * 255
        assert np.array_equal(ls_rle_decode(ls_rle_encode(m), *shape), m)
    # runs longer than one 16-bit length field (2**16 values) are split
    big = np.zeros((300, 300), dtype=np.uint8)
    big[100:, :] = 3
    assert np.array_equal(ls_rle_decode(ls_rle_encode(big), 300, 300), big)
    # a boolean mask is painted with alpha 255, as Label Studio does
    assert ls_rle_decode(ls_rle_encode(np.array([[True, False]])), 1, 2).tolist() == [[255, 0]]
    assert ls_rle_unpack(ls_rle_pack([7] * 70000 + [0, 1])).tolist() == [7] * 70000 + [0, 1]


def test_brush_rle_malformed():
    with pytest.raises(ValueError, match="holds 24 values, not 2 x 2 x 4 = 16"):
        ls_rle_decode(SDK_2X3, 2, 2)
    with pytest.raises(ValueError, match="truncated"):
        ls_rle_unpack(SDK_2X3[:10])
    with pytest.raises(ValueError, match="0..255"):
        ls_rle_unpack([0, 0, 0, 1, 300, 0, 0])


# ============================================================================================ detect
def test_detect_fixtures_and_coco(fixtures_dir, tmp_path):
    d = fixtures_dir / LS
    for f in ["test_export_yolo/data.json", "test_export_yolo/data_obb.json", "test_export_coco/data.json"]:
        assert ls.detect(d / f) == 1.0
    coco = _write(tmp_path, {"images": [], "annotations": [], "categories": []}, "coco.json")
    assert ls.detect(coco) == 0.0
    assert ls.detect(d / "test_export_yolo/label_config.xml") == 0.0
    jmin = _write(tmp_path, [{"image": "a.jpg", "id": 1, "label": [{"x": 1, "y": 1, "width": 1, "height": 1,
                  "rectanglelabels": ["a"], "original_width": 10, "original_height": 10}],
                  "annotator": 1, "annotation_id": 2}], "min.json")
    assert ls.detect(jmin) == 0.9


def test_detect_large_file_peeks(tmp_path):
    # over 64 KiB: judged from its first bytes, never parsed
    tasks = [_task(i, [_rect(f"r{i}", 1, 1, 5, 5, "a")]) for i in range(600)]
    p = _write(tmp_path, tasks)
    assert p.stat().st_size > 64 * 1024
    assert ls.detect(p) == 1.0
    big_coco = _write(tmp_path, {"images": [{"id": i, "file_name": f"{i}.jpg"} for i in range(5000)]}, "c.json")
    assert ls.detect(big_coco) == 0.0


# ============================================================================================ fixtures
def test_rectangles_2800_first_latest_all(fixtures_dir, self_ap):
    p = fixtures_dir / LS / "test_export_yolo/data.json"
    ds = _read(p)
    # task 1 has annotation 1 (user 2) and annotation 2 (user 1), task 2 one annotation: 2 + 2 + 2 boxes
    assert len(ds) == 6 and ds.report.read == 6
    assert ds.images["file_name"].tolist() == ["image1", "image2"]  # data.image "/image1": host path
    assert ds.images["width"].tolist() == [2800, 2800]
    assert ds.images.loc[0, "attributes"] == {"url": "/image1", "task_id": 1}
    # first box: x 37.15846994535519 % of 2800 = 1040.4371584699453, y 70.67395264116576 % = 1978.8706739526413,
    #            w 4.189435336976321 % = 117.30418943533699, h 4.735883424408015 % = 132.60473588342442
    assert ds.boxes[0] == pytest.approx([1040.4371584699453, 1978.8706739526413, 117.30418943533699,
                                         132.60473588342442])
    assert ds.annotations.loc[0, "attributes"] == {"annotation_id": 1, "completed_by": 2}
    assert ds.annotations.loc[0, "segmentation"] is None
    assert ds.annotations["src_line"].tolist() == [1, 1, 1, 1, 2, 2]
    assert ds.category_names == ["parasites", "white"]
    _coco_ok(ds, self_ap)

    first = _read(p, ls_annotator="first")
    assert [a["annotation_id"] for a in first.annotations["attributes"]] == [1, 1, 3, 3]
    # latest by updated_at: annotation 2 (21:05:03) is later than annotation 1 (21:04:40)
    latest = _read(p, ls_annotator="latest")
    assert [a["annotation_id"] for a in latest.annotations["attributes"]] == [2, 2, 3, 3]
    # annotation 2's second box: x 49.18032786885246 % of 2800 = 1377.0491803278689
    assert latest.boxes[1][0] == pytest.approx(1377.0491803278689)


def test_rotated_fixture_non_square(fixtures_dir, self_ap):
    ds = _read(fixtures_dir / LS / "test_export_yolo/data_obb.json")
    assert len(ds) == 25 and ds.images["width"].tolist() == [597, 433, 716]
    assert ds.category_names == ["Butterfly", "butterfly"]  # the case mismatch is kept for reconciliation
    # task 2 (433 x 768), rotation 345.1381651311527: percent -> pixels first, then turn about the top-left
    row = ds.annotations[ds.annotations["image"] == 1].iloc[0]
    x, y = 5.695220963642262 / 100 * 433, 43.59434330542485 / 100 * 768
    w, h = 73.84200723054623 / 100 * 433, 24.43625178984779 / 100 * 768
    a = math.radians(345.1381651311527)
    c, s = math.cos(a), math.sin(a)
    corners = [x, y, x + w * c, y + w * s, x + w * c - h * s, y + w * s + h * c, x - h * s, y + h * c]
    assert row["segmentation"][0] == pytest.approx(corners)
    xs, ys = corners[0::2], corners[1::2]
    assert [row.x, row.y, row.w, row.h] == pytest.approx([min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)])
    assert row["attributes"]["rotation"] == pytest.approx(345.1381651311527)
    _coco_ok(ds, self_ap)


def test_polygons_fixture(fixtures_dir, self_ap):
    ds = _read(fixtures_dir / LS / "test_export_yolo/data_polygons.json")
    seg = ds.annotations.loc[0, "segmentation"][0]
    assert seg.size == 74  # 37 points
    raw = json.loads((fixtures_dir / LS / "test_export_yolo/data_polygons.json").read_text())
    p0 = raw[0]["annotations"][0]["result"][0]["value"]["points"][0]
    # each point: x % of 640, y % of 426
    assert seg[:2].tolist() == pytest.approx([p0[0] * 6.4, p0[1] * 4.26])
    _coco_ok(ds, self_ap, "segm")


def test_export_coco_fixture_keypoints_without_parent(fixtures_dir, self_ap):
    ds = _read(fixtures_dir / LS / "test_export_coco/data.json")
    assert ds.category_names == ["rectangle_label", "polygon_label"]
    # 500 x 320: rectangle x 31.941923774954628*5 = 159.70961887477314, y 4.113475177304964*3.2 = 13.163120567375885,
    #            w 6.352087114337568*5 = 31.76043557168784, h 9.929078014184398*3.2 = 31.773049645390074
    assert ds.boxes[0] == pytest.approx([159.70961887477314, 13.163120567375885, 31.76043557168784,
                                         31.773049645390074])
    # polygon: (41.742..*5, 3.546..*3.2) = (208.7114337568058, 11.347517730496454),
    #          (41.560..*5, 12.198..*3.2) = (207.80399274047188, 39.0354609929078),
    #          (45.372..*5, 12.482..*3.2) = (226.86025408348455, 39.94326241134752)
    assert ds.annotations.loc[1, "segmentation"][0] == pytest.approx(
        [208.7114337568058, 11.347517730496454, 207.80399274047188, 39.0354609929078,
         226.86025408348455, 39.94326241134752])
    assert ds.boxes[1] == pytest.approx([207.80399274047188, 11.347517730496454, 19.05626134301267,
                                         28.595744680851066])
    # the two keypoints have no parentID and no relation: reported, not guessed
    rep = ds.report
    assert rep.read == 4 and rep.dropped_counts() == {"dropped.unsupported": 2}
    drops = rep.drops
    assert drops["category"].tolist() == ["keypoint_label1", "keypoint_label2"]
    assert drops["source"].str.endswith("test_export_coco/data.json:1").all()
    assert "task 175210175, annotation 60205850, keypoint 'keypoint_label1' (region MN4-3s5uh2): no parent " \
           "region (parentID or relation)" in drops["message"][0]
    _coco_ok(ds, self_ap)


def test_keypoints_linked_by_parent_and_relation(fixtures_dir, self_ap, tmp_path):
    p = fixtures_dir / LS / "test_export_yolo/data_keypoints.json"
    ds = _read(p)
    assert ds.images["file_name"].tolist() == ["image1.jpg"]  # /data/upload/18/image1.jpg
    assert len(ds) == 1 and ds.report.read == 1
    cats = ds.categories.set_index("name")
    assert cats.loc["person", "keypoints"] == ["nose", "left_eye", "right_eye"]  # order of first appearance
    # 216 x 174: nose (64.44444444444444 %, 39.290780141843975 %) = (139.2, 68.36595744680851)
    #            left_eye (58.38849487785658, 30.78014184397163) % = (126.11914893617021, 53.557446808510636)
    #            right_eye (70.50039401103231, 32.19858156028369) % = (152.28085106382978, 56.02553191489362)
    kp = ds.annotations.loc[0, "keypoints"]
    assert kp.ravel().tolist() == pytest.approx([139.2, 68.36595744680851, 2, 126.11914893617021, 53.557446808510636,
                                                 2, 152.28085106382978, 56.02553191489362, 2])
    # the person box: 38.849487785658 % of 216 = 83.91489361702128, 7.65957446808511 % of 174 = 13.32765957446809
    assert ds.boxes[0][:2] == pytest.approx([83.91489361702128, 13.32765957446809])
    assert ds.annotations.loc[0, "attributes"]["completed_by"] == "sergei@heartex.test"
    _coco_ok(ds, self_ap)

    # with the label config: the category lists its 17 keypoint names in model_index order
    cfg = fixtures_dir / LS / "test_export_yolo/label_config_keypoints.xml"
    ds = _read(p, extra={"label_config": str(cfg)})
    names = ds.categories.set_index("name").loc["person", "keypoints"]
    assert len(names) == 17 and names[:3] == ["nose", "left_eye", "right_eye"] and names[16] == "right_ankle"
    kp = ds.annotations.loc[0, "keypoints"]
    assert kp.shape == (17, 3) and kp[3:, 2].tolist() == [0.0] * 14
    coco = _coco_ok(ds, self_ap, "keypoints")
    assert coco["annotations"][0]["num_keypoints"] == 3

    # relations alone (no parentID) link the keypoints too
    doc = json.loads(p.read_text())
    for r in doc[0]["annotations"][0]["result"]:
        r.pop("parentID", None)
    ds = _read(_write(tmp_path, doc))
    assert ds.annotations.loc[0, "keypoints"][:, 2].tolist() == [2.0, 2.0, 2.0]


def test_json_min(fixtures_dir, tmp_path, self_ap):
    # JSON-MIN of the json_min fixture's task 87, as convert_to_json_min writes it ("type" is dropped by
    # prettify_result), plus a second annotator's record of the same task
    value = {"closed": True, "points": [[44.44444444444444, 48.25396825396825], [42.53968253968254, 60.317460317460316],
                                        [56.19047619047619, 50.79365079365079]],
             "polygonlabels": ["Airplane"], "original_width": 128, "original_height": 128}
    recs = [{"image": "/data/upload/29/example.png", "id": 87, "label": [value], "annotator": 1,
             "annotation_id": 22, "created_at": "2024-01-30T02:40:43.893565Z",
             "updated_at": "2024-01-30T02:40:43.893578Z", "lead_time": 8.65},
            {"image": "/data/upload/29/example.png", "id": 87, "label": [dict(value, polygonlabels=["Car"])],
             "annotator": "b@x.org", "annotation_id": 23, "created_at": "2024-01-31T00:00:00Z",
             "updated_at": "2024-01-31T00:00:00Z", "lead_time": 2.0}]
    p = _write(tmp_path, recs, "min.json")
    ds = _read(p)
    assert ds.images["file_name"].tolist() == ["example.png"] and ds.images["width"].tolist() == [128]
    assert ds.annotations["category"].tolist() == ["Airplane", "Car"]
    assert ds.annotations["src_line"].tolist() == [1, 2]  # the record index
    # 128 x 128: (44.444..*1.28, 48.253..*1.28) = (56.888888888888886, 61.76507936507936)
    assert ds.annotations.loc[0, "segmentation"][0][:2].tolist() == pytest.approx([56.888888888888886,
                                                                                   61.76507936507936])
    assert ds.annotations.loc[1, "attributes"] == {"annotation_id": 23, "completed_by": "b@x.org"}
    assert _read(p, ls_annotator="latest").annotations["category"].tolist() == ["Car"]
    assert _read(p, ls_annotator="first").annotations["category"].tolist() == ["Airplane"]
    _coco_ok(ds, self_ap, "segm")


# ============================================================================================ synthetic
def test_rotated_rectangle_by_hand(tmp_path, self_ap):
    # image 200 x 100. x 50 %, y 20 %, width 30 %, height 40 % -> pixels x 100, y 20, w 60, h 40 (not a square:
    # turning the percent box would give other corners). Rotation about the top-left corner (100, 20), clockwise:
    #   90 deg (cos 0, sin 1): TL (100, 20), TR (100 + 0, 20 + 60) = (100, 80), BR (100 - 40, 80) = (60, 80),
    #                          BL (100 - 40, 20 + 0) = (60, 20); envelope [60, 20, 40, 60]
    #   30 deg (cos .8660254038, sin .5): TR (100 + 51.96152423, 20 + 30) = (151.96152423, 50),
    #          BR (151.96152423 - 20, 50 + 34.64101615) = (131.96152423, 84.64101615),
    #          BL (100 - 20, 20 + 34.64101615) = (80, 54.64101615); envelope [80, 20, 71.96152423, 64.64101615]
    p = _write(tmp_path, [_task(1, [_rect("a", 50, 20, 30, 40, "car", rotation=90),
                                    _rect("b", 50, 20, 30, 40, "car", rotation=30),
                                    _rect("c", 50, 20, 30, 40, "car", rotation=360)])])
    ds = _read(p)
    a, b, c = (ds.annotations.loc[i] for i in range(3))
    assert a["segmentation"][0].tolist() == pytest.approx([100, 20, 100, 80, 60, 80, 60, 20])
    assert [a.x, a.y, a.w, a.h] == pytest.approx([60, 20, 40, 60])
    assert b["segmentation"][0].tolist() == pytest.approx(
        [100, 20, 151.96152423, 50, 131.96152423, 84.64101615, 80, 54.64101615])
    assert [b.x, b.y, b.w, b.h] == pytest.approx([80, 20, 71.96152423, 64.64101615])
    assert b["segmentation"][0] == pytest.approx(rotated_box_topleft(100, 20, 60, 40, 30))
    assert a["attributes"] == {"annotation_id": 101, "completed_by": 1, "rotation": 90.0}
    # a full turn is no turn: a plain box
    assert c["segmentation"] is None and [c.x, c.y, c.w, c.h] == pytest.approx([100, 20, 60, 40])
    _coco_ok(ds, self_ap)


def test_brush_mask_in_a_task(tmp_path, self_ap):
    brush = {"id": "m", "type": "brushlabels", "from_name": "brush", "to_name": "image", "original_width": 3,
             "original_height": 2, "value": {"format": "rle", "rle": SDK_2X3, "brushlabels": ["lesion"]}}
    ds = _read(_write(tmp_path, [_task(1, [brush])]))
    seg = ds.annotations.loc[0, "segmentation"]
    assert seg["size"] == [2, 3]
    # alpha [[0,255,255],[0,0,255]] -> mask [[0,1,1],[0,0,1]], pixel by pixel; envelope x 1..3, y 0..2
    assert rle_decode(seg).tolist() == [[0, 1, 1], [0, 0, 1]]
    assert ds.boxes[0].tolist() == [1.0, 0.0, 2.0, 2.0]
    coco = _coco_ok(ds, self_ap, "segm")
    assert coco["annotations"][0]["area"] == 3.0
    # a blob that does not fit its image is a malformed region: dropped at its line, the rest read
    bad = dict(brush, id="b", original_width=4)
    path = _write(tmp_path, [_task(1, [bad, brush])])
    ds = _read(path)
    assert len(ds) == 1 and rle_decode(ds.annotations.loc[0, "segmentation"]).tolist() == [[0, 1, 1], [0, 0, 1]]
    drop = ds.report.drops.iloc[0].to_dict()
    assert (drop["reason"], drop["category"], drop["source"]) == ("dropped.invalid", "lesion", f"{path}:1")
    assert drop["message"].startswith("task 1, annotation 101, region b: brush RLE holds 24 values")


def test_ellipse_and_per_region_classification(tmp_path, self_ap):
    # 200 x 100: centre (50 %, 50 %) = (100, 50), radiusX 10 % of 200 = 20, radiusY 20 % of 100 = 20: a circle of
    # radius 20, whose 64-gon has vertices at 0, 90, 180, 270 deg: envelope [80, 30, 40, 40]
    ell = {"id": "e", "type": "ellipselabels", "original_width": 200, "original_height": 100,
           "value": {"x": 50, "y": 50, "radiusX": 10, "radiusY": 20, "rotation": 0, "ellipselabels": ["cell"]}}
    text = {"id": "e", "type": "textarea", "from_name": "note", "value": {"text": ["round"]}}
    choice = {"id": "q", "type": "choices", "from_name": "quality", "original_width": 200,
              "original_height": 100, "value": {"choices": ["good"]}}
    ds = _read(_write(tmp_path, [_task(1, [ell, text, choice])]))
    assert len(ds) == 1 and ds.report.read == 1
    assert ds.boxes[0] == pytest.approx([80, 30, 40, 40])
    assert len(ds.annotations.loc[0, "segmentation"][0]) == 128
    assert ds.annotations.loc[0, "attributes"]["note"] == ["round"]
    assert ds.images.loc[0, "attributes"]["choices"] == {"quality": ["good"]}
    notes = [d for d in ds.report.diagnostics if d.code == "image.attribute"]
    assert len(notes) == 1 and notes[0].severity == "info"
    _coco_ok(ds, self_ap, "segm")


def test_cancelled_annotation_reported(tmp_path, self_ap):
    task = {"id": 5, "data": {"image": "a.jpg"}, "annotations": [
        {"id": 1, "was_cancelled": True, "result": [_rect("x", 1, 1, 5, 5, "car"), _rect("y", 2, 2, 5, 5, "dog")]},
        {"id": 2, "completed_by": 3, "result": [_rect("z", 10, 10, 5, 5, "car")]}]}
    ds = _read(_write(tmp_path, [task]))
    rep = ds.report
    assert len(ds) == 1 and rep.read == 3
    assert rep.dropped_counts() == {"dropped.cancelled": 2}
    d = rep.drops
    assert d["category"].tolist() == ["car", "dog"]
    assert d["source"].str.endswith("export.json:1").all()
    assert d["message"][0] == "task 5, annotation 1: cancelled by its annotator (region x)"
    rep.set_written(len(ds))
    assert rep.balanced
    _coco_ok(ds, self_ap)


def _pred_task() -> dict[str, Any]:
    return {"id": 9, "data": {"image": "s3://bucket/photos/p.jpg"},
            "annotations": [{"id": 1, "result": [_rect("g", 10, 10, 20, 20, "car")]}],
            "predictions": [{"id": 4, "model_version": "yolo-v8", "score": 0.5,
                             "result": [_rect("p1", 10, 10, 20, 20, "car", score=0.9),
                                        _rect("p2", 50, 50, 10, 10, "dog")]}]}


@pytest.mark.parametrize("select, cats, scores", [
    ("annotations", ["car"], [None]),
    ("predictions", ["car", "dog"], [0.9, 0.5]),  # the region's score, else the prediction's
    ("both", ["car", "car", "dog"], [None, 0.9, 0.5]),
    ("auto", ["car"], [None]),
])
def test_select_annotations_predictions(tmp_path, self_ap, select, cats, scores):
    ds = _read(_write(tmp_path, [_pred_task()]), ls_select=select)
    assert ds.images["file_name"].tolist() == ["photos/p.jpg"]  # the key relative to the bucket
    assert ds.images.loc[0, "attributes"]["url"] == "s3://bucket/photos/p.jpg"
    assert ds.annotations["category"].tolist() == cats
    got = [None if math.isnan(s) else s for s in ds.annotations["score"]]
    assert got == scores
    if select == "predictions":
        assert ds.annotations.loc[0, "attributes"] == {"prediction_id": 4, "model_version": "yolo-v8"}
    _coco_ok(ds, self_ap)


def test_auto_uses_predictions_when_no_annotation(tmp_path):
    t = _pred_task()
    t["annotations"] = [{"id": 1, "was_cancelled": True, "result": [_rect("g", 10, 10, 20, 20, "car")]}]
    ds = _read(_write(tmp_path, [t, {"data": {"image": "b.jpg"}, "predictions": [
        {"model_version": "m", "result": [_rect("q", 1, 1, 2, 2, "cat")]}]}]))
    assert ds.annotations["category"].tolist() == ["car", "dog", "cat"]
    assert ds.report.dropped_counts() == {"dropped.cancelled": 1}
    assert ds.annotations["score"].isna().tolist() == [False, False, True]


def test_missing_original_size(tmp_path, self_ap):
    task = _task(3, [_rect("r", 10, 20, 50, 50, "car", ow=None)], image="/data/upload/2/0a1b2c3d-pic.png")
    p = _write(tmp_path, [task])
    ds = _read(p)
    assert len(ds) == 0 and len(ds.images) == 0
    assert ds.report.dropped_counts() == {"dropped.no_image": 1}
    assert ds.report.drops["message"][0] == ("task 3: image 'pic.png' has no known size: no original_width/height in the "
                                             "task, and no images root (ReadOptions(images=...)) to read it from; "
                                             "annotation 103 (region r)")
    # with --images: the size comes from the header of images/pic.png (40 x 30)
    root = tmp_path / "images"
    root.mkdir()
    Image.new("RGB", (40, 30)).save(root / "pic.png")
    ds = _read(p, images=root)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["pic.png", 40, 30]]
    assert ds.images.loc[0, "path"] == str(root / "pic.png")
    # x 10 % of 40 = 4, y 20 % of 30 = 6, w 50 % of 40 = 20, h 50 % of 30 = 15
    assert ds.boxes[0].tolist() == pytest.approx([4, 6, 20, 15])
    assert [d.code for d in ds.report.diagnostics] == ["image.size_from_header"]
    _coco_ok(ds, self_ap)
    # --images given but the file is not there
    ds = _read(p, images=tmp_path / "elsewhere")
    assert ds.report.drops["message"][0] == (f"task 3: image 'pic.png' has no known size: no original_width/height in the "
                                             f"task, and no such file under {tmp_path / 'elsewhere'}; annotation 103 "
                                             "(region r)")
    # --images given, and the file there is not an image
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "pic.png").write_text("not an image")
    ds = _read(p, images=tmp_path / "text")
    assert ds.report.drops["message"][0] == ("task 3: image 'pic.png' has no known size: no original_width/height in the "
                                             "task, and its file's header gives none (not an image, or a format not "
                                             "known); annotation 103 (region r)")


def test_image_names():
    assert ls.image_name("/data/upload/3/1a2b3c4d-photo.jpg") == ("photo.jpg", "")
    assert ls.image_name("http://ls:8080/data/upload/3/1a2b3c4d-my%20photo.jpg") == ("my photo.jpg", "")
    assert ls.image_name("/data/local-files/?d=dataset%2Fsub%2Fa.jpg") == ("dataset/sub/a.jpg", "")
    assert ls.image_name("gs://bkt/a/b.png") == ("a/b.png", "")
    assert ls.image_name("https://example.com/img/x.jpg?sig=1") == ("x.jpg", "")
    assert ls.image_name("images/./c.jpg") == ("images/c.jpg", "")
    assert ls.image_name("/data/local-files/?d=../../etc/passwd") == (None, "'..' segment escapes the root")
    assert ls.image_name("C:\\data\\a.jpg") == (None, "absolute path")
    assert ls.image_name("data:image/png;base64,AAAA")[0] is None


def test_unsafe_image_name_skips_the_task(tmp_path):
    p = _write(tmp_path, [_task(1, [_rect("r", 1, 1, 5, 5, "car")], image="/data/local-files/?d=../secret.jpg"),
                          _task(2, [_rect("s", 1, 1, 5, 5, "car")])])
    ds = _read(p)
    assert ds.images["file_name"].tolist() == ["a.jpg"] and len(ds) == 1
    assert ds.report.dropped_counts() == {"dropped.no_image": 1}
    d = ds.report.drops.iloc[0]
    assert d["source"].endswith("export.json:1")
    assert d["message"] == ("task 1: image '/data/local-files/?d=../secret.jpg' is not a usable file name ('..' "
                            "segment escapes the root); task skipped; annotation 101 (region r)")


def test_same_image_in_two_tasks_is_one_image(tmp_path, self_ap):
    p = _write(tmp_path, [_task(1, [_rect("r", 1, 1, 5, 5, "car")]), _task(2, [_rect("s", 10, 10, 5, 5, "car")])])
    ds = _read(p)
    assert ds.images["file_name"].tolist() == ["a.jpg"] and ds.annotations["image"].tolist() == [0, 0]
    assert ds.images.loc[0, "attributes"]["task_ids"] == [1, 2]
    assert [d.code for d in ds.report.diagnostics] == ["image.merged"]
    _coco_ok(ds, self_ap)


def test_options_are_checked(tmp_path):
    p = _write(tmp_path, [_task(1, [])])
    with pytest.raises(UsageError, match="ls_select must be one of annotations, predictions, both, auto"):
        _read(p, ls_select="gt")
    with pytest.raises(UsageError, match="ls_annotator must be one of first, latest, all"):
        _read(p, ls_annotator="best")


# ============================================================================================ robustness
@pytest.mark.parametrize("content, message", [
    ("42", "export.json: expected a JSON list of tasks (or one task object), got int"),
    ("[1]", "export.json:1: task must be an object, got int"),
    ("[{\"id\": 4, \"data\": \"a.jpg\", \"annotations\": []}]", "export.json:1#task=4: 'data' must be an object"),
    ("[{\"id\": 4, \"data\": {\"image\": \"a.jpg\"}", "export.json: not valid JSON"),
])
def test_malformed_files(tmp_path, content, message):
    p = tmp_path / "export.json"
    p.write_text(content)
    with pytest.raises(ReadError) as e:
        _read(p)
    assert str(e.value).startswith(f"{tmp_path}/{message}")


def test_a_malformed_region_is_dropped_at_its_task(tmp_path):
    # one malformed region never stops the file: it is dropped at its task's line, saying what is wrong
    ok = _task(1, [_rect("r", 1, 1, 5, 5, "car")])
    bad = _task(7, [_rect("r", "12", 1, 5, 5, "car")])
    path = _write(tmp_path, [ok, bad])
    ds = _read(path)
    assert len(ds) == 1 and ds.report.read == 2
    assert ds.report.drops.values.tolist() == [
        ["dropped.invalid", "car", f"{path}:2",
         "'car' region: coordinates and original_width/height must be numbers, got '12'"]]
    no_x = _task(8, [_rect("r", 1, 1, 5, 5, "car")])
    del no_x["annotations"][0]["result"][0]["value"]["x"]
    path = _write(tmp_path, [no_x, ok])
    ds = _read(path)
    assert len(ds) == 1 and ds.report.drops.values.tolist() == [
        ["dropped.invalid", "car", f"{path}:1", "task 8, annotation 108, region r: missing field 'x'"]]
    p = tmp_path / "nan.json"
    p.write_text(json.dumps([ok, _task(9, [_rect("r", 1, 1, 5, 5, "car")])]).replace('"x": 1,', '"x": NaN,', 2))
    ds = _read(p)
    assert len(ds) == 0 and ds.report.drops.values.tolist() == [
        ["dropped.nonfinite", "car", f"{p}:{line}", "'car' region: coordinates must be finite numbers (NaN or "
                                                    "Infinity found)"] for line in (1, 2)]
    poly = {"id": "p", "type": "polygonlabels", "original_width": 10, "original_height": 10,
            "value": {"points": [[1, 2], [3]], "polygonlabels": ["x"]}}
    path = _write(tmp_path, [_task(3, [poly]), ok])
    ds = _read(path)
    assert len(ds) == 1 and ds.report.drops.values.tolist() == [
        ["dropped.invalid", "x", f"{path}:1",
         "task 3, annotation 103, region p: value.points must be a list of [x, y] number pairs"]]


def test_unsupported_results_are_reported(tmp_path):
    text_span = {"id": "t", "type": "labels", "from_name": "ner", "value": {"start": 0, "end": 4, "labels": ["PER"]}}
    degenerate = {"id": "d", "type": "polygonlabels", "original_width": 10, "original_height": 10,
                  "value": {"points": [[1, 2], [3, 4]], "polygonlabels": ["x"]}}
    ds = _read(_write(tmp_path, [_task(1, [text_span, degenerate, _rect("r", 1, 1, 5, 5, "car")])]))
    assert len(ds) == 1 and ds.report.read == 3
    assert ds.report.dropped_counts() == {"dropped.degenerate": 1, "dropped.unsupported": 1}
    msgs = sorted(ds.report.drops["message"])
    assert msgs == ["task 1, annotation 101, region d: a polygon of 2 point(s) (3 needed)",
                    "task 1, annotation 101, region t: a 'labels' result is not an image object"]


def test_folder_label_config_and_image_rotation(fixtures_dir, tmp_path, self_ap):
    d = fixtures_dir / LS / "test_export_yolo"
    # the label config gives the category order, even for a label no region uses
    ds = _read(d / "data_polygons.json", extra={"label_config": str(d / "label_config_polygons.xml")})
    assert ds.category_names == ["Airplane", "Car"]
    # a folder: its .json files in name order, each row pointing at its own file
    (tmp_path / "b.json").write_text(json.dumps([_task(2, [_rect("r", 10, 10, 5, 5, "car")], image="b.jpg")]))
    rotated = _task(1, [_rect("r", 10, 10, 5, 5, "dog", image_rotation=90)], image="a.jpg")
    (tmp_path / "a.json").write_text(json.dumps([rotated]))
    ds = _read(tmp_path)
    assert ds.images["file_name"].tolist() == ["a.jpg", "b.jpg"]
    assert [Path(f).name for f in ds.annotations["src_file"]] == ["a.json", "b.json"]
    notes = [(n.code, n.source) for n in ds.report.diagnostics]
    assert notes == [("coordinates.suspect", f"{tmp_path / 'a.json'}:1")]
    _coco_ok(ds, self_ap)


def test_task_without_image_url_or_size_is_reported(tmp_path):
    ds = _read(_write(tmp_path, [{"id": 1, "data": {"n": 3}, "annotations": []},
                                 {"id": 2, "data": {"image": "x.jpg"}, "annotations": []}]))
    assert len(ds.images) == 0 and ds.report.read == 0
    assert [(n.code, n.message) for n in ds.report.diagnostics] == [
        ("dropped.no_image", "task 1: no image URL in data (keys: n); task skipped"),
        ("dropped.no_image", "task 2: image 'x.jpg' has no known size: no original_width/height in the task, and no "
                             "images root (ReadOptions(images=...)) to read it from; the image is left out")]


def test_cli_label_config_option(fixtures_dir, tmp_path, self_ap):
    from click.testing import CliRunner

    from prelabel.cli import main

    p = fixtures_dir / LS / "test_export_yolo/data_keypoints.json"
    cfg = fixtures_dir / LS / "test_export_yolo/label_config_keypoints.xml"
    out = tmp_path / "o.json"
    r = CliRunner().invoke(main, ["-q", "convert", str(p), "--label-config", str(cfg), "-o", str(out)])
    assert r.exit_code == 0, r.output
    coco = json.loads(out.read_text())
    # the config's 17 keypoint names in model_index order, not the 3 seen in the data
    kps = coco["categories"][0]["keypoints"]
    assert coco["categories"][0]["name"] == "person" and len(kps) == 17
    assert kps[:3] == ["nose", "left_eye", "right_eye"] and kps[16] == "right_ankle"
    assert coco["annotations"][0]["num_keypoints"] == 3
    r = CliRunner().invoke(main, ["-q", "convert", str(p), "-o", str(out)])
    assert json.loads(out.read_text())["categories"][0]["keypoints"] == ["nose", "left_eye", "right_eye"]
    r = CliRunner().invoke(main, ["-q", "convert", str(p), "--label-config", str(tmp_path / "no.xml"),
                                  "-o", str(out)])
    assert r.exit_code == 1
    assert r.stderr.startswith(f"error: {tmp_path / 'no.xml'}: cannot read the label config: ")


def test_every_rectangle_is_read_by_one_path(tmp_path, self_ap):
    # issue 13: a rectangle of type "labels", one on a second object tag showing the same image, and a plain one
    # are all read by the reader's one rectangle branch; their numbers are checked with all rows' at the end.
    # 200 x 100 px: x 10 %, y 20 %, 50 % x 30 % -> [20, 20, 100, 30]; x 0, y 0, 10 % x 10 % -> [0, 0, 20, 10]
    url = "/data/upload/1/0000abcd-a.jpg"
    size = {"original_width": 200, "original_height": 100}
    labels = {"id": "l", "type": "labels", "to_name": "image", **size,
              "value": {"x": 10, "y": 20, "width": 50, "height": 30, "labels": ["cat"]}}
    second = {"id": "s", "type": "rectanglelabels", "to_name": "image2", **size,
              "value": {"x": 0, "y": 0, "width": 10, "height": 10, "rectanglelabels": ["dog"]}}
    bad = {"id": "b", "type": "labels", "to_name": "image", **size,
           "value": {"x": "a", "y": 0, "width": 1, "height": 1, "labels": ["cat"]}}
    other = dict(second, id="o", to_name="image3")
    task = {"id": 1, "data": {"image": url, "image2": url, "image3": "/data/upload/1/0000abcd-b.jpg"},
            "annotations": [{"id": 7, "result": [labels, bad, second, other]}]}
    path = _write(tmp_path, [task])
    ds = _read(path)
    assert ds.annotations["category"].tolist() == ["cat", "dog"]
    assert ds.boxes.tolist() == [[20.0, 20.0, 100.0, 30.0], [0.0, 0.0, 20.0, 10.0]]
    drops = ds.report.drops[["reason", "category", "source", "message"]].to_dict("records")
    assert drops == [
        {"reason": "dropped.unsupported", "category": None, "source": f"{path}:1",
         "message": "task 1, annotation 7, region o: on a second image of the task ('image3'); only the first is read"},
        {"reason": "dropped.invalid", "category": "cat", "source": f"{path}:1",
         "message": "'cat' region: coordinates and original_width/height must be numbers, got 'a'"},
    ]
    assert ds.report.read == 4
    _coco_ok(ds, self_ap)
