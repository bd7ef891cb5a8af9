"""COCO as an input: the datumaro fixtures checked by hand, and the drift real COCO files carry."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from prelabel import pipeline
from prelabel.adapters import coco as coco_in
from prelabel.adapters import detect
from prelabel.adapters.base import ReadOptions
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import ReadError
from prelabel.report import Report

DATUMARO = Path("coco/openvinotoolkit__datumaro/tests/assets/coco_dataset")
CVAT_DATUMARO = Path("coco/cvat-ai__datumaro/tests/assets/coco_dataset")


def _read(path: Path, **opts) -> tuple:
    rep = Report()
    ds = coco_in.read(path, options=ReadOptions(**opts), report=rep)
    return ds, rep


def _write(tmp_path: Path, name: str, doc) -> Path:
    p = tmp_path / name
    p.write_text(json.dumps(doc))
    return p


def _checked(ds, self_ap) -> dict:
    doc = to_coco(ds)
    res = validate(doc)
    assert res.ok, res.errors
    if doc["annotations"]:
        assert self_ap(doc, "bbox") == pytest.approx(1.0)
    return doc


# ------------------------------------------------------------------------------------------ real fixtures
def test_instances_train_category_id_gaps(fixtures_dir, self_ap):
    path = fixtures_dir / DATUMARO / "coco_instances/annotations/instances_train.json"
    assert detect(path) == "coco"
    ds, rep = _read(path)
    # the file: categories 1 "a", 2 "b", 4 "c"; one image id 5, a.jpg 10x5; one box [2, 2, 3, 1] of category 2
    assert ds.category_names == ["a", "b", "c"]
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["a.jpg", 10, 5]]
    a = ds.annotations
    assert a[["image", "category", "x", "y", "w", "h", "iscrowd"]].values.tolist() == [[0, "b", 2.0, 2.0, 3.0, 1.0, 0]]
    assert a.loc[0, "segmentation"] is None  # "segmentation": [] is a plain box
    assert a.loc[0, "src_file"] == f"{path}#annotations[0]"
    assert rep.read == 1 and rep.dropped == 0
    doc = _checked(ds, self_ap)
    # ids renumbered from 1 in file order, without the gap: a=1, b=2, c=3; image 5 -> 1
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "a"), (2, "b"), (3, "c")]
    ann = doc["annotations"][0]
    assert (ann["id"], ann["image_id"], ann["category_id"], ann["bbox"], ann["area"]) == (1, 1, 2, [2.0, 2.0, 3.0, 1.0], 3.0)


def test_instances_val_crowd_rle_bbox_is_recomputed(fixtures_dir, self_ap):
    path = fixtures_dir / DATUMARO / "coco_instances/annotations/instances_val.json"
    ds, rep = _read(path)
    a = ds.annotations
    # polygon [0,0, 1,0, 1,2, 0,2] -> box x 0..1, y 0..2; its custom attributes are kept
    assert a.loc[0, ["category", "x", "y", "w", "h", "iscrowd"]].tolist() == ["a", 0.0, 0.0, 1.0, 2.0, 0]
    assert a.loc[0, "attributes"] == {"x": 1, "y": "hello"}
    # crowd RLE size [h=10, w=5], counts [0, 20, 30] column-major: 0 zeros, then 20 ones = columns 0 and 1
    # (10 pixels each), then 30 zeros -> box [0, 0, 2, 10]; the file stores [0, 0, 1, 9]
    assert a.loc[1, ["category", "x", "y", "w", "h", "iscrowd"]].tolist() == ["b", 0.0, 0.0, 2.0, 10.0, 1]
    assert a.loc[1, "segmentation"] == {"size": [10, 5], "counts": [0, 20, 30]}  # kept as RLE, uncompressed
    ch = rep.changes
    assert ch[["reason", "category", "source"]].values.tolist() == [
        ["recomputed", "b", f"{path}#annotations[1]"]]
    assert "[0.0, 0.0, 1.0, 9.0]" in ch.loc[0, "message"]
    doc = _checked(ds, self_ap)
    crowd = doc["annotations"][1]
    assert isinstance(crowd["segmentation"]["counts"], str)  # the writer compresses
    assert (crowd["bbox"], crowd["area"], crowd["iscrowd"]) == ([0.0, 0.0, 2.0, 10.0], 20.0, 1)
    assert self_ap(doc, "segm") == pytest.approx(1.0)


def test_keypoints_with_names_and_0_based_skeleton(fixtures_dir, self_ap):
    path = fixtures_dir / CVAT_DATUMARO / "coco_person_keypoints/annotations/person_keypoints_val.json"
    ds, rep = _read(path)
    cats = ds.categories
    assert cats.loc[0, "keypoints"] == ["a_1", "a_2", "a_3"]
    assert cats.loc[1, "keypoints"] == ["kp1", "kp2", "kp3"]  # category b names none: 3 from its annotation
    # skeleton [[0, 1], [1, 2]] holds index 0, so it is 0-based: +1 each
    assert cats.loc[0, "skeleton"] == [[1, 2], [2, 3]] and cats.loc[1, "skeleton"] == [[1, 2], [2, 3]]
    shifted = [d.source for d in rep.diagnostics if d.code == "skeleton.shifted"]
    assert shifted == [f"{path}#categories[0]", f"{path}#categories[1]"]
    # keypoints [1,2,2, 3,4,2, 2,3,2] -> (3, 3)
    np.testing.assert_array_equal(ds.annotations.loc[0, "keypoints"], [[1, 2, 2], [3, 4, 2], [2, 3, 2]])
    doc = _checked(ds, self_ap)
    assert doc["categories"][0]["skeleton"] == [[1, 2], [2, 3]]
    assert doc["annotations"][0]["keypoints"] == [1.0, 2.0, 2, 3.0, 4.0, 2, 2.0, 3.0, 2]
    assert doc["annotations"][0]["num_keypoints"] == 3


def test_keypoints_category_without_names_or_annotations(fixtures_dir, self_ap):
    path = fixtures_dir / DATUMARO / "coco_person_keypoints/annotations/person_keypoints_train.json"
    ds, rep = _read(path)
    # category a: no names, no annotations, skeleton [[0,1],[1,2]] -> 1-based [[1,2],[2,3]] needs 3 keypoints
    assert ds.categories["keypoints"].tolist() == [["kp1", "kp2", "kp3"], ["kp1", "kp2", "kp3"]]
    np.testing.assert_array_equal(ds.annotations.loc[0, "keypoints"], [[0, 0, 0], [0, 2, 1], [4, 1, 2]])
    doc = _checked(ds, self_ap)
    assert doc["annotations"][0]["num_keypoints"] == 2  # v = 0, 1, 2: two labelled


def test_every_fixture_balances_through_the_pipeline(fixtures_dir, tmp_path, self_ap):
    for path in sorted((fixtures_dir / "coco").rglob("*.json")):
        res = pipeline.convert(path, tmp_path / f"{path.stem}.json")
        assert res.report.balanced, path
        assert self_ap(res.paths[0], "bbox") == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------ drift
def test_ids_from_zero_iscrowd_strings_no_area_no_info(tmp_path, self_ap):
    poly = [[10, 10, 30, 10, 30, 20, 10, 20]]
    p = _write(tmp_path, "gt.json", {
        "images": [{"id": 0, "file_name": "a.jpg", "width": 64, "height": 48},
                   {"id": 1, "file_name": "sub/b.jpg", "width": 32, "height": 32}],
        "categories": [{"id": 0, "name": "cat", "supercategory": "animal"}, {"id": 1, "name": "dog"}],
        "annotations": [
            {"id": 0, "image_id": 0, "category_id": 0, "bbox": [1, 2, 3, 4], "iscrowd": "false"},
            {"id": 1, "image_id": 0, "category_id": 1, "bbox": [5, 5, 5, 5], "iscrowd": False},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 8, 8], "iscrowd": "0"},
            {"id": 3, "image_id": 0, "category_id": 0, "bbox": [10, 10, 20, 10], "segmentation": poly,
             "iscrowd": "true"},
        ]})
    ds, rep = _read(p)
    assert ds.annotations["iscrowd"].tolist() == [0, 0, 0, 1]
    assert [d.message for d in rep.diagnostics if d.code == "value.coerced"] == [
        "iscrowd written as a string or boolean in 4 annotation(s): read as 0/1"]
    doc = _checked(ds, self_ap)
    assert [i["id"] for i in doc["images"]] == [1, 2]
    assert [(c["id"], c["name"], c["supercategory"]) for c in doc["categories"]] == [
        (1, "cat", "animal"), (2, "dog", "")]
    assert [(a["id"], a["image_id"], a["category_id"], a["iscrowd"]) for a in doc["annotations"]] == [
        (1, 1, 1, 0), (2, 1, 2, 0), (3, 1, 1, 1), (4, 2, 2, 0)]
    # the polygon's area (20 x 10), not a stored one (there is none)
    assert doc["annotations"][2]["area"] == 200.0


def test_string_image_ids_match_numbers(tmp_path, self_ap):
    p = _write(tmp_path, "gt.json", {
        "images": [{"id": "img-a", "file_name": "a.jpg", "width": 20, "height": 20},
                   {"id": "7", "file_name": "b.jpg", "width": 20, "height": 20}],
        "categories": [{"id": "1", "name": "cat"}],
        "annotations": [{"id": 1, "image_id": "img-a", "category_id": 1, "bbox": [1, 1, 2, 2]},
                        {"id": 2, "image_id": 7, "category_id": "1", "bbox": [3, 3, 2, 2]}]})
    ds, _ = _read(p)
    assert ds.annotations[["image", "category"]].values.tolist() == [[0, "cat"], [1, "cat"]]
    _checked(ds, self_ap)


def test_missing_image_and_unknown_category_are_dropped_with_location(tmp_path, self_ap):
    p = _write(tmp_path, "gt.json", {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
                        {"id": 2, "image_id": 9, "category_id": 1, "bbox": [1, 1, 2, 2]},
                        {"id": 3, "image_id": 1, "category_id": 5, "bbox": [1, 1, 2, 2]}]})
    ds, rep = _read(p)
    assert len(ds) == 1 and rep.read == 3
    assert rep.drops[["reason", "category", "source"]].values.tolist() == [
        ["dropped.no_image", "cat", f"{p}#annotations[1]"],
        ["dropped.unknown_category", None, f"{p}#annotations[2]"]]
    assert rep.drops["message"].tolist() == ["image_id 9 is not an image of the file",
                                             "category_id 5 is not in categories"]
    _checked(ds, self_ap)


def test_unsafe_file_name_drops_that_image_and_its_annotations(tmp_path):
    p = _write(tmp_path, "gt.json", {
        "images": [{"id": 1, "file_name": "../../etc/passwd", "width": 20, "height": 20},
                   {"id": 2, "file_name": "ok.jpg", "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]}]})
    ds, rep = _read(p)
    assert ds.images["file_name"].tolist() == ["ok.jpg"]
    assert ds.annotations["image"].tolist() == [0]
    assert [(d.code, d.source, d.message) for d in rep.diagnostics] == [(
        "image.unsafe_name", f"{p}#images[0]", "image name '../../etc/passwd' is unsafe ('..' segment escapes the "
        "root); the image is left out and its annotations dropped")]
    assert rep.drops[["reason", "source"]].values.tolist() == [["dropped.no_image", f"{p}#annotations[0]"]]


def test_image_without_size_reads_the_header_under_the_images_root(tmp_path, self_ap):
    root = tmp_path / "imgs"
    root.mkdir()
    Image.new("RGB", (12, 7)).save(root / "a.png")
    p = _write(tmp_path, "gt.json", {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "gone.png"}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},
                        {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2]}]})
    ds, rep = _read(p, images=root)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["a.png", 12, 7]]
    assert rep.dropped_counts() == {"dropped.no_image": 1}
    # the one resolver's header note, shown at the first image whose size it read
    assert [(d.code, d.source, d.message) for d in rep.diagnostics] == [
        ("image.missing", str(p), f"image 'gone.png' has no known size: no width/height in the file, and no such file "
                                  f"under {root}; its annotations are dropped"),
        ("image.size_from_header", f"{p}#images[0]", "1 image size(s) read from the image files' headers")]
    _checked(ds, self_ap)
    ds2, rep2 = _read(p)  # without the root, neither image has a size
    assert len(ds2.images) == 0 and len(ds2) == 0
    assert rep2.dropped_counts() == {"dropped.no_image": 2}
    assert rep2.drops["message"].tolist() == [
        f"image {n!r} has no known size: no width/height in the file, and no images root (ReadOptions(images=...)) "
        "to read it from" for n in ("a.png", "gone.png")]
    assert [(d.code, d.message) for d in rep2.diagnostics][:1] == [
        ("image.missing", "image 'a.png' has no known size: no width/height in the file, and no images root "
                          "(ReadOptions(images=...)) to read it from; its annotations are dropped")]


def test_short_polygon_parts_are_removed(tmp_path, self_ap):
    p = _write(tmp_path, "gt.json", {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 4, 4],
                         "segmentation": [[2, 2, 6, 2, 6, 6, 2, 6], [1, 1, 3, 3]]}]})
    ds, rep = _read(p)
    assert len(ds.annotations.loc[0, "segmentation"]) == 1
    assert rep.changes[["reason", "source"]].values.tolist() == [["repaired", f"{p}#annotations[0]"]]
    _checked(ds, self_ap)


@pytest.mark.parametrize(("ann", "message"), [
    ({"bbox": "oops"}, "bbox must be 4 numbers [x, y, w, h], got 'oops'"),
    ({"bbox": [1, 2, 3, 4], "iscrowd": "maybe"}, "iscrowd must be 0 or 1, got 'maybe'"),
    ({"bbox": [1, 2, 3, 4], "keypoints": [1, 2]}, "keypoints must be a flat list of x, y, v triples"),
    ({"bbox": [1, 2, 3, 4], "segmentation": {"size": [20], "counts": "x"}},
     "segmentation: RLE size must be [height, width], got [20]"),
])
def test_malformed_annotation_is_dropped_naming_the_element(tmp_path, ann, message):
    # issue 15 item 12: one malformed annotation never aborts the file; the good one beside it is kept
    p = _write(tmp_path, "gt.json", {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 20, "height": 20}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, **ann},
                        {"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]})
    ds, rep = _read(p)
    assert ds.boxes.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    drops = rep.drops
    assert drops["reason"].tolist() == ["dropped.invalid"]
    assert drops["source"].tolist() == [f"{p}#annotations[0]"]
    assert drops["message"].tolist() == [message]
    assert rep.read == 2


def test_not_json_raises_with_line(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(ReadError) as e:
        _read(p)
    assert e.value.file == str(p) and e.value.line == 2


# ------------------------------------------------------------------------------------------ results
def _gt_and_results(tmp_path: Path) -> tuple[Path, Path]:
    gt = _write(tmp_path, "gt.json", {
        "info": {}, "images": [{"id": 10, "file_name": "a.jpg", "width": 100, "height": 80},
                               {"id": 11, "file_name": "b.jpg", "width": 100, "height": 80}],
        "categories": [{"id": 3, "name": "person"}, {"id": 7, "name": "car"}],
        "annotations": [{"id": 1, "image_id": 10, "category_id": 3, "bbox": [0, 0, 5, 5], "area": 25,
                         "iscrowd": 0}]})
    res = _write(tmp_path, "results.json", [
        {"image_id": 10, "category_id": 7, "bbox": [10, 20, 30, 40], "score": 0.9},
        {"image_id": 11, "category_id": 3, "bbox": [1.5, 2.5, 3, 4], "score": 0.25},
        {"image_id": 99, "category_id": 3, "bbox": [1, 1, 1, 1], "score": 0.5},
        {"image_id": 10, "category_id": 42, "bbox": [1, 1, 1, 1], "score": 0.5},
    ])
    return gt, res


def test_results_list_takes_images_and_categories_from_images_from(tmp_path, self_ap):
    gt, res = _gt_and_results(tmp_path)
    assert coco_in.detect(res) == 0.5 and coco_in.detect(gt) == 0.9
    ds = pipeline.read(res, options=ReadOptions(images_from=gt))
    assert ds.images["file_name"].tolist() == ["a.jpg", "b.jpg"]
    assert ds.category_names == ["person", "car"]
    assert ds.annotations[["image", "category", "x", "y", "w", "h", "score"]].values.tolist() == [
        [0, "car", 10.0, 20.0, 30.0, 40.0, 0.9], [1, "person", 1.5, 2.5, 3.0, 4.0, 0.25]]
    assert ds.report.drops[["reason", "source"]].values.tolist() == [
        ["dropped.no_image", f"{res}#[2]"], ["dropped.unknown_category", f"{res}#[3]"]]
    doc = _checked(ds, self_ap)
    assert [a["score"] for a in doc["annotations"]] == [0.9, 0.25]


def test_results_without_images_from_says_what_to_give(tmp_path):
    _, res = _gt_and_results(tmp_path)
    with pytest.raises(ReadError) as e:
        _read(res)
    assert "results list" in str(e.value) and e.value.hint == "give ReadOptions(images_from='GT.json')"


def test_results_on_the_command_line(tmp_path):
    from prelabel.cli import main

    gt, res = _gt_and_results(tmp_path)
    out = tmp_path / "out.json"
    r = CliRunner().invoke(main, ["convert", str(res), "--images-from", str(gt), "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    assert [(a["image_id"], a["category_id"], a["score"]) for a in doc["annotations"]] == [(1, 2, 0.9), (2, 1, 0.25)]
    r = CliRunner().invoke(main, ["convert", str(res), "-o", str(tmp_path / "o2.json")])
    assert r.exit_code == 1 and "hint: give --images-from GT.json" in r.output


def test_detect(tmp_path):
    ls_export = _write(tmp_path, "ls.json", [{"id": 1, "data": {"image": "a.jpg"}, "annotations": []}])
    assert coco_in.detect(ls_export) == 0.0
    assert coco_in.detect(_write(tmp_path, "x.json", {"images": []})) == 0.0
    assert coco_in.detect(_write(tmp_path, "y.json", {"images": [], "annotations": []})) == 0.9
    (tmp_path / "z.txt").write_text("{}")
    assert coco_in.detect(tmp_path / "z.txt") == 0.0
    assert coco_in.detect(tmp_path) == 0.0


# ------------------------------------------------------------------------------------------- detection
def test_a_coco_file_of_70_mb_is_detected_without_parsing_it(tmp_path):
    """The "annotations" key 70 MB in, behind the images (as in COCO's own train2017 file): detected from the
    bytes around the keys, a block at a time (it used to look for both keys in the first 1 MB of a file over
    64 MB, and found no format)."""
    import tracemalloc

    from prelabel.adapters import coco

    image = b'{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48},'
    src = tmp_path / "big.json"
    src.write_bytes(b'{"info": {"description": "images first"}, "images": [' + image * 1_300_000
                    + b'{"id": 2, "file_name": "b.jpg", "width": 64, "height": 48}], "annotations": [], '
                    b'"categories": []}')
    assert src.stat().st_size > 70 * 10**6
    tracemalloc.start()
    try:
        assert coco.detect(src) == 0.9
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20  # blocks of 2 MB, never the file


@pytest.mark.parametrize(("text", "score"), [
    (b'{"images": [], "annotations": []}', 0.9),
    (b'\xef\xbb\xbf \n {"annotations": null, "images": [{"id": 1}]}', 0.9),   # a byte order mark, keys in any order
    (b'{"info": {"annotations": []}, "images": []}', 0.0),                      # "annotations" of a nested object
    (b'{"info": {"images": []}, "annotations": []}', 0.0),
    (b'{"images": {"id": 1}, "annotations": []}', 0.0),                         # images not a list
    (b'{"x": "\\"images\\": [", "annotations": []}', 0.0),                     # the key inside a string
    (b'[{"image_id": 3, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]', 0.5),   # a results file
    (b'[{"image_id": 3, "category_id": 1}]', 0.0),
    (b'[{"id": 1, "data": {"image": "a.jpg"}, "annotations": []}]', 0.0),      # a Label Studio export
    (b'[]', 0.0),
    (b'', 0.0),
    (b'not json', 0.0),
])
def test_detection_from_the_keys(text, score, tmp_path):
    from prelabel.adapters import coco

    src = tmp_path / "a.json"
    src.write_bytes(text)
    assert coco.detect(src) == score


def test_a_truncated_coco_file_is_coco_and_its_error_names_the_line(tmp_path):
    from prelabel.cli import main

    src = tmp_path / "cut.json"
    src.write_text('{"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}],\n"annotations": [\n'
                   '{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2]},\n')
    r = CliRunner().invoke(main, ["convert", str(src), "-o", str(tmp_path / "out.json")])
    assert r.exit_code != 0
    assert f"{src}:4" in r.output and "not valid JSON" in r.output
