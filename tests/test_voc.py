"""The Pascal VOC adapter, checked against real third-party files and small synthetic ones.

Every expected box is computed by hand in a comment from the XML text. VOC 1-based (default): a box
``xmin..xmax`` of inclusive pixel indices covers continuous ``[xmin - 1, xmax)``, so ``x = xmin - 1`` and
``w = xmax - xmin + 1``. 0-based (``voc_origin=0``): ``x = xmin``, ``w = xmax - xmin``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from prelabel.adapters import voc
from prelabel.adapters.base import ReadOptions
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import ReadError
from prelabel.model import Dataset
from prelabel.report import Report

DATUMARO = Path("voc/openvinotoolkit__datumaro/tests/assets")


def _read(path: Path, **kw: object) -> tuple[Dataset, Report]:
    report = Report()
    ds = voc.read(path, options=ReadOptions(**kw), report=report)  # type: ignore[arg-type]
    return ds, report


def _codes(report: Report) -> list[str]:
    return [d.code for d in report.diagnostics]


def _xml(objects: str = "", *, filename: str = "a.jpg", size: str | None = "<size><width>100</width>"
         "<height>50</height><depth>3</depth></size>") -> str:
    return f"<annotation><filename>{filename}</filename>{size or ''}{objects}</annotation>\n"


def _obj(name: str, xmin: object, ymin: object, xmax: object, ymax: object, extra: str = "") -> str:
    return (f"<object><name>{name}</name>{extra}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def _png(path: Path, w: int, h: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h)).save(path)


# ------------------------------------------------------------------------------------------ real fixtures
def test_datumaro_voc_dataset1_boxes_parts_actions(fixtures_dir, self_ap):
    root = fixtures_dir / DATUMARO / "voc_dataset/voc_dataset1"
    assert voc.detect(root) == 1.0
    ds, report = _read(root)
    img = ds.images.iloc[0]
    # <size> says 20x10 (the JPEG itself is 15x10: the XML's size is what the file says and is kept)
    assert (img.file_name, img.width, img.height) == ("2007_000001.jpg", 20, 10)
    assert img.path == str(root / "JPEGImages" / "2007_000001.jpg")
    assert img.src_file == "Annotations/2007_000001.xml"
    a = ds.annotations
    assert a["category"].tolist() == ["cat", "person"]
    assert ds.category_names == ["cat", "person"]
    # cat: xmin 1, ymin 2, xmax 3, ymax 4 -> x 0, y 1, w 3-1+1 = 3, h 4-2+1 = 3
    # person: 4, 5, 6, 7 -> x 3, y 4, w 3, h 3
    assert ds.boxes.tolist() == [[0.0, 1.0, 3.0, 3.0], [3.0, 4.0, 3.0, 3.0]]
    # <object> start tags on lines 11 and 23 of the file
    assert a["src_line"].tolist() == [11, 23]
    assert a["src_file"].tolist() == ["Annotations/2007_000001.xml"] * 2
    assert a.loc[0, "attributes"] == {"pose": "Unspecified", "truncated": 1, "difficult": 0}
    person = a.loc[1, "attributes"]
    # part head: xmin 5.5, ymin 6, xmax 7.5, ymax 8 -> x 4.5, y 5, w 7.5-5.5+1 = 3, h 8-6+1 = 3
    assert person["parts"] == [{"name": "head", "bbox": [4.5, 5.0, 3.0, 3.0]}]
    assert person["actions"] == {"other": 1, "jumping": 0, "phoning": 1, "playinginstrument": 0, "reading": 1,
                                 "ridingbike": 0, "ridinghorse": 1, "running": 0, "takingphoto": 1,
                                 "usingcomputer": 0, "walking": 1}
    assert "pose" not in person and "truncated" not in person  # absent in the file, not invented
    assert report.read == 2 and report.diagnostics == []
    coco = to_coco(ds)
    assert validate(coco).ok
    assert self_ap(coco) == pytest.approx(1.0)


def test_datumaro_voc_dataset1_zero_based(fixtures_dir):
    ds, report = _read(fixtures_dir / DATUMARO / "voc_dataset/voc_dataset1", voc_origin=0)
    # cat 1,2,3,4 -> x 1, y 2, w 3-1 = 2, h 4-2 = 2; person 4,5,6,7 -> 4, 5, 2, 2
    assert ds.boxes.tolist() == [[1.0, 2.0, 2.0, 2.0], [4.0, 5.0, 2.0, 2.0]]
    # part 5.5, 6, 7.5, 8 -> 5.5, 6, 2, 2
    assert ds.annotations.loc[1, "attributes"]["parts"][0]["bbox"] == [5.5, 6.0, 2.0, 2.0]


def test_roboflow_zero_based_files(fixtures_dir, self_ap):
    root = fixtures_dir / DATUMARO / "roboflow_dataset/voc"
    assert voc.detect(root) == 0.8  # a folder of VOC files, no Annotations/
    ds, report = _read(root, voc_origin=0)
    assert ds.images["file_name"].tolist() == ["train_001.jpg", "train_002.jpg", "val_001.jpg"]
    assert ds.images["src_file"].tolist() == ["train/train_001.xml", "train/train_002.xml", "val/val_001.xml"]
    assert ds.images[["width", "height"]].to_numpy().tolist() == [[10, 5]] * 3
    # tag order is xmin, xmax, ymin, ymax in these files:
    # train_001 label_0: xmin 2, xmax 5, ymin 1, ymax 2 -> [2, 1, 3, 1]
    # train_002 label_1: 0, 2, 0, 4 -> [0, 0, 2, 4]
    # val_001 label_0: 0, 1, 0, 2 -> [0, 0, 1, 2]; label_1: 0, 9, 0, 1 -> [0, 0, 9, 1]
    assert ds.boxes.tolist() == [[2.0, 1.0, 3.0, 1.0], [0.0, 0.0, 2.0, 4.0], [0.0, 0.0, 1.0, 2.0],
                                 [0.0, 0.0, 9.0, 1.0]]
    assert ds.annotations["image"].tolist() == [0, 1, 2, 2]
    assert ds.category_names == ["label_0", "label_1"]
    assert ds.annotations.loc[1, "attributes"] == {"truncated": 0, "difficult": 0, "occluded": 0}
    assert ds.annotations.loc[0, "attributes"] is None  # train_001's object has no other children
    assert ds.annotations["src_line"].tolist() == [14, 14, 14, 26]
    assert "coordinates.suspect" not in _codes(report)
    coco = to_coco(ds)
    assert validate(coco).ok
    assert self_ap(coco) == pytest.approx(1.0)


def test_roboflow_read_as_one_based_gets_one_hint_per_file(fixtures_dir):
    ds, report = _read(fixtures_dir / DATUMARO / "roboflow_dataset/voc")
    # train_001: 2, 1, 5, 2 (1-based) -> x 1, y 0, w 5-2+1 = 4, h 2-1+1 = 2; train_002: 0,0,2,4 -> -1, -1, 3, 5
    assert ds.boxes[:2].tolist() == [[1.0, 0.0, 4.0, 2.0], [-1.0, -1.0, 3.0, 5.0]]
    suspects = [d for d in report.diagnostics if d.code == "coordinates.suspect"]
    # train_002 has a 0; val_001 has zeros in both of its objects but gets a single diagnostic
    assert [d.source for d in suspects] == ["train/train_002.xml:14", "val/val_001.xml:14"]
    assert all("voc_origin=0" in d.message for d in suspects)  # Python names to a Python caller


def test_datumaro_voc_dataset2_without_size(fixtures_dir, tmp_path):
    root = fixtures_dir / DATUMARO / "voc_dataset/voc_dataset2"
    assert voc.detect(root) == 1.0
    # neither file has <size>; @.xml has no objects, a.xml has one, and there are no images
    with pytest.raises(ReadError) as e:
        _read(root)
    assert e.value.file == "Annotations/a.xml"
    assert "no <size>" in str(e.value) and "'a.jpg'" in str(e.value)
    assert "ReadOptions(images=...)" in e.value.hint  # Python names to a Python caller

    _png(tmp_path / "a.jpg", 7, 9)  # a PNG under a .jpg name: the header decides
    ds, report = _read(root, images=tmp_path)
    assert ds.images[["file_name", "width", "height"]].to_numpy().tolist() == [["a.jpg", 7, 9]]
    # a.xml: 1.0, 2.0, 4.0, 6.0 -> x 0, y 1, w 4-1+1 = 4, h 6-2+1 = 5
    assert ds.boxes.tolist() == [[0.0, 1.0, 4.0, 5.0]]
    assert ds.annotations.loc[0, "attributes"] == {"truncated": 0, "occluded": 1, "difficult": 0}
    # @.xml's image row is gone, so a.xml's object points at image row 0
    assert ds.annotations[["image", "src_file", "src_line"]].to_numpy().tolist() == [[0, "Annotations/a.xml", 10]]
    notes = {(d.code, d.source) for d in report.diagnostics}
    assert ("image.size_from_header", "Annotations/a.xml") in notes
    assert ("file.skipped", "Annotations/@.xml") in notes  # no size, no image, no objects: nothing lost

    _png(tmp_path / "@.jpg", 3, 4)
    ds, _ = _read(root, images=tmp_path)
    assert ds.images["file_name"].tolist() == ["@.jpg", "a.jpg"]  # sorted by XML path: '@' < 'a'
    assert ds.annotations["image"].tolist() == [1]


# ------------------------------------------------------------------------------------------ detection
def test_detect(tmp_path):
    (tmp_path / "cvat").mkdir()
    (tmp_path / "cvat" / "annotations.xml").write_text(
        "<?xml version='1.0'?>\n<annotations><version>1.1</version></annotations>\n")
    assert voc.detect(tmp_path / "cvat") == 0.0
    assert voc.detect(tmp_path / "cvat" / "annotations.xml") == 0.0
    (tmp_path / "notes.txt").write_text("<annotation>")
    assert voc.detect(tmp_path / "notes.txt") == 0.0
    single = tmp_path / "one.xml"
    single.write_text("<?xml version='1.0'?>\n<!-- a comment <x> -->\n" + _xml())
    assert voc.detect(single) == 0.9
    (tmp_path / "root" / "Annotations").mkdir(parents=True)
    (tmp_path / "root" / "Annotations" / "a.xml").write_text(_xml())
    assert voc.detect(tmp_path / "root") == 1.0
    assert voc.detect(tmp_path / "missing") == 0.0


# ------------------------------------------------------------------------------------------ security and errors
XXE = """<?xml version="1.0"?>
<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>
<annotation><filename>&e;</filename></annotation>
"""
LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<annotation><filename>&lol4;</filename></annotation>
"""


