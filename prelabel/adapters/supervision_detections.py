"""supervision ``Detections``, one per image file name, into a Dataset (supervision is not imported: any object
with its attributes works).

Read: ``.xyxy`` (pixels), ``.confidence`` (the score), ``.class_id``, ``.data["class_name"]`` (names win over
ids), ``.mask`` ((N, H, W) booleans: RLE segmentations; their shape is the image size) and ``.tracker_id``
(``attributes["track_id"]``). A box whose mask is empty keeps its box. Locations read ``detections[image]:k``
for the k-th box of an image.

Example:
    >>> import numpy as np
    >>> import supervision as sv
    >>> det = sv.Detections(xyxy=np.array([[10.0, 10.0, 50.0, 30.0]]), confidence=np.array([0.9]),
    ...                     class_id=np.array([0]))
    >>> ds = from_detections({"a.jpg": det}, image_sizes={"a.jpg": (64, 48)}, names=["car"])
    >>> ds.annotations[["category", "x", "y", "w", "h", "score"]].values.tolist()
    [['car', 10.0, 10.0, 40.0, 20.0, 0.9]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ReadError, UsageError
from ..model import Dataset
from ..report import Report
from .objects import Objects, array, class_names, name_table, track_attributes

__all__ = ["from_detections"]


def from_detections(detections: Mapping[str, Any], *, image_sizes: Any = None, images: str | Path | None = None,
                    names: Sequence[str] | Mapping[int, str] | None = None, min_score: float | None = None,
                    source: str = "detections", report: Report | None = None) -> Dataset:
    """A Dataset from supervision ``Detections``, ``{image file name: detections}`` (see the module docstring).

    ``names`` maps class ids when there are no class names (index order, or ``{id: name}``); ``image_sizes``
    ``{file_name: (w, h)}`` and ``images`` (the images root: sizes from the image headers) give the sizes that
    masks do not; ``min_score`` drops lower confidences (``dropped.min_score``).

    Example:
        >>> import numpy as np
        >>> import supervision as sv
        >>> mask = np.zeros((1, 4, 6), dtype=bool); mask[0, 1:3, 2:5] = True
        >>> det = sv.Detections(xyxy=np.array([[2.0, 1.0, 5.0, 3.0]]), mask=mask, confidence=np.array([0.7]),
        ...                     class_id=np.array([3]), data={"class_name": np.array(["cat"])})
        >>> ds = from_detections({"b.jpg": det})
        >>> ds.images[["file_name", "width", "height"]].values.tolist(), ds.annotations["category"].tolist()
        ([['b.jpg', 6, 4]], ['cat'])
    """
    if not isinstance(detections, Mapping):
        raise UsageError(f"from_detections needs a {{image file name: Detections}} mapping, got "
                         f"{type(detections).__name__}",
                         hint="pass {'a.jpg': detections} (the image each Detections was made from)")
    table = name_table(names)
    objs = Objects(source)
    for key, det in detections.items():
        where = f"{source}[{key}]"
        try:
            xyxy = array(det.xyxy, dtype=np.float64).reshape(-1, 4)
        except (AttributeError, TypeError, ValueError) as e:
            raise ReadError(where, f"expected a Detections-like object with an (N, 4) .xyxy ({e})") from None
        m = len(xyxy)
        data = getattr(det, "data", None)
        cname = data.get("class_name") if data is not None and hasattr(data, "get") else None
        cid = getattr(det, "class_id", None)
        cat: np.ndarray | None = None   # neither names nor ids: no category
        why = None
        if cname is not None:
            cat = np.asarray([str(v) for v in np.asarray(cname, dtype=object).reshape(-1)], dtype=object)
        elif cid is not None:
            cat, why = class_names(array(cid), table)
        mask = getattr(det, "mask", None)
        seg = (objs.masks(str(key), array(mask), m, shape="mask: expected shape (N, H, W)") if mask is not None
               else None)
        conf = getattr(det, "confidence", None)
        objs.add(str(key), xyxy, category=cat, why=why, score=array(conf, dtype=np.float64) if conf is not None
                 else None, segmentation=seg, attributes=track_attributes(getattr(det, "tracker_id", None), m))
    return objs.dataset(categories=list(table[k] for k in sorted(table)) if table is not None else None,
                        image_sizes=image_sizes, images=images, min_score=min_score, report=report)
