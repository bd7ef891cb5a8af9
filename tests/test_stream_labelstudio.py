"""Streaming the Label Studio adapter: ``iter_chunks`` must give ``read()``'s dataset and report, cut into whole
images, or raise ``NeedsWholeRead`` where it cannot.

The reference is ``read()`` of the same export (the same task reader, but one table built once every task is
read and, for files of 32 MB and more, a forked worker; the chunks build theirs as tasks complete and hold back
the drops and notes ``read()`` makes at the end); one small case is also checked value by value against numbers
worked out by hand from its JSON, and the streaming pipeline is checked to write the bytes the whole-dataset
pipeline writes.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from chunk_equality import datasets_equal, reports_equal

from prelabel.adapters import labelstudio as ls
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.errors import ReadError, UsageError
from prelabel.geometry import ls_rle_encode
from prelabel.model import Dataset
from prelabel.pipeline import convert
from prelabel.report import Report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "labelstudio"
SIZES = (1, 2, 3, 5, 10**6)
SDK = Path("label_studio/HumanSignal__label-studio-sdk/tests/custom/converter/data")
FIXTURES = [  # (export, label config) under ../shared/fixtures
    (SDK / "test_export_yolo/data.json", SDK / "test_export_yolo/label_config.xml"),
    (SDK / "test_export_yolo/data_obb.json", SDK / "test_export_yolo/label_config_obb.xml"),
    (SDK / "test_export_yolo/data_polygons.json", SDK / "test_export_yolo/label_config_polygons.xml"),
    (SDK / "test_export_yolo/data_keypoints.json", SDK / "test_export_yolo/label_config_keypoints.xml"),
    (SDK / "test_export_coco/data.json", SDK / "test_export_coco/label_config.xml"),
    (SDK / "test_export_json_min/data.json", SDK / "test_export_json_min/label_config.xml"),
]


# ---------------------------------------------------------------------------------------------- comparing
def _options(config: Path | str | None = None, **opts: Any) -> ReadOptions:
    extra = {"label_config": str(config)} if config is not None else {}
    return ReadOptions(**opts, extra=extra)


def _whole(path: Path, **opts: Any) -> tuple[Dataset, Report]:
    report = Report()
    return ls.read(path, options=_options(**opts), report=report), report


def _stream(path: Path, chunk_rows: int, **opts: Any) -> tuple[list[Dataset], Report]:
    report = Report()
    chunks = list(ls.iter_chunks(path, options=_options(**opts), report=report, chunk_rows=chunk_rows))
    assert all(c.report is report for c in chunks)
    return chunks, report


def _check(path: Path, chunk_rows: int, **opts: Any) -> list[Dataset]:
    """Chunks of whole images in read()'s order, closed once they hold ``chunk_rows`` rows or images (at the first
    image where rows of later tasks do not come back to it); their concatenation and the report equal read()'s."""
    ds, rep = _whole(path, **opts)
    chunks, srep = _stream(path, chunk_rows, **opts)
    assert chunks
    seen: list[str] = []
    for i, c in enumerate(chunks):
        img = c.annotations["image"].to_numpy()
        assert ((img >= 0) & (img < len(c.images))).all()
        assert len(c.images) >= 1 or (len(chunks) == 1 and len(ds.images) == 0)
        if i < len(chunks) - 1:
            assert len(c) >= chunk_rows or len(c.images) >= chunk_rows
        # the categories of a chunk: read()'s, cut after the last name used so far
        seen += [n for n in pd.unique(c.annotations["category"].to_numpy()) if n not in seen]
        names = ds.category_names
        used = max((names.index(n) for n in seen), default=-1)
        assert c.category_names[:used + 1] == names[:used + 1]
    datasets_equal(Dataset.concat(chunks, report=Report()), ds)
    reports_equal(srep, rep)
    return chunks


def _needs_whole(path: Path, chunk_rows: int, match: str, **opts: Any) -> str:
    with pytest.raises(NeedsWholeRead) as e:
        _stream(path, chunk_rows, **opts)
    assert match in e.value.reason, e.value.reason
    return e.value.reason


