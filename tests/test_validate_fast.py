"""validate()'s numpy pre-screen (_suspect_rows) never changes what validate says: the same errors and warnings,
in the same order, as checking every annotation one by one."""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from prelabel.converters import coco_validate as coco

VALUES = {
    "id": st.one_of(st.integers(min_value=1, max_value=6), st.sampled_from([0, -1, 1.0, True, "3", None, 2**70])),
    "image_id": st.sampled_from([1, 2, 3, 9, 1.0, "1", None, True]),
    "category_id": st.sampled_from([1, 2, 7, 1.0, None, False]),
    "iscrowd": st.sampled_from([0, 1, 2, 0.0, 1.0, True, "0"]),
    "bbox": st.one_of(
        st.lists(st.sampled_from([0, 1, 2.5, 5, 9.5, 10, 11, -0.5, -1e-7, 0.0, 1e-7, math.inf, math.nan, True,
                                  "1", 2**1030]), min_size=3, max_size=5),
        st.sampled_from([None, "box", [1, 2, 3, 4]])),
    "area": st.sampled_from([0, 1, 2.5, -1, math.nan, math.inf, None, "1", True]),
    "segmentation": st.sampled_from([[], None, [[1, 1, 5, 1, 5, 5]], [[1, 2]], {"size": [10, 10], "counts": "a"},
                                     "x"]),
    "keypoints": st.sampled_from([[1, 1, 2], [1, 1, 3], "k"]),
    "score": st.sampled_from([0.5, 1, math.nan, "0.5", None]),
}


@st.composite
def annotation(draw: Any) -> Any:
    if draw(st.integers(0, 30)) == 0:
        return draw(st.sampled_from([None, [], "ann", 3]))
    a: dict[str, Any] = {}
    for key, strat in VALUES.items():
        optional = key in ("segmentation", "keypoints", "score", "iscrowd")
        if not optional or draw(st.booleans()):
            a[key] = draw(strat)
    if draw(st.integers(0, 3)) == 0:  # mostly valid rows, like real files
        a = {"id": a.get("id"), "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [1, 1, 2, 2], "area": 4}
    return a


def _doc(anns: list[Any]) -> dict[str, Any]:
    return {"info": {}, "licenses": [],
            "images": [{"id": 1, "file_name": "a.jpg", "width": 10, "height": 10},
                       {"id": 2, "file_name": "b.jpg", "width": 0, "height": 0},
                       {"id": 3, "file_name": "c.jpg", "width": 20, "height": 8}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog", "keypoints": ["nose"]}],
            "annotations": anns}


@settings(max_examples=int(os.environ.get("PRELABEL_FUZZ_EXAMPLES", "600")), deadline=None,
          derandomize="PRELABEL_FUZZ_EXAMPLES" not in os.environ, database=None)
@given(st.lists(annotation(), max_size=12), st.booleans())
def test_prescreen_changes_nothing(anns: list[Any], allow_outside: bool) -> None:
    fast = coco.validate(_doc(anns), allow_outside=allow_outside)
    original = coco._suspect_rows
    coco._suspect_rows = lambda *a, **k: None  # type: ignore[assignment]
    try:
        slow = coco.validate(_doc(anns), allow_outside=allow_outside)
    finally:
        coco._suspect_rows = original
    assert fast.errors == slow.errors
    assert fast.warnings == slow.warnings


def test_a_valid_file_has_no_suspects() -> None:
    anns = [{"id": i + 1, "image_id": 1 + i % 3 if i % 3 != 1 else 1, "category_id": 1, "iscrowd": 0,
             "segmentation": [], "bbox": [1.0, 1.0, 2.0, 2.0], "area": 4.0} for i in range(50)]
    doc = _doc(anns)
    images = {1: (10, 10, "a.jpg"), 2: (0, 0, "b.jpg"), 3: (20, 8, "c.jpg")}
    assert coco._suspect_rows(doc["annotations"], images, {1: None, 2: 1}, tolerance=1e-6).tolist() == []
    assert coco.validate(doc).errors == ["images[1] (id 2): width and height must be integers >= 1, got 0 x 0"]


def test_an_int_too_large_for_a_float_is_an_error_not_a_crash() -> None:
    doc = _doc([{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [2**1030, 0, 1, 1], "area": 1}])
    assert coco.validate(doc).errors[1:] == [
        f"annotations[0] (id 1): bbox must be 4 finite numbers [x, y, w, h], got {[2**1030, 0, 1, 1]!r}"]


# ------------------------------------------------------------------- validate_dataset, the writer's check
_NUMS = st.sampled_from([0.0, 1.0, 2.5, 9.5, 10.0, 11.0, -0.5, -1e-7, 1e-7, math.inf, -math.inf, math.nan])


@st.composite
def dataset_rows(draw: Any) -> Any:
    n = draw(st.integers(0, 9))
    return {"image": draw(st.lists(st.integers(0, 2), min_size=n, max_size=n)),
            "category": draw(st.lists(st.sampled_from(["cat", "dog"]), min_size=n, max_size=n)),
            **{k: draw(st.lists(_NUMS, min_size=n, max_size=n)) for k in ("x", "y", "w", "h")},
            "iscrowd": draw(st.lists(st.sampled_from([0, 1, 2, -1]), min_size=n, max_size=n)),
            "score": draw(st.lists(st.sampled_from([math.nan, 0.5, 1.0, math.inf]), min_size=n, max_size=n)),
            "segmentation": draw(st.lists(st.sampled_from([None, "tri", "short"]), min_size=n, max_size=n))}


@settings(max_examples=int(os.environ.get("PRELABEL_FUZZ_EXAMPLES", "400")), deadline=None,
          derandomize="PRELABEL_FUZZ_EXAMPLES" not in os.environ, database=None)
@given(dataset_rows(), st.booleans())
def test_validate_dataset_says_what_validate_says_of_the_written_document(rows: Any, allow_outside: bool) -> None:
    # the columns' screen plus the one-by-one checks of the rows it flags (validate_dataset) against validate()
    # of the document the writer makes of the same Dataset (every row checked by validate's own rules)
    from prelabel.converters.coco import to_coco, validate_dataset
    from prelabel.converters.coco_tables import CocoTables
    from prelabel.model import Dataset

    shapes = {None: None, "tri": [np.array([1.0, 1.0, 5.0, 1.0, 5.0, 5.0])], "short": [np.array([0.0, 0.0, 1.0, 1.0])]}
    ds = Dataset.build(images={"file_name": ["a.jpg", "b.jpg", "c.jpg"], "width": [10, 0, 20], "height": [10, 5, 8]},
                       annotations={**rows, "segmentation": [shapes[s] for s in rows["segmentation"]]})
    got = validate_dataset(CocoTables(ds), allow_outside=allow_outside)
    doc = to_coco(ds)
    ref = coco.validate(doc, allow_outside=allow_outside)
    assert got.errors == ref.errors
    assert got.warnings == [w for w in ref.warnings if not w.startswith("top level")]
