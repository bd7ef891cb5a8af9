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
comes from the image header (:mod:`prelabel.imagesize`, EXIF orientation applied).

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
polygon or an oriented box): it is read as segment when the rest of the dataset is segment (note
``task.inferred``), otherwise its rows are dropped (``dropped.ambiguous``, f"pass {option('task', 'segment')} or {option('task', 'obb')}").
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

:func:`iter_chunks` gives ``read()``'s dataset and report in chunks of whole images, reading the label files and
image headers batch by batch (bounded memory on huge datasets). What ``read()`` decides from every label file
(the class count without names, the fate of files of 9-11 column rows only, an inferred ``kpt_shape``) is
decided from the files read so far; ``NeedsWholeRead`` is raised when a later file would change it.

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
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ReadError, UsageError, for_face, option
from ..gcpause import gc_paused
from ..imagesize import image_sizes
from ..junk import Skips
from ..model import Dataset
from ..paths import IMAGE_EXTENSIONS, moved
from ..report import Diagnostic, Report
from . import names as names_mod
from .base import DEFAULT_CHUNK_ROWS, NeedsWholeRead, ReadOptions
from .parts import FilesPart

__all__ = ["DESCRIPTION", "NAME", "TASKS", "detect", "iter_chunks", "plan", "read", "read_part"]

NAME = "yolo"
# YOLO records no image size: every size comes from the image's header (nothing for check_sizes to check)
SIZES_FROM_HEADERS = True
DESCRIPTION = "YOLO / Ultralytics txt (detect, segment, OBB, pose; labels and predictions), Darknet obj.data"
PARALLEL_READ = True  # image headers are read by threads: the pipeline does not read it in a second process
TASKS = ("detect", "segment", "obb", "pose")

_SEP = os.sep
_IMG_EXT = frozenset(IMAGE_EXTENSIONS)
# .txt files that are never label files (names and image lists)
_NOT_LABELS = frozenset({"classes.txt", "train.txt", "val.txt", "valid.txt", "test.txt", "obj.names",
                         "requirements.txt", "readme.txt", "license.txt"})
_DATA_YAMLS = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")
_BOM = b"\xef\xbb\xbf"
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True  # the bytes bytes.split() splits on
_D, _S, _O = 1, 2, 4                  # candidate task bits: detect, segment, obb
_DETECT, _SEGMENT, _OBB, _POSE, _AMBIGUOUS = 0, 1, 2, 3, 4
KIND_NAMES = {_DETECT: "detect", _SEGMENT: "segment", _OBB: "obb", _POSE: "pose"}
_AMBIGUOUS_MSG = ("9 to 11 columns: a 4-point polygon or an oriented box; "
                  f"pass {option('task', 'segment')} or {option('task', 'obb')}")


# ============================================================================================ detection
def detect(path: Path) -> float:
    """How sure we are that ``path`` is a YOLO source (0 = not YOLO, 1 = certainly)."""
    p = Path(path)
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".data":
            return 0.95 if "names" in names_mod.parse_obj_data(_head_text(p)) or p.name == "obj.data" else 0.3
        if suffix in (".yaml", ".yml"):
            keys = _yaml_keys(p)
            if keys & {"names", "nc"} and keys & {"train", "val", "path", "kpt_shape"}:
                return 0.95
            return 0.5 if keys & {"names", "nc"} else 0.0
        if suffix == ".txt":
            return 0.6 if _looks_like_labels(_head_bytes(p)) else 0.0
        return 0.0
    if not p.is_dir():
        return 0.0
    try:
        top = {e.name: e for e in os.scandir(p)}
    except OSError:
        return 0.0
    for name in _DATA_YAMLS:
        if name in top and _yaml_keys(p / name) & {"names", "nc", "train"}:
            return 0.95
    if "obj.data" in top:
        return 0.95
    has_names = "obj.names" in top or "classes.txt" in top
    yamls = [n for n in top if n.lower().endswith((".yaml", ".yml"))]
    if any(_yaml_keys(p / n) & {"names", "nc"} for n in yamls[:5]):
        has_names = True
    for sub in ("labels", "obj_train_data", "train/labels", "valid/labels", "val/labels"):
        if (p / sub).is_dir() and _some_label_file(p / sub, any_txt=has_names):
            return 0.9 if has_names else 0.85
    if _some_label_file(p, depth=0):
        return 0.85 if has_names else 0.6
    if p.name.lower().startswith("labels") and _some_label_file(p, depth=2):
        return 0.8
    return 0.0


def _head_bytes(p: Path, n: int = 4096) -> bytes:
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def _head_text(p: Path) -> str:
    return _head_bytes(p, 65536).decode("utf-8", "replace")


def _yaml_keys(p: Path) -> set[str]:
    import yaml

    try:
        doc = yaml.safe_load(_head_text(p))
    except yaml.YAMLError:
        return set()
    return {str(k) for k in doc} if isinstance(doc, dict) else set()


def _looks_like_labels(data: bytes) -> bool:
    """True when the first non-empty line is a class index and at least 4 numbers (an empty file is True)."""
    if data.startswith(_BOM):
        data = data[3:]
    for line in data.splitlines()[:50]:
        toks = line.split()
        if not toks:
            continue
        if len(toks) < 5:
            return False
        try:
            vals = [float(t) for t in toks]
        except ValueError:
            return False
        return vals[0] >= 0 and vals[0] == int(vals[0])
    return not data.strip()


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
            if e.is_file() and e.name.lower().endswith(".txt") and e.name.lower() not in _NOT_LABELS:
                head = _head_bytes(Path(e.path))
                if head.strip() and (any_txt or _looks_like_labels(head)):
                    return True
            elif e.is_dir() and level < depth and not e.name.startswith("."):
                stack.append((Path(e.path), level + 1))
    return False


# ============================================================================================ layout
@dataclass
class _Layout:
    root: str                                            # src_file is relative to this
    images: list[str] = field(default_factory=list)      # image files, output order
    labels: list[str | None] = field(default_factory=list)  # the label file of each image
    orphans: list[str] = field(default_factory=list)     # label files with no image
    loose: set[str] = field(default_factory=set)         # orphans that may not be label files at all
    image_roots: list[str] = field(default_factory=list)  # file_name roots, in preference order
    config_dirs: list[str] = field(default_factory=list)  # where names files / data.yaml are looked for
    yaml_file: str | None = None
    yaml_doc: dict[str, Any] | None = None
    names: list[str] | None = None
    names_src: str | None = None
    claimed: set[str] = field(default_factory=set)       # label files paired with an image
    orphan_set: set[str] = field(default_factory=set)
    walks: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # folder walks, done once
    skips: Skips = field(default_factory=Skips)               # junk next to the data, names not UTF-8
    looked_for: dict[str, str] = field(default_factory=dict)  # orphan label file -> the image path looked for



def _norm(p: str | Path) -> str:
    return os.path.normpath(os.fspath(p))


def _walk(root: str, lay: _Layout) -> tuple[list[str], list[str]]:
    """(images, .txt files) under ``root``, sorted, hidden folders skipped, symlinked folders followed once."""
    cached = lay.walks.get(root)
    if cached is not None:
        return cached
    images: list[str] = []
    txts: list[str] = []
    seen: set[str] = set()
    for d, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(x for x in dirs if lay.skips.keep(d, x))
        prefix = d + _SEP
        for f in files:
            if not lay.skips.keep(d, f):
                continue
            dot = f.rfind(".")
            if dot <= 0:
                continue
            ext = f[dot:].lower()
            if ext in _IMG_EXT:
                images.append(prefix + f)
            elif ext == ".txt" and f.lower() not in _NOT_LABELS:
                txts.append(prefix + f)
    images.sort()
    txts.sort()
    lay.walks[root] = (images, txts)
    return images, txts


def _stem(path: str) -> str:
    """``path`` without the extension of its last component."""
    dot = path.rfind(".")
    return path[:dot] if dot > path.rfind(_SEP) else path


def _img2label(img: str) -> str:
    """Ultralytics: the last ``/images/`` becomes ``/labels/``, the extension becomes ``.txt``."""
    key = f"{_SEP}images{_SEP}"
    i = img.rfind(key)
    if i >= 0:
        img = f"{img[:i]}{_SEP}labels{_SEP}{img[i + len(key):]}"
    return _stem(img) + ".txt"


def _beside(img: str) -> str:
    return _stem(img) + ".txt"


def _labels_dir_of(images_dir: str) -> str | None:
    s = images_dir + _SEP
    key = f"{_SEP}images{_SEP}"
    i = s.rfind(key)
    if i < 0:
        return None
    return _norm(f"{s[:i]}{_SEP}labels{_SEP}{s[i + len(key):]}")


def _sibling_images(labels_dir: str) -> str | None:
    parts = Path(labels_dir).parts
    if "labels" in parts:
        i = len(parts) - 1 - parts[::-1].index("labels")
        cand = os.path.join(*parts[:i], "images", *parts[i + 1:])
        if os.path.isdir(cand):
            return _norm(cand)
    cand = os.path.join(os.path.dirname(labels_dir), "images")
    if os.path.isdir(cand) and _norm(cand) != _norm(labels_dir):
        return _norm(cand)
    parent = os.path.dirname(labels_dir)   # runs/detect/predict: the images beside labels/
    if os.path.basename(labels_dir) == "labels" and parent and any(
            os.path.splitext(e)[1].lower() in _IMG_EXT for e in os.listdir(parent)):
        return _norm(parent)
    return None


