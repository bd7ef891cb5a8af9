"""Ultralytics ``Results`` (what ``YOLO(...)(images)`` / ``model.predict`` return) into a Dataset.

Read from each ``Results`` (the ultralytics package is not imported here; any object with these attributes
works):

- the image: ``.path`` (its file name; absolute paths become relative to ``images`` when under it, else to
  their common folder, noted) and ``.orig_shape`` ((h, w): the image size, no file is opened);
- ``.boxes``: ``xyxy`` pixels, ``conf`` (the score), ``cls`` (an index into the names) and ``id`` (a track id,
  to ``attributes["track_id"]``);
- ``.masks`` (segment models): ``.xy``, one polygon per box in pixels of the original image; the object's box is
  the polygon's (``recomputed`` in the report where it differs from the model's box). A mask too small to give a
  polygon leaves the box (``repaired`` in the report);
- ``.obb`` (OBB models): the 4 corners ``xyxyxyxy`` as a polygon, with ``conf`` and ``cls``;
- ``.keypoints`` (pose models): ``xy`` pixels and ``conf``: ``v = 0`` for a point at (0, 0) (how Ultralytics
  writes a missing one), else ``v = 2`` when its confidence is above 0.5, else ``v = 1`` (as the YOLO reader
  reads prediction files); the confidences go to ``attributes["keypoint_scores"]``. Keypoint names:
  ``keypoint_names`` (a list, or ``{class index: list}`` as a trained model's ``model.model.kpt_names``), else
  ``.kpt_names`` on the results when a version gives them, else the 17 COCO person keypoints (and COCO's
  skeleton) when K = 17, else ``kp0 ..``;
- ``.names`` (``{index: name}``): the categories, in index order, unless ``names`` is given.

Classification results (``.probs`` without boxes) hold no object: they are noted (``results.ignored``), not read.

Example:
    >>> import numpy as np
    >>> from types import SimpleNamespace as NS
    >>> r = NS(path="/data/street.jpg", orig_shape=(480, 640), names={0: "person", 1: "car"},
    ...        boxes=NS(xyxy=np.array([[64.0, 48.0, 192.0, 240.0]]), conf=np.array([0.75]), cls=np.array([1.0]),
    ...                 id=None), masks=None, obb=None, keypoints=None, probs=None)
    >>> ds = from_ultralytics([r])
    >>> ds.images[["file_name", "width", "height"]].values.tolist()
    [['street.jpg', 640, 480]]
    >>> ds.annotations[["category", "x", "y", "w", "h", "score"]].values.tolist()
    [['car', 64.0, 48.0, 128.0, 192.0, 0.75]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReadError, UsageError
from ..model import Dataset
from ..report import Report
from .objects import (
    COCO_KEYPOINTS,
    Objects,
    array,
    class_names,
    keypoint_arrays,
    name_table,
    track_attributes,
    with_keypoint_names,
)

__all__ = ["from_ultralytics"]


def _keypoints(kp: Any, n: int, where: str) -> tuple[list[np.ndarray], list[dict[str, Any]] | None, int]:
    """(COCO (K, 3) arrays per object, attributes with the keypoint scores, K)."""
    xy = array(kp.xy, dtype=np.float64)
    if xy.ndim != 3 or len(xy) != n:
        raise ReadError(where, f"keypoints: expected (N, K, 2) with N = {n}, got {xy.shape}")
    conf = getattr(kp, "conf", None)
    c = array(conf, dtype=np.float64).reshape(n, -1) if conf is not None else None
    missing = (xy[:, :, 0] == 0) & (xy[:, :, 1] == 0)
    v = np.where(missing, 0.0, 2.0) if c is None else np.where(missing, 0.0, np.where(c > 0.5, 2.0, 1.0))
    kps, attrs = keypoint_arrays(xy, v, c)
    return kps, attrs, int(xy.shape[1])


def from_ultralytics(results: Any, *, names: Sequence[str] | Mapping[int, str] | None = None,
                     min_score: float | None = None, images: str | Path | None = None,
                     keypoint_names: Sequence[str] | Mapping[int, Sequence[str]] | None = None,
                     source: str = "ultralytics",
                     report: Report | None = None) -> Dataset:
    """A Dataset from a list of Ultralytics ``Results`` (one per image; see the module docstring).

    ``names`` overrides the model's ``.names`` (index order, or ``{index: name}``); ``min_score`` drops lower
    confidences (``dropped.min_score``); ``images`` is the folder the images were read from, so that their
    ``.path`` become names relative to it (as the project knows them).

    Example:
        >>> import numpy as np
        >>> from types import SimpleNamespace as NS
        >>> box = NS(xyxy=np.array([[0.0, 0.0, 8.0, 8.0], [1.0, 1.0, 2.0, 2.0]]), conf=np.array([0.9, 0.1]),
        ...          cls=np.array([0.0, 0.0]), id=None)
        >>> r = NS(path="a.jpg", orig_shape=(16, 16), names={0: "cat"}, boxes=box, masks=None, obb=None,
        ...        keypoints=None, probs=None)
        >>> ds = from_ultralytics([r], min_score=0.5)
        >>> len(ds), ds.report.dropped_counts()
        (1, {'dropped.min_score': 1})
    """
    if not isinstance(results, Sequence) and hasattr(results, "orig_shape"):
        results = [results]   # one Results on its own
    try:
        items = list(results)
    except TypeError:
        raise UsageError(f"from_ultralytics needs a list of Results, got {type(results).__name__}") from None
    table = name_table(names)
    rep = report if report is not None else Report()
    objs = Objects(source)
    kp_names: list[str] | None = None
    kp_by_class: Mapping[int, Sequence[str]] | None = None
    if isinstance(keypoint_names, Mapping):
        kp_by_class = keypoint_names
    elif keypoint_names is not None:
        kp_names = [str(v) for v in keypoint_names]
    model_table: dict[int, str] = {}
    sizes: dict[str, tuple[int, int]] = {}   # image -> (w, h) the model gave
    for i, r in enumerate(items):
        path = getattr(r, "path", None)
        name = str(path) if path else f"image{i}.jpg"
        if path and images is not None and not Path(name).is_absolute():
            name = str(Path(name).absolute())   # a relative path under the images folder: named relative to it
        where = f"{source}[{name}]"
        shape = getattr(r, "orig_shape", None)
        if shape is None:
            raise ReadError(where, "expected an Ultralytics Results (no .orig_shape)")
        sizes[name] = (int(shape[1]), int(shape[0]))
        rnames = table if table is not None else name_table(getattr(r, "names", None))
        for k, v in sorted((rnames or {}).items()):
            model_table.setdefault(k, v)
        obb = getattr(r, "obb", None)
        boxes = getattr(r, "boxes", None)
        if obb is not None and len(array(obb.cls).reshape(-1)):
            corners = array(obb.xyxyxyxy, dtype=np.float64).reshape(-1, 8)
            n = len(corners)
            xs, ys = corners[:, 0::2], corners[:, 1::2]
            xyxy = np.column_stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)])
            cat, why = class_names(array(obb.cls), rnames)
            objs.add(name, xyxy, category=cat, why=why, score=array(obb.conf, dtype=np.float64),
                     segmentation=[[c.copy()] for c in corners],
                     attributes=track_attributes(getattr(obb, "id", None), n))
            continue
        if boxes is None or not len(array(boxes.cls).reshape(-1)):
            if getattr(r, "probs", None) is not None:
                rep.note("results.ignored", where, "classification results (probs) hold no object: not read",
                         severity="info")
            continue   # no object: the image is not in the dataset (as a table without its rows)
        xyxy = array(boxes.xyxy, dtype=np.float64).reshape(-1, 4)
        n = len(xyxy)
        cat, why = class_names(array(boxes.cls), rnames)
        seg = None
        masks = getattr(r, "masks", None)
        start = objs.count
        if masks is not None:
            polys = list(masks.xy)
            if len(polys) != n:
                raise ReadError(where, f"{len(polys)} mask polygons for {n} boxes")
            seg = np.full(n, None, dtype=object)
            for k, p in enumerate(polys):
                flat = array(p, dtype=np.float64).reshape(-1)
                if flat.size >= 6:
                    seg[k] = [flat]
                else:
                    objs.changes.append(("repaired", start + k, "the mask gave no polygon; the box is kept"))
        kps: list[np.ndarray] | None = None
        attrs: np.ndarray | list[dict[str, Any]] | None = None
        kp = getattr(r, "keypoints", None)
        if kp is not None:
            kps, attrs, n_kp = _keypoints(kp, n, where)
            if kp_names is None and kp_by_class is None:
                given = getattr(r, "kpt_names", None)
                kp_names = ([str(v) for v in given] if given is not None and len(given) == n_kp
                            else list(COCO_KEYPOINTS) if n_kp == 17 else [f"kp{j}" for j in range(n_kp)])
        tracks = track_attributes(getattr(boxes, "id", None), n)
        if tracks is not None:
            attrs = tracks if attrs is None else np.asarray([{**a, **t} for a, t in zip(attrs, tracks, strict=True)],
                                                             dtype=object)
        objs.add(name, xyxy, category=cat, why=why, score=array(boxes.conf, dtype=np.float64), segmentation=seg,
                 keypoints=kps, attributes=attrs)
    declared = [v for _, v in sorted(model_table.items())]
    ds = objs.dataset(categories=declared, image_sizes=sizes, images=images, min_score=min_score, report=rep)
    if kp_by_class is not None:
        return with_keypoint_names(ds, {model_table.get(int(k), str(k)): v for k, v in kp_by_class.items()})
    return with_keypoint_names(ds, kp_names)
