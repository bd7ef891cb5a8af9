"""Label Studio as an upload target (``labelstudio:PROJECT_ID``): COCO pre-annotations become task predictions.

The server and key come from ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` (:meth:`LabelStudioTarget.from_env`).
The key is either a legacy token (sent as ``Authorization: Token ...``) or a personal access token, which is a JWT
refresh token: it is exchanged at ``POST /api/token/refresh`` for a short-lived access token sent as ``Bearer``
(and exchanged again when that expires). The key is told apart by its shape and never appears in a repr, an error
or a log line. Only plain httpx is used (no label-studio-sdk).

What one shard does (:meth:`LabelStudioTarget.upload_shard`):

1. read the project's label config (XML, parsed with defusedxml): the ``Image`` tag and its
   ``RectangleLabels`` / ``PolygonLabels`` / ``BrushLabels`` / ``KeyPointLabels`` controls and their labels;
2. list the project's tasks and turn each task's image URL into a name (``/data/upload/3/1a2b3c4d-car.jpg``,
   ``/data/local-files/?d=images/car.jpg``, ``s3://bucket/car.jpg``, ``https://host/car.jpg``; a task made by
   prelabel carries the original name in ``data.coco_file_name``), then match the COCO file names to them with
   :mod:`prelabel.upload.match`. With ``images=DIR``, images that match no task are uploaded from ``DIR`` and
   tasks are created for them;
3. convert every annotation of a matched image whose category is in the config (:func:`coco_to_results`);
4. in ``replace`` mode (the default), list the predictions of this ``model_version`` on the tasks that will
   receive a new prediction (a task whose annotations were all skipped keeps its predictions); then import the new
   predictions in bulk (``POST /api/projects/{id}/import/predictions``, 200 tasks a request), one prediction per
   task with ``model_version`` and a task ``score`` (the mean of the region scores);
5. read the predictions back and count the regions found; a count that differs from what was sent fails the
   shard;
6. in ``replace`` mode, remove the listed old predictions of every task whose new prediction read back complete.
   Where it is safe (each such task holds exactly one prediction of this model version and the project none
   elsewhere, no staging copies are left over, the project's selected model version would not be cleared), by a
   bulk model-version swap (:meth:`LabelStudioTarget._swap`: steps 4-5 under a staging model version, then
   ``DELETE /api/projects/{id}/model-versions/`` of this version, import and read back again under it, and delete
   the staging version), ~13 ms of Label Studio a prediction; otherwise one ``DELETE /api/predictions/{id}`` each,
   ~90 ms. A task never holds fewer predictions than before, whatever fails: a failure leaves the old set (or a
   staging copy) beside the new one, and a re-run lists both, imports once more and deletes both.

Tasks and their predictions are read through the task listing (``GET /api/tasks?fields=all``, the tasks of a
shard selected 500 a request), never one request per task. Writes go one at a time (SQLite, Label Studio's default
database, lets one writer in); GET and DELETE are retried with backoff on HTTP 500/502/503/504 and connection
errors (SQLite's "database is locked" is transient); an import is never retried. An error shows Label Studio's
JSON ``detail``, or for an HTML or text error page the exception line (``OperationalError: database is locked``).

The shard's ``activity_id`` is ``ls-<project>-<first prediction id>-<number of predictions>``: the predictions
it created are the ids from the first one on, in the project's prediction list.

Conversion (Label Studio units are percent of ``original_width`` / ``original_height``):

- a box becomes a ``rectanglelabels`` region; a box with ``attributes.rotation`` and a 4-point polygon
  (a rotated box) keeps its rotation: Label Studio turns a rectangle clockwise about its top-left corner, so
  ``x, y`` is the rotated position of the unrotated box's top-left corner;
- each polygon part becomes a ``polygonlabels`` region (points in percent); a COCO RLE mask becomes a
  ``brushlabels`` region in Label Studio's own RLE (:func:`prelabel.geometry.ls_rle_encode` of the mask);
- each labelled keypoint (``v > 0``) becomes a ``keypointlabels`` region whose label is the keypoint's name,
  linked to the object's region by ``parentID``;
- when the config has no control of the right kind for a label, a rotated box falls back to a polygon, a
  polygon or mask to its enclosing rectangle (each fallback is reported), and otherwise the annotation is
  skipped with its reason. Label Studio accepts negative widths and garbage RLE silently, so every region is
  checked before it is sent (coordinates within [0, 100], positive sizes, labels in the config, mask size).

Messages about skipped or degraded annotations go to ``ShardResult.errors`` (at most 20, then a count); they
do not fail the shard on their own.

Example:
    >>> cfg = parse_label_config(label_config_for(["cat"], kinds=["rectangle"]))
    >>> coco = {"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 100}],
    ...         "categories": [{"id": 1, "name": "cat"}],
    ...         "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [20, 10, 50, 40],
    ...                          "score": 0.9}]}
    >>> conv = coco_to_results(coco, cfg, nonce="n")
    >>> r = conv.results[1][0]
    >>> r["id"], r["from_name"], r["value"]["x"], r["value"]["y"], r["value"]["width"], r["value"]["height"]
    ('n7', 'label', 10.0, 10.0, 25.0, 40.0)
"""

from __future__ import annotations

import html
import json
import logging
import math
import mimetypes
import os
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from .. import geometry, labelconfig
from ..errors import AuthError, NotFoundError, ReadError, UploadError, UploadTimeoutError, UsageError
from ..labelconfig import CONTROL_TAGS, REGION_TYPES, label_config_for
from ..paths import safe_join
from .base import ShardResult, UnmatchedFile
from .match import MatchRules, match_names

__all__ = [
    "DEFAULT_MODEL_VERSION",
    "ENV_KEY",
    "ENV_URL",
    "Conversion",
    "LabelConfig",
    "LabelStudioTarget",
    "coco_to_results",
    "label_config_for",
    "parse_label_config",
    "task_image_name",
]

log = logging.getLogger(__name__)

ENV_URL = "LABEL_STUDIO_URL"
ENV_KEY = "LABEL_STUDIO_API_KEY"
DEFAULT_MODEL_VERSION = "prelabel"
IMPORT_BATCH = 200             # predictions (tasks) per import request
UPLOAD_BATCH = 100             # files per multipart request (Label Studio's limit)
UPLOAD_BATCH_BYTES = 64 << 20  # bytes per multipart request
LIST_BATCH = 500               # tasks per task-listing request
STAGING = "~staging-"          # a model version's staging copies during a swap: <model_version>~staging-<hex>
RETRY_DELAYS = (0.5, 1.0, 2.0, 4.0, 8.0)   # seconds before each retry of a GET or DELETE
MAX_MESSAGES = 20              # skip / fallback messages kept per shard
KEYPOINT_WIDTH = 0.5           # marker size of a keypoint region, percent of the image width
_EPS = 1e-9                    # percent values this close outside [0, 100] are rounding, and clamped

_AUTH_HINT = (f"set {ENV_KEY} to a legacy token or a personal access token (Label Studio: Account & Settings)")
_RETRY_STATUS = frozenset({500, 502, 503, 504})
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