def _parents(p: str, levels: int) -> list[str]:
    out = [p]
    for _ in range(levels):
        parent = os.path.dirname(out[-1])
        if not parent or parent == out[-1]:
            break
        out.append(parent)
    return out


def _label_for(img: str, have: set[str]) -> str | None:
    """The label file of an image: the Ultralytics images/ -> labels/ twin, else the .txt beside it, else the
    one in ``labels/`` beside it (an Ultralytics ``runs/detect/predict`` folder: rendered images, ``labels/``)."""
    beside_dir = os.path.join(os.path.dirname(img), "labels", os.path.basename(_stem(img)) + ".txt")
    for cand in (_img2label(img), _beside(img), _norm(beside_dir)):
        if cand in have:
            return cand
    return None


def _pair_walked(images: list[str], txts: list[str], lay: _Layout) -> None:
    """Pair walked images with walked .txt files; the rest of the .txt files are orphans."""
    have = set(txts)
    claimed: set[str] = set()
    for img in images:
        lab = _label_for(img, have)
        lay.images.append(img)
        lay.labels.append(lab)
        if lab is not None:
            claimed.add(lab)
    for t in txts:
        if t not in claimed:
            lay.orphans.append(t)
            if f"{_SEP}labels{_SEP}" not in t:
                lay.loose.add(t)


def _from_folder(folder: str, options: ReadOptions, lay: _Layout) -> _Layout:
    images, txts = _walk(folder, lay)
    if images:
        _pair_walked(images, txts, lay)
        lay.image_roots += [os.path.join(folder, "images"), folder]
        # LabelImg keeps classes.txt in labels/ beside images/
        lay.config_dirs += [*_parents(folder, 1), os.path.join(folder, "labels")]
        return lay
    images_root = _norm(options.images) if options.images is not None else _sibling_images(folder)
    if images_root is None and images:
        images_root = folder
    return _from_labels(folder, txts, images_root, lay)


def _from_labels(labels_root: str, txts: list[str], images_root: str | None, lay: _Layout) -> _Layout:
    """Label files under ``labels_root`` paired with images under ``images_root`` by relative path and stem."""
    by_stem: dict[str, str] = {}
    if images_root is not None and os.path.isdir(images_root):
        imgs, _ = _walk(images_root, lay)
        n = len(images_root) + 1
        for im in imgs:
            by_stem.setdefault(_stem(im[n:]), im)
        lay.image_roots.append(images_root)
    labelled: dict[str, str] = {}
    n = len(labels_root) + 1
    for t in txts:
        img = by_stem.get(_stem(t[n:]))
        if img is None or img in labelled:
            lay.orphans.append(t)
        else:
            labelled[img] = t
    for img in sorted(by_stem.values()):
        lay.images.append(img)
        lay.labels.append(labelled.get(img))
    lay.config_dirs += _parents(labels_root, 2)
    if images_root is not None:
        lay.config_dirs += _parents(images_root, 1)
    return lay


class _Locator:
    """``names.locate`` with a memory of the last successful (components stripped, root) for long lists."""

    def __init__(self, roots: Iterable[str]) -> None:
        self.roots = list(dict.fromkeys(r for r in roots if r))
        self.last: tuple[int, str] | None = None

    def __call__(self, name: str) -> str | None:
        parts = names_mod.split_parts(name)
        if self.last is not None:
            k, root = self.last
            if k < len(parts) and ".." not in parts[k:]:
                cand = os.path.join(root, *parts[k:])
                if os.path.exists(cand):
                    return _norm(cand)
        for k in range(len(parts)):
            if ".." in parts[k:]:
                continue
            for root in self.roots:
                cand = os.path.join(root, *parts[k:])
                if os.path.exists(cand):
                    self.last = (k, root)
                    return _norm(cand)
        return None


