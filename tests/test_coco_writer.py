"""The COCO writer and validator, checked against pycocotools and hand-computed values."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prelabel.converters.coco import to_coco, validate, write
from prelabel.model import Dataset


def _ds() -> Dataset:
    return Dataset.build(
        images={"file_name": ["a.jpg", "b.png"], "width": [64, 32], "height": [48, 32]},
        categories={"name": ["cat", "dog"]},
        annotations={
            "image": [1, 0, 0],
            "category": ["dog", "cat", "dog"],
            "x": [1.0, 10.0, 0.0], "y": [1.0, 10.0, 0.0], "w": [4.0, 20.0, 4.0], "h": [4.0, 10.0, 4.0],
            "segmentation": [None, None, [np.array([0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0])]],
        },
    )


def test_ids_start_at_one_and_annotations_follow_image_order():
    coco = to_coco(_ds())
    assert [i["id"] for i in coco["images"]] == [1, 2]
    assert [c["id"] for c in coco["categories"]] == [1, 2]
    # annotations sorted by image, then reading order: rows 1, 2 (image a) then row 0 (image b)
    assert [(a["id"], a["image_id"], a["category_id"]) for a in coco["annotations"]] == [
        (1, 1, 1), (2, 1, 2), (3, 2, 2)]
    assert set(coco) == {"info", "licenses", "images", "annotations", "categories"}


def test_area_is_polygon_area_for_segments_and_wh_for_boxes():
    coco = to_coco(_ds())
    box, poly = coco["annotations"][0], coco["annotations"][1]
    assert box["area"] == 200.0 and box["segmentation"] == []
    # pycocotools: polygon [0,0,4,0,4,4,0,4] has area 16 (FORMATS.md, verified)
    assert poly["area"] == 16.0 and poly["bbox"] == [0.0, 0.0, 4.0, 4.0]
    assert all(isinstance(a["iscrowd"], int) for a in coco["annotations"])


def test_pycocotools_self_evaluation_is_perfect(self_ap):
    assert self_ap(to_coco(_ds()), "bbox") == pytest.approx(1.0)


def test_deterministic_bytes(tmp_path):
    a = write(_ds(), tmp_path / "a.json")[0].read_bytes()
    b = write(_ds(), tmp_path / "b.json")[0].read_bytes()
    assert a == b


def test_shards_are_complete_files_of_whole_images(tmp_path):
    n = 50
    ds = Dataset.build(
        images={"file_name": [f"{i}.jpg" for i in range(n)], "width": [100] * n, "height": [100] * n},
        annotations={"image": np.repeat(np.arange(n), 20), "category": ["a"] * (n * 20),
                     "x": np.ones(n * 20), "y": np.ones(n * 20), "w": np.ones(n * 20), "h": np.ones(n * 20)})
    paths = write(ds, tmp_path / "out.json", max_file_size=20_000)
    assert len(paths) > 1 and paths[0].name == "out-001.json"
    seen_imgs, seen_anns = [], []
    for p in paths:
        doc = json.loads(p.read_text())
        assert p.stat().st_size <= 20_000
        assert validate(doc).ok
        ids = {i["id"] for i in doc["images"]}
        assert all(a["image_id"] in ids for a in doc["annotations"])
        seen_imgs += sorted(ids)
        seen_anns += [a["id"] for a in doc["annotations"]]
    assert seen_imgs == list(range(1, n + 1))
    assert sorted(seen_anns) == list(range(1, n * 20 + 1))


def test_validator_names_each_problem():
    doc = {"images": [{"id": 1, "file_name": "../x.jpg", "width": 10, "height": 10}],
           "annotations": [{"id": 0, "image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 1], "area": 10,
                            "iscrowd": "false", "segmentation": [[0, 0, 1, 1]]}],
           "categories": [{"id": 1, "name": "a"}]}
    res = validate(doc)
    assert not res.ok
    assert res.errors == [
        "images[0] (id 1): file_name '../x.jpg' is unsafe: '..' segment escapes the root",
        "annotations[0]: id must be an integer >= 1 (an id of 0 breaks COCOeval), got 0",
        "annotations[0] (id 0): category_id 3 is not defined in categories",
        "annotations[0] (id 0): iscrowd must be the integer 0 or 1, got 'false'",
        "annotations[0] (id 0): bbox [5, 5, 10, 1] extends outside image 1 (10x10)",
        "annotations[0] (id 0): segmentation[0] must be a flat polygon of >= 3 points (>= 6 numbers)",
    ]
    assert res.warnings[0].startswith("top level: 'info' is missing")