@pytest.mark.parametrize("text", [XXE, LAUGHS], ids=["xxe", "billion-laughs"])
def test_dtd_and_entities_are_refused(tmp_path, text):
    f = tmp_path / "evil.xml"
    f.write_text(text)
    with pytest.raises(ReadError) as e:
        _read(f)
    # the <!DOCTYPE is on line 2
    assert str(e.value) == "evil.xml:2: XML entities/DTD are not allowed"
    # inside a folder, the file is named relative to it
    with pytest.raises(ReadError, match=r"^evil.xml:2: XML entities/DTD are not allowed$"):
        _read(tmp_path)


def test_dtd_in_utf16_is_refused(tmp_path):
    f = tmp_path / "u16.xml"
    f.write_bytes(('<?xml version="1.0" encoding="UTF-16"?>\n<!DOCTYPE x [<!ENTITY e "zz">]>'
                   "<annotation><filename>&e;</filename></annotation>").encode("utf-16"))
    with pytest.raises(ReadError, match="u16.xml.*XML entities/DTD are not allowed"):
        _read(f)


def test_doctype_text_in_a_comment_is_not_a_dtd(tmp_path):
    f = tmp_path / "c.xml"
    f.write_text(_xml(_obj("cat", 1, 1, 2, 2)).replace("<filename>", "<!-- <!DOCTYPE x> --><filename>"))
    ds, _ = _read(f)
    # 1, 1, 2, 2 -> 0, 0, 2, 2
    assert ds.boxes.tolist() == [[0.0, 0.0, 2.0, 2.0]]


