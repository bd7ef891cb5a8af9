"""YOLO / Ultralytics txt labels and predictions: detect, segment, OBB and pose, in the Ultralytics and Darknet
layouts.

What ``read(path)`` accepts (``path``):

- a **data.yaml** (or a folder holding one): ``train`` / ``val`` / ``test`` as folders, list files of images, or
  lists of either; ``path:`` is the dataset root. Paths written in the yaml or a list file are looked up under
  the yaml's folder, ``path:``, the list file's folder and ``options.images``, stripping leading components when
  the literal path is not there (``data/images/train/1.jpg`` -> ``images/train/1.jpg``, ``../train/images`` ->
  ``train/images``); they never lead outside those roots. Several splits make one dataset.
- an **obj.data** (Darknet, or a folder holding one): its ``train`` / ``valid`` / ``test`` list files, names
  from its ``names`` file.
- a **folder with images**: every image under it (recursively, hidden folders skipped); Ultralytics
  ``images/`` + ``labels/``, Roboflow ``train/images`` + ``train/labels`` and flat folders (image and .txt
  side by side) all work.
- a **labels folder** (no images in it): label files under it, images from ``options.images`` or the sibling
  images folder (the last ``labels`` component becomes ``images``; ``data/labels_x`` -> ``data/images``),
  paired by relative path and stem.
- one **label file** (images as for a labels folder).

An image's label file follows Ultralytics: the last ``/images/`` of its path becomes ``/labels/`` and the extension
after the last dot becomes ``.txt`` (``a.b.jpg`` -> ``a.b.txt``); when that file is absent, the ``.txt`` next to
the image. Images with no label file are kept with no annotations (``image.unlabeled``, info). A label file with
no image (only looked for where a folder is walked, not for list files) has its rows dropped
(``dropped.no_image`` naming the image path looked for, with ``image.missing`` for the file; a data.yaml split
whose image folder is missing has its ``labels`` twin read the same way): normalized coordinates need the image size, which
comes from the image header (YOLO records none), read through the one image resolver
(:class:`prelabel.images.ImageRoot`: headers in threads, EXIF orientation applied; one ``image.size_from_header``
note, info, counts them at the first image). An image whose header gives no size is left out, its rows dropped
(``dropped.no_image``, with ``image.missing`` naming the file).

``file_name`` is the image path relative to the images root, with forward slashes: ``options.images`` when every
image is under it, else ``<root>/images``, else ``<root>`` (the yaml's ``path:``, the folder given), else the
folder common to all images; so ``images/train/1.jpg`` is ``train/1.jpg``. ``src_file`` is the label file relative
to the source (the folder given, or the folder of the file given), ``src_line`` its 1-based line.

Class names: ``options.names``, else data.yaml (``names`` list or dict, ``nc``; read with no YAML booleans, so
``[on, off, yes, no]`` stay four names), else the first ``data.yaml``, ``classes.txt``, ``obj.names`` or
``obj.data`` in the source folder, its ``labels/`` (LabelImg), the labels folder or their parents. A class
index with no name is a ReadError naming the file and line. With no names file at all, classes are named by
their index (``"0"``, ``"1"``, ...; note ``category.unnamed``).

The task (``options.task``, else ``pose`` when data.yaml has ``kpt_shape``, else from the files) decides what the
columns mean. ``N`` is the number of values on a row, class included:

======== ============================ ================================================================
task     row                          trailing columns
======== ============================ ================================================================
detect   ``cls cx cy w h``            N=6: one extra, N=7: score then track id
segment  ``cls x1 y1 ... xn yn``      N even: the last value is a score (a track id is not recognised)
obb      ``cls x1 y1 ... x4 y4``      N=10: one extra, N=11: score then track id
pose     ``cls cx cy w h`` + K points base+1: one extra, base+2: score then track id (base = 5 + K*d)
======== ============================ ================================================================

One extra column is a score, unless every value of it in the file is a finite whole number and one is above 1:
then it is a track id (Ultralytics ``save_txt`` while tracking without ``save_conf``). Track ids go to
``attributes["track_id"]``. A segment file may hold rows of any length; its 5- and 6-column rows are boxes.

Without a task, each file is judged by all of its rows together, never row by row. Row lengths 5-6 mean detect,
8 and 12+ segment, 9-11 OBB or segment, 7 detect with a score and a track id when every row's 6th value is in
[0, 1] and 7th a whole number, else a 3-point polygon. A file of 9-11 column rows only is ambiguous (a 4-point
polygon or an oriented box): it is read as segment when the rest of the dataset is segment (a second
``task.inferred`` note counting them), otherwise its rows are dropped (``dropped.ambiguous``, f"pass {option('task', 'segment')} or {option('task', 'obb')}").
A file mixing box rows and polygon rows is read as segment with box rows. Pose is never inferred from column
counts; with the pose task but no ``kpt_shape`` (data.yaml or ``options.extra["kpt_shape"]``), ``K`` and ``d``
are inferred from label rows (no score) and noted.

Pixels: box ``x = cx*W - w*W/2``, ``y = cy*H - h*H/2``, ``w*W``, ``h*H``. Polygons (segment, and the 4 corners of
an OBB) become one float64 polygon ``[x1*W, y1*H, ...]`` with the enclosing box. Coordinates outside [0, 1] are
kept (the clipping step deals with them), as are NaN and inf (the clipping step drops them). Keypoints become a
(K, 3) array in pixels: with 2 values per point ``v = 0`` when ``x < 0`` or ``y < 0`` or ``x = y = 0`` (how
missing points are written), else ``v = 2``; with 3 values the third is the visibility (0/1/2) in label files,
but a confidence in prediction files (a file with a score column, or third values other than 0, 1, 2): then
``v = 2`` when the confidence is above 0.5 else ``v = 1``, and the confidences go to
``attributes["keypoint_scores"]``. A ``v = 0`` point is written as ``0, 0, 0`` (COCO). Pose categories get
keypoint names from data.yaml ``kpt_names`` (a list, or a dict per class), else ``kp0 .. kpK-1``, and a skeleton
only when data.yaml has ``skeleton`` (0-based pairs are made 1-based; pairs reaching ``K`` are taken as 1-based).

``options.extra`` keys: ``data_yaml`` (a data.yaml to take names / kpt_shape / kpt_names from), ``kpt_shape``.

Reading in parts: :func:`plan` cuts the source into runs of its images in output order (the layout, names and
images root found once, there), :func:`read_part` reads one, and the engine (:mod:`prelabel.engine`) reads the
parts in processes and merges them in plan order into ``read()``'s dataset and report; a streamed conversion
is those parts in turn (``engine.PartStream``: bounded memory on huge datasets). What ``read()`` decides from
every label file the plan decides once: whether files of 9-11 column rows only are polygons (a first pass over
the label files, stopping at the first detect file; a part raises ``NeedsWholeRead`` only when that pass could
not read a file); pose without a ``kpt_shape`` is one part. Without names, a part's
category table names the classes up to its own largest index, and the parts' tables joined are ``read()``'s.

The work is done by :mod:`.yolo_layout` (the layout and the config), :mod:`.yolo_rows` (label files parsed
into rows, and their problems), :mod:`.yolo_run` (one reading of the label files) and :mod:`.yolo_geometry`
(rows to pixels, the category table).

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from prelabel.report import Report
    >>> from prelabel.adapters.base import ReadOptions
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (640, 480)).save(d / "a.jpg")
    >>> _ = (d / "a.txt").write_text("0 0.5 0.5 0.25 0.5\\n")
    >>> _ = (d / "classes.txt").write_text("cat\\n")
    >>> ds = read(d, options=ReadOptions(), report=Report())
    >>> ds.images.loc[0, "file_name"], ds.annotations.loc[0, "category"], ds.boxes.tolist()
    ('a.jpg', 'cat', [[240.0, 120.0, 160.0, 240.0]])
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import ReadError, option
from ..gcpause import gc_paused
from ..model import Dataset
from ..paths import moved
from ..report import Diagnostic, Report
from . import names as names_mod
from .base import NeedsWholeRead, ReadOptions
from .parts import FilesPart
from .yolo_layout import (
    DATA_YAMLS,
    NOT_LABELS,
    SEP,
    TASK_CODES,
    TASKS,
    Config,
    Layout,
    common_folder,
    find_layout,
    head_bytes,
    head_text,
    images_root,
    read_config,
    yaml_keys,
)
from .yolo_rows import (
    DETECT,
    SEGMENT,
    column_counts,
    file_tasks,
    looks_like_labels,
    parse_rows,
    valid_rows,
)
from .yolo_run import Run

__all__ = ["DESCRIPTION", "NAME", "TASKS", "auto_workers", "detect", "plan", "read", "read_part"]

NAME = "yolo"
# YOLO records no image size: every size comes from the image's header (nothing for check_sizes to check)
SIZES_FROM_HEADERS = True
DESCRIPTION = "YOLO / Ultralytics txt (detect, segment, OBB, pose; labels and predictions), Darknet obj.data"

KIND_NAMES = {code: name for name, code in TASK_CODES.items()}


# ============================================================================================ detection
def detect(path: Path) -> float:
    """How sure we are that ``path`` is a YOLO source (0 = not YOLO, 1 = certainly)."""
    p = Path(path)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".data":
            return 0.95 if "names" in names_mod.parse_obj_data(head_text(p)) or p.name == "obj.data" else 0.3
        if suffix in (".yaml", ".yml"):
            keys = yaml_keys(p)
            if keys & {"names", "nc"} and keys & {"train", "val", "path", "kpt_shape"}:
                return 0.95
            return 0.5 if keys & {"names", "nc"} else 0.0
        if suffix == ".txt":
            return 0.6 if looks_like_labels(head_bytes(p)) else 0.0
        return 0.0
    if not p.is_dir():
        return 0.0
    try:
        top = {e.name: e for e in os.scandir(p)}
    except OSError:
        return 0.0
    for name in DATA_YAMLS:
        if name in top and yaml_keys(p / name) & {"names", "nc", "train"}:
            return 0.95
    if "obj.data" in top:
        return 0.95
    has_names = "obj.names" in top or "classes.txt" in top
    yamls = [n for n in top if n.lower().endswith((".yaml", ".yml"))]
    if any(yaml_keys(p / n) & {"names", "nc"} for n in yamls[:5]):
        has_names = True
    for sub in ("labels", "obj_train_data", "train/labels", "valid/labels", "val/labels"):
        if (p / sub).is_dir() and _some_label_file(p / sub, any_txt=has_names):
            return 0.9 if has_names else 0.85
    if _some_label_file(p, depth=0):
        return 0.85 if has_names else 0.6
    if p.name.lower().startswith("labels") and _some_label_file(p, depth=2):
        return 0.8
    return 0.0


def _some_label_file(folder: Path, *, depth: int = 2, budget: int = 200, any_txt: bool = False) -> bool:
    """Whether ``folder`` (searched ``depth`` levels down, a bounded number of entries) holds a label file.

    With ``any_txt``, any non-empty .txt file counts (a names file beside it already says YOLO: a malformed
    label file should then be read, and reported with its line, rather than make the source unrecognisable).
    """
    seen = 0
    stack = [(folder, 0)]
    while stack:
        d, level = stack.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            seen += 1
            if seen > budget:
                return False
            if e.is_file() and e.name.lower().endswith(".txt") and e.name.lower() not in NOT_LABELS:
                head = head_bytes(Path(e.path))
                if head.strip() and (any_txt or looks_like_labels(head)):
                    return True
            elif e.is_dir() and level < depth and not e.name.startswith("."):
                stack.append((Path(e.path), level + 1))
    return False


def _read_one(p: str) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError as e:
        raise ReadError(p, f"cannot read: {e.strerror or e}") from None


def _read_files(paths: list[str], progress: Callable[[int, int], None] | None = None) -> list[bytes]:
    if progress is not None:  # options.extra["progress"]: the pipeline's per-file count, in runs of 500
        progress(0, len(paths))
        out: list[bytes] = []
        for a in range(0, len(paths), 500):
            out.extend(_read_one(p) for p in paths[a:a + 500])
            progress(len(out), len(paths))
        return out
    return [_read_one(p) for p in paths]  # sequential: faster than threads for small files in the page cache


# ============================================================================================ reading
def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a YOLO source (see the module docstring) into a Dataset; count, drop and note into ``report``."""
    p = Path(path)
    if not p.exists():
        raise ReadError(str(p), "no such file or folder")
    with gc_paused():
        lay = find_layout(p, options, report)
        return _read(lay, read_config(lay, options), options, report, p)


