"""The same sample annotations, read from every format, give the same COCO boxes as the truth table.

The truth is sample_data/make_sample.py's table, written into each format by hand-written code independent of
prelabel's adapters, so this compares prelabel's readers against an independent source.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from prelabel.adapters.base import ReadOptions
from prelabel.converters.coco import to_coco, validate
from prelabel.pipeline import prepare, read

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
_spec = importlib.util.spec_from_file_location("make_sample", SAMPLE / "make_sample.py")
assert _spec and _spec.loader
make_sample = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_sample)

SOURCES = {
    "yolo": SAMPLE / "yolo",
    "voc": SAMPLE / "voc",
    "cvat": SAMPLE / "cvat" / "annotations.xml",
    "labelstudio": SAMPLE / "labelstudio" / "export.json",
    "coco": SAMPLE / "coco" / "instances.json",
    "predictions": SAMPLE / "predictions" / "predictions.csv",
}


def _truth() -> set[tuple[str, str, float, float, float, float]]:
    out = set()
    for name, (_w, _h, _o, objs) in make_sample.IMAGES.items():
        for cat, (x0, y0, x1, y1), _poly, _kps, _s in objs:
            out.add((name, cat, float(x0), float(y0), float(x1 - x0), float(y1 - y0)))
    return out


@pytest.mark.parametrize("fmt", sorted(SOURCES))
def test_every_format_gives_the_truth_boxes(fmt: str, self_ap) -> None:
    ds = prepare(read(SOURCES[fmt], fmt=fmt, options=ReadOptions(images=SAMPLE / "images")))
    coco = to_coco(ds)
    assert validate(coco, images_root=SAMPLE / "images").ok
    names = {i["id"]: i["file_name"] for i in coco["images"]}
    cats = {c["id"]: c["name"] for c in coco["categories"]}
    got = {(names[a["image_id"]], cats[a["category_id"]], *(round(v, 6) for v in a["bbox"]))
           for a in coco["annotations"]}
    assert got == _truth()
    assert len(coco["annotations"]) == 7
    assert self_ap(coco, "bbox") == pytest.approx(1.0)


@pytest.mark.parametrize("fmt", ["coco", "labelstudio"])
def test_person_keypoints_survive(fmt: str) -> None:
    coco = to_coco(prepare(read(SOURCES[fmt], fmt=fmt, options=ReadOptions(images=SAMPLE / "images"))))
    person = next(c for c in coco["categories"] if c["name"] == "person")
    (ann,) = [a for a in coco["annotations"] if a["category_id"] == person["id"]]
    # truth: head (74, 12) visible, left_hand (64, 34) visible, right_hand (84, 34) labelled but hidden (v=1);
    # Label Studio has no visibility flag, so its keypoints come back as visible (v=2)
    xy = [(ann["keypoints"][i], ann["keypoints"][i + 1]) for i in range(0, 9, 3)]
    assert [(round(x, 6), round(y, 6)) for x, y in xy] == [(74.0, 12.0), (64.0, 34.0), (84.0, 34.0)]
    assert person["keypoints"] == ["head", "left_hand", "right_hand"]
    assert ann["num_keypoints"] == 3


def test_portrait_size_follows_exif_orientation() -> None:
    # portrait.jpg is stored 48x32 with EXIF orientation 6: annotators see it 32 wide, 48 high
    coco = to_coco(read(SOURCES["yolo"], fmt="yolo"))
    (img,) = [i for i in coco["images"] if i["file_name"] == "portrait.jpg"]
    assert (img["width"], img["height"]) == (32, 48)
