"""Label Studio predictions built from COCO: a project's label config parsed into what the conversion needs
(the image tag, the labels of each control type), every annotation turned into checked Label Studio result
items (rectangles, rotated rectangles, polygons, brush masks, keypoints; fallbacks and skips with their
reasons), and one prediction a task: what :mod:`.labelstudio` sends."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import geometry, labelconfig
from ..errors import ReadError, UploadError
from ..labelconfig import CONTROL_TAGS, REGION_TYPES

MAX_MESSAGES = 20              # skip / fallback messages kept per shard
KEYPOINT_WIDTH = 0.5           # marker size of a keypoint region, percent of the image width
_EPS = 1e-9                    # percent values this close outside [0, 100] are rounding, and clamped


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


def build_predictions(conv: Conversion, image_task: Mapping[int, int], model_version: str) -> list[dict[str, Any]]:
    """One prediction per image of ``conv``: its task, results, ``model_version`` and the mean region score."""
    preds: list[dict[str, Any]] = []
    for img_id, results in conv.results.items():
        pred: dict[str, Any] = {"task": image_task[img_id], "result": results, "model_version": model_version}
        scores = conv.scores.get(img_id)
        if scores:
            pred["score"] = float(np.mean(scores))
        preds.append(pred)
    return preds
