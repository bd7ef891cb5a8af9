"""Streaming the Label Studio adapter: the engine's stream of its plan's parts (``PartStream``: runs of whole
tasks of an export, read here or in a pool) must give ``read()``'s dataset and report, cut into whole images,
or raise ``NeedsWholeRead`` where a part cannot be read alone (then the pipeline reads the export whole).

The reference is ``read()`` of the same export (the same task reader, one table built once every task is read;
the parts build theirs run by run and their reports are merged at the end); one small case is also checked
value by value against numbers worked out by hand from its JSON, and the streaming pipeline is checked to write
the bytes the whole-dataset pipeline writes.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chunk_equality import converted, datasets_equal, reports_equal, streamed

from prelabel.adapters import labelstudio as ls
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.errors import ReadError, UsageError
from prelabel.geometry import ls_rle_encode
from prelabel.model import Dataset
from prelabel.pipeline import convert
from prelabel.report import Report

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "labelstudio"
PARTS = (1, 2, 3, 7, 40)
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
    opts.pop("workers", None)
    extra = {"label_config": str(config)} if config is not None else {}
    return ReadOptions(**opts, extra=extra)


def _whole(path: Path, **opts: Any) -> tuple[Dataset, Report]:
    report = Report()
    return ls.read(path, options=_options(**opts), report=report), report


def _stream(path: Path, parts: int, **opts: Any) -> tuple[list[Dataset], Report]:
    """The export streamed in ``parts`` parts, in a pool of ``workers`` when given."""
    return streamed(ls, path, _options(**opts), parts=parts, workers=opts.get("workers"))


def _check(path: Path, parts: int, **opts: Any) -> list[Dataset]:
    """Parts of whole images, each with its own images' rows; their concatenation and the merged report equal
    ``read()``'s."""
    ds, rep = _whole(path, **opts)
    chunks, srep = _stream(path, parts, **opts)
    assert chunks
    for c in chunks:
        img = c.annotations["image"].to_numpy()
        assert ((img >= 0) & (img < len(c.images))).all()
    datasets_equal(Dataset.concat(chunks, report=Report()), ds)
    reports_equal(srep, rep)
    return chunks


def _needs_whole(path: Path, parts: int, match: str, **opts: Any) -> str:
    with pytest.raises(NeedsWholeRead) as e:
        _stream(path, parts, **opts)
    assert match in e.value.reason, e.value.reason
    return e.value.reason


# ---------------------------------------------------------------------------------------------- generated exports
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