def _read(lay: Layout, cfg: Config, options: ReadOptions, report: Report, src: str | Path,
          part: _PartPlan | None = None) -> Dataset:
    """Every label file in one batch: the images' label files in image order, then the orphans. ``part``: the
    plan's context when this is one part of a plan (``lay`` its part of the layout)."""
    # a part's images root is the plan's, found from every image of the source
    img_root = images_root(lay, options) if part is None else lay.image_roots[0]
    run = Run(lay, cfg, options, report, str(src), img_root=img_root,
              pending_polygons=None if part is None else part.polygons)
    several = part is not None and part.n_parts > 1
    sizes = run.sizes()
    files = [lab for lab in lay.labels if lab is not None]
    image_of = [i for i, lab in enumerate(lay.labels) if lab is not None]
    raw = _read_files(files, options.extra.get("progress") if options.extra else None)
    orphans, orphan_raw = run.label_orphans(lay.orphans, _read_files(lay.orphans))
    files += orphans
    image_of += [-1] * len(orphans)
    raw += orphan_raw
    del orphan_raw
    images, annotations = run.batch(files, image_of, raw, sizes)
    if several and run.n_pending and part is not None and part.polygons is None:  # (the plan's pass failed)
        raise NeedsWholeRead("label files of 9-11 column rows only (4-point polygons or oriented boxes) are read "
                             "as polygons when every other label file of the source holds polygons, else dropped: "
                             f"one part cannot tell (pass {option('task', 'segment')} or {option('task', 'obb')})")
    categories = run.finish(zeros=several, table_notes=part is None or part.last)
    return Dataset.build(images=images, categories=categories, annotations=annotations, report=run.report)


