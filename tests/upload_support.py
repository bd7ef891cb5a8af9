"""Helpers shared by the upload tests: tiny image files, small COCO documents, a local project."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prelabel.upload.credentials import Credentials
from prelabel.upload.local import LocalProject

API_KEY = "KEY-abc-456"
API_SECRET = "SECRET-xyz-123"
CLIENT_ID = "CID-789"
CREDS = Credentials(API_KEY, API_SECRET, CLIENT_ID)
SECRETS = (API_KEY, API_SECRET, CLIENT_ID)


def png_bytes(width: int, height: int) -> bytes:
    """The first bytes of a PNG: signature and IHDR, enough for prelabel.imagesize."""
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + struct.pack(">II", width, height) + bytes(5)


def make_images(folder: Path, names: Sequence[str], size: tuple[int, int] = (64, 48)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        p = folder / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(png_bytes(*size))
    return folder


def coco_doc(images: Sequence[tuple[str, Sequence[tuple[str, Sequence[float]]]]], categories: Sequence[str],
             size: tuple[int, int] = (64, 48)) -> dict[str, Any]:
    """A COCO dict: ``images`` is [(file_name, [(category, [x, y, w, h]), ...]), ...]."""
    cat_id = {c: i + 1 for i, c in enumerate(categories)}
    imgs, anns = [], []
    for i, (name, boxes) in enumerate(images, start=1):
        imgs.append({"id": i, "file_name": name, "width": size[0], "height": size[1]})
        for cat, bbox in boxes:
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat_id[cat], "bbox": [float(v) for v in bbox],
                         "area": float(bbox[2] * bbox[3]), "iscrowd": 0, "segmentation": []})
    return {"info": {}, "licenses": [], "images": imgs, "annotations": anns,
            "categories": [{"id": i, "name": c, "supercategory": ""} for c, i in cat_id.items()]}


def write_json(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc))
    return path


def new_project(tmp: Path, names: Sequence[str] = ("a.png", "b.png", "Cat.png"),
                categories: Sequence[str] | None = ("cat", "dog"), project_id: str = "proj-1") -> LocalProject:
    make_images(tmp / "imgs", names)
    proj, _ = LocalProject.init(tmp / "proj", images=tmp / "imgs", categories=categories, project_id=project_id)
    return proj


def sample_coco() -> dict[str, Any]:
    """a.png: a cat and a zebra (zebra is not in the project); cat.png: a cat (the project has Cat.png)."""
    return coco_doc([("a.png", [("cat", [1, 2, 3, 4]), ("zebra", [5, 6, 7, 8])]),
                     ("cat.png", [("cat", [10, 10, 20, 20])])], ["cat", "zebra"])
