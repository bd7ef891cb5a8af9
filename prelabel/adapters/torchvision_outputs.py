"""torchvision detection outputs (Faster / Mask / Keypoint R-CNN, RetinaNet, FCOS, SSD, ...) into a Dataset.

In eval mode a torchvision detection model returns one dict per input image: ``boxes`` ((N, 4) ``x1, y1, x2,
y2`` pixels of the input image), ``labels`` ((N,) class indices), ``scores`` ((N,)), and for Mask R-CNN
``masks`` ((N, 1, H, W) probabilities), for Keypoint R-CNN ``keypoints`` ((N, K, 3): x, y, visibility) and
``keypoints_scores``. Tensors (on any device) and numpy arrays both work. The torch package is not imported
here.

- ``names`` is the model's category list, index 0 included, as torchvision numbers it (the ``categories`` of
  the weights' ``meta``, e.g. ``["__background__", "person", "bicycle", ...]``). ``__background__`` and the
  ``N/A`` gaps of the COCO list are not categories: an object labelled with one is dropped
  (``dropped.unknown_category``, with the index), as is an index outside ``names``. The other names are the
  categories, in index order.
- Masks are thresholded at ``mask_threshold`` (a pixel is in the object when its probability is above it) and
  written as RLE; their shape is the image size. A mask with no pixel above the threshold leaves the box.
- Keypoints: ``v = 2`` where torchvision's visibility is above 0, else ``v = 0``; ``keypoints_scores`` go to
  ``attributes["keypoint_scores"]``. The categories' keypoint names are ``keypoint_names`` (default: the 17
  COCO person keypoints when K = 17, else ``kp0 ..``).
- Image sizes: the masks' shape, else ``image_sizes`` (``{file_name: (w, h)}``, or one ``(w, h)`` per output in
  order), else the image files under ``images`` (their headers).

Example:
    >>> import numpy as np
    >>> out = [{"boxes": np.array([[16.0, 8.0, 80.0, 40.0]]), "labels": np.array([1]),
    ...         "scores": np.array([0.875])}]
    >>> ds = from_torchvision(out, image_names=["a.jpg"], names=["__background__", "person"],
    ...                       image_sizes=[(640, 480)])
    >>> ds.annotations[["category", "x", "y", "w", "h", "score"]].values.tolist()
    [['person', 16.0, 8.0, 64.0, 32.0, 0.875]]
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
    sizes_by_name,
    with_keypoint_names,
)

__all__ = ["from_torchvision"]

_PLACEHOLDERS = frozenset({"__background__", "N/A"})


def from_torchvision(outputs: Sequence[Mapping[str, Any]], *, image_names: Sequence[str],
                     names: Sequence[str] | Mapping[int, str], image_sizes: Any = None,
                     images: str | Path | None = None, mask_threshold: float = 0.5,
                     keypoint_names: Sequence[str] | None = None, min_score: float | None = None,
                     source: str = "torchvision", report: Report | None = None) -> Dataset:
    """A Dataset from the list of dicts a torchvision detection model returns (see the module docstring).

    ``image_names``: the file name of each output's image, in order. ``names``: the model's categories, index
    0 included. ``min_score`` drops lower scores (``dropped.min_score``).

    Example:
        >>> import numpy as np
        >>> masks = np.zeros((1, 1, 4, 6), dtype=np.float32); masks[0, 0, 1:3, 2:5] = 0.9
        >>> out = [{"boxes": np.array([[2.0, 1.0, 5.0, 3.0]]), "labels": np.array([2]), "scores": np.array([0.5]),
        ...         "masks": masks}]
        >>> ds = from_torchvision(out, image_names=["b.png"], names=["__background__", "N/A", "cat"])
        >>> ds.images[["file_name", "width", "height"]].values.tolist(), ds.category_names
        ([['b.png', 6, 4]], ['cat'])
    """
    if isinstance(outputs, Mapping):
        outputs = [outputs]
    if isinstance(image_names, str):
        image_names = [image_names]
    outs, img_names = list(outputs), [str(n) for n in image_names]
    if len(outs) != len(img_names):
        raise UsageError(f"{len(outs)} outputs but {len(img_names)} image names",
                         hint="give image_names in the order of the images given to the model")
    table = name_table(names)
    if table is None:
        raise UsageError("from_torchvision needs names: the model's categories, index 0 included")
    objs = Objects(source)
    kp_names: list[str] | None = list(keypoint_names) if keypoint_names is not None else None
    for name, out in zip(img_names, outs, strict=True):
        where = f"{source}[{name}]"
        if not isinstance(out, Mapping) or "boxes" not in out or "labels" not in out:
            raise ReadError(where, "expected a dict with 'boxes' and 'labels' (a torchvision detection output)")
        xyxy = array(out["boxes"], dtype=np.float64).reshape(-1, 4)
        n = len(xyxy)
        cat, why = class_names(array(out["labels"]), table, skip=_PLACEHOLDERS)
        score = array(out["scores"], dtype=np.float64) if out.get("scores") is not None else None
        seg = None
        if out.get("masks") is not None:
            m = array(out["masks"], dtype=np.float32)
            if m.ndim == 4 and m.shape[1] == 1:
                m = m[:, 0]
            seg = objs.masks(name, m > float(mask_threshold), n, shape="masks: expected shape (N, 1, H, W)")
        kps = attrs = None
        if out.get("keypoints") is not None:
            k = array(out["keypoints"], dtype=np.float64)
            if k.ndim != 3 or len(k) != n or k.shape[2] not in (2, 3):
                raise ReadError(where, f"keypoints: expected shape (N, K, 3) with N = {n}, got {k.shape}")
            vis = k[:, :, 2] > 0 if k.shape[2] == 3 else np.ones(k.shape[:2], dtype=bool)
            ks = (array(out["keypoints_scores"], dtype=np.float64).reshape(n, -1)
                  if out.get("keypoints_scores") is not None else None)
            kps, attrs = keypoint_arrays(k, np.where(vis, 2.0, 0.0), ks)
            if kp_names is None:
                kp_names = list(COCO_KEYPOINTS) if k.shape[1] == 17 else [f"kp{i}" for i in range(k.shape[1])]
        objs.add(name, xyxy, category=cat, why=why, score=score, segmentation=seg, keypoints=kps,
                 attributes=attrs)
    declared = [v for _, v in sorted(table.items()) if v not in _PLACEHOLDERS]
    ds = objs.dataset(categories=declared, images=images, min_score=min_score, report=report,
                      image_sizes=sizes_by_name(image_sizes, img_names, each="output",
                                                size=lambda s: (int(s[0]), int(s[1]))))
    return with_keypoint_names(ds, kp_names)