# ------------------------------------------------------------------------------------------- label config
@dataclass
class LabelConfig:
    """What prelabel needs from a project's label config: the image tag and the labels of each control type.

    ``controls`` maps a result type (``rectanglelabels``...) to ``[(control name, [labels])]`` for the
    controls attached to the image tag, in config order.
    """

    image_name: str = "image"
    image_key: str = "image"
    controls: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)

    def control_for(self, rtype: str, label: str) -> str | None:
        """The name of the first control of type ``rtype`` that has ``label``, or None."""
        for name, labels in self.controls.get(rtype, []):
            if label in labels:
                return name
        return None

    def labels(self, rtypes: Iterable[str]) -> list[str]:
        out: dict[str, None] = {}
        for t in rtypes:
            for _, labels in self.controls.get(t, []):
                out.update(dict.fromkeys(labels))
        return list(out)

    def categories(self) -> list[str]:
        """The category names: labels of the region controls (or of KeyPointLabels when there are none)."""
        names = self.labels(REGION_TYPES)
        return names or self.labels(["keypointlabels"])

    def accepts(self, category: str, keypoints: Sequence[str] | None = None) -> bool:
        """Whether a category can land anywhere: a region label, or a keypoint label for it or its keypoints."""
        kp = set(self.labels(["keypointlabels"]))
        return (category in set(self.labels(REGION_TYPES)) or category in kp
                or any(k in kp for k in keypoints or []))


def parse_label_config(xml: str) -> LabelConfig:
    """Parse a Label Studio label config (:func:`prelabel.labelconfig.parse`: entities and DTDs are refused).

    Raises UploadError when the XML is malformed or has no ``Image`` tag.

    >>> cfg = parse_label_config('<View><Image name="img" value="$photo"/>'
    ...     '<RectangleLabels name="box" toName="img"><Label value="cat"/><Label value="dog"/></RectangleLabels>'
    ...     '</View>')
    >>> cfg.image_key, cfg.control_for("rectanglelabels", "dog"), cfg.categories()
    ('photo', 'box', ['cat', 'dog'])
    """
    try:
        parsed = labelconfig.parse(xml, where="the project's label config")
    except ReadError as e:
        why = e.reason.removeprefix(labelconfig.INVALID)
        raise UploadError(f"the project's label config is not valid XML: {why}", hint=e.raw_hint) from None
    images = [t for t in parsed.tags if t.tag == "image"]
    if not images:
        raise UploadError("the project's label config has no <Image> tag: prelabel uploads image annotations",
                          hint="add <Image name=\"image\" value=\"$image\"/> to the label config")
    img = images[0]
    cfg = LabelConfig(image_name=img.name, image_key=(img.value or "$image").lstrip("$"))
    for c in parsed.controls(*CONTROL_TAGS, to=cfg.image_name):
        labels = [lab.value for lab in c.labels if lab.tag == "label" and lab.value is not None]
        cfg.controls.setdefault(c.tag, []).append((c.name, labels))
    return cfg


# ------------------------------------------------------------------------------------------ image names
def task_image_name(url: Any) -> str:
    """The file name a task's image URL stands for (percent-decoded), to match against COCO file names.

    >>> task_image_name("/data/upload/3/1a2b3c4d-my%20cat.jpg")
    'upload/3/1a2b3c4d-my cat.jpg'
    >>> task_image_name("/data/local-files/?d=images%2Fcar.jpg"), task_image_name("s3://bucket/dir/car.jpg")
    ('images/car.jpg', 'dir/car.jpg')
    """
    s = str(url)
    parts = urllib.parse.urlsplit(s)
    if "local-files" in parts.path and parts.query:
        d = urllib.parse.parse_qs(parts.query).get("d")
        if d:
            return d[0].lstrip("/")
    path = urllib.parse.unquote(parts.path)
    if parts.scheme in ("s3", "gs", "azure-blob", "gcs"):
        return path.lstrip("/")
    if path.startswith("/data/"):
        return path[len("/data/"):]
    return path.lstrip("/")


# ------------------------------------------------------------------------------------------- conversion
@dataclass
class Conversion:
    """COCO annotations as Label Studio result lists, per COCO image id.

    ``results[image_id]``: the result items; ``scores[image_id]``: region scores (for the task score);
    ``regions[ann_id]``: the result ids of one annotation; ``messages``: why an annotation was skipped or
    degraded; ``categories_ignored``: COCO categories the config has no label for.
    """

    results: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    scores: dict[int, list[float]] = field(default_factory=dict)
    regions: dict[int, list[str]] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    categories_ignored: list[str] = field(default_factory=list)
    skipped: int = 0
    ignored: int = 0     # annotations of ignored categories

    @property
    def applied(self) -> int:
        return len(self.regions)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _clamp_pct(v: float) -> float | None:
    """``v`` within [0, 100] (rounding overshoots of 1e-9 clamped), or None when it is outside."""
    if -_EPS <= v < 0.0:
        return 0.0
    if 100.0 < v <= 100.0 + _EPS:
        return 100.0
    return v if 0.0 <= v <= 100.0 else None


def _rot(dx: np.ndarray, dy: np.ndarray, degrees: float) -> tuple[np.ndarray, np.ndarray]:
    a = math.radians(degrees)
    c, s = math.cos(a), math.sin(a)
    return dx * c - dy * s, dx * s + dy * c


def rotated_box_from_polygon(poly: Sequence[float], degrees: float, *,
                             tol: float = 1e-6) -> tuple[float, float, float, float] | None:
    """``(x, y, w, h)`` in pixels, Label Studio style, of a 4-point polygon that is a box turned by ``degrees``.

    ``x, y`` is the rotated position of the unrotated box's top-left corner (Label Studio turns a rectangle
    clockwise about that corner). None when the polygon is not such a box (for example after clipping).

    >>> from prelabel.geometry import rotated_box_topleft
    >>> [round(v, 9) + 0.0 for v in rotated_box_from_polygon(rotated_box_topleft(10, 20, 30, 8, 30), 30)]
    [10.0, 20.0, 30.0, 8.0]
    """
    p = np.asarray(poly, dtype=np.float64)
    if p.size != 8 or not np.all(np.isfinite(p)):
        return None
    xs, ys = p[0::2], p[1::2]
    cx, cy = float(xs.mean()), float(ys.mean())
    ux, uy = _rot(xs - cx, ys - cy, -degrees)          # back to an axis-aligned box about the centre
    x0, x1, y0, y1 = float(ux.min()), float(ux.max()), float(uy.min()), float(uy.max())
    w, h = x1 - x0, y1 - y0
    scale = max(w, h, 1.0)
    if w <= 0 or h <= 0:
        return None
    corner_x = np.minimum(np.abs(ux - x0), np.abs(ux - x1))
    corner_y = np.minimum(np.abs(uy - y0), np.abs(uy - y1))
    if float(max(corner_x.max(), corner_y.max())) > tol * scale:
        return None
    if len({(round(float(a) / scale, 6) > 0, round(float(b) / scale, 6) > 0) for a, b in zip(ux, uy, strict=True)}) != 4:
        return None                                       # all four corners, not two points twice
    tx, ty = _rot(np.array([x0]), np.array([y0]), degrees)
    return cx + float(tx[0]), cy + float(ty[0]), w, h


class _Builder:
    """Builds the result items of one image; records why annotations are skipped."""

    def __init__(self, cfg: LabelConfig, conv: Conversion, *, nonce: str) -> None:
        self.cfg, self.conv, self.nonce = cfg, conv, nonce
        self.more = 0

    def message(self, text: str) -> None:
        if len(self.conv.messages) < MAX_MESSAGES:
            self.conv.messages.append(text)
        else:
            self.more += 1

    def item(self, rid: str, rtype: str, control: str, w: int, h: int, value: dict[str, Any],
             score: float | None, parent: str | None = None) -> dict[str, Any]:
        it: dict[str, Any] = {"id": rid, "type": rtype, "from_name": control, "to_name": self.cfg.image_name,
                              "original_width": w, "original_height": h, "image_rotation": 0, "value": value}
        if score is not None:
            it["score"] = score
        if parent is not None:
            it["parentID"] = parent
        return it


