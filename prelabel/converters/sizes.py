"""The size an annotation file records for an image, checked against the image file's header.

VOC ``<size>``, CVAT ``width`` / ``height``, COCO ``images[]`` and Label Studio ``original_width`` /
``original_height`` sometimes disagree with the picture itself (a resized export, a rotated photo). When the
image file is at hand (the image's ``path``), its header decides what happens, one rule for every format:

- **relative coordinates** (Label Studio percents): the regions follow the real image. Boxes, polygons,
  keypoints and masks are scaled to the header's size, which becomes the image's size;
- **pixel coordinates** (VOC, CVAT, COCO, prediction tables): the recorded frame is kept, as the annotator drew
  in it.

Either way a warning ``image.size_mismatch`` names the image and both sizes, so ``--strict`` fails.

Example:
    >>> import tempfile, pathlib, struct
    >>> from prelabel.model import Dataset
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> png = b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", 200, 100) + bytes(5)
    >>> _ = (d / "a.png").write_bytes(png)
    >>> ds = Dataset.build(images={"file_name": ["a.png"], "width": [100], "height": [50], "path": [str(d / "a.png")]},
    ...     annotations={"image": [0], "category": ["cat"], "x": [10.0], "y": [5.0], "w": [20.0], "h": [10.0]})
    >>> out = check_sizes(ds, relative=True)
    >>> out.images[["width", "height"]].values.tolist(), out.annotations[["x", "y", "w", "h"]].values.tolist()
    ([[200, 100]], [[20.0, 10.0, 40.0, 20.0]])
    >>> print(out.report.diagnostics[0].message)
    a.png: the annotations record 100x50, the image file is 200x100: the regions, drawn in percent, follow the image file
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..geometry import rle_decode, rle_encode
from ..imagesize import image_sizes
from ..model import Dataset

__all__ = ["check_sizes"]


def _local(path: Any) -> bool:
    return isinstance(path, str) and bool(path) and "://" not in path and not path.startswith(("zip::", "tar::"))


def check_sizes(ds: Dataset, *, relative: bool) -> Dataset:
    """``ds`` with each image's recorded size checked against its file (see the module docstring)."""
    img = ds.images
    if len(img) == 0 or "path" not in img:
        return ds
    paths = img["path"].to_numpy(dtype=object)
    at_hand = [i for i, p in enumerate(paths) if _local(p)]
    if not at_hand:
        return ds
    sizes = image_sizes([paths[i] for i in at_hand])
    rec_w = img["width"].to_numpy(dtype=np.int64)
    rec_h = img["height"].to_numpy(dtype=np.int64)
    wrong = [(i, s) for i, s in zip(at_hand, sizes, strict=True)
             if s is not None and (int(s[0]), int(s[1])) != (int(rec_w[i]), int(rec_h[i]))]
    if not wrong:
        return ds
    rule = ("the regions, drawn in percent, follow the image file" if relative
            else "the pixel coordinates keep the recorded size")
    names = img["file_name"].tolist()
    sources = img["src_file"].tolist() if "src_file" in img else [""] * len(img)
    for i, (w, h) in wrong:
        ds.report.note("image.size_mismatch", str(sources[i] or paths[i]),
                       f"{names[i]}: the annotations record {rec_w[i]}x{rec_h[i]}, the image file is {w}x{h}: {rule}")
    if not relative:
        return ds
    return _rescale(ds, dict(wrong))


def _rescale(ds: Dataset, header: dict[int, tuple[int, int]]) -> Dataset:
    """Scale the regions of the images in ``header`` (row -> real size) from the recorded size to the real one."""
    img = ds.images.copy()
    rows = np.fromiter(header, dtype=np.int64)
    new_w = np.array([header[int(r)][0] for r in rows], dtype=np.int64)
    new_h = np.array([header[int(r)][1] for r in rows], dtype=np.int64)
    sx_img = np.ones(len(img))
    sy_img = np.ones(len(img))
    sx_img[rows] = new_w / img["width"].to_numpy(dtype=np.float64)[rows]
    sy_img[rows] = new_h / img["height"].to_numpy(dtype=np.float64)[rows]
    width = img["width"].to_numpy(dtype=np.int64).copy()
    height = img["height"].to_numpy(dtype=np.int64).copy()
    width[rows], height[rows] = new_w, new_h
    img["width"], img["height"] = width, height
    ann = ds.annotations.copy()
    at = ann["image"].to_numpy(dtype=np.int64)
    sx, sy = sx_img[at], sy_img[at]
    for col, s in (("x", sx), ("w", sx), ("y", sy), ("h", sy)):
        ann[col] = ann[col].to_numpy(dtype=np.float64) * s
    moved = np.flatnonzero((sx != 1.0) | (sy != 1.0))
    if len(moved):
        segs = ann["segmentation"].to_numpy(dtype=object).copy()
        kps = ann["keypoints"].to_numpy(dtype=object).copy()
        for r in moved.tolist():
            segs[r] = _scale_segmentation(segs[r], sx[r], sy[r], int(width[at[r]]), int(height[at[r]]))
            k = kps[r]
            if isinstance(k, np.ndarray):
                k = k.copy()
                k[:, 0] *= sx[r]
                k[:, 1] *= sy[r]
                kps[r] = k
        ann["segmentation"] = pd.Series(segs, index=ann.index, dtype=object)
        ann["keypoints"] = pd.Series(kps, index=ann.index, dtype=object)
    return Dataset(images=img, categories=ds.categories, annotations=ann, report=ds.report)


def _scale_segmentation(seg: Any, sx: float, sy: float, width: int, height: int) -> Any:
    if isinstance(seg, list):
        out = []
        for part in seg:
            p = np.asarray(part, dtype=np.float64).copy()
            p[0::2] *= sx
            p[1::2] *= sy
            out.append(p)
        return out
    if isinstance(seg, dict):  # a mask in the recorded size: resampled (nearest) to the real one
        mask = rle_decode(seg)
        ys = np.minimum(((np.arange(height) + 0.5) / sy).astype(np.int64), mask.shape[0] - 1)
        xs = np.minimum(((np.arange(width) + 0.5) / sx).astype(np.int64), mask.shape[1] - 1)
        return rle_encode(np.ascontiguousarray(mask[ys][:, xs]))
    return seg
