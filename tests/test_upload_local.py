"""The local project: the five steps, matching hints, replace/append, concurrency, resume, export."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from upload_support import coco_doc, make_images, new_project, sample_coco, write_json

from prelabel.errors import NotFoundError, UsageError, ValidationError
from prelabel.upload import ShardResult, upload
from prelabel.upload.journal import Journal, default_journal_path
from prelabel.upload.local import LocalProject, LocalTarget, load_schema_names
from prelabel.upload.match import MatchRules
from prelabel.upload.resolve import resolve_shard

ROOT = Path(__file__).resolve().parents[1]


def annotations(project: LocalProject) -> list[tuple[str, str, float, float, float, float]]:
    with sqlite3.connect(project.db_path) as c:
        return c.execute("SELECT s.file_name, k.name, a.x, a.y, a.w, a.h FROM annotations a "
                         "JOIN assets s ON s.id = a.asset_id JOIN categories k ON k.id = a.category_id "
                         "ORDER BY s.file_name, a.x").fetchall()


def test_init_reads_sizes_and_categories(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", ["a.png", "sub/b.png", ".hidden/c.png", "notes.txt"], size=(640, 480))
    (tmp_path / "imgs" / "broken.png").write_bytes(b"not an image")
    proj, summary = LocalProject.init(tmp_path / "p", images=tmp_path / "imgs", categories=["cat", "dog"])
    assert proj.assets() == ["a.png", "sub/b.png"]
    assert summary["unreadable"] == ["broken.png"]
    with sqlite3.connect(proj.db_path) as c:
        assert c.execute("SELECT width, height FROM assets ORDER BY id").fetchall() == [(640, 480), (640, 480)]
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # re-running init adds new images and categories, keeps the id
    make_images(tmp_path / "imgs", ["z.png"])
    again, summary = LocalProject.init(tmp_path / "p", images=tmp_path / "imgs", categories=["dog", "bird"])
    assert (again.project_id, summary["assets_added"], again.categories()) == (proj.project_id, 1,
                                                                               ["cat", "dog", "bird"])
    with pytest.raises(UsageError, match="already a project"):
        LocalProject.init(tmp_path / "p", images=tmp_path)
    with pytest.raises(NotFoundError, match="no prelabel project"):
        LocalProject(tmp_path / "nothing")


def test_schema_file_names(tmp_path: Path) -> None:
    coco = write_json(tmp_path / "schema.json", {"categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "bus"}]})
    assert load_schema_names(coco) == ["car", "bus"]
    txt = tmp_path / "names.txt"
    txt.write_text("person\nbike\n")
    assert load_schema_names(txt) == ["person", "bike"]


def test_upload_applies_and_reports(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    res = upload(sample_coco(), LocalTarget(proj.root))
    assert (res.status, res.annotations_applied, res.files_matched) == ("completed", 1, 1)
    assert res.categories_ignored == ["zebra"]
    assert annotations(proj) == [("a.png", "cat", 1.0, 2.0, 3.0, 4.0)]
    act = proj.activity(res.activity_id or "")
    assert act["counts"]["annotations_skipped_category"] == 1 and act["counts"]["annotations_skipped_unmatched"] == 1
    assert (proj.root / "inbox" / f"{act['id']}.json").is_file()   # step 1: received into the inbox


def test_unmatched_names_with_hints(tmp_path: Path) -> None:
    proj = new_project(tmp_path, names=["dog.jpg", "cat.jpeg", "car.png", "train/bus.png", "val/bus.png"])
    doc = coco_doc([("Dog.JPG", [("cat", [0, 0, 1, 1])]), ("cat.png", [("cat", [0, 0, 1, 1])]),
                    ("local_upload/3f2a/car.png", [("dog", [1, 1, 2, 2])]), ("bus.png", [("dog", [0, 0, 1, 1])]),
                    ("IMG_0001.tif", [])], ["cat", "dog"])
    res = upload(doc, LocalTarget(proj.root))
    hints = {u.name: (u.closest, u.why) for u in res.files_not_matched}
    assert hints == {"Dog.JPG": (["dog.jpg"], "case"), "cat.png": (["cat.jpeg"], "extension"),
                     "bus.png": (["train/bus.png", "val/bus.png"], "prefix"), "IMG_0001.tif": ([], "no similar name")}
    # the Labellerr-style prefix is matched, and the result says by which rule
    assert res.files_matched == 1 and res.matched_by == {"prefix": 1}
    assert annotations(proj) == [("car.png", "dog", 1.0, 1.0, 2.0, 2.0)]


def test_reupload_replaces_and_is_idempotent(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    doc = coco_doc([("a.png", [("cat", [1, 1, 2, 2]), ("dog", [3, 3, 4, 4])]), ("b.png", [("dog", [5, 5, 6, 6])])],
                   ["cat", "dog"])
    path = write_json(tmp_path / "out.json", doc)
    first = upload(path, f"local:{proj.root}")
    state1 = (proj.status()["annotations"], annotations(proj))
    second = upload(path, f"local:{proj.root}")
    assert (first.annotations_applied, second.annotations_applied) == (3, 3)
    assert (proj.status()["annotations"], annotations(proj)) == state1 == (3, [
        ("a.png", "cat", 1.0, 1.0, 2.0, 2.0), ("a.png", "dog", 3.0, 3.0, 4.0, 4.0), ("b.png", "dog", 5.0, 5.0, 6.0, 6.0)])
    assert proj.activity(second.activity_id or "")["counts"]["annotations_replaced"] == 3
    # a new upload for a.png only replaces a.png's pre-annotations; b.png keeps its own
    upload(coco_doc([("a.png", [("cat", [9, 9, 1, 1])])], ["cat"]), f"local:{proj.root}")
    assert annotations(proj) == [("a.png", "cat", 9.0, 9.0, 1.0, 1.0), ("b.png", "dog", 5.0, 5.0, 6.0, 6.0)]


def test_append_mode_adds(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    doc = coco_doc([("a.png", [("cat", [1, 1, 2, 2])])], ["cat"])
    upload(doc, f"local:{proj.root}", mode="append")
    upload(doc, f"local:{proj.root}", mode="append")
    assert annotations(proj) == [("a.png", "cat", 1.0, 1.0, 2.0, 2.0)] * 2


def test_project_without_schema_takes_the_upload_categories(tmp_path: Path) -> None:
    proj = new_project(tmp_path, categories=None)
    res = upload(sample_coco(), f"local:{proj.root}")
    assert res.categories_ignored == [] and res.annotations_applied == 2
    assert proj.categories() == ["cat", "zebra"]


def test_invalid_coco_is_refused(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    doc = sample_coco()
    doc["annotations"][0]["bbox"] = [1, 2, -3, 4]
    with pytest.raises(ValidationError, match="the COCO to upload: 1 problem"):
        upload(doc, f"local:{proj.root}")
    assert proj.activities() == []


def test_invalid_file_in_the_inbox_fails_the_activity(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    aid = proj.receive(b'{"images": 3}', source="x.json")
    act = proj.process(aid)
    assert act["status"] == "failed" and act["metadata"]["error"].startswith("invalid COCO: ")
    assert proj.process(aid)["status"] == "failed"   # processing again changes nothing


def test_export_round_trip(tmp_path: Path, self_ap: Any) -> None:
    proj = new_project(tmp_path)
    doc = coco_doc([("a.png", [("cat", [1, 2, 3, 4]), ("dog", [10, 10, 5, 5])]), ("b.png", [("dog", [0, 0, 64, 48])])],
                   ["cat", "dog"])
    doc["annotations"][0]["segmentation"] = [[1, 2, 4, 2, 4, 6, 1, 6]]
    upload(doc, f"local:{proj.root}")
    out = proj.export(tmp_path / "exp.json")
    exp = json.loads(out[0].read_text())
    assert [i["file_name"] for i in exp["images"]] == ["Cat.png", "a.png", "b.png"]
    assert [(a["image_id"], a["category_id"], a["bbox"]) for a in exp["annotations"]] == [
        (2, 1, [1.0, 2.0, 3.0, 4.0]), (2, 2, [10.0, 10.0, 5.0, 5.0]), (3, 2, [0.0, 0.0, 64.0, 48.0])]
    assert exp["annotations"][0]["segmentation"] == [[1.0, 2.0, 4.0, 2.0, 4.0, 6.0, 1.0, 6.0]]
    assert exp["annotations"][0]["area"] == 12.0   # the 3 x 4 polygon
    assert self_ap(exp) == 1.0


class Crash(BaseException):
    """A simulated crash of the process (not an error the driver handles)."""


class CrashingTarget(LocalTarget):
    """Crashes once, at shard ``crash_at``, before sending it or after sending it (job id recorded)."""

    def __init__(self, root: Path, *, crash_at: int, when: str, mode: str = "append") -> None:
        super().__init__(root, mode=mode)
        self.crash_at, self.when = crash_at, when

    def start_shard(self, coco: dict[str, Any], *, index: int, path: Path, deadline: float | None,
                    cancel: threading.Event) -> str:
        if index == self.crash_at and self.when == "before-send":
            raise Crash
        return super().start_shard(coco, index=index, path=path, deadline=deadline, cancel=cancel)

    def finish_shard(self, job_id: str, *, index: int, path: Path, coco: dict[str, Any] | None,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        if index == self.crash_at and self.when == "after-send":
            raise Crash
        return super().finish_shard(job_id, index=index, path=path, coco=coco, deadline=deadline, cancel=cancel)


@pytest.mark.parametrize("when", ["before-send", "after-send"])
def test_resume_after_a_crash_between_shards(tmp_path: Path, when: str) -> None:
    proj = new_project(tmp_path)
    doc = coco_doc([("a.png", [("cat", [1, 1, 2, 2])]), ("b.png", [("dog", [3, 3, 4, 4])])], ["cat", "dog"])
    path = write_json(tmp_path / "out.json", doc)
    # append mode: a shard applied twice would show as duplicated annotations
    with pytest.raises(Crash):
        upload(path, CrashingTarget(proj.root, crash_at=2, when=when), mode="append", max_file_size=400, workers=1)
    states = sorted((e["index"], e["state"]) for e in Journal(default_journal_path(path)).entries.values())
    assert states == ([(1, "done")] if when == "before-send" else [(1, "done"), (2, "started")])
    assert annotations(proj) == [("a.png", "cat", 1.0, 1.0, 2.0, 2.0)]
    res = upload(path, LocalTarget(proj.root, mode="append"), max_file_size=400, workers=1)
    assert res.status == "completed" and [s.resumed for s in res.shards] == [True, False]
    assert annotations(proj) == [("a.png", "cat", 1.0, 1.0, 2.0, 2.0), ("b.png", "dog", 3.0, 3.0, 4.0, 4.0)]
    assert [a["status"] for a in proj.activities()] == ["completed", "completed"]   # each shard applied once
    assert not default_journal_path(path).exists()


_WORKER = """
import sys
from prelabel.upload import upload
res = upload(sys.argv[1], "local:" + sys.argv[2], mode="append", max_file_size=1500, workers=2)
print(res.status, len(res.shards), res.annotations_applied)
"""


def test_two_processes_upload_at_once(tmp_path: Path) -> None:
    names_a = [f"a{i:02d}.png" for i in range(12)]
    names_b = [f"b{i:02d}.png" for i in range(12)]
    proj = new_project(tmp_path, names=names_a + names_b)
    # each image gets 4 boxes whose x encodes the image number: mixing would show as a wrong (image, x) pair
    doc_a = coco_doc([(n, [("cat", [i, k, 1, 1]) for k in range(4)]) for i, n in enumerate(names_a)], ["cat"])
    doc_b = coco_doc([(n, [("dog", [i, k, 1, 1]) for k in range(4)]) for i, n in enumerate(names_b)], ["dog"])
    pa, pb = write_json(tmp_path / "a.json", doc_a), write_json(tmp_path / "b.json", doc_b)
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(p), str(proj.root)], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for p in (pa, pb)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        status, shards, applied = out.split()
        assert status == "completed" and int(shards) > 2 and applied == "48"
    rows = annotations(proj)
    assert len(rows) == 96
    want = sorted([(n, "cat", float(i), float(k), 1.0, 1.0) for i, n in enumerate(names_a) for k in range(4)]
                  + [(n, "dog", float(i), float(k), 1.0, 1.0) for i, n in enumerate(names_b) for k in range(4)])
    assert sorted(rows) == want
    assert {a["status"] for a in proj.activities()} == {"completed"}


def test_upload_a_dataset(tmp_path: Path) -> None:
    from prelabel.model import Dataset

    proj = new_project(tmp_path)
    ds = Dataset.build(images={"file_name": ["b.png"], "width": [64], "height": [48]},
                       annotations={"image": [0], "category": ["dog"], "x": [2.0], "y": [3.0], "w": [4.0], "h": [5.0]})
    res = upload(ds, f"local:{proj.root}")
    assert (res.status, res.annotations_applied) == ("completed", 1)
    assert annotations(proj) == [("b.png", "dog", 2.0, 3.0, 4.0, 5.0)]


def test_matched_by_counts_every_image_of_a_repeated_name() -> None:
    # two images named a.jpg (both exact), one B.jpg (by case), one c.jpg (no asset)
    coco = {"images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "B.jpg"},
                       {"id": 3, "file_name": "a.jpg"}, {"id": 4, "file_name": "c.jpg"}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": k, "image_id": k, "category_id": 1} for k in (1, 2, 3, 4)]}
    r = resolve_shard(coco, assets=["a.jpg", "b.jpg"], categories=["cat"], match=MatchRules(fold_case=True))
    assert r.how == {"exact": 2, "case": 1}
    assert (r.keep, r.skipped_unmatched, r.applied_assets) == ([0, 1, 2], 1, ["a.jpg", "b.jpg"])
