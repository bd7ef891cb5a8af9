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
    # pycocotools 2.0.9 and 2.0.10 (their wheels' coco.py, line 314) copy self.dataset['info'] in loadRes; not 'licenses'
    assert res.warnings[:2] == ["top level: 'info' is missing (pycocotools 2.0.9-2.0.10 loadRes needs it)",
                                "top level: 'licenses' is missing (a key of the COCO format)"]


def test_cli_validate_finds_and_checks_every_shard(tmp_path):
    from click.testing import CliRunner

    from prelabel.cli import main

    n = 50
    ds = Dataset.build(
        images={"file_name": [f"{i}.jpg" for i in range(n)], "width": [100] * n, "height": [100] * n},
        annotations={"image": np.repeat(np.arange(n), 20), "category": ["a"] * (n * 20),
                     "x": np.ones(n * 20), "y": np.ones(n * 20), "w": np.ones(n * 20), "h": np.ones(n * 20)})
    out = tmp_path / "out.json"
    paths = write(ds, out, max_file_size=20_000)
    assert not out.exists() and len(paths) > 1
    r = CliRunner().invoke(main, ["validate", str(out)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert [ln.split(": ")[0] for ln in lines] == [str(p) for p in paths]
    assert all(": valid (" in ln and "categories)" in ln for ln in lines)
    # every image is counted once across the shards
    assert sum(int(ln.split("(")[1].split(" images")[0]) for ln in lines) == n
    # break the second shard: its line says INVALID and the exit code is 1
    doc = json.loads(paths[1].read_text())
    doc["annotations"][0]["category_id"] = 9
    paths[1].write_text(json.dumps(doc))
    r = CliRunner().invoke(main, ["validate", str(out)])
    assert r.exit_code == 1
    assert r.stdout.splitlines()[1] == f"error: {paths[1]}: annotations[0] (id {doc['annotations'][0]['id']}): " \
                                       f"category_id 9 is not defined in categories"
    assert f"{paths[1]}: INVALID, 1 problem(s)" in r.stdout.splitlines()
    js = CliRunner().invoke(main, ["validate", str(out), "--json"])
    got = json.loads(js.stdout)
    assert js.exit_code == 1 and got["valid"] is False
    assert [(f["file"], f["valid"]) for f in got["files"]] == [(str(p), p != paths[1]) for p in paths]
    # neither out.json nor shards
    r = CliRunner().invoke(main, ["validate", str(tmp_path / "none.json")])
    assert r.exit_code == 1
    assert r.stderr.splitlines()[0] == f"error: no such file: {tmp_path / 'none.json'} (nor shards none-001.json ...)"


# ------------------------------------------------------------------------------------------------ fast path
def _mixed(n_img: int = 4) -> Dataset:
    """Boxes with and without scores and attributes, a polygon, an RLE, keypoints, a crowd box."""
    poly = [np.array([1.0, 1.0, 5.0, 1.0, 5.0, 4.0])]
    rle = {"size": [10, 20], "counts": [30, 5, 165]}
    return Dataset.build(
        images={"file_name": [f"im{i}.jpg" for i in range(n_img)], "width": [20] * n_img, "height": [10] * n_img,
                "attributes": [{"tags": ["day"]}] + [None] * (n_img - 1)},
        categories={"name": ["cat", "dog"], "keypoints": [None, ["nose", "tail"]],
                    "skeleton": [None, [[1, 2]]]},
        annotations={
            "image": [3, 0, 0, 1, 2, 0, 1],
            "category": ["cat", "cat", "dog", "cat", "cat", "dog", "cat"],
            "x": [1.0, 0.5, 2.0, 0.0, 1.0, 3.0, 0.1], "y": [1.0, 0.25, 2.0, 0.0, 1.0, 3.0, 0.2],
            "w": [2.0, 3.0, 4.0, 1.0, 1.0, 5.0, 0.3], "h": [2.0, 4.0, 1.0, 1.0, 1.0, 5.0, 0.4],
            "score": [0.9, np.nan, 0.5, np.nan, np.nan, np.nan, 1e-7],
            "iscrowd": [0, 0, 0, 0, 1, 0, 0],
            "segmentation": [None, None, None, poly, rle, None, None],
            "keypoints": [None, None, None, None, None, np.array([[4.0, 4.0, 2.0], [0.0, 0.0, 0.0]]), None],
            "attributes": [{"occluded": True}, None, {}, None, None, None, {"text": 'a},{"b"', "n": [1, {"c": 2}]}],
        })


def test_fast_bytes_equal_the_dict_document():
    import orjson

    from prelabel.converters.coco import coco_bytes

    ds = _mixed()
    coco = to_coco(ds)
    assert coco_bytes(ds) == orjson.dumps(coco, option=orjson.OPT_SERIALIZE_NUMPY)
    # by hand: annotations sorted by image (0: rows 1, 2, 5; 1: rows 3, 6; 2: row 4; 3: row 0)
    anns = coco["annotations"]
    assert [(a["id"], a["image_id"]) for a in anns] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 3), (7, 4)]
    assert anns[0] == {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [], "area": 12.0,
                       "bbox": [0.5, 0.25, 3.0, 4.0], "iscrowd": 0}
    assert anns[1]["score"] == 0.5 and "attributes" not in anns[1]  # an empty dict is not written
    assert anns[2]["keypoints"] == [4.0, 4.0, 2, 0.0, 0.0, 0] and anns[2]["num_keypoints"] == 1
    assert anns[3]["segmentation"] == [[1.0, 1.0, 5.0, 1.0, 5.0, 4.0]] and anns[3]["area"] == 6.0  # 4 * 3 / 2
    assert anns[4]["attributes"] == {"text": 'a},{"b"', "n": [1, {"c": 2}]} and anns[4]["score"] == 1e-7
    assert anns[5]["segmentation"]["size"] == [10, 20] and anns[5]["area"] == 5.0  # 5 pixels set
    assert anns[6]["attributes"] == {"occluded": True} and anns[6]["score"] == 0.9


