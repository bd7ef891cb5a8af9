"""Shared test helpers: the fixtures folder beside the project, and a COCOeval self-check."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
SAMPLE = ROOT / "sample_data"


@pytest.fixture
def fixtures_dir() -> Path:
    """../shared/fixtures; tests that use it skip when it is absent (never copy fixtures into the project)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return SHARED_FIXTURES


def coco_self_ap(coco: dict[str, Any] | str | Path, iou_type: str = "bbox") -> float:
    """Load a COCO document in pycocotools and evaluate it against itself; returns AP (1.0 when sound)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    doc = json.loads(Path(coco).read_text()) if isinstance(coco, (str, Path)) else coco
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(doc))
        gt.createIndex()
        dets = []
        for a in doc["annotations"]:
            d = {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0}
            if iou_type == "bbox":
                d["bbox"] = a["bbox"]
            elif iou_type == "segm":
                d["segmentation"] = gt.annToRLE(gt.anns[a["id"]])
            else:
                d["keypoints"] = a["keypoints"]
            dets.append(d)
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.fixture
def self_ap():
    return coco_self_ap
