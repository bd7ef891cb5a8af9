"""prelabel inspect: counts per category and geometry kind, spreads, problems, convention hints; progress."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from prelabel.adapters.base import ReadOptions
from prelabel.cli import main
from prelabel.converters.conventions import convention_hints
from prelabel.geometry import rle_encode
from prelabel.inspection import KINDS, geometry_kinds, summarize
from prelabel.model import Dataset
from prelabel.pipeline import read
from prelabel.progress import progress

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
IMAGES = SAMPLE / "images"

SUMMARY_KEYS = {"format", "source", "images", "images_annotated", "annotations", "categories", "per_category",
                "per_kind", "per_category_kind", "image_size", "scores", "kept", "dropped", "changed",
                "problems", "hints"}


def _zero() -> dict[str, int]:
    return dict.fromkeys(KINDS, 0)


def test_cvat_sample_counts() -> None:
    # make_sample.py truth: 7 objects, cat 3, dog 2, car 1, person 1; polygons: park's dog and room's cat;
    # CVAT has no keypoints here, so the person is a box: 5 boxes
    s = summarize(read(SAMPLE / "cvat" / "annotations.xml", options=ReadOptions(images=IMAGES)))
    assert set(s) == SUMMARY_KEYS
    assert (s["format"], s["images"], s["images_annotated"], s["annotations"]) == ("cvat", 5, 4, 7)
    assert s["per_category"] == {"cat": 3, "dog": 2, "car": 1, "person": 1}
    assert s["per_kind"] == {**_zero(), "box": 5, "polygon": 2}
    assert s["per_category_kind"]["cat"] == {**_zero(), "box": 2, "polygon": 1}
    assert s["per_category_kind"]["dog"] == {**_zero(), "box": 1, "polygon": 1}
    assert s["per_category_kind"]["person"] == {**_zero(), "box": 1}
    # seen sizes: 96x64, 64x48, 32x48 (portrait, EXIF 6), 80x48, 40x40
    # widths 32 40 64 80 96 -> median 64; heights 40 48 48 48 64 -> median 48
    assert s["image_size"] == {"width": {"min": 32, "median": 64.0, "max": 96},
                               "height": {"min": 40, "median": 48.0, "max": 64}}
    assert s["scores"] is None
    assert (s["kept"], s["dropped"], s["changed"], s["problems"], s["hints"]) == (7, {}, {}, [], [])


def test_coco_sample_has_keypoints() -> None:
    s = summarize(read(SAMPLE / "coco" / "instances.json", options=ReadOptions(images=IMAGES)))
    # the person carries 3 keypoints in COCO: its kind is keypoints
    assert s["per_kind"] == {**_zero(), "box": 4, "polygon": 2, "keypoints": 1}
    assert s["per_category_kind"]["person"] == {**_zero(), "keypoints": 1}


def test_prediction_score_spread() -> None:
    s = summarize(read(SAMPLE / "predictions" / "predictions.csv", options=ReadOptions(images=IMAGES)))
    # scores sorted: .58 .66 .72 .78 .87 .91 .95; quartiles by linear interpolation at positions 1.5 and 4.5:
    # q1 = (.66 + .72) / 2 = .69, q3 = (.87 + .91) / 2 = .89
    sc = s["scores"]
    assert sc["count"] == 7
    assert [round(sc[k], 6) for k in ("min", "q1", "median", "q3", "max")] == [0.58, 0.69, 0.78, 0.89, 0.95]


def test_geometry_kinds_of_every_shape() -> None:
    mask = np.zeros((10, 10), dtype=np.uint8)
    mask[2:5, 2:5] = 1
    poly = [np.array([1.0, 1, 5, 1, 5, 5])]
    ds = Dataset.build(
        images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
        annotations={"image": [0] * 5, "category": ["a"] * 5, "x": [1.0] * 5, "y": [1.0] * 5, "w": [3.0] * 5,
                     "h": [3.0] * 5,
                     "segmentation": [None, poly, poly, rle_encode(mask), None],
                     "attributes": [None, None, {"rotation": 30.0}, None, None],
                     "keypoints": [None, None, None, None, np.array([[2.0, 2.0, 2.0]])]})
    assert geometry_kinds(ds).tolist() == ["box", "polygon", "rotated_box", "mask", "keypoints"]
    assert summarize(ds)["per_kind"] == dict.fromkeys(KINDS, 1)


def test_rotated_cvat_box(tmp_path: Path) -> None:
    xml = tmp_path / "rot.xml"
    xml.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n'
        '  <image id="0" name="a.jpg" width="100" height="80">\n'
        '    <box label="car" occluded="0" xtl="20" ytl="20" xbr="60" ybr="40" rotation="30" z_order="0"/>\n'
        '    <box label="car" occluded="0" xtl="10" ytl="10" xbr="20" ybr="20" z_order="0"/>\n'
        '  </image>\n</annotations>\n')
    s = summarize(read(xml, fmt="cvat"))
    assert s["per_kind"] == {**_zero(), "box": 1, "rotated_box": 1}


def test_problems_listed_without_touching_the_callers_report() -> None:
    ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [100], "height": [50]},
                       annotations={"image": [0, 0], "category": ["cat", "cat"], "x": [90.0, 200.0],
                                    "y": [10.0, 0.0], "w": [20.0, 5.0], "h": [20.0, 5.0],
                                    "src_file": ["a.txt", "a.txt"], "src_line": [1, 2]})
    s = summarize(ds)
    # the first box crosses the right border (clipped), the second lies outside the image (dropped)
    assert (s["annotations"], s["kept"]) == (2, 1)
    assert s["changed"] == {"clipped": 1} and s["dropped"] == {"dropped.outside": 1}
    assert sorted(p["code"] for p in s["problems"]) == ["clipped", "dropped.outside"]
    assert ds.report.changes.empty and ds.report.dropped == 0


def _normalized(w: int = 640, h: int = 480) -> Dataset:
    return Dataset.build(images={"file_name": ["a.jpg", "b.jpg"], "width": [w, w], "height": [h, h]},
                         annotations={"image": [0, 1, 1], "category": ["cat", "dog", "cat"],
                                      "x": [0.1, 0.5, 0.0], "y": [0.2, 0.5, 0.0], "w": [0.3, 0.25, 1.0],
                                      "h": [0.4, 0.1, 1.0]})


def test_hint_normalized_boxes() -> None:
    hints = convention_hints(_normalized())
    assert [h.code for h in hints] == ["coordinates.suspect"]
    assert hints[0].message == ("all 3 box(es) lie within [0, 1] although the images are up to 640x480 px: "
                                "the boxes look normalized: use ReadOptions(normalized=True)")
    assert summarize(_normalized())["hints"][0]["code"] == "coordinates.suspect"
    # images of 2 px or less cannot tell
    assert convention_hints(_normalized(2, 2)) == []


def test_hint_boxes_in_one_corner() -> None:
    # 1000 x 800 images: the top-left 1/100 is 10 x 8 px; boxes reach x 9, y 7 but go beyond 1
    ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [1000], "height": [800]},
                       annotations={"image": [0, 0], "category": ["a", "a"], "x": [1.0, 4.0], "y": [2.0, 3.0],
                                    "w": [3.0, 5.0], "h": [2.0, 4.0]})
    (hint,) = convention_hints(ds)
    assert hint.message == ("all 2 box(es) lie in the top-left 1/100 of their images (up to 1000x800 px): "
                            "the boxes look normalized: use ReadOptions(normalized=True)")
    # one box out of the corner: no hint
    wide = Dataset.build(images={"file_name": ["a.jpg"], "width": [1000], "height": [800]},
                         annotations={"image": [0, 0], "category": ["a", "a"], "x": [1.0, 400.0],
                                      "y": [2.0, 300.0], "w": [3.0, 5.0], "h": [2.0, 4.0]})
    assert convention_hints(wide) == []


def test_no_hint_on_sample_data() -> None:
    for src in ("yolo", "voc", "coco/instances.json"):
        assert convention_hints(read(SAMPLE / src, options=ReadOptions(images=IMAGES))) == []


def test_cli_inspect_json_and_table(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(main, ["inspect", str(SAMPLE / "cvat" / "annotations.xml"), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert set(doc) == SUMMARY_KEYS
    assert doc["per_category"] == {"cat": 3, "dog": 2, "car": 1, "person": 1}
    res = runner.invoke(main, ["inspect", str(SAMPLE / "cvat" / "annotations.xml")])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert "images: 5 (4 with annotations, 1 without); annotations: 7; categories: 4" in lines
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines if ln.split() and ln.split()[0] in
            {"cat", "dog", "car", "person", "total"}}
    # columns: annotations, box, polygon
    assert rows == {"cat": ["3", "2", "1"], "dog": ["2", "1", "1"], "car": ["1", "1", "0"],
                    "person": ["1", "1", "0"], "total": ["7", "5", "2"]}
    assert "problems: none" in lines


def test_cli_inspect_prints_the_hint(tmp_path: Path) -> None:
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 640, "height": 480}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0.1, 0.2, 0.3, 0.4],
                            "area": 0.12, "iscrowd": 0}]}
    (tmp_path / "n.json").write_text(json.dumps(doc))
    res = CliRunner().invoke(main, ["inspect", str(tmp_path / "n.json"), "--from", "coco"])
    assert res.exit_code == 0, res.output
    assert "coordinates.suspect" in res.stdout and "use --normalized" in res.stdout


# ---------------------------------------------------------------------------------------------- progress
class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_progress_plain_lines_are_throttled() -> None:
    out, clock = io.StringIO(), _Clock()
    with progress(2000, desc="reading", unit="files", stream=out, clock=clock) as bar:
        bar.advance(500)          # t = 0: under 2 s since the start, silent
        clock.t = 2.5
        bar.advance(500)          # 2.5 s: a line
        clock.t = 3.0
        bar.advance(500)          # 0.5 s after that line: silent
        clock.t = 5.0
        bar.advance(500)          # 2.5 s after: a line
    assert out.getvalue().splitlines() == ["reading 1000/2000 files", "reading 2000/2000 files"]


def test_progress_final_line_and_quiet() -> None:
    out, clock = io.StringIO(), _Clock()
    with progress(10, desc="drawing", unit="images", stream=out, clock=clock) as bar:
        clock.t = 3.0
        bar.advance(4)
        bar.advance(6)            # not printed at once, but the last line closes the run
    assert out.getvalue().splitlines() == ["drawing 4/10 images", "drawing 10/10 images"]
    quiet = io.StringIO()
    with progress(10, desc="drawing", enabled=False, stream=quiet, clock=clock) as bar:
        clock.t = 100.0
        bar.advance(10)
    assert quiet.getvalue() == "" and bar.done == 10
    short = io.StringIO()
    with progress(10, desc="drawing", stream=short) as bar:
        bar.advance(10)           # a short run stays silent
    assert short.getvalue() == ""


def test_progress_unknown_total() -> None:
    out, clock = io.StringIO(), _Clock()
    with progress(None, desc="reading", unit="rows", stream=out, clock=clock) as bar:
        clock.t = 2.0
        bar.advance(7)
    assert out.getvalue() == "reading 7 rows\n"


def test_cli_inspect_reads_url_sources(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/inspect-url/cvat/annotations.xml", (SAMPLE / "cvat" / "annotations.xml").read_bytes())
    for p in IMAGES.iterdir():
        fs.pipe(f"/inspect-url/images/{p.name}", p.read_bytes())
    runner = CliRunner()
    local = runner.invoke(main, ["inspect", str(SAMPLE / "cvat" / "annotations.xml"), "--images", str(IMAGES),
                                 "--json"])
    # the URL is kept whole (not mangled to memory:/...) and read through prelabel.storage
    remote = runner.invoke(main, ["inspect", "memory://inspect-url/cvat/annotations.xml", "--images",
                                  "memory://inspect-url/images", "--json"])
    assert remote.exit_code == 0, remote.output
    got, want = json.loads(remote.stdout), json.loads(local.stdout)
    assert got["source"] == "memory://inspect-url/cvat/annotations.xml"
    assert got["per_category"] == want["per_category"] == {"cat": 3, "dog": 2, "car": 1, "person": 1}
    assert {k: v for k, v in got.items() if k != "source"} == {k: v for k, v in want.items() if k != "source"}
    fs.rm("/inspect-url", recursive=True)


def test_an_80_class_model_lists_only_the_classes_it_predicted(tmp_path):
    import json
    import shutil

    pred = tmp_path / "runs" / "detect" / "predict"
    (pred / "labels").mkdir(parents=True)
    shutil.copy(SAMPLE / "images" / "street.jpg", pred / "street.jpg")
    (pred / "labels" / "street.txt").write_text("2 0.5 0.5 0.2 0.3 0.91\n0 0.3 0.3 0.1 0.2 0.42\n")
    res = CliRunner().invoke(main, ["inspect", str(pred), "--names", "coco"])
    assert res.exit_code == 0, res.output
    rows = [ln.split() for ln in res.output.splitlines() if ln.strip().startswith(("person", "car", "bicycle"))]
    assert rows == [["person", "1", "1"], ["car", "1", "1"]]   # COCO class 0 and 2; bicycle (1) not listed
    assert "78 more categories with no annotations (--json lists them)" in res.output
    doc = json.loads(CliRunner().invoke(main, ["inspect", str(pred), "--names", "coco", "--json"]).output)
    assert len(doc["per_category"]) == 80 and doc["per_category"]["bicycle"] == 0