def test_malformed_xml_names_file_and_line(tmp_path):
    f = tmp_path / "bad.xml"
    # line 3 opens <object>, line 4 closes </annotation> while <object> is still open
    f.write_text("<annotation>\n<filename>a.jpg</filename>\n<object><name>x</name>\n</annotation>\n")
    with pytest.raises(ReadError) as e:
        _read(f)
    assert e.value.file == "bad.xml" and e.value.line == 4
    assert str(e.value).startswith("bad.xml:4: malformed XML: mismatched tag")


def test_empty_file_is_a_read_error(tmp_path):
    (tmp_path / "empty.xml").write_bytes(b"")
    with pytest.raises(ReadError, match=r"^empty.xml:1: malformed XML"):
        _read(tmp_path / "empty.xml")


def test_non_numeric_coordinate_drops_the_object_at_its_line(tmp_path):
    f = tmp_path / "n.xml"
    # objects start on lines 2 and 3; the second has ymax "x2": dropped (issue 15 item 12), the first kept
    f.write_text(_xml("\n" + _obj("a", 1, 1, 2, 2) + "\n" + _obj("b", 1, 1, 2, "x2") + "\n"))
    ds, rep = _read(f)
    assert ds.annotations["category"].tolist() == ["a"]
    assert rep.drops[["reason", "category", "source", "message"]].values.tolist() == [
        ["dropped.invalid", "b", "n.xml:3", "object 2: <ymax> is not a number: 'x2' (<bndbox/ymax>)"]]


