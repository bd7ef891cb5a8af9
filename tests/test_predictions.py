"""Prediction tables (CSV / Parquet / DataFrame) and supervision-like Detections, checked by hand."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from prelabel import pipeline
from prelabel.adapters import detect
from prelabel.adapters import predictions as pred
from prelabel.adapters.base import ReadOptions
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import ReadError
from prelabel.report import Report

TF_CSV = """filename,width,height,class,xmin,ymin,xmax,ymax
cat1.jpg,640,480,cat,10,20,110,220
cat1.jpg,640,480,dog,300,100,400,300
dog2.jpg,320,240,dog,0,0,50,40
"""


def _checked(ds, self_ap) -> dict:
    doc = to_coco(ds)
    res = validate(doc)
    assert res.ok, res.errors
    assert self_ap(doc, "bbox") == pytest.approx(1.0)
    return doc


def _boxes(ds) -> list[list[float]]:
    return ds.annotations[["x", "y", "w", "h"]].to_numpy().tolist()


# ------------------------------------------------------------------------------------------ files
def test_tensorflow_object_detection_csv_needs_no_options(tmp_path, self_ap):
    p = tmp_path / "tf.csv"
    p.write_text(TF_CSV)
    assert detect(p) == "predictions"
    ds = pipeline.read(p)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["cat1.jpg", 640, 480],
                                                                        ["dog2.jpg", 320, 240]]
    assert ds.category_names == ["cat", "dog"]
    # xyxy -> xywh: (10, 20, 110-10, 220-20), (300, 100, 100, 200), (0, 0, 50, 40)
    assert _boxes(ds) == [[10, 20, 100, 200], [300, 100, 100, 200], [0, 0, 50, 40]]
    assert ds.annotations["image"].tolist() == [0, 0, 1]
    # the header is line 1, so the first row is line 2
    assert ds.annotations["src_line"].tolist() == [2, 3, 4]
    assert set(ds.annotations["src_file"]) == {str(p)}
    assert ds.annotations["score"].isna().all()
    doc = _checked(ds, self_ap)
    assert "score" not in doc["annotations"][0]
    assert ds.report.read == 3 and ds.report.dropped == 0 and ds.report.diagnostics == []


def test_tf_csv_with_score_and_min_score(tmp_path, self_ap):
    p = tmp_path / "tf.csv"
    p.write_text("filename,width,height,class,xmin,ymin,xmax,ymax,score\n"
                 "a.jpg,100,100,cat,1,1,11,11,0.9\na.jpg,100,100,cat,5,5,9,9,0.1\n")
    res = pipeline.convert(p, tmp_path / "out.json", min_score=0.5)
    doc = json.loads((tmp_path / "out.json").read_text())
    assert [(a["bbox"], a["score"]) for a in doc["annotations"]] == [([1.0, 1.0, 10.0, 10.0], 0.9)]
    assert res.report.drops[["reason", "source"]].values.tolist() == [["dropped.min_score", f"{p}:3"]]
    assert res.report.balanced
    assert self_ap(doc) == pytest.approx(1.0)


def test_tsv_and_parquet(tmp_path, self_ap):
    pytest.importorskip("pyarrow")
    df = pd.read_csv(io.StringIO(TF_CSV))
    tsv = tmp_path / "p.tsv"
    df.to_csv(tsv, sep="\t", index=False)
    pq = tmp_path / "p.parquet"
    df.to_parquet(pq)
    assert pred.detect(tsv) == 0.9 and pred.detect(pq) == 0.9
    for path in (tsv, pq):
        ds = pipeline.read(path)
        assert _boxes(ds) == [[10, 20, 100, 200], [300, 100, 100, 200], [0, 0, 50, 40]]
        _checked(ds, self_ap)
    # Parquet has no header line: rows are numbered from 1
    assert pipeline.read(pq).annotations["src_line"].tolist() == [1, 2, 3]


def test_parquet_without_pyarrow_says_what_to_install(tmp_path, monkeypatch):
    p = tmp_path / "p.parquet"
    p.write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    assert pred.detect(p) == 0.5  # so that reading it explains the missing package
    with pytest.raises(ReadError) as e:
        pred.read(p, options=ReadOptions(), report=Report())
    assert str(e.value) == f"{p}: reading Parquet files needs pyarrow, which is not installed"
    assert e.value.hint == "pip install prelabel[parquet]"


def test_a_non_numeric_value_drops_its_row_at_its_line(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("filename,width,height,class,xmin,ymin,xmax,ymax,score\na.jpg,10,10,cat,1,1,5,5,0.5\n"
                 "a.jpg,10,10,cat,abc,1,5,5,0.5\na.jpg,10,10,cat,1,1,5,5,high\n")
    ds = pipeline.read(p)
    assert ds.annotations[["x", "y", "w", "h", "score"]].values.tolist() == [[1.0, 1.0, 4.0, 4.0, 0.5]]
    assert ds.report.drops[["reason", "source", "message"]].values.tolist() == [
        ["dropped.invalid", f"{p}:3", "column 'xmin' (x1): 'abc' is not a number"],
        ["dropped.invalid", f"{p}:4", "column 'score' (score): 'high' is not a number"]]


def test_malformed_csv_rows(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,10,10,cat,1,1,5,5\n"
                 "a.jpg,10,10,cat,1,1,5,5,9\n")
    with pytest.raises(ReadError) as e:
        pipeline.read(p)
    assert e.value.line == 3 and "Expected 8 fields in line 3, saw 9" in str(e.value)
    # every row one field too many: pandas would silently shift the columns
    p.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,10,10,cat,1,1,5,5,9\n")
    with pytest.raises(ReadError) as e:
        pipeline.read(p)
    assert str(e.value) == f"{p}: rows have more fields than the header names"


def test_nan_boxes_are_dropped_here_with_their_line(tmp_path, self_ap):
    p = tmp_path / "nan.csv"
    p.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,10,10,cat,1,1,5,5\n"
                 "a.jpg,10,10,cat,,1,5,5\na.jpg,10,10,cat,nan,1,5,5\na.jpg,10,10,cat,1,1,inf,5\n")
    ds = pipeline.read(p)
    assert _boxes(ds) == [[1, 1, 4, 4]]
    drops = ds.report.drops
    assert drops[["reason", "source"]].values.tolist() == [
        ["dropped.nonfinite", f"{p}:3"], ["dropped.nonfinite", f"{p}:4"], ["dropped.nonfinite", f"{p}:5"]]
    assert ds.report.read == 4
    _checked(ds, self_ap)


def test_missing_columns_list_what_was_found_and_the_roles_missing():
    df = pd.DataFrame({"foo": ["a.jpg"], "class": ["cat"], "xmin": [1], "ymin": [1], "xmax": [2], "ymax": [2]})
    with pytest.raises(ReadError) as e:
        pred.from_dataframe(df)
    assert str(e.value) == ("dataframe: missing columns for role(s): image (image, filename, file_name, image_path, "
                            "img_filename, path, or image_id). Columns found: foo, class, xmin, ymin, xmax, ymax")
    assert e.value.hint.startswith("name them with ReadOptions(columns={ROLE: NAME})")  # Python names
    ds = pred.from_dataframe(df, columns={"image": "foo"}, image_sizes={"a.jpg": (10, 10)})
    assert _boxes(ds) == [[1, 1, 1, 1]]
    with pytest.raises(ReadError) as e:
        pred.from_dataframe(df[["foo", "class"]], columns={"image": "foo"})
    assert "box (xmin, ymin, xmax, ymax | x, y, w, h | cx, cy, w, h)" in str(e.value)


def test_command_line_column_and_names_options(tmp_path, self_ap):
    from prelabel.cli import main

    p = tmp_path / "preds.csv"
    p.write_text("img,cls,x1,y1,x2,y2,conf,img_width,img_height\nq.jpg,1,2,3,12,8,0.7,20,10\n")
    out = tmp_path / "out.json"
    r = CliRunner().invoke(main, ["convert", str(p), "--from", "predictions", "--column", "image=img",
                                  "--names", "cat,dog", "-o", str(out)])
    assert r.exit_code == 0, r.output
    doc = json.loads(out.read_text())
    # class 1 -> "dog"; both names listed, in index order
    assert [c["name"] for c in doc["categories"]] == ["cat", "dog"]
    a = doc["annotations"][0]
    assert (a["category_id"], a["bbox"], a["score"]) == (2, [2.0, 3.0, 10.0, 5.0], 0.7)
    assert doc["images"] == [{"id": 1, "file_name": "q.jpg", "width": 20, "height": 10}]
    assert self_ap(doc) == pytest.approx(1.0)


def test_detect_needs_box_like_columns(tmp_path):
    yes = tmp_path / "a.csv"
    yes.write_text("image,label,x,y,w,h\n")
    no = tmp_path / "b.csv"
    no.write_text("image,label,value\n")
    assert pred.detect(yes) == 0.9 and pred.detect(no) == 0.0
    assert pred.detect(tmp_path) == 0.0


# ------------------------------------------------------------------------------------------ DataFrames
# One box on a 200 x 100 image: x = 20, y = 10, w = 60, h = 40 (so x2 = 80, y2 = 50, centre (50, 30)).
# Normalized: x / 200, y / 100 -> xyxy (0.1, 0.1, 0.4, 0.5), xywh (0.1, 0.1, 0.3, 0.4), cxcywh (0.25, 0.3, 0.3, 0.4)
@pytest.mark.parametrize(("cols", "normalized", "box_format"), [
    ({"xmin": 20, "ymin": 10, "xmax": 80, "ymax": 50}, False, None),
    ({"x1": 20, "y1": 10, "x2": 80, "y2": 50}, None, None),
    ({"x": 20, "y": 10, "w": 60, "h": 40}, False, None),
    ({"x": 20, "y": 10, "width": 60, "height": 40}, None, "xywh"),
    ({"cx": 50, "cy": 30, "w": 60, "h": 40}, False, None),
    ({"x_center": 50, "y_center": 30, "width": 60, "height": 40}, None, None),
    ({"xmin": 0.1, "ymin": 0.1, "xmax": 0.4, "ymax": 0.5}, True, None),
    ({"x": 0.1, "y": 0.1, "w": 0.3, "h": 0.4}, True, "xywh"),
    ({"cx": 0.25, "cy": 0.3, "w": 0.3, "h": 0.4}, True, None),
])
def test_box_formats_absolute_and_normalized(cols, normalized, box_format, self_ap):
    df = pd.DataFrame({"image": ["a.jpg"], "label": ["cat"], **{k: [v] for k, v in cols.items()},
                       "img_width": [200], "img_height": [100]})
    ds = pred.from_dataframe(df, normalized=normalized, box_format=box_format)
    assert _boxes(ds)[0] == pytest.approx([20, 10, 60, 40])
    assert ds.images[["width", "height"]].values.tolist() == [[200, 100]]
    assert ds.report.diagnostics == []
    _checked(ds, self_ap)


def test_values_all_in_unit_range_are_read_as_normalized_with_a_warning(self_ap):
    df = pd.DataFrame({"image": ["a.jpg"], "label": ["cat"], "cx": [0.25], "cy": [0.3], "w": [0.3], "h": [0.4]})
    ds = pred.from_dataframe(df, image_sizes={"a.jpg": (200, 100)})
    assert _boxes(ds)[0] == pytest.approx([20, 10, 60, 40])
    assert [d.code for d in ds.report.diagnostics] == ["coordinates.suspect"]
    assert "read as normalized" in ds.report.diagnostics[0].message
    _checked(ds, self_ap)
    # on a 2 x 2 image, boxes within [0, 1] may well be pixels: no guess
    tiny = pred.from_dataframe(df, image_sizes={"a.jpg": (2, 2)})
    assert _boxes(tiny)[0] == pytest.approx([0.1, 0.1, 0.3, 0.4])
    assert tiny.report.diagnostics == []
    # said explicitly: no warning
    assert pred.from_dataframe(df, image_sizes={"a.jpg": (200, 100)}, normalized=True).report.diagnostics == []


def test_image_sizes_from_mapping_table_and_headers(tmp_path, self_ap):
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(root / "sub" / "c.png")
    df = pd.DataFrame({"file_name": ["a.jpg", "b.jpg", "sub/c.png", "d.jpg"], "class": ["x"] * 4,
                       "xmin": [1.0] * 4, "ymin": [1.0] * 4, "xmax": [5.0] * 4, "ymax": [5.0] * 4})
    table = pd.DataFrame({"file_name": ["b.jpg"], "width": [50], "height": [40]})
    ds = pred.from_dataframe(df, image_sizes={"a.jpg": (64, 48)}, images=root)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["a.jpg", 64, 48], ["sub/c.png", 30, 20]]
    assert ds.images["path"].tolist()[1] == str(root / "sub" / "c.png")
    # b.jpg and d.jpg: no size anywhere -> dropped with their rows (1-based: rows 2 and 4)
    assert ds.report.drops[["reason", "source"]].values.tolist() == [
        ["dropped.no_image", "dataframe:2"], ["dropped.no_image", "dataframe:4"]]
    assert ds.report.drops["message"].tolist() == [
        f"image {n!r} has no known size: no width/height columns or image_sizes, and no such file under {root}"
        for n in ("b.jpg", "d.jpg")]
    ds2 = pred.from_dataframe(df.iloc[:2], image_sizes=table)
    assert ds2.images[["file_name", "width", "height"]].values.tolist() == [["b.jpg", 50, 40]]
    _checked(ds, self_ap)


def test_image_ids_with_an_image_table():
    df = pd.DataFrame({"image_id": [7, 7, 3], "category": ["a", "b", "a"], "x": [0, 1, 2], "y": [0, 1, 2],
                       "w": [1, 1, 1], "h": [1, 1, 1]})
    table = pd.DataFrame({"id": [3, 7], "file_name": ["three.jpg", "seven.jpg"], "width": [10, 20],
                          "height": [10, 20]})
    ds = pred.from_dataframe(df, image_sizes=table)
    assert ds.images[["file_name", "width"]].values.tolist() == [["seven.jpg", 20], ["three.jpg", 10]]
    assert ds.annotations["image"].tolist() == [0, 0, 1]


def test_class_index_with_names_and_out_of_range(self_ap):
    df = pd.DataFrame({"image": ["a.jpg"] * 3, "class_id": [1, 0, 5], "xmin": [0, 2, 4], "ymin": [0, 2, 4],
                       "xmax": [2, 4, 6], "ymax": [2, 4, 6], "width": [10] * 3, "height": [10] * 3})
    ds = pred.from_dataframe(df, names=["cat", "dog", "bird"])
    assert ds.annotations["category"].tolist() == ["dog", "cat"]
    assert ds.category_names == ["cat", "dog", "bird"]
    assert ds.report.drops[["reason", "source", "message"]].values.tolist() == [
        ["dropped.unknown_category", "dataframe:3", "class index 5 is not in names (0..2)"]]
    _checked(ds, self_ap)
    plain = pred.from_dataframe(df)  # no names: the index is the name
    assert plain.annotations["category"].tolist() == ["1", "0", "5"]


def test_scores_min_score_and_coco_score(self_ap):
    df = pd.DataFrame({"image": ["a.jpg"] * 3, "label": ["cat"] * 3, "x": [0, 2, 4], "y": [0, 2, 4], "w": [2] * 3,
                       "h": [2] * 3, "confidence": [0.95, 0.3, 0.5]})
    ds = pred.from_dataframe(df, image_sizes={"a.jpg": (10, 10)}, min_score=0.5)
    assert ds.annotations["score"].tolist() == [0.95, 0.5]
    assert ds.report.drops[["reason", "source"]].values.tolist() == [["dropped.min_score", "dataframe:2"]]
    doc = _checked(ds, self_ap)
    assert [a["score"] for a in doc["annotations"]] == [0.95, 0.5]


def test_polygon_mask_and_keypoint_columns(self_ap):
    rle = {"size": [10, 5], "counts": [0, 20, 30]}  # columns 0 and 1 set: box [0, 0, 2, 10]
    df = pd.DataFrame({
        "image": ["a.jpg", "a.jpg", "a.jpg"], "label": ["p", "m", "k"],
        "x": [0.0, 0.0, 1.0], "y": [0.0, 0.0, 1.0], "w": [4.0, 2.0, 2.0], "h": [4.0, 10.0, 2.0],
        "polygon": ["[[1, 1, 3, 1, 3, 4, 1, 4]]", None, None],
        "mask": [None, json.dumps(rle), None],
        "keypoints": [None, None, [[1.5, 1.5, 2], [2.5, 2.5, 1]]],
        "width": [5] * 3, "height": [10] * 3})
    ds = pred.from_dataframe(df)
    a = ds.annotations
    # polygon x 1..3, y 1..4 -> box (1, 1, 2, 3): the given (0, 0, 4, 4) is recomputed
    assert _boxes(ds) == [[1, 1, 2, 3], [0, 0, 2, 10], [1, 1, 2, 2]]
    np.testing.assert_array_equal(a.loc[0, "segmentation"][0], [1, 1, 3, 1, 3, 4, 1, 4])
    assert a.loc[1, "segmentation"] == rle
    np.testing.assert_array_equal(a.loc[2, "keypoints"], [[1.5, 1.5, 2], [2.5, 2.5, 1]])
    assert ds.report.changes[["reason", "source"]].values.tolist() == [["recomputed", "dataframe:1"]]
    doc = to_coco(ds)
    assert validate(doc).ok
    assert doc["annotations"][0]["area"] == 6.0  # 2 x 3 rectangle
    assert self_ap(doc) == pytest.approx(1.0)


def test_absolute_and_unsafe_image_names():
    df = pd.DataFrame({"path": ["/data/run/imgs/a.jpg", "/data/run/imgs/sub/b.jpg", "../escape.jpg"],
                       "class": ["c"] * 3, "xmin": [0] * 3, "ymin": [0] * 3, "xmax": [2] * 3, "ymax": [2] * 3,
                       "width": [4] * 3, "height": [4] * 3})
    ds = pred.from_dataframe(df)
    assert ds.images["file_name"].tolist() == ["a.jpg", "sub/b.jpg"]
    assert [d.code for d in ds.report.diagnostics] == ["image.unsafe_name"]
    assert ds.report.drops[["reason", "source"]].values.tolist() == [["dropped.no_image", "dataframe:3"]]
    assert "'..' segment escapes the root" in ds.report.drops["message"][0]
    with_root = pred.from_dataframe(df.iloc[:2], images="/data/run")
    assert with_root.images["file_name"].tolist() == ["imgs/a.jpg", "imgs/sub/b.jpg"]


def test_absolute_image_paths_under_a_relative_images_root(tmp_path, monkeypatch):
    # the table names images by absolute path, the root is given relative to the working directory
    root = tmp_path / "imgs"
    (root / "sub").mkdir(parents=True)
    Image.new("RGB", (30, 20)).save(root / "a.png")
    Image.new("RGB", (16, 12)).save(root / "sub" / "b.png")
    df = pd.DataFrame({"path": [str(root / "a.png"), str(root / "sub" / "b.png")], "class": ["c", "c"],
                       "xmin": [1.0, 2.0], "ymin": [1.0, 2.0], "xmax": [5.0, 6.0], "ymax": [5.0, 6.0]})
    monkeypatch.chdir(tmp_path)
    ds = pred.from_dataframe(df, images="imgs")
    # both sizes come from the headers; names are relative to the root
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["a.png", 30, 20], ["sub/b.png", 16, 12]]
    assert len(ds.report.drops) == 0
    assert len(ds.annotations) == 2


def test_a_million_rows(self_ap):
    n = 1_000_000
    rng = np.random.default_rng(7)
    img = rng.integers(0, 1000, n)
    x1 = rng.uniform(0, 500, n)
    y1 = rng.uniform(0, 300, n)
    df = pd.DataFrame({
        "filename": np.array([f"img_{i:04d}.jpg" for i in range(1000)], dtype=object)[img],
        "class_id": rng.integers(0, 3, n), "xmin": x1, "ymin": y1, "xmax": x1 + 20.0, "ymax": y1 + 10.0,
        "score": rng.uniform(0.01, 1.0, n), "width": 640, "height": 480})
    ds = pred.from_dataframe(df, names=["a", "b", "c"])
    assert len(ds) == n and ds.report.read == n and ds.report.dropped == 0
    assert len(ds.images) == len(np.unique(img))
    assert ds.annotations["category"].value_counts().sort_index().tolist() == \
        np.bincount(df["class_id"], minlength=3).tolist()
    np.testing.assert_allclose(ds.annotations["w"].to_numpy(), 20.0)
    np.testing.assert_allclose(ds.annotations["x"].to_numpy(), x1)
    assert ds.annotations.loc[n - 1, "src_line"] == n
    head = ds.replace(images=ds.images, annotations=ds.annotations.iloc[:50])
    assert validate(to_coco(head)).ok
