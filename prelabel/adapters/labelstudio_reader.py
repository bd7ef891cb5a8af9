"""The Label Studio task reader: tasks of an export (or of a run of it, a part of the engine's plan) read into the
columns of a Dataset, with the drops and notes of :mod:`prelabel.adapters.labelstudio` (see its docstring for
what is read and how). :class:`Config` is what the reader takes from a label config.
"""

from __future__ import annotations

import math
import reprlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .. import labelconfig
from ..errors import ReadError
from ..images import ImageRoot
from ..imagesize import MAX_SIDE
from ..model import Dataset
from ..paths import IMAGE_EXTENSIONS, image_name
from ..report import Report
from .base import NeedsWholeRead, ReadOptions
from .labelstudio_regions import (
    CLASSIFICATION,
    KIND_NAME,
    KP,
    MIN_RESERVED,
    MIN_TYPE_KEYS,
    NONE,
    NUM,
    RECT,
    TYPE_KIND,
    Drop,
    Seg,
    annotation_order,
    annotator_name,
    as_block,
    infer_kind,
    is_min,
    is_region,
    labels_of,
    num,
    region_geometry,
    region_id,
    region_label,
    source_name,
    task_size,
    what_is_wrong,
)
from .labelstudio_video import has_video, read_video_task


@dataclass
class Config:
    image_keys: dict[str, str] = field(default_factory=dict)   # object tag name -> data key
    categories: list[str] = field(default_factory=list)        # object labels, config order
    keypoints: dict[str, list[str]] = field(default_factory=dict)  # KeyPointLabels name -> names
    choices: set[str] = field(default_factory=set)              # Choices control names


def load_config(spec: Any) -> Config | None:
    if spec is None:
        return None
    parsed = labelconfig.load(str(spec))
    return Config(image_keys=parsed.data_keys(), categories=parsed.category_names(),
                   keypoints=parsed.keypoint_names(), choices={c.name for c in parsed.controls("choices")})