def _rect_value(x: float, y: float, bw: float, bh: float, w: int, h: int, degrees: float,
                label: str) -> tuple[dict[str, Any] | None, str]:
    """Percent rectangle value, or None and why it is invalid."""
    px, py, pw, ph = x / w * 100.0, y / h * 100.0, bw / w * 100.0, bh / h * 100.0
    if not (pw > 0 and ph > 0):
        return None, f"width and height must be > 0 (got {bw:g} x {bh:g} px)"
    cx, cy = _clamp_pct(px), _clamp_pct(py)
    if cx is None or cy is None:
        return None, f"top-left corner ({x:g}, {y:g}) px is outside the {w}x{h} image"
    if degrees == 0.0:
        if _clamp_pct(cx + pw) is None or _clamp_pct(cy + ph) is None:
            return None, f"box [{x:g}, {y:g}, {bw:g}, {bh:g}] px reaches outside the {w}x{h} image"
        pw, ph = min(pw, 100.0 - cx), min(ph, 100.0 - cy)
    else:
        corners = geometry.rotated_box_topleft(x, y, bw, bh, degrees)
        if any(_clamp_pct(v) is None for v in np.concatenate([corners[0::2] / w, corners[1::2] / h]) * 100.0):
            return None, f"rotated box corner outside the {w}x{h} image"
    return {"x": cx, "y": cy, "width": pw, "height": ph, "rotation": degrees, "rectanglelabels": [label]}, ""


def coco_to_results(coco: Mapping[str, Any], cfg: LabelConfig, *, nonce: str = "",
                    image_ids: Iterable[int] | None = None) -> Conversion:
    """Convert the annotations of ``coco`` (of the images in ``image_ids``, default all) to Label Studio results.

    Result ids are ``<nonce><annotation id>`` for the object's region, with ``_p<j>`` for further polygon parts
    and ``_k<i>`` for keypoints, so they are unique within a prediction and across a shard.
    """
    conv = Conversion()
    b = _Builder(cfg, conv, nonce=nonce)
    images = {int(im["id"]): im for im in coco.get("images") or []}
    wanted = set(images) if image_ids is None else {int(i) for i in image_ids}
    cats = {int(c["id"]): c for c in coco.get("categories") or []}
    ignored: dict[str, None] = {}
    for c in cats.values():
        if not cfg.accepts(str(c.get("name", "")), [str(k) for k in c.get("keypoints") or []]):
            ignored[str(c.get("name", ""))] = None
    conv.categories_ignored = sorted(ignored)
    for a in coco.get("annotations") or []:
        try:
            img_id, cat_id, ann_id = int(a["image_id"]), int(a["category_id"]), int(a["id"])
        except (KeyError, TypeError, ValueError):
            b.message(f"skipped annotation {a.get('id')!r}: no integer id / image_id / category_id")
            conv.skipped += 1
            continue
        if img_id not in wanted:
            continue
        im, cat = images.get(img_id), cats.get(cat_id)
        if im is None or cat is None:
            b.message(f"skipped annotation {ann_id}: unknown image_id {img_id} or category_id {cat_id}")
            conv.skipped += 1
            continue
        label = str(cat.get("name", ""))
        if label in ignored:
            conv.ignored += 1
            continue
        _convert_one(b, a, ann_id, im, cat, label)
    if b.more:
        conv.messages.append(f"... and {b.more} more")
    return conv


def _convert_one(b: _Builder, a: Mapping[str, Any], ann_id: int, im: Mapping[str, Any], cat: Mapping[str, Any],
                 label: str) -> None:
    cfg, conv = b.cfg, b.conv
    where = f"annotation {ann_id} ({im.get('file_name')})"
    try:
        w, h = int(im["width"]), int(im["height"])
    except (KeyError, TypeError, ValueError):
        w = h = 0
    if w <= 0 or h <= 0:
        b.message(f"skipped {where}: the image has no width/height")
        conv.skipped += 1
        return
    score = _num(a.get("score"))
    base = f"{b.nonce}{ann_id}"
    seg = a.get("segmentation")
    attrs = a.get("attributes") if isinstance(a.get("attributes"), Mapping) else {}
    rotation = _num(attrs.get("rotation")) if attrs else None
    bbox = a.get("bbox")
    items: list[dict[str, Any]] = []
    problem = ""
    polys: list[list[float]] = []
    if isinstance(seg, list) and seg and isinstance(seg[0], (int, float)):
        seg = [seg]
    if isinstance(seg, list):
        polys = [list(map(float, p)) for p in seg if isinstance(p, (list, tuple)) and len(p) >= 6]
    rect_ctl = cfg.control_for("rectanglelabels", label)
    poly_ctl = cfg.control_for("polygonlabels", label)
    brush_ctl = cfg.control_for("brushlabels", label)

    def rect_from_bbox(why_fallback: str = "") -> None:
        nonlocal problem
        bb = [_num(v) for v in bbox] if isinstance(bbox, (list, tuple)) and len(bbox) == 4 else None
        if rect_ctl is None:
            problem = f"no RectangleLabels control has the label {label!r}"
            return
        if bb is None or any(v is None for v in bb):
            problem = "no valid bbox"
            return
        x, y, bw, bh = (float(v) for v in bb if v is not None)
        value, why = _rect_value(x, y, bw, bh, w, h, 0.0, label)
        if value is None:
            problem = why
            return
        if why_fallback:
            b.message(f"{where}: {why_fallback}: sent as its enclosing rectangle")
        items.append(b.item(base, "rectanglelabels", rect_ctl, w, h, value, score))

    def polygons(parts: list[list[float]]) -> None:
        nonlocal problem
        if poly_ctl is None:
            problem = f"no PolygonLabels control has the label {label!r}"
            return
        made: list[dict[str, Any]] = []
        for j, p in enumerate(parts):
            arr = np.asarray(p, dtype=np.float64)
            if arr.size % 2 or not np.all(np.isfinite(arr)):
                problem = f"polygon part {j} has an odd number of values or a non-finite one"
                return
            pts = np.column_stack([arr[0::2] / w * 100.0, arr[1::2] / h * 100.0])
            if float(pts.min()) < -_EPS or float(pts.max()) > 100.0 + _EPS:
                problem = f"polygon part {j} has a point outside the {w}x{h} image"
                return
            pts = np.clip(pts, 0.0, 100.0)
            rid = base if j == 0 else f"{base}_p{j}"
            made.append(b.item(rid, "polygonlabels", poly_ctl, w, h,
                               {"points": pts.tolist(), "closed": True, "polygonlabels": [label]}, score))
        items.extend(made)

    if polys and rotation is not None and len(polys) == 1 and len(polys[0]) == 8:
        deg = rotation % 360.0
        box = rotated_box_from_polygon(polys[0], deg)
        if box is not None and rect_ctl is not None:
            value, why = _rect_value(*box, w, h, deg, label)
            if value is None:
                problem = why
            else:
                items.append(b.item(base, "rectanglelabels", rect_ctl, w, h, value, score))
        elif poly_ctl is not None:
            if box is not None:
                b.message(f"{where}: no RectangleLabels control has {label!r}: rotated box sent as a polygon")
            polygons(polys)
        else:
            rect_from_bbox("not a rotated rectangle" if box is None else "")
    elif polys:
        if poly_ctl is not None:
            polygons(polys)
        else:
            rect_from_bbox(f"no PolygonLabels control has {label!r}")
    elif isinstance(seg, Mapping) and "counts" in seg:
        if brush_ctl is not None:
            try:
                mask = geometry.rle_decode(dict(seg))
            except (ValueError, TypeError, KeyError) as e:
                problem = f"unreadable RLE: {e}"
                mask = None
            if mask is not None:
                if mask.shape != (h, w):
                    problem = f"RLE size {list(mask.shape)} is not the image's [{h}, {w}]"
                elif not mask.any():
                    problem = "empty mask"
                else:
                    rle = geometry.ls_rle_encode(mask.astype(bool))
                    items.append(b.item(base, "brushlabels", brush_ctl, w, h,
                                        {"format": "rle", "rle": rle, "brushlabels": [label]}, score))
        else:
            rect_from_bbox(f"no BrushLabels control has {label!r}")
    else:
        rect_from_bbox()

    kp_items = _keypoints(b, a, cat, w, h, base if items else None, score)
    if isinstance(kp_items, str):
        problem = problem or kp_items
        kp_items = []
    if problem and not kp_items:
        b.message(f"skipped {where}: {problem}")
        conv.skipped += 1
        return
    if problem:
        b.message(f"{where}: region not sent ({problem}); its keypoints are")
    items.extend(kp_items)
    if not items:
        b.message(f"skipped {where}: nothing to send")
        conv.skipped += 1
        return
    img_id = int(a["image_id"])
    conv.results.setdefault(img_id, []).extend(items)
    conv.regions[ann_id] = [str(it["id"]) for it in items]
    if score is not None:
        conv.scores.setdefault(img_id, []).append(score)