# ============================================================================================ parts
@dataclass(frozen=True)
class _PartPlan:
    """What one part of :func:`plan` needs besides its files, decided once for the whole source: the layout's
    paths as planned under ``base`` (a part whose ``source`` says another folder reads them there: its files
    were moved, e.g. to a Dask worker), the images root, the config, and the layout's notes (first part)."""

    base: str
    src: str
    root: str
    img_root: str
    images: tuple[str, ...]
    labels: tuple[str | None, ...]
    orphans: tuple[str, ...]
    loose: frozenset[str]
    looked_for: tuple[tuple[str, str], ...]
    cfg: Config
    notes: tuple[Diagnostic, ...]
    n_parts: int
    last: bool
    polygons: bool | None = None  # files of 9-11 column rows only are polygons (None: undecided, see plan)


FIRST_PASS_FILES = (256, 4096)  # the first pass's runs of label files: the first run, the largest
FIRST_PASS_BYTES = 16 << 20     # ... and a run's bytes at most (big polygon files: the client's peak)


def _pending_polygons(lay: Layout, cfg: Config) -> bool | None:
    """Whether files of 9-11 column rows only are read as polygons (no label file of the source is a detect
    file, and one is a polygon file), decided as :func:`read` decides it, for a plan whose parts cannot: a first
    pass over the layout's label files (those :func:`read` reads: the images', then the orphans that look like
    label files), a run of files at a time (256, doubling up to 4,096; 16 MB at most), stopping at the first detect file (then
    they are not). The values on each row are counted, not parsed (:func:`.yolo_rows.column_counts`); only a
    file that may decide is parsed and judged as :func:`read` judges it (:func:`.yolo_rows.parse_rows`,
    :func:`.yolo_rows.valid_rows`, :func:`.yolo_rows.file_tasks`): one with a row of 5-7 values (it may be a
    detect file), and, until a polygon file is found, one with a row of 7, 8 or 12 or more. A file of rows of
    9-11 values only (and rows of fewer than 5, never valid) can be neither, whatever its values. None when a
    file cannot be read or parsed (the parts then leave the decision to a whole read, whose error is its own).

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> for n, row in enumerate(["0 .1 .1 .3 .1 .3 .3 .1 .3", "0 .1 .1 .3 .1 .2 .3"]):
    ...     _ = (d / f"{n}.txt").write_text(row + "\\n")
    >>> lay = Layout(root=str(d), images=["0.png", "1.png"], labels=[str(d / "0.txt"), str(d / "1.txt")])
    >>> cfg = read_config(lay, ReadOptions())
    >>> _pending_polygons(lay, cfg), _pending_polygons(replace(lay, labels=[str(d / "0.txt"), None]), cfg)
    (True, False)
    """
    files = [lab for lab in lay.labels if lab is not None] + list(lay.orphans)
    step, segment, a = FIRST_PASS_FILES[0], False, 0
    try:
        while a < len(files):
            run: list[str] = []
            raw: list[bytes] = []
            size = 0
            while a < len(files) and len(run) < step and size < FIRST_PASS_BYTES:
                run.append(files[a])
                raw.append(_read_one(files[a]))
                size += len(raw[-1])
                a += 1
            kept = [(f, data) for f, data in zip(run, raw, strict=True)
                    if f not in lay.loose or looks_like_labels(data[:65536])]  # as Run.label_orphans keeps them
            del raw
            entry, ncol = column_counts([data for _, data in kept])
            maybe_detect = np.bincount(entry[(ncol >= 5) & (ncol <= 7)], minlength=len(kept)) > 0
            maybe_polygons = np.bincount(entry[(ncol == 7) | (ncol == 8) | (ncol >= 12)], minlength=len(kept)) > 0
            parse = np.flatnonzero(maybe_detect | (maybe_polygons & (not segment))).tolist()
            if parse:
                lines = parse_rows([kept[i][1] for i in parse], [kept[i][0] for i in parse])
                lines = lines.keep(valid_rows(lines, cfg.names))
                tasks = file_tasks(lines, len(parse))
                if (tasks == DETECT).any():
                    return False
                segment = segment or bool((tasks == SEGMENT).any())
            del kept
            step = min(2 * step, FIRST_PASS_FILES[1])
    except ReadError:
        return None
    return segment


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[FilesPart]:
    """The source cut into ``parts`` contiguous runs of its images in output order (label files with no image go
    with the first run, as ``read()`` reads them before any image's rows are kept): each read by
    :func:`read_part`, their datasets merged in this order (:func:`prelabel.adapters.parts.merge`) give
    :func:`read`'s, report included. The layout (every image and its label file, the class names, the images
    root) is found once, here. A part's ``files`` are the images, label files and orphan label files it reads,
    relative to its ``source`` (the folder all of them are under). One part when the task is pose without a
    ``kpt_shape`` (inferred from every pose row). Whether label files of 9-11 column rows only are polygons
    (which depends on every other file) is decided here (:func:`_pending_polygons`) and carried in the parts'
    context; when it cannot be (a file not read), a part holding such files raises :class:`NeedsWholeRead`.

    >>> parts = plan(Path("sample_data/yolo"), options=ReadOptions(), parts=2)
    >>> [sum(f.startswith("images/") for f in p.files) for p in parts]
    [2, 3]
    """
    p = Path(path)
    if not p.exists():
        raise ReadError(str(p), "no such file or folder")
    report = Report()
    with gc_paused():
        lay = find_layout(p, options, report)
        cfg = read_config(lay, options)
    img_root = images_root(lay, options)
    n = 1 if cfg.task == "pose" and cfg.kpt_shape is None else max(1, min(int(parts), len(lay.images)))
    labelled = [lab for lab in lay.labels if lab is not None]
    base = common_folder([os.path.join(lay.root, "x"), *([os.path.join(img_root, "x")] if lay.images else []),
                          *lay.images, *labelled, *lay.orphans])
    prefix = base.rstrip(SEP) + SEP if base else ""

    def rel(f: str) -> str:
        return (f[len(prefix):] if prefix and f.startswith(prefix) else f).replace(SEP, "/")

    looked_for = tuple(sorted(lay.looked_for.items()))
    # files of 9-11 column rows only: decided here, once, for the parts (which cannot tell) when no task is given
    polygons = _pending_polygons(lay, cfg) if cfg.task is None and n > 1 else None
    cuts = [len(lay.images) * k // n for k in range(n + 1)]
    out: list[FilesPart] = []
    for k, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True)):
        first = k == 0
        images, labels = tuple(lay.images[a:b]), tuple(lay.labels[a:b])
        orphans = tuple(lay.orphans) if first else ()
        files = [*images, *(lab for lab in labels if lab is not None), *orphans]
        ctx = _PartPlan(base=base, src=str(p), root=lay.root, img_root=img_root, images=images, labels=labels,
                        orphans=orphans, loose=frozenset(lay.loose) if first else frozenset(),
                        looked_for=looked_for if first else (), cfg=cfg,
                        notes=tuple(report.diagnostics) if first else (), n_parts=n, last=k == n - 1,
                        polygons=polygons)
        out.append(FilesPart(source=base, files=tuple(rel(f) for f in files), context=ctx))
    return out