class Reader:
    """Accumulates images and annotation columns over tasks, then builds the Dataset once."""

    def __init__(self, *, options: ReadOptions, report: Report, config: Config | None, part: bool = False) -> None:
        self.opts = options
        self.part = part  # a part of an export (plan): what depends on the rest of it raises NeedsWholeRead
        self.report = report
        self.config = config
        self.root = options.images
        self.images = ImageRoot(self.root, report=report)  # names, places, sizes and the image.* tallies
        self.image_key = options.extra.get("ls_image_key")
        self.file = ""
        # images
        self.img_of_name: dict[str, int] = {}
        self.img_name: list[str] = []
        self.img_w: list[int] = []
        self.img_h: list[int] = []
        self.img_path: list[str | None] = []
        self.img_attrs: list[dict[str, Any]] = []
        self.img_src: list[str] = []
        # annotation rows (geo: x, y, w, h, rotation, original w, original h; percent rows flagged in pct)
        self.r_img: list[int] = []
        self.r_cat: list[str] = []
        self.r_geo: list[tuple[Any, ...]] = []           # the rows since the last _seal, as read
        self.geo_segs: list[Seg] = []                    # the rows before, in runs (see _seal)
        self.geo_rows = 0                                 # rows in geo_segs
        self.r_pct: list[bool] = []
        self.r_seg: list[Any] = []
        self.r_score: list[Any] = []
        self.r_attrs: list[dict[str, Any] | None] = []
        self.r_file: list[str] = []
        self.r_line: list[int] = []
        self.kp_rows: dict[int, dict[str, tuple[float, float]]] = {}
        self.bad_rows: dict[int, str] = {}  # row -> why its geo values are not numbers (see _geo)
        self.late_drops: list[tuple[str, str | None, str, int, str]] = []  # rows left out once built (_boxes)
        self.kp_names: dict[str, list[str]] = {}        # category -> keypoint names (first appearance)
        self.kp_controls: dict[str, list[str]] = {}     # category -> KeyPointLabels from_names seen
        # drops: reason, category, file, line, message
        self.drops: list[tuple[str, str | None, str, int, str]] = []
        # notes gathered for one line each
        self.choices_seen: dict[str, list[Any]] = {}   # from_name -> [count, first source]
        self.relations = 0
        self.cur: Any = None
        self.rotated_images: list[str] = []
        self.good_labels: dict[str, str] = {}  # labels seen to be non-blank strings: one str object each
        self.files: dict[str, int] = {}  # file -> its place in the reading order (drops are listed in it)

    # ------------------------------------------------------------------------------------------ documents
    def read_doc(self, doc: Any, file: str, *, first: int = 1, check_min: bool = True) -> None:
        """Read the tasks of ``doc`` (numbered from ``first``: a piece of a file continues its numbering;
        ``check_min=False``: the file's first task already said it is not JSON-MIN)."""
        self.file = file
        self.files.setdefault(file, len(self.files))
        if isinstance(doc, dict):
            doc = [doc]
        if not isinstance(doc, list):
            raise ReadError(file, f"expected a JSON list of tasks (or one task object), got {type(doc).__name__}")
        if check_min and is_min(doc):
            doc = self._from_min(doc, file)
        for ti, task in enumerate(doc, first):
            self._one(task, ti, file)
        self._seal()

    def _one(self, task: Any, ti: int, file: str) -> None:
        """Read task number ``ti`` of ``file``."""
        if not isinstance(task, dict):
            raise ReadError(file, f"task must be an object, got {type(task).__name__}", line=ti)
        line = task.get("__line", ti)
        self.cur = None
        try:
            self._task(task, line)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as e:
            what = what_is_wrong(e)
            rid = self.cur.get("id") if isinstance(self.cur, dict) else None
            where = f"region {rid!r}: " if rid is not None else ""
            raise ReadError(file, f"{where}{what}", line=line, element=f"task={task.get('id')}") from None

    def _seal(self) -> None:
        """Move the rows read since the last call to geo_segs: as a float64 array when their values are plain
        numbers (which the array keeps exactly), else as read (checked with the others at the end)."""
        rows = self.r_geo
        if not rows:
            return
        block, types = as_block(rows)
        self.geo_segs.append(Seg(self.geo_rows, block if block is not None else rows, types))
        self.geo_rows += len(rows)
        self.r_geo = []

    def _from_min(self, records: list[Any], file: str) -> list[dict[str, Any]]:
        """JSON-MIN records grouped into tasks (one annotation per record)."""
        tasks: dict[Any, dict[str, Any]] = {}
        choices = self.config.choices if self.config else set()
        for li, rec in enumerate(records, 1):
            if not isinstance(rec, dict):
                raise ReadError(file, f"record must be an object, got {type(rec).__name__}", line=li)
            data: dict[str, Any] = {}
            results: list[dict[str, Any]] = []
            for k, val in rec.items():
                if k in MIN_RESERVED:
                    continue
                if isinstance(val, list) and val and all(isinstance(d, dict) for d in val):
                    results.extend(self._min_result(k, d) for d in val)
                elif isinstance(val, dict) and ("choices" in val or "text" in val):
                    results.append(self._min_result(k, val))
                elif k in choices and isinstance(val, (str, list)):
                    results.append({"type": "choices", "from_name": k,
                                    "value": {"choices": [val] if isinstance(val, str) else val}})
                else:
                    data[k] = val
            ann = {"id": rec.get("annotation_id"), "completed_by": rec.get("annotator"),
                   "created_at": rec.get("created_at"), "updated_at": rec.get("updated_at"),
                   "result": results, "__line": li}
            tid = rec.get("id")
            key = tid if isinstance(tid, (int, str)) else ("#", li)
            if key in tasks:
                tasks[key]["annotations"].append(ann)
            else:
                tasks[key] = {"id": tid, "data": data, "annotations": [ann], "__line": li}
        return list(tasks.values())

    @staticmethod
    def _min_result(from_name: str, v: dict[str, Any]) -> dict[str, Any]:
        t = v.get("type")
        if isinstance(t, str):
            t = t.lower()
        else:
            t = next((k for k in MIN_TYPE_KEYS if k in v), "textarea" if "text" in v else None)
        r: dict[str, Any] = {"type": t, "from_name": from_name, "value": v}
        for k in ("original_width", "original_height", "id", "parentID", "score"):
            if k in v:
                r[k] = v[k]
        return r

    # ------------------------------------------------------------------------------------------ one task
    def _task(self, task: dict[str, Any], line: int) -> None:
        tid = task.get("id")
        label = f"task {tid}" if tid is not None else f"task #{line}"
        data = task.get("data")
        if not isinstance(data, dict):
            raise TypeError("'data' must be an object")
        groups = self._select(task, tid, label, line)
        # the image: its URL from the first region's to_name, its name, its size
        to_name = next((r.get("to_name") for g in groups for r in g[1] if isinstance(r, dict)
                        and r.get("to_name")), None)
        url = self._url(data, to_name)
        name, why = image_name(url) if url is not None else (None, "")
        if name is None or url is None:
            problem = (f"{label}: no image URL in data (keys: {', '.join(map(str, data)) or 'none'}); task skipped"
                       if url is None else f"{label}: image {url!r} is not a usable file name ({why}); task skipped")
            if not self._drop_all(groups, "dropped.no_image", problem):  # no region: the task is noted
                self.report.note("dropped.no_image", f"{self.file}:{line}", problem)
            return
        size = task_size(g[1] for g in groups) or task_size(self._all_results(task))
        if has_video(groups):  # frames of a video: labelstudio_video.py
            return read_video_task(self, groups, size=size, url=url, tid=tid, label=label, line=line,
                                   streaming=self.part)
        img = self._place_image(name, url, tid, size, label, line, groups)
        if img is None:
            return
        size = size or (self.img_w[img], self.img_h[img])
        rotated = False
        for is_pred, results, base, score, gline in groups:
            rotated = self._results(results, img, size, label, base, is_pred, score if is_pred else math.nan, gline,
                                    to_name, data) or rotated
        if rotated:
            self.rotated_images.append(f"{self.file}:{line}")

    def _place_image(self, name: str, url: str, tid: Any, size: tuple[int, int] | None, label: str, line: int,
                     groups: list[tuple[bool, list[Any], dict[str, Any], Any, int]]) -> int | None:
        """The image of a task (a new one, or the one an earlier task named); None when it cannot be placed
        (its regions reported)."""
        img = self.img_of_name.get(name)
        if img is not None:
            size = size or (self.img_w[img], self.img_h[img])
            self._merge_image(img, url, tid, size)
        else:
            placed = self.images.place(name, at=f"{self.file}:{line}", size=size)
            if placed.size is None:
                why = self.images.why_unsized(name, placed.path, lacks="no original_width/height in the task")
                if not self._drop_all(groups, "dropped.no_image", f"{label}: {why}"):
                    self.report.note("dropped.no_image", f"{self.file}:{line}", f"{label}: {why}; the image is left out")
                return None
            img = self.add_image(name, placed.size, placed.path, {"url": url, "task_id": tid})
        return img

    def add_image(self, name: str, size: tuple[int, int], path: str | None, attrs: dict[str, Any]) -> int:
        """Append a new image named ``name`` (its size, path and attributes), read from the current file; its
        index."""
        img = len(self.img_name)
        self.img_of_name[name] = img
        self.img_name.append(name)
        self.img_w.append(int(size[0]))
        self.img_h.append(int(size[1]))
        self.img_path.append(path)
        self.img_attrs.append(attrs)
        self.img_src.append(self.file)
        return img

    @staticmethod
    def _all_results(task: dict[str, Any]) -> list[list[Any]]:
        """The results of every annotation and prediction of ``task``, chosen or not."""
        out = []
        for key in ("annotations", "completions", "predictions"):
            for a in task.get(key) or []:
                if isinstance(a, dict) and isinstance(a.get("result"), list):
                    out.append(a["result"])
        return out

    def _select(self, task: dict[str, Any], tid: Any, label: str,
                line: int) -> list[tuple[bool, list[Any], dict[str, Any], Any, int]]:
        """(is_prediction, results, base attributes, default score, line) of the chosen annotations."""
        sel = self.opts.ls_select
        anns = task.get("annotations")
        if anns is None:
            anns = task.get("completions")
        preds = task.get("predictions")
        anns = [] if anns is None else anns
        preds = [] if preds is None else preds
        if not isinstance(anns, list) or not isinstance(preds, list):
            raise TypeError("'annotations' and 'predictions' must be lists")
        out: list[tuple[bool, list[Any], dict[str, Any], Any, int]] = []
        valid: list[dict[str, Any]] = []
        if sel != "predictions":
            for a in anns:
                if not isinstance(a, dict):
                    raise TypeError(f"an annotation must be an object, got {type(a).__name__}")
                res = a.get("result") or []
                if not isinstance(res, list):
                    raise TypeError(f"annotation {a.get('id')!r}: 'result' must be a list")
                if a.get("was_cancelled") or a.get("skipped"):
                    self._drop_regions(res, "dropped.cancelled", a.get("__line", line),
                                       f"{label}, annotation {a.get('id')}: cancelled by its annotator")
                    continue
                valid.append(a)
            who = self.opts.ls_annotator
            if who == "first":
                valid = valid[:1]
            elif who == "latest" and valid:
                valid = [max(valid, key=annotation_order)]
            for a in valid:
                base = {k: v for k, v in (("annotation_id", a.get("id")), ("completed_by", annotator_name(a.get("completed_by"))))
                        if v is not None}
                out.append((False, a.get("result") or [], base, None, a.get("__line", line)))
        if sel in ("predictions", "both") or (sel == "auto" and not valid):
            for p in preds:
                if not isinstance(p, dict):
                    raise TypeError(f"a prediction must be an object, got {type(p).__name__}")
                res = p.get("result") or []
                if not isinstance(res, list):
                    raise TypeError(f"prediction {p.get('id')!r}: 'result' must be a list")
                score = p.get("score")
                if score is not None and type(score) not in NUM:
                    raise TypeError(f"prediction {p.get('id')!r}: score must be a number, got {score!r}")
                base = {k: v for k, v in (("prediction_id", p.get("id")), ("model_version", p.get("model_version")))
                        if v is not None}
                out.append((True, res, base, math.nan if score is None else float(score), line))
        return out

    def _url(self, data: dict[str, Any], to_name: Any) -> str | None:
        key: Any = self.image_key
        if key is None:
            if self.config and to_name in self.config.image_keys:
                key = self.config.image_keys[to_name]
            elif isinstance(to_name, str) and to_name in data:
                key = to_name
            elif "image" in data:
                key = "image"
            else:
                strings = [k for k, v in data.items() if isinstance(v, str)]
                key = next((k for k in strings if data[k].lower().split("?")[0].endswith(IMAGE_EXTENSIONS)),
                           strings[0] if len(strings) == 1 else None)
        val = data.get(key) if key is not None else None
        return val if isinstance(val, str) else None

    def _merge_image(self, img: int, url: str, tid: Any, size: tuple[int, int] | None) -> None:
        attrs = self.img_attrs[img]
        attrs.setdefault("task_ids", [attrs.get("task_id")]).append(tid)
        same = attrs.get("url") == url
        if size is not None and (int(size[0]), int(size[1])) != (self.img_w[img], self.img_h[img]):
            self.report.note("coordinates.suspect", self.file,
                             f"task {tid} gives image {self.img_name[img]!r} the size {size[0]}x{size[1]}, "
                             f"an earlier task {self.img_w[img]}x{self.img_h[img]}: the first is kept")
        self.report.note("image.merged", self.file,
                         f"tasks {attrs['task_ids'][0]} and {tid} name the same image {self.img_name[img]!r}"
                         + ("" if same else f" from different URLs ({attrs.get('url')!r}, {url!r})")
                         + ": their annotations share one image", severity="info" if same else "warning")

    # ------------------------------------------------------------------------------------------ regions
    def _results(self, results: list[Any], img: int, size: tuple[int, int], label: str,
                 base: dict[str, Any], is_pred: bool, score0: float, line: int, to_name: Any,
                 data: dict[str, Any]) -> bool:
        """Append the rows of one annotation's (or prediction's) ``results`` on image ``img``, drop what cannot
        be kept; whether a result records an ``image_rotation``. A rectangle on the task's image with a label
        is appended as read, its numbers checked with all the rows' at the end (:meth:`_boxes`): every
        rectangle of an export is read by that branch, the other kinds below it."""
        W, H = size
        ids: list[Any] = []  # the region id of each row appended, in order
        kps: list[tuple[Any, Any, Any, float, float, Any]] = []
        rels: list[tuple[Any, Any]] = []
        classif: list[tuple[Any, Any, str, Any]] = []
        attrs0 = base or None
        rotated = False
        good = self.good_labels  # labels seen to be non-blank strings, each one str object all its rows share
        r_cat, r_geo, r_pct = self.r_cat, self.r_geo, self.r_pct
        r_seg, r_score, r_attrs = self.r_seg, self.r_score, self.r_attrs
        n0 = len(r_cat)  # image, file and line are the same for every row of these results: added at the end
        for r in results:
            try:
                if type(r) is not dict:
                    raise TypeError(f"a result must be an object, got {type(r).__name__}")
                if r.get("image_rotation"):
                    rotated = True
                t = r.get("type")
                v = r.get("value")
                kind = TYPE_KIND.get(t) if type(t) is str else None
                score = score0
                if is_pred:
                    s = r.get("score")
                    if s is not None:
                        score = s if type(s) is float else num(s)
                if kind is None and t == "labels" and type(v) is dict:
                    kind = infer_kind(v)
                tn = r.get("to_name", to_name)  # the task's image when it names its tag or one showing the same URL
                on_image = kind is not None and (tn == to_name or self._url(data, tn) == self._url(data, to_name))
                if kind == RECT and type(v) is dict and on_image:
                    labs = v.get(t) or labels_of(v, str(t))
                    c = labs[0] if labs and type(labs) is list else None
                    cat = good.get(c) if type(c) is str else None
                    if cat is None and type(c) is str and c.strip():
                        good[c] = cat = c
                    if cat is not None:
                        geo = (v["x"], v["y"], v["width"], v["height"], v.get("rotation") or 0,
                               r.get("original_width", W), r.get("original_height", H))  # before any append
                        ids.append(r.get("id"))
                        r_cat.append(cat)
                        r_geo.append(geo)
                        r_pct.append(True)
                        r_seg.append(None)
                        r_score.append(score)
                        r_attrs.append(attrs0 if len(labs) == 1 else {**base, "labels": list(labs)})
                        continue
                if t == "relation":
                    rels.append((r.get("from_id"), r.get("to_id")))
                    continue
                if type(v) is not dict:
                    raise TypeError("'value' must be an object")
                if type(t) is not str:
                    raise TypeError(f"'type' must be a string, got {t!r}")
                rid = r.get("id")
                msg = f"{label}, {source_name(base)}, region {rid}"
                if t in CLASSIFICATION:
                    classif.append((rid, r.get("from_name"), t, v.get(CLASSIFICATION[t])))
                    continue
                if kind is None:
                    self._drop("dropped.unsupported", None, line, f"{msg}: a '{t}' result is not an image object")
                    continue
                if not on_image:
                    self._drop("dropped.unsupported", None, line,
                               f"{msg}: on a second image of the task ({tn!r}); only the first is read")
                    continue
                labs = labels_of(v, t)
                if not labs or type(labs) is not list:
                    self._drop("dropped.invalid", None, line, f"{msg}: a {KIND_NAME[kind]} without a label")
                    continue
                cat = labs[0]
                if type(cat) is not str:
                    raise TypeError(f"labels must be strings, got {cat!r}")
                if not cat.strip():
                    self._drop("dropped.invalid", None, line, f"{msg}: a {KIND_NAME[kind]} with an empty label")
                    continue
                ow = num(r.get("original_width", W))
                oh = num(r.get("original_height", H))
                if ow <= 0 or oh <= 0 or ow > MAX_SIDE or oh > MAX_SIDE:
                    raise ValueError(f"original_width/height must be > 0 and at most {MAX_SIDE}, got {ow} x {oh}")
                if kind == KP:
                    x, y = num(v["x"]) * ow / 100.0, num(v["y"]) * oh / 100.0
                    if not (math.isfinite(x) and math.isfinite(y)):
                        raise ValueError("keypoint x, y must be finite numbers")
                    kps.append((rid, r.get("parentID"), cat, x, y, r.get("from_name")))
                    continue
                try:
                    seg, box = region_geometry(kind, v, ow, oh)
                except Drop as d:
                    self._drop(d.reason, cat, line, f"{msg}: {d.message}")
                    continue
                r_geo.append((*box, 0.0, 0.0, 0.0))
                r_pct.append(False)
                ids.append(rid)
                r_cat.append(cat)
                r_seg.append(seg)
                r_score.append(score)
                r_attrs.append(attrs0 if len(labs) == 1 else {**base, "labels": list(labs)})
            except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError) as e:
                # one malformed region: dropped at its task's line, the rest of the task and the file are read
                self._drop("dropped.invalid", region_label(r), line,
                           f"{label}, {source_name(base)}, region {region_id(r)}: {what_is_wrong(e)}")
        k = len(r_cat) - n0
        region_row = ({rid: row for row, rid in enumerate(ids, n0) if rid is not None} if kps or classif else {})
        self.r_img += [img] * k
        self.r_file += [self.file] * k
        self.r_line += [line] * k
        if kps:
            self._keypoints(kps, rels, region_row, label, base, line)
        if rels:
            kp_ids = {k[0] for k in kps}
            self.relations += sum(1 for a, b in rels if a != b and a not in kp_ids and b not in kp_ids)
        for rid, from_name, t, payload in classif:
            row = region_row.get(rid) if rid is not None else None
            if row is not None:
                self.r_attrs[row] = {**(self.r_attrs[row] or {}), str(from_name): payload}
            elif t == "choices":
                values = payload if isinstance(payload, list) else [payload]
                bucket = self.img_attrs[img].setdefault("choices", {}).setdefault(str(from_name), [])
                bucket.extend(c for c in values if c not in bucket)
                seen = self.choices_seen.setdefault(str(from_name), [0, f"{self.file}:{line}"])
                seen[0] += 1
            else:
                self._drop("dropped.unsupported", None, line,
                           f"{label}, {source_name(base)}, region {rid}: a '{t}' result ({from_name}) "
                           "that belongs to no region is not an image object")
        return rotated

    def _keypoints(self, kps: list[tuple[Any, Any, Any, float, float, Any]], rels: list[tuple[Any, Any]],
                   region_row: dict[Any, int], label: str, base: dict[str, Any], line: int) -> None:
        linked: dict[Any, list[Any]] = {}
        for a, b in rels:
            linked.setdefault(a, []).append(b)
            linked.setdefault(b, []).append(a)
        for rid, parent, name, x, y, from_name in kps:
            if parent not in region_row:
                parent = next((o for o in linked.get(rid, ()) if o in region_row and o != rid), None)
            msg = f"{label}, {source_name(base)}, keypoint {name!r} (region {rid})"
            if parent is None:
                self._drop("dropped.unsupported", name, line,
                           f"{msg}: no parent region (parentID or relation); COCO keypoints belong to an object")
                continue
            row = region_row[parent]
            points = self.kp_rows.setdefault(row, {})
            if name in points:
                self._drop("dropped.ambiguous", name, line, f"{msg}: a second {name!r} keypoint for region {parent}")
                continue
            points[name] = (x, y)
            cat = self.r_cat[row]
            names = self.kp_names.setdefault(cat, [])
            if name not in names:
                names.append(name)
            controls = self.kp_controls.setdefault(cat, [])
            if from_name not in controls:
                controls.append(from_name)

    # ------------------------------------------------------------------------------------------ drops
    def _drop(self, reason: str, cat: str | None, line: int, message: str) -> None:
        self.drops.append((reason, cat, self.file, line, message))

    def _drop_regions(self, results: list[Any], reason: str, line: int, message: str) -> int:
        """Drop the regions of ``results`` (not relations or classifications); how many."""
        n = 0
        for r in results:
            if isinstance(r, dict) and is_region(r):
                self._drop(reason, region_label(r), line, f"{message} (region {r.get('id')})")
                n += 1
        return n

    def _drop_all(self, groups: list[tuple[bool, list[Any], dict[str, Any], Any, int]], reason: str,
                  message: str) -> int:
        """Drop the regions of every chosen annotation; how many (0: the caller notes the task instead)."""
        return sum(self._drop_regions(results, reason, line, f"{message}; {source_name(base)}")
                   for _, results, base, _, line in groups)

    # ------------------------------------------------------------------------------------------ finish
    def finish(self) -> Dataset:
        if self.part:
            self._alone()
        n = len(self.r_img)
        x, y, w, h, segs, attrs, dropped = self._boxes()
        kp_col = self._keypoint_column(n)
        cats = list(self.config.categories) if self.config else []
        known = set(cats)
        for c in dict.fromkeys(self.r_cat):  # in order of first use
            if c not in known:
                cats.append(str(c))
                known.add(c)
        cat_kp = [self._category_keypoints(c) for c in cats]
        report = self.report
        report.add_read(n + len(self.drops))
        self.drops += self.late_drops  # after the regions dropped while reading, as a streamed read lists them
        self._report_drops()
        self._notes()
        return self._dataset(cats, cat_kp, (x, y, w, h), segs, attrs, kp_col, dropped)

    def _dataset(self, cats: list[str], cat_kp: list[Any], xywh: tuple[Any, Any, Any, Any], segs: list[Any],
                 attrs: list[Any], kp_col: list[Any], dropped: list[int]) -> Dataset:
        """The Dataset of the images and rows held, with categories ``cats`` (keypoint names ``cat_kp``), the
        boxes, segmentations and attributes :meth:`_boxes` made and the keypoints column; the rows ``dropped``
        left out."""
        x, y, w, h = xywh
        report = self.report
        ds = Dataset.build(
            images={"file_name": self.img_name, "width": np.asarray(self.img_w, dtype=np.int64),
                    "height": np.asarray(self.img_h, dtype=np.int64),
                    "path": pd.Series(self.img_path, dtype=object),
                    "attributes": pd.Series(self.img_attrs, dtype=object),
                    "src_file": pd.Series(self.img_src, dtype=object)},
            categories={"name": pd.Series(cats, dtype=object), "keypoints": pd.Series(cat_kp, dtype=object)},
            annotations={"image": np.asarray(self.r_img, dtype=np.int64),
                         "category": pd.Series(self.r_cat, dtype=object),
                         "x": x, "y": y, "w": w, "h": h,
                         "score": np.asarray(self.r_score, dtype=np.float64),
                         "segmentation": pd.Series(segs, dtype=object),
                         "keypoints": pd.Series(kp_col, dtype=object),
                         "attributes": pd.Series(attrs, dtype=object),
                         "src_file": pd.Series(self.r_file, dtype=object),
                         "src_line": np.asarray(self.r_line, dtype=np.int64)},
            report=report,
        )
        if dropped:
            keep = np.ones(len(self.r_img), dtype=bool)
            keep[dropped] = False
            ds.annotations = ds.annotations[keep].reset_index(drop=True)
        return ds

    def _geo(self) -> np.ndarray:
        """All rows' geo values as one (n, 7) float64 array. A row read with a value that is not a JSON number
        (or one past the largest float) is NaN, with its message in ``bad_rows``."""
        self._seal()
        segs = self.geo_segs
        if all(isinstance(g.rows, np.ndarray) for g in segs):
            return np.concatenate([g.rows for g in segs]) if len(segs) > 1 else segs[0].rows
        geo = np.empty((self.geo_rows, 7), dtype=np.float64)
        for g in segs:
            if isinstance(g.rows, np.ndarray):
                geo[g.start:g.start + len(g.rows)] = g.rows
                continue
            for i, tup in enumerate(g.rows, g.start):  # as float(v) of each value: what as_block's arrays hold
                bad = next((v for v in tup if type(v) not in NUM), NONE) if len(tup) == 7 else tup
                try:
                    if bad is NONE:
                        geo[i] = [float(v) for v in tup]
                        continue
                    message = ("coordinates and original_width/height must be numbers, got "
                               f"{reprlib.repr(bad)}")
                except OverflowError:
                    message = "a coordinate or original_width/height is too large for a number"
                geo[i] = math.nan
                self.bad_rows[i] = message
        return geo

    def _boxes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[Any], list[Any], list[int]]:
        """The rows' boxes (x, y, w, h in pixels), segmentations and attributes, and the rows dropped as
        malformed (each recorded in ``late_drops``, in row order)."""
        n = len(self.r_img)
        segs = self.r_seg
        attrs = self.r_attrs
        if n == 0:
            z = np.zeros(0, dtype=np.float64)
            return z, z, z, z, segs, attrs, []
        geo = self._geo()
        pct = np.asarray(self.r_pct, dtype=bool)
        finite = np.isfinite(geo).all(axis=1)
        ow, oh = geo[:, 5], geo[:, 6]
        wrong_size = finite & pct & ((ow <= 0) | (oh <= 0) | (ow > MAX_SIDE) | (oh > MAX_SIDE))
        dropped = np.flatnonzero(~finite | wrong_size).tolist()
        if dropped:
            for i in dropped:
                if i in self.bad_rows:
                    reason, message = "dropped.invalid", self.bad_rows[i]
                elif not finite[i]:
                    reason, message = "dropped.nonfinite", "coordinates must be finite numbers (NaN or Infinity found)"
                else:
                    reason, message = "dropped.invalid", (f"original_width/height must be > 0 and at most "
                                                          f"{MAX_SIDE}, got {ow[i]:g} x {oh[i]:g}")
                cat = self.r_cat[i]
                self.late_drops.append((reason, cat, self.r_file[i], self.r_line[i], f"{cat!r} region: {message}"))
            geo = geo.copy()
            geo[dropped] = (0.0, 0.0, 0.0, 0.0, 0.0, 100.0, 100.0)  # computed like the others, then left out
            ow, oh = geo[:, 5], geo[:, 6]
        sx = np.where(pct, ow / 100.0, 1.0)
        sy = np.where(pct, oh / 100.0, 1.0)
        x, y, w, h = geo[:, 0] * sx, geo[:, 1] * sy, geo[:, 2] * sx, geo[:, 3] * sy
        rot = np.where(pct, geo[:, 4], 0.0)
        turned = np.flatnonzero(np.mod(rot, 360.0) != 0)
        if turned.size:
            # Label Studio turns clockwise about the top-left corner, in pixels (rotated_box_topleft, vectorized)
            a = np.radians(rot[turned])
            c, s = np.cos(a), np.sin(a)
            x0, y0, ww, hh = x[turned], y[turned], w[turned], h[turned]
            xs = np.column_stack([x0, x0 + ww * c, x0 + ww * c - hh * s, x0 - hh * s])
            ys = np.column_stack([y0, y0 + ww * s, y0 + ww * s + hh * c, y0 + hh * c])
            corners = np.empty((turned.size, 8), dtype=np.float64)
            corners[:, 0::2] = xs
            corners[:, 1::2] = ys
            x, y, w, h = x.copy(), y.copy(), w.copy(), h.copy()
            x[turned], y[turned] = xs.min(axis=1), ys.min(axis=1)
            w[turned], h[turned] = xs.max(axis=1) - x[turned], ys.max(axis=1) - y[turned]
            segs = list(segs)
            attrs = list(attrs)
            for k, i in enumerate(turned.tolist()):
                segs[i] = [corners[k]]
                attrs[i] = {**(attrs[i] or {}), "rotation": float(rot[i])}
        return x, y, w, h, segs, attrs, dropped

    def _category_keypoints(self, cat: str) -> list[str] | None:
        names = self.kp_names.get(cat)
        if names is None:
            return None
        if self.config and self.config.keypoints:
            ordered: list[str] = []
            for ctl in self.kp_controls.get(cat, []):
                ordered.extend(k for k in self.config.keypoints.get(str(ctl), []) if k not in ordered)
            ordered.extend(k for k in names if k not in ordered)
            return ordered
        return list(names)

    def _keypoint_column(self, n: int) -> list[Any]:
        col: list[Any] = [None] * n
        if not self.kp_rows:
            return col
        order = {c: self._category_keypoints(c) for c in self.kp_names}
        for row in range(n):
            names = order.get(self.r_cat[row])
            if names is None:
                continue
            arr = np.zeros((len(names), 3), dtype=np.float64)
            for name, (kx, ky) in self.kp_rows.get(row, {}).items():
                k = names.index(name)
                arr[k] = (kx, ky, 2.0)
            col[row] = arr
        return col

    def _alone(self) -> None:
        """NeedsWholeRead when a part read what only the whole export tells: keypoint names (in order of first
        appearance over the whole export)."""
        if self.kp_names:
            raise NeedsWholeRead(f"{self.file}: keypoints, whose names are noted over the whole export")

    def _report_drops(self) -> None:
        """The drops in file and task order (the order that the parts of a plan add up to), in runs of one
        reason."""
        if not self.drops:
            return
        rank = self.files
        rows = sorted(self.drops, key=lambda d: (rank.get(d[2], len(rank)), d[3]))
        frame = pd.DataFrame(rows, columns=["reason", "category", "src_file", "src_line", "message"],
                             dtype=object)  # an empty category stays None (no string column inferred)
        reasons = frame["reason"].to_numpy()
        starts = [0, *np.flatnonzero(reasons[1:] != reasons[:-1]) + 1, len(frame)]
        for a, b in zip(starts[:-1], starts[1:], strict=False):
            self.report.drop(str(reasons[a]), frame.iloc[a:b])

    def _notes(self) -> None:
        """The notes about what was counted over the export (closing tallies: the parts' counts add up)."""
        rep = self.report
        for name, (count, src) in self.choices_seen.items():
            esc = name.replace("{", "{{").replace("}", "}}")
            rep.tally("image.attribute", src, f"choices '{esc}' of {{}} annotation(s) kept as image attributes "
                      f"(attributes['choices']['{esc}'])", (count,), severity="info", end=1)
        if self.relations:
            rep.tally("dropped.unsupported", self.file, "{} relation(s) between regions not kept "
                      "(COCO has no relations)", (self.relations,), severity="info", end=2)
        if self.rotated_images:
            rep.tally("coordinates.suspect", self.rotated_images[0], "{} task(s) record an image_rotation: their "
                      "coordinates are read as given, against original_width x original_height",
                      (len(self.rotated_images),), end=3)
        self.images.notes(end=4)


