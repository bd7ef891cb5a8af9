"""What is in a source: counts per category and geometry kind, size and score spreads, problems, and hints.

:func:`summarize` describes a Dataset as read (``prelabel inspect SRC``); the problems are those the report of
a conversion would list: the prepare steps (:func:`prelabel.pipeline.prepare` with clipping on and
``unknown="keep"``) run on a copy, so drops and clips show without touching the caller's report.
:func:`convention_hints` looks for coordinates written in another convention than the source's format says
(normalized boxes where pixels were expected); ``inspect`` lists them and ``convert`` may use them too.

The geometry kind of an annotation row is, in this order: ``keypoints`` (a keypoints array, whatever else it
has), ``mask`` (an RLE segmentation), ``rotated_box`` (a polygon with a non-zero ``rotation`` attribute: CVAT
and Label Studio rotated rectangles), ``polygon`` (any other polygon), ``box`` (no segmentation).

Example:
    >>> from prelabel.model import Dataset
    >>> from prelabel.inspection import summarize
    >>> ds = Dataset.build(images={"file_name": ["a.jpg", "b.jpg"], "width": [640, 320], "height": [480, 240]},
    ...     annotations={"image": [0, 0, 1], "category": ["cat", "dog", "cat"], "x": [10.0, 600.0, 5.0],
    ...                  "y": [10.0, 10.0, 5.0], "w": [50.0, 80.0, 20.0], "h": [40.0, 20.0, 20.0]})
    >>> s = summarize(ds)
    >>> s["per_category"], s["per_kind"]["box"], s["image_size"]["width"]
    ({'cat': 2, 'dog': 1}, 3, {'min': 320, 'median': 480.0, 'max': 640})
    >>> s["changed"], s["scores"]
    ({'clipped': 1}, None)
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import IO, Any

import numpy as np
import pandas as pd

from .converters.conventions import ConventionStats, convention_hints, source_text
from .model import Dataset
from .pipeline import prepare as prepare_steps

__all__ = ["KINDS", "ConventionStats", "convention_hints", "geometry_kinds", "print_summary", "summarize"]

KINDS: tuple[str, ...] = ("box", "polygon", "rotated_box", "mask", "keypoints")
_KIND_TITLES = {"box": "box", "polygon": "polygon", "rotated_box": "rotated box", "mask": "mask",
                "keypoints": "keypoints"}


# ---------------------------------------------------------------------------------------------- kinds
def geometry_kinds(ds: Dataset) -> np.ndarray:
    """The geometry kind of every annotation row (an object array of :data:`KINDS` names).

    >>> from prelabel.model import Dataset
    >>> import numpy as np
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
    ...     annotations={"image": [0, 0], "category": ["a", "b"], "x": [1.0, 1.0], "y": [1.0, 1.0],
    ...                  "w": [2.0, 2.0], "h": [2.0, 2.0],
    ...                  "segmentation": [None, [np.array([1.0, 1, 3, 1, 3, 3])]]})
    >>> geometry_kinds(ds).tolist()
    ['box', 'polygon']
    """
    ann = ds.annotations
    n = len(ann)
    seg = ann["segmentation"].to_numpy(dtype=object)
    kps = ann["keypoints"].to_numpy(dtype=object)
    attrs = ann["attributes"].to_numpy(dtype=object)
    is_kp = np.fromiter((k is not None and not isinstance(k, float) for k in kps), dtype=bool, count=n)
    is_mask = np.fromiter((isinstance(s, dict) for s in seg), dtype=bool, count=n)
    is_poly = np.fromiter((isinstance(s, (list, tuple)) for s in seg), dtype=bool, count=n)
    rotated = np.fromiter((isinstance(a, Mapping) and _nonzero(a.get("rotation")) for a in attrs),
                          dtype=bool, count=n)
    kinds = np.full(n, "box", dtype=object)
    kinds[is_poly] = "polygon"
    kinds[is_poly & rotated] = "rotated_box"
    kinds[is_mask] = "mask"
    kinds[is_kp] = "keypoints"
    return kinds


def _nonzero(v: Any) -> bool:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(f) and f % 360.0 != 0.0)


# ---------------------------------------------------------------------------------------------- summary
def summarize(ds: Dataset, *, prepare: bool = True) -> dict[str, Any]:
    """Describe ``ds`` as a JSON-ready dict with stable keys (``prelabel inspect --json`` prints it).

    Keys:

    ``format``, ``source``
        from the report's input (str, a list when several sources were merged, or None).
    ``images``, ``images_annotated``, ``annotations``
        counts (images with at least one annotation; annotations as read).
    ``categories``
        category names in the dataset's order.
    ``per_category``
        ``{name: annotations}`` for every category, in that order (0 for unused ones).
    ``per_kind``
        ``{kind: annotations}`` for every kind of :data:`KINDS`: box, polygon, rotated_box, mask, keypoints.
    ``per_category_kind``
        ``{name: {kind: annotations}}`` (every kind present as a key).
    ``image_size``
        ``{"width": {"min", "median", "max"}, "height": {...}}`` in pixels, or None with no images.
    ``scores``
        ``{"count", "min", "q1", "median", "q3", "max"}`` over the finite scores (predictions), or None.
    ``kept``
        annotations left after the prepare steps (None when ``prepare=False``).
    ``dropped``, ``changed``
        ``{code: annotations}`` the prepare steps (and the reading) dropped or changed.
    ``problems``
        what the report would list (``Report.problems()``: warnings and errors, one line per drop reason
        and change code), as ``{"code", "source", "message", "severity"}`` dicts.
    ``hints``
        :func:`convention_hints`, as the same dicts.
    """
    ann = ds.annotations
    cats = ds.all_category_names
    kinds = geometry_kinds(ds)
    per_cat = {c: 0 for c in cats}
    per_cat_kind = {c: dict.fromkeys(KINDS, 0) for c in cats}
    per_kind = dict.fromkeys(KINDS, 0)
    if len(ann):
        table = pd.DataFrame({"category": ann["category"].astype(str).to_numpy(), "kind": kinds})
        for (cat, kind), n in table.groupby(["category", "kind"], sort=True).size().items():
            per_cat[str(cat)] += int(n)
            per_cat_kind[str(cat)][str(kind)] += int(n)
            per_kind[str(kind)] += int(n)

    img = ds.images
    image_size: dict[str, dict[str, Any]] | None = None
    if len(img):
        image_size = {}
        for col in ("width", "height"):
            v = img[col].to_numpy(dtype=np.int64)
            image_size[col] = {"min": int(v.min()), "median": float(np.median(v)), "max": int(v.max())}

    scores: dict[str, Any] | None = None
    sc = ann["score"].to_numpy(dtype=np.float64)
    sc = sc[np.isfinite(sc)]
    if sc.size:
        q = np.percentile(sc, [0, 25, 50, 75, 100])
        scores = {"count": int(sc.size), "min": float(q[0]), "q1": float(q[1]), "median": float(q[2]),
                  "q3": float(q[3]), "max": float(q[4])}

    rep = ds.report
    kept: int | None = None
    if prepare:
        work = Dataset(images=ds.images, categories=ds.categories, annotations=ds.annotations,
                       report=copy.deepcopy(ds.report))
        prepared = prepare_steps(work, unknown="keep", clip=True)
        rep = prepared.report
        kept = len(prepared)
    annotated = int(pd.unique(ann["image"].to_numpy()).size) if len(ann) else 0
    return {
        "format": rep.input.get("format"),
        "source": rep.input.get("source"),
        "images": len(img),
        "images_annotated": annotated,
        "annotations": len(ann),
        "categories": cats,
        "per_category": per_cat,
        "per_kind": per_kind,
        "per_category_kind": per_cat_kind,
        "image_size": image_size,
        "scores": scores,
        "kept": kept,
        "dropped": rep.dropped_counts(),
        "changed": rep.changed_counts(),
        "problems": [d.to_dict() for d in rep.problems()],
        "hints": [d.to_dict() for d in convention_hints(ds)],
    }


# ---------------------------------------------------------------------------------------------- printing
# categories without annotations listed one per row up to this many; more are one line
_EMPTY_LISTED = 5


def _num(v: float) -> str:
    return f"{v:.4g}"


def print_summary(summary: Mapping[str, Any], *, file: IO[str] | None = None) -> None:
    """Print a :func:`summarize` dict as tables (rich; plain text when ``file`` is not a terminal)."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    con = Console(file=file, highlight=False, soft_wrap=True)
    src = source_text(summary.get("source")) or "(dataset)"
    fmt = source_text(summary.get("format"))
    con.print(f"[bold]{src}[/bold]" + (f" ({fmt})" if fmt else ""))
    n_img, n_ann = summary["images"], summary["annotations"]
    con.print(f"images: {n_img} ({summary['images_annotated']} with annotations, "
              f"{n_img - summary['images_annotated']} without); annotations: {n_ann}; "
              f"categories: {len(summary['categories'])}")
    size = summary.get("image_size")
    if size:
        w, h = size["width"], size["height"]
        con.print(f"image width: min {w['min']}, median {_num(w['median'])}, max {w['max']}; "
                  f"height: min {h['min']}, median {_num(h['median'])}, max {h['max']}")
    sc = summary.get("scores")
    if sc:
        con.print(f"scores ({sc['count']}): min {_num(sc['min'])}, q1 {_num(sc['q1'])}, "
                  f"median {_num(sc['median'])}, q3 {_num(sc['q3'])}, max {_num(sc['max'])}")
    elif summary.get("annotations"):
        con.print("scores: none (ground truth)")
    else:
        con.print("scores: none read (no annotation was kept: see the problems)")

    kinds = [k for k in KINDS if summary["per_kind"].get(k)] or ["box"]
    table = Table(box=box.SIMPLE_HEAD, show_footer=True, pad_edge=False)
    table.add_column("category", footer="total")
    table.add_column("annotations", justify="right", footer=str(n_ann))
    for k in kinds:
        table.add_column(_KIND_TITLES[k], justify="right", footer=str(summary["per_kind"][k]))
    empty = [cat for cat in summary["categories"] if not summary["per_category"][cat]]
    for cat in summary["categories"]:
        if summary["per_category"][cat] or len(empty) <= _EMPTY_LISTED:
            row = summary["per_category_kind"][cat]
            table.add_row(cat, str(summary["per_category"][cat]), *(str(row[k]) for k in kinds))
    con.print(table)
    if len(empty) > _EMPTY_LISTED:   # a model's 80 classes: the ones it did not predict are one line
        con.print(f"{len(empty)} more categories with no annotations (--json lists them)")

    if summary.get("kept") is not None:
        con.print(f"after clipping: {summary['kept']} of {n_ann} annotation(s) kept")
    problems = summary.get("problems") or []
    hints = summary.get("hints") or []
    if not problems and not hints:
        con.print("problems: none")
    else:
        con.print(f"problems: {len(problems) + len(hints)}")
    for d in [*problems, *hints]:
        where = f"{d['source']}: " if d.get("source") else ""
        con.print(f"{d['severity']:<8} {d['code']:<26} {where}{d['message']}", markup=False)