def test_every_kind_of_row_scores_ap_one(self_ap):
    assert self_ap(to_coco(_mixed()), "bbox") == pytest.approx(1.0)


@pytest.mark.parametrize("chunk", [1, 2, 3, 1000])
def test_bytes_do_not_depend_on_the_chunk_size(monkeypatch, tmp_path, chunk):
    import orjson

    from prelabel.converters import coco_tables

    ds = _mixed()
    expected = orjson.dumps(to_coco(ds), option=orjson.OPT_SERIALIZE_NUMPY)
    monkeypatch.setattr(coco_tables, "_CHUNK", chunk)
    assert coco_tables.coco_bytes(ds) == expected
    assert write(ds, tmp_path / "a.json")[0].read_bytes() == expected


def test_shards_from_the_dataset_equal_shards_from_the_dict(tmp_path):
    ds = _mixed(4)
    doc = to_coco(ds)
    for limit in (700, 1000, 1300):  # the whole document is 1504 bytes
        from_ds = write(ds, tmp_path / f"ds{limit}.json", max_file_size=limit)
        from_dict = write(doc, tmp_path / f"dict{limit}.json", max_file_size=limit)
        assert len(from_ds) == len(from_dict) > 1
        assert [p.read_bytes() for p in from_ds] == [p.read_bytes() for p in from_dict]
        assert not (tmp_path / f"ds{limit}.json").exists()
        assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_validate_dataset_says_what_validate_says():
    from prelabel.converters.coco import validate_dataset

    ds = Dataset.build(
        images={"file_name": ["a.jpg", "/abs.jpg"], "width": [10, 0], "height": [10, 5]},
        annotations={"image": [0, 0, 1, 0, 0, 0], "category": ["a"] * 6,  # row 2 is written last
                     "x": [8.0, np.nan, 1.0, 1.0, 0.0, 0.0], "y": [0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
                     "w": [4.0, 1.0, 1.0, 0.0, 1.0, 1.0], "h": [4.0, 1.0, 1.0, 1.0, 1.0, 1.0],
                     "score": [np.nan, np.nan, np.nan, np.nan, np.inf, np.nan], "iscrowd": [0, 0, 0, 0, 0, 2],
                     "segmentation": [None, None, None, None, None, [np.array([0.0, 0.0, 1.0, 1.0])]]})
    expected = [
        "images[1] (id 2): width and height must be integers >= 1, got 0 x 5",
        "images[1] (id 2): file_name '/abs.jpg' is unsafe: absolute path",
        "annotations[0] (id 1): bbox [8.0, 0.0, 4.0, 4.0] extends outside image 1 (10x10)",
        "annotations[1] (id 2): bbox must be 4 finite numbers [x, y, w, h], got [nan, 0.0, 1.0, 1.0]",
        "annotations[2] (id 3): bbox [1.0, 1.0, 0.0, 1.0] has zero or negative size",
        "annotations[3] (id 4): score must be a finite number, got inf",
        "annotations[4] (id 5): iscrowd must be the integer 0 or 1, got 2",
        "annotations[4] (id 5): segmentation[0] must be a flat polygon of >= 3 points (>= 6 numbers)",
    ]  # rows sorted by image: 0, 1, 3, 4, 5 (image 1), then 2 (image 2: no size, so no bbox check)
    assert validate_dataset(ds).errors == expected
    assert validate(to_coco(ds)).errors == expected
    res = validate_dataset(ds, allow_outside=True)
    assert res.errors == expected[:2] + expected[3:]
    assert res.warnings == ["annotations[0] (id 1): bbox [8.0, 0.0, 4.0, 4.0] extends outside image 1 (10x10)"]


def test_validate_dataset_lists_200_problems_then_says_there_are_more():
    from prelabel.converters.coco import validate_dataset

    n = 300
    ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
                       annotations={"image": [0] * n, "category": ["a"] * n, "x": np.zeros(n), "y": np.zeros(n),
                                    "w": np.zeros(n), "h": np.ones(n)})
    errors = validate_dataset(ds).errors
    assert len(errors) == 201 and errors[-1] == "... more problems not listed"
    assert errors[199] == "annotations[199] (id 200): bbox [0.0, 0.0, 0.0, 1.0] has zero or negative size"
    assert errors == validate(to_coco(ds)).errors