def _tasks(n: int, *, seed: int = 0, kinds: list[str] = KINDS, faces: bool = True) -> list[dict[str, Any]]:
    """Tasks with every region kind, several annotators (one cancelled now and then), predictions, tasks without
    regions, without an image URL or without a size; drops spread over the tasks; ``bus`` first used late. The
    first task's annotations and prediction start with a face and both its keypoints. ``faces=False``: no
    keypoints at all (a part of an export with keypoints needs the whole export: their names are noted over it)."""
    g = _Gen(seed)
    rng = g.rng
    tasks: list[dict[str, Any]] = []
    for i in range(n):
        W, H = rng.randint(30, 90), rng.randint(30, 90)
        data: dict[str, Any] = {"image": rng.choice(URLS).format(i=i), "caption": f"t{i}"}
        if i % 23 == 11:
            data = {"caption": 5}  # no string: no image URL

        def results(first: bool = False, W: int = W, H: int = H, late: bool = i > n // 2) -> list[dict[str, Any]]:
            out: list[dict[str, Any]] = g.region("face", W, H, False, full=True) if first and faces else []
            for _ in range(rng.randint(0, 4)):
                out += g.region(rng.choice(kinds if faces else [k for k in kinds if k != "face"]), W, H, late)
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
    return _write(tmp_path_factory.mktemp("gen") / "export.json", _tasks(90, faces=False))


@pytest.fixture(scope="module")
def with_faces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write(tmp_path_factory.mktemp("gen") / "faces.json", _tasks(90))


@pytest.fixture(scope="module")
def config_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("cfg") / "config.xml"
    p.write_text(CONFIG)
    return p



# ---------------------------------------------------------------------------------------------- equal to read()
@pytest.mark.parametrize("parts", PARTS)
def test_sample_data(parts: int) -> None:
    """The sample has keypoints: a part of it needs the whole export (their names are noted over it)."""
    for opts in ({}, {"config": SAMPLE / "label_config.xml"}, {"images": ROOT / "sample_data" / "images"}):
        if parts == 1:
            _check(SAMPLE / "export.json", parts, **opts)
        else:
            _needs_whole(SAMPLE / "export.json", parts, "keypoints, whose names are noted", **opts)


@pytest.mark.parametrize("pair", FIXTURES, ids=lambda p: "/".join(p[0].parts[-2:]))
@pytest.mark.parametrize("parts", (1, 2, 3))
def test_fixtures(fixtures_dir: Path, pair: tuple[Path, Path], parts: int) -> None:
    export, config = (fixtures_dir / p for p in pair)
    # a part of the keypoints export needs the whole (their names are noted over it); JSON-MIN is one part
    why = "keypoints" if "keypoints" in export.name else None
    for opts in ({"config": config}, {"ls_select": "both", "ls_annotator": "latest"}):
        if why is None or len(ls.plan(export, options=_options(**opts), parts=parts)) == 1:
            _check(export, parts, **opts)
        else:
            _needs_whole(export, parts, why, **opts)


@pytest.mark.parametrize("parts", (1, 3, 7, 40))
@pytest.mark.parametrize(("select", "annotator"), [("auto", "all"), ("annotations", "first"),
                                                   ("predictions", "latest"), ("both", "latest")])
def test_generated_every_region(generated: Path, config_file: Path, parts: int, select: str,
                                annotator: str) -> None:
    chunks = _check(generated, parts, ls_select=select, ls_annotator=annotator)
    _check(generated, parts, config=config_file, ls_select=select, ls_annotator=annotator)
    if parts == 40 and select == "auto":
        assert len(chunks) == 40  # cut inside the file, not one part
        # the export exercises what it is meant to: drops of several reasons, notes read() makes at the end
        _, rep = _whole(generated)
        assert set(rep.dropped_counts()) == {"dropped.cancelled", "dropped.degenerate", "dropped.invalid",
                                             "dropped.no_image", "dropped.unsupported"}
        codes = [d.code for d in rep.diagnostics]
        assert {"image.attribute", "coordinates.suspect", "dropped.unsupported", "dropped.no_image"} <= set(codes)
        ds, _ = _whole(generated)
        assert ds.category_names.index("bus") > ds.category_names.index("road")  # first used late


@pytest.mark.parametrize("parts", (2, 5))
def test_generated_through_the_pool(generated: Path, config_file: Path, parts: int) -> None:
    _check(generated, parts, workers=2)
    _check(generated, parts, workers=2, config=config_file, ls_select="both", ls_annotator="all")


@pytest.mark.parametrize("parts", (1, 3))
def test_keypoints_need_the_whole_export(with_faces: Path, config_file: Path, parts: int) -> None:
    """The keypoint names of a category are noted over the whole export (first appearance, then the label
    config's order): a part with keypoints cannot be read alone; one part is read()."""
    ds, _ = _whole(with_faces)
    assert ds.categories.set_index("name")["keypoints"]["face"] == ["nose", "eye"]
    for opts in ({}, {"config": config_file}):
        if parts == 1:
            _check(with_faces, parts, **opts)
        else:
            _needs_whole(with_faces, parts, "keypoints, whose names are noted over the whole export", **opts)


@pytest.mark.parametrize("parts", (1, 3, 7))
def test_large_file_in_pieces(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parts: int) -> None:
    """Pieces of 32 KiB instead of 8 MB: read() and each part read the file a piece at a time, and the parts do
    not follow the pieces."""
    monkeypatch.setattr(ls, "_PIECE", 32 << 10)
    path = _write(tmp_path / "export.json", _tasks(300, seed=3, faces=False))
    assert path.stat().st_size > 8 * (32 << 10)
    _check(path, parts)
    _check(path, parts, ls_select="both", ls_annotator="first")


def test_file_larger_than_two_pieces(tmp_path: Path) -> None:
    """A real file over 16 MB: read in 8 MB pieces, cut into parts across their boundaries."""
    tasks = _tasks(200, seed=5, kinds=["box"], faces=False)
    big = [dict(t, id=k * 1000 + t["id"], data={**t["data"], "image": f"/data/upload/1/0a1b2c3d-{k}-{t['id']}.jpg"})
           for k in range(75) for t in tasks]
    path = _write(tmp_path / "big.json", big)
    assert path.stat().st_size > 2 * (8 << 20)
    assert len(_check(path, 5)) == 5


@pytest.mark.parametrize("parts", (1, 3))
def test_json_min(tmp_path: Path, config_file: Path, parts: int) -> None:
    """JSON-MIN: the records of one task are scattered over the file; read() groups them at the first one, so the
    plan makes it one part."""
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
    assert len(ls.plan(path, options=ReadOptions(), parts=parts)) == 1
    for annotator in ("all", "latest"):
        assert len(_check(path, parts, ls_annotator=annotator)) == 1
        _check(path, parts, config=config_file, ls_annotator=annotator)


@pytest.mark.parametrize("parts", (1, 4))
def test_folder(tmp_path: Path, parts: int) -> None:
    """A folder of exports is one part (read whole)."""
    tasks = _tasks(40, seed=9, faces=False)
    _write(tmp_path / "b.json", tasks[20:])
    _write(tmp_path / "a.json", tasks[:20])
    (tmp_path / "c.json").write_text("[]")
    _write(tmp_path / "d.json", tasks[0] | {"id": 99, "data": {"image": "/data/upload/1/0a1b2c3d-one.jpg"}})
    assert len(_check(tmp_path, parts)) == 1


def test_empty_export(tmp_path: Path, config_file: Path) -> None:
    """No image: one empty part, with the label config's categories (as read())."""
    path = _write(tmp_path / "e.json", [])
    chunks = _check(path, 3, config=config_file)
    assert len(chunks) == 1 and len(chunks[0].images) == 0
    assert chunks[0].category_names == ["car", "person", "face", "road"]


def test_by_hand(tmp_path: Path) -> None:
    """Three tasks in three parts: the values worked out from the JSON (percent of 200 x 100 -> pixels)."""
    def rect(rid: str, x: float, y: float, w: float, h: float, label: str) -> dict[str, Any]:
        return {"id": rid, "type": "rectanglelabels", "original_width": 200, "original_height": 100,
                "value": {"x": x, "y": y, "width": w, "height": h, "rectanglelabels": [label]}}
    tasks = [
        {"id": 1, "data": {"image": "/data/upload/1/0a1b2c3d-a.jpg"},
         "annotations": [{"id": 11, "result": [rect("r1", 10, 20, 50, 30, "cat"), rect("r2", 0, 0, 5, 5, "dog")]}]},
        {"id": 2, "data": {"image": "s3://b/k/b.jpg"},
         "annotations": [{"id": 21, "was_cancelled": True, "result": [rect("r3", 1, 1, 1, 1, "cat")]},
                         {"id": 22, "result": [rect("r5", 0, 0, 100, 100, "dog")]}]},
        {"id": 3, "data": {"image": "c.jpg"},
         "predictions": [{"id": 31, "score": 0.5, "result": [rect("r4", 50, 50, 10, 10, "bird")]}]},
    ]
    path = _write(tmp_path / "y.json", tasks)
    chunks, report = _stream(path, 3)
    assert [c.images["file_name"].tolist() for c in chunks] == [["a.jpg"], ["k/b.jpg"], ["c.jpg"]]
    assert [c.category_names for c in chunks] == [["cat", "dog"], ["dog"], ["bird"]]
    assert [c.boxes.tolist() for c in chunks] == [[[20.0, 20.0, 100.0, 30.0], [0.0, 0.0, 10.0, 5.0]],
                                                  [[0.0, 0.0, 200.0, 100.0]], [[100.0, 50.0, 20.0, 10.0]]]
    assert chunks[2].annotations["score"].tolist() == [0.5]
    assert report.read == 5 and report.dropped_counts() == {"dropped.cancelled": 1}
    assert report.drops["source"].tolist() == [f"{path}:2"]
    # task 3 names task 1's image: read() makes one image of them, which no part can see
    path = _write(tmp_path / "x.json", tasks[:2] + [dict(tasks[2], data=tasks[0]["data"])])
    _needs_whole(path, 3, "an image is named in two parts")
    ds, rep = _whole(path)
    assert ds.images["file_name"].tolist() == ["a.jpg", "k/b.jpg"]
    assert ds.annotations["image"].tolist() == [0, 0, 1, 0]
    assert [d.code for d in rep.diagnostics] == ["image.merged"]


@pytest.mark.parametrize("parts", (1, 3, 7))
def test_shared_images(tmp_path: Path, parts: int) -> None:
    """Tasks naming an image of an earlier task: one part is read(); parts apart, NeedsWholeRead."""
    tasks = _tasks(60, seed=11, faces=False)
    for i in (30, 44, 58):
        tasks[i]["data"] = dict(tasks[i - 20]["data"]) if "image" in tasks[i - 20]["data"] else tasks[i]["data"]
    path = _write(tmp_path / "shared.json", tasks)
    ds, rep = _whole(path)
    assert "image.merged" in [d.code for d in rep.diagnostics]
    merged = {a["task_ids"][1] for a in ds.images["attributes"] if "task_ids" in a}
    assert merged and merged <= {31, 45, 59}
    if parts == 1:
        _check(path, parts)
    else:
        _needs_whole(path, parts, "an image is named in two parts")


@pytest.mark.parametrize("parts", (1, 2, 7))
def test_not_plain_numbers(tmp_path: Path, parts: int) -> None:
    """A coordinate that is not a number (a bool here) drops its region, in a part as in read()."""
    tasks = _tasks(20, seed=4, kinds=["box"], faces=False)
    tasks[12]["annotations"] = [{"id": 5, "result": [_Gen(1).box(40, 40, value={"x": True})]}]
    path = _write(tmp_path / "b.json", tasks)
    ds, rep = _whole(path)
    bad = rep.drops[rep.drops["reason"] == "dropped.invalid"]
    assert bad["source"].tolist() == [f"{path}:13"]
    assert bad["message"].iloc[0].endswith("region: coordinates and original_width/height must be numbers, got True")
    assert rep.read == len(ds) + rep.dropped
    _check(path, parts)


@pytest.mark.parametrize("parts", (1, 7))
def test_error_found_when_rows_are_built(tmp_path: Path, parts: int) -> None:
    """read() checks original_width/height of all rows once every task is read: a region whose size is 0 is
    dropped at its line, the same way in a part."""
    tasks = _tasks(20, seed=4, kinds=["box"], faces=False)
    g = _Gen(1)
    tasks[5]["annotations"] = [{"id": 5, "result": [g.box(40, 40), g.box(40, 40, original_width=0)]}]
    path = _write(tmp_path / "w.json", tasks)
    ds, rep = _whole(path)
    bad = rep.drops[rep.drops["reason"] == "dropped.invalid"]
    assert bad["source"].tolist() == [f"{path}:6"]
    assert "region: original_width/height must be > 0 and at most 2147483647, got 0 x " in bad["message"].iloc[0]
    _check(path, parts)


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("parts", (1, 3, 9))
def test_malformed_region_late(tmp_path: Path, parts: int) -> None:
    tasks = _tasks(80, seed=6, faces=False)
    tasks[70]["annotations"] = [{"id": 7, "result": [{"id": "bad", "type": "polygonlabels",
                                                      "original_width": 10, "original_height": 10,
                                                      "value": {"polygonlabels": ["x"]}}]}]
    path = _write(tmp_path / "m.json", tasks)
    ds, rep = _whole(path)
    assert rep.drops[rep.drops["source"] == f"{path}:71"].values.tolist() == [
        ["dropped.invalid", "x", f"{path}:71", "task 71, annotation 7, region bad: missing field 'points'"]]
    _check(path, parts)


def test_malformed_task_then_syntax_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In pieces: a task's error, then broken JSON further on: the JSON error is read()'s, and the stream's."""
    monkeypatch.setattr(ls, "_PIECE", 16 << 10)
    tasks = _tasks(200, seed=8, faces=False)
    tasks[60]["data"] = "not an object"
    text = json.dumps(tasks)
    path = tmp_path / "s.json"
    for body in (text, text[:-300]):
        path.write_text(body)
        with pytest.raises(ReadError) as whole:
            _whole(path)
        for parts in (1, 4):
            with pytest.raises(ReadError) as streamed:
                _stream(path, parts)
            assert str(streamed.value) == str(whole.value)
        assert ("'data' must be an object" in str(whole.value)) == (body == text)


def test_usage_errors(generated: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="ls_select must be one of annotations, predictions, both, auto, got 'some'"):
        _stream(generated, 3, ls_select="some")
    for bad in (0, -1, True, 2.0):
        with pytest.raises(UsageError, match="chunk_rows must be a positive integer"):
            convert(generated, tmp_path / "o.json", fmt="labelstudio", stream=True, chunk_rows=bad)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- the pipeline
def _convert(tmp: Path, name: str, src: Path, **kw: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    return converted(tmp, name, src, fmt="labelstudio", **kw)


@pytest.mark.parametrize("where", ["here", "child"])
def test_streamed_conversion_writes_the_whole_conversion(generated: Path, with_faces: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """With the size floor lifted, the CLI's streaming conversion writes the same bytes and report as reading
    whole; a shared image or keypoints make it read whole (and say so)."""
    monkeypatch.setenv("PRELABEL_READ_IN_CHILD", "0" if where == "here" else "always")
    monkeypatch.setattr(ls, "STREAM_MIN_BYTES", 0)
    whole, whole_rep = _convert(tmp_path, "whole", generated)
    assert whole_rep["dropped"] and whole_rep["ledger"]["balanced"] is True
    notes = [d.to_dict() for d in _whole(generated)[1].diagnostics]
    for k in (1, 7):
        streamed, rep = _convert(tmp_path, f"stream{k}", generated, stream=True, chunk_rows=k)
        assert streamed == whole
        assert not [d for d in rep["diagnostics"] if d["code"] == "stream.whole"]
        assert rep == whole_rep  # the clip step's entries too, in the whole conversion's order
        assert rep["diagnostics"][:len(notes)] == notes  # the reader's notes first, in read()'s order
        assert {d["code"] for d in rep["diagnostics"][len(notes):]} >= {"clipped", "repaired"}
    tasks = json.loads(generated.read_bytes())
    tasks.append(dict(tasks[0], id=1000))
    shared = _write(tmp_path / "shared.json", tasks)
    for name, src in (("shared", shared), ("faces", with_faces)):
        streamed, rep = _convert(tmp_path, name, src, stream=True, chunk_rows=3)
        assert streamed == _convert(tmp_path, f"{name}_whole", src)[0]
        assert [d["code"] for d in rep["diagnostics"]].count("stream.whole") == 1
