"""A recorded image size that disagrees with the image file (issue 15, item 1): Label Studio's percent regions
follow the real image, pixel formats keep their recorded frame, and either way a warning names the image and
both sizes; --strict fails. Expected values are worked out by hand in each test."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from upload_support import png_bytes

from prelabel.adapters.base import ReadOptions
from prelabel.errors import StrictError
from prelabel.pipeline import convert

REAL = (200, 100)  # the image file's header; every annotation file below records 100 x 50


def _images(tmp: Path) -> Path:
    d = tmp / "images"
    d.mkdir()
    (d / "a.png").write_bytes(png_bytes(*REAL))
    return d


def _convert(src: Path, tmp: Path, *, stream: bool = False, **kw: object) -> tuple[dict, dict]:
    out, rep = tmp / "out.json", tmp / "report.json"
    convert(src, out, options=ReadOptions(images=tmp / "images"), report_path=rep, stream=stream, **kw)  # type: ignore[arg-type]
    return orjson.loads(out.read_bytes()), orjson.loads(rep.read_bytes())


def _mismatch(report: dict) -> list[str]:
    return [d["message"] for d in report["diagnostics"] if d["code"] == "image.size_mismatch"]


def test_label_studio_percents_follow_the_real_image(tmp_path: Path) -> None:
    _images(tmp_path)
    task = {"id": 1, "data": {"image": "/data/upload/1/0a1b2c3d-a.png"}, "annotations": [{"id": 5, "result": [
        {"id": "r1", "type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 100,
         "original_height": 50, "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rotation": 0,
                                          "rectanglelabels": ["cat"]}}]}]}
    src = tmp_path / "export.json"
    src.write_text(json.dumps([task]))
    for stream in (False, True):
        coco, report = _convert(src, tmp_path, stream=stream)
        # 10% of 200 = 20, 20% of 100 = 20, 30% of 200 = 60, 40% of 100 = 40
        assert coco["images"][0]["width"] == 200 and coco["images"][0]["height"] == 100
        assert coco["annotations"][0]["bbox"] == [20.0, 20.0, 60.0, 40.0]
        assert _mismatch(report) == ["a.png: the annotations record 100x50, the image file is 200x100: the regions, "
                                     "drawn in percent, follow the image file"]


def test_voc_keeps_its_recorded_frame_and_says_so(tmp_path: Path) -> None:
    _images(tmp_path)
    ann = tmp_path / "voc"
    ann.mkdir()
    (ann / "a.xml").write_text("<annotation><filename>a.png</filename><size><width>100</width><height>50</height>"
                               "<depth>3</depth></size><object><name>cat</name><bndbox><xmin>11</xmin><ymin>6</ymin>"
                               "<xmax>30</xmax><ymax>15</ymax></bndbox></object></annotation>")
    coco, report = _convert(ann, tmp_path)
    # VOC is 1-based inclusive: x = 11 - 1 = 10, w = 30 - 11 + 1 = 20; y = 5, h = 10; the size stays 100 x 50
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (100, 50)
    assert coco["annotations"][0]["bbox"] == [10.0, 5.0, 20.0, 10.0]
    assert _mismatch(report) == ["a.png: the annotations record 100x50, the image file is 200x100: the pixel "
                                 "coordinates keep the recorded size"]
    with pytest.raises(StrictError, match="image.size_mismatch"):
        _convert(ann, tmp_path, strict=True)


def test_cvat_and_coco_keep_their_recorded_frame(tmp_path: Path) -> None:
    _images(tmp_path)
    cvat = tmp_path / "cvat.xml"
    cvat.write_text('<?xml version="1.0"?><annotations><version>1.1</version><image id="0" name="a.png" width="100" '
                    'height="50"><box label="cat" occluded="0" xtl="10" ytl="5" xbr="30" ybr="15"/></image>'
                    "</annotations>")
    coco, report = _convert(cvat, tmp_path, stream=True)
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (100, 50)
    assert coco["annotations"][0]["bbox"] == [10.0, 5.0, 20.0, 10.0]
    assert len(_mismatch(report)) == 1
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 100, "height": 50}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10], "area": 200,
                            "iscrowd": 0}]}
    src = tmp_path / "in.json"
    src.write_text(json.dumps(doc))
    coco, report = _convert(src, tmp_path)
    assert (coco["images"][0]["width"], coco["images"][0]["height"]) == (100, 50)
    assert coco["annotations"][0]["bbox"] == [10.0, 5.0, 20.0, 10.0]
    assert _mismatch(report) == ["a.png: the annotations record 100x50, the image file is 200x100: the pixel "
                                 "coordinates keep the recorded size"]


def test_no_note_when_the_sizes_agree_or_the_image_is_not_at_hand(tmp_path: Path) -> None:
    d = _images(tmp_path)
    (d / "a.png").write_bytes(png_bytes(100, 50))
    cvat = tmp_path / "cvat.xml"
    cvat.write_text('<?xml version="1.0"?><annotations><version>1.1</version><image id="0" name="a.png" width="100" '
                    'height="50"><box label="cat" occluded="0" xtl="10" ytl="5" xbr="30" ybr="15"/></image>'
                    "</annotations>")
    assert _mismatch(_convert(cvat, tmp_path)[1]) == []
    (d / "a.png").unlink()
    assert _mismatch(_convert(cvat, tmp_path)[1]) == []


# ---------------------------------------------------------------------------------------------- item 2
def test_two_records_naming_one_image_are_refused_with_both_sources(tmp_path: Path) -> None:
    from prelabel.converters.coco import validate
    from prelabel.errors import ValidationError

    ann = tmp_path / "voc"
    ann.mkdir()
    for name in ("first", "second"):   # two VOC files whose <filename> is the same
        (ann / f"{name}.xml").write_text(
            f"<annotation><filename>a.png</filename><size><width>64</width><height>48</height></size><object>"
            f"<name>{name}</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox>"
            "</object></annotation>")
    with pytest.raises(ValidationError) as e:
        convert(ann, tmp_path / "out.json")
    assert "images[1] (id 2): file_name 'a.png' is also the name of images[0] (id 1): two records name the same " \
           "image" in str(e.value)
    assert not (tmp_path / "out.json").exists()
    doc = {"images": [{"id": 1, "file_name": "x.jpg", "width": 8, "height": 8},
                      {"id": 7, "file_name": "x.jpg", "width": 8, "height": 8}], "categories": [], "annotations": []}
    assert validate(doc).errors == ["images[1] (id 7): file_name 'x.jpg' is also the name of images[0] (id 1): "
                                    "two records name the same image"]


def test_duplicates_across_streamed_chunks_are_found(tmp_path: Path) -> None:
    from prelabel.errors import ValidationError

    csv = tmp_path / "preds.csv"   # two images in two chunks of one row: nothing repeats, nothing refused
    csv.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\na.jpg,8,8,car,1,1,2,2\n"
                   "b.jpg,8,8,car,1,1,2,2\n")
    out = tmp_path / "o.json"
    convert(csv, out, stream=True, chunk_rows=1)
    assert [im["file_name"] for im in orjson.loads(out.read_bytes())["images"]] == ["a.jpg", "b.jpg"]
    from prelabel.converters.coco_write import CocoStreamWriter
    from prelabel.model import Dataset

    w = CocoStreamWriter(tmp_path / "w.json")
    for name in ("a.jpg", "b.jpg", "a.jpg"):
        w.add(Dataset.build(images={"file_name": [name], "width": [8], "height": [8]}))
    with pytest.raises(ValidationError, match=r"images\[2\] \(id 3\): file_name 'a.jpg' is also the name of "
                                              r"images\[0\] \(id 1\)"):
        from prelabel.converters.coco_validate import fail_if_invalid
        fail_if_invalid(w.check(Dataset.build().categories), "w.json")
    w.abort()


# ---------------------------------------------------------------------------------------------- item 3
def test_urls_as_image_names_follow_one_rule(tmp_path: Path) -> None:
    doc = {"images": [{"id": 1, "file_name": "s3://bucket/train/a.jpg", "width": 8, "height": 8},
                      {"id": 2, "file_name": "https://cdn.example.com/imgs/b%20c.jpg?sig=x%2Fy", "width": 8,
                       "height": 8}],
           "categories": [{"id": 1, "name": "car"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0}]}
    src = tmp_path / "in.json"
    src.write_text(json.dumps(doc))
    out = tmp_path / "out.json"
    convert(src, out)
    images = orjson.loads(out.read_bytes())["images"]
    assert [im["file_name"] for im in images] == ["train/a.jpg", "b c.jpg"]
    assert images[0]["attributes"]["url"] == "s3://bucket/train/a.jpg"
    csv = tmp_path / "preds.csv"
    csv.write_text("filename,width,height,class,xmin,ymin,xmax,ymax\ngs://bkt/set/x.png,8,8,car,1,1,3,3\n")
    convert(csv, out)
    assert [im["file_name"] for im in orjson.loads(out.read_bytes())["images"]] == ["set/x.png"]


SAMPLE = Path(__file__).resolve().parent.parent / "sample_data"


def test_two_sources_naming_the_same_images_merge_onto_one_image_each(tmp_path: Path) -> None:
    from prelabel.pipeline import read

    cvat_ds = read(SAMPLE / "cvat" / "annotations.xml")
    ls_ds = read(SAMPLE / "labelstudio" / "export.json", options=ReadOptions(images=SAMPLE / "images"))
    doc, rep = _convert_many([SAMPLE / "cvat" / "annotations.xml", SAMPLE / "labelstudio" / "export.json"], tmp_path)
    # the same five pictures in both: five images, each with the rows of both sources
    assert sorted(im["file_name"] for im in doc["images"]) == sorted(cvat_ds.images["file_name"].tolist())
    per_source = [d.annotations.groupby(d.images["file_name"].to_numpy()[d.annotations["image"]]).size()
                  for d in (cvat_ds, ls_ds)]
    ids = {im["id"]: im["file_name"] for im in doc["images"]}
    got: dict[str, int] = {}
    for a in doc["annotations"]:
        got[ids[a["image_id"]]] = got.get(ids[a["image_id"]], 0) + 1
    assert got == {n: int(per_source[0].get(n, 0) + per_source[1].get(n, 0)) for n in got}
    assert len(doc["annotations"]) == len(cvat_ds.annotations) + len(ls_ds.annotations) == rep["ledger"]["written"] == 14  # 7 + 7
    merged = [d for d in rep["diagnostics"] if d["code"] == "image.merged"]
    assert merged[0]["message"] == (f"street.jpg: named by {SAMPLE / 'cvat' / 'annotations.xml'} and by "
                                    f"{SAMPLE / 'labelstudio' / 'export.json'}: their annotations share one image")


def _convert_many(srcs: list[Path], tmp: Path) -> tuple[dict, dict]:
    convert(srcs, tmp / "out.json", options=ReadOptions(images=SAMPLE / "images"), report_path=tmp / "r.json")
    return json.loads((tmp / "out.json").read_text()), json.loads((tmp / "r.json").read_text())


def test_two_sources_naming_one_image_with_different_sizes_are_refused(tmp_path: Path) -> None:
    from prelabel.errors import UsageError

    def coco(name: str, w: int) -> Path:
        p = tmp_path / name
        p.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": 50}],
                                 "categories": [{"id": 1, "name": "cat"}],
                                 "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                                                  "area": 25, "iscrowd": 0}]}))
        return p

    a, b = coco("a.json", 100), coco("b.json", 200)
    with pytest.raises(UsageError) as e:
        convert([a, b], tmp_path / "out.json")
    assert str(e.value) == (f"'a.jpg' is 100x50 in {a} and 200x50 in {b}: two sources name the same image with "
                            "different sizes")
    assert not (tmp_path / "out.json").exists()