# ---------------------------------------------------------------------------------------------- generated exports
CONFIG = """<View>
  <Image name="image" value="$image"/>
  <RectangleLabels name="label" toName="image"><Label value="car"/><Label value="person"/><Label value="face"/>
  </RectangleLabels>
  <PolygonLabels name="poly" toName="image"><Label value="road"/></PolygonLabels>
  <KeyPointLabels name="kp" toName="image"><Label value="eye" model_index="1"/><Label value="nose" model_index="0"/>
  </KeyPointLabels>
  <Choices name="weather" toName="image"><Choice value="sunny"/><Choice value="rain"/></Choices>
</View>"""


class _Gen:
    """Regions of every kind, with ids unique over the export."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.n = 0

    def rid(self) -> str:
        self.n += 1
        return f"r{self.n}"

    def box(self, W: int, H: int, label: str = "car", **extra: Any) -> dict[str, Any]:
        rng = self.rng
        value = {"x": rng.randint(0, 80) + 0.5, "y": rng.randint(0, 80), "width": rng.randint(1, 19),
                 "height": rng.randint(1, 19) + 0.25, "rotation": 0, "rectanglelabels": [label]}
        value.update(extra.pop("value", {}))
        return {"id": self.rid(), "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                "original_width": W, "original_height": H, "value": value, **extra}

    def region(self, kind: str, W: int, H: int, late: bool, *, full: bool = False) -> list[dict[str, Any]]:
        rng = self.rng
        size = {"original_width": W, "original_height": H}
        if kind == "box":
            return [self.box(W, H, rng.choice(["car", "person", "bus"] if late else ["car", "person"]))]
        if kind == "rotated":
            return [self.box(W, H, "person", value={"rotation": 30.5})]
        if kind == "two_labels":
            return [self.box(W, H, "car", value={"rectanglelabels": ["car", "person"]})]
        if kind == "polygon":
            pts = [[rng.randint(0, 90), rng.randint(0, 90)] for _ in range(rng.choice([2, 3, 4]))]  # 2: degenerate
            return [{"id": self.rid(), "type": "polygonlabels", "from_name": "poly", "to_name": "image", **size,
                     "value": {"points": pts, "polygonlabels": ["road"]}}]
        if kind == "ellipse":
            return [{"id": self.rid(), "type": "ellipselabels", "from_name": "label", "to_name": "image", **size,
                     "value": {"x": 50, "y": 40, "radiusX": 10, "radiusY": rng.choice([0, 5]), "rotation": 10,
                               "ellipselabels": ["person"]}}]
        if kind == "face":  # a box with keypoints: nose always, eye sometimes (``full``: always)
            face = self.box(W, H, "face")
            out = [face]
            for name in ["nose", "eye"] if full or rng.random() < 0.5 else ["nose"]:
                out.append({"id": self.rid(), "type": "keypointlabels", "from_name": "kp", "to_name": "image",
                            "parentID": face["id"], **size,
                            "value": {"x": rng.randint(0, 99), "y": rng.randint(0, 99), "width": 0.5,
                                      "keypointlabels": [name]}})
            return out
        if kind == "orphan":  # a keypoint without parent: dropped
            return [{"id": self.rid(), "type": "keypointlabels", "from_name": "kp", "to_name": "image", **size,
                     "value": {"x": 1, "y": 2, "keypointlabels": ["nose"]}}]
        if kind == "brush":
            mask = np.zeros((H, W), dtype=bool)
            mask[rng.randint(0, H - 3):][:2, 1:rng.randint(2, 6)] = True
            return [{"id": self.rid(), "type": "brushlabels", "from_name": "label", "to_name": "image", **size,
                     "value": {"format": "rle", "rle": ls_rle_encode(mask), "brushlabels": ["car"]}}]
        if kind == "brush_png":
            return [{"id": self.rid(), "type": "brushlabels", "from_name": "label", "to_name": "image", **size,
                     "value": {"format": "png", "brushlabels": ["car"]}}]
        if kind == "choices":  # image level
            return [{"id": self.rid(), "type": "choices", "from_name": "weather", "to_name": "image",
                     "value": {"choices": [rng.choice(["sunny", "rain"])]}}]
        if kind == "text":  # on a region (same id)
            box = self.box(W, H, "car")
            return [box, {"id": box["id"], "type": "textarea", "from_name": "plate", "to_name": "image",
                          "value": {"text": ["AB 123"]}}]
        if kind == "relation":
            a, b = self.box(W, H, "car"), self.box(W, H, "person")
            return [a, b, {"type": "relation", "from_id": a["id"], "to_id": b["id"], "direction": "right"}]
        if kind == "empty":
            return [self.box(W, H, "car", value={"rectanglelabels": [" "]})]
        if kind == "other":
            return [{"id": self.rid(), "type": "hypertextlabels", "from_name": "x", "to_name": "image",
                     "value": {"start": 0, "end": 3, "hypertextlabels": ["car"]}}]
        if kind == "turned":
            return [self.box(W, H, "car", image_rotation=90)]
        raise AssertionError(kind)


KINDS = ["box", "box", "box", "box", "rotated", "two_labels", "polygon", "ellipse", "face", "orphan", "brush",
         "brush_png", "choices", "text", "relation", "empty", "other", "turned"]
URLS = ["/data/upload/3/0a1b2c3d-img{i}.jpg", "s3://bucket/dir/img{i}.png", "/data/local-files/?d=ds%2Fimg%20{i}.jpg"]


def _tasks(n: int, *, seed: int = 0, kinds: list[str] = KINDS) -> list[dict[str, Any]]:
    """Tasks with every region kind, several annotators (one cancelled now and then), predictions, tasks without
    regions, without an image URL or without a size; drops spread over the tasks; ``bus`` first used late. The
    first task's annotations and prediction start with a face and both its keypoints (so that their names are
    known from the first chunk on, whatever is selected)."""
    g = _Gen(seed)
    rng = g.rng
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        W, H = rng.randint(30, 90), rng.randint(30, 90)
        data: dict[str, Any] = {"image": rng.choice(URLS).format(i=i), "caption": f"t{i}"}
        if i % 23 == 11:
            data = {"caption": 5}  # no string: no image URL

        def results(first: bool = False, W: int = W, H: int = H, late: bool = i > n // 2) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = g.region("face", W, H, False, full=True) if first else []
            for _ in range(rng.randint(0, 4)):
                out += g.region(rng.choice(kinds), W, H, late)
            return out

        anns = []
        for k in range(rng.choice([0, 1, 1, 2, 3]) if i else 2):
            stamp = f"2024-01-{rng.randint(1, 28):02d}T10:00:00"
            anns.append({"id": 1000 * i + k, "completed_by": rng.choice([1, 2, {"id": 3, "email": "c@x.org"}]),
                         "created_at": stamp, "updated_at": stamp if rng.random() < 0.5 else "2024-02-01",
                         "was_cancelled": i > 0 and rng.random() < 0.15, "result": results(i == 0)})
        preds = []
        if rng.random() < 0.4 or i == 0:
            preds.append({"id": 500 + i, "model_version": "v2", "score": 0.75,
                          "result": [dict(r, score=0.5) if rng.random() < 0.5 else r for r in results(i == 0)]})
        if i % 17 == 5:  # no size anywhere: its regions are dropped (no --images)
            for r in (x for a in anns for x in a["result"]):
                r.pop("original_width", None)
                r.pop("original_height", None)
            preds = []
        task: dict[str, Any] = {"id": i + 1, "data": data, "annotations": anns, "predictions": preds}
        if i % 7 == 3:
            del task["predictions"]
        tasks.append(task)
    return tasks


def _write(path: Path, tasks: Any) -> Path:
    path.write_bytes(json.dumps(tasks).encode())
    return path


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("gen") / "export.json", _tasks(90))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "config.xml"
    p.write_text(CONFIG)
    return p


@pytest.fixture(params=[7, 2000], ids=["read7", "read2000"])
def tasks_per_read(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """Tasks read between two looks for chunks: 7 puts the looks inside the file, 2000 reads a small file at once."""
    monkeypatch.setattr(ls, "_STREAM_TASKS", request.param)
    return int(request.param)


# ---------------------------------------------------------------------------------------------- equal to read()
@pytest.mark.parametrize("chunk_rows", SIZES)
def test_sample_data(chunk_rows: int) -> None:
    _check(SAMPLE / "export.json", chunk_rows)
    _check(SAMPLE / "export.json", chunk_rows, config=SAMPLE / "label_config.xml")
    _check(SAMPLE / "export.json", chunk_rows, images=ROOT / "sample_data" / "images")  # paths found


@pytest.mark.parametrize("pair", FIXTURES, ids=lambda p: "/".join(p[0].parts[-2:]))
@pytest.mark.parametrize("chunk_rows", SIZES)
def test_fixtures(fixtures_dir: Path, pair: tuple[Path, Path], chunk_rows: int) -> None:
    export, config = (fixtures_dir / p for p in pair)
    _check(export, chunk_rows, config=config)
    _check(export, chunk_rows, ls_select="both", ls_annotator="latest")


@pytest.mark.parametrize("chunk_rows", SIZES)
@pytest.mark.parametrize(("select", "annotator"), [("auto", "all"), ("annotations", "first"),
                                                   ("predictions", "latest"), ("both", "latest")])
def test_generated_every_region(generated: Path, config_file: Path, tasks_per_read: int, chunk_rows: int,
                                select: str, annotator: str) -> None:
    chunks = _check(generated, chunk_rows, ls_select=select, ls_annotator=annotator)
    _check(generated, chunk_rows, config=config_file, ls_select=select, ls_annotator=annotator)
    if chunk_rows == 1 and select == "auto":
        assert len(chunks) > 40  # cut inside the file, not one chunk
        # the export exercises what it is meant to: drops of several reasons, notes read() makes at the end
        _, rep = _whole(generated)
        assert set(rep.dropped_counts()) == {"dropped.cancelled", "dropped.degenerate", "dropped.invalid",
                                             "dropped.no_image", "dropped.unsupported"}
        codes = [d.code for d in rep.diagnostics]
        assert {"image.attribute", "coordinates.suspect", "dropped.unsupported", "dropped.no_image"} <= set(codes)
        ds, _ = _whole(generated)
        assert ds.category_names.index("bus") > ds.category_names.index("road")  # first used late
        kp = ds.categories.set_index("name")["keypoints"]
        assert kp["face"] == ["nose", "eye"]


@pytest.mark.parametrize("chunk_rows", SIZES)
def test_large_file_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int) -> None:
    """Pieces of 32 KiB instead of 8 MB: read() and the stream both read the file a piece at a time, and the
    chunks do not follow the pieces."""
    monkeypatch.setattr(ls, "_PIECE", 32 << 10)
    monkeypatch.setattr(ls, "_STREAM_TASKS", 11)
    path = _write(tmp_path / "export.json", _tasks(300, seed=3))
    assert path.stat().st_size > 8 * (32 << 10)
    _check(path, chunk_rows)
    _check(path, chunk_rows, ls_select="both", ls_annotator="first")


def test_file_larger_than_two_pieces(tmp_path: Path) -> None:
    """A real file over 16 MB: read in 8 MB pieces, cut into chunks across their boundaries."""
    tasks = _tasks(200, seed=5, kinds=["box"])
    big = [dict(t, id=k * 1000 + t["id"], data={**t["data"], "image": f"/data/upload/1/0a1b2c3d-{k}-{t['id']}.jpg"})
           for k in range(75) for t in tasks]
    path = _write(tmp_path / "big.json", big)
    assert path.stat().st_size > 2 * (8 << 20)
    for chunk_rows in (997, 10**6):
        chunks = _check(path, chunk_rows)
        assert len(chunks) > 1 or chunk_rows == 10**6


@pytest.mark.parametrize("chunk_rows", SIZES)
def test_json_min(tmp_path: Path, config_file: Path, chunk_rows: int) -> None:
    """JSON-MIN: the records of one task are scattered over the file; read() groups them at the first one."""
    rng = random.Random(7)
    records = []
    for k in range(60):
        tid = rng.choice([k, k, max(k - rng.randint(1, 9), 0)])
        rect = {"x": rng.randint(0, 80), "y": 5, "width": 10, "height": 10.5, "rotation": 0,
                "rectanglelabels": [rng.choice(["car", "person"])], "original_width": 64, "original_height": 48}
        records.append({"image": f"/data/upload/1/0a1b2c3d-m{tid}.jpg", "id": tid,
                        "label": [rect] * rng.randint(0, 3), "weather": rng.choice(["sunny", "rain"]),
                        "annotator": f"a{k % 3}@x.org", "annotation_id": k, "created_at": f"2024-01-{k % 28 + 1:02d}",
                        "updated_at": f"2024-01-{k % 28 + 1:02d}"})
    path = _write(tmp_path / "min.json", records)
    for annotator in ("all", "latest"):
        _check(path, chunk_rows, ls_annotator=annotator)
        _check(path, chunk_rows, config=config_file, ls_annotator=annotator)


@pytest.mark.parametrize("chunk_rows", SIZES)
def test_folder(tmp_path: Path, chunk_rows: int) -> None:
    tasks = _tasks(40, seed=9)
    _write(tmp_path / "b.json", tasks[20:])
    _write(tmp_path / "a.json", tasks[:20])
    (tmp_path / "c.json").write_text("[]")
    _write(tmp_path / "d.json", tasks[0] | {"id": 99, "data": {"image": "/data/upload/1/0a1b2c3d-one.jpg"}})
    _check(tmp_path, chunk_rows)


def test_empty_export(tmp_path: Path, config_file: Path) -> None:
    """No image: one empty chunk, with the label config's categories (as read())."""
    path = _write(tmp_path / "e.json", [])
    chunks = _check(path, 3, config=config_file)
    assert len(chunks) == 1 and len(chunks[0].images) == 0
    assert chunks[0].category_names == ["car", "person", "face", "road"]


