"""The report ledger: read == written + dropped, per reason and per category; every entry keeps its source."""

from __future__ import annotations

import re
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prelabel.model import Dataset
from prelabel.pipeline import prepare, write_dataset
from prelabel.report import CODES, Report

ROOT = Path(__file__).resolve().parents[1]
NAN = float("nan")


def _build(rows: list[dict[str, Any]], *, width: int = 20, height: int = 10) -> Dataset:
    cols: dict[str, list[Any]] = {k: [] for k in ("image", "category", "x", "y", "w", "h", "score",
                                                  "segmentation", "src_file", "src_line")}
    for i, r in enumerate(rows):
        cols["image"].append(0)
        cols["category"].append(r["category"])
        for k in "xywh":
            cols[k].append(float(r.get(k, 1.0)))
        cols["score"].append(float(r.get("score", NAN)))
        seg = r.get("segmentation")
        cols["segmentation"].append(None if seg is None else [np.asarray(seg, dtype=np.float64)])
        cols["src_file"].append("preds.csv")
        cols["src_line"].append(i + 2)  # line 1 is the CSV header
    return Dataset.build(images={"file_name": ["a.jpg"], "width": [width], "height": [height]}, annotations=cols)


def test_hand_counted_ledger(tmp_path: Path):
    ds = _build([
        {"category": "cat", "x": 1, "y": 1, "w": 4, "h": 4},                      # written as is
        {"category": "cat", "x": 18, "y": 1, "w": 4, "h": 4},                     # clipped to w = 2
        {"category": "cat", "x": 30, "y": 1, "w": 4, "h": 4},                     # outside
        {"category": "dog", "x": NAN, "y": 1, "w": 4, "h": 4},                    # non-finite
        {"category": "dog", "x": 1, "y": 1, "w": 0, "h": 4},                      # degenerate
        {"category": "bg", "x": 1, "y": 1, "w": 4, "h": 4},                       # mapped to null
        {"category": "dog", "x": 1, "y": 1, "w": 1, "h": 1},                      # under min_area 2
        {"category": "dog", "x": 1, "y": 1, "w": 5, "h": 5, "score": 0.1},        # under min_score 0.5
        {"category": "dog", "segmentation": [-2, 2, 4, 2, 4, 6, -2, 6]},          # polygon clipped
    ])
    prepared = prepare(ds, mapping={"bg": None}, min_area=2.0, min_score=0.5)
    res = write_dataset(prepared, tmp_path / "out.json", report_path=tmp_path / "report.json")
    doc = orjson.loads((tmp_path / "report.json").read_bytes())
    assert doc["ledger"] == {"read": 9, "written": 3, "dropped": 6, "balanced": True}
    assert doc["dropped"] == {"dropped.degenerate": 1, "dropped.mapped_to_null": 1, "dropped.min_area": 1,
                              "dropped.min_score": 1, "dropped.nonfinite": 1, "dropped.outside": 1}
    assert doc["changed"] == {"clipped": 2}
    assert doc["written_by_category"] == {"cat": 2, "dog": 1}
    assert doc["dropped_by_category"] == {
        "bg": {"dropped.mapped_to_null": 1}, "cat": {"dropped.outside": 1},
        "dog": {"dropped.degenerate": 1, "dropped.min_area": 1, "dropped.min_score": 1, "dropped.nonfinite": 1}}
    # per category: read (cat 3, dog 5, bg 1) == written + dropped
    read = Counter(ds.annotations["category"])
    for cat, n in read.items():
        assert n == doc["written_by_category"].get(cat, 0) + sum(doc["dropped_by_category"].get(cat, {}).values())
    # every dropped or changed item names its source line
    entries = [d for d in doc["diagnostics"] if d["code"] in doc["dropped"] or d["code"] in doc["changed"]]
    assert sorted(d["source"] for d in entries) == sorted(
        ["preds.csv:3", "preds.csv:4", "preds.csv:5", "preds.csv:6", "preds.csv:7", "preds.csv:8", "preds.csv:9",
         "preds.csv:10"])
    assert {"code": "clipped", "source": "preds.csv:3", "severity": "warning",
            "message": "box [18, 1, 4, 4] clipped to [18, 1, 2, 4] (image 20x10)"} in entries
    assert res.report.balanced


# ------------------------------------------------------------------------------------------------ property
NAMES = ["cat", "dog", "bird", "bg"]
num = st.floats(min_value=-15, max_value=40, allow_nan=False, width=32) | st.just(NAN) | st.just(float("inf"))


@st.composite
def rows(draw: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(min_value=0, max_value=12))):
        r: dict[str, Any] = {"category": draw(st.sampled_from(NAMES)),
                             "score": draw(st.sampled_from([NAN, 0.2, 0.9]))}
        if draw(st.booleans()):
            r.update(x=draw(num), y=draw(num), w=draw(num), h=draw(num))
        else:
            n = draw(st.integers(min_value=2, max_value=5))
            r["segmentation"] = draw(st.lists(num, min_size=2 * n, max_size=2 * n))
        out.append(r)
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows(), st.booleans(), st.sampled_from([0.0, 3.0]), st.booleans())
def test_property_the_ledger_balances(rs, map_bg, min_area, clip_on):
    ds = _build(rs)
    before = Counter(ds.annotations["category"])
    prepared = prepare(ds, mapping={"bg": None} if map_bg else None, min_area=min_area, min_score=0.5, clip=clip_on)
    with tempfile.TemporaryDirectory() as d:
        res = write_dataset(prepared, Path(d) / "out.json", allow_outside=not clip_on)
    rep = res.report
    assert rep.read == len(rs)
    assert rep.read == rep.written + rep.dropped and rep.balanced
    assert sum(rep.dropped_counts().values()) == rep.dropped
    by_cat = rep.dropped_by_category()
    for cat in NAMES:
        assert before[cat] == rep.written_by_category.get(cat, 0) + sum(by_cat.get(cat, {}).values())
    drops = rep.drops
    assert all(re.fullmatch(r"preds\.csv:\d+", s) for s in drops["source"])


# ------------------------------------------------------------------------------------------------ the doc
def test_docs_report_md_documents_every_key_and_code():
    text = (ROOT / "docs" / "report.md").read_text()
    r = Report()
    r.add_read(1)
    r.set_written(1, by_category={"cat": 1})
    r.extra["x"] = 1
    assert [k for k in r.to_dict() if f"`{k}`" not in text] == []
    assert [c for c in CODES if f"`{c}`" not in text] == [], "document new codes in docs/report.md"


def test_unknown_category_is_described_for_empty_labels_too():
    # a pylabel-style export: the image with no annotations is a row with an empty category and no box
    import pandas as pd

    from prelabel.adapters.predictions import from_dataframe

    df = pd.DataFrame({"img_filename": ["a.jpg", "b.jpg"], "img_width": [10, 10], "img_height": [10, 10],
                       "cat_name": ["cat", ""], "ann_bbox_xmin": [1.0, NAN], "ann_bbox_ymin": [1.0, NAN],
                       "ann_bbox_xmax": [3.0, NAN], "ann_bbox_ymax": [3.0, NAN]})
    rep = from_dataframe(df).report
    assert rep.drops[["reason", "source", "message"]].values.tolist() == [
        ["dropped.unknown_category", "dataframe:2", "no category"]]
    desc = ("no usable category: not in the schema (--unknown drop), an empty or missing label (e.g. pylabel "
            "rows of images without annotations), or a category id or class index the source does not define")
    assert CODES["dropped.unknown_category"] == desc
    assert f"  dropped  {'dropped.unknown_category':<28} {1:>8}  {desc}" in rep.summary_lines()