@pytest.mark.parametrize(("obj", "message"), [
    ("<object><name>a</name></object>", "object 1 has no <bndbox>"),
    ("<object><name>a</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax></bndbox></object>",
     "object 1: <bndbox> has no <ymax> (<bndbox/ymax>)"),
    ("<object><name> </name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>2</xmax><ymax>2</ymax></bndbox></object>",
     "object 1 has no <name> (<name>)"),
    (_obj("a", 1, 1, 2, 2, "<part><name>hand</name><bndbox><xmin>q</xmin></bndbox></part>"),
     "object 1 <part> 'hand': <xmin> is not a number: 'q' (<bndbox/xmin>)"),
])
def test_incomplete_objects_are_dropped_at_their_line(tmp_path, obj, message):
    f = tmp_path / "n.xml"
    f.write_text(_xml(obj))
    ds, rep = _read(f)
    assert len(ds) == 0 and rep.read == 1
    assert rep.drops[["reason", "source", "message"]].values.tolist() == [["dropped.invalid", "n.xml:1", message]]


def test_non_voc_root(tmp_path):
    f = tmp_path / "cvat.xml"
    f.write_text("<annotations><version>1.1</version></annotations>")
    with pytest.raises(ReadError, match="root element is <annotations>, expected <annotation>"):
        _read(f)
    # inside a folder of VOC files it is skipped and reported
    (tmp_path / "a.xml").write_text(_xml(_obj("cat", 1, 1, 2, 2)))
    ds, report = _read(tmp_path)
    assert len(ds) == 1
    assert [(d.code, d.source) for d in report.diagnostics] == [("file.skipped", "cvat.xml")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReadError, match="no Pascal VOC .xml files"):
        _read(tmp_path / "empty")


# ------------------------------------------------------------------------------------------ values and sizes
def test_float_coordinates_and_kept_degenerate_boxes(tmp_path, self_ap):
    f = tmp_path / "f.xml"
    f.write_text(_xml(_obj("cat", 10.5, 20.25, 30.5, 40.75) + _obj("dog", 10, 5, 5, 5)))
    ds, report = _read(f)
    # cat: x 10.5-1 = 9.5, y 19.25, w 30.5-10.5+1 = 21, h 40.75-20.25+1 = 21.5
    # dog: xmax < xmin: x 9, y 4, w 5-10+1 = -4, h 5-5+1 = 1 (kept: the clip step drops and reports it)
    assert ds.boxes.tolist() == [[9.5, 19.25, 21.0, 21.5], [9.0, 4.0, -4.0, 1.0]]
    assert report.read == 2
    coco = to_coco(ds.filter(ds.annotations["w"].to_numpy() > 0))
    assert validate(coco).ok
    assert self_ap(coco) == pytest.approx(1.0)