@pytest.mark.parametrize("rows", [1, 2, 3, 5])
def test_a_large_chunk_is_written_in_slices_of_whole_images_with_the_same_bytes(monkeypatch, tmp_path, rows):
    import orjson

    from prelabel.converters import coco_write

    mixed = _mixed(4)
    order = np.argsort(mixed.annotations["image"].to_numpy(), kind="stable")
    ds = mixed.replace(annotations=mixed.annotations.iloc[order].reset_index(drop=True))  # rows in image order
    doc = to_coco(ds)
    expected = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
    slices = []
    monkeypatch.setattr(coco_write, "ADD_ROWS", rows)
    real = coco_write.image_slices
    monkeypatch.setattr(coco_write, "image_slices", lambda d, r: slices.append(list(real(d, r))) or iter(slices[-1]))
    writer = coco_write.CocoStreamWriter(tmp_path / "a.json")
    writer.add(ds)
    assert writer.finish(ds.categories)[0].read_bytes() == expected
    parts = slices[0]
    assert len(parts) > 1 and sum(len(p.images) for p in parts) == len(ds.images)
    assert sum(len(p.annotations) for p in parts) == len(ds.annotations) == len(doc["annotations"])
    for limit in (700, 1300):  # shards of whole images, as from the document itself
        got = write(ds, tmp_path / f"ds{limit}.json", max_file_size=limit)
        assert [p.read_bytes() for p in got] == [p.read_bytes() for p in write(doc, tmp_path / f"d{limit}.json",
                                                                                max_file_size=limit)]
