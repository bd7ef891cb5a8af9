"""Issue 15: the quirks that users' real exports have, each class over every format it touches.

Values are worked out by hand in the comments next to each assertion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from prelabel import adapters
from prelabel.adapters import coco as coco_in
from prelabel.adapters import cvat, labelme, names, voc, yolo
from prelabel.adapters.base import ReadOptions
from prelabel.engine import PartStream
from prelabel.errors import ReadError, option, spell
from prelabel.model import Dataset
from prelabel.report import Report

CVAT_HEAD = ('<annotations><version>1.1</version><meta><task><mode>annotation</mode><labels>'
             '<label><name>car</name></label></labels></task></meta>\n')


def _balanced(ds: Dataset) -> None:
    r = ds.report
    r.set_written(len(ds))
    assert r.balanced, (r.read, len(ds), r.dropped)


# ------------------------------------------------------------------ 4. CVAT outside="1" inside <image>
def test_cvat_outside_shapes_in_images_are_dropped_and_track_attributes_kept(tmp_path: Path) -> None:
    p = tmp_path / "annotations.xml"
    p.write_text(CVAT_HEAD +
                 '<image id="0" name="a.jpg" width="100" height="60">\n'
                 '<box label="car" xtl="1" ytl="2" xbr="11" ybr="22" occluded="0" outside="0" keyframe="1" '
                 'track_id="7" z_order="0"/>\n'
                 '<box label="car" xtl="5" ytl="5" xbr="9" ybr="9" occluded="0" outside="1" keyframe="0" '
                 'track_id="8" z_order="0"/>\n'
                 '<polygon label="car" points="1,1;9,1;9,5" outside="1" track_id="9"/>\n'
                 '</image></annotations>', encoding="utf-8")
    ds = cvat.read(p, options=ReadOptions(), report=Report())
    # one visible box (1,2)-(11,22): x y w h = 1 2 10 20
    assert ds.boxes.tolist() == [[1.0, 2.0, 10.0, 20.0]]
    assert ds.annotations.loc[0, "attributes"] == {"occluded": False, "z_order": 0, "track_id": 7,
                                                   "keyframe": True}
    drops = ds.report.drops
    assert drops["reason"].tolist() == ["dropped.outside_frame"] * 2
    assert drops["source"].tolist() == [f"{p}:4", f"{p}:5"]
    assert drops["message"].tolist() == ['box marked outside="1": not visible in this image',
                                         'polygon marked outside="1": not visible in this image']
    assert ds.report.read == 3
    _balanced(ds)


# ------------------------------------------------------------------ 5. YOLO: LabelImg classes.txt, YAML 1.1 words
def _png(path: Path, w: int, h: int) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h)).save(path)


def test_yolo_labelimg_classes_txt_in_labels_is_found_from_the_root(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", 40, 20)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "classes.txt").write_text("cat\ndog\n")
    (tmp_path / "labels" / "a.txt").write_text("1 0.5 0.5 0.5 0.5\n")
    ds = yolo.read(tmp_path, options=ReadOptions(), report=Report())
    assert ds.categories["name"].tolist() == ["cat", "dog"]
    # class 1 = dog; cx 0.5*40=20, w 0.5*40=20 -> x 10; cy 0.5*20=10, h 10 -> y 5
    assert ds.annotations["category"].tolist() == ["dog"]
    assert ds.boxes.tolist() == [[10.0, 5.0, 20.0, 10.0]]
    assert not [d for d in ds.report.diagnostics if d.code == "category.unnamed"]


def test_yolo_yaml_11_booleans_in_names_stay_the_words_written(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "train" / "a.png", 10, 10)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n"
                                                          "2 0.5 0.5 0.2 0.2\n3 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/train\nnames: [on, off, yes, no]\n")
    ds = yolo.read(tmp_path, options=ReadOptions(), report=Report())
    assert ds.categories["name"].tolist() == ["on", "off", "yes", "no"]
    assert ds.annotations["category"].tolist() == ["on", "off", "yes", "no"]
    # the dict form and a names file read through names.read_names alike
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: {0: on, 1: off, 2: y, 3: n}\n")
    assert names.read_names(tmp_path / "data.yaml") == ["on", "off", "y", "n"]


# ------------------------------------------------------------------ 6. a data.yaml naming a missing image folder
def test_yolo_missing_image_folder_rows_enter_the_ledger_with_the_path_looked_for(tmp_path: Path) -> None:
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.1 0.1 0.1 0.1\n")
    (tmp_path / "labels" / "train" / "b.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nnames: [cat, dog]\n")
    ds = yolo.read(tmp_path, options=ReadOptions(), report=Report())
    assert len(ds) == 0 and ds.report.read == 3
    drops = ds.report.drops
    assert drops["reason"].tolist() == ["dropped.no_image"] * 3
    assert drops["category"].tolist() == ["cat", "dog", "cat"]
    assert drops["source"].tolist() == ["labels/train/a.txt:1", "labels/train/a.txt:2", "labels/train/b.txt:1"]
    assert drops["message"].tolist() == ["no image for this label file (looked for images/train/a.*)"] * 2 + [
        "no image for this label file (looked for images/train/b.*)"]
    missing = [d for d in ds.report.diagnostics if d.code == "image.missing"]
    assert missing[0].source == f"{tmp_path / 'data.yaml'}#train"
    assert missing[0].message == ("image folder 'images/train' not found (looked for images/train); the 2 label "
                                  "file(s) of labels/train have no image")
    _balanced(ds)


# ------------------------------------------------------------------ 14. stored COCO areas recomputed are `changed`
def test_coco_stored_areas_that_change_are_listed_under_changed(tmp_path: Path) -> None:
    p = tmp_path / "gt.json"
    p.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "width": 50, "height": 50}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [
            # box 10 x 20 = 200: a stored 150 is recomputed
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 20], "area": 150},
            # triangle (0,0) (10,0) (0,10): area 50, bbox [0, 0, 10, 10]; 50.4 is within 1 px² of it
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 50.4,
             "segmentation": [[0, 0, 10, 0, 0, 10]]},
            # the same triangle stored as 52: off by 2 > max(1, 1 % of 50)
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 52,
             "segmentation": [[0, 0, 10, 0, 0, 10]]},
            # a stale bbox and area together: one change naming both
            {"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 9, 10], "area": 90,
             "segmentation": [[0, 0, 10, 0, 0, 10]]},
        ]}))
    rep = Report()
    ds = coco_in.read(p, options=ReadOptions(), report=rep)
    assert len(ds) == 4
    ch = rep.changes
    assert ch["reason"].tolist() == ["recomputed"] * 3
    assert ch["source"].tolist() == [f"{p}#annotations[0]", f"{p}#annotations[2]", f"{p}#annotations[3]"]
    assert ch["message"].tolist() == [
        "stored area 150 differs from the geometry's 200",
        "stored area 52 differs from the geometry's 50",
        "stored bbox [0.0, 0.0, 9.0, 10.0] differs from the geometry's [0.0, 0.0, 10.0, 10.0]; "
        "stored area 90 differs from the geometry's 50"]
    rep.set_written(4)
    assert rep.to_dict()["changed"] == {"recomputed": 3}


# ------------------------------------------------------------------ 11. hints name the reader's own options
def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prelabel", *args], capture_output=True, text=True, timeout=120,
                          check=False)


def test_hints_name_cli_flags_on_the_command_line_and_python_names_in_python(tmp_path: Path) -> None:
    p = tmp_path / "annotations.xml"
    p.write_text(CVAT_HEAD + '<image id="0" name="a.jpg" width="100" height="60">\n'
                 '<points label="car" points="1,1;2,2"/>\n'
                 '<box label="car" occluded="0" xtl="1" ytl="1" xbr="5" ybr="5"/>\n</image></annotations>', encoding="utf-8")
    ds = cvat.read(p, options=ReadOptions(), report=Report())
    assert ds.report.drops["message"].tolist() == [
        "points is not an area (read them as keypoints with ReadOptions(cvat_points='keypoints'))"]
    res = _cli("convert", str(p), "-o", str(tmp_path / "out.json"), "--report", str(tmp_path / "r.json"))
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    [drop] = [d for d in report["diagnostics"] if d["code"] == "dropped.unsupported"]
    assert drop["message"] == "points is not an area (read them as keypoints with --cvat-points keypoints)"
    assert drop["source"] == f"{p}:3"

    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5}]))
    res = _cli("convert", str(results), "--from", "coco", "-o", str(tmp_path / "o2.json"))
    assert res.returncode == 1
    assert res.stderr.splitlines()[-1] == "hint: give --images-from GT.json"
    try:
        coco_in.read(results, options=ReadOptions(), report=Report())
    except ReadError as e:
        assert e.hint == "give ReadOptions(images_from='GT.json')"
    else:
        raise AssertionError("a results list without images_from must fail")
    # one mechanism: the same text spelled for either reader
    text = f"use {option('normalized', False)} or {option('columns', 'ROLE=NAME')} or {option('data_yaml')}"
    assert spell(text, cli=True) == "use --absolute or --column ROLE=NAME or --data-yaml"
    assert spell(text, cli=False) == ("use ReadOptions(normalized=False) or ReadOptions(columns={ROLE: NAME}) or "
                                     "ReadOptions(extra={'data_yaml': ...})")


# ------------------------------------------------------------------ 7, 8. junk next to the data, names not UTF-8
VOC_XML = ("<annotation><filename>{name}</filename><size><width>40</width><height>20</height><depth>3</depth>"
           "</size>{objects}</annotation>")
VOC_BOX = ("<object><name>cat</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax>"
           "</bndbox></object>")
LABELME = {"version": "5.0.1", "flags": {}, "imagePath": "a.jpg", "imageData": None, "imageHeight": 20,
           "imageWidth": 40, "shapes": [{"label": "cat", "points": [[1, 2], [11, 12]], "shape_type": "rectangle",
                                         "group_id": None, "flags": {}}]}


def _junk(folder: Path, *names: str) -> None:
    """AppleDouble files (binary) under ``folder`` and in its ``__MACOSX`` twin, plus a .DS_Store."""
    for n in names:
        (folder / f"._{n}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        \xff\xfe")
        (folder / "__MACOSX").mkdir(exist_ok=True)
        (folder / "__MACOSX" / f"._{n}").write_bytes(b"\x00\x05\x16\x07")
    (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def _skipped(report: Report) -> list[str]:
    return sorted(d.message for d in report.diagnostics if d.code == "file.skipped")


def test_yolo_junk_is_skipped_with_a_note(tmp_path: Path) -> None:
    _png(tmp_path / "images" / "a.png", 40, 20)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    (tmp_path / "classes.txt").write_text("cat\n")
    _junk(tmp_path / "images", "a.png")
    _junk(tmp_path / "labels", "a.txt")
    ds = yolo.read(tmp_path, options=ReadOptions(), report=Report())
    assert ds.images["file_name"].tolist() == ["a.png"]
    assert ds.boxes.tolist() == [[10.0, 5.0, 20.0, 10.0]]  # cx 20 w 20 -> x 10; cy 10 h 10 -> y 5
    # per reason: 2 AppleDouble files (images/._a.png, labels/._a.txt), 2 __MACOSX folders, 2 .DS_Store
    assert _skipped(ds.report) == [
        "2 hidden file(s) or folder(s) skipped (first: images/.DS_Store)",
        "2 macOS AppleDouble file(s) (resource fork) skipped (first: images/._a.png)",
        "2 macOS zip metadata folder(s) skipped (first: images/__MACOSX)"]


def test_voc_and_labelme_junk_is_skipped_with_a_note(tmp_path: Path) -> None:
    vdir = tmp_path / "voc"
    vdir.mkdir()
    (vdir / "a.xml").write_text(VOC_XML.format(name="a.jpg", objects=VOC_BOX.format(x0=2, y0=3, x1=12, y1=13)))
    _junk(vdir, "a.xml")
    ds = voc.read(vdir, options=ReadOptions(), report=Report())
    assert ds.boxes.tolist() == [[1.0, 2.0, 11.0, 11.0]]  # 1-based pixels: x 2-1=1, w 12-2+1=11
    assert _skipped(ds.report) == [  # only .xml files are looked at: .DS_Store is not one
        "1 macOS AppleDouble file(s) (resource fork) skipped (first: ._a.xml)",
        "1 macOS zip metadata folder(s) skipped (first: __MACOSX)"]
    ldir = tmp_path / "labelme"
    ldir.mkdir()
    (ldir / "a.json").write_text(json.dumps(LABELME))
    _junk(ldir, "a.json")
    ds = labelme.read(ldir, options=ReadOptions(), report=Report())
    assert ds.boxes.tolist() == [[1.0, 2.0, 10.0, 10.0]]
    assert len(_skipped(ds.report)) == 2
    assert adapters.detect(vdir) == "voc" and adapters.detect(ldir) == "labelme"


def test_file_names_that_are_not_utf8_are_one_clear_error(tmp_path: Path) -> None:
    root = os.fsencode(tmp_path)
    _png(tmp_path / "images" / "a.png", 40, 20)
    (tmp_path / "labels").mkdir()
    (tmp_path / "classes.txt").write_text("cat\n")
    for d, ext in ((b"images", b".png"), (b"labels", b".txt")):
        with open(os.path.join(root, d, b"caf\xe9" + ext), "wb") as f:
            f.write(b"0 0.5 0.5 0.5 0.5\n" if ext == b".txt" else (tmp_path / "images" / "a.png").read_bytes())
    try:
        yolo.read(tmp_path, options=ReadOptions(), report=Report())
    except ReadError as e:
        assert e.reason == ("2 file name(s) are not valid UTF-8 (images/caf\\xe9.png, labels/caf\\xe9.txt): such "
                            "names cannot be written into COCO or matched in a project")
        assert e.hint == f"rename them to UTF-8 first, for example: convmv -f cp1252 -t utf-8 -r --notest {tmp_path}"
    else:
        raise AssertionError("expected a ReadError")
    vdir = tmp_path / "voc"
    vdir.mkdir()
    with open(os.path.join(os.fsencode(vdir), b"caf\xe9.xml"), "wb") as f:
        f.write(VOC_XML.format(name="a.jpg", objects="").encode())
    res = _cli("convert", str(vdir), "--from", "voc", "-o", str(tmp_path / "o.json"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "1 file name(s) are not valid UTF-8 (caf\\xe9.xml)" in res.stderr


# ------------------------------------------------------------------ 12. one malformed record never aborts a dataset
def test_voc_object_without_bndbox_is_dropped_with_its_line_and_the_rest_converts(tmp_path: Path) -> None:
    (tmp_path / "a.xml").write_text(VOC_XML.format(name="a.jpg", objects=VOC_BOX.format(x0=2, y0=3, x1=12, y1=13)))
    (tmp_path / "b.xml").write_text(
        "<annotation><filename>b.jpg</filename>\n"
        "<size><width>40</width><height>20</height></size>\n"
        "<object><name>dog</name><pose>Left</pose></object>\n"                       # line 3: no <bndbox>
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>9</ymax></bndbox>"
        "</object>\n"                                                                 # line 4: kept
        "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>x</ymin><xmax>5</xmax><ymax>9</ymax></bndbox>"
        "</object>\n"                                                                 # line 5: ymin not a number
        "<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>9</ymax></bndbox></object>\n"  # 6: no name
        "</annotation>\n")
    for stream in (False, True):
        rep = Report()
        if stream:  # the engine's stream of the plan's parts: one file a part
            parts = PartStream(voc, tmp_path, options=ReadOptions(), parts=2)
            ds = Dataset.concat([Dataset(images=i, categories=c, annotations=a, report=rep) for i, c, a in parts])
            rep = parts.report
        else:
            ds = voc.read(tmp_path, options=ReadOptions(), report=rep)
        # a.xml (2,3)-(12,13) 1-based: x 1 y 2 w 11 h 11; b.xml (1,1)-(5,9): x 0 y 0 w 5 h 9
        assert ds.boxes.tolist() == [[1.0, 2.0, 11.0, 11.0], [0.0, 0.0, 5.0, 9.0]]
        assert ds.annotations["src_line"].tolist()[1] == 4
        drops = rep.drops
        assert drops["reason"].tolist() == ["dropped.invalid"] * 3
        assert drops["source"].tolist() == ["b.xml:3", "b.xml:5", "b.xml:6"]
        assert drops["category"].tolist() == ["dog", "cat", None]
        assert drops["message"].tolist() == ["object 1 has no <bndbox>",
                                             "object 3: <ymin> is not a number: 'x' (<bndbox/ymin>)",
                                             "object 4 has no <name> (<name>)"]
        assert rep.read == 5
        rep.set_written(len(ds))
        assert rep.balanced
    res = _cli("convert", str(tmp_path), "--from", "voc", "-o", str(tmp_path / "o.json"), "--strict")
    assert res.returncode == 1
    assert "error: --strict: 1 problem(s); first: dropped.invalid" in res.stderr


# ------------------------------------------------------------------ 9. detection: a small JSON export with a BOM
def test_small_json_exports_with_a_utf8_bom_are_detected(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    ls = [{"id": 1, "data": {"image": "/data/upload/1/a.jpg"}, "annotations": [{"id": 5, "result": [{
        "id": "r", "type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 40,
        "original_height": 20, "value": {"x": 10, "y": 10, "width": 50, "height": 50, "rotation": 0,
                                         "rectanglelabels": ["cat"]}}]}]}]
    coco = {"images": [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 20}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 2, 20, 10]}]}
    for name, doc, fmt in (("ls.json", ls, "labelstudio"), ("coco.json", coco, "coco"),
                           ("lm.json", LABELME, "labelme")):
        (tmp_path / name).write_bytes(bom + json.dumps(doc).encode())
        assert adapters.detect(tmp_path / name) == fmt, name
    ds = adapters.get("labelstudio").read(tmp_path / "ls.json", options=ReadOptions(), report=Report())
    # 10 % of 40 = 4, 10 % of 20 = 2, 50 % of 40 = 20, 50 % of 20 = 10
    assert ds.boxes.tolist() == [[4.0, 2.0, 20.0, 10.0]]


# ------------------------------------------------------------------ 9. exports in a folder, zip exports
SAMPLE_DATA = Path(__file__).resolve().parent.parent / "sample_data"


def _boxes(doc: dict) -> list[tuple[str, list[float]]]:
    names = {im["id"]: im["file_name"] for im in doc["images"]}
    return sorted((names[a["image_id"]], a["bbox"]) for a in doc["annotations"])


def test_a_zip_export_is_read_inside(tmp_path: Path) -> None:
    import zipfile

    import prelabel

    flat = tmp_path / "task_export.zip"  # CVAT's task export: annotations.xml at the root
    with zipfile.ZipFile(flat, "w") as z:
        z.write(SAMPLE_DATA / "cvat" / "annotations.xml", "annotations.xml")
        z.writestr("__MACOSX/._annotations.xml", b"\x00\x05\x16\x07")
    nested = tmp_path / "yolo.zip"  # a zipped dataset folder, with the folder inside
    with zipfile.ZipFile(nested, "w") as z:
        for f in sorted((SAMPLE_DATA / "yolo").rglob("*")):
            if f.is_file():
                z.write(f, "yolo/" + f.relative_to(SAMPLE_DATA / "yolo").as_posix())
    for src, plain in ((flat, SAMPLE_DATA / "cvat" / "annotations.xml"), (nested, SAMPLE_DATA / "yolo")):
        got = prelabel.convert(src, tmp_path / f"{src.stem}.json")
        want = prelabel.convert(plain, tmp_path / f"{src.stem}.plain.json")
        doc = json.loads(got.paths[0].read_text())
        assert len(doc["images"]) == 5 and len(doc["annotations"]) == 7  # sample_data's truth table
        assert _boxes(doc) == _boxes(json.loads(want.paths[0].read_text()))
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    res = _cli("convert", str(tmp_path / "bad.zip"), "-o", str(tmp_path / "bad.json"))
    assert res.returncode == 1
    assert res.stderr.splitlines()[0] == f"error: {tmp_path / 'bad.zip'}: not a readable zip file: File is not a zip file"


def test_a_folder_holding_one_export_is_looked_into(tmp_path: Path) -> None:
    import shutil

    import prelabel

    ls_dir = tmp_path / "project-1-at-2026"
    ls_dir.mkdir()
    shutil.copy(SAMPLE_DATA / "labelstudio" / "export.json", ls_dir / "project-1-at-2026.json")
    for img in (SAMPLE_DATA / "images").iterdir():  # images beside it are not exports
        shutil.copy(img, ls_dir / img.name)
    assert adapters.locate(ls_dir) == ls_dir / "project-1-at-2026.json"
    doc = json.loads(prelabel.convert(ls_dir, tmp_path / "ls.json").paths[0].read_text())
    assert len(doc["annotations"]) == 7
    # Roboflow's COCO export: train/_annotations.coco.json beside the images
    rf = tmp_path / "roboflow"
    for split in ("train", "valid"):
        (rf / split).mkdir(parents=True)
        shutil.copy(SAMPLE_DATA / "coco" / "instances.json", rf / split / "_annotations.coco.json")
    assert adapters.locate(rf / "train") == rf / "train" / "_annotations.coco.json"
    assert adapters.locate(rf / "train", "coco") == rf / "train" / "_annotations.coco.json"
    doc = json.loads(prelabel.convert(rf / "train", tmp_path / "rf.json").paths[0].read_text())
    assert len(doc["images"]) == 5 and len(doc["annotations"]) == 7
    assert adapters.locate(rf) == rf  # two exports: which one is the user's to say
    res = _cli("convert", str(rf), "-o", str(tmp_path / "x.json"))
    assert res.returncode == 2  # a format that cannot be told: a usage error (docs/cli.md, exit codes)
    assert res.stderr.splitlines()[-1] == (f"hint: these look like sources: {rf / 'train' / '_annotations.coco.json'} "
                                           f"(coco), {rf / 'valid' / '_annotations.coco.json'} (coco); point at one")


# ------------------------------------------------------------------ 10. prediction tables in common layouts
def _pred_boxes(path: Path) -> list[tuple[str, list[float], float]]:
    import prelabel

    ds = prelabel.read(path)
    a = ds.annotations
    names = ds.images["file_name"].to_numpy()[a["image"].to_numpy()]
    return [(str(n), [float(v) for v in row], float(s)) for n, row, s in
            zip(names, a[["x", "y", "w", "h"]].to_numpy().tolist(), a["score"].tolist(), strict=True)]


def test_prediction_tables_in_common_layouts(tmp_path: Path) -> None:
    import math

    # a corner and a size: xmin, ymin, width, height (no xmax): x, y, w, h as written
    p = tmp_path / "corner.csv"
    p.write_text("image,label,xmin,ymin,width,height,img_width,img_height\na.jpg,cat,10,20,30,40,100,100\n")
    assert adapters.detect(p) == "predictions"
    assert _pred_boxes(p)[0][:2] == ("a.jpg", [10.0, 20.0, 30.0, 40.0])
    # one bbox column "[x, y, w, h]" (Kaggle's global wheat style); a cell that is not four numbers is dropped
    p = tmp_path / "kaggle.csv"
    p.write_text('image_id,bbox,category,image_width,image_height\na.jpg,"[10, 20, 30, 40]",cat,100,100\n'
                 'b.jpg,"[1, 2, 3]",cat,100,100\nc.jpg,"[1.5, 2, 3, 4, 5]",cat,100,100\n')
    assert adapters.detect(p) == "predictions"
    import prelabel

    ds = prelabel.read(p)
    assert ds.annotations[["x", "y", "w", "h"]].to_numpy().tolist() == [[10.0, 20.0, 30.0, 40.0]]
    drops = ds.report.drops
    assert drops["reason"].tolist() == ["dropped.nonfinite"] * 2
    assert sorted(drops["source"].tolist()) == [f"{p}:3", f"{p}:4"]
    assert ds.report.read == len(ds.annotations) + len(drops) == 3  # every row read is kept or dropped
    # semicolons and decimal commas (Excel in many locales): xmin 10,5 .. xmax 40,5 is a box 30 wide
    p = tmp_path / "excel.csv"
    p.write_text("filename;class;xmin;ymin;xmax;ymax;score;img_w;img_h\na.jpg;cat;10,5;20;40,5;60;0,9;100;100\n")
    assert adapters.detect(p) == "predictions"
    [(name, box, score)] = _pred_boxes(p)
    assert (name, box) == ("a.jpg", [10.5, 20.0, 30.0, 40.0]) and math.isclose(score, 0.9)
