"""Real Ultralytics ``Results`` and real torchvision outputs (torch tensors), built from arrays: no weights are
downloaded. torch (CPU) and Ultralytics are heavy, so ``make test`` skips this module (it says so in its
summary) and ``make test-models`` installs them into ``.venv-models`` and runs it (docs/formats/models.md).
The ```py-models blocks of the docs run here too. Every expected number is worked out by hand in the comments."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

SKIP = "torch and Ultralytics are installed by `make test-models` (CPU only), not by `make test`"
torch = pytest.importorskip("torch", reason=SKIP)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="yolo-settings-"))  # not the user's home
os.environ.setdefault("YOLO_VERBOSE", "False")
results_mod = pytest.importorskip("ultralytics.engine.results", reason=SKIP)
Results = results_mod.Results

import prelabel  # noqa: E402
from prelabel.converters.coco import to_coco, validate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
IMG = np.zeros((480, 640, 3), dtype=np.uint8)    # a 640x480 frame: orig_shape (480, 640)
NAMES = {0: "person", 1: "car"}


def _boxes(ds: Any) -> list[list[float]]:
    return ds.annotations[["x", "y", "w", "h"]].to_numpy().tolist()


def _balanced(ds: Any) -> None:
    assert ds.report.read == len(ds) + ds.report.dropped


def test_detect_results_pixel_boxes_scores_names_and_tracks() -> None:
    # normalized xywh (0.25, 0.3, 0.2, 0.4) of a 640x480 image: centre (160, 144), size 128 x 192,
    # so x1 = 160 - 64 = 96, y1 = 144 - 96 = 48, x2 = 224, y2 = 240 and the COCO box is [96, 48, 128, 192]
    boxes = torch.tensor([[96.0, 48.0, 224.0, 240.0, 0.75, 1.0], [0.0, 0.0, 10.0, 10.0, 0.2, 0.0]])
    r = Results(IMG, path="/data/run/street.jpg", names=NAMES, boxes=boxes)
    np.testing.assert_allclose(r.boxes.xywhn[0].numpy(), [0.25, 0.3, 0.2, 0.4], rtol=1e-6)
    ds = prelabel.from_ultralytics([r], min_score=0.5)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["street.jpg", 640, 480]]
    assert _boxes(ds) == [[96.0, 48.0, 128.0, 192.0]]
    assert ds.annotations["category"].tolist() == ["car"] and ds.annotations["score"].tolist() == [0.75]
    assert ds.category_names == ["person", "car"]                  # the model's names, in index order
    assert ds.report.drops[["reason", "source"]].values.tolist() == [
        ["dropped.min_score", "ultralytics[/data/run/street.jpg]:2"]]
    _balanced(ds)
    doc = to_coco(ds)
    assert validate(doc).ok and doc["annotations"][0]["bbox"] == [96.0, 48.0, 128.0, 192.0]
    assert doc["annotations"][0]["score"] == 0.75
    # with the images folder, the path is named relative to it; a tracker's ids are kept
    tracked = Results(IMG, path="/data/run/sub/a.jpg", names=NAMES,
                      boxes=torch.tensor([[1.0, 2.0, 3.0, 4.0, 7.0, 0.9, 0.0]]))   # x1 y1 x2 y2 id conf cls
    ds2 = prelabel.from_ultralytics(tracked, images="/data/run")
    assert ds2.file_names.tolist() == ["sub/a.jpg"] and ds2.annotations.loc[0, "attributes"] == {"track_id": 7}


def test_segment_results_polygons_against_pycocotools_area() -> None:
    masks = torch.zeros((2, 480, 640))
    masks[0, 48:240, 64:192] = 1.0     # pixel rows 48..239, columns 64..191; the second mask is empty
    boxes = torch.tensor([[64.0, 48.0, 192.0, 240.0, 0.9, 0.0], [5.0, 5.0, 9.0, 9.0, 0.8, 1.0]])
    r = Results(IMG, path="seg.jpg", names=NAMES, boxes=boxes, masks=masks)
    ds = prelabel.from_ultralytics([r])
    poly = ds.annotations.loc[0, "segmentation"][0]
    # Ultralytics traces the mask through its pixel centres: corners (64, 48) .. (191, 239)
    assert sorted(map(tuple, poly.reshape(-1, 2).tolist())) == [(64, 48), (64, 239), (191, 48), (191, 239)]
    assert _boxes(ds) == [[64.0, 48.0, 127.0, 191.0], [5.0, 5.0, 4.0, 4.0]]     # the polygon's box; the box
    assert ds.annotations.loc[1, "segmentation"] is None
    changes = ds.report.changes[["reason", "source"]].values.tolist()
    assert changes == [["recomputed", "ultralytics[seg.jpg]:1"], ["repaired", "ultralytics[seg.jpg]:2"]]
    doc = to_coco(ds)
    assert validate(doc).ok
    rle = mask_utils.frPyObjects(doc["annotations"][0]["segmentation"], 480, 640)
    assert doc["annotations"][0]["area"] == pytest.approx(127 * 191)   # the polygon's own area
    assert abs(float(mask_utils.area(mask_utils.merge(rle))) - 127 * 191) <= 127 + 191 + 1   # rasterized
    _balanced(ds)


def test_obb_results_four_corners() -> None:
    # centre (320, 240), 100 x 50, angle 0: corners x 270..370, y 215..265
    r = Results(IMG, path="o.jpg", names={0: "ship"}, obb=torch.tensor([[320.0, 240.0, 100.0, 50.0, 0.0, 0.6, 0.0]]))
    ds = prelabel.from_ultralytics([r])
    assert _boxes(ds) == [[270.0, 215.0, 100.0, 50.0]] and ds.annotations["score"].tolist() == [0.6]
    doc = to_coco(ds)
    assert validate(doc).ok and doc["annotations"][0]["area"] == pytest.approx(5000.0)


def test_pose_results_visibility_and_names() -> None:
    kp = torch.tensor([[[100.0, 80.0, 0.9], [0.0, 0.0, 0.1], [120.0, 90.0, 0.3]]])
    boxes = torch.tensor([[90.0, 70.0, 130.0, 100.0, 0.8, 0.0]])
    r = Results(IMG, path="p.jpg", names={0: "hand"}, boxes=boxes, keypoints=kp)
    ds = prelabel.from_ultralytics([r], keypoint_names={0: ["wrist", "thumb", "index"]})
    # confidence 0.9 -> v 2, the point at (0, 0) -> missing (0, 0, 0), confidence 0.3 -> v 1
    assert ds.annotations.loc[0, "keypoints"].tolist() == [[100, 80, 2], [0, 0, 0], [120, 90, 1]]
    assert ds.categories.loc[0, "keypoints"] == ["wrist", "thumb", "index"]
    assert ds.annotations.loc[0, "attributes"]["keypoint_scores"] == pytest.approx([0.9, 0.1, 0.3])
    assert prelabel.from_ultralytics([r]).categories.loc[0, "keypoints"] == ["kp0", "kp1", "kp2"]
    assert validate(to_coco(ds)).ok


def test_classification_results_are_noted_not_read() -> None:
    r = Results(IMG, path="c.jpg", names=NAMES, probs=torch.tensor([0.1, 0.9]))
    ds = prelabel.from_ultralytics([r])
    assert len(ds) == 0 and ds.report.read == 0
    assert [d.code for d in ds.report.diagnostics] == ["results.ignored"]


def test_ultralytics_to_a_local_project_in_three_lines(tmp_path: Path) -> None:
    prelabel.project_init(tmp_path / "proj", images="sample_data/images", categories=["person", "car"])
    results = [Results(np.zeros((64, 96, 3), dtype=np.uint8), path=str(ROOT / "sample_data/images/street.jpg"),
                       names=NAMES, boxes=torch.tensor([[10.0, 8.0, 40.0, 60.0, 0.66, 0.0]]))]  # = model(images)
    ds = prelabel.from_ultralytics(results, images=ROOT / "sample_data/images")
    res = prelabel.push(ds, f"local:{tmp_path / 'proj'}")
    assert (res.status, res.annotations_applied) == ("completed", 1)
    stored = prelabel.LocalProject(tmp_path / "proj").to_dataset()
    assert stored.annotations["score"].tolist() == [0.66] and _boxes(stored) == [[10.0, 8.0, 30.0, 52.0]]


def test_torchvision_outputs_as_tensors() -> None:
    masks = torch.zeros((2, 1, 48, 64))
    masks[0, 0, 10:20, 20:50] = 0.6    # 10 x 30 = 300 pixels above 0.5
    out = [{"boxes": torch.tensor([[20.0, 10.0, 50.0, 20.0], [1.0, 2.0, 5.0, 6.0]], requires_grad=True),
            "labels": torch.tensor([1, 3]), "scores": torch.tensor([0.9, 0.25]), "masks": masks}]
    ds = prelabel.from_torchvision(out, image_names=["street.png"], names=["__background__", "person", "N/A", "car"],
                                   min_score=0.5)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["street.png", 64, 48]]
    assert _boxes(ds) == [[20.0, 10.0, 30.0, 10.0]] and ds.annotations["score"].tolist() == [pytest.approx(0.9)]
    doc = to_coco(ds)
    seg = doc["annotations"][0]["segmentation"]
    assert doc["annotations"][0]["area"] == float(mask_utils.area({**seg, "counts": seg["counts"].encode()})) == 300
    assert ds.report.dropped_counts() == {"dropped.min_score": 1}
    _balanced(ds)


def _blocks(path: Path) -> list[str]:
    import re

    text = path.read_text(encoding="utf-8")   # each block padded to its line, so tracebacks point into the page
    return ["\n" * text.count("\n", 0, m.start(1)) + m.group(1)
            for m in re.finditer(r"^```py-models[^\n]*\n(.*?)^```[ \t]*$", text, re.M | re.S)]


@pytest.mark.parametrize("page", ["docs/formats/models.md", "docs/migration/from-model-outputs.md"])
def test_docs_model_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    monkeypatch.chdir(tmp_path)
    code = _blocks(ROOT / page)
    assert code, f"{page}: no ```py-models block"
    namespace: dict[str, Any] = {}
    for block in code:
        exec(compile(block, page, "exec"), namespace)  # noqa: S102 - the docs' own examples
