"""LabelMe JSON reader: small files written here, expected coordinates worked out by hand."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from prelabel.adapters import FORMATS, detect, labelme
from prelabel.adapters.base import ReadOptions
from prelabel.errors import FormatDetectionError, ReadError, UsageError
from prelabel.geometry import rle_decode
from prelabel.report import Report


def _shape(label: str, points: list[list[float]], kind: str = "polygon", group_id: int | None = None,
           **more: Any) -> dict[str, Any]:
    return {"label": label, "points": points, "group_id": group_id, "description": "", "shape_type": kind,
            "flags": {}, "mask": None, **more}


def _doc(shapes: list[dict[str, Any]], *, image: str = "a.jpg", w: int | None = 64, h: int | None = 48,
         data: str | None = None, flags: dict[str, bool] | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {"version": "5.5.0", "flags": flags or {}, "shapes": shapes, "imagePath": image,
                           "imageData": data}
    if h is not None:
        doc["imageHeight"] = h
    if w is not None:
        doc["imageWidth"] = w
    return doc


def _write(path: Path, doc: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2))
    return path


def _read(path: Path, **opts: Any) -> tuple[Any, Report]:
    rep = Report()
    return labelme.read(path, options=ReadOptions(**opts), report=rep), rep


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------- shapes
def test_rectangle_given_bottom_right_first_is_a_box(tmp_path: Path) -> None:
    p = _write(tmp_path / "a.json", _doc([_shape("car", [[50.5, 40], [10, 20.25]], "rectangle")]))
    ds, rep = _read(p)
    assert ds.boxes.tolist() == [[10.0, 20.25, 40.5, 19.75]]   # x = 10, w = 50.5 - 10; y = 20.25, h = 40 - 20.25
    assert ds.annotations.loc[0, "segmentation"] is None
    assert rep.read == 1 and rep.dropped == 0
    assert ds.annotations["src_file"].tolist() == ["a.json#shapes[0]"]


def test_polygon_points_kept_exactly(tmp_path: Path) -> None:
    pts = [[1.5, 2.0], [11.0, 2.0], [11.0, 9.25], [3.0, 7.0]]
    ds, _ = _read(_write(tmp_path / "a.json", _doc([_shape("roof", pts)])))
    seg = ds.annotations.loc[0, "segmentation"]
    assert len(seg) == 1 and seg[0].tolist() == [1.5, 2.0, 11.0, 2.0, 11.0, 9.25, 3.0, 7.0]
    assert ds.boxes.tolist() == [[1.5, 2.0, 9.5, 7.25]]


def test_circle_radius_from_the_point_on_it(tmp_path: Path) -> None:
    # centre (30, 20), a point at (33, 24): radius 5
    ds, _ = _read(_write(tmp_path / "a.json", _doc([_shape("ball", [[30, 20], [33, 24]], "circle")])))
    poly = ds.annotations.loc[0, "segmentation"][0]
    xs, ys = poly[0::2], poly[1::2]
    assert len(xs) == 64
    assert np.allclose(np.hypot(xs - 30, ys - 20), 5.0)
    assert np.allclose(ds.boxes[0], [25.0, 15.0, 10.0, 10.0])   # 64 vertices include the 4 extreme points


def test_mask_placed_at_its_rounded_first_corner(tmp_path: Path) -> None:
    patch = np.array([[1, 0, 1], [1, 1, 0]], dtype=np.uint8)        # 2 rows, 3 columns
    b64 = base64.b64encode(_png(patch)).decode("ascii")
    # corners (3.4, 2.6) and (5.4, 3.6): top-left pixel at (round 3.4, round 2.6) = column 3, row 3
    shape = _shape("blob", [[3.4, 2.6], [5.4, 3.6]], "mask", mask=b64)
    ds, _ = _read(_write(tmp_path / "a.json", _doc([shape], w=8, h=6)))
    m = rle_decode(ds.annotations.loc[0, "segmentation"])
    expected = np.zeros((6, 8), dtype=np.uint8)
    expected[3:5, 3:6] = patch
    assert m.tolist() == expected.tolist()
    assert ds.boxes.tolist() == [[3.0, 3.0, 3.0, 2.0]]


def test_mask_overhanging_the_image_is_cut_and_reported(tmp_path: Path) -> None:
    b64 = base64.b64encode(_png(np.ones((4, 4)))).decode("ascii")
    ds, rep = _read(_write(tmp_path / "a.json", _doc([_shape("blob", [[6, 4], [9, 7]], "mask", mask=b64)], w=8, h=6)))
    assert int(rle_decode(ds.annotations.loc[0, "segmentation"]).sum()) == 2 * 2
    assert rep.changes["reason"].tolist() == ["clipped"]


def test_group_of_two_polygons_is_one_annotation(tmp_path: Path) -> None:
    shapes = [_shape("person", [[0, 0], [4, 0], [4, 3]], group_id=7),
              _shape("dog", [[20, 20], [22, 20], [22, 22]], group_id=7),      # other label: its own instance
              _shape("person", [[10, 10], [12, 10], [12, 14]], group_id=7),
              _shape("person", [[30, 30], [31, 30], [31, 31]])]               # group_id null: alone
    ds, rep = _read(_write(tmp_path / "a.json", _doc(shapes)))
    a = ds.annotations
    assert a["category"].tolist() == ["person", "dog", "person"]
    parts = a.loc[0, "segmentation"]
    assert [p.tolist() for p in parts] == [[0.0, 0.0, 4.0, 0.0, 4.0, 3.0], [10.0, 10.0, 12.0, 10.0, 12.0, 14.0]]
    assert ds.boxes[0].tolist() == [0.0, 0.0, 12.0, 14.0]
    assert a.loc[0, "attributes"] == {"group_id": 7}
    assert rep.read == 3   # the ledger counts annotations: the group once
    assert [d.code for d in rep.diagnostics] == ["shape.grouped"]


def test_group_with_a_mask_is_one_rle(tmp_path: Path) -> None:
    b64 = base64.b64encode(_png(np.ones((2, 2)))).decode("ascii")
    shapes = [_shape("cell", [[0, 0], [1, 1]], "mask", group_id=1, mask=b64),
              _shape("cell", [[4, 0], [6, 0], [6, 2], [4, 2]], group_id=1)]
    ds, _ = _read(_write(tmp_path / "a.json", _doc(shapes, w=8, h=4)))
    m = rle_decode(ds.annotations.loc[0, "segmentation"])
    assert len(ds.annotations) == 1
    assert m[:2, :2].all() and m[:2, 4:6].all() and int(m.sum()) == 8


def test_line_dropped_with_its_reason_and_location(tmp_path: Path) -> None:
    shapes = [_shape("car", [[0, 0], [5, 5]], "rectangle"), _shape("wire", [[1, 1], [9, 9]], "line"),
              _shape("pole", [[3, 3]], "point"), _shape("road", [[0, 0], [5, 1], [9, 4]], "linestrip")]
    ds, rep = _read(_write(tmp_path / "sub" / "a.json", _doc(shapes)).parent)
    assert len(ds) == 1
    d = rep.drops
    assert d["reason"].tolist() == ["dropped.unsupported"] * 3
    assert d["source"].tolist() == ["a.json#shapes[1]", "a.json#shapes[2]", "a.json#shapes[3]"]
    assert d["category"].tolist() == ["wire", "pole", "road"]
    assert "points='keypoints'" in d["message"][0]
    assert rep.read == 4


def test_points_as_keypoints(tmp_path: Path) -> None:
    shapes = [_shape("wire", [[1, 1], [9, 9]], "line"), _shape("wire", [[2, 3], [4, 5], [6, 7]], "linestrip"),
              _shape("pole", [[3, 3]], "point")]
    ds, rep = _read(_write(tmp_path / "a.json", _doc(shapes)), points="keypoints")
    kp = ds.annotations["keypoints"]
    assert kp[0].tolist() == [[1, 1, 2], [9, 9, 2], [0, 0, 0]]      # padded to the label's largest count
    assert kp[1].tolist() == [[2, 3, 2], [4, 5, 2], [6, 7, 2]]
    cats = ds.categories.set_index("name")
    assert cats.loc["wire", "keypoints"] == ["1", "2", "3"] and cats.loc["pole", "keypoints"] == ["1"]
    assert ds.boxes[1].tolist() == [2.0, 3.0, 4.0, 4.0]
    assert rep.dropped == 0
    with pytest.raises(UsageError):
        _read(tmp_path / "a.json", points="all")


def test_malformed_shapes_are_dropped_not_lost(tmp_path: Path) -> None:
    shapes = [_shape("", [[0, 0], [1, 1]], "rectangle"), _shape("x", [[0, 0], [1, "a"]]),
              _shape("x", [[0, 0], [1, 1]]), _shape("x", [[0, 0], [0, 0]], "circle"),
              _shape("x", [[0, 0], [1, 1]], "cuboid"), _shape("x", [[0, 0], [1, 1]], "mask", mask="not a png")]
    _, rep = _read(_write(tmp_path / "a.json", _doc(shapes)))
    assert rep.drops["reason"].tolist() == ["dropped.unknown_category", "dropped.invalid", "dropped.degenerate",
                                           "dropped.degenerate", "dropped.unsupported", "dropped.invalid"]
    assert rep.read == 6


def test_flags_and_description_are_attributes(tmp_path: Path) -> None:
    shape = _shape("car", [[0, 0], [5, 5]], "rectangle", description="parked", flags={"occluded": True})
    ds, rep = _read(_write(tmp_path / "a.json", _doc([shape], flags={"night": True, "rain": False})))
    assert ds.annotations.loc[0, "attributes"] == {"flags": {"occluded": True}, "description": "parked"}
    assert ds.images.loc[0, "attributes"] == {"flags": {"night": True, "rain": False}}
    assert [d.code for d in rep.diagnostics] == ["image.attribute"]


# ---------------------------------------------------------------------------------------------- images
def test_image_data_is_never_decoded_when_sizes_are_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(data: Any) -> None:
        raise AssertionError("imageData decoded")

    monkeypatch.setattr(labelme, "_data_size", boom)
    p = _write(tmp_path / "a.json", _doc([_shape("car", [[0, 0], [5, 5]], "rectangle")], data="%%% garbage %%%"))
    ds, rep = _read(p)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["a.jpg", 64, 48]]
    assert rep.diagnostics == []


def test_missing_size_falls_back_to_the_header_then_image_data(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    _write(tmp_path / "a.json", _doc([_shape("car", [[0, 0], [5, 5]], "rectangle")], image="a.png", h=None))
    data = base64.b64encode(_png(np.zeros((12, 20)))).decode("ascii")
    _write(tmp_path / "b.json", _doc([_shape("car", [[0, 0], [5, 5]], "rectangle")], image="b.png", w=None,
                                     h=None, data=data))
    _write(tmp_path / "c.json", _doc([_shape("car", [[0, 0], [5, 5]], "rectangle")], image="c.png", h=None))
    ds, rep = _read(tmp_path)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["a.png", 40, 30], ["b.png", 20, 12]]
    assert ds.images["path"].tolist() == [str(tmp_path / "a.png"), None]
    # a.png's size from its header (a.json), b's from its imageData (b.json); c has neither: left out
    assert [(d.code, d.source, d.message) for d in rep.diagnostics] == [
        ("image.missing", "c.json", f"image 'c.png' has no known size: no imageWidth/imageHeight or readable "
                                    f"imageData, and no such file under {tmp_path}; the image is left out"),
        ("image.size_from_header", "a.json", "1 image size(s) read from the image files' headers"),
        ("image.size_from_header", "b.json", "1 image size(s) read from the header of the image data embedded in "
                                             "the annotation file")]
    assert rep.drops[["reason", "source", "message"]].values.tolist() == [
        ["dropped.no_image", "c.json#shapes[0]", f"image 'c.png' has no known size: no imageWidth/imageHeight or "
                                                 f"readable imageData, and no such file under {tmp_path}"]]
    assert rep.read == 3


def test_image_path_relative_to_the_json_and_safe(tmp_path: Path) -> None:
    src = tmp_path / "ds"
    _write(src / "labels" / "a.json", _doc([], image="..\\images\\a.jpg"))          # Windows separators
    _write(src / "labels" / "b.json", _doc([], image="../../../etc/b.jpg"))         # escapes: base name
    _write(src / "labels" / "c.json", _doc([], image="/abs/where/c.jpg"))           # absolute: base name
    ds, rep = _read(src)
    assert ds.images["file_name"].tolist() == ["images/a.jpg", "b.jpg", "c.jpg"]
    notes = [d for d in rep.diagnostics if d.code == "image.unsafe_name"]
    assert [d.source for d in notes] == ["labels/b.json", "labels/c.json"]
    # with an images root, names are relative to it
    (src / "images").mkdir()
    Image.new("RGB", (4, 4)).save(src / "images" / "a.jpg")
    ds, _ = _read(src / "labels" / "a.json", images=src / "images")
    assert ds.images["file_name"].tolist() == ["a.jpg"]
    assert ds.images["path"].tolist() == [str(src / "images" / "a.jpg")]


def test_folder_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    _write(tmp_path / "z" / "b.json", _doc([_shape("b", [[0, 0], [1, 1]], "rectangle")], image="b.jpg"))
    _write(tmp_path / "a.json", _doc([_shape("a", [[0, 0], [1, 1]], "rectangle")], image="a.jpg"))
    _write(tmp_path / ".hidden" / "c.json", _doc([_shape("c", [[0, 0], [1, 1]], "rectangle")]))
    (tmp_path / "notes.json").write_text('{"something": "else"}')
    ds, rep = _read(tmp_path)
    assert ds.images["file_name"].tolist() == ["a.jpg", "z/b.jpg"]
    assert ds.images["src_file"].tolist() == ["a.json", "z/b.json"]
    assert ds.category_names == ["a", "b"]
    assert [(d.code, d.source) for d in rep.diagnostics] == [("file.skipped", str(tmp_path)),  # .hidden/ (junk)
                                                             ("file.skipped", "notes.json")]


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text('{\n  "shapes": [],\n  "imagePath": "a.jpg",\n  oops\n}')
    with pytest.raises(ReadError) as e:
        _read(p)
    assert e.value.file == str(p) and e.value.line == 4
    q = _write(tmp_path / "q" / "coco.json", {"images": [], "annotations": []})
    with pytest.raises(ReadError, match="not a LabelMe file"):
        _read(q)


# ---------------------------------------------------------------------------------------------- detection
def test_detection_labelme_vs_coco_and_label_studio(tmp_path: Path) -> None:
    lm = _write(tmp_path / "lm" / "a.json", _doc([_shape("car", [[0, 0], [5, 5]], "rectangle")]))
    assert detect(lm) == "labelme" and detect(lm.parent) == "labelme"
    coco = _write(tmp_path / "coco.json", {"images": [{"id": 1, "file_name": "a.jpg", "width": 4, "height": 4}],
                                           "annotations": [], "categories": []})
    ls = _write(tmp_path / "ls.json", [{"id": 1, "data": {"image": "a.jpg"}, "annotations": []}])
    assert detect(coco) == "coco" and detect(ls) == "labelstudio"
    assert labelme.detect(coco) == labelme.detect(ls) == 0.0
    # a large LabelMe file (embedded image) is judged by its head
    big = _write(tmp_path / "big" / "a.json", _doc([], data="A" * (17 * 1024 * 1024)))
    assert detect(big) == "labelme"


def _outcome(path: Path) -> str:
    try:
        return detect(path)
    except FormatDetectionError as e:
        return f"error: {e}"


def test_no_existing_detection_changes(fixtures_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = sorted(fixtures_dir.rglob("*"))
    assert paths
    with_labelme = {p: _outcome(p) for p in paths}
    monkeypatch.delitem(FORMATS, "labelme")
    without = {p: _outcome(p) for p in paths}
    assert with_labelme == without
    assert all(labelme.detect(p) == 0.0 for p in paths)


# ---------------------------------------------------------------------------------------------- end to end
def test_convert_folder_checked_with_pycocotools(tmp_path: Path, self_ap: Any) -> None:
    from pycocotools.coco import COCO

    from prelabel.cli import main

    b64 = base64.b64encode(_png(np.ones((3, 4)))).decode("ascii")
    _write(tmp_path / "src" / "a.json", _doc([
        _shape("car", [[50, 40], [10, 20]], "rectangle"),
        _shape("person", [[0, 0], [4, 0], [4, 3]], group_id=1), _shape("person", [[10, 10], [12, 10], [12, 14]], group_id=1),
        _shape("ball", [[30, 20], [33, 24]], "circle"),
        _shape("wire", [[1, 1], [9, 9]], "line")]))
    _write(tmp_path / "src" / "b.json", _doc([_shape("blob", [[5, 6], [8, 8]], "mask", mask=b64)], image="b.jpg",
                                             data="garbage, never decoded"))
    out, rep_path = tmp_path / "out.json", tmp_path / "report.json"
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "src"), "-o", str(out), "--report", str(rep_path)])
    assert r.exit_code == 0, r.output
    coco = COCO(str(out))
    names = {c["id"]: c["name"] for c in coco.dataset["categories"]}
    assert [names[c] for c in sorted(names)] == ["car", "person", "ball", "blob"]
    anns = coco.dataset["annotations"]
    by = {names[a["category_id"]]: a for a in anns}
    assert by["car"]["bbox"] == [10.0, 20.0, 40.0, 20.0] and by["car"]["area"] == 800.0
    assert len(by["person"]["segmentation"]) == 2 and by["person"]["area"] == 6.0 + 4.0
    assert math.isclose(by["ball"]["area"], 32 * 25 * math.sin(2 * math.pi / 64))   # the 64-gon of radius 5
    assert coco.annToMask(by["blob"]).sum() == 12 and by["blob"]["bbox"] == [5.0, 6.0, 4.0, 3.0]
    assert [i["file_name"] for i in coco.dataset["images"]] == ["a.jpg", "b.jpg"]
    assert self_ap(out) == pytest.approx(1.0)
    rep = json.loads(rep_path.read_text())
    assert rep["ledger"] == {"read": 5, "written": 4, "dropped": 1, "balanced": True}
    assert rep["dropped"] == {"dropped.unsupported": 1}
    r = CliRunner().invoke(main, ["convert", str(tmp_path / "src"), "-o", str(tmp_path / "kp.json"),
                                  "--points", "keypoints", "--from", "labelme"])
    assert r.exit_code == 0, r.output
    kp = json.loads((tmp_path / "kp.json").read_text())
    assert [a["keypoints"] for a in kp["annotations"] if a.get("num_keypoints")] == [[1, 1, 2, 9, 9, 2]]


def test_a_folder_that_also_holds_voc_stays_voc(tmp_path: Path) -> None:
    _write(tmp_path / "data_annotated" / "a.json", _doc([_shape("car", [[0, 0], [5, 5]], "rectangle")]))
    voc = tmp_path / "voc" / "a.xml"
    voc.parent.mkdir()
    voc.write_text("<annotation><filename>a.jpg</filename><size><width>4</width><height>4</height></size>"
                   "</annotation>")
    assert detect(tmp_path) == "voc"
    assert detect(tmp_path / "data_annotated") == "labelme"