def test_missing_size_from_the_image_header(tmp_path):
    (tmp_path / "a.xml").write_text(_xml(_obj("cat", 1, 1, 5, 5), size=None))
    (tmp_path / "b.xml").write_text(_xml(_obj("cat", 1, 1, 5, 5), filename="b.png",
                                         size="<size><width>0</width><height>0</height></size>"))
    _png(tmp_path / "a.jpg", 30, 20)
    _png(tmp_path / "b.png", 11, 12)
    ds, report = _read(tmp_path)
    assert ds.images[["file_name", "width", "height"]].to_numpy().tolist() == [["a.jpg", 30, 20],
                                                                               ["b.png", 11, 12]]
    # one note for both, at the first (a.xml: no <size>; b.xml: 0 x 0)
    assert [(d.code, d.source, d.message) for d in report.diagnostics] == [
        ("image.size_from_header", "a.xml", "2 image size(s) read from the image files' headers")]
    (tmp_path / "b.png").unlink()
    with pytest.raises(ReadError, match=r"^b.xml#size: no <size>.*no image 'b.png' found"):
        _read(tmp_path)


def test_unreadable_image_for_missing_size(tmp_path):
    (tmp_path / "a.xml").write_text(_xml(_obj("cat", 1, 1, 5, 5), size=None))
    (tmp_path / "a.jpg").write_bytes(b"not an image")
    with pytest.raises(ReadError, match=r"^a.xml#size: .*image 'a.jpg' could not be read"):
        _read(tmp_path)


def test_non_numeric_size_is_a_read_error(tmp_path):
    (tmp_path / "a.xml").write_text(_xml(size="<size><width>wide</width><height>5</height></size>"))
    with pytest.raises(ReadError, match=r"^a.xml#size/width: <size>: <width> is not a number: 'wide'"):
        _read(tmp_path)


def test_attributes_cvat_style_and_other_simple_children(tmp_path):
    extra = ("<pose>Left</pose><truncated>1</truncated><occluded>0</occluded><score>0.75</score>"
             "<attributes><attribute><name>color</name><value>red</value></attribute>"
             "<attribute><name>count</name><value>3</value></attribute></attributes>")
    (tmp_path / "a.xml").write_text(_xml(_obj("car", 1, 1, 5, 5, extra)))
    ds, _ = _read(tmp_path)
    assert ds.annotations.loc[0, "attributes"] == {"pose": "Left", "truncated": 1, "occluded": 0, "score": 0.75,
                                                  "color": "red", "count": 3}
    assert np.isnan(ds.annotations.loc[0, "score"])  # ground truth: a <score> child is only an attribute


# ------------------------------------------------------------------------------------------ image names
def test_image_lookup_by_stem_when_filename_has_no_extension(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "x.xml").write_text(_xml(_obj("cat", 1, 1, 2, 2), filename="img1"))
    _png(tmp_path / "JPEGImages" / "img1.png", 100, 50)
    ds, report = _read(tmp_path)
    assert ds.images.loc[0, "file_name"] == "img1.png"
    assert ds.images.loc[0, "path"] == str(tmp_path / "JPEGImages" / "img1.png")
    assert report.diagnostics == []


def test_missing_image_in_jpegimages_is_reported(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "Annotations" / "x.xml").write_text(_xml(_obj("cat", 1, 1, 2, 2), filename="gone.jpg"))
    ds, report = _read(tmp_path)
    assert ds.images.loc[0, "file_name"] == "gone.jpg" and ds.images.loc[0, "path"] is None
    assert [(d.code, d.source, d.message) for d in report.diagnostics] == [
        ("image.missing", "Annotations/x.xml", f"1 image(s) not found under {tmp_path / 'JPEGImages'}")]


@pytest.mark.parametrize(("raw", "expected"), [("../x.jpg", "evil.jpg"), ("/abs/dir/photo.png", "evil.png"),
                                               ("C:\\\\data\\\\p.JPG", "evil.JPG")])
