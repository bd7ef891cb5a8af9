"""The YOLO adapter, checked against the public fixtures and small synthetic datasets.

Every expected coordinate is worked out by hand in a comment from the label file and the image size.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prelabel.adapters import yolo
from prelabel.adapters.base import ReadOptions
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import ReadError
from prelabel.report import Report

DATUMARO = Path("yolo/cvat-ai__datumaro/tests/assets/yolo_dataset")
DAGSHUB = Path("yolo/DagsHub__dagshub-annotation-converter/tests/fs_import/yolo/res")


def _read(path: Path, **opts):
    rep = Report()
    ds = yolo.read(path, options=ReadOptions(**opts), report=rep)
    return ds, rep


def _boxes(ds) -> list[list[float]]:
    return ds.boxes.tolist()


def _seg(ds, i: int) -> list[float]:
    seg = ds.annotations.loc[i, "segmentation"]
    assert isinstance(seg, list) and len(seg) == 1
    return seg[0].tolist()


def _img(path: Path, w: int, h: int, fmt: str | None = None, **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h)).save(path, fmt, **save)
    return path


def _txt(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _codes(rep: Report) -> list[str]:
    return [d.code for d in rep.diagnostics]


def _coco_ok(ds, self_ap, iou_type: str = "bbox") -> dict:
    coco = to_coco(ds)
    res = validate(coco)
    assert res.ok, res.errors
    if coco["annotations"]:
        assert self_ap(coco, iou_type) == pytest.approx(1.0)
    return coco


# ------------------------------------------------------------------------------------------ datumaro
# 1.jpg is 15x10. The detection label file (every variant) is
#   2 0.133333 0.300000 0.266667 0.200000
#   4 0.266667 0.450000 0.133333 0.300000
# row 1: x = 0.133333*15 - 0.266667*15/2 = 1.999995 - 2.0000025 = -0.0000075, y = 3 - 1 = 2,
#        w = 0.266667*15 = 4.000005, h = 2
# row 2: x = 0.266667*15 - 0.133333*15/2 = 4.000005 - 0.9999975 = 3.0000075, y = 4.5 - 1.5 = 3,
#        w = 1.999995, h = 3
DETECT_BOXES = [[-0.0000075, 2.0, 4.000005, 2.0], [3.0000075, 3.0, 1.999995, 3.0]]
LABELS = [f"label_{i}" for i in range(10)]


@pytest.mark.parametrize("variant,file_name,src", [
    ("yolov8_detection", "train/1.jpg", "labels/train/1.txt"),                      # train: images/train
    ("yolov8_detection_with_list_of_imgs", "train/1.jpg", "labels/train/1.txt"),    # train: [images/train/1.jpg]
    ("yolov8_detection_with_list_of_names", "train/1.jpg", "labels/train/1.txt"),   # names as a list
    ("yolov8_detection_with_subset_txt", "train/1.jpg", "labels/train/1.txt"),      # train.txt: data/images/...
    ("yolo", "obj_train_data/1.jpg", "obj_train_data/1.txt"),                       # Darknet obj.data
])
def test_datumaro_detection_variants(fixtures_dir, self_ap, variant, file_name, src):
    ds, rep = _read(fixtures_dir / DATUMARO / variant)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [[file_name, 15, 10]]
    assert ds.category_names == LABELS
    assert ds.annotations["category"].tolist() == ["label_2", "label_4"]
    assert np.allclose(_boxes(ds), DETECT_BOXES, rtol=0, atol=1e-9)
    assert ds.annotations["src_file"].tolist() == [src, src]
    assert ds.annotations["src_line"].tolist() == [1, 2]
    assert ds.annotations["score"].isna().all()
    assert rep.read == 2 and rep.dropped == 0
    # the first box reaches 0.0000075 px left of the image (the file's rounding): only clipping can fix it,
    # so check pycocotools, not validate()
    assert self_ap(to_coco(ds)) == pytest.approx(1.0)


def test_datumaro_detect_and_darknet_layouts_are_detected(fixtures_dir, tmp_path):
    for variant in ("yolov8_detection", "yolov8_segmentation", "yolo"):
        assert yolo.detect(fixtures_dir / DATUMARO / variant) >= 0.9
    assert yolo.detect(fixtures_dir / DATUMARO / "yolo" / "obj.data") >= 0.9
    assert yolo.detect(fixtures_dir / DATUMARO / "yolov8_detection" / "data.yaml") >= 0.9
    assert yolo.detect(fixtures_dir / DATUMARO / "yolov8_detection" / "labels") > 0.5
    assert yolo.detect(_txt(tmp_path / "a.json", '{"images": []}')) == 0.0
    assert yolo.detect(_txt(tmp_path / "a.xml", "<annotation/>")) == 0.0
    assert yolo.detect(_txt(tmp_path / "notes.txt", "hello world\n")) == 0.0


def test_datumaro_segmentation(fixtures_dir, self_ap):
    # 2 0.1 0.1 0.4 0.1 0.4 0.5 -> (1.5, 1) (6, 1) (6, 5); bbox x 1.5..6, y 1..5 = [1.5, 1, 4.5, 4]
    # 4 0.2 0.15 0.4 0.15 0.4 0.75 0.3 0.75 0.25 0.3 -> (3, 1.5) (6, 1.5) (6, 7.5) (4.5, 7.5) (3.75, 3);
    #   bbox x 3..6, y 1.5..7.5 = [3, 1.5, 3, 6]
    ds, rep = _read(fixtures_dir / DATUMARO / "yolov8_segmentation")
    assert np.allclose(_seg(ds, 0), [1.5, 1, 6, 1, 6, 5])
    assert np.allclose(_seg(ds, 1), [3, 1.5, 6, 1.5, 6, 7.5, 4.5, 7.5, 3.75, 3])
    assert np.allclose(_boxes(ds), [[1.5, 1, 4.5, 4], [3, 1.5, 3, 6]])
    assert "task.inferred" in _codes(rep)
    _coco_ok(ds, self_ap, "segm")


def test_datumaro_obb_needs_a_task(fixtures_dir):
    # every row has 9 columns: a 4-point polygon or an oriented box; nothing else in the dataset decides
    ds, rep = _read(fixtures_dir / DATUMARO / "yolov8_oriented_boxes")
    assert len(ds) == 0 and rep.read == 2
    drops = rep.drops
    assert drops["reason"].tolist() == ["dropped.ambiguous", "dropped.ambiguous"]
    assert drops["source"].tolist() == ["labels/train/1.txt:1", "labels/train/1.txt:2"]
    assert drops["category"].tolist() == ["label_2", "label_4"]
    assert "pass ReadOptions(task='segment') or ReadOptions(task='obb')" in drops["message"][0]


def test_datumaro_obb_with_task(fixtures_dir, self_ap):
    # row 1: 2 0.146731 0.151795 0.319936 0.301795 0.186603 0.648205 0.013397 0.498205 (x*15, y*10)
    #   corners (2.200965, 1.51795) (4.79904, 3.01795) (2.799045, 6.48205) (0.200955, 4.98205)
    #   bbox [0.200955, 1.51795, 4.79904 - 0.200955 = 4.598085, 6.48205 - 1.51795 = 4.9641]
    # row 2: 4 0.557735 0.090192 0.357735 0.609808 0.242265 0.509808 0.442265 -0.009808
    #   corners (8.366025, 0.90192) (5.366025, 6.09808) (3.633975, 5.09808) (6.633975, -0.09808): the negative
    #   coordinate is kept for the clipping step; bbox [3.633975, -0.09808, 4.73205, 6.19616]
    ds, rep = _read(fixtures_dir / DATUMARO / "yolov8_oriented_boxes", task="obb")
    assert np.allclose(_seg(ds, 0), [2.200965, 1.51795, 4.79904, 3.01795, 2.799045, 6.48205, 0.200955, 4.98205])
    assert np.allclose(_seg(ds, 1), [8.366025, 0.90192, 5.366025, 6.09808, 3.633975, 5.09808, 6.633975, -0.09808])
    assert np.allclose(_boxes(ds), [[0.200955, 1.51795, 4.598085, 4.9641], [3.633975, -0.09808, 4.73205, 6.19616]])
    assert rep.dropped == 0 and "task.inferred" not in _codes(rep)
    assert self_ap(to_coco(ds), "segm") == pytest.approx(1.0)


@pytest.mark.parametrize("variant", ["yolov8_pose", "yolov8_pose_two_values_per_point"])
def test_datumaro_pose(fixtures_dir, self_ap, variant):
    # kpt_shape [3, 3] with v = 2, or [3, 2]: points (0.1, 0.2) (0.3, 0.4) (0.5, 0.6) on 15x10
    #   -> (1.5, 2) (4.5, 4) (7.5, 6), all visible (v = 2); the box is row 1 of the detection file
    ds, rep = _read(fixtures_dir / DATUMARO / variant)
    assert np.allclose(ds.annotations["keypoints"][0], [[1.5, 2, 2], [4.5, 4, 2], [7.5, 6, 2]])
    assert np.allclose(_boxes(ds), DETECT_BOXES[:1], rtol=0, atol=1e-9)
    cat = ds.categories.iloc[0]
    assert cat["name"] == "skeleton_label" and cat["keypoints"] == ["kp0", "kp1", "kp2"]
    assert cat["skeleton"] is None
    coco = to_coco(ds)
    assert coco["annotations"][0]["keypoints"] == pytest.approx([1.5, 2, 2, 4.5, 4, 2, 7.5, 6, 2])
    assert coco["annotations"][0]["num_keypoints"] == 3
    assert self_ap(coco) == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ DagsHub
# testimg.png is 640x480.


def test_dagshub_boxes_in_a_labels_folder(fixtures_dir, self_ap):
    # labels folder given directly; images from the sibling data/images
    # 0 0.25 0.25 0.5 0.5 -> x = 160 - 160 = 0, y = 120 - 120 = 0, w = 320, h = 240
    # 1 0.75 0.75 0.5 0.5 -> x = 480 - 160 = 320, y = 360 - 120 = 240, w = 320, h = 240
    ds, rep = _read(fixtures_dir / DAGSHUB / "data" / "labels_bbox", names=["dog", "cat"])
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["testimg.png", 640, 480]]
    assert _boxes(ds) == [[0, 0, 320, 240], [320, 240, 320, 240]]
    assert ds.annotations["category"].tolist() == ["dog", "cat"]
    assert ds.annotations["src_file"].tolist() == ["testimg.txt", "testimg.txt"]
    _coco_ok(ds, self_ap)


def test_dagshub_no_names_file_names_by_index(fixtures_dir):
    ds, rep = _read(fixtures_dir / DAGSHUB / "data" / "labels_bbox")
    assert ds.category_names == ["0", "1"]
    assert ds.annotations["category"].tolist() == ["0", "1"]
    assert "category.unnamed" in _codes(rep)


def test_dagshub_segmentation_with_9_column_rows(fixtures_dir, self_ap):
    # rows: 9, 9 and 7 columns. 9 alone could be an OBB, but an OBB file never has a 7-column row and
    # the 7-column row's last value (0.5) is no track id: the file is segment, judged by all its rows.
    # 0 0 0 0.5 0 0.5 0.5 0 0.5 -> (0,0) (320,0) (320,240) (0,240)
    # 1 0.5 0.5 1 0.5 1 1 0.5 1 -> (320,240) (640,240) (640,480) (320,480)
    # 0 0 0 0.5 0 0 0.5 -> (0,0) (320,0) (0,240)
    ds, rep = _read(fixtures_dir / DAGSHUB / "data" / "labels_segmentation")
    assert _seg(ds, 0) == [0, 0, 320, 0, 320, 240, 0, 240]
    assert _seg(ds, 1) == [320, 240, 640, 240, 640, 480, 320, 480]
    assert _seg(ds, 2) == [0, 0, 320, 0, 0, 240]
    assert _boxes(ds) == [[0, 0, 320, 240], [320, 240, 320, 240], [0, 0, 320, 240]]
    assert rep.dropped == 0
    _coco_ok(ds, self_ap, "segm")


def test_dagshub_segmentation_read_as_obb_drops_the_triangle(fixtures_dir):
    # testimg.txt (640x480): two 4-corner rows and a triangle (7 numbers), read as oriented boxes: the corners
    # (0,0) (.5,0) (.5,.5) (0,.5) -> (0,0) (320,0) (320,240) (0,240); the triangle is dropped at its line
    ds, rep = _read(fixtures_dir / DAGSHUB / "data" / "labels_segmentation", task="obb")
    assert _boxes(ds) == [[0, 0, 320, 240], [320, 240, 320, 240]]
    assert _seg(ds, 0) == [0, 0, 320, 0, 320, 240, 0, 240]
    assert rep.read == 3 and rep.drops.to_dict("records") == [{
        "reason": "dropped.invalid", "category": "0", "source": "testimg.txt:3",
        "message": "expected 9 numbers (class x1 y1 ... x4 y4), 10 with a score or 11 with a score and a track id; "
                   "got 7"}]


def test_dagshub_pose_2dim(fixtures_dir, self_ap):
    # pose_2dim.yaml: kpt_shape [4, 2], names dog, cat
    # 0 0.25 0.25 0.5 0.5 | .1 .1 .2 .2 .3 .3 .4 .4 -> box [0, 0, 320, 240]; (64,48) (128,96) (192,144) (256,192)
    # 1 0.75 0.75 0.5 0.5 | .6 .6 .7 .7 .8 .8 .9 .9 -> box [320, 240, 320, 240]; (384,288) ... (576,432)
    ds, rep = _read(fixtures_dir / DAGSHUB / "data" / "labels_pose_2dim",
                    extra={"data_yaml": fixtures_dir / DAGSHUB / "pose_2dim.yaml"})
    assert ds.category_names == ["dog", "cat"]
    assert _boxes(ds) == [[0, 0, 320, 240], [320, 240, 320, 240]]
    assert np.allclose(ds.annotations["keypoints"][0], [[64, 48, 2], [128, 96, 2], [192, 144, 2], [256, 192, 2]])
    assert np.allclose(ds.annotations["keypoints"][1],
                       [[384, 288, 2], [448, 336, 2], [512, 384, 2], [576, 432, 2]])
    assert ds.categories["keypoints"].tolist() == [["kp0", "kp1", "kp2", "kp3"]] * 2
    _coco_ok(ds, self_ap)


def test_dagshub_pose_3dim_visibility(fixtures_dir, self_ap):
    # 0 ... 0.1 0.1 1  0.2 0.2 0  0.3 0.3 1  0.4 0.4 0 -> (64,48,1) (0,0,0) (192,144,1) (0,0,0)
    # 1 ... 0.6 0.6 1  0.7 0.7 0  0.8 0.8 1  0.9 0.9 0 -> (384,288,1) (0,0,0) (512,384,1) (0,0,0)
    ds, rep = _read(fixtures_dir / DAGSHUB / "data" / "labels_pose_3dim",
                    extra={"data_yaml": fixtures_dir / DAGSHUB / "pose_3dim.yaml"})
    assert ds.annotations["keypoints"][0].tolist() == [[64, 48, 1], [0, 0, 0], [192, 144, 1], [0, 0, 0]]
    assert ds.annotations["keypoints"][1].tolist() == [[384, 288, 1], [0, 0, 0], [512, 384, 1], [0, 0, 0]]
    coco = _coco_ok(ds, self_ap)
    assert [a["num_keypoints"] for a in coco["annotations"]] == [2, 2]


def test_dagshub_pose_task_without_kpt_shape_is_inferred(fixtures_dir):
    # 17 columns: 12 keypoint values = 4x3 or 6x2; every third value is 0 or 1 -> [4, 3], and said so
    ds, rep = _read(fixtures_dir / DAGSHUB / "data" / "labels_pose_3dim", task="pose")
    assert ds.annotations["keypoints"][0].tolist() == [[64, 48, 1], [0, 0, 0], [192, 144, 1], [0, 0, 0]]
    assert any("kpt_shape inferred as [4, 3]" in d.message for d in rep.diagnostics)


def test_dagshub_empty_label_file(fixtures_dir):
    ds, rep = _read(fixtures_dir / DAGSHUB / "data" / "empty")
    assert ds.images["file_name"].tolist() == ["testimg.png"] and len(ds) == 0
    assert rep.read == 0 and "image.unlabeled" not in _codes(rep)


# ------------------------------------------------------------------------------------------ synthetic
def _dataset(tmp_path: Path, labels: dict[str, str], *, size=(100, 50), names="cat\ndog\n") -> Path:
    root = tmp_path / "ds"
    for stem, text in labels.items():
        _img(root / "images" / f"{stem}.png", *size)
        _txt(root / "labels" / f"{stem}.txt", text)
    if names is not None:
        _txt(root / "classes.txt", names)
    return root


def test_detect_predictions_with_score_and_track_id(tmp_path, self_ap):
    # 100x50 image. 0 0.5 0.5 0.2 0.4 -> x = 50 - 10 = 40, y = 25 - 10 = 15, w = 20, h = 20
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4 0.9\n1 0.5 0.5 0.2 0.4 0.25 7\n"})
    ds, rep = _read(root)
    assert _boxes(ds) == [[40, 15, 20, 20], [40, 15, 20, 20]]
    assert ds.annotations["score"].tolist() == [0.9, 0.25]
    assert ds.annotations["attributes"].tolist() == [None, {"track_id": 7}]
    coco = _coco_ok(ds, self_ap)
    assert [a["score"] for a in coco["annotations"]] == [0.9, 0.25]


def test_single_extra_column_of_whole_numbers_is_a_track_id(tmp_path):
    # Ultralytics save_txt while tracking without save_conf: cls cx cy w h id
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4 3\n1 0.5 0.5 0.2 0.4 12\n"})
    ds, _ = _read(root)
    assert ds.annotations["score"].isna().all()
    assert ds.annotations["attributes"].tolist() == [{"track_id": 3}, {"track_id": 12}]


def test_seven_columns_are_a_box_with_score_and_track_or_a_triangle(tmp_path):
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4 0.5 1\n",      # 6th a score, 7th whole: tracked box
                               "b": "0 0.1 0.2 0.5 0.2 0.3 0.6\n"})    # 7th 0.6: a triangle
    ds, _ = _read(root)
    # b: (10, 10) (50, 10) (30, 30) -> bbox [10, 10, 40, 20]
    assert _boxes(ds) == [[40, 15, 20, 20], [10, 10, 40, 20]]
    assert ds.annotations["segmentation"][0] is None
    assert _seg(ds, 1) == [10, 10, 50, 10, 30, 30]
    assert ds.annotations["attributes"][0] == {"track_id": 1}


def test_segment_predictions_and_mixed_rows(tmp_path, self_ap):
    # 100x50. row 1: a triangle + score (8 columns): (10,10) (50,10) (30,30), score 0.8
    # row 2: a box in a segment file: 1 0.5 0.5 0.2 0.4 -> [40, 15, 20, 20]
    # row 3: 4 points (9 columns) in a file that has other rows: a polygon (10,5) (90,5) (90,45) (10,45)
    root = _dataset(tmp_path, {"a": "0 0.1 0.2 0.5 0.2 0.3 0.6 0.8\n1 0.5 0.5 0.2 0.4\n"
                                    "1 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"})
    ds, rep = _read(root)
    assert _seg(ds, 0) == [10, 10, 50, 10, 30, 30]
    assert ds.annotations["score"][0] == 0.8
    assert ds.annotations["segmentation"][1] is None
    assert _boxes(ds)[1:] == [[40, 15, 20, 20], [10, 5, 80, 40]]
    assert rep.dropped == 0
    _coco_ok(ds, self_ap)


def test_obb_predictions_with_score_and_track(tmp_path):
    root = _dataset(tmp_path, {"a": "0 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9 0.75 4\n"})
    ds, _ = _read(root, task="obb")
    assert _boxes(ds) == [[10, 5, 80, 40]]
    assert ds.annotations["score"][0] == 0.75
    assert ds.annotations["attributes"][0] == {"track_id": 4}


def test_pose_predictions_keypoint_confidences(tmp_path, self_ap):
    # kpt_shape [2, 3] + score: the third values are confidences -> v = 2 above 0.5, else 1; kept in attributes
    # 100x50: (0.2, 0.4) -> (20, 20), (0.6, 0.8) -> (60, 40)
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.8 0.8 0.2 0.4 0.93 0.6 0.8 0.31 0.88\n"})
    _txt(root / "data.yaml", "names: [person]\nkpt_shape: [2, 3]\nkpt_names: {0: [head, tail]}\n"
         "skeleton: [[0, 1]]\ntrain: images\n")
    ds, rep = _read(root)
    assert ds.annotations["keypoints"][0].tolist() == [[20, 20, 2], [60, 40, 1]]
    assert ds.annotations["score"][0] == 0.88
    assert ds.annotations["attributes"][0] == {"keypoint_scores": [0.93, 0.31]}
    cat = ds.categories.iloc[0]
    assert cat["keypoints"] == ["head", "tail"] and cat["skeleton"] == [[1, 2]]
    assert "skeleton.shifted" in _codes(rep)
    _coco_ok(ds, self_ap)


def test_pose_two_values_missing_points(tmp_path):
    # 2 values per point: (0, 0) and negative coordinates are missing points (v = 0, written 0, 0)
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.8 0.8 0 0 -0.1 0.5 0.5 0.5\n"})
    ds, _ = _read(root, extra={"kpt_shape": [3, 2]})
    assert ds.annotations["keypoints"][0].tolist() == [[0, 0, 0], [0, 0, 0], [50, 25, 2]]


def test_label_without_image_is_dropped_and_reported(tmp_path):
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n"})
    _txt(root / "labels" / "ghost.txt", "1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.1 0.1\n")
    ds, rep = _read(root)
    assert len(ds) == 1 and rep.read == 3
    drops = rep.drops
    assert drops["reason"].tolist() == ["dropped.no_image"] * 2
    assert drops["source"].tolist() == ["labels/ghost.txt:1", "labels/ghost.txt:2"]
    assert drops["category"].tolist() == ["dog", "cat"]
    assert [(d.code, d.source) for d in rep.diagnostics if d.code == "image.missing"] == [
        ("image.missing", "labels/ghost.txt")]
    rep.set_written(len(ds))
    assert rep.balanced


def test_image_without_label_is_kept(tmp_path):
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n"})
    _img(root / "images" / "b.png", 10, 10)
    ds, rep = _read(root)
    assert ds.images["file_name"].tolist() == ["a.png", "b.png"]
    notes = [(d.code, d.source, d.severity) for d in rep.diagnostics if d.code == "image.unlabeled"]
    assert notes == [("image.unlabeled", "b.png", "info")]


def test_class_index_without_a_name_is_dropped_at_its_line(tmp_path):
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n2 0.5 0.5 0.2 0.4\n"})
    ds, rep = _read(root)
    assert _boxes(ds) == [[40, 15, 20, 20]] and rep.read == 2
    assert rep.drops.to_dict("records") == [{
        "reason": "dropped.unknown_category", "category": None, "source": "labels/a.txt:2",
        "message": "class index 2 has no name (classes.txt lists 2 classes; add it there or give ReadOptions(names=...))"}]


def test_class_index_must_be_whole(tmp_path):
    root = _dataset(tmp_path, {"a": "0.5 0.5 0.5 0.2 0.4\n1 0.5 0.5 0.2 0.4\n-1 0.5 0.5 0.2 0.4\n"})
    ds, rep = _read(root)
    assert _boxes(ds) == [[40, 15, 20, 20]] and ds.annotations["category"].tolist() == ["dog"]
    assert rep.drops[["source", "message"]].values.tolist() == [
        ["labels/a.txt:1", "class index must be a whole number >= 0, got 0.5"],
        ["labels/a.txt:3", "class index must be a whole number >= 0, got -1.0"]]


def test_ambiguous_file_is_reported_not_guessed(tmp_path, self_ap):
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n", "b": "1 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"})
    ds, rep = _read(root)
    assert len(ds) == 1 and rep.dropped == 1
    assert rep.drops.iloc[0].to_dict() == {
        "reason": "dropped.ambiguous", "category": "dog", "source": "labels/b.txt:1",
        "message": "9 to 11 columns: a 4-point polygon or an oriented box; pass ReadOptions(task='segment') or ReadOptions(task='obb')"}
    ds, rep = _read(root, task="segment")  # a box row is a box in a segment file
    assert rep.dropped == 0 and _boxes(ds) == [[40, 15, 20, 20], [10, 5, 80, 40]]
    _coco_ok(ds, self_ap)


def test_ambiguous_file_in_a_segment_dataset_follows_the_dataset(tmp_path):
    root = _dataset(tmp_path, {"a": "0 0.1 0.2 0.5 0.2 0.3 0.6\n", "b": "1 0.1 0.1 0.9 0.1 0.9 0.9 0.1 0.9\n"})
    ds, rep = _read(root)
    assert rep.dropped == 0 and _seg(ds, 1) == [10, 5, 90, 5, 90, 45, 10, 45]
    assert any("read as polygons like the rest of the dataset" in d.message for d in rep.diagnostics)


def test_wrong_column_counts_are_dropped_at_their_line(tmp_path):
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2\n1 0.5 0.5 0.2 0.4\n"})
    ds, rep = _read(root)
    assert _boxes(ds) == [[40, 15, 20, 20]] and rep.read == 2
    assert rep.drops[["reason", "category", "source", "message"]].values.tolist() == [
        ["dropped.invalid", "cat", "labels/a.txt:1", "expected at least 5 numbers (class cx cy w h), got 4"]]
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1\n"})
    ds, rep = _read(root, task="detect")
    assert _boxes(ds) == [[40, 15, 20, 20]]
    assert rep.drops[["source", "message"]].values.tolist() == [
        ["labels/a.txt:3", "expected 5 numbers (class cx cy w h), 6 with a score or 7 with a score and a track id; "
                           "got 9 (rows of polygons? pass ReadOptions(task='segment'), or ReadOptions(task='obb') for 4 "
                           "corners)"]]  # a Python caller: the keyword, not the flag


@pytest.mark.parametrize("content,line,shown", [
    (b"0 0.5 0.5 0.2 0.4\n0 0.5 abc 0.2 0.4\n", 2, r"'abc'"),
    (b"0 0.5 0.5 0.2 0.4\r\n0 0.5 0,5 0.2 0.4\r\n", 2, r"'0,5'"),
    (b"0 0.5 0.5 0.2 0.4\n1 \xe9 0.5 0.2 0.4\n", 2, r"'\xe9'"),            # not UTF-8
])
def test_a_value_that_is_not_a_number_drops_its_row(tmp_path, content, line, shown):
    root = _dataset(tmp_path, {"a": ""})
    (root / "labels" / "a.txt").write_bytes(content)
    ds, rep = _read(root)
    assert _boxes(ds) == [[40, 15, 20, 20]] and rep.read == 2
    assert rep.drops[["reason", "category", "source", "message"]].values.tolist() == [
        ["dropped.invalid", None, f"labels/a.txt:{line}", f"not a number: {shown}"]]


def test_a_binary_label_file_fails_with_its_name(tmp_path):
    root = _dataset(tmp_path, {"a": ""})
    (root / "labels" / "a.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    with pytest.raises(ReadError) as e:
        _read(root)
    assert str(e.value) == r"labels/a.txt:1: not a number: '\x89PNG'"
    assert e.value.hint == "this looks like a binary or UTF-16 file, not a YOLO text label file"


def test_bom_crlf_blank_lines_and_nonfinite_values(tmp_path):
    root = _dataset(tmp_path, {"a": ""})
    (root / "labels" / "a.txt").write_bytes(b"\xef\xbb\xbf0 0.5 0.5 0.2 0.4\r\n\r\n1 nan 0.5 0.2 inf\r\n  \r\n"
                                            b"1 1.2 -0.1 0.2 0.4")
    ds, rep = _read(root)
    assert ds.annotations["src_line"].tolist() == [1, 3, 5]
    boxes = ds.boxes
    assert boxes[0].tolist() == [40, 15, 20, 20]
    assert np.isnan(boxes[1][0]) and np.isinf(boxes[1][3])          # kept: the clipping step drops them
    # outside [0, 1] is kept: 1.2*100 - 10 = 110, -0.1*50 - 10 = -15
    assert boxes[2].tolist() == [110, -15, 20, 20]
    assert rep.read == 3


def test_names_from_yaml_dict_nc_and_errors(tmp_path):
    root = _dataset(tmp_path, {"a": "1 0.5 0.5 0.2 0.4\n"}, names=None)
    _txt(root / "data.yaml", "path: .\ntrain: images\nnc: 2\nnames: {0: cat, 1: dog}\n")
    ds, _ = _read(root)
    assert ds.category_names == ["cat", "dog"] and ds.annotations["category"].tolist() == ["dog"]
    _txt(root / "data.yaml", "train: images\nnc: 3\nnames: [cat, dog]\n")
    with pytest.raises(ReadError, match="nc is 3 but names lists 2 classes"):
        _read(root)
    ds, _ = _read(root, names=["a", "b"])  # --names wins over data.yaml
    assert ds.category_names == ["a", "b"]


# ------------------------------------------------------------------------------------------ layouts
def test_several_splits_list_file_and_roboflow_paths(tmp_path, self_ap):
    root = tmp_path / "rf"
    for split in ("train", "valid"):
        _img(root / split / "images" / f"{split}1.jpg", 100, 50)
        _txt(root / split / "labels" / f"{split}1.txt", "0 0.5 0.5 0.2 0.4\n")
    _img(root / "test" / "images" / "x.y.jpg", 100, 50)            # a.b.jpg -> a.b.txt
    _txt(root / "test" / "labels" / "x.y.txt", "1 0.5 0.5 0.2 0.4\n")
    _txt(root / "test.txt", "./test/images/x.y.jpg\n")
    # Roboflow writes ../train/images: the '..' is stripped, never followed out of the dataset folder
    _txt(root / "data.yaml", "train: ../train/images\nval: [valid/images]\ntest: test.txt\nnames: [cat, dog]\n")
    ds, rep = _read(root)
    assert ds.images["file_name"].tolist() == ["train/images/train1.jpg", "valid/images/valid1.jpg",
                                               "test/images/x.y.jpg"]
    assert ds.annotations["src_file"].tolist() == ["train/labels/train1.txt", "valid/labels/valid1.txt",
                                                   "test/labels/x.y.txt"]
    assert ds.annotations["image"].tolist() == [0, 1, 2]
    _coco_ok(ds, self_ap)


def test_ultralytics_file_names_drop_the_images_folder(tmp_path):
    root = tmp_path / "u"
    _img(root / "images" / "train" / "1.png", 100, 50)
    _img(root / "images" / "val" / "2.png", 100, 50)
    _txt(root / "labels" / "train" / "1.txt", "0 0.5 0.5 0.2 0.4\n")
    _txt(root / "labels" / "val" / "2.txt", "0 0.5 0.5 0.2 0.4\n")
    _txt(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames: [cat]\n")
    ds, _ = _read(root)
    assert ds.images["file_name"].tolist() == ["train/1.png", "val/2.png"]
    assert ds.images["path"].tolist() == [str(root / "images" / "train" / "1.png"),
                                          str(root / "images" / "val" / "2.png")]
    # the same, from the labels folder given directly (images from the sibling images/train)
    ds, _ = _read(root / "labels" / "train")
    assert ds.images["file_name"].tolist() == ["1.png"] and ds.category_names == ["cat"]
    assert ds.annotations["src_file"].tolist() == ["1.txt"]


def test_labels_folder_with_images_option(tmp_path):
    _img(tmp_path / "pics" / "a.png", 100, 50)
    _txt(tmp_path / "preds" / "a.txt", "0 0.5 0.5 0.2 0.4 0.5\n")
    ds, rep = _read(tmp_path / "preds", images=tmp_path / "pics", names=["cat"])
    assert ds.images["file_name"].tolist() == ["a.png"] and _boxes(ds) == [[40, 15, 20, 20]]
    # a single label file works too
    ds, _ = _read(tmp_path / "preds" / "a.txt", images=tmp_path / "pics", names=["cat"])
    assert len(ds) == 1 and ds.annotations["src_file"].tolist() == ["a.txt"]


def test_flat_folder_skips_text_that_is_not_labels(tmp_path):
    _img(tmp_path / "a.png", 100, 50)
    _txt(tmp_path / "a.txt", "0 0.5 0.5 0.2 0.4\n")
    _txt(tmp_path / "notes.txt", "taken on a sunny day\n")
    _txt(tmp_path / "obj.names", "cat\n")
    ds, rep = _read(tmp_path)
    assert len(ds) == 1 and ds.category_names == ["cat"]
    assert [(d.code, d.source) for d in rep.diagnostics if d.code == "file.skipped"] == [
        ("file.skipped", "notes.txt")]


def test_exif_rotated_image_size(tmp_path, self_ap):
    # a 400x200 JPEG with EXIF orientation 6 is seen 200 wide, 400 high
    exif = Image.Exif()
    exif[0x0112] = 6
    _img(tmp_path / "images" / "phone.jpg", 400, 200, "JPEG", exif=exif.tobytes())
    _txt(tmp_path / "labels" / "phone.txt", "0 0.5 0.5 0.5 0.25\n")
    ds, _ = _read(tmp_path, names=["cat"])
    assert ds.images[["width", "height"]].values.tolist() == [[200, 400]]
    # x = 100 - 50 = 50, y = 200 - 50 = 150, w = 100, h = 100
    assert _boxes(ds) == [[50, 150, 100, 100]]
    _coco_ok(ds, self_ap)


def test_unreadable_image_drops_its_rows(tmp_path):
    root = _dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.4\n"})
    (root / "images" / "a.png").write_bytes(b"not an image")
    ds, rep = _read(root)
    assert len(ds.images) == 0 and len(ds) == 0
    why = "image 'a.png' has no known size: its file's header gives none (not an image, or a format not known)"
    assert rep.drops[["reason", "source", "message"]].values.tolist() == [["dropped.no_image", "labels/a.txt:1", why]]
    assert [(d.code, d.source, d.message) for d in rep.diagnostics if d.code == "image.missing"] == [
        ("image.missing", "images/a.png", why)]


def test_bulk_and_row_parsing_agree(tmp_path):
    # many files with rows of several lengths: the columnar parse keeps file, line and order
    rng = np.random.default_rng(1)
    root = tmp_path / "many"
    expected = []
    for i in range(30):
        _img(root / "images" / f"{i:02d}.png", 20, 10)
        rows = []
        for j in range(int(rng.integers(0, 4))):
            v = np.round(rng.uniform(0.1, 0.9, 4), 3)
            rows.append(f"{j % 2} {v[0]} {v[1]} {v[2]} {v[3]}")
            expected.append((f"labels/{i:02d}.txt", j + 1, v[0] * 20 - v[2] * 20 / 2))
        _txt(root / "labels" / f"{i:02d}.txt", "\n".join(rows))
    ds, _ = _read(root, names=["a", "b"])
    got = list(zip(ds.annotations["src_file"], ds.annotations["src_line"], ds.annotations["x"], strict=True))
    assert [(f, n) for f, n, _ in got] == [(f, n) for f, n, _ in expected]
    assert np.allclose([x for *_, x in got], [x for *_, x in expected])


def test_coco_self_ap_on_a_mixed_in_image_dataset(tmp_path, self_ap):
    buf = io.StringIO()
    for k in range(5):
        buf.write(f"{k % 2} {0.2 + k * 0.1:.2f} 0.5 0.1 0.2\n")
    root = _dataset(tmp_path, {"a": buf.getvalue(), "b": "1 0.1 0.2 0.5 0.2 0.3 0.6\n0 0.2 0.2 0.4 0.2 0.3 0.5\n"})
    ds, _ = _read(root, task="segment")
    coco = _coco_ok(ds, self_ap)
    assert len(coco["annotations"]) == 7


def test_pose_task_with_only_empty_label_files(tmp_path):
    root = _dataset(tmp_path, {"a": ""}, names="person\n")
    ds, rep = _read(root, task="pose")
    assert len(ds) == 0 and len(ds.images) == 1 and rep.read == 0


def test_same_input_same_dataset(tmp_path):
    root = _dataset(tmp_path, {"b": "1 0.5 0.5 0.2 0.4\n", "a": "0 0.1 0.2 0.5 0.2 0.3 0.6 0.8\n"})
    first, _ = _read(root)
    again, _ = _read(root)
    assert to_coco(first) == to_coco(again)
    assert first.images["file_name"].tolist() == ["a.png", "b.png"]


def test_cli_data_yaml_and_kpt_shape_options(fixtures_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from prelabel.cli import main

    out = tmp_path / "o.json"
    # pose_2dim.yaml (kpt_shape [4, 2], names dog, cat) is not beside the labels: --data-yaml points at it
    r = CliRunner().invoke(main, ["-q", "convert", str(fixtures_dir / DAGSHUB / "data" / "labels_pose_2dim"),
                                  "--data-yaml", str(fixtures_dir / DAGSHUB / "pose_2dim.yaml"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    coco = json.loads(out.read_text())
    assert [(c["name"], c["keypoints"]) for c in coco["categories"]] == [
        ("dog", ["kp0", "kp1", "kp2", "kp3"]), ("cat", ["kp0", "kp1", "kp2", "kp3"])]
    # 0 0.25 0.25 0.5 0.5 | .1 .1 .2 .2 .3 .3 .4 .4 on 640x480 -> box [0, 0, 320, 240], (64, 48, 2) ...
    assert coco["annotations"][0]["bbox"] == [0.0, 0.0, 320.0, 240.0]
    assert coco["annotations"][0]["keypoints"][:6] == [64.0, 48.0, 2, 128.0, 96.0, 2]
    # --kpt-shape 4,3 reads the 3-dim labels as pose without guessing (no "inferred" note)
    r = CliRunner().invoke(main, ["-v", "convert", str(fixtures_dir / DAGSHUB / "data" / "labels_pose_3dim"),
                                  "--kpt-shape", "4,3", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "kpt_shape inferred" not in r.stderr
    coco = json.loads(out.read_text())
    # 0 ... 0.1 0.1 1  0.2 0.2 0  0.3 0.3 1  0.4 0.4 0 -> (64,48,1) (0,0,0) (192,144,1) (0,0,0)
    assert coco["annotations"][0]["keypoints"] == [64.0, 48.0, 1, 0.0, 0.0, 0, 192.0, 144.0, 1, 0.0, 0.0, 0]
    r = CliRunner().invoke(main, ["convert", str(fixtures_dir / DAGSHUB / "data" / "labels_pose_3dim"),
                                  "--kpt-shape", "4", "-o", str(out)])
    assert r.exit_code == 2
    assert ("Invalid value for '--kpt-shape': expected K,D (K keypoints, D = 2 or 3 values each), e.g. 17,3; "
            "got '4'") in r.stderr


def test_a_malformed_label_beside_a_names_file_is_reported_not_unrecognised(tmp_path: Path) -> None:
    from prelabel import adapters
    from prelabel.pipeline import read as pipeline_read

    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2\n")
    (tmp_path / "classes.txt").write_text("a\n")
    assert adapters.detect(tmp_path) == "yolo"
    rep = pipeline_read(tmp_path).report
    assert rep.read == 1 and rep.drops[["reason", "source", "message"]].values.tolist() == [
        ["dropped.invalid", "labels/a.txt:1", "expected at least 5 numbers (class cx cy w h), got 4"]]
