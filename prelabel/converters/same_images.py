"""Several sources read together that name the same image: their annotations share one image.

``prelabel convert cvat.xml labelstudio.json`` (or ``prelabel.read([a, b])``) merges the sources. When two of
them name the same ``file_name`` they describe one picture: it is written once, with the annotations of both,
and an info note ``image.merged`` names the image and both sources. When they record different sizes for it,
they cannot be one picture without moving someone's coordinates: the read is refused, naming the image, both
sources and both sizes.

Example:
    >>> from prelabel.model import Dataset
    >>> a = Dataset.build(images={"file_name": ["x.jpg"], "width": [8], "height": [6]},
    ...     annotations={"image": [0], "category": ["cat"], "x": [1.0], "y": [1.0], "w": [2.0], "h": [2.0]})
    >>> b = Dataset.build(images={"file_name": ["y.jpg", "x.jpg"], "width": [4, 8], "height": [4, 6]},
    ...     annotations={"image": [1], "category": ["dog"], "x": [3.0], "y": [1.0], "w": [2.0], "h": [2.0]})
    >>> ds = merge_same_images(Dataset.concat([a, b]), sources=["a.xml", "b.json", "b.json"])
    >>> ds.images["file_name"].tolist(), ds.annotations["image"].tolist()
    (['x.jpg', 'y.jpg'], [0, 0])
    >>> print(ds.report.diagnostics[0].message)
    x.jpg: named by a.xml and by b.json: their annotations share one image
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..errors import UsageError
from ..model import Dataset

__all__ = ["merge_same_images"]


def merge_same_images(ds: Dataset, *, sources: Sequence[str]) -> Dataset:
    """``ds`` (images of several sources, ``sources[i]`` naming the source of image row ``i``) with each
    ``file_name`` once; see the module docstring."""
    img = ds.images
    codes, uniques = pd.factorize(img["file_name"].to_numpy(dtype=object))
    if len(uniques) == len(img):
        return ds
    first = np.full(len(uniques), len(img), dtype=np.int64)
    np.minimum.at(first, codes, np.arange(len(img), dtype=np.int64))   # the first row naming each image
    w = img["width"].to_numpy(dtype=np.int64)
    h = img["height"].to_numpy(dtype=np.int64)
    lead = first[codes]
    dup = np.flatnonzero(lead != np.arange(len(img)))
    names = img["file_name"].tolist()
    clash = [int(i) for i in dup if (w[i], h[i]) != (w[lead[i]], h[lead[i]])]
    if clash:
        i = clash[0]
        j = int(lead[i])
        raise UsageError(
            f"{names[i]!r} is {w[j]}x{h[j]} in {sources[j]} and {w[i]}x{h[i]} in {sources[i]}: two sources name "
            f"the same image with different sizes" + (f" ({len(clash)} images in all)" if len(clash) > 1 else ""),
            hint="read the sources apart, or rename the images of one of them")
    for i in dup.tolist():
        j = int(lead[i])
        ds.report.note("image.merged", str(sources[i]),
                       f"{names[i]}: named by {sources[j]} and by {sources[i]}: their annotations share one image",
                       severity="info")
    keep = np.sort(first)
    new_pos = np.empty(len(uniques), dtype=np.int64)
    new_pos[codes[keep]] = np.arange(len(keep), dtype=np.int64)
    ann = ds.annotations.copy()
    ann["image"] = new_pos[codes[ann["image"].to_numpy(dtype=np.int64)]]
    order = np.argsort(ann["image"].to_numpy(), kind="stable")   # each image's rows together, sources in order
    ann = ann.iloc[order].reset_index(drop=True)
    return ds.replace(images=img.iloc[keep].reset_index(drop=True), annotations=ann)