def test_unsafe_filename_is_replaced_by_the_xml_stem(tmp_path, raw, expected):
    (tmp_path / "evil.xml").write_text(_xml(_obj("cat", 1, 1, 2, 2), filename=raw))
    ds, report = _read(tmp_path)
    assert ds.images["file_name"].tolist() == [expected]
    assert [d.code for d in report.diagnostics] == ["image.unsafe_name"]
    assert validate(to_coco(ds)).ok


def test_unsafe_filename_without_extension_finds_the_image_by_stem(tmp_path):
    (tmp_path / "evil.xml").write_text(_xml(_obj("cat", 1, 1, 2, 2), filename="/etc/passwd"))
    _png(tmp_path / "evil.png", 8, 8)
    ds, _ = _read(tmp_path)
    assert ds.images[["file_name", "path"]].to_numpy().tolist() == [["evil.png", str(tmp_path / "evil.png")]]


def test_images_option_and_recursive_folder(tmp_path):
    (tmp_path / "labels" / "b").mkdir(parents=True)
    (tmp_path / "labels" / "a").mkdir(parents=True)
    (tmp_path / "labels" / "b" / "1.xml").write_text(_xml(_obj("dog", 1, 1, 2, 2), filename="b1.jpg"))
    (tmp_path / "labels" / "a" / "2.xml").write_text(_xml(_obj("cat", 1, 1, 2, 2), filename="a2.jpg"))
    (tmp_path / "labels" / ".hidden").mkdir()
    (tmp_path / "labels" / ".hidden" / "3.xml").write_text("garbage")
    _png(tmp_path / "imgs" / "a2.jpg", 4, 4)
    ds, report = _read(tmp_path / "labels", images=tmp_path / "imgs")
    assert ds.images["src_file"].tolist() == ["a/2.xml", "b/1.xml"]  # sorted by path
    assert ds.category_names == ["cat", "dog"]  # first seen in that order
    assert ds.images["path"].tolist() == [str(tmp_path / "imgs" / "a2.jpg"), None]
    assert sorted(_codes(report)) == ["file.skipped", "image.missing"]  # hidden folder; b1.jpg not in imgs/


# ------------------------------------------------------------------------------------------ lines and workers
def test_object_lines_ignore_object_text_in_comments(tmp_path):
    text = ("<annotation>\n<filename>a.jpg</filename>\n<size><width>9</width><height>9</height></size>\n"
            "<!-- <object> was here -->\n" + _obj("a", 1, 1, 2, 2) + "\n\n" + _obj("b", 1, 1, 2, 2) + "\n"
            "</annotation>\n")
    (tmp_path / "a.xml").write_text(text)
    ds, _ = _read(tmp_path)
    # line 4 is the comment, the objects are on lines 5 and 7
    assert ds.annotations["src_line"].tolist() == [5, 7]


def _many(tmp_path: Path, n: int) -> Path:
    rng = np.random.default_rng(3)
    root = tmp_path / "many"
    (root / "Annotations").mkdir(parents=True)
    for i in range(n):
        objs = "".join(
            "\n  " + _obj(f"c{int(rng.integers(0, 5))}", *(int(v) for v in rng.integers(1, 40, 4)),
                          extra="<difficult>0</difficult>")
            for _ in range(int(rng.integers(0, 4))))
        (root / "Annotations" / f"{i:03d}.xml").write_text(_xml(objs, filename=f"{i:03d}.jpg"))
    return root


def test_process_pool_gives_identical_results(tmp_path):
    root = _many(tmp_path, 40)
    one, r1 = _read(root, extra={"voc_workers": 1})
    two, r2 = _read(root, extra={"voc_workers": 2})
    assert len(one) > 20
    pd.testing.assert_frame_equal(one.images, two.images)
    pd.testing.assert_frame_equal(one.categories, two.categories)
    pd.testing.assert_frame_equal(one.annotations, two.annotations)
    assert r1.diagnostics == r2.diagnostics and r1.read == r2.read == len(one)


def test_process_pool_reports_the_same_first_error(tmp_path):
    root = _many(tmp_path, 30)
    (root / "Annotations" / "017.xml").write_text("<annotation>\n<object>\n")
    (root / "Annotations" / "025.xml").write_text("<annotation><oops></annotation>")
    errors = []
    for w in (1, 2):
        with pytest.raises(ReadError) as e:
            _read(root, extra={"voc_workers": w})
        errors.append(str(e.value))
    assert errors[0] == errors[1]
    assert errors[0].startswith("Annotations/017.xml:3: malformed XML")