def read_part(part: FilesPart, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`, read as :func:`read` reads its images and label files (a part without the plan's
    context, ``FilesPart(source=path, files=())``: the whole source ``path``)."""
    ctx = part.context
    if not isinstance(ctx, _PartPlan):
        return read(Path(part.source), options=options, report=Report())
    mv = partial(moved, old=ctx.base, new=part.source)  # the plan's paths where this part's files are
    report = Report()
    report.diagnostics = [Diagnostic(d.code, mv(d.source), d.message, d.severity) for d in ctx.notes]
    lay = Layout(root=mv(ctx.root), images=[mv(f) for f in ctx.images],
                 labels=[None if f is None else mv(f) for f in ctx.labels], orphans=[mv(f) for f in ctx.orphans],
                 loose={mv(f) for f in ctx.loose}, image_roots=[mv(ctx.img_root)],
                 looked_for={mv(k): mv(v) for k, v in ctx.looked_for})
    cfg = ctx.cfg
    if ctx.base and part.source != ctx.base:
        cfg = replace(cfg, names_src=mv(cfg.names_src), yaml_file=None if cfg.yaml_file is None else mv(cfg.yaml_file))
    with gc_paused():
        return _read(lay, cfg, options, report, mv(ctx.src), ctx)


PARALLEL_MIN_FILES = 4000  # label files and images: fewer and a second process costs more than it saves


def auto_workers(path: Path, *, options: ReadOptions) -> int:
    """Processes worth reading ``path`` with when none are asked for: 2 for a dataset of at least
    PARALLEL_MIN_FILES files (the engine caps it by the cores), else 1.

    >>> auto_workers(Path("sample_data/yolo"), options=ReadOptions())
    1
    """
    root = str(path if Path(path).is_dir() else Path(path).parent)
    seen = 0
    stack = [root]
    while stack and seen < PARALLEL_MIN_FILES:
        with os.scandir(stack.pop()) as entries:
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append(e.path)
                else:
                    seen += 1
    return 2 if seen >= PARALLEL_MIN_FILES else 1
