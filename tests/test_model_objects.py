"""Model objects straight in (issue 16), with the real objects that install without a GPU stack: supervision
``Detections`` and Hugging Face pipeline outputs (plain lists of dicts, built as the pipeline documents them),
torchvision outputs as numpy arrays (torch tensors: tests/test_models_torch.py, under ``make test-models``),
and ``prelabel.push`` from a Dataset into a local project, Labellerr (the ``prelabel serve`` stand-in) and a
real Label Studio. Every expected number is worked out by hand in the comments."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import supervision as sv
from pycocotools import mask as mask_utils
from upload_support import CREDS, make_images

import prelabel
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import CategoryError, UsageError
from prelabel.model import Dataset
from prelabel.upload.local import LocalProject
from prelabel.upload.server import LabellerrServer


def _boxes(ds: Dataset) -> list[list[float]]:
    return ds.annotations[["x", "y", "w", "h"]].to_numpy().tolist()


def _ledger(ds: Dataset) -> tuple[int, int, int]:
    """(read, kept, dropped): every object read is kept or dropped with a reason."""
    rep = ds.report
    assert rep.read == len(ds) + rep.dropped
    return rep.read, len(ds), rep.dropped


# ------------------------------------------------------------------------------------------ supervision
def test_real_supervision_detections_keep_masks_names_scores_and_tracks(self_ap: Any) -> None:
    mask = np.zeros((2, 8, 10), dtype=bool)
    mask[0, 2:5, 3:7] = True            # rows 2..4, columns 3..6: box x=3, y=2, w=4, h=3; 12 pixels
    with_masks = sv.Detections(xyxy=np.array([[3.0, 2.0, 7.0, 5.0], [0.0, 0.0, 1.0, 1.0]]), mask=mask,
                               confidence=np.array([0.8, 0.6]), class_id=np.array([0, 1]),
                               tracker_id=np.array([11, 12]), data={"class_name": np.array(["person", "car"])})
    by_id = sv.Detections(xyxy=np.array([[10.0, 10.0, 30.0, 20.0], [1.0, 1.0, 2.0, 2.0], [5.0, 5.0, 9.0, 9.0]]),
                          confidence=np.array([0.9, 0.4, 0.7]), class_id=np.array([1, 7, 0]))
    ds = prelabel.from_detections({"m.jpg": with_masks, "b.jpg": by_id, "e.jpg": sv.Detections.empty()},
                                  image_sizes={"b.jpg": (64, 48)}, names=["person", "car"], min_score=0.5)
    # m.jpg's size comes from its masks (H=8, W=10); e.jpg holds no object, so it is not an image of the dataset
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["m.jpg", 10, 8], ["b.jpg", 64, 48]]
    a = ds.annotations
    assert a[["image", "category", "score"]].values.tolist() == [
        [0, "person", 0.8], [0, "car", 0.6], [1, "car", 0.9], [1, "person", 0.7]]
    assert _boxes(ds) == [[3, 2, 4, 3], [0, 0, 1, 1], [10, 10, 20, 10], [5, 5, 4, 4]]
    assert a.loc[0, "segmentation"]["size"] == [8, 10] and a.loc[1, "segmentation"] is None  # empty mask: box
    assert [x["track_id"] for x in a["attributes"].iloc[:2]] == [11, 12]
    # class 7 is not in names: dropped with its reason (its score 0.4 never reached the filter)
    assert ds.report.drops[["reason", "source", "message"]].values.tolist() == [
        ["dropped.unknown_category", "detections[b.jpg]:2", "class index 7 is not in names (2 names)"]]
    assert _ledger(ds) == (5, 4, 1)
    doc = to_coco(ds)
    assert validate(doc).ok and self_ap(doc, "bbox") == pytest.approx(1.0)
    rle = dict(doc["annotations"][0]["segmentation"])
    assert doc["annotations"][0]["area"] == float(mask_utils.area({**rle, "counts": rle["counts"].encode()})) == 12.0
    assert [d["score"] for d in doc["annotations"]] == [0.8, 0.6, 0.9, 0.7]


def test_supervision_from_a_dict_of_results_with_images_root(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", ["a.png"], size=(640, 480))
    det = sv.Detections(xyxy=np.array([[96.0, 48.0, 224.0, 240.0]]), confidence=np.array([0.5]),
                        class_id=np.array([2]))
    ds = prelabel.from_detections({"a.png": det}, images=tmp_path / "imgs")   # sizes from the image header
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["a.png", 640, 480]]
    assert ds.annotations["category"].tolist() == ["2"] and _boxes(ds) == [[96, 48, 128, 192]]
    # the one resolver's note, shown at the first object of the image whose header was read
    assert [(d.code, d.source, d.message) for d in ds.report.diagnostics] == [
        ("image.size_from_header", "detections[a.png]:1", "1 image size(s) read from the image files' headers")]
    with pytest.raises(UsageError, match="image file name: Detections"):
        prelabel.from_detections([det])  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ Hugging Face
def _hf(score: float, label: str, xmin: int, ymin: int, xmax: int, ymax: int) -> dict[str, Any]:
    """One detection as ``pipeline("object-detection")`` returns it."""
    return {"score": score, "label": label, "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax}}


def test_huggingface_batch_and_single_image() -> None:
    batch = [
        [_hf(0.9987, "cat", 32, 48, 352, 288), _hf(0.31, "remote", 600, 400, 700, 500)],
        [_hf(0.75, "dog", 0, 0, 160, 120), {"score": 0.5, "label": "dog"}],    # the 2nd has no box
        [],
    ]
    ds = prelabel.from_huggingface(batch, image_names=["a.jpg", "b.jpg", "c.jpg"],
                                   image_sizes=[(640, 480), (320, 240), (10, 10)])
    # pixels in, COCO x, y, w, h out: (32, 48) to (352, 288) is 320 x 240
    assert _boxes(ds) == [[32, 48, 320, 240], [600, 400, 100, 100], [0, 0, 160, 120]]
    assert ds.annotations["score"].tolist() == [0.9987, 0.31, 0.75]
    assert ds.report.drops[["reason", "source"]].values.tolist() == [["dropped.invalid", "huggingface[b.jpg]:2"]]
    assert _ledger(ds) == (4, 3, 1)
    assert ds.annotations["src_line"].tolist() == [1, 2, 1]
    # the remote reaches outside the 640x480 image: the clip step (prepare, push) cuts it to 40 x 80
    clipped = prelabel.prepare(ds, min_score=0.5)
    assert _boxes(clipped) == [[32, 48, 320, 240], [0, 0, 160, 120]]
    assert clipped.report.dropped_counts() == {"dropped.invalid": 1, "dropped.min_score": 1}
    one = prelabel.from_huggingface([_hf(0.5, "cat", 1, 2, 3, 4)], image_names="x.jpg",
                                    image_sizes={"x.jpg": (8, 8)})
    assert _boxes(one) == [[1, 2, 2, 2]] and one.file_names.tolist() == ["x.jpg"]
    with pytest.raises(UsageError, match="2 images of detections but 1 image names"):
        prelabel.from_huggingface([[], []], image_names=["a.jpg"])


def test_huggingface_without_a_size_drops_with_the_hint() -> None:
    ds = prelabel.from_huggingface([_hf(0.5, "cat", 1, 2, 3, 4)], image_names="x.jpg")
    assert len(ds) == 0 and ds.report.dropped_counts() == {"dropped.no_image": 1}
    assert "image_sizes" in ds.report.drops["message"].iloc[0]


# ------------------------------------------------------------------------------------------ torchvision (numpy)
NAMES = ["__background__", "person", "N/A", "car"]   # as torchvision numbers them: 0 is the background


def test_torchvision_outputs_as_numpy_arrays() -> None:
    masks = np.zeros((4, 1, 48, 64), dtype=np.float32)
    masks[0, 0, 10:20, 20:50] = 0.6     # rows 10..19, columns 20..49: 10 x 30 = 300 pixels above 0.5
    masks[1, 0, 0:5, 0:5] = 0.4         # nothing above 0.5: the box stays
    out = [{"boxes": np.array([[20.0, 10.0, 50.0, 20.0], [1.0, 2.0, 5.0, 6.0], [0, 0, 4, 4], [0, 0, 4, 4]]),
            "labels": np.array([1, 3, 2, 7]), "scores": np.array([0.9, 0.8, 0.7, 0.6]), "masks": masks}]
    ds = prelabel.from_torchvision(out, image_names=["street.png"], names=NAMES)
    assert ds.images[["file_name", "width", "height"]].values.tolist() == [["street.png", 64, 48]]
    assert ds.category_names == ["person", "car"]       # no background, no N/A
    assert _boxes(ds) == [[20, 10, 30, 10], [1, 2, 4, 4]]
    doc = to_coco(ds)
    assert validate(doc).ok and doc["annotations"][0]["area"] == 300.0
    assert "segmentation" not in doc["annotations"][1] or not doc["annotations"][1]["segmentation"]
    assert ds.report.drops[["reason", "message"]].values.tolist() == [
        ["dropped.unknown_category", "class index 2 is 'N/A' in names, not a category"],
        ["dropped.unknown_category", "class index 7 is not in names (4 names)"]]
    assert _ledger(ds) == (4, 2, 2)
    higher = prelabel.from_torchvision(out, image_names=["street.png"], names=NAMES, mask_threshold=0.7)
    assert higher.annotations["segmentation"].isna().all()   # no pixel above 0.7: boxes only


def test_torchvision_keypoints_and_sizes() -> None:
    kps = np.array([[[10.0, 12.0, 1.0]] * 16 + [[0.0, 0.0, 0.0]]])   # K = 17: the COCO person keypoints
    out = [{"boxes": np.array([[8.0, 8.0, 40.0, 40.0]]), "labels": np.array([1]), "scores": np.array([0.95]),
            "keypoints": kps, "keypoints_scores": np.full((1, 17), 3.5)}]
    ds = prelabel.from_torchvision(out, image_names="p.jpg", names=NAMES, image_sizes=[(64, 64)])
    k = ds.annotations.loc[0, "keypoints"]
    assert k.shape == (17, 3) and k[0].tolist() == [10, 12, 2] and k[16].tolist() == [0, 0, 0]
    cat = ds.categories.set_index("name").loc["person"]
    assert cat["keypoints"][:2] == ["nose", "left_eye"] and [16, 14] in cat["skeleton"]
    assert ds.annotations.loc[0, "attributes"]["keypoint_scores"][0] == 3.5
    assert validate(to_coco(ds)).ok


# ------------------------------------------------------------------------------------------ push
def _model_output() -> Dataset:
    # what a model said about the sample images: 'Cat' and 'dog' in the project's spelling, plus a class the
    # project does not have and a low score
    return prelabel.from_huggingface(
        [[_hf(0.91, "cat", 5, 5, 40, 30), _hf(0.2, "cat", 0, 0, 5, 5)], [_hf(0.8, "dog", 10, 10, 60, 40),
                                                                          _hf(0.7, "zebra", 1, 1, 9, 9)]],
        image_names=["street.jpg", "park.png"], images="sample_data/images")


def test_push_a_dataset_into_a_local_project_in_three_lines(tmp_path: Path) -> None:
    project = prelabel.project_init(tmp_path / "proj", images="sample_data/images", categories=["Cat", "dog"])
    assert isinstance(project, LocalProject) and isinstance(prelabel.LocalProject(tmp_path / "proj"), LocalProject)
    ds = _model_output()
    with pytest.raises(CategoryError, match="zebra"):      # the default: an unknown category is an error
        prelabel.push(ds, f"local:{tmp_path / 'proj'}")
    ds = _model_output()
    res = prelabel.push(ds, f"local:{tmp_path / 'proj'}", unknown="drop", min_score=0.5)
    assert (res.status, res.annotations_applied) == ("completed", 2)
    assert res.report is ds.report and res.report.balanced
    assert ds.report.dropped_counts() == {"dropped.min_score": 1, "dropped.unknown_category": 1}
    assert [(m["source"], m["target"]) for m in res.report.to_dict()["mapping"]][:2] == [("cat", "Cat"),
                                                                                        ("dog", "dog")]
    stored = project.to_dataset()
    assert sorted(stored.annotations["score"].tolist()) == [0.8, 0.91]        # scores kept
    assert sorted(stored.file_names.tolist()) == ["park.png", "street.jpg"]
    assert res.to_dict()["report"]["ledger"] == {"read": 4, "written": 2, "dropped": 2, "balanced": True}


def test_push_async_and_dry_run(tmp_path: Path) -> None:
    prelabel.project_init(tmp_path / "proj", images="sample_data/images", categories=["cat", "dog", "zebra"])
    fut = prelabel.push(_model_output(), f"local:{tmp_path / 'proj'}", _async=True, out=tmp_path / "o.json")
    assert fut.result(timeout=60).annotations_applied == 4 and (tmp_path / "o.json").is_file()
    dry = prelabel.push(_model_output(), f"local:{tmp_path / 'proj'}", dry_run=True)
    assert dry.dry_run and dry.annotations_applied == 4


def test_push_to_labellerr_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = prelabel.project_init(tmp_path / "proj", images="sample_data/images", categories=["cat", "dog"],
                                    project_id="p-16")
    srv = LabellerrServer(project, credentials=CREDS).start()
    try:
        for var, value in (("LABELLERR_API_KEY", CREDS.api_key), ("LABELLERR_API_SECRET", CREDS.api_secret),
                           ("LABELLERR_CLIENT_ID", CREDS.client_id), ("LABELLERR_BASE_URL", srv.url)):
            monkeypatch.setenv(var, value)
        res = prelabel.push(_model_output(), "labellerr:p-16", unknown="drop")
    finally:
        srv.stop()
    assert (res.status, res.annotations_applied) == ("completed", 3)
    assert sorted(project.to_dataset().annotations["score"].tolist()) == [0.2, 0.8, 0.91]


@pytest.mark.labelstudio
def test_push_to_a_real_label_studio(label_studio: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    ds = _model_output()
    res = prelabel.push(ds, "labelstudio:new", create_project="issue 16", images="sample_data/images",
                        min_score=0.5)
    # a new project's labels come from the categories: all 3 kept (zebra too), the 0.2 cat dropped
    assert (res.status, res.annotations_applied, res.files_matched) == ("completed", 3, 2)
    assert ds.report.dropped_counts() == {"dropped.min_score": 1}