def test_by_hand(tmp_path: Path) -> None:
    """Three tasks, chunk_rows=2: the values worked out from the JSON (percent of 200 x 100 -> pixels)."""
    def rect(rid: str, x: float, y: float, w: float, h: float, label: str) -> dict[str, Any]:
        return {"id": rid, "type": "rectanglelabels", "original_width": 200, "original_height": 100,
                "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": [label]}}
    tasks = [
        {"id": 1, "data": {"image": "/data/upload/1/0a1b2c3d-a.jpg"},
         "annotations": [{"id": 11, "result": [rect("r1", 10, 20, 50, 30, "cat"), rect("r2", 0, 0, 5, 5, "dog")]}]},
        {"id": 2, "data": {"image": "s3://b/k/b.jpg"},
         "annotations": [{"id": 21, "was_cancelled": True, "result": [rect("r3", 1, 1, 1, 1, "cat")]},
                         {"id": 22, "result": [rect("r5", 0, 0, 100, 100, "dog")]}]},
        {"id": 3, "data": {"image": "/data/upload/1/0a1b2c3d-a.jpg"},  # the image of task 1, just held
         "predictions": [{"id": 31, "score": 0.5, "result": [rect("r4", 50, 50, 10, 10, "bird")]}]},
    ]
    path = _write(tmp_path / "x.json", tasks)
    report = Report()
    chunks = list(ls.iter_chunks(path, options=ReadOptions(), report=report, chunk_rows=2))
    # task 3 adds to image a.jpg: no cut can separate a.jpg from the rows of b.jpg's task, so one chunk
    assert [c.images["file_name"].tolist() for c in chunks] == [["a.jpg", "k/b.jpg"]]
    c = chunks[0]
    assert c.annotations["image"].tolist() == [0, 0, 1, 0]
    assert c.boxes.tolist() == [[20.0, 20.0, 100.0, 30.0], [0.0, 0.0, 10.0, 5.0], [0.0, 0.0, 200.0, 100.0],
                                [100.0, 50.0, 20.0, 10.0]]
    assert c.category_names == ["cat", "dog", "bird"]
    assert c.annotations["score"].tolist()[3] == 0.5
    assert report.read == 5 and report.dropped_counts() == {"dropped.cancelled": 1}
    assert [d.code for d in report.diagnostics] == ["image.merged"]
    # task 3 on its own image: a.jpg closes the first chunk (2 rows); b.jpg and c.jpg (the last image, held
    # until the end) the second
    path = _write(tmp_path / "y.json", tasks[:2] + [dict(tasks[2], data={"image": "c.jpg"})])
    report = Report()
    chunks = list(ls.iter_chunks(path, options=ReadOptions(), report=report, chunk_rows=2))
    assert [c.images["file_name"].tolist() for c in chunks] == [["a.jpg"], ["k/b.jpg", "c.jpg"]]
    assert [c.category_names for c in chunks] == [["cat", "dog"], ["cat", "dog", "bird"]]
    assert [len(c) for c in chunks] == [2, 2]
    assert [c.annotations["image"].tolist() for c in chunks] == [[0, 0], [0, 1]]