def _keypoints(b: _Builder, a: Mapping[str, Any], cat: Mapping[str, Any], w: int, h: int, parent: str | None,
               score: float | None) -> list[dict[str, Any]] | str:
    """The keypoint results of an annotation, or a reason string when they cannot be sent."""
    raw = a.get("keypoints")
    names = [str(k) for k in cat.get("keypoints") or []]
    if not raw or not names:
        return []
    try:
        kps = np.asarray(raw, dtype=np.float64).reshape(-1, 3)
    except (ValueError, TypeError):
        return "keypoints are not a list of x, y, v triples"
    if len(kps) != len(names):
        return f"{len(kps)} keypoints but the category names {len(names)}"
    out: list[dict[str, Any]] = []
    base = f"{b.nonce}{int(a['id'])}"
    for i in np.flatnonzero(kps[:, 2] > 0):
        x, y = float(kps[i, 0]), float(kps[i, 1])
        ctl = b.cfg.control_for("keypointlabels", names[i])
        if ctl is None:
            b.message(f"annotation {int(a['id'])}: keypoint {names[i]!r} is not a KeyPointLabels label: skipped")
            continue
        px, py = _clamp_pct(x / w * 100.0), _clamp_pct(y / h * 100.0)
        if px is None or py is None:
            b.message(f"annotation {int(a['id'])}: keypoint {names[i]!r} ({x:g}, {y:g}) is outside the image: "
                      "skipped")
            continue
        out.append(b.item(f"{base}_k{i}", "keypointlabels", ctl, w, h,
                          {"x": px, "y": py, "width": KEYPOINT_WIDTH, "keypointlabels": [names[i]]},
                          score, parent=parent))
    return out


# ----------------------------------------------------------------------------------------------- client
_TAGS = re.compile(r"<[^>]*>")
_DJANGO_TEXT = re.compile(r"\A\s*([A-Za-z_][\w.]*) at /\S*\r?\n(.*)")


def _text(fragment: str) -> str:
    """An HTML fragment as one line of plain text."""
    return " ".join(html.unescape(_TAGS.sub(" ", fragment)).split())


def _page_error(body: str) -> str:
    r"""The exception line of an error page that is not JSON: Django's debug page (``<title>OperationalError at
    /api/...</title>`` and ``<pre class="exception_value">``) or its text form, else the page's title and heading.

    >>> _page_error('<title>OperationalError\n  at /api/predictions/7</title>'
    ...             '<pre class="exception_value">database is locked</pre>')
    'OperationalError: database is locked'
    >>> _page_error("OperationalError at /api/predictions/7\ndatabase is locked\n\nRequest Method: DELETE")
    'OperationalError: database is locked'
    >>> _page_error("<html><title>500 | Label Studio</title><h1>Uh oh, something went wrong.</h1></html>")
    "an error page without details (500 | Label Studio: Uh oh, something went wrong.); the server's log has them"
    """
    title = re.search(r"<title[^>]*>(.*?)</title>", body, re.S | re.I)
    value = re.search(r'<pre class="exception_value">(.*?)</pre>', body, re.S)
    if title and value:
        kind = _text(title.group(1)).split(" at ", 1)[0]
        return f"{kind}: {_text(value.group(1))}"[:300]
    m = _DJANGO_TEXT.match(body)
    if m:
        return f"{m.group(1)}: {m.group(2).strip()}"[:300]
    if "<html" in body[:1000].lower() or title:
        h1 = re.search(r"<h1[^>]*>(.*?)</h1>", body, re.S | re.I)
        what = ": ".join(_text(g.group(1)) for g in (title, h1) if g is not None and _text(g.group(1)))
        return f"an error page without details ({what[:200] or 'HTML'}); the server's log has them"
    return " ".join(body.split())[:300]


def _predictions(conv: Conversion, image_task: Mapping[int, int], model_version: str) -> list[dict[str, Any]]:
    """One prediction per image of ``conv``: its task, results, ``model_version`` and the mean region score."""
    preds: list[dict[str, Any]] = []
    for img_id, results in conv.results.items():
        pred: dict[str, Any] = {"task": image_task[img_id], "result": results, "model_version": model_version}
        scores = conv.scores.get(img_id)
        if scores:
            pred["score"] = float(np.mean(scores))
        preds.append(pred)
    return preds


def _is_jwt(token: str) -> bool:
    return _JWT.fullmatch(token) is not None