# ------------------------------------------------------------------------------------------ across formats
def test_same_boxes_as_yolo_normalized(tmp_path):
    yolo = pytest.importorskip("prelabel.adapters.yolo")
    # one 100x50 image; continuous box x0 10, y0 5, x1 40, y1 30 and x0 0, y0 0, x1 100, y1 50
    # VOC 1-based: xmin = x0 + 1, xmax = x1 -> (11, 6, 40, 30) and (1, 1, 100, 50)
    # YOLO: cx = 25/100 = 0.25, cy = 17.5/50 = 0.35, w = 0.3, h = 0.5; and 0.5 0.5 1 1
    (tmp_path / "voc").mkdir()
    (tmp_path / "voc" / "a.xml").write_text(_xml(_obj("cat", 11, 6, 40, 30) + _obj("dog", 1, 1, 100, 50)))
    _png(tmp_path / "yolo" / "images" / "a.jpg", 100, 50)
    (tmp_path / "yolo" / "labels").mkdir()
    (tmp_path / "yolo" / "labels" / "a.txt").write_text("0 0.25 0.35 0.3 0.5\n1 0.5 0.5 1 1\n")
    v, _ = _read(tmp_path / "voc")
    y = yolo.read(tmp_path / "yolo", options=ReadOptions(names=["cat", "dog"]), report=Report())
    assert v.annotations["category"].tolist() == y.annotations["category"].tolist() == ["cat", "dog"]
    np.testing.assert_allclose(v.boxes, y.boxes, atol=1e-6)
    np.testing.assert_allclose(v.boxes, [[10, 5, 30, 25], [0, 0, 100, 50]], atol=0)


def test_auto_workers_counts_the_xml_files_it_would_read(tmp_path: Path) -> None:
    """More than POOL_THRESHOLD (2,000) XML files: one process per 1,000; junk (hidden, AppleDouble) not counted."""
    from prelabel.adapters.voc import auto_workers

    ann = tmp_path / "Annotations"
    (ann / "sub").mkdir(parents=True)
    for i in range(2000):
        (ann / ("sub" if i % 2 else "") / f"{i}.xml").write_bytes(b"")
    (ann / "._0.xml").write_bytes(b"")
    (ann / ".hidden").mkdir()
    (ann / ".hidden" / "x.xml").write_bytes(b"")
    assert auto_workers(tmp_path, options=ReadOptions()) == 1
    (ann / "2000.xml").write_bytes(b"")
    assert auto_workers(tmp_path, options=ReadOptions()) == 2
    assert auto_workers(ann, options=ReadOptions()) == 2
    assert auto_workers(ann / "2000.xml", options=ReadOptions()) == 1


def test_an_image_folder_is_listed_once_while_it_is_unchanged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The parts of a plan read in one worker share the listing of their image folder; a folder that changes
    (an image added), or that changed just before it was listed, is listed again."""
    import os

    folder = tmp_path / "JPEGImages"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"")
    calls: list[str] = []
    real = os.listdir

    def counting(path: str) -> list[str]:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(voc.os, "listdir", counting)
    monkeypatch.setattr(voc, "_LISTED", {})
    # changed a moment ago: listed each time, not kept
    assert voc._listed(str(folder)) == {"a.jpg"}
    assert voc._listed(str(folder)) == {"a.jpg"}
    assert len(calls) == 2
    # unchanged for a minute: listed once
    old = os.stat(folder).st_mtime_ns - 60 * 10**9
    os.utime(folder, ns=(old, old))
    assert voc._listed(str(folder)) == {"a.jpg"}
    assert voc._listed(str(folder)) == {"a.jpg"}
    assert len(calls) == 3
    # an image added: the folder's modification time moves, and it is listed again
    (folder / "b.jpg").write_bytes(b"")
    assert voc._listed(str(folder)) == {"a.jpg", "b.jpg"}
    assert len(calls) == 4
    assert voc._listed(str(tmp_path / "missing")) == frozenset()
