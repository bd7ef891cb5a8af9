"""Replace mode never wipes what it does not replace (issue 17, item 1): an image's pre-annotations are
replaced only by annotations that are applied to it; the dry run says what would be removed; an upload
whose file holds annotations but applies none fails unless the user allows it."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from upload_support import coco_doc, make_images, new_project, write_json

from prelabel.upload import upload
from prelabel.upload.local import LocalProject

NAMES = [f"img{i}.png" for i in range(9)]


def _count(project: LocalProject) -> int:
    with sqlite3.connect(project.db_path) as c:
        return int(c.execute("SELECT count(*) FROM annotations").fetchone()[0])


def _seed(tmp: Path) -> LocalProject:
    """The reported project: labels `Car`, 27 pre-annotations (3 on each of 9 images)."""
    proj = new_project(tmp, names=NAMES, categories=["Car"])
    seed = coco_doc([(n, [("Car", [1, 1, 5, 5]), ("Car", [10, 10, 5, 5]), ("Car", [20, 20, 5, 5])]) for n in NAMES],
                    ["Car"])
    assert upload(seed, f"local:{proj.root}").annotations_applied == 27
    assert _count(proj) == 27
    return proj


def _lowercase_file(tmp: Path) -> Path:
    return write_json(tmp / "lower.json", coco_doc([(n, [("car", [2, 2, 8, 8])]) for n in NAMES], ["car"]))


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prelabel", *args], capture_output=True, text=True, check=False)


def test_a_replace_that_applies_nothing_keeps_every_pre_annotation(tmp_path: Path) -> None:
    proj = _seed(tmp_path)
    res = upload(_lowercase_file(tmp_path), f"local:{proj.root}", journal=False)
    assert (res.annotations_in_file, res.annotations_applied, res.files_matched) == (9, 0, 9)
    assert res.categories_ignored == ["car"]
    assert res.status == "failed"
    assert res.errors[0] == ("none of the 9 annotations in the file were applied (the project ignored the "
                             "categories car); no pre-annotation of the project was replaced. If that is intended, "
                             "pass allow_empty=True")
    assert _count(proj) == 27
    assert (res.annotations_replaced, res.images_replaced) == (0, 0)
    # allowed: completed, and still nothing removed
    ok = upload(_lowercase_file(tmp_path), f"local:{proj.root}", journal=False, allow_empty=True)
    assert ok.status == "completed" and _count(proj) == 27


def test_only_images_that_receive_an_annotation_are_replaced(tmp_path: Path) -> None:
    proj = _seed(tmp_path)
    # img0 gets a Car (applied), img1 only a `car` (ignored), img2 is listed with no annotation at all
    doc = coco_doc([("img0.png", [("Car", [30, 30, 4, 4])]), ("img1.png", [("car", [2, 2, 8, 8])]), ("img2.png", [])],
                   ["Car", "car"])
    res = upload(doc, f"local:{proj.root}")
    assert (res.status, res.annotations_applied, res.annotations_replaced, res.images_replaced) == ("completed", 1, 3, 1)
    with sqlite3.connect(proj.db_path) as c:
        per_image = dict(c.execute("SELECT s.file_name, count(a.id) FROM assets s LEFT JOIN annotations a "
                                   "ON a.asset_id = s.id GROUP BY s.id").fetchall())
    assert per_image == {"img0.png": 1, **{n: 3 for n in NAMES[1:]}}


def test_dry_run_says_what_would_be_replaced(tmp_path: Path) -> None:
    proj = _seed(tmp_path)
    doc = write_json(tmp_path / "two.json", coco_doc([("img3.png", [("Car", [1, 2, 3, 4])]),
                                                      ("img4.png", [("Car", [1, 2, 3, 4]), ("car", [0, 0, 1, 1])]),
                                                      ("img5.png", [("car", [0, 0, 1, 1])])], ["Car", "car"]))
    res = upload(doc, f"local:{proj.root}", dry_run=True)
    # img3 and img4 receive a Car: their 3 + 3 pre-annotations go; img5 only has an ignored `car`: it keeps its 3
    assert (res.annotations_applied, res.annotations_replaced, res.images_replaced) == (2, 6, 2)
    out = _cli("upload", str(doc), "--to", f"local:{proj.root}", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "  would replace 6 existing pre-annotations on 2 images\n" in out.stdout
    append = upload(doc, f"local:{proj.root}", dry_run=True, mode="append")
    assert (append.annotations_replaced, append.images_replaced) == (0, 0)
    assert _count(proj) == 27


def test_cli_exit_codes_of_an_upload_that_applies_nothing(tmp_path: Path) -> None:
    proj = _seed(tmp_path)
    f = _lowercase_file(tmp_path)
    out = _cli("upload", str(f), "--to", f"local:{proj.root}", "--no-journal")
    assert out.returncode == 1
    assert "upload to local:" in out.stdout and ": failed" in out.stdout
    assert "  annotations applied: 0\n" in out.stdout
    assert "error: none of the 9 annotations in the file were applied" in out.stdout
    assert _count(proj) == 27
    allowed = _cli("upload", str(f), "--to", f"local:{proj.root}", "--no-journal", "--allow-empty", "--json")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    body = json.loads(allowed.stdout)
    assert (body["status"], body["annotations_in_file"], body["annotations_applied"]) == ("completed", 9, 0)
    assert _count(proj) == 27


def test_a_file_with_no_annotations_is_not_a_failure(tmp_path: Path) -> None:
    proj = _seed(tmp_path)
    res = upload(coco_doc([("img0.png", [])], ["Car"]), f"local:{proj.root}")
    assert (res.status, res.annotations_in_file, res.annotations_applied) == ("completed", 0, 0)
    assert _count(proj) == 27


def test_a_dry_run_that_would_apply_nothing_says_the_upload_would_fail(tmp_path: Path) -> None:
    proj, _ = LocalProject.init(tmp_path / "proj", images=make_images(tmp_path / "img", ["a.png"]), categories=["Car"])
    doc = coco_doc([("a.png", [("car", [1, 1, 5, 5]), ("car", [2, 2, 5, 5])])], ["car"])
    res = upload(doc, f"local:{proj.root}", dry_run=True)
    assert (res.status, res.dry_run, res.annotations_applied) == ("failed", True, 0)
    assert res.errors[0] == ("none of the 2 annotations in the file would be applied (the project ignored the "
                             "categories car): the upload would fail and replace nothing. If that is intended, pass "
                             "allow_empty=True")
    assert upload(doc, f"local:{proj.root}", dry_run=True, allow_empty=True).status == "completed"
