"""One reading of a YOLO source (or of one part of its plan): its label files parsed, checked and converted
into images and annotation rows in one batch; what the label files decide for the dataset (the class count
without names, the task of each file, the fate of files of 9-11 column rows only, an inferred
``kpt_shape``); and the drops and notes, reported in ``read()``'s order."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..errors import ReadError, for_face, option
from ..images import ImageRoot, Size
from ..report import Report
from .base import ReadOptions
from .yolo_geometry import category_table, convert_rows
from .yolo_layout import TASK_CODES, Config, Layout, norm, rel_path, stem, swap_folder
from .yolo_rows import (
    AMBIGUOUS,
    DETECT,
    SEGMENT,
    Lines,
    column_problems,
    file_tasks,
    looks_like_labels,
    parse_rows,
    row_problems,
    unnamed_classes,
)

# a tally's template (the option's braces doubled: the count is formatted in, the option spelled after)
_POLYGONS = ("{} file(s) with only 9-11 column rows read as polygons like the rest of the dataset; pass "
             + option("task", "obb").replace("{", "{{").replace("}", "}}") + " if they are oriented boxes")
_AMBIGUOUS_MSG = ("9 to 11 columns: a 4-point polygon or an oriented box; "
                  f"pass {option('task', 'segment')} or {option('task', 'obb')}")


class Run:
    """One reading of a YOLO source (or a part of its plan): what the label files decide for the dataset (the
    class count without names, the fate of files of 9-11 column rows only, an inferred kpt_shape), found by
    :meth:`batch`, and the drops and notes, held until :meth:`finish` reports them in ``read()``'s order."""

    def __init__(self, lay: Layout, cfg: Config, options: ReadOptions, report: Report, src: str, *, img_root: str,
                 pending_polygons: bool | None = None) -> None:
        self.lay, self.cfg, self.report, self.src = lay, cfg, report, src
        self.pending_polygons = pending_polygons    # the plan's decision for files of 9-11 column rows only
        self.images_given = options.images is not None
        self.img_root = img_root                    # file_name is relative to this
        self.top = 0                                # without names: 1 + the largest class index so far
        self.kpt_shape = cfg.kpt_shape              # inferred from the first pose rows when not given
        self.kpt_cols = 0                           # inferred: the value count of every pose row
        self.decided: set[int] = set()              # the tasks of the files that decide theirs
        self.n_detect = self.n_segment = self.n_pending = 0  # files per inferred task; 9-11 column files
        self.skipped: list[str] = []                # loose orphan .txt files that are not label files
        self.pending_drops: list[pd.DataFrame] = []  # drops, reported in file and line order by finish()
        self.orphan_entry = np.zeros(0, dtype=bool)   # the label files without an image
        self.orphan_rows: list[tuple[str, int]] = []  # label files with no image, and their row counts
        self.image_notes: list[tuple[str, str, int, str]] = []  # one an image at most, in image order: (what,
        #   the file, rows, why): "unsized" (the image file, why_unsized), "unlabeled" (its file_name), "ambiguous"
        #   (its label file)
        self._names: tuple[int, np.ndarray] | None = None
        self.images: ImageRoot | None = None         # the image resolver, once the sizes are read

    # ------------------------------------------------------------------ images
    def sizes(self) -> list[Size | None]:
        """The size of each image of the layout (None: its header gives none), read through the one image
        resolver (:class:`prelabel.images.ImageRoot`: headers in threads, EXIF applied, the
        ``image.size_from_header`` tally written by :meth:`finish`). YOLO records no size, so every size is
        a header's. The images are the files found (walked, or listed and found), so none is counted missing."""
        lay = self.lay
        self.images = ImageRoot(self.img_root, report=self.report)
        placed = self.images.settle_all(lay.images, lay.images, at=lambda i: rel_path(lay.images[i], lay.root))
        return [p.size for p in placed]

    # ------------------------------------------------------------------ names and categories
    def names(self) -> list[str]:
        return self.cfg.names if self.cfg.names is not None else [str(i) for i in range(self.top)]

    def names_array(self) -> np.ndarray:
        if self._names is None or self._names[0] != self.top:
            self._names = (self.top, np.array(self.names(), dtype=object))
        return self._names[1]

    # ------------------------------------------------------------------ the label files
    def label_orphans(self, files: list[str], raw: list[bytes]) -> tuple[list[str], list[bytes]]:
        """The orphan files that are label files; loose .txt files that do not look like one are skipped."""
        kept: list[str] = []
        kept_raw: list[bytes] = []
        for f, data in zip(files, raw, strict=True):
            if f in self.lay.loose and not looks_like_labels(data[:65536]):
                self.skipped.append(rel_path(f, self.lay.root))
                continue
            kept.append(f)
            kept_raw.append(data)
        return kept, kept_raw

    def batch(self, files: list[str], image_of: list[int], raw: list[bytes],
              sizes: list[Size | None]) -> tuple[pd.DataFrame, Any]:
        """Parse and convert label ``files`` (the contents ``raw``, emptied once parsed), each the label file
        of the image ``image_of`` (an index into the layout's images, or -1: no image); ``sizes``: the layout's
        images' sizes. Called once a reading: what the files decide is decided from all of them. The images
        read (those with a size, in order) and the annotation rows (``image`` indexes them; a mapping of
        columns)."""
        lay, cfg = self.lay, self.cfg
        size_ok = np.array([s is not None for s in sizes], dtype=bool)
        widths = np.array([s[0] if s is not None else 0 for s in sizes], dtype=np.int64)
        heights = np.array([s[1] if s is not None else 0 for s in sizes], dtype=np.int64)
        n_entries = len(files)
        rel_files = [rel_path(f, lay.root) for f in files]
        lines = parse_rows(raw, rel_files)
        raw.clear()
        self.report.add_read(len(lines.ncol) + len(lines.bad))
        ent_img = np.array(image_of, dtype=np.int64)
        self.orphan_entry = ent_img < 0  # label files without an image: their drops come first, as read() has them
        invalid: list[pd.DataFrame] = []  # rows that cannot be read, dropped at their file and line

        # ---- class indices and names
        unnamed: list[pd.DataFrame] = []  # class indices the names file does not name
        lines = self._drop_invalid(lines, unnamed_classes(lines, cfg.names, self._names_src()), rel_files, unnamed)
        lines = self._drop_invalid(lines, row_problems(lines), rel_files, invalid)
        n_rows = len(lines.ncol)
        ci = lines.vals[lines.first].astype(np.int64) if n_rows else np.zeros(0, dtype=np.int64)
        if cfg.names is None and n_rows:
            self.top = max(self.top, int(ci.max()) + 1)

        # ---- what each file is
        has_image = ent_img >= 0
        kinds = self._kinds(lines, n_entries)
        if n_rows and cfg.task == "pose" and cfg.kpt_shape is None:  # inferred from every pose row
            self.kpt_shape = _infer_kpt_shape(lines, rel_files)
            self.kpt_cols = int(lines.ncol[0])
        row_kind = kinds[lines.entry] if n_rows else np.zeros(0, dtype=np.int64)
        wrong = column_problems(lines, row_kind, self.kpt_shape)
        if wrong is not None:
            lines = self._drop_invalid(lines, wrong, rel_files, invalid)
            n_rows = len(lines.ncol)
            ci = ci[wrong == None]  # noqa: E711 - an object array compared element by element
            row_kind = row_kind[wrong == None]  # noqa: E711
        if lines.bad:
            invalid.append(pd.DataFrame({
                "category": None, "src_file": [rel_files[e] for e, _, _ in lines.bad],
                "src_line": np.array([ln for _, ln, _ in lines.bad], dtype=np.int64),
                "message": [m for _, _, m in lines.bad], "entry": [e for e, _, _ in lines.bad]}))
        for slot, (frames, reason) in enumerate(((unnamed, "dropped.unknown_category"), (invalid, "dropped.invalid")),
                                                3):
            if frames:
                self._defer(slot, reason, "", pd.concat(frames, ignore_index=True))

        # ---- rows that cannot be kept
        row_img = ent_img[lines.entry] if n_rows else np.zeros(0, dtype=np.int64)
        no_image = row_img < 0
        no_size = np.zeros(n_rows, dtype=bool)
        no_size[~no_image] = ~size_ok[row_img[~no_image]]
        ambiguous = (row_kind == AMBIGUOUS) & ~no_image & ~no_size
        names_arr = self.names_array()
        files_arr = np.array(rel_files, dtype=object)
        # why each image without a size has none (the one resolver's words), for its rows' drops and its note
        why_unsized = np.full(len(lay.images), "", dtype=object)
        if not size_ok.all():
            images = self.images if self.images is not None else ImageRoot(self.img_root, report=Report())
            for i in np.flatnonzero(~size_ok).tolist():
                why_unsized[i] = images.why_unsized(rel_path(lay.images[i], self.img_root), lay.images[i])
        for slot, (mask, reason, msg) in enumerate(((no_image, "dropped.no_image", "no image for this label file"),
                                                    (no_size, "dropped.no_image", "the image size cannot be read"),
                                                    (ambiguous, "dropped.ambiguous", _AMBIGUOUS_MSG))):
            if mask.any():
                rows = pd.DataFrame({"category": names_arr[ci[mask]], "src_file": files_arr[lines.entry[mask]],
                                     "src_line": lines.line[mask], "entry": lines.entry[mask]})
                if slot == 0:  # the image path looked for, per label file
                    looked = np.array([f"no image for this label file (looked for {self._looked_for(f)})"
                                       for f in files], dtype=object)
                    rows["message"] = looked[lines.entry[mask]]
                elif slot == 1:  # the image, and why it has no size
                    rows["message"] = why_unsized[row_img[mask]]
                self._defer(slot, reason, msg, rows)
        if not has_image.all():
            per_entry = np.bincount(lines.entry, minlength=n_entries)
            self.orphan_rows += [(rel_files[e], int(per_entry[e])) for e in np.flatnonzero(~has_image).tolist()]
        file_names = [rel_path(i, self.img_root) for i in lay.images]
        labelled = np.zeros(len(lay.images), dtype=bool)
        labelled[ent_img[has_image]] = True
        # one list in image order (not the unsized, then the unlabeled, then the ambiguous): the parts of a plan
        # add up to it. An ambiguous file's image has a size and a label file: one note an image at most
        notes = {i: ("unsized", rel_path(lay.images[i], lay.root), 0, str(why_unsized[i])) if not size_ok[i]
                 else ("unlabeled", file_names[i], 0, "") for i in np.flatnonzero(~(labelled & size_ok)).tolist()}
        if ambiguous.any():
            per_file = np.bincount(lines.entry[ambiguous], minlength=n_entries)
            notes.update((int(ent_img[e]), ("ambiguous", rel_files[e], int(per_file[e]), ""))
                         for e in np.flatnonzero(per_file).tolist())
        self.image_notes += [notes[i] for i in sorted(notes)]

        # ---- conversion of the kept rows
        keep = ~(no_image | no_size | ambiguous)
        before = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(size_ok, dtype=np.int64)))
        ann = convert_rows(lines, keep, row_kind, row_img, widths, heights, self.kpt_shape, n_entries)
        ann["image"] = before[row_img[keep]]
        # object Series: pandas would otherwise infer its str dtype, and the model's cast back to object makes a
        # new str per row (memory)
        ann["category"] = pd.Series(names_arr[ci[keep]], dtype=object)
        ann["src_file"] = pd.Series(files_arr[lines.entry[keep]], dtype=object)
        ann["src_line"] = lines.line[keep]
        annotations: Any = ann  # a mapping of columns: Dataset.build makes the one DataFrame (no extra copy)
        # (an infinite score is dropped by the shared clip step, for every source)

        # ---- images
        label_of_image = {i: rel_files[e] for e, i in enumerate(image_of) if i >= 0}
        kept_imgs = np.flatnonzero(size_ok).tolist()
        images = pd.DataFrame({
            "file_name": [file_names[i] for i in kept_imgs],
            "width": widths[size_ok], "height": heights[size_ok],
            "path": [lay.images[i] for i in kept_imgs],
            "attributes": [None] * len(kept_imgs),
            "src_file": [label_of_image.get(i, rel_path(lay.images[i], lay.root)) for i in kept_imgs],
        })
        return images, annotations

    def _names_src(self) -> str:
        """Where the class names come from, as a message names it."""
        src = self.cfg.names_src
        return src if src == "--names" or not src else rel_path(norm(src), self.lay.root)

    def _drop_invalid(self, lines: Lines, problem: np.ndarray | None, files: list[str],
                      into: list[pd.DataFrame]) -> Lines:
        """``lines`` without the rows that have a ``problem`` (a message, else None); those go to ``into``."""
        if problem is None:
            return lines
        bad = problem != None  # noqa: E711 - an object array compared element by element
        cls = lines.vals[lines.first[bad]]
        names = self.names_array()
        whole = (cls >= 0) & (cls == np.floor(cls)) & (cls < len(names))
        category = np.full(len(cls), None, dtype=object)
        category[whole] = names[cls[whole].astype(np.int64)]
        entry = lines.entry[bad]
        into.append(pd.DataFrame({"category": category, "src_file": np.array(files, dtype=object)[entry],
                                  "src_line": lines.line[bad], "message": problem[bad], "entry": entry}))
        return lines.keep(~bad)

    def _looked_for(self, label_file: str) -> str:
        """The image path a label file's image was looked for at (relative to the source): the one a missing
        split folder named, else the Ultralytics twin (last ``labels`` -> ``images``, any extension)."""
        looked = self.lay.looked_for.get(label_file)
        if looked is None:
            looked = stem(swap_folder(label_file, "labels", "images") or label_file) + ".*"
        return rel_path(looked, self.lay.root)

    def _defer(self, slot: int, reason: str, message: str, rows: pd.DataFrame) -> None:
        """Drops (``rows`` with the label file's ``entry``), reported in :meth:`finish` in file and line order:
        the order every split of the files into parts gives."""
        if "message" not in rows:
            rows = rows.assign(message=message)
        group = np.where(self.orphan_entry[rows["entry"].to_numpy(dtype=np.int64)], 0, 1)
        self.pending_drops.append(rows.assign(reason=reason, group=group, slot=slot))

    def _kinds(self, lines: Lines, n_entries: int) -> np.ndarray:
        """The task of each label file (``DETECT`` ... ``AMBIGUOUS``): ``cfg.task``, else the rows' own
        (:func:`.yolo_rows.file_tasks`), files of 9-11 column rows only read as polygons when every other file
        of the source is a polygon file (:meth:`polygons`), else ``AMBIGUOUS`` (dropped)."""
        cfg = self.cfg
        if cfg.task is not None:
            return np.full(n_entries, TASK_CODES[cfg.task], dtype=np.int64)
        kinds = file_tasks(lines, n_entries)
        pending = kinds == AMBIGUOUS
        decided = kinds >= 0
        decided &= ~pending
        self.decided.update(kinds[decided].tolist())
        self.n_detect += int((kinds == DETECT).sum())
        self.n_segment += int((kinds == SEGMENT).sum())
        self.n_pending += int(pending.sum())
        if self.polygons():
            kinds[pending] = SEGMENT
        return kinds

    def polygons(self) -> bool:
        """Whether files of 9-11 column rows only are polygons: when every other label file of the source is a
        polygon file (at least one). The plan's decision (``pending_polygons``, from a first pass over every
        label file) when there is one, else this reading's (the whole source: ``read()``)."""
        if self.pending_polygons is not None:
            return self.pending_polygons
        return self.decided == {SEGMENT}

    # ------------------------------------------------------------------ the end
    def _task_notes(self, *, zeros: bool = False) -> None:
        """The ``task.inferred`` notes of the column counts: the files per task, then (a tally) the files of 9-11
        column rows only read as polygons. ``zeros``: with counts of 0 too, as every part of a plan writes them,
        so that :func:`prelabel.adapters.parts.merge` adds them up where the first part has them."""
        if self.cfg.task is not None:
            return
        polygons = self.n_pending if self.polygons() else 0
        counts = {"detect": self.n_detect, "segment": self.n_segment + polygons}
        summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n or zeros)
        if summary:
            self.report.note("task.inferred", self.src, f"task inferred from the column counts: {summary} file(s)",
                             severity="info")
        if polygons or zeros:
            self.report.tally("task.inferred", self.src, _POLYGONS, (polygons,), severity="info", first=True)

    def finish(self, *, zeros: bool = False, table_notes: bool = True) -> pd.DataFrame:
        """Report the drops and notes in ``read()``'s order; the final category table. A part of a plan writes
        the task note with ``zeros``, and the category table's notes only in its last part (``table_notes``)."""
        rep, cfg = self.report, self.cfg
        for f in self.skipped:
            rep.note("file.skipped", f, "not a YOLO label file (no image of the same name)", severity="info")
        if cfg.names is None:
            rep.note("category.unnamed", self.src,
                     "no class names (data.yaml, classes.txt, obj.names): classes are named by their index",
                     severity="warning")
        if self.kpt_cols and self.kpt_shape is not None:
            k, d = self.kpt_shape
            rep.note("task.inferred", self.src, f"kpt_shape inferred as [{k}, {d}] from rows of {self.kpt_cols} "
                     "numbers; put kpt_shape in data.yaml to be sure", severity="info")
        self._task_notes(zeros=zeros)
        if self.pending_drops:
            drops = pd.concat(self.pending_drops, ignore_index=True).sort_values(
                ["group", "entry", "src_line", "slot"], kind="stable")
            rep.drop(None, drops)  # in file and line order, each row with its own reason
        self.pending_drops.clear()
        # YOLO's own image.* notes, not the resolver's rules: a label file with no image (the layout pairs files
        # by path and stem), an image with no label file (only YOLO has one annotation file an image), and an
        # image whose header gives no size (in the resolver's words, ImageRoot.why_unsized, as its dropped rows)
        fix = for_face(" (check --images DIR: the folder that holds the images)" if self.images_given
                       else " (give --images DIR: the folder that holds the images)")
        for f, n in self.orphan_rows:
            rep.note("image.missing", f, f"no image for this label file ({n} row(s) dropped){fix}" if n
                     else "no image for this (empty) label file", severity="warning" if n else "info")
        for what, f, n, why in self.image_notes:
            if what == "unsized":
                rep.note("image.missing", f, why)
            elif what == "unlabeled":
                rep.note("image.unlabeled", f, "no label file: kept with no annotations", severity="info")
            else:
                rep.note("dropped.ambiguous", f, f"{n} row(s) dropped: {_AMBIGUOUS_MSG}")
        kpt = self.kpt_shape if cfg.task == "pose" else None
        table = category_table(self.names(), cfg, kpt, rep if table_notes else Report(), self.lay.root)
        if self.images is not None:  # the resolver's tallies: closing notes, which the parts' add up to
            self.images.notes(source=self.src, end=1)
        return table


def _infer_kpt_shape(lines: Lines, files: list[str]) -> tuple[int, int]:
    """(K, d) from the value count of the pose rows ``lines`` (at least one), which must all have the same."""
    pose_cols = sorted(set(lines.ncol.tolist()))
    hint = "add kpt_shape: [K, 2 or 3] to data.yaml"
    if len(pose_cols) != 1 or pose_cols[0] < 7:
        raise ReadError(files[lines.entry[0]], f"cannot tell the keypoint layout (kpt_shape) from rows of {pose_cols} "
                        "numbers", line=int(lines.line[0]), hint=hint)
    m = pose_cols[0] - 5
    if m % 3 == 0 and m % 2 == 0:
        third = lines.vals[lines.first[:, None] + 5 + 3 * np.arange(m // 3)[None, :] + 2]
        dim = 3 if np.isin(third, (0.0, 1.0, 2.0)).all() else 2
    elif m % 3 == 0:
        dim = 3
    elif m % 2 == 0:
        dim = 2
    else:
        raise ReadError(files[lines.entry[0]], f"cannot tell the keypoint layout (kpt_shape) from rows of "
                        f"{pose_cols[0]} numbers", line=int(lines.line[0]), hint=hint)
    return m // dim, dim