# ---------------------------------------------------------------------------------------------- whole reads
@pytest.mark.parametrize("chunk_rows", SIZES)
def test_shared_images(tmp_path: Path, tasks_per_read: int, chunk_rows: int) -> None:
    """Tasks naming an image of an earlier task: equal to read() while that image is held, else NeedsWholeRead."""
    tasks = _tasks(60, seed=11)
    for i in (30, 44, 58):
        tasks[i]["data"] = dict(tasks[i - 20]["data"]) if "image" in tasks[i - 20]["data"] else tasks[i]["data"]
    path = _write(tmp_path / "shared.json", tasks)
    ds, rep = _whole(path)
    assert "image.merged" in [d.code for d in rep.diagnostics]
    merged = {a["task_ids"][1]: name for name, a in zip(ds.images["file_name"], ds.images["attributes"],
                                                         strict=True) if "task_ids" in a}
    assert set(merged) <= {31, 45, 59} and merged
    if chunk_rows == 10**6 or tasks_per_read == 2000:  # no chunk before the end of the file / of what is read
        _check(path, chunk_rows)
    else:
        reason = _needs_whole(path, chunk_rows, "which an earlier task named")
        m = re.search(r"task (\d+) names image '([^']+)'", reason)
        assert m is not None and merged[int(m[1])] == m[2]