def _list_file_images(list_file: str, roots: list[str], report: Report) -> list[str]:
    try:
        text = Path(list_file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ReadError(list_file, f"cannot read the image list: {e}") from None
    loc = _Locator([os.path.dirname(list_file), *roots])
    out: list[str] = []
    missing = 0
    first_missing = ""
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        found = loc(entry)
        if found is None or not os.path.isfile(found):
            missing += 1
            first_missing = first_missing or entry
            continue
        out.append(found)
    if missing:
        report.note("image.missing", list_file,
                    f"{missing} listed image(s) not found (first: {first_missing!r})")
    return out


def _add_listed(images: list[str], lay: _Layout, seen: set[str]) -> None:
    for img in images:
        if img in seen:
            continue
        seen.add(img)
        lab: str | None = None
        for cand in (_img2label(img), _beside(img)):
            if os.path.isfile(cand):
                lab = cand
                break
        lay.images.append(img)
        lay.labels.append(lab)
        if lab is not None:
            lay.claimed.add(lab)


def _add_dir_split(d: str, lay: _Layout, seen: set[str], pending: list[str]) -> None:
    images, txts = _walk(d, lay)
    labels_dir = _labels_dir_of(d)
    if labels_dir is not None and os.path.isdir(labels_dir) and labels_dir != d:
        txts = txts + _walk(labels_dir, lay)[1]
    have = set(txts)
    for img in images:
        if img in seen:
            continue
        seen.add(img)
        lab = _label_for(img, have)
        lay.images.append(img)
        lay.labels.append(lab)
        if lab is not None:
            lay.claimed.add(lab)
    pending.extend(txts)


def _missing_split(entry: str, root: str, loc: _Locator, lay: _Layout, pending: list[str], report: Report,
                   where: str) -> None:
    """A split whose image folder is not there: its label files (the folder with ``images`` turned into
    ``labels``) still enter the ledger, as orphans whose rows are dropped with the image path looked for."""
    looked = os.path.join(root, *names_mod.split_parts(entry))
    parts = names_mod.split_parts(entry)
    labels_dir: str | None = None
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        found = loc("/".join([*parts[:i], "labels", *parts[i + 1:]]))
        labels_dir = found if found is not None and os.path.isdir(found) else None
    txts = _walk(labels_dir, lay)[1] if labels_dir is not None else []
    report.note("image.missing", where, f"image folder {entry!r} not found (looked for {_rel(looked, lay.root)})"
                + (f"; the {len(txts)} label file(s) of {_rel(labels_dir, lay.root)} have no image"
                   if labels_dir is not None else ""))
    for t in txts:
        lay.looked_for[t] = os.path.join(looked, _stem(t[len(labels_dir or "") + 1:]) + ".*")
    pending.extend(txts)


def _settle_orphans(pending: list[str], lay: _Layout) -> None:
    """Label files walked in split folders that no image of any split claimed."""
    for t in pending:
        if t not in lay.claimed and t not in lay.orphan_set:
            lay.orphan_set.add(t)
            lay.orphans.append(t)
            if f"{_SEP}labels{_SEP}" not in t:
                lay.loose.add(t)


def _load_yaml(path: str) -> dict[str, Any]:
    import yaml

    try:
        doc = names_mod.load_yaml(Path(path).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise ReadError(path, f"cannot read: {e}") from None
    except yaml.YAMLError as e:
        raise names_mod.yaml_error(path, e) from None
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise ReadError(path, "expected a YAML mapping (names, train, val, ...)")
    return doc


def _from_yaml(yaml_file: str, options: ReadOptions, report: Report, lay: _Layout) -> _Layout:
    doc = _load_yaml(yaml_file)
    lay.yaml_file, lay.yaml_doc = yaml_file, doc
    ydir = os.path.dirname(yaml_file) or "."
    root = ydir
    pth = doc.get("path")
    if isinstance(pth, str) and names_mod.split_parts(pth):
        found = names_mod.locate(pth, [ydir], want_dir=True)
        if found is not None:
            root = _norm(found)
        else:
            report.note("file.skipped", f"{yaml_file}#path",
                        f"path {pth!r} not found under {ydir}; using the yaml's folder", severity="info")
    roots = [root, ydir] + ([_norm(options.images)] if options.images is not None else [])
    loc = _Locator(roots)
    lay.image_roots += [os.path.join(root, "images"), root, ydir]
    lay.config_dirs += [ydir, root]
    splits = [k for k in ("train", "val", "test") if doc.get(k)]
    if not splits:
        return _from_folder(root, options, lay)
    seen: set[str] = set()
    pending: list[str] = []
    for key in splits:
        value = doc[key]
        entries = value if isinstance(value, list) else [value]
        for entry in entries:
            if not isinstance(entry, str):
                raise ReadError(yaml_file, f"{key}: expected a path or a list of paths, got {entry!r}",
                                element=key)
            target = loc(entry)
            if target is None:
                _missing_split(entry, root, loc, lay, pending, report, f"{yaml_file}#{key}")
            elif os.path.isdir(target):
                _add_dir_split(target, lay, seen, pending)
            elif os.path.splitext(target)[1].lower() in _IMG_EXT:
                _add_listed([target], lay, seen)
            else:
                _add_listed(_list_file_images(target, roots, report), lay, seen)
    _settle_orphans(pending, lay)
    return lay


def _from_darknet(obj_data: str, options: ReadOptions, report: Report, lay: _Layout) -> _Layout:
    try:
        keys = names_mod.parse_obj_data(Path(obj_data).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise ReadError(obj_data, f"cannot read: {e}") from None
    ddir = os.path.dirname(obj_data) or "."
    if "names" in keys:
        lay.names, lay.names_src = names_mod.read_names(obj_data), obj_data
    roots = [ddir] + ([_norm(options.images)] if options.images is not None else [])
    lay.image_roots += [os.path.join(ddir, "images"), ddir]
    lay.config_dirs += [ddir]
    lists = [keys[k] for k in ("train", "valid", "val", "test") if keys.get(k)]
    seen: set[str] = set()
    found_any = False
    for entry in lists:
        found = names_mod.locate(entry, [ddir], want_dir=False)
        if found is None:
            report.note("file.skipped", obj_data, f"image list {entry!r} not found beside it", severity="info")
            continue
        found_any = True
        _add_listed(_list_file_images(_norm(found), roots, report), lay, seen)
    if not found_any:
        images, txts = _walk(ddir, lay)
        _pair_walked(images, txts, lay)
    return lay


def _find_data_yaml(folder: str, report: Report) -> str | None:
    for name in _DATA_YAMLS:
        f = os.path.join(folder, name)
        if os.path.isfile(f):
            return f
    try:
        yamls = sorted(e.name for e in os.scandir(folder) if e.is_file()
                       and e.name.lower().endswith((".yaml", ".yml")))
    except OSError:
        return None
    fitting = [y for y in yamls if _yaml_keys(Path(folder) / y) & {"names", "nc"}]
    if len(fitting) == 1:
        return os.path.join(folder, fitting[0])
    if len(fitting) > 1:
        report.note("file.skipped", folder,
                    f"several dataset YAML files ({', '.join(fitting)}): none used; give one as the source",
                    severity="info")
    return None


def _layout(p: Path, options: ReadOptions, report: Report) -> _Layout:
    lay = _layout_of(p, options, report)
    lay.skips.flush(report, lay.root)
    return lay


def _layout_of(p: Path, options: ReadOptions, report: Report) -> _Layout:
    s = _norm(p)
    if p.is_file():
        root = os.path.dirname(s) or "."
        lay = _Layout(root=root)
        suffix = p.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return _from_yaml(s, options, report, lay)
        if suffix == ".data":
            return _from_darknet(s, options, report, lay)
        if suffix == ".txt" and _looks_like_labels(_head_bytes(p)):
            images_root = _norm(options.images) if options.images is not None else _sibling_images(root)
            if images_root is None:
                images_root = root
            lay = _from_labels(root, [s], images_root, lay)
            # only the given file is read: images that are not its image are not part of the source
            keep = [i for i, lab in enumerate(lay.labels) if lab is not None]
            lay.images = [lay.images[i] for i in keep]
            lay.labels = [lay.labels[i] for i in keep]
            return lay
        if suffix == ".txt":
            lay.image_roots += [os.path.join(root, "images"), root]
            lay.config_dirs += _parents(root, 1)
            _add_listed(_list_file_images(s, [root], report), lay, set())
            return lay
        raise ReadError(s, "not a YOLO source: give a folder, a data.yaml, an obj.data or a .txt label file")
    lay = _Layout(root=s)
    yaml_file = _find_data_yaml(s, report)
    if yaml_file is not None:
        return _from_yaml(yaml_file, options, report, lay)
    if os.path.isfile(os.path.join(s, "obj.data")):
        return _from_darknet(os.path.join(s, "obj.data"), options, report, lay)
    return _from_folder(s, options, lay)


# ============================================================================================ config
@dataclass
class _Config:
    names: list[str] | None
    names_src: str
    task: str | None
    kpt_shape: tuple[int, int] | None
    kpt_names: Any
    skeleton: Any
    yaml_file: str | None


def _config(lay: _Layout, options: ReadOptions) -> _Config:
    extra = dict(options.extra or {})
    yaml_file: str | None = None
    doc: dict[str, Any] | None = None
    if extra.get("data_yaml"):
        yaml_file = _norm(extra["data_yaml"])
        doc = _load_yaml(yaml_file)
    elif lay.yaml_doc is not None:
        yaml_file, doc = lay.yaml_file, lay.yaml_doc
    else:
        for d in dict.fromkeys(lay.config_dirs):
            for name in _DATA_YAMLS:
                f = os.path.join(d, name)
                if os.path.isfile(f):
                    yaml_file, doc = f, _load_yaml(f)
                    break
            if doc is not None:
                break
    names: list[str] | None = None
    names_src = ""
    if options.names is not None:
        names, names_src = [str(n) for n in options.names], "--names"
    elif doc is not None and yaml_file is not None and names_mod.names_from_yaml(doc, yaml_file) is not None:
        names, names_src = names_mod.names_from_yaml(doc, yaml_file), yaml_file
    elif lay.names is not None:
        names, names_src = lay.names, lay.names_src or ""
    else:
        found, src = names_mod.find_names(list(dict.fromkeys(lay.config_dirs)))
        if found is not None:
            names, names_src = found, str(src)
    kpt: Any = extra.get("kpt_shape", doc.get("kpt_shape") if doc else None)
    kpt_shape: tuple[int, int] | None = None
    if kpt is not None:
        where = yaml_file if "kpt_shape" not in extra and yaml_file else "kpt_shape option"
        try:
            k, dim = (int(v) for v in kpt)
        except (TypeError, ValueError):
            raise ReadError(where, f"kpt_shape must be [K, 2 or 3], got {kpt!r}", element="kpt_shape") from None
        if k < 1 or dim not in (2, 3):
            raise ReadError(where, f"kpt_shape must be [K, 2 or 3], got {kpt!r}", element="kpt_shape")
        kpt_shape = (k, dim)
    task = options.task
    if task is not None and task not in TASKS:
        raise UsageError(f"unknown YOLO task {task!r}", hint=f"use one of: {', '.join(TASKS)}")
    if task is None and kpt_shape is not None:
        task = "pose"
    return _Config(names=names, names_src=names_src, task=task, kpt_shape=kpt_shape,
                   kpt_names=doc.get("kpt_names") if doc else None,
                   skeleton=doc.get("skeleton") if doc else None, yaml_file=yaml_file)


# ============================================================================================ parsing
@dataclass
class _Lines:
    """The non-empty rows of every label file, as columns."""

    entry: np.ndarray   # which label entry the row comes from
    line: np.ndarray    # 1-based line number in its file
    ncol: np.ndarray    # values on the row
    first: np.ndarray   # index of the row's first value in ``vals``
    vals: np.ndarray    # every value of every row, float64
    bad: list[tuple[int, int, str]] = field(default_factory=list)  # rows not parsed: (entry, line, message)

    def keep(self, mask: np.ndarray) -> _Lines:
        """The rows where ``mask`` holds (the values stay where they are)."""
        return _Lines(entry=self.entry[mask], line=self.line[mask], ncol=self.ncol[mask], first=self.first[mask],
                      vals=self.vals, bad=self.bad)


def _clean(data: bytes) -> bytes:
    if data.startswith(_BOM):
        data = data[3:]
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if data and not data.endswith(b"\n"):
        data += b"\n"
    return data


def _show(tok: bytes) -> str:
    text = tok.decode("utf-8", "backslashreplace")
    return "'" + (text if len(text) <= 24 else text[:24] + "...") + "'"


def _unparseable(data: bytes) -> bool:
    """A binary or UTF-16 file: not a text label file at all (it fails as a whole, not row by row)."""
    return b"\x00" in data or data[:2] in (b"\xff\xfe", b"\xfe\xff")


def _scrub(datas: list[bytes], files: list[str]) -> tuple[list[bytes], list[tuple[int, int, str]]]:
    """The files with every row that holds a value that is not a number blanked (an empty line: the line numbers
    hold), and those rows: (entry, line, message). A binary or UTF-16 file raises ReadError at its first value."""
    out: list[bytes] = []
    bad: list[tuple[int, int, str]] = []
    for entry, (data, file) in enumerate(zip(datas, files, strict=True)):
        rows = data.split(b"\n")
        blanked = False
        for ln, row in enumerate(rows, 1):
            for tok in row.split():
                try:
                    float(tok)
                except ValueError:
                    if _unparseable(data):
                        raise ReadError(file, f"not a number: {_show(tok)}", line=ln,
                                        hint="this looks like a binary or UTF-16 file, not a YOLO text label file"
                                        ) from None
                    bad.append((entry, ln, f"not a number: {_show(tok)}"))
                    rows[ln - 1] = b""
                    blanked = True
                    break
        out.append(b"\n".join(rows) if blanked else data)
    return out, bad


def _parse(raw: list[bytes], files: list[str]) -> _Lines:
    """Every row of the label files ``raw`` (named ``files``) as columns; a row with a value that is not a number
    is left out and listed in ``bad``."""
    datas = [_clean(d) for d in raw]
    lines = _columns(datas, fast=True)
    if lines is None:
        datas, bad = _scrub(datas, files)
        lines = _columns(datas, fast=False)
        if lines is None:  # pragma: no cover - every value is a number now
            raise ReadError(files[0], "internal error: value count mismatch")
        lines.bad = bad
    return lines


def _columns(datas: list[bytes], *, fast: bool) -> _Lines | None:
    """The rows of ``datas`` as columns; None when ``fast`` (numpy's parser) and a value is not a number."""
    nlines = np.fromiter((d.count(b"\n") for d in datas), dtype=np.int64, count=len(datas))
    buf = b"".join(datas)
    empty = np.zeros(0, dtype=np.int64)
    if not buf.strip():
        return _Lines(empty, empty, empty, empty, np.zeros(0, dtype=np.float64))
    arr = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    ws = _WS[arr]
    prev = np.empty_like(ws)
    prev[0] = True
    prev[1:] = ws[:-1]
    np.logical_and(np.logical_not(ws, out=ws), prev, out=ws)  # in place: a value starts here
    starts = np.flatnonzero(ws)
    counts = np.bincount(np.searchsorted(ends, starts), minlength=len(ends))
    n_values = len(starts)
    del arr, ws, prev, starts  # peak memory: the byte-sized masks go before the values are parsed
    vals: np.ndarray | None = None
    if not fast:  # every value is a number: Python's float, which reads what numpy's parser does not
        vals = np.fromiter((float(t) for d in datas for t in d.split()), dtype=np.float64, count=n_values)
    else:
        try:
            if buf.isascii():  # parsed from the bytes themselves: no decoded copy
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    vals = np.fromstring(buf, dtype=np.float64, sep=" ")
                if len(vals) != n_values:
                    return None
            else:
                return None
        except (ValueError, DeprecationWarning):
            return None
    nonempty = np.flatnonzero(counts)
    cum = np.cumsum(nlines)
    entry = np.searchsorted(cum, nonempty, side="right")
    line = nonempty - (cum - nlines)[entry] + 1
    first = (np.cumsum(counts) - counts)[nonempty]
    return _Lines(entry=entry.astype(np.int64), line=line.astype(np.int64),
                  ncol=counts[nonempty].astype(np.int64), first=first.astype(np.int64), vals=vals)


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


def _row_count(data: bytes) -> int:
    """The lines of a label file (its rows, and any empty lines): what chunks are cut by."""
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)


def _per_entry_any(entry: np.ndarray, flag: np.ndarray, n: int) -> np.ndarray:
    """For each entry, whether ``flag`` is True on any of its rows."""
    return np.bincount(entry, weights=flag.astype(np.float64), minlength=n) > 0


def _candidates(n: int) -> int:
    if n in (5, 6):
        return _D
    if n == 7:
        return _D | _S
    if n in (9, 10, 11):
        return _O | _S
    return _S  # 8 and 12+ (fewer than 5 is refused before)


def _rel(path: str, root: str) -> str:
    prefix = root.rstrip(_SEP) + _SEP
    if path.startswith(prefix):
        rel = path[len(prefix):]
    else:
        try:
            rel = os.path.relpath(path, root)
        except ValueError:
            rel = path
    return rel.replace(_SEP, "/")


def _images_root(images: list[str], candidates: list[str]) -> str:
    for c in candidates:
        prefix = c.rstrip(_SEP) + _SEP
        if all(i.startswith(prefix) for i in images):
            return c
    return _base(images, default=".")


# ============================================================================================ reading
_BATCH_ROWS = 65_536   # iter_chunks: label rows parsed at once, at least (one bulk parse; what decides the task)
_BATCH_IMAGES = 8_192  # ... or images




def _progress_hook(options: ReadOptions) -> Callable[[int, int], None] | None:
    hook: Callable[[int, int], None] | None = options.extra.get("progress") if options.extra else None
    return hook


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a YOLO source (see the module docstring) into a Dataset; count, drop and note into ``report``."""
    p = Path(path)
    if not p.exists():
        raise ReadError(str(p), "no such file or folder")
    with gc_paused():
        lay = _layout(p, options, report)
        return _read(lay, _config(lay, options), options, report, p)


def _read(lay: _Layout, cfg: _Config, options: ReadOptions, report: Report, src: str | Path,
          part: _PartPlan | None = None) -> Dataset:
    """Every label file as one batch: the images' label files in image order, then the orphans. ``part``: the
    plan's context when this is one part of a plan (``lay`` its part of the layout)."""
    run = _Run(lay, cfg, options, report, str(src))
    several = part is not None and part.n_parts > 1
    if part is not None:
        run.img_root = lay.image_roots[0]  # decided by the plan, from every image of the source
    sizes = image_sizes(lay.images)
    files = [lab for lab in lay.labels if lab is not None]
    image_of = [i for i, lab in enumerate(lay.labels) if lab is not None]
    raw = _read_files(files, _progress_hook(options))
    orphans, orphan_raw = run.label_orphans(lay.orphans, _read_files(lay.orphans))
    files += orphans
    image_of += [-1] * len(orphans)
    raw += orphan_raw
    del orphan_raw
    piece = run.batch(files, image_of, raw, 0, len(lay.images), sizes)
    if several and run.n_pending:
        raise NeedsWholeRead("label files of 9-11 column rows only (4-point polygons or oriented boxes) are read "
                             "as polygons when every other label file of the source holds polygons, else dropped: "
                             f"one part cannot tell (pass {option('task', 'segment')} or {option('task', 'obb')})")
    categories = run.finish(zeros=several, table_notes=part is None or part.last)
    return Dataset.build(images=piece.images, categories=categories, annotations=piece.annotations,
                         report=run.report)


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
    cfg: _Config
    notes: tuple[Diagnostic, ...]
    n_parts: int
    last: bool


def _base(paths: Iterable[str], *, default: str = "") -> str:
    """The folder every path is under (``default`` when there is none: no path, or absolute and relative paths
    mixed)."""
    dirs = {os.path.dirname(p) for p in paths}
    try:
        return os.path.commonpath(sorted(dirs)) if dirs else default
    except ValueError:
        return default


def _mover(old: str, new: str) -> Callable[[str], str]:
    """Paths under the folder ``old`` put under ``new`` instead (others as they are)."""
    return lambda p: moved(p, old, new)


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[FilesPart]:
    """The source cut into ``parts`` contiguous runs of its images in output order (label files with no image go
    with the first run, as ``read()`` reads them before any image's rows are kept): each read by
    :func:`read_part`, their datasets merged in this order (:func:`prelabel.adapters.parts.merge`) give
    :func:`read`'s, report included. The layout (every image and its label file, the class names, the images
    root) is found once, here. A part's ``files`` are the images, label files and orphan label files it reads,
    relative to its ``source`` (the folder all of them are under). One part when the task is pose without a
    ``kpt_shape`` (inferred from every pose row); a part holding label files of 9-11 column rows only raises
    :class:`NeedsWholeRead` (how they are read depends on every other file).

    >>> parts = plan(Path("sample_data/yolo"), options=ReadOptions(), parts=2)
    >>> [sum(f.startswith("images/") for f in p.files) for p in parts]
    [2, 3]
    """
    p = Path(path)
    if not p.exists():
        raise ReadError(str(p), "no such file or folder")
    report = Report()
    with gc_paused():
        lay = _layout(p, options, report)
        cfg = _config(lay, options)
    roots = ([_norm(options.images)] if options.images is not None else []) + lay.image_roots
    img_root = _images_root(lay.images, roots)
    n = 1 if cfg.task == "pose" and cfg.kpt_shape is None else max(1, min(int(parts), len(lay.images)))
    labelled = [lab for lab in lay.labels if lab is not None]
    base = _base([os.path.join(lay.root, "x"), *([os.path.join(img_root, "x")] if lay.images else []),
                  *lay.images, *labelled, *lay.orphans])
    prefix = base.rstrip(_SEP) + _SEP if base else ""

    def rel(f: str) -> str:
        return (f[len(prefix):] if prefix and f.startswith(prefix) else f).replace(_SEP, "/")

    looked_for = tuple(sorted(lay.looked_for.items()))
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
                        notes=tuple(report.diagnostics) if first else (), n_parts=n, last=k == n - 1)
        out.append(FilesPart(source=base, files=tuple(rel(f) for f in files), context=ctx))
    return out


def read_part(part: FilesPart, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`, read as :func:`read` reads its images and label files (a part without the plan's
    context, ``FilesPart(source=path, files=())``: the whole source ``path``)."""
    ctx = part.context
    if not isinstance(ctx, _PartPlan):
        return read(Path(part.source), options=options, report=Report())
    mv = _mover(ctx.base, part.source)
    report = Report()
    report.diagnostics = [Diagnostic(d.code, mv(d.source), d.message, d.severity) for d in ctx.notes]
    lay = _Layout(root=mv(ctx.root), images=[mv(f) for f in ctx.images],
                  labels=[None if f is None else mv(f) for f in ctx.labels], orphans=[mv(f) for f in ctx.orphans],
                  loose={mv(f) for f in ctx.loose}, image_roots=[mv(ctx.img_root)],
                  looked_for={mv(k): mv(v) for k, v in ctx.looked_for})
    cfg = ctx.cfg
    if ctx.base and part.source != ctx.base:
        cfg = replace(cfg, names_src=mv(cfg.names_src), yaml_file=None if cfg.yaml_file is None else mv(cfg.yaml_file))
    with gc_paused():
        return _read(lay, cfg, options, report, mv(ctx.src), ctx)


def iter_chunks(path: Path, *, options: ReadOptions, report: Report,
                chunk_rows: int = DEFAULT_CHUNK_ROWS) -> Iterator[Dataset]:
    """``read()``'s dataset in chunks of whole images (the protocol of :mod:`prelabel.adapters.base`).

    The layout (every image and its label file) is found first, as ``read()`` finds it; then the label files
    are read in image order, batch by batch (at least ``chunk_rows`` rows or images, and some 65,000 rows
    or 8,000 images: one bulk parse and one threaded read of image headers per batch), and each batch is cut
    into chunks closed at the first image at which a chunk holds ``chunk_rows`` annotation rows or images
    (rows counted as the lines of the label files). Orphan label files (no image) are read before the
    images: their rows are all dropped, but their class indices and tasks count for the whole dataset, as in
    ``read()``. The rows are counted as they are read; the drops and notes go to ``report`` in ``read()``'s
    order once the last chunk was handed out (when the iteration ends).

    What ``read()`` decides from every label file is decided from the files read so far and checked on every
    later one; :class:`NeedsWholeRead` is raised when a later file would change rows already handed out:
    files of 9-11 column rows only (read as polygons when every other file is a polygon file, else
    dropped) when a later file changes which, and an inferred ``kpt_shape`` that a later file's rows do not
    fit. A malformed label file raises ReadError as ``read()`` does once every label file has been read;
    before that, NeedsWholeRead (``read()`` reports the first error in its own order, which a file not read
    yet may hold). Chunks of images without label rows wait while the category table waits for an inferred
    ``kpt_shape`` (an images table only).
    """
    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise UsageError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    p = Path(path)
    if not p.exists():
        raise ReadError(str(p), "no such file or folder")
    with gc_paused():
        lay = _layout(p, options, report)
        run = _Run(lay, _config(lay, options), options, report, str(p))
    yield from _stream(run, options, chunk_rows)


def _stream(run: _Run, options: ReadOptions, chunk_rows: int) -> Iterator[Dataset]:
    """The chunks of :func:`iter_chunks`, once the layout and config are known."""
    lay, report = run.lay, run.report
    n_img = len(lay.images)
    n_labels = sum(lab is not None for lab in lay.labels)
    unread = n_labels + len(lay.orphans)  # label files not read yet
    batch_rows = max(chunk_rows, _BATCH_ROWS)
    batch_images = max(chunk_rows, _BATCH_IMAGES)
    progress = _progress_hook(options)

    def whole(e: ReadError) -> NeedsWholeRead:
        return NeedsWholeRead(f"{e}; read() reports the first such error in its own order, which a label file "
                              "not read yet may hold")

    # orphan label files first: no image, all rows dropped, but their classes and tasks are the dataset's
    pos = 0
    while pos < len(lay.orphans):
        files: list[str] = []
        raw: list[bytes] = []
        rows = 0
        with gc_paused():
            try:
                while pos < len(lay.orphans) and rows < batch_rows and len(files) < batch_images:
                    data = _read_one(lay.orphans[pos])
                    files.append(lay.orphans[pos])
                    raw.append(data)
                    rows += _row_count(data)
                    pos += 1
                    unread -= 1
                kept, kept_raw = run.label_orphans(files, raw)
                del raw
                run.batch(kept, [-1] * len(kept), kept_raw, 0, 0, [])
            except ReadError as e:
                if unread:
                    raise whole(e) from e
                raise

    # the images in order, with their label files
    if progress is not None:
        progress(0, n_labels)
    done = 0
    held: list[tuple[pd.DataFrame, Any]] = []  # chunks waiting for the category table (an inferred kpt_shape)
    declared: int | None = None                # the class count of the last table handed out
    cursor = 0
    while cursor < n_img:
        files, raw = [], []
        image_of: list[int] = []
        cuts = [cursor]
        rows = imgs = in_batch_rows = in_batch_imgs = 0
        i = cursor
        with gc_paused():
            try:
                while i < n_img:
                    lab = lay.labels[i]
                    if lab is not None:
                        data = _read_one(lab)
                        files.append(lab)
                        image_of.append(i)
                        raw.append(data)
                        rows += _row_count(data)
                        unread -= 1
                        done += 1
                        if progress is not None and (done % 500 == 0 or done == n_labels):
                            progress(done, n_labels)
                    imgs += 1
                    i += 1
                    if rows >= chunk_rows or imgs >= chunk_rows:
                        cuts.append(i)
                        in_batch_rows += rows
                        in_batch_imgs += imgs
                        rows = imgs = 0
                        if in_batch_rows >= batch_rows or in_batch_imgs >= batch_images:
                            break
                if cuts[-1] != i:
                    cuts.append(i)
                piece = run.batch(files, image_of, raw, cursor, i, image_sizes(lay.images[cursor:i]))
                del raw
                held.extend(piece.chunks(cuts, cursor))
                del piece
                table = run.table() if held and run.table_ready() else None
            except ReadError as e:
                if unread:
                    raise whole(e) from e
                raise
        cursor = i
        if table is not None:
            declared = run.top
            while held:
                yield _next_chunk(held, table, report)
    with gc_paused():
        table = run.finish()
    if held or declared is None:  # declared is None: no image at all; one chunk still declares the categories
        if not held:
            yield Dataset.build(categories=table, report=report)
        while held:
            yield _next_chunk(held, table, report)
    elif declared != run.top:
        raise NeedsWholeRead(f"classes {declared} to {run.top - 1} (named by their index) are only in label files "
                             "read after the last chunk, of images whose size cannot be read: no chunk declares them")


def _next_chunk(held: list[tuple[pd.DataFrame, Any]], table: pd.DataFrame, report: Report) -> Dataset:
    """The first held chunk, taken out of ``held`` (no reference to it stays behind once handed out)."""
    images, annotations = held.pop(0)
    return Dataset.build(images=images, categories=table, annotations=annotations, report=report)


@dataclass
class _Piece:
    """A batch's images (those with a size, in order) and annotation rows (``image`` indexes ``images``)."""

    images: pd.DataFrame
    annotations: Any                    # a mapping of columns, or a DataFrame
    before: np.ndarray                  # per image of the batch (and one past the end): sized images before it

    def chunks(self, cuts: list[int], lo: int) -> list[tuple[pd.DataFrame, Any]]:
        """The (images, annotations) of the images ``cuts[j]:cuts[j + 1]`` (global indices, ``lo`` the
        batch's first), chunks without a sized image left out."""
        ann = self.annotations
        img = np.asarray(ann["image"])
        out: list[tuple[pd.DataFrame, Any]] = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            i0, i1 = int(self.before[a - lo]), int(self.before[b - lo])
            if i1 == i0:
                continue
            if i0 == 0 and i1 == len(self.images):
                out.append((self.images, ann))
                continue
            r0, r1 = (int(r) for r in np.searchsorted(img, [i0, i1]))
            out.append((self.images.iloc[i0:i1], _rows(ann, r0, r1, i0)))
        return out


def _rows(ann: Any, r0: int, r1: int, shift: int) -> Any:
    """Annotation rows ``r0:r1`` with their image index less ``shift``."""
    if isinstance(ann, pd.DataFrame):
        part = ann.iloc[r0:r1]
        return part.assign(image=part["image"].to_numpy() - shift)
    out = {k: v.iloc[r0:r1].reset_index(drop=True) if isinstance(v, pd.Series) else v[r0:r1]
           for k, v in ann.items()}
    out["image"] = out["image"] - shift
    return out


class _Run:
    """One reading of a YOLO source: what the label files decide for the whole dataset (the class count
    without names, the fate of files of 9-11 column rows only, an inferred kpt_shape), gathered batch by
    batch, and the drops and notes, held until :meth:`finish` reports them in ``read()``'s order.

    ``read()`` is one batch of every label file; ``iter_chunks`` gives the orphan label files first, then the
    images in order, and gets :class:`NeedsWholeRead` when a batch contradicts what earlier ones decided.
    """

    def __init__(self, lay: _Layout, cfg: _Config, options: ReadOptions, report: Report, src: str) -> None:
        self.lay, self.cfg, self.report, self.src = lay, cfg, report, src
        self.images_given = options.images is not None
        roots = ([_norm(options.images)] if options.images is not None else []) + lay.image_roots
        self.img_root = _images_root(lay.images, roots)
        self.top = 0                                # without names: 1 + the largest class index so far
        self.kpt_shape = cfg.kpt_shape              # inferred from the first pose rows when not given
        self.kpt_cols = 0                           # inferred: the value count of every pose row
        self.decided: set[int] = set()              # the tasks of the files that decide theirs
        self.n_detect = self.n_segment = self.n_pending = 0  # files per inferred task; 9-11 column files
        self.pending_as_segment: bool | None = None  # how rows of 9-11 column files were read (None: none yet)
        self.skipped: list[str] = []                # loose orphan .txt files that are not label files
        self.pending_drops: list[pd.DataFrame] = []  # drops, reported in file and line order by finish()
        self.n_batches = 0                            # batches read so far (a key of that order)
        self.orphan_entry = np.zeros(0, dtype=bool)   # the current batch's label files without an image
        self.ambiguous: list[tuple[str, int]] = []  # files with rows dropped as ambiguous, and how many
        self.orphan_rows: list[tuple[str, int]] = []  # label files with no image, and their row counts
        self.image_notes: list[tuple[str, bool]] = []  # per image, in order: (unsized: the file, True) or
        #                                                (unlabeled: the file_name, False)
        self._names: tuple[int, np.ndarray] | None = None
        self._table: tuple[tuple[int, tuple[int, int] | None], pd.DataFrame] | None = None

    # ------------------------------------------------------------------ names and categories
    def names(self) -> list[str]:
        return self.cfg.names if self.cfg.names is not None else [str(i) for i in range(self.top)]

    def names_array(self) -> np.ndarray:
        if self._names is None or self._names[0] != self.top:
            self._names = (self.top, np.array(self.names(), dtype=object))
        return self._names[1]

    def table_ready(self) -> bool:
        """Whether the category table is known (a pose table waits for the keypoint count)."""
        return not (self.cfg.task == "pose" and self.kpt_shape is None)

    def table(self) -> pd.DataFrame:
        """The category table as known so far (its notes go to the report in :meth:`finish`)."""
        kpt = self.kpt_shape if self.cfg.task == "pose" else None
        if self._table is None or self._table[0] != (self.top, kpt):
            self._table = ((self.top, kpt), _categories(self.names(), self.cfg, kpt, Report(), self.lay.root))
        return self._table[1]

    # ------------------------------------------------------------------ batches
    def label_orphans(self, files: list[str], raw: list[bytes]) -> tuple[list[str], list[bytes]]:
        """The orphan files that are label files; loose .txt files that do not look like one are skipped."""
        kept: list[str] = []
        kept_raw: list[bytes] = []
        for f, data in zip(files, raw, strict=True):
            if f in self.lay.loose and not _looks_like_labels(data[:65536]):
                self.skipped.append(_rel(f, self.lay.root))
                continue
            kept.append(f)
            kept_raw.append(data)
        return kept, kept_raw

    def batch(self, files: list[str], image_of: list[int], raw: list[bytes], lo: int, hi: int,
              sizes: list[tuple[int, int] | None]) -> _Piece:
        """Parse and convert label ``files`` (the contents ``raw``, emptied once parsed), each the label file
        of image ``image_of`` (or -1: no image); the images ``lo:hi`` (their ``sizes``) are the piece's."""
        lay, cfg = self.lay, self.cfg
        size_ok = np.array([s is not None for s in sizes], dtype=bool)
        widths = np.array([s[0] if s is not None else 0 for s in sizes], dtype=np.int64)
        heights = np.array([s[1] if s is not None else 0 for s in sizes], dtype=np.int64)
        n_entries = len(files)
        rel_files = [_rel(f, lay.root) for f in files]
        lines = _parse(raw, rel_files)
        raw.clear()
        self.report.add_read(len(lines.ncol) + len(lines.bad))
        ent_img = np.array(image_of, dtype=np.int64)
        self.orphan_entry = ent_img < 0  # label files without an image: their drops come first, as read() has them
        invalid: list[pd.DataFrame] = []  # rows that cannot be read, dropped at their file and line

        # ---- class indices and names
        unnamed: list[pd.DataFrame] = []  # class indices the names file does not name
        lines = self._drop_invalid(lines, _unnamed(lines, cfg.names, self._names_src()), rel_files, unnamed)
        lines = self._drop_invalid(lines, _row_problems(lines), rel_files, invalid)
        n_rows = len(lines.ncol)
        ci = lines.vals[lines.first].astype(np.int64) if n_rows else np.zeros(0, dtype=np.int64)
        if cfg.names is None and n_rows:
            self.top = max(self.top, int(ci.max()) + 1)

        # ---- what each file is
        has_image = ent_img >= 0
        sized_entry = np.zeros(n_entries, dtype=bool)
        sized_entry[has_image] = size_ok[ent_img[has_image] - lo]
        kinds = self._kinds(lines, n_entries, rel_files, sized_entry)
        if n_rows and cfg.task == "pose" and cfg.kpt_shape is None:
            self._kpt(lines, rel_files)
        row_kind = kinds[lines.entry] if n_rows else np.zeros(0, dtype=np.int64)
        wrong = _column_problems(lines, row_kind, self.kpt_shape)
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
        no_size[~no_image] = ~size_ok[row_img[~no_image] - lo]
        ambiguous = (row_kind == _AMBIGUOUS) & ~no_image & ~no_size
        names_arr = self.names_array()
        files_arr = np.array(rel_files, dtype=object)
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
                self._defer(slot, reason, msg, rows)
        if ambiguous.any():
            per_file = np.bincount(lines.entry[ambiguous], minlength=n_entries)
            self.ambiguous += [(rel_files[e], int(per_file[e])) for e in np.flatnonzero(per_file).tolist()]
        if not has_image.all():
            per_entry = np.bincount(lines.entry, minlength=n_entries)
            self.orphan_rows += [(rel_files[e], int(per_entry[e])) for e in np.flatnonzero(~has_image).tolist()]
        file_names = [_rel(i, self.img_root) for i in lay.images[lo:hi]]
        labelled = np.zeros(hi - lo, dtype=bool)
        labelled[ent_img[has_image] - lo] = True
        # one list in image order (not the unsized, then the unlabeled): the parts of a plan add up to it
        self.image_notes += [(_rel(lay.images[lo + i], lay.root), True) if not size_ok[i] else (file_names[i], False)
                             for i in np.flatnonzero(~(labelled & size_ok)).tolist()]

        # ---- conversion of the kept rows
        keep = ~(no_image | no_size | ambiguous)
        before = np.concatenate((np.zeros(1, dtype=np.int64), np.cumsum(size_ok, dtype=np.int64)))
        row_loc = row_img - lo
        ann = _convert(lines, keep, row_kind, row_loc, widths, heights, self.kpt_shape, n_entries)
        ann["image"] = before[row_loc[keep]]
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
            "path": [lay.images[lo + i] for i in kept_imgs],
            "attributes": [None] * len(kept_imgs),
            "src_file": [label_of_image.get(lo + i, _rel(lay.images[lo + i], lay.root)) for i in kept_imgs],
        })
        self.n_batches += 1
        return _Piece(images=images, annotations=annotations, before=before)

    def _names_src(self) -> str:
        """Where the class names come from, as a message names it."""
        src = self.cfg.names_src
        return src if src == "--names" or not src else _rel(_norm(src), self.lay.root)

    def _drop_invalid(self, lines: _Lines, problem: np.ndarray | None, files: list[str],
                      into: list[pd.DataFrame]) -> _Lines:
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
            key = f"{_SEP}labels{_SEP}"
            i = label_file.rfind(key)
            twin = f"{label_file[:i]}{_SEP}images{_SEP}{label_file[i + len(key):]}" if i >= 0 else label_file
            looked = _stem(twin) + ".*"
        return _rel(looked, self.lay.root)

    def _defer(self, slot: int, reason: str, message: str, rows: pd.DataFrame) -> None:
        """Drops of this batch (``rows`` with the label file's ``entry`` in the batch), reported in
        :meth:`finish` in file and line order: the order every split of the files into batches or parts gives."""
        if "message" not in rows:
            rows = rows.assign(message=message)
        group = np.where(self.orphan_entry[rows["entry"].to_numpy(dtype=np.int64)], 0, 1)
        self.pending_drops.append(rows.assign(reason=reason, group=group, batch=self.n_batches, slot=slot))

    def _kinds(self, lines: _Lines, n_entries: int, files: list[str], sized: np.ndarray) -> np.ndarray:
        """The task of each label file of the batch (``_DETECT`` ... ``_AMBIGUOUS``); ``sized``: the files whose
        rows can be kept (an image with a size)."""
        cfg = self.cfg
        if cfg.task is not None:
            code = {"detect": _DETECT, "segment": _SEGMENT, "obb": _OBB, "pose": _POSE}[cfg.task]
            return np.full(n_entries, code, dtype=np.int64)
        kinds = np.full(n_entries, -1, dtype=np.int64)
        if not len(lines.ncol):
            return kinds
        width = int(lines.ncol.max()) + 1
        pairs = np.unique(lines.entry * width + lines.ncol)
        mask = np.full(n_entries, _D | _S | _O, dtype=np.int64)
        for key in pairs.tolist():
            e, n = divmod(key, width)
            mask[e] &= _candidates(n)
        has_rows = np.bincount(lines.entry, minlength=n_entries) > 0
        # all rows 7 columns: box + score + track id when the 6th value is a score and the 7th a whole number
        sev = lines.ncol == 7
        if sev.any():
            f6 = lines.vals[lines.first[sev] + 5]
            f7 = lines.vals[lines.first[sev] + 6]
            not_track = ~((f6 >= 0) & (f6 <= 1) & np.isfinite(f7) & (f7 == np.floor(f7)))
            bad = _per_entry_any(lines.entry[sev], not_track, n_entries)
            both = mask == (_D | _S)
            mask[both & bad] = _S
            mask[both & ~bad] = _D
        kinds[has_rows & (mask == _D)] = _DETECT
        kinds[has_rows & ((mask == _S) | (mask == 0))] = _SEGMENT  # 0: boxes and polygons mixed -> segment
        pending = has_rows & (mask == (_O | _S))
        decided = has_rows & ~pending
        self.decided.update(kinds[decided].tolist())
        self.n_detect += int((kinds == _DETECT).sum())
        self.n_segment += int((kinds == _SEGMENT).sum())
        self.n_pending += int(pending.sum())
        # files of 9-11 column rows only are polygons when every other file of the dataset is a polygon file
        as_segment = self.decided == {_SEGMENT}
        if self.pending_as_segment is not None and self.pending_as_segment != as_segment:
            culprit = decided & (kinds != _SEGMENT) if self.pending_as_segment else decided
            raise NeedsWholeRead(
                "label files of 9-11 column rows only (4-point polygons or oriented boxes) are read as polygons "
                "when every other label file holds polygons, else dropped; the files read before "
                f"{files[int(np.argmax(culprit))]} decided the one and that file the other (pass {option('task', 'segment')} "
                f"or {option('task', 'obb')} to stream)")
        if self.pending_as_segment is None and (pending & sized).any():
            self.pending_as_segment = as_segment
        kinds[pending] = _SEGMENT if as_segment else _AMBIGUOUS
        return kinds

    def _kpt(self, lines: _Lines, files: list[str]) -> None:
        """Infer kpt_shape from the first pose rows; later rows must fit what they gave."""
        if not self.kpt_cols:
            self.kpt_shape = _infer_kpt_shape(lines, files, self.src)
            self.kpt_cols = int(lines.ncol[0])
            return
        other = lines.ncol != self.kpt_cols
        if other.any():
            i = int(np.argmax(other))
            raise NeedsWholeRead(f"kpt_shape is inferred from every pose row: rows of {self.kpt_cols} numbers came "
                                 f"first, {files[lines.entry[i]]}:{int(lines.line[i])} has {int(lines.ncol[i])} "
                                 "(put kpt_shape in data.yaml)")
        if _infer_kpt_shape(lines, files, self.src) != self.kpt_shape and self.kpt_shape is not None \
                and self.kpt_shape[1] == 3:
            raise NeedsWholeRead(f"kpt_shape is inferred from every pose row: the third values of the first rows "
                                 f"of {self.kpt_cols} numbers were all visibilities (0, 1, 2), not those of "
                                 f"{files[0]} (put kpt_shape in data.yaml)")

    # ------------------------------------------------------------------ the end
    def _task_note(self, *, zeros: bool = False) -> str:
        """The ``task.inferred`` note of the column counts (``zeros``: with counts of 0 too, as every part of a
        plan writes it, so that :func:`prelabel.adapters.parts.merge` adds them up where the first part has it)."""
        if self.cfg.task is not None:
            return ""
        segment = self.n_segment
        note = ""
        if self.n_pending and self.decided == {_SEGMENT}:
            segment += self.n_pending
            note = (f"{self.n_pending} file(s) with only 9-11 column rows read as polygons like the rest of the "
                    f"dataset; pass {option('task', 'obb')} if they are oriented boxes")
        counts = {"detect": self.n_detect, "segment": segment}
        summary = ", ".join(f"{n} {name}" for name, n in counts.items() if n or zeros)
        if not summary:
            return ""
        return f"task inferred from the column counts: {summary} file(s)" + (f"; {note}" if note else "")

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
        note = self._task_note(zeros=zeros)
        if note:
            rep.note("task.inferred", self.src, note, severity="info")
        if self.pending_drops:
            drops = pd.concat(self.pending_drops, ignore_index=True).sort_values(
                ["group", "batch", "entry", "src_line", "slot"], kind="stable").reset_index(drop=True)
            reasons = drops["reason"].to_numpy()
            cuts = [0, *(np.flatnonzero(reasons[1:] != reasons[:-1]) + 1).tolist(), len(drops)]
            for a, b in zip(cuts[:-1], cuts[1:], strict=False):  # runs of one reason, in file and line order
                rep.drop(str(reasons[a]), drops.iloc[a:b])
        self.pending_drops.clear()
        for f, n in self.ambiguous:
            rep.note("dropped.ambiguous", f, f"{n} row(s) dropped: {_AMBIGUOUS_MSG}")
        fix = for_face(" (check --images DIR: the folder that holds the images)" if self.images_given
                       else " (give --images DIR: the folder that holds the images)")
        for f, n in self.orphan_rows:
            rep.note("image.missing", f, f"no image for this label file ({n} row(s) dropped){fix}" if n
                     else "no image for this (empty) label file", severity="warning" if n else "info")
        for f, unsized in self.image_notes:
            if unsized:
                rep.note("image.missing", f,
                         "the image size cannot be read from the file header (not an image, or a format not known)")
            else:
                rep.note("image.unlabeled", f, "no label file: kept with no annotations", severity="info")
        kpt = self.kpt_shape if cfg.task == "pose" else None
        return _categories(self.names(), cfg, kpt, rep if table_notes else Report(), self.lay.root)


def _infer_kpt_shape(lines: _Lines, files: list[str], src: str) -> tuple[int, int]:
    pose_cols = sorted(set(lines.ncol.tolist()))
    hint = "add kpt_shape: [K, 2 or 3] to data.yaml"
    if len(pose_cols) != 1 or pose_cols[0] < 7:
        i = 0
        raise ReadError(files[lines.entry[i]] if len(lines.ncol) else src,
                        f"cannot tell the keypoint layout (kpt_shape) from rows of {pose_cols} numbers",
                        line=int(lines.line[i]) if len(lines.ncol) else None, hint=hint)
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


def _messages(bad: np.ndarray, prefix: str, numbers: np.ndarray, suffix: str = "") -> np.ndarray | None:
    """``prefix + number + suffix`` for the rows of ``bad`` (object array, None elsewhere); None: no such row."""
    if not bad.any():
        return None
    out = np.full(len(bad), None, dtype=object)
    out[bad] = [f"{prefix}{v}{suffix}" for v in numbers[bad].tolist()]
    return out


def _first_of(found: list[np.ndarray | None], n: int) -> np.ndarray | None:
    """One message a row: the first of ``found`` that names it; None when no row has a problem."""
    out: np.ndarray | None = None
    for msgs in found:
        if msgs is None:
            continue
        if out is None:
            out = msgs
            continue
        take = (out == None) & (msgs != None)  # noqa: E711 - object arrays compared element by element
        out[take] = msgs[take]
    return out


def _unnamed(lines: _Lines, names: list[str] | None, names_src: str) -> np.ndarray | None:
    """Rows whose class index (a whole number) the names file does not name: a message each, else None."""
    if names is None or not len(lines.ncol):
        return None
    cls = lines.vals[lines.first]
    bad = (cls >= len(names)) & (cls == np.floor(cls)) & (cls < 2**31)
    return _first_of([_messages(bad, "class index ", np.where(bad, cls, 0).astype(np.int64),
                                f" has no name ({names_src} lists {len(names)} classes; add it there or give "
                                f"{option('names')})")], len(cls))


def _row_problems(lines: _Lines) -> np.ndarray | None:
    """What is wrong with each row whatever its task (None: nothing): a class index that is not a whole number
    >= 0, or fewer than 5 values."""
    n = len(lines.ncol)
    if not n:
        return None
    cls = lines.vals[lines.first]
    not_whole = ~((cls >= 0) & (cls == np.floor(cls)) & (cls < 2**31))
    return _first_of([_messages(not_whole, "class index must be a whole number >= 0, got ", cls),
                      _messages(lines.ncol < 5, "expected at least 5 numbers (class cx cy w h), got ", lines.ncol)], n)


def _column_problems(lines: _Lines, kind: np.ndarray, kpt_shape: tuple[int, int] | None) -> np.ndarray | None:
    """Rows whose value count does not fit their file's task (a message each, else None)."""
    n = lines.ncol
    checks: list[tuple[np.ndarray, str, str]] = []
    det = kind == _DETECT
    checks.append((det & ((n < 5) | (n > 7)),
                   "expected 5 numbers (class cx cy w h), 6 with a score or 7 with a score and a track id",
                   f" (rows of polygons? pass {option('task', 'segment')}, or {option('task', 'obb')} for 4 corners)"))
    checks.append(((kind == _OBB) & ((n < 9) | (n > 11)),
                   "expected 9 numbers (class x1 y1 ... x4 y4), 10 with a score or 11 with a score and a track id",
                   ""))
    checks.append(((kind == _SEGMENT) & (n < 7) & (n != 5) & (n != 6),
                   "expected a class and at least 3 points (7 numbers), or a box (5 numbers)", ""))
    if kpt_shape is not None:
        k, d = kpt_shape
        base = 5 + k * d
        checks.append(((kind == _POSE) & ((n < base) | (n > base + 2)),
                       f"expected {base} numbers (class cx cy w h and {k} keypoints of {d} values), {base + 1} with "
                       f"a score or {base + 2} with a score and a track id",
                       " (check kpt_shape in data.yaml)"))
    return _first_of([_messages(bad, f"{msg}; got ", n, hint) for bad, msg, hint in checks], len(n))


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenated ``arange(s, s + l)`` for every (s, l)."""
    total = int(lengths.sum())
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(total)


def _convert(lines: _Lines, keep: np.ndarray, kind_all: np.ndarray, img_all: np.ndarray, widths: np.ndarray,
             heights: np.ndarray, kpt_shape: tuple[int, int] | None, n_entries: int) -> dict[str, Any]:
    """The annotation columns of the kept rows, in reading order."""
    vals = lines.vals
    first = lines.first[keep]
    ncol = lines.ncol[keep]
    kind = kind_all[keep]
    entry = lines.entry[keep]
    n = len(first)
    W = widths[img_all[keep]].astype(np.float64)
    H = heights[img_all[keep]].astype(np.float64)
    x = np.full(n, np.nan)
    y = np.full(n, np.nan)
    w = np.full(n, np.nan)
    h = np.full(n, np.nan)
    segs = np.full(n, None, dtype=object)
    kps = np.full(n, None, dtype=object)
    attrs = np.full(n, None, dtype=object)

    # what the geometry is, and how many values it takes
    poly = ((kind == _SEGMENT) & (ncol >= 7)) | (kind == _OBB)
    box = ~poly & (kind != _POSE)
    geo = np.where(box, 5, 0)
    geo = np.where(kind == _OBB, 9, geo)
    seg_rows = (kind == _SEGMENT) & (ncol >= 7)
    geo = np.where(seg_rows, ncol - ((ncol - 1) % 2), geo)  # odd: all polygon; even: polygon + score
    if kpt_shape is not None:
        geo = np.where(kind == _POSE, 5 + kpt_shape[0] * kpt_shape[1], geo)
    extras = ncol - geo

    # trailing columns: score, track id
    score = np.full(n, np.nan)
    track = np.full(n, np.nan)
    one = extras == 1
    if one.any():
        v = vals[first[one] + ncol[one] - 1]
        not_whole = _per_entry_any(entry[one], ~(np.isfinite(v) & (v == np.floor(v))), n_entries)
        above_one = _per_entry_any(entry[one], v > 1, n_entries)
        is_track = (~not_whole & above_one)[entry[one]]
        score[np.flatnonzero(one)[~is_track]] = v[~is_track]
        track[np.flatnonzero(one)[is_track]] = v[is_track]
    two = extras == 2
    if two.any():
        score[two] = vals[first[two] + ncol[two] - 2]
        track[two] = vals[first[two] + ncol[two] - 1]

    # boxes (detect, pose, and box rows of segment files)
    bx = box | (kind == _POSE)
    if bx.any():
        f = first[bx]
        cx, cy, bw, bh = vals[f + 1], vals[f + 2], vals[f + 3], vals[f + 4]
        Wb, Hb = W[bx], H[bx]
        x[bx] = cx * Wb - bw * Wb / 2
        y[bx] = cy * Hb - bh * Hb / 2
        w[bx] = bw * Wb
        h[bx] = bh * Hb

    # polygons (segment, OBB corners)
    if poly.any():
        rows = np.flatnonzero(poly)
        ncoord = geo[rows] - 1
        idx = _ranges(first[rows] + 1, ncoord)
        coords = vals[idx]
        owner = np.repeat(np.arange(len(rows)), ncoord)
        pos = idx - np.repeat(first[rows] + 1, ncoord)
        is_x = pos % 2 == 0
        coords = coords * np.where(is_x, W[rows][owner], H[rows][owner])
        bounds = np.concatenate(([0], np.cumsum(ncoord)))
        xs_min = _segment_reduce(np.where(is_x, coords, np.inf), bounds, np.minimum)
        xs_max = _segment_reduce(np.where(is_x, coords, -np.inf), bounds, np.maximum)
        ys_min = _segment_reduce(np.where(is_x, np.inf, coords), bounds, np.minimum)
        ys_max = _segment_reduce(np.where(is_x, -np.inf, coords), bounds, np.maximum)
        nonfinite = _per_entry_any(owner, ~np.isfinite(coords), len(rows))
        xs_min[nonfinite] = np.nan  # NaN anywhere makes the box NaN (the clipping step drops it)
        x[rows], y[rows] = xs_min, ys_min
        w[rows], h[rows] = xs_max - xs_min, ys_max - ys_min
        parts = np.split(coords, bounds[1:-1])
        for r, part in zip(rows.tolist(), parts, strict=True):
            segs[r] = [part]

    # keypoints
    pose = kind == _POSE
    if pose.any() and kpt_shape is not None:
        k, d = kpt_shape
        rows = np.flatnonzero(pose)
        kp = vals[first[rows][:, None] + 5 + np.arange(k * d)[None, :]].reshape(len(rows), k, d)
        px = kp[..., 0] * W[rows][:, None]
        py = kp[..., 1] * H[rows][:, None]
        conf: np.ndarray | None = None
        if d == 2:
            v = np.where((kp[..., 0] < 0) | (kp[..., 1] < 0) | ((kp[..., 0] == 0) & (kp[..., 1] == 0)), 0.0, 2.0)
        else:
            third = kp[..., 2]
            odd = ~np.isin(third, (0.0, 1.0, 2.0)).all(axis=1) | (extras[rows] > 0)
            conf_entry = _per_entry_any(entry[rows], odd, n_entries)[entry[rows]]
            v = np.where(conf_entry[:, None], np.where(third > 0.5, 2.0, 1.0), third)
            if conf_entry.any():
                conf = np.where(conf_entry[:, None], third, np.nan)
        px = np.where(v == 0, 0.0, px)
        py = np.where(v == 0, 0.0, py)
        out = np.ascontiguousarray(np.stack([px, py, v], axis=-1))
        for j, r in enumerate(rows.tolist()):
            kps[r] = out[j]
        if conf is not None:
            for j in np.flatnonzero(~np.isnan(conf[:, 0])).tolist():
                attrs[rows[j]] = {"keypoint_scores": conf[j].tolist()}

    has_track = ~np.isnan(track)
    for r in np.flatnonzero(has_track).tolist():
        t = float(track[r])
        tid: int | float = int(t) if np.isfinite(t) and t == int(t) else t
        if attrs[r] is None:
            attrs[r] = {"track_id": tid}
        else:
            attrs[r]["track_id"] = tid
    return {"x": x, "y": y, "w": w, "h": h, "score": score, "segmentation": segs, "keypoints": kps,
            "attributes": attrs}


def _segment_reduce(values: np.ndarray, bounds: np.ndarray, op: Any) -> np.ndarray:
    return np.asarray(op.reduceat(values, bounds[:-1]), dtype=np.float64)


def _categories(names: list[str], cfg: _Config, kpt_shape: tuple[int, int] | None, report: Report,
                root: str) -> pd.DataFrame:
    seen: dict[str, int] = {}
    order: list[int] = []
    for i, nm in enumerate(names):
        if nm in seen:
            report.note("category.matched", cfg.names_src or "names",
                        f"class {i} has the same name as class {seen[nm]} ({nm!r}): one category")
            continue
        seen[nm] = i
        order.append(i)
    keypoints: list[Any] = [None] * len(order)
    skeleton: Any = None
    if kpt_shape is not None:
        k = kpt_shape[0]
        where = cfg.yaml_file or "data.yaml"
        default = [f"kp{j}" for j in range(k)]
        kn = cfg.kpt_names
        keypoints = []
        for i in order:
            per: Any = kn.get(i, kn.get(str(i))) if isinstance(kn, dict) else kn
            if per is None:
                keypoints.append(default)
                continue
            if not isinstance(per, list) or len(per) != k:
                raise ReadError(where, f"kpt_names: expected {k} names per class, got {per!r}", element="kpt_names")
            keypoints.append([str(v) for v in per])
        if cfg.skeleton is not None:
            skeleton, shifted = _skeleton(cfg.skeleton, k, where)
            if shifted:
                report.note("skeleton.shifted", _rel(where, root), "the 0-based skeleton of data.yaml was made "
                            "1-based (COCO)", severity="info")
    return pd.DataFrame({"name": [names[i] for i in order], "keypoints": keypoints,
                         "skeleton": [skeleton] * len(order)})


def _skeleton(raw: Any, k: int, where: str) -> tuple[list[list[int]], bool]:
    try:
        pairs = [[int(a), int(b)] for a, b in raw]
    except (TypeError, ValueError):
        raise ReadError(where, f"skeleton must be a list of [a, b] pairs, got {raw!r}", element="skeleton") from None
    flat = [v for pair in pairs for v in pair]
    one_based = bool(flat) and min(flat) >= 1 and max(flat) == k
    out = pairs if one_based else [[a + 1, b + 1] for a, b in pairs]
    if any(not 1 <= v <= k for pair in out for v in pair):
        raise ReadError(where, f"skeleton refers to keypoints outside 0..{k - 1}", element="skeleton")
    return out, bool(pairs) and not one_based


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
