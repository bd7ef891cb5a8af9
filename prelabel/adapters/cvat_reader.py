"""The CVAT XML reader: expat callbacks for ``<meta>``, ``<image>`` and the dispatch of shapes and tracks
(:mod:`.cvat_shapes`, :mod:`.cvat_tracks`), then the Dataset of what was read
(the conventions of :mod:`prelabel.adapters.cvat`). :class:`Meta` is what ``<meta>`` says, read once and handed
to the readers of a file's parts.

Example:
    >>> from prelabel.adapters.base import ReadOptions
    >>> from prelabel.report import Report
    >>> reader = CvatReader(Path("a.xml"), options=ReadOptions(), report=Report(), images_root=None)
    >>> reader.meta_done
    False
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.parsers import expat

import numpy as np
import pandas as pd

from ..errors import ReadError
from ..images import ImageRoot
from ..imagesize import MAX_SIDE
from ..model import Dataset
from ..paths import why_unsafe
from ..report import Diagnostic, Report
from .base import ReadOptions, frame_file_name
from .cvat_shapes import SHAPES, BadValue
from .cvat_tracks import TrackRows

__all__ = ["CvatReader", "Meta"]

_LINE_RE = re.compile(r"<line\b[^>]*>", re.IGNORECASE)
_CIRCLE_RE = re.compile(r"<circle\b[^>]*>", re.IGNORECASE)
_SVG_ATTR_RE = re.compile(r'([\w:-]+)\s*=\s*"([^"]*)"')


@dataclass(frozen=True)
class Meta:
    """What a file's ``<meta>`` says (read once by a plan, for the readers of its parts) and the notes reading it
    made."""

    labels: list[dict[str, Any]]
    tasks: list[dict[str, Any]]
    attr_types: dict[str, dict[str, str]]
    nodes: dict[str, list[str]]
    by_subset: bool
    mode: str
    notes: tuple[Diagnostic, ...]


class CvatReader(TrackRows):
    """One CVAT file's streaming parse: expat callbacks fill column lists; the Dataset is built at the end
    (:meth:`_build`).
    ``meta``: the file's ``<meta>`` as a plan read it (a part's bytes hold none)."""

    def __init__(self, path: Path, *, options: ReadOptions, report: Report, images_root: Path | None,
                 part: bool = False, line0: int = 0, meta: Meta | None = None) -> None:
        super().__init__(path, options=options, report=report, images_root=images_root, part=part, line0=line0)
        self.stack: list[str] = []
        # meta
        self.in_meta = False
        self.text: list[str] = []
        self.meta_done = False
        self.by_subset = False  # a project export of several subsets: images are named <subset>/<name>
        self.mode = ""
        self.attr_name = ""
        # images
        self.img_key: dict[tuple[str, str], int] = {}
        # image names made safe, looked up under the images root (when it is a folder), the image.missing tally
        self.images = ImageRoot(images_root if images_root is not None and Path(images_root).is_dir() else None,
                                report=report)
        if meta is not None:
            self.labels, self.tasks, self.attr_types = meta.labels, meta.tasks, meta.attr_types
            self.nodes = {k: list(v) for k, v in meta.nodes.items()}
            self.by_subset, self.mode, self.meta_done = meta.by_subset, meta.mode, True

    def meta(self) -> Meta:
        """What ``<meta>`` said (once it was read), with the notes reading it made."""
        return Meta(labels=self.labels, tasks=self.tasks, attr_types=self.attr_types,
                    nodes={k: list(v) for k, v in self.nodes.items()}, by_subset=self.by_subset, mode=self.mode,
                    notes=tuple(self.report.diagnostics))

    def new_parser(self) -> Any:
        """An expat parser whose callbacks are this reader's (DTDs and entities refused)."""
        p = expat.ParserCreate()
        p.buffer_text = True
        p.buffer_size = 1 << 16
        p.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
        p.StartDoctypeDeclHandler = self._refuse_doctype
        p.EntityDeclHandler = self._refuse_entity
        p.ExternalEntityRefHandler = self._refuse_external
        p.StartElementHandler = self._start
        p.EndElementHandler = self._end
        self.parser = p
        return p

    def _where(self) -> str:
        return self.stack[-1] if self.stack else ""

    def _refuse_doctype(self, *args: Any) -> None:
        raise ReadError(self.file, "DOCTYPE / DTD refused (entities and DTDs are not allowed in CVAT XML)",
                        line=self._line(),
                        hint="remove the <!DOCTYPE ...> declaration; CVAT never writes one")

    def _refuse_entity(self, *args: Any) -> None:
        raise ReadError(self.file, "entity declaration refused", line=self._line())

    def _refuse_external(self, *args: Any) -> int:
        raise ReadError(self.file, "external entity refused", line=self._line())

    def _capture(self) -> None:
        self.text = []
        self.parser.CharacterDataHandler = self.text.append

    def _release(self) -> str:
        self.parser.CharacterDataHandler = None
        return "".join(self.text)

    # ------------------------------------------------------------------ element starts
    def _start(self, name: str, attrs: dict[str, str]) -> None:
        stack = self.stack
        stack.append(name)
        d = len(stack)
        if d == 3 and self.cur_img >= 0:
            rows, skel = len(self.a_cat), self.skel
            try:
                self._image_shape(name, attrs)
            except (BadValue, KeyError, ValueError, TypeError, IndexError, OverflowError) as e:
                self._bad_shape(name, attrs, e, rows=rows, skel=skel)
            return
        if name == "attribute" and self.cur_attrs is not None and d == self.attr_depth:
            key = attrs["name"]
            self.attr_name = self.strs.setdefault(key, key)
            self._capture()
            return
        if self.in_meta:
            self._meta_start(name, d)
            return
        if d == 2:
            if name == "image":
                self._image_start(attrs)
            elif name == "track":
                self._track_start(attrs)
            elif name == "meta":
                self.in_meta = True
            elif name == "tag":
                self._video_tag(attrs)
            return
        if d == 1:
            if name != "annotations":
                raise ReadError(self.file, f"not a CVAT XML: the root element is <{name}>, expected <annotations>",
                                line=self._line())
            return
        if self.track is not None:
            self._track_child(name, attrs, d)
            return
        if self.skel is not None and d == 4 and name == "points":
            self._skeleton_node(attrs)

    def _end(self, name: str) -> None:
        stack = self.stack
        d = len(stack)
        if self.in_meta:
            self._meta_end(name, d)
        elif name == "attribute" and self.cur_attrs is not None and d == self.attr_depth:
            if self.cur_shared_row >= 0:  # a shared dict (a plain box): this box gets its own copy
                self.cur_attrs = dict(self.cur_attrs)
                self.a_attr[self.cur_shared_row] = self.cur_attrs
                self.cur_shared_row = -1
            self.cur_attrs[self.attr_name] = self._attr_value(self.cur_label, self.attr_name, self._release())
        elif d == 3 and self.cur_img >= 0:
            if self.skel is not None:
                self._skeleton_end()
            self.cur_attrs = None
            self.cur_shared_row = -1
        elif d == 2:
            if name == "image":
                self.cur_img = -1
                self.cur_attrs = None
            elif name == "track" and self.track is not None:
                self._track_end(self.track)
                self.track = None
                self.cur_attrs = None
            elif name == "tag":
                self.cur_attrs = None
        elif d == 3 and name == "track" and self.subtrack is not None:
            if self.track is not None:
                self.track.elements.append(self.subtrack)
            self.subtrack = None
        elif self.track is not None and name in SHAPES:
            self.cur_attrs = None
        stack.pop()

    # ------------------------------------------------------------------ meta
    def _meta_start(self, name: str, d: int) -> None:
        stack = self.stack
        parent = stack[-2]
        if name == "label" and parent == "labels":
            self.labels.append({"name": "", "type": "", "parent": None, "svg": "", "attrs": {}})
        elif name == "attribute" and parent == "attributes" and d >= 4 and stack[-3] == "label":
            self.labels[-1]["attrs"][None] = ["", ""]  # name, input_type being read
        elif name in ("task", "job") and parent in ("meta", "tasks"):
            self.tasks.append({})
        self._capture()

    def _meta_end(self, name: str, d: int) -> None:
        stack = self.stack
        value = self._release()
        if name == "meta":
            self.in_meta = False
            self._finish_meta()
            return
        parent = stack[-2] if d >= 2 else ""
        if parent == "label" and self.labels:
            lab = self.labels[-1]
            if name in ("name", "type", "parent", "svg"):
                lab[name] = value.strip() if name != "svg" else value
        elif parent == "attribute" and d >= 5 and stack[-4] == "label" and self.labels:
            pending = self.labels[-1]["attrs"].get(None)
            if pending is not None:
                if name == "name":
                    pending[0] = value.strip()
                elif name == "input_type":
                    pending[1] = value.strip()
        elif name == "attribute" and parent == "attributes" and d >= 4 and stack[-3] == "label" and self.labels:
            attrs = self.labels[-1]["attrs"]
            pending = attrs.pop(None, None)
            if pending and pending[0]:
                attrs[pending[0]] = pending[1]
        elif parent in ("task", "job") and self.tasks and name in (
                "id", "name", "size", "mode", "start_frame", "stop_frame", "frame_filter", "subset"):
            self.tasks[-1][name] = value.strip()
        elif parent == "original_size" and d >= 3 and stack[-3] in ("task", "job") and self.tasks:
            if name in ("width", "height"):
                self.tasks[-1]["original_" + name] = value.strip()

    def _finish_meta(self) -> None:
        self.meta_done = True
        for lab in self.labels:
            lab["attrs"].pop(None, None)
            self.attr_types[lab["name"]] = dict(lab["attrs"])
        for lab in self.labels:
            if lab["parent"]:
                self.nodes.setdefault(lab["parent"], []).append(lab["name"])
        subsets = sorted({str(t["subset"]) for t in self.tasks if t.get("subset")})
        if len(subsets) > 1:  # the same name may be two pictures, one per subset (CVAT exports images/<subset>/)
            self.by_subset = True
            self.report.note("image.by_subset", self.file,
                             f"a project export of the subsets {', '.join(subsets)}: each image is named "
                             f"<subset>/<name> (the same name may be a different picture in each subset)",
                             severity="info")
        task = self._frame_task()
        self.mode = str(task.get("mode", "")) if task else ""
        for t in self.tasks:
            if not self.mode and t.get("mode"):
                self.mode = str(t["mode"])

    def _skeleton_edges(self, lab: dict[str, Any]) -> list[list[int]]:
        names = self.nodes.get(lab["name"], [])
        index = {n: i + 1 for i, n in enumerate(names)}
        node_label: dict[str, str] = {}
        svg = lab["svg"] or ""
        for m in _CIRCLE_RE.finditer(svg):
            a = dict(_SVG_ATTR_RE.findall(m.group(0)))
            if "data-node-id" in a and "data-label-name" in a:
                node_label[a["data-node-id"]] = a["data-label-name"]
        edges: list[list[int]] = []
        for m in _LINE_RE.finditer(svg):
            a = dict(_SVG_ATTR_RE.findall(m.group(0)))
            ends = []
            for key in ("data-node-from", "data-node-to"):
                nid = a.get(key)
                if nid is None:
                    break
                if nid in node_label:
                    k = index.get(node_label[nid])
                else:  # no label names in the svg: node ids are 1-based positions
                    k = int(nid) if nid.isdigit() and 1 <= int(nid) <= len(names) else None
                if k is None:
                    break
                ends.append(k)
            if len(ends) == 2 and ends[0] != ends[1] and ends not in edges:
                edges.append(ends)
            elif len(ends) != 2:
                self.report.note("dropped.invalid", self.file,
                                 f"skeleton {lab['name']!r}: an svg edge names an unknown node; edge left out")
        return edges

    def _attr_value(self, label: str, name: str, text: str) -> Any:
        kind = self.attr_types.get(label, {}).get(name)
        if kind == "checkbox":
            low = text.strip().lower()
            if low in ("true", "false"):
                return low == "true"
        elif kind == "number":
            s = text.strip()
            try:
                return int(s)
            except ValueError:
                try:
                    return float(s)
                except ValueError:
                    return text
        return text

    # ------------------------------------------------------------------ images mode
    def _image_start(self, attrs: dict[str, str]) -> None:
        line = self.parser.CurrentLineNumber + self.line0  # (inline: once an image)
        raw = attrs.get("name")
        if raw is None:
            raise BadValue("<image> without a name")
        name = self.images.name(raw, at=f"{self.file}:{line}")
        if name is None:
            raise ReadError(self.file, f"image name {raw!r} is unsafe: {why_unsafe(raw)}", line=line,
                            element="image", hint="image names must be relative paths inside the images folder")
        subset = attrs.get("subset", "")
        if self.by_subset and subset:
            qualified = self.images.name(f"{subset}/{name}", at=f"{self.file}:{line}")
            if qualified is None:
                raise ReadError(self.file, f"subset {subset!r} is not a safe folder name: {why_unsafe(subset)}",
                                line=line, element="image")
            name = qualified
        key = (subset, name)
        w, h = attrs.get("width"), attrs.get("height")
        if w is None or h is None:
            raise BadValue(f"<image name={raw!r}> has no width/height")
        wi, hi = int(float(w)), int(float(h))
        if wi < 1 or hi < 1 or wi > MAX_SIDE or hi > MAX_SIDE:
            raise BadValue(f"<image name={raw!r}> has size {w}x{h}")
        idx = self.img_key.get(key)
        if idx is None:
            idx = len(self.img_name)
            self.img_key[key] = idx
            self.img_name.append(name)
            self.img_w.append(wi)
            self.img_h.append(hi)
            extra: dict[str, Any] = {}
            if "subset" in attrs:
                extra["subset"] = subset
            if "task_id" in attrs:
                tid = attrs["task_id"]
                extra["task_id"] = int(tid) if tid.isdigit() else tid
            self.img_attrs.append(extra or None)
            self.img_line.append(line)
        elif (self.img_w[idx], self.img_h[idx]) != (wi, hi):
            raise BadValue(f"image {name!r} appears twice with different sizes "
                       f"({self.img_w[idx]}x{self.img_h[idx]} and {wi}x{hi})")
        self.cur_img = idx
    def _build(self) -> Dataset:
        """After the whole file: tracks, frames and frame tags resolved, their notes, then the last Dataset."""
        for track in self.pending_tracks:
            self._expand_track(track)
        self.pending_tracks = []
        task = self._frame_task() or {}
        if self.has_tracks or self.frame_tags or (self.mode == "interpolation" and task.get("original_width")):
            self._ensure_frames()
        lost_tags = 0
        for f, tags in sorted(self.frame_tags.items()):
            if f in self.frame_set:
                img = self._frame_image(f)
                for t in tags:
                    self._add_tag(img, t)
            else:
                lost_tags += len(tags)
        # tallies: a part writes its counts of 0 too, and parts.merge adds them up where read() writes them
        if lost_tags or self.part:
            self.report.tally("image.missing", self.file, "{} tag(s) name frames the task does not have; left out",
                              (lost_tags,), first=True)
        if self.tag_count - lost_tags or self.part:
            self.report.tally("image.attribute", f"{self.file}:{self.tag_line}",
                              "{} tag(s) kept as the image attribute 'tags' (not object annotations)",
                              (self.tag_count - lost_tags,), severity="info", first=True)
        if self.approx_tracks:
            self.report.note("coordinates.suspect", self.file,
                             f"track(s) {', '.join(self.approx_tracks[:10])}: polygons with different point "
                             "counts between keyframes are repeated, not interpolated", severity="info")
        return self._make()

    def _make(self) -> Dataset:
        """The Dataset of the columns read; it also reports what the whole file
        decides (the aggregated notes, the drops, the clipped masks) as one ``read()`` reports them."""
        names = self.img_name
        if self.frame_rows:
            names = list(names)
            pattern = self.options.frame_pattern
            for f, idx in self.frame_rows.items():
                names[idx] = frame_file_name(pattern, f)
        paths = self._image_paths(names)
        self.images.notes(first=True, part=self.part)
        images = {
            "file_name": pd.Series(names, dtype=object),
            "width": np.asarray(self.img_w, dtype=np.int64),
            "height": np.asarray(self.img_h, dtype=np.int64),
            "path": pd.Series(paths, dtype=object),
            "attributes": pd.Series(self.img_attrs, dtype=object),
            "src_file": pd.Series([self.file] * len(names), dtype=object),
        }
        cats = self._categories()
        n = len(self.a_cat)
        box = np.asarray(self.a_box, dtype=np.float64).reshape(n, 4)
        il = np.asarray(self.a_il, dtype=np.int64).reshape(n, 2)
        x0, y0 = box[:, 0], box[:, 1]  # views: the table copies them into its own blocks
        ann = {
            "image": il[:, 0],
            "category": pd.Series(self.a_cat, dtype=object),
            "x": x0, "y": y0,
            "w": box[:, 2] - x0,
            "h": box[:, 3] - y0,
            "iscrowd": np.zeros(n, dtype=np.int8),
            "segmentation": pd.Series(self.a_seg, dtype=object),
            "keypoints": pd.Series(self.a_kp, dtype=object),
            "attributes": pd.Series(self.a_attr, dtype=object),
            "src_file": pd.Series([self.file] * n, dtype=object),
            "src_line": il[:, 1],
        }
        self.report.add_read(n + len(self.d_reason))
        ds = Dataset.build(images=images, categories=cats, annotations=ann, report=self.report)
        if self.clipped_rows:
            clipped = ds.annotations.iloc[self.clipped_rows][["category", "src_file", "src_line"]]
            self.report.change("clipped", clipped, "mask rectangle extends outside the image; cut at the border")
        if self.d_reason:
            drops = pd.DataFrame({"reason": self.d_reason, "category": pd.Series(self.d_cat, dtype=object),
                                  "src_file": [self.file] * len(self.d_reason), "src_line": self.d_line,
                                  "message": self.d_msg})
            self.report.drop(None, drops)  # in file order (the order parts add up to), each with its reason
        return ds

    def _categories(self) -> dict[str, list[Any]]:
        names: list[str] = []
        kps: list[Any] = []
        skel: list[Any] = []
        for lab in self.labels:
            if lab["parent"] or lab["type"] == "tag" or lab["name"] in names or not lab["name"]:
                continue
            names.append(lab["name"])
            if lab["type"] == "skeleton" or lab["name"] in self.nodes:
                kps.append(list(self.nodes.get(lab["name"], [])))
                skel.append(self._skeleton_edges(lab))
            else:
                kps.append(None)
                skel.append(None)
        known = set(names)
        used = set(self.a_cat)
        for name, nodes in self.nodes.items():  # skeletons drawn with labels missing from <meta>
            if name not in known and name in used:
                names.append(name)
                kps.append(list(nodes))
                skel.append([])
                known.add(name)
        if self.kp_k:
            self._pad_points(names, kps, skel)
        return {"name": names, "keypoints": kps, "skeleton": skel}

    def _pad_points(self, names: list[str], kps: list[Any], skel: list[Any]) -> None:
        """<points> kept as keypoints: one K per category (the largest count), shorter shapes padded with v=0."""
        per_cat = dict(self.kp_k)
        for cat, k in per_cat.items():
            if cat in names:
                i = names.index(cat)
                if kps[i] is not None and len(kps[i]) >= k:
                    per_cat[cat] = len(kps[i])
                    continue
                kps[i] = [str(j + 1) for j in range(k)]
                skel[i] = []
            else:
                names.append(cat)
                kps.append([str(j + 1) for j in range(k)])
                skel.append([])
        for r in self.kp_points_rows:
            arr = self.a_kp[r]
            k = per_cat[self.a_cat[r]]
            if len(arr) < k:
                pad = np.zeros((k, 3), dtype=np.float64)
                pad[:len(arr)] = arr
                self.a_kp[r] = pad

    def _image_paths(self, names: list[str]) -> list[str | None]:
        """The local file of each image under the images root (by its name, else with or without its subset
        folder), each settled through :class:`~prelabel.images.ImageRoot` (one not found is counted)."""
        images = self.images
        if images.root is None:
            return [None] * len(names)
        out: list[str | None] = []
        for name, attrs, w, h, line in zip(names, self.img_attrs, self.img_w, self.img_h, self.img_line,
                                           strict=True):
            found: str | None = None
            subset = (attrs or {}).get("subset")
            bare = name[len(subset) + 1:] if self.by_subset and subset and name.startswith(f"{subset}/") else None
            for cand in (name, f"{subset}/{name}" if subset and bare is None else bare):
                found = images.lookup(cand) if cand else None
                if found is not None:
                    break
            out.append(images.settle(name, found, at=f"{self.file}:{line}" if line else self.file, size=(w, h)).path)
        return out