@pytest.mark.parametrize("chunk_rows", SIZES)
def test_keypoint_names_growing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_rows: int,
                                config_file: Path) -> None:
    """A keypoint name first seen late changes the keypoint arrays of the rows handed out: NeedsWholeRead,
    unless the label config fixes the names, or nothing was handed out yet."""
    monkeypatch.setattr(ls, "_STREAM_TASKS", 5)
    tasks = _tasks(30, seed=2, kinds=["box"])
    g = _Gen(99)
    face = g.region("face", 50, 50, False)
    face = [r for r in face if r["value"].get("keypointlabels") != ["eye"]]  # nose only
    tasks[0]["annotations"] = [{"id": 1, "result": face}]
    late = g.region("face", 50, 50, False)
    late[1]["value"]["keypointlabels"] = ["eye"]
    tasks[20]["annotations"] = [{"id": 2, "result": late}]
    path = _write(tmp_path / "kp.json", tasks)
    _check(path, chunk_rows, config=config_file)  # the config gives both names from the start
    if chunk_rows == 10**6:
        _check(path, chunk_rows)
    else:
        _needs_whole(path, chunk_rows, "keypoint names of category 'face' changed")


@pytest.mark.parametrize("chunk_rows", [1, 2, 10**6])
def test_not_plain_numbers(tmp_path: Path, chunk_rows: int) -> None:
    """A coordinate that is not a number (a bool here) drops its region, streamed as in read()."""
    tasks = _tasks(20, seed=4, kinds=["box"])
    tasks[12]["annotations"] = [{"id": 5, "result": [_Gen(1).box(40, 40, value={"x": True})]}]
    path = _write(tmp_path / "b.json", tasks)
    ds, rep = _whole(path)
    bad = rep.drops[rep.drops["reason"] == "dropped.invalid"]
    assert bad["source"].tolist() == [f"{path}:13"]
    assert bad["message"].iloc[0].endswith("region: coordinates and original_width/height must be numbers, got True")
    assert rep.read == len(ds) + rep.dropped
    _check(path, chunk_rows)


