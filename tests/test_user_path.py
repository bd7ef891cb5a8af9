"""Issue 17, items 2 to 11: the user's path (exit codes, hints, Ultralytics predict folders, the ledger of a
user's filter, noise from big label sets, Python hints, preview, global flags, image tags, small items).
Each test asserts what a user would check: exit codes, printed lines, counts."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from upload_support import coco_doc, make_images, new_project, write_json

import prelabel
from prelabel.adapters.names import COCO_NAMES
from prelabel.cli import main
from prelabel.errors import StrictError
from prelabel.preview import place_labels, problem_images

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def predict_folder(tmp: Path) -> Path:
    """An Ultralytics runs/detect/predict folder: rendered images, labels/ with a confidence column."""
    pred = tmp / "predict"
    (pred / "labels").mkdir(parents=True)
    for img in (SAMPLE / "images").iterdir():
        shutil.copy(img, pred / img.name)
    for f in (SAMPLE / "yolo" / "labels").glob("*.txt"):
        rows = [f"{line} 0.{60 + i}" for i, line in enumerate(f.read_text().split("\n")) if line.strip()]
        (pred / "labels" / f.name).write_text("\n".join(rows) + "\n")
    return pred


# --------------------------------------------------------------------------------------------- item 2
def test_convert_that_read_annotations_and_wrote_none_exits_1(tmp_path: Path) -> None:
    labels = predict_folder(tmp_path) / "labels"
    alone = tmp_path / "alone" / "labels"
    shutil.copytree(labels, alone)
    r = run("convert", str(alone), "-o", str(tmp_path / "out.json"))
    assert r.exit_code == 1
    assert "error: read 7 annotation(s) and wrote none: every one was dropped (dropped.no_image 7)" in r.output


def test_upload_strict_fails_on_unmatched_names_and_ignored_categories(tmp_path: Path) -> None:
    new_project(tmp_path)   # a.png, b.png, Cat.png; categories cat, dog
    coco = write_json(tmp_path / "c.json", coco_doc([("a.png", [("cat", [1, 1, 5, 5]), ("car", [2, 2, 5, 5])]),
                                                     ("zzz.png", [("cat", [1, 1, 5, 5])])], ["cat", "car"]))
    target = f"local:{tmp_path / 'proj'}"
    r = run("upload", str(coco), "--to", target, "--dry-run")
    assert r.exit_code == 0
    for flag in ("--strict", "--fail-on-unmatched"):
        r = run("upload", str(coco), "--to", target, "--dry-run", flag)
        assert r.exit_code == 1, r.output
        assert ("error: --strict: 1 image(s) matched no project file; 1 category ignored with 1 annotation(s): car"
                in r.output)


def test_push_fail_on_unmatched(tmp_path: Path) -> None:
    new_project(tmp_path, names=("a.png",), categories=("cat", "dog", "car", "person"))
    r = run("push", str(SAMPLE / "voc"), "--to", f"local:{tmp_path / 'proj'}", "--dry-run", "--fail-on-unmatched")
    assert r.exit_code == 1
    assert "error: --strict: 5 image(s) matched no project file" in r.output


# --------------------------------------------------------------------------------------------- items 3, 6
def test_categories_ignored_hint_the_project_category_and_count_the_empty_ones(tmp_path: Path) -> None:
    new_project(tmp_path, categories=("Car", "dog"))
    names = list(COCO_NAMES)   # an 80-class model: one category carries annotations
    doc = coco_doc([("a.png", [("car", [1, 1, 5, 5]), ("car", [9, 9, 5, 5])])], names)
    r = run("upload", str(write_json(tmp_path / "c.json", doc)), "--to", f"local:{tmp_path / 'proj'}")
    assert r.exit_code == 1   # nothing applied
    lines = r.stdout.splitlines()
    assert ("  categories ignored (not in the project's schema; their annotations are not applied): "
            "car (2 annotations)") in lines
    assert ("    car: differs only in case from the project's `Car`: use `push` (it reconciles), or "
            "`convert --map` before uploading") in lines
    assert "  78 more categories not in the project's schema, with no annotations (nothing lost)" in lines
    assert sum("categor" in ln for ln in lines) == 4   # the three above and the error naming car


def test_push_mapping_lists_only_categories_with_annotations(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", ["street.jpg"])
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "street.txt").write_text("2 0.5 0.5 0.2 0.2 0.9\n")
    new_project(tmp_path, names=("street.jpg",), categories=("car",))
    r = run("push", str(tmp_path / "labels"), "--images", str(tmp_path / "imgs"), "--names", "coco",
            "--to", f"local:{tmp_path / 'proj'}")
    assert r.exit_code == 0, r.output
    assert "  car -> car (id 1, exact): 1 annotation" in r.output
    assert "  79 more source categories not in the schema, with no annotations" in r.output
    assert "not in the schema, no annotations" not in r.output


# --------------------------------------------------------------------------------------------- item 4
def test_an_ultralytics_predict_folder_reads(tmp_path: Path) -> None:
    pred = predict_folder(tmp_path)
    for src in (pred, pred / "labels"):
        r = run("convert", str(src), "--names", "coco", "-o", str(tmp_path / "out.json"))
        assert r.exit_code == 0, r.output
        assert "wrote 5 image(s), 7 annotation(s), 80 categories" in r.output
    doc = json.loads((tmp_path / "out.json").read_text())
    assert sorted(i["file_name"] for i in doc["images"]) == sorted(p.name for p in (SAMPLE / "images").iterdir())
    assert [c["name"] for c in doc["categories"]][:3] == ["person", "bicycle", "car"]


def test_label_files_without_images_hint_images_and_inspect_does_not_say_ground_truth(tmp_path: Path) -> None:
    alone = tmp_path / "alone" / "labels"
    shutil.copytree(predict_folder(tmp_path) / "labels", alone)
    r = run("convert", str(alone), "-o", str(tmp_path / "out.json"))
    assert ("no image for this label file (2 row(s) dropped) (give --images DIR: the folder that holds the "
            "images)") in r.output
    r = run("inspect", str(alone))
    assert "scores: none (ground truth)" not in r.stdout
    assert "scores: none read (no annotation was kept: see the problems)" in r.stdout
    r = run("inspect", str(alone), "--images", str(tmp_path / "predict"))
    assert "scores (7): min 0.6, q1 0.6, median 0.6, q3 0.61, max 0.61" in r.stdout


# --------------------------------------------------------------------------------------------- item 5
def test_filter_with_a_reason_keeps_the_ledger(tmp_path: Path) -> None:
    ds = prelabel.read(SAMPLE / "voc")
    kept = ds.filter(ds.annotations["w"] >= 30, reason="dropped.narrow", message="under 30 px")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = prelabel.write_dataset(kept, tmp_path / "ok.json")
    assert res.report.balanced
    assert res.report.dropped_counts() == {"dropped.narrow": 4}


def test_an_unbalanced_ledger_warns_and_strict_refuses(tmp_path: Path) -> None:
    ds = prelabel.read(SAMPLE / "voc")
    kept = ds.filter(ds.annotations["w"] >= 30)
    with pytest.warns(UserWarning, match=r"the ledger does not balance: read 7 annotation\(s\), writing 3, "
                                         r"dropped 0: 4 annotation\(s\) removed without a record"):
        prelabel.write_dataset(kept, tmp_path / "out.json")
    with pytest.raises(StrictError, match="ledger.unbalanced"):
        prelabel.write_dataset(ds.filter(ds.annotations["w"] >= 30), tmp_path / "strict.json", strict=True)


def test_min_size(tmp_path: Path) -> None:
    r = run("convert", str(SAMPLE / "voc"), "--min-size", "30", "-o", str(tmp_path / "out.json"),
            "--report", str(tmp_path / "r.json"))
    assert r.exit_code == 0, r.output
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["dropped"] == {"dropped.min_size": 6}
    res = prelabel.convert(SAMPLE / "voc", tmp_path / "py.json", min_size=20)
    assert res.report.dropped_counts() == {"dropped.min_size": 1}


# --------------------------------------------------------------------------------------------- item 7
def test_hints_to_a_python_caller_name_keywords(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    res = prelabel.upload(coco_doc([("A.PNG", [("cat", [1, 1, 5, 5])])], ["cat"]), f"local:{proj.root}")
    assert res.status == "failed"
    assert res.errors[0].endswith("If that is intended, pass allow_empty=True")
    assert res.files_not_matched[0].hint == "call again with match=MatchRules(fold_case=True)"
    with pytest.raises(prelabel.errors.CategoryError) as e:   # type: ignore[attr-defined]
        prelabel.convert(SAMPLE / "voc", tmp_path / "o.json", schema=["cat"])
    assert "--" not in e.value.hint and "unknown='drop'" in e.value.hint


# --------------------------------------------------------------------------------------------- item 8
def test_preview_of_a_local_project_and_min_score(tmp_path: Path) -> None:
    proj = tmp_path / "project"
    assert run("project", "init", str(proj), "--images", str(SAMPLE / "images"), "--categories",
               "cat,dog,car,person").exit_code == 0
    assert run("push", str(SAMPLE / "voc"), "--to", f"local:{proj}").exit_code == 0
    r = run("preview", f"local:{proj}", "-o", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    assert r.output.strip() == f"wrote {tmp_path / 'p.png'}: 5 of 5 image(s)"
    r = run("preview", str(SAMPLE / "predictions" / "predictions.csv"), "--from", "predictions", "--images",
            str(SAMPLE / "images"), "--min-score", "0.6", "-o", str(tmp_path / "s.png"))
    assert r.exit_code == 0, r.output
    assert "image(s) with problems first" in r.output


def test_problems_first_includes_images_with_drops_from_a_coco_file() -> None:
    raw = prelabel.read(SAMPLE / "coco" / "instances.json")
    ds = prelabel.prepare(raw, unknown="keep", min_area=10**9)   # every annotation dropped
    flagged = problem_images(ds, source=raw)
    with_anns = sorted(set(raw.annotations["image"].tolist()))
    assert sorted(flagged) == with_anns


def test_labels_of_neighbouring_boxes_do_not_overlap() -> None:
    spots = place_labels([(10, 30, 60), (12, 30, 60), (14, 31, 60), (100, 30, 40)], 256, 256)
    boxes = [(x, y, x + w, y + 13) for (x, y), (_, _, w) in zip(spots, [(10, 30, 60), (12, 30, 60),
                                                                       (14, 31, 60), (100, 30, 40)], strict=True)]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


# --------------------------------------------------------------------------------------------- item 9
def test_quiet_and_verbose_after_the_command(tmp_path: Path) -> None:
    proj = new_project(tmp_path, names=("street.jpg",), categories=("cat", "dog", "car", "person"))
    r = run("push", str(SAMPLE / "voc"), "--to", f"local:{proj.root}", "-q")
    assert r.exit_code == 0, r.output
    assert r.output == ""
    r = run("convert", str(SAMPLE / "voc"), "-o", str(tmp_path / "o.json"), "-v")
    assert r.exit_code == 0 and "wrote 5 image(s)" in r.output
    r = run("-q", "upload", str(tmp_path / "o.json"), "--to", f"local:{proj.root}", "--dry-run")
    assert r.exit_code == 0 and r.output == ""


def test_verbose_prints_every_drop_and_every_diagnostic(tmp_path: Path) -> None:
    # two images without a size and no images root: each image's note and each annotation's drop, in the words
    # of the one image resolver; the summary shows the first note and counts the rest, -v shows them all
    doc = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"},
                      {"id": 3, "file_name": "c.jpg", "width": 20, "height": 10}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"id": k, "image_id": k, "category_id": 1, "bbox": [1, 1, 2, 2]} for k in (1, 2, 3)]}
    src = write_json(tmp_path / "gt.json", doc)
    why = "image '{}' has no known size: no width/height in the file, and no images root (--images) to read it from"
    r = run("convert", str(src), "-o", str(tmp_path / "o.json"))
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[:3] == [
        "read 3 annotation(s); written 1; dropped 2",
        f"  dropped  {'dropped.no_image':<28} {2:>8}  annotation for an image that does not exist or has no known size",
        f"  warning  {'image.missing':<28} {src}#images[0]: {why.format('a.jpg')}; its annotations are dropped "
        "(+1 more)"]
    r = run("convert", str(src), "-o", str(tmp_path / "o.json"), "-v")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[:6] == [
        "read 3 annotation(s); written 1; dropped 2",
        f"  dropped  {'dropped.no_image':<28} {2:>8}  annotation for an image that does not exist or has no known size",
        f"             {src}#annotations[0]: {why.format('a.jpg')}",
        f"             {src}#annotations[1]: {why.format('b.jpg')}",
        f"  warning  {'image.missing':<28} {src}#images[0]: {why.format('a.jpg')}; its annotations are dropped",
        f"  warning  {'image.missing':<28} {src}#images[1]: {why.format('b.jpg')}; its annotations are dropped"]


def test_min_score_on_annotations_without_a_score_says_so(tmp_path: Path) -> None:
    # a model's predictions whose score column has a name prelabel does not know: --min-score filters nothing,
    # and the summary says why (a warning) instead of passing every low-confidence box to the annotators
    src = tmp_path / "preds.csv"
    src.write_text("image,width,height,class,xmin,ymin,xmax,ymax,certainty\n"
                   "a.jpg,100,80,car,1,1,20,20,0.9\na.jpg,100,80,car,30,30,50,50,0.2\nb.jpg,100,80,dog,5,5,9,9,0.4\n")
    r = run("convert", str(src), "-o", str(tmp_path / "o.json"), "--min-score", "0.5")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[:2] == [
        "read 3 annotation(s); written 3; dropped 0",
        f"  warning  {'score.missing':<28} {src}: none of the 3 annotation(s) has a score: --min-score 0.5 kept them "
        "all (ground truth, or scores not read: a table names its score column with --column score=NAME)"]
    r = run("convert", str(src), "-o", str(tmp_path / "o.json"), "--min-score", "0.5", "--column", "score=certainty")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines()[:2] == ["read 3 annotation(s); written 1; dropped 2",
                                         f"  dropped  {'dropped.min_score':<28} {2:>8}  score under --min-score"]
    assert "score.missing" not in r.stderr
    # some rows without a score (empty cells), streamed an image a part: one note over the whole table, info
    src.write_text("image,width,height,class,xmin,ymin,xmax,ymax,score\n"
                   "a.jpg,100,80,car,1,1,20,20,0.9\na.jpg,100,80,car,30,30,50,50,\nb.jpg,100,80,dog,5,5,9,9,\n"
                   "c.jpg,100,80,dog,5,5,9,9,0.1\n")
    res = prelabel.convert(src, tmp_path / "p.json", min_score=0.5, stream=True, chunk_rows=1)
    notes = [(d.code, d.severity, d.message) for d in res.report.diagnostics if d.code == "score.missing"]
    assert notes == [("score.missing", "info", "2 of 4 annotation(s) have no score: min_score=0.5 kept them (ground "
                      "truth, or scores not read: a table names its score column with ReadOptions(columns={'score': "
                      "'NAME'}))")]
    assert res.report.dropped_counts() == {"dropped.min_score": 1} and res.report.output["annotations"] == 3


# --------------------------------------------------------------------------------------------- item 10
def test_image_tags_the_target_does_not_keep_are_reported(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    doc = coco_doc([("a.png", [("cat", [1, 1, 5, 5])]), ("b.png", [])], ["cat"])
    doc["images"][0]["attributes"] = {"tags": ["night"]}
    doc["images"][1]["attributes"] = {"tags": ["night", "rain"]}
    r = run("upload", str(write_json(tmp_path / "c.json", doc)), "--to", f"local:{proj.root}")
    assert r.exit_code == 0, r.output
    assert ("  image tags the target did not keep (it takes object annotations only): night (2 images), "
            "rain (1 image)") in r.stdout.splitlines()
    res = prelabel.upload(doc, f"local:{proj.root}", dry_run=True)
    assert res.image_tags_not_kept == {"night": 2, "rain": 1}


# --------------------------------------------------------------------------------------------- item 11
def test_connection_error_names_the_host_and_the_variable(tmp_path: Path) -> None:
    coco = write_json(tmp_path / "c.json", coco_doc([("a.png", [("cat", [1, 1, 5, 5])])], ["cat"]))
    env = {"LABELLERR_API_KEY": "k", "LABELLERR_API_SECRET": "s", "LABELLERR_CLIENT_ID": "c",
           "LABELLERR_BASE_URL": "http://127.0.0.1:9"}
    r = run("upload", str(coco), "--to", "labellerr:p1", "--dry-run", env=env)
    assert r.exit_code == 1
    assert "cannot connect to http://127.0.0.1:9 (ConnectError)" in r.output
    assert ("hint: nothing answers at http://127.0.0.1:9: the address comes from "
            "LABELLERR_BASE_URL=http://127.0.0.1:9 (is 'prelabel serve' running there?)") in r.output


def test_dry_run_json_says_would_apply_and_push_says_case(tmp_path: Path) -> None:
    proj = new_project(tmp_path, names=("street.jpg", "park.png", "room.png", "portrait.jpg", "empty.jpg"),
                       categories=("Cat", "dog", "car", "person"))
    r = run("push", str(SAMPLE / "voc"), "--to", f"local:{proj.root}", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["would_apply"] == 7 and "annotations_applied" not in doc
    assert "  cat -> Cat (id 1, case): 3 annotations" in r.output
    assert "wrote 5 image(s), 7 annotation(s), 4 categories to a temporary file (-o FILE keeps it)" in r.output
    assert "prelabel-push-" not in r.output


def test_inspect_prints_a_problems_line(tmp_path: Path) -> None:
    r = run("inspect", str(SAMPLE / "cvat" / "annotations.xml"))
    assert "problems: none" in r.stdout.splitlines()
    alone = tmp_path / "alone" / "labels"
    shutil.copytree(predict_folder(tmp_path) / "labels", alone)
    r = run("inspect", str(alone))
    assert "problems: 6" in r.stdout.splitlines()


def test_global_face_is_python_again_after_the_command_line(tmp_path: Path) -> None:
    run("formats")
    assert np.asarray([1]).size == 1
    assert prelabel.errors.for_face("--allow-empty") == "allow_empty=True"   # type: ignore[attr-defined]