class LabelStudioTarget:
    """``labelstudio:PROJECT_ID``: predictions into an existing Label Studio project (or a new one).

    ``images``: a folder holding the images by their COCO file names; images that match no task are uploaded
    and get a task. ``create_project=True`` (with ``project_id=None``): a project titled ``title`` is created on
    first use, with a label config generated from the first shard's categories and shapes.
    ``model_version`` is written on every prediction. ``mode="replace"`` (the default): the predictions with the
    same ``model_version`` on every task that receives a new prediction are deleted once the new one has been
    imported and read back (``DELETE /api/predictions/{id}``), so uploading the same file again leaves one
    prediction per task; tasks whose annotations were all skipped, predictions of other model versions and human
    annotations are left alone. ``mode="append"`` keeps them. ``match`` relaxes file-name matching
    (:class:`~prelabel.upload.match.MatchRules`). ``retry_delays``: the pauses (seconds) before each retry of a GET
    or DELETE that met HTTP 500/502/503/504 or a connection error. ``swap=False`` turns off the bulk model-version
    swap of a replace (every old prediction is then deleted by its id).
    """

    synchronous = True   # Label Studio imports predictions inside the request: nothing runs on afterwards

    def __init__(self, url: str, token: str, project_id: int | str | None, *, images: str | Path | None = None,
                 create_project: bool = False, title: str | None = None,
                 model_version: str = DEFAULT_MODEL_VERSION, mode: str = "replace", match: MatchRules | None = None,
                 timeout: float = 60.0, retry_delays: Sequence[float] = RETRY_DELAYS, swap: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not url:
            raise UsageError(f"no Label Studio URL: set {ENV_URL} (for example http://localhost:8080)")
        if mode not in ("replace", "append"):
            raise UsageError(f"mode must be 'replace' or 'append', not {mode!r}")
        if not model_version:
            raise UsageError("the model version of the predictions cannot be empty")
        if not token:
            raise AuthError(f"no Label Studio API key: set {ENV_KEY}", hint=_AUTH_HINT)
        pid = None if project_id in (None, "", "new") else project_id
        if pid is not None:
            try:
                pid = int(pid)
            except (TypeError, ValueError):
                raise UsageError(f"a Label Studio project id is a number, not {project_id!r}") from None
        if pid is None and not create_project:
            raise UsageError("no Label Studio project id", hint="use labelstudio:PROJECT_ID, or create_project=True")
        if pid is not None and create_project:
            raise UsageError("create_project=True makes a new project: give no project id")
        self.url = url.rstrip("/")
        self.project_id: int | None = pid
        self.images = Path(images) if images is not None else None
        self.create_project = create_project
        self.title = title or "prelabel"
        self.model_version = model_version
        self.mode = mode
        self.match = match or MatchRules()
        self.resumable = pid is not None    # a project created by this run has no id to resume against
        self.swap = swap                    # replace by a bulk model-version swap where that is safe
        self._replace_lock = threading.Lock()   # one shard's replace at a time (the swap checks project-wide counts)
        self._project_model_version: str | None = None
        self._token = token
        self._access: str | None = None
        self.retry_delays = tuple(float(d) for d in retry_delays)
        self._lock = threading.RLock()
        self._write_lock = threading.Lock()     # one write at a time, whatever the number of shard workers
        self._config: LabelConfig | None = None
        self._tasks: list[tuple[int, str]] | None = None
        self._client = httpx.Client(base_url=self.url, timeout=timeout, transport=transport,
                                    headers={"Accept": "application/json"}, follow_redirects=False)

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, project_id: int | str | None, **options: Any) -> LabelStudioTarget:
        """A target for ``project_id`` at ``$LABEL_STUDIO_URL`` with ``$LABEL_STUDIO_API_KEY``."""
        url = os.environ.get(ENV_URL, "").strip()
        token = os.environ.get(ENV_KEY, "").strip()
        if not url and not token:
            raise UsageError(f"{ENV_URL} and {ENV_KEY} are not set: prelabel needs the Label Studio server's "
                             "address and an API key", hint=f"export {ENV_URL}=http://localhost:8080 "
                             f"{ENV_KEY}=<your token (Label Studio: Account & Settings)>")
        if not url:
            raise UsageError(f"{ENV_URL} is not set: prelabel needs the Label Studio server's address",
                             hint=f"export {ENV_URL}=http://localhost:8080 (the address you open in the browser)")
        if not token:
            raise AuthError(f"{ENV_KEY} is not set: Label Studio needs an API key", hint=_AUTH_HINT)
        return cls(url, token, project_id, **options)

    @classmethod
    def create(cls, url: str, token: str, title: str, categories: Sequence[str | Mapping[str, Any]], *,
               kinds: Iterable[str] = ("rectangle",), **options: Any) -> LabelStudioTarget:
        """Create a project whose label config holds ``categories`` for each of ``kinds`` and target it."""
        t = cls(url, token, None, create_project=True, title=title, **options)
        try:
            t._create_project(label_config_for(categories, kinds=list(kinds)))
        except BaseException:
            t.close()
            raise
        return t

    def __repr__(self) -> str:
        return f"LabelStudioTarget({self.describe()!r}, url={self.url!r})"

    def describe(self) -> str:
        return f"labelstudio:{self.project_id if self.project_id is not None else 'new'}"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LabelStudioTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- HTTP --------------------------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        for s in (self._token, self._access):
            if s:
                text = text.replace(s, "***")
        return text

    def _refresh(self) -> str:
        try:
            r = self._client.post("/api/token/refresh", json={"refresh": self._token})
        except httpx.HTTPError as e:
            raise UploadError(f"cannot reach Label Studio at {self.url}: {type(e).__name__}") from None
        if r.status_code in (400, 401, 403):
            raise AuthError(f"Label Studio at {self.url} refused the personal access token ({r.status_code})",
                            hint=_AUTH_HINT)
        if r.status_code >= 300:
            raise UploadError(f"Label Studio token refresh failed: HTTP {r.status_code}")
        try:
            access = str(r.json()["access"])
        except (ValueError, KeyError, TypeError):
            raise UploadError("Label Studio token refresh answered without an access token") from None
        self._access = access
        return access

    def _auth_header(self, *, renew: bool = False) -> str:
        if not _is_jwt(self._token):
            return f"Token {self._token}"
        with self._lock:
            if renew or self._access is None:
                self._refresh()
            return f"Bearer {self._access}"

    def _request(self, method: str, path: str, *, what: str, deadline: float | None = None,
                 ok: Sequence[int] = (200, 201), not_found: str | None = None, **kw: Any) -> httpx.Response:
        """One request; a GET or DELETE is retried after ``retry_delays`` on 500/502/503/504 and connection errors
        (never a POST: an import that reached the server may have been applied). Writes go one at a time."""
        pauses = iter(self.retry_delays if method in ("GET", "DELETE") else ())
        while True:
            if deadline is not None and deadline - time.monotonic() <= 0:
                raise UploadTimeoutError(f"Label Studio: timed out before {what}")
            r: httpx.Response | None = None
            try:
                r = self._attempt(method, path, deadline=deadline, **kw)
                failure = f"HTTP {r.status_code} ({self._detail(r)})" if r.status_code in _RETRY_STATUS else ""
            except httpx.TimeoutException:
                raise UploadTimeoutError(f"Label Studio did not answer in time ({what})") from None
            except httpx.TransportError as e:
                failure = type(e).__name__
            if failure:
                pause = next(pauses, None)
                if pause is not None and (deadline is None or time.monotonic() + pause < deadline):
                    log.info("Label Studio: %s while %s; retrying in %g s", failure, what, pause)
                    time.sleep(pause)
                    continue
            if r is None:
                raise UploadError(f"cannot reach Label Studio at {self.url} ({what}): {failure}",
                                  hint=f"check {ENV_URL}")
            break
        if r.status_code in (401, 403):
            raise AuthError(f"Label Studio at {self.url} refused the API key ({r.status_code}) while {what}",
                            hint=_AUTH_HINT)
        if r.status_code == 404 and not_found is not None:
            raise NotFoundError(not_found)
        if r.status_code not in ok:
            raise UploadError(f"Label Studio answered HTTP {r.status_code} while {what}: {self._detail(r)}")
        return r

    def _attempt(self, method: str, path: str, *, deadline: float | None, **kw: Any) -> httpx.Response:
        """Send once (a personal access token is exchanged again when the server says it expired)."""
        if deadline is not None:
            kw["timeout"] = httpx.Timeout(min(max(deadline - time.monotonic(), 0.001), 600.0))
        for attempt in (0, 1):
            headers = {"Authorization": self._auth_header(renew=attempt == 1)}   # outside the write lock
            with self._write_lock if method != "GET" else nullcontext():
                r = self._client.request(method, path, headers=headers, **kw)
            if r.status_code != 401 or attempt == 1 or not _is_jwt(self._token):
                break
        return r

    def _detail(self, r: httpx.Response) -> str:
        """What went wrong, in a line: the JSON ``detail`` (and validation errors), or the exception line of an
        error page (Django's debug page or its text form: ``OperationalError: database is locked``)."""
        try:
            body = r.json()
        except ValueError:
            return self._redact(_page_error(r.text) or r.reason_phrase)
        if isinstance(body, Mapping):
            parts = [_text(str(body.get("detail") or ""))]
            if body.get("validation_errors"):
                parts.append(str(body["validation_errors"]))
            text = "; ".join(p for p in parts if p) or str(body)
        else:
            text = str(body)
        return self._redact(text[:1000])

    def _json(self, r: httpx.Response, what: str) -> Any:
        try:
            return r.json()
        except ValueError:
            raise UploadError(f"Label Studio answered {what} with something that is not JSON") from None

    # -- project -----------------------------------------------------------------------------------------
    def _not_found(self) -> str:
        return f"Label Studio project {self.project_id} not found at {self.url}"

    def _create_project(self, label_config: str) -> int:
        title = self.title if len(self.title) >= 3 else f"{self.title} (prelabel)"
        r = self._request("POST", "/api/projects", what="creating a project",
                          json={"title": title[:50], "label_config": label_config})
        self.project_id = int(self._json(r, "project creation")["id"])
        self._config = parse_label_config(label_config)
        self._project_model_version = ""
        self._tasks = None
        return self.project_id

    def label_config(self) -> LabelConfig | None:
        """The project's parsed label config (None before a ``create_project`` target made its project)."""
        with self._lock:
            if self._config is None and self.project_id is not None:
                r = self._request("GET", f"/api/projects/{self.project_id}", what="reading the project",
                                  not_found=self._not_found())
                body = self._json(r, "the project")
                self._config = parse_label_config(str(body["label_config"]))
                self._project_model_version = str(body.get("model_version") or "")
            return self._config

    def categories(self) -> list[str] | None:
        cfg = self.label_config()
        return cfg.categories() if cfg is not None else None

    def _task_list(self, *, refresh: bool = False) -> list[tuple[int, str]]:
        """``[(task id, image name)]`` of every task of the project, in id order."""
        with self._lock:
            if self.project_id is None:
                return []
            if self._tasks is not None and not refresh:
                return self._tasks
            cfg = self.label_config()
            key = cfg.image_key if cfg is not None else "image"
            out: list[tuple[int, str]] = []
            page, total = 1, None
            while total is None or len(out) < total:
                r = self._request("GET", "/api/tasks", what="listing tasks", ok=(200, 404),
                                  not_found=None if page > 1 else self._not_found(),
                                  params={"project": self.project_id, "fields": "task_only", "page": page,
                                          "page_size": 500})
                if r.status_code == 404:
                    break
                body = self._json(r, "the task list")
                tasks = body.get("tasks", []) if isinstance(body, Mapping) else body
                total = int(body.get("total", len(tasks))) if isinstance(body, Mapping) else len(tasks)
                if not tasks:
                    break
                for t in tasks:
                    data = t.get("data") or {}
                    name = data.get("coco_file_name") or task_image_name(data.get(key, ""))
                    out.append((int(t["id"]), str(name)))
                page += 1
            out.sort()
            self._tasks = out
            return out

    def assets(self) -> list[str]:
        return list(dict.fromkeys(name for _, name in self._task_list()))

    # -- images --------------------------------------------------------------------------------------------
    def _upload_images(self, files: list[tuple[str, Path]], *, deadline: float | None) -> None:
        """Upload ``[(COCO file name, path)]`` and create one task per image (``data.coco_file_name`` kept)."""
        cfg = self.label_config()
        key = cfg.image_key if cfg is not None else "image"
        batches: list[list[tuple[str, Path]]] = [[]]
        size = 0
        for name, p in files:
            n = p.stat().st_size
            if batches[-1] and (len(batches[-1]) >= UPLOAD_BATCH or size + n > UPLOAD_BATCH_BYTES):
                batches.append([])
                size = 0
            batches[-1].append((name, p))
            size += n
        for batch in batches:
            form = {f"file{i}": (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream")
                    for i, (_, p) in enumerate(batch)}
            r = self._request("POST", f"/api/projects/{self.project_id}/import", what="uploading images",
                              deadline=deadline, params={"commit_to_project": "false"}, files=form,
                              not_found=self._not_found())
            ids = [int(i) for i in self._json(r, "the image upload").get("file_upload_ids", [])]
            if len(ids) != len(batch):
                raise UploadError(f"Label Studio stored {len(ids)} of {len(batch)} uploaded images")
            r = self._request("GET", f"/api/projects/{self.project_id}/file-uploads", what="reading uploads",
                              deadline=deadline, params={"ids": "[" + ",".join(map(str, ids)) + "]"})
            stored = {int(f["id"]): str(f["file"]) for f in self._json(r, "the upload list")}
            if set(stored) != set(ids):
                raise UploadError("Label Studio did not list every uploaded image")
            tasks = [{"data": {key: "/data/" + stored[i].lstrip("/"), "coco_file_name": name}}
                     for i, (name, _) in zip(ids, batch, strict=True)]
            r = self._request("POST", f"/api/projects/{self.project_id}/import", what="creating tasks",
                              deadline=deadline, json=tasks)
            made = int(self._json(r, "the task import").get("task_count", -1))
            if made != len(tasks):
                raise UploadError(f"Label Studio created {made} of {len(tasks)} tasks")

    # -- shards --------------------------------------------------------------------------------------------
    def _ensure_project(self, coco: Mapping[str, Any]) -> None:
        with self._lock:
            if self.project_id is not None:
                return
            anns = coco.get("annotations") or []
            kinds = ["rectangle"]
            if any(isinstance(a.get("segmentation"), list) and a.get("segmentation") for a in anns):
                kinds.append("polygon")
            if any(isinstance(a.get("segmentation"), Mapping) for a in anns):
                kinds.append("brush")
            self._create_project(label_config_for(list(coco.get("categories") or []), kinds=kinds))

    def upload_shard(self, coco: dict[str, Any], *, index: int, path: Path, dry_run: bool,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        t0 = time.monotonic()
        res = ShardResult(index=index, path=str(path))
        if self.project_id is None and not dry_run:
            self._ensure_project(coco)
        cfg = self.label_config() or parse_label_config(
            label_config_for(list(coco.get("categories") or []), kinds=["rectangle", "polygon", "brush"]))
        images = [im for im in coco.get("images") or [] if isinstance(im, Mapping)]
        names = [str(im.get("file_name", "")) for im in images]
        tasks = self._task_list()
        m = match_names(names, [n for _, n in tasks], rules=self.match)
        # images that match no task: upload them from the images folder when one was given
        uploaded: set[str] = set()
        if m.unmatched and self.images is not None:
            todo = [(u.name, f) for u in m.unmatched
                    if (f := safe_join(self.images, u.name)) is not None and f.is_file()]
            uploaded = {n for n, _ in todo}
            if todo and dry_run:
                m.unmatched = [u for u in m.unmatched if u.name not in uploaded]
                for n in uploaded:
                    m.matched[n] = n
            elif todo:
                self._upload_images(todo, deadline=deadline)
                tasks = self._task_list(refresh=True)
                m = match_names(names, [n for _, n in tasks], rules=self.match)
        for name in names:
            if name in m.matched:
                how = "uploaded" if name in uploaded else m.how.get(name, "exact")
                res.matched_by[how] = res.matched_by.get(how, 0) + 1
        task_of_asset: dict[str, int] = {}
        for tid, n in tasks:
            task_of_asset.setdefault(n, tid)
        image_task: dict[int, int] = {}
        for im, name in zip(images, names, strict=True):
            asset = m.matched.get(name)
            if asset is not None:
                image_task[int(im["id"])] = task_of_asset.get(asset, -1)
        res.files_matched = len(image_task)
        res.files_not_matched = [UnmatchedFile(u.name, list(u.closest), u.why, self._hint(u)) for u in m.unmatched]
        nonce = secrets.token_hex(4) + "_"
        conv = coco_to_results(coco, cfg, nonce=nonce, image_ids=image_task)
        res.categories_ignored = conv.categories_ignored
        res.errors.extend(conv.messages)
        receiving = {image_task[i] for i in conv.results} - {-1}   # tasks that get a new prediction
        fresh = {task_of_asset.get(m.matched.get(n, ""), -1) for n in uploaded}   # made just now: nothing to list
        old: dict[int, list[int]] = {}
        if self.mode == "replace" and receiving - fresh:   # listed before the import: removed after it
            old = self._own_predictions(sorted(receiving - fresh), deadline=deadline)
        res.annotations_replaced = res.images_replaced = 0
        if dry_run:
            res.annotations_applied = conv.applied
            res.annotations_replaced = sum(len(ids) for ids in old.values())
            res.images_replaced = len(old)
            res.duration = time.monotonic() - t0
            return res
        preds = _predictions(conv, image_task, self.model_version)
        with self._replace_lock if self.mode == "replace" else nullcontext():
            if old and self._can_swap(old, deadline=deadline):
                self._swap(res, preds, old, redo=lambda: coco_to_results(
                    coco, cfg, nonce=secrets.token_hex(4) + "_", image_ids=image_task),
                           image_task=image_task, deadline=deadline, cancel=cancel)
            else:
                sent = self._import(res, preds, deadline=deadline, cancel=cancel)
                confirmed = self._confirm(res, preds[:sent], conv, deadline=deadline)
                if old:
                    self._remove_replaced(res, {t: ids for t, ids in old.items() if t in confirmed}, kept=len(old),
                                          deadline=deadline, cancel=cancel)
        res.duration = time.monotonic() - t0
        return res

    def _import(self, res: ShardResult, preds: list[dict[str, Any]], *, deadline: float | None,
                cancel: threading.Event) -> int:
        """Import ``preds`` in bulk (``IMPORT_BATCH`` a request, never retried); returns how many were sent."""
        sent = 0
        for start in range(0, len(preds), IMPORT_BATCH):
            if cancel.is_set():
                res.status = "failed"
                res.errors.append(f"cancelled after {sent} of {len(preds)} predictions were sent")
                break
            batch = preds[start:start + IMPORT_BATCH]
            r = self._request("POST", f"/api/projects/{self.project_id}/import/predictions", deadline=deadline,
                              what="importing predictions", json=batch, not_found=self._not_found())
            created = self._json(r, "the prediction import")
            n_created = int(created.get("created", -1)) if isinstance(created, Mapping) else -1
            if n_created != len(batch):
                res.status = "failed"
                res.errors.append(f"Label Studio created {n_created} of {len(batch)} predictions in one import")
            sent += len(batch)
        return sent

    # -- replace by a model-version swap -------------------------------------------------------------------
    def _own_version(self, version: Any) -> bool:
        """A prediction of this target's model_version, or a staging copy a failed swap left behind."""
        v = str(version or "")
        return v == self.model_version or v.startswith(self.model_version + STAGING)

    def _versions(self, *, deadline: float | None) -> dict[str, int]:
        """``{model version: predictions}`` of the whole project (``GET /api/projects/{id}/model-versions/``)."""
        r = self._request("GET", f"/api/projects/{self.project_id}/model-versions/", what="counting model versions",
                          deadline=deadline, not_found=self._not_found())
        body = self._json(r, "the model versions")
        if not isinstance(body, Mapping):
            raise UploadError("Label Studio answered the model versions with something that is not a mapping")
        return {str(k): int(v) for k, v in body.items()}

    def _can_swap(self, old: Mapping[int, Sequence[int]], *, deadline: float | None) -> bool:
        """Whether deleting this model version project-wide removes exactly ``old`` (one prediction on each task,
        nothing of it elsewhere, no staging left over) and changes no project setting: Label Studio clears the
        project's selected model version when it is the deleted one or an ML backend's."""
        if not self.swap or not old or any(len(ids) != 1 for ids in old.values()):
            return False
        versions = self._versions(deadline=deadline)
        if versions.get(self.model_version, 0) != len(old) or any(
                v.startswith(self.model_version + STAGING) for v in versions):
            return False
        self.label_config()
        selected = self._project_model_version or ""
        if selected == self.model_version:
            return False
        if selected:
            r = self._request("GET", "/api/ml", what="listing ML backends", deadline=deadline,
                              params={"project": self.project_id})
            backends = self._json(r, "the ML backends")
            if not isinstance(backends, list) or backends:
                return False
        return True

    def _delete_version(self, version: str, expected: int, *, deadline: float | None) -> int:
        """``DELETE /api/projects/{id}/model-versions/`` of one model version (idempotent: retried); the count."""
        r = self._request("DELETE", f"/api/projects/{self.project_id}/model-versions/", ok=(200,),
                          what=f"deleting {expected} replaced prediction(s) in bulk", deadline=deadline,
                          json={"model_version": version})
        body = self._json(r, "the model version deletion")
        return int(body.get("deleted_predictions", -1)) if isinstance(body, Mapping) else -1

    def _swap(self, res: ShardResult, preds: list[dict[str, Any]], old: Mapping[int, list[int]],
              *, redo: Callable[[], Conversion], image_task: Mapping[int, int], deadline: float | None,
              cancel: threading.Event) -> None:
        """Replace ``old`` (one prediction of this model version on each task, and none elsewhere) in bulk; every
        step leaves each task at least as many predictions as it had:

        1. import the new predictions under a staging model version ``<model_version>~staging-<hex>``, and count
           them (``GET /api/projects/{id}/model-versions/``: one a task, and this model version only the old ones);
        2. delete this model version project-wide (``DELETE /api/projects/{id}/model-versions/``): the old ones;
        3. import the new predictions again under this model version, read back;
        4. delete the staging model version.

        A bulk deletion costs Label Studio ~13 ms a prediction against ~90 ms for ``DELETE /api/predictions/{id}``.
        A failure leaves the staging copies, which a re-run counts as its own (and removes one by one)."""
        again = "run the same upload again to finish the replace"
        staging = f"{self.model_version}{STAGING}{secrets.token_hex(4)}"
        scratch = ShardResult(index=res.index, path=res.path)
        staged = [dict(p, model_version=staging) for p in preds]
        sent = self._import(scratch, staged, deadline=deadline, cancel=cancel)
        tasks = {int(p["task"]) for p in preds}
        if scratch.status == "failed" or sent != len(staged):
            res.status = "failed"
            res.errors.extend(scratch.errors)
            res.errors.append(f"the old predictions were kept beside the staging copies sent; {again}")
            return
        # one staging copy on each task (one a task was sent, every one created): counted, not read back (the
        # regions are read back from the final import); and this model version is still only the old ones
        versions = self._versions(deadline=deadline)
        if cancel.is_set() or versions.get(self.model_version, 0) != len(old) or versions.get(staging) != len(tasks):
            res.status = "failed"
            res.errors.append("cancelled" if cancel.is_set() else
                              f"Label Studio counts {versions.get(staging, 0)} staging copies of {len(tasks)} and "
                              f"{versions.get(self.model_version, 0)} predictions of {self.model_version!r} where "
                              f"{len(old)} were listed: the old predictions were kept; {again}")
            return
        try:
            removed = self._delete_version(self.model_version, len(old), deadline=deadline)
        except UploadError as e:
            res.status = "failed"
            res.errors.append(f"{e}; the old predictions are still there beside staging copies of the new ones; "
                              f"{again}")
            return
        log.info("Label Studio: replaced %d prediction(s) of %r in bulk", removed, self.model_version)
        res.annotations_replaced = res.images_replaced = len(old)
        final = redo()
        preds = _predictions(final, image_task, self.model_version)
        if cancel.is_set():
            res.status = "failed"
            res.errors.append(f"cancelled with the new predictions under the staging model version; {again}")
            return
        try:
            sent = self._import(res, preds, deadline=deadline, cancel=cancel)
        except UploadError as e:
            res.status = "failed"
            res.errors.append(f"{e}; the new predictions are there under the staging model version {staging!r}; "
                              f"{again}")
            return
        confirmed = self._confirm(res, preds[:sent], final, deadline=deadline)
        if res.status == "failed" or confirmed != tasks:
            res.status = "failed"
            res.errors.append(f"the staging copies {staging!r} were kept beside the new predictions; {again}")
            return
        try:
            gone = self._delete_version(staging, len(staged), deadline=deadline)
        except UploadError as e:
            res.status = "failed"
            res.errors.append(f"{e}; the staging copies {staging!r} are still there beside the new predictions; "
                              f"{again}")
            return
        if gone not in (len(staged), 0):
            res.errors.append(f"Label Studio deleted {gone} of {len(staged)} staging prediction(s)")

    def _hint(self, u: UnmatchedFile) -> str:
        """The matcher's hint, or for an image with no task at all: how to upload it."""
        if u.why != "no similar name":
            return u.hint
        if self.images is None:
            return "rerun with --images DIR to upload it and create its task"
        return f"not in {self.images} either: add it there (or to the project)"

    def _predictions_of(self, tasks: Sequence[int], *, what: str,
                        deadline: float | None) -> dict[int, list[Mapping[str, Any]]]:
        """The predictions of ``tasks`` (every model version), by task: the task listing with ``fields=all``,
        the tasks selected 500 a request (``query={"selectedItems": ...}``)."""
        out: dict[int, list[Mapping[str, Any]]] = {}
        for start in range(0, len(tasks), LIST_BATCH):
            chunk = [int(t) for t in tasks[start:start + LIST_BATCH]]
            query = json.dumps({"selectedItems": {"all": False, "included": chunk}})
            r = self._request("GET", "/api/tasks", what=what, deadline=deadline, not_found=self._not_found(),
                              params={"project": self.project_id, "fields": "all", "include": "id,predictions",
                                      "page_size": LIST_BATCH, "query": query})
            body = self._json(r, "the task list")
            listed = body.get("tasks") if isinstance(body, Mapping) else None
            if not isinstance(listed, list) or int(body.get("total", -1)) > len(chunk):
                raise UploadError(f"Label Studio did not list the selected tasks while {what} (its task listing "
                                  "ignored the selection)")
            for t in listed:
                out[int(t["id"])] = [p for p in t.get("predictions") or [] if isinstance(p, Mapping)]
        return out

    def _own_predictions(self, tasks: Sequence[int], *, deadline: float | None) -> dict[int, list[int]]:
        """``{task: [prediction ids]}``: the predictions of this target's model_version on ``tasks`` (tasks without
        one are left out)."""
        listed = self._predictions_of(tasks, what="listing the predictions to replace", deadline=deadline)
        own = {t: [int(p["id"]) for p in preds if self._own_version(p.get("model_version"))]
               for t, preds in listed.items()}
        return {t: ids for t, ids in own.items() if ids}

    def _remove_replaced(self, res: ShardResult, old: dict[int, list[int]], *, kept: int, deadline: float | None,
                         cancel: threading.Event) -> None:
        """Delete the replaced predictions ``old`` (``{task: [ids]}``, of tasks whose new prediction read back),
        one at a time; ``kept``: the number of tasks that had old predictions. Counts go to ``res``."""
        if kept > len(old):
            res.errors.append(f"the old predictions of {kept - len(old)} task(s) were kept: their new prediction "
                              "did not read back complete")
        done = 0
        try:
            for ids in old.values():
                if cancel.is_set():
                    raise UploadError("cancelled")
                for pred in ids:
                    self._request("DELETE", f"/api/predictions/{pred}", what="deleting a replaced prediction",
                                  deadline=deadline, ok=(200, 204, 404))
                    res.annotations_replaced = (res.annotations_replaced or 0) + 1
                done += 1
                res.images_replaced = done
        except UploadError as e:
            left = sum(len(ids) for ids in old.values()) - (res.annotations_replaced or 0)
            res.status = "failed"
            res.errors.append(f"{e}; {left} replaced prediction(s) on {len(old) - done} task(s) are still there "
                              "beside the new ones: run the same upload again to remove them")

    def _confirm(self, res: ShardResult, preds: list[dict[str, Any]], conv: Conversion, *,
                 deadline: float | None) -> set[int]:
        """Read the predictions back, count the annotations whose every region is there, set the activity id;
        returns the tasks whose new prediction read back with all its regions."""
        found: set[str] = set()
        pred_ids: list[int] = []
        confirmed: set[int] = set()
        nonce_ids = {str(it["id"]) for p in preds for it in p["result"]}
        listed = self._predictions_of(sorted({int(p["task"]) for p in preds}), what="reading predictions back",
                                      deadline=deadline)
        for p in preds:
            mine = 0
            for q in listed.get(int(p["task"]), []):
                ids = {str(it.get("id")) for it in q.get("result") or [] if isinstance(it, Mapping)}
                if ids & nonce_ids:
                    found |= ids & nonce_ids
                    pred_ids.append(int(q["id"]))
                    mine += 1
            if mine != 1:
                res.status = "failed"
                res.errors.append(f"task {p['task']}: {mine} predictions of this upload read back, expected 1")
            elif {str(it["id"]) for it in p["result"]} <= found:
                confirmed.add(int(p["task"]))
        sent_regions = {ann: ids for ann, ids in conv.regions.items() if set(ids) <= nonce_ids}
        res.annotations_applied = sum(1 for ids in sent_regions.values() if set(ids) <= found)
        missing = len(nonce_ids - found)
        if missing or res.annotations_applied != len(sent_regions):
            res.status = "failed"
            res.errors.append(f"read back {res.annotations_applied} of {len(sent_regions)} annotations "
                              f"({missing} of {len(nonce_ids)} regions missing)")
        if pred_ids:
            res.activity_id = f"ls-{self.project_id}-{min(pred_ids)}-{len(pred_ids)}"
        return confirmed