@pytest.mark.parametrize("chunk_rows", [1, 10**6])
def test_error_found_when_rows_are_built(tmp_path: Path, chunk_rows: int) -> None:
    """read() checks original_width/height of all rows once every task is read: a region whose size is 0 is
    dropped at its line, the same way streamed."""
    tasks = _tasks(20, seed=4, kinds=["box"])
    g = _Gen(1)
    tasks[5]["annotations"] = [{"id": 5, "result": [g.box(40, 40), g.box(40, 40, original_width=0)]}]
    path = _write(tmp_path / "w.json", tasks)
    ds, rep = _whole(path)
    bad = rep.drops[rep.drops["reason"] == "dropped.invalid"]
    assert bad["source"].tolist() == [f"{path}:6"]
    assert "region: original_width/height must be > 0 and at most 2147483647, got 0 x " in bad["message"].iloc[0]
    _check(path, chunk_rows)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("chunk_rows", [1, 3, 10**6])
def test_malformed_region_late(tmp_path: Path, tasks_per_read: int, chunk_rows: int) -> None:
    tasks = _tasks(80, seed=6)
    tasks[70]["annotations"] = [{"id": 7, "result": [{"id": "bad", "type": "polygonlabels",
                                                      "original_width": 10, "original_height": 10,
                                                      "value": {"polygonlabels": ["x"]}}]}]
    path = _write(tmp_path / "m.json", tasks)
    ds, rep = _whole(path)
    assert rep.drops[rep.drops["source"] == f"{path}:71"].values.tolist() == [
        ["dropped.invalid", "x", f"{path}:71", "task 71, annotation 7, region bad: missing field 'points'"]]
    _check(path, chunk_rows)


def test_malformed_task_then_syntax_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In pieces: a task's error, then broken JSON further on: the JSON error is read()'s, and the stream's."""
    monkeypatch.setattr(ls, "_PIECE", 16 << 10)
    tasks = _tasks(200, seed=8)
    tasks[60]["data"] = "not an object"
    text = json.dumps(tasks)
    path = tmp_path / "s.json"
    for body in (text, text[:-300]):
        path.write_text(body)
        with pytest.raises(ReadError) as whole:
            _whole(path)
        with pytest.raises(ReadError) as streamed:
            list(ls.iter_chunks(path, options=ReadOptions(), report=Report(), chunk_rows=2))
        assert str(streamed.value) == str(whole.value)
        assert ("'data' must be an object" in str(whole.value)) == (body == text)


def test_usage_errors(generated: Path) -> None:
    for bad in (0, -1, True, 2.0):
        with pytest.raises(UsageError):
            list(ls.iter_chunks(generated, options=ReadOptions(), report=Report(), chunk_rows=bad))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        list(ls.iter_chunks(generated, options=ReadOptions(ls_select="some"), report=Report()))


def test_stream_min_bytes() -> None:
    assert ls.STREAM_MIN_BYTES == 256 * 2**20


# ---------------------------------------------------------------------------------------------- the pipeline
def _convert(tmp: Path, name: str, src: Path, **kw: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    out = tmp / name / "out.json"
    rep = tmp / name / "report.json"
    convert(src, out, fmt="labelstudio", report_path=rep, **kw)
    files = {p.name: p.read_bytes() for p in sorted(out.parent.iterdir()) if p.name != "report.json"}
    doc = json.loads(rep.read_bytes())
    doc["output"]["files"] = [Path(f).name for f in doc["output"]["files"]]
    return files, doc


@pytest.mark.parametrize("where", ["here", "child"])
def test_streamed_conversion_writes_the_whole_conversion(generated: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """With the size floor lifted, the CLI's streaming conversion writes the same bytes and report as reading
    whole; a shared image makes it read whole (and say so)."""
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0" if where == "here" else "always")
    monkeypatch.setattr(ls, "STREAM_MIN_BYTES", 0)
    whole, whole_rep = _convert(tmp_path, "whole", generated)
    assert whole_rep["dropped"] and whole_rep["ledger"]["balanced"] is True
    notes = [d.to_dict() for d in _whole(generated)[1].diagnostics]
    for k in (1, 7):
        streamed, rep = _convert(tmp_path, f"stream{k}", generated, stream=True, chunk_rows=k)
        assert streamed == whole
        assert not [d for d in rep["diagnostics"] if d["code"] == "stream.whole"]
        assert {**rep, "diagnostics": None} == {**whole_rep, "diagnostics": None}
        key = json.dumps
        assert sorted(map(key, rep["diagnostics"])) == sorted(map(key, whole_rep["diagnostics"]))
        assert rep["diagnostics"][:len(notes)] == whole_rep["diagnostics"][:len(notes)] == notes
    tasks = json.loads(generated.read_bytes())
    tasks.append(dict(tasks[0], id=1000))
    shared = _write(tmp_path / "shared.json", tasks)
    monkeypatch.setattr(ls, "_STREAM_TASKS", 7)
    streamed, rep = _convert(tmp_path, "shared", shared, stream=True, chunk_rows=3)
    assert streamed == _convert(tmp_path, "shared_whole", shared)[0]
    assert [d["code"] for d in rep["diagnostics"]].count("stream.whole") == 1
