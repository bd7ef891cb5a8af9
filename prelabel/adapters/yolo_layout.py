"""Where a YOLO source's images, label files and settings are: the layout (a folder, a data.yaml, an obj.data,
a list file or a label file: every image, its label file, the label files with no image, the images roots) and
the config (class names, task, ``kpt_shape``, keypoint names, skeleton), found once for :mod:`.yolo`."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import ReadError, UsageError
from ..junk import Skips
from ..paths import IMAGE_EXTENSIONS
from ..report import Report
from . import names as names_mod
from .base import ReadOptions
from .yolo_rows import DETECT, OBB, POSE, SEGMENT, looks_like_labels

TASK_CODES = {"detect": DETECT, "segment": SEGMENT, "obb": OBB, "pose": POSE}  # a task's code in the rows
TASKS = tuple(TASK_CODES)
SEP = os.sep
_IMG_EXT = frozenset(IMAGE_EXTENSIONS)
# .txt files that are never label files (names and image lists)
NOT_LABELS = frozenset({"classes.txt", "train.txt", "val.txt", "valid.txt", "test.txt", "obj.names",
                        "requirements.txt", "readme.txt", "license.txt"})
DATA_YAMLS = ("data.yaml", "data.yml", "dataset.yaml", "dataset.yml")


def head_bytes(p: Path, n: int = 4096) -> bytes:
    """The first ``n`` bytes of a file (none when it cannot be read)."""
    try:
        with open(p, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def head_text(p: Path) -> str:
    """The first 64 KiB of a file as text (undecodable bytes replaced)."""
    return head_bytes(p, 65536).decode("utf-8", "replace")


def yaml_keys(p: Path) -> set[str]:
    """The top-level keys of a YAML file's first 64 KiB (none when it is not a mapping)."""
    import yaml

    try:
        doc = yaml.safe_load(head_text(p))
    except yaml.YAMLError:
        return set()
    return {str(k) for k in doc} if isinstance(doc, dict) else set()


@dataclass
class Layout:
    """Every image of a YOLO source and its label file, the label files with no image, and where the
    names files and images roots are looked for."""

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
    walks: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # folder walks, done once
    skips: Skips = field(default_factory=Skips)               # junk next to the data, names not UTF-8
    looked_for: dict[str, str] = field(default_factory=dict)  # orphan label file -> the image path looked for


def norm(p: str | Path) -> str:
    """``p`` normalized (``os.path.normpath``), as a string."""
    return os.path.normpath(os.fspath(p))


def _walk(root: str, lay: Layout) -> tuple[list[str], list[str]]:
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
        prefix = d + SEP
        for f in files:
            if not lay.skips.keep(d, f):
                continue
            dot = f.rfind(".")
            if dot <= 0:
                continue
            ext = f[dot:].lower()
            if ext in _IMG_EXT:
                images.append(prefix + f)
            elif ext == ".txt" and f.lower() not in NOT_LABELS:
                txts.append(prefix + f)
    images.sort()
    txts.sort()
    lay.walks[root] = (images, txts)
    return images, txts


def stem(path: str) -> str:
    """``path`` without the extension of its last component."""
    dot = path.rfind(".")
    return path[:dot] if dot > path.rfind(SEP) else path


def swap_folder(path: str, old: str, new: str) -> str | None:
    """``path`` with its last ``/old/`` component made ``/new/`` (None when it has no ``/old/``).

    >>> swap_folder(os.path.join("d", "images", "a", "images", "1.jpg"), "images", "labels").split(SEP)
    ['d', 'images', 'a', 'labels', '1.jpg']
    """
    key = f"{SEP}{old}{SEP}"
    i = path.rfind(key)
    return f"{path[:i]}{SEP}{new}{SEP}{path[i + len(key):]}" if i >= 0 else None


def _img2label(img: str) -> str:
    """Ultralytics: the last ``/images/`` becomes ``/labels/``, the extension becomes ``.txt``."""
    return stem(swap_folder(img, "images", "labels") or img) + ".txt"


def _beside(img: str) -> str:
    return stem(img) + ".txt"


def _labels_dir_of(images_dir: str) -> str | None:
    labels_dir = swap_folder(images_dir + SEP, "images", "labels")
    return norm(labels_dir) if labels_dir is not None else None


def _sibling_images(labels_dir: str) -> str | None:
    parts = Path(labels_dir).parts
    if "labels" in parts:
        i = len(parts) - 1 - parts[::-1].index("labels")
        cand = os.path.join(*parts[:i], "images", *parts[i + 1:])
        if os.path.isdir(cand):
            return norm(cand)
    cand = os.path.join(os.path.dirname(labels_dir), "images")
    if os.path.isdir(cand) and norm(cand) != norm(labels_dir):
        return norm(cand)
    parent = os.path.dirname(labels_dir)   # runs/detect/predict: the images beside labels/
    if os.path.basename(labels_dir) == "labels" and parent and any(
            os.path.splitext(e)[1].lower() in _IMG_EXT for e in os.listdir(parent)):
        return norm(parent)
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
    cand = _img2label(img)  # the candidates made one at a time: the first is the usual answer
    if cand in have:
        return cand
    cand = _beside(img)
    if cand in have:
        return cand
    cand = norm(os.path.join(os.path.dirname(img), "labels", os.path.basename(stem(img)) + ".txt"))
    return cand if cand in have else None


def _listed_label(img: str) -> str | None:
    """The label file of a listed image (no folder walked): its Ultralytics twin, else the .txt beside it."""
    for cand in (_img2label(img), _beside(img)):
        if os.path.isfile(cand):
            return cand
    return None


def _add_images(images: list[str], lay: Layout, seen: set[str], label_of: Callable[[str], str | None]) -> None:
    """Add the ``images`` not ``seen`` yet to the layout, each with its label file (``label_of``), which is claimed."""
    for img in images:
        if img in seen:
            continue
        seen.add(img)
        lab = label_of(img)
        lay.images.append(img)
        lay.labels.append(lab)
        if lab is not None:
            lay.claimed.add(lab)


def _pair_walked(images: list[str], txts: list[str], lay: Layout) -> None:
    """Pair walked images with walked .txt files; the rest of the .txt files are orphans."""
    _add_images(images, lay, set(), partial(_label_for, have=set(txts)))
    _settle_orphans(txts, lay)


def _from_folder(folder: str, options: ReadOptions, lay: Layout) -> Layout:
    images, txts = _walk(folder, lay)
    if images:
        _pair_walked(images, txts, lay)
        lay.image_roots += [os.path.join(folder, "images"), folder]
        # LabelImg keeps classes.txt in labels/ beside images/
        lay.config_dirs += [*_parents(folder, 1), os.path.join(folder, "labels")]
        return lay
    images_root = norm(options.images) if options.images is not None else _sibling_images(folder)
    return _from_labels(folder, txts, images_root, lay)


def _from_labels(labels_root: str, txts: list[str], images_root: str | None, lay: Layout) -> Layout:
    """Label files under ``labels_root`` paired with images under ``images_root`` by relative path and stem."""
    by_stem: dict[str, str] = {}
    if images_root is not None and os.path.isdir(images_root):
        imgs, _ = _walk(images_root, lay)
        n = len(images_root) + 1
        for im in imgs:
            by_stem.setdefault(stem(im[n:]), im)
        lay.image_roots.append(images_root)
    labelled: dict[str, str] = {}
    n = len(labels_root) + 1
    for t in txts:
        img = by_stem.get(stem(t[n:]))
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
                    return norm(cand)
        for k in range(len(parts)):
            if ".." in parts[k:]:
                continue
            for root in self.roots:
                cand = os.path.join(root, *parts[k:])
                if os.path.exists(cand):
                    self.last = (k, root)
                    return norm(cand)
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
    if missing:  # the layout's note, not the resolver's image.missing (an image placed with a known size and
        # no file under the root): a listed image not found has no size in YOLO, so it is left out, not placed
        report.note("image.missing", list_file,
                    f"{missing} listed image(s) not found (first: {first_missing!r})")
    return out


def _add_dir_split(d: str, lay: Layout, seen: set[str], pending: list[str]) -> None:
    images, txts = _walk(d, lay)
    labels_dir = _labels_dir_of(d)
    if labels_dir is not None and os.path.isdir(labels_dir) and labels_dir != d:
        txts = txts + _walk(labels_dir, lay)[1]
    _add_images(images, lay, seen, partial(_label_for, have=set(txts)))
    pending.extend(txts)


def _missing_split(entry: str, root: str, loc: _Locator, lay: Layout, pending: list[str], report: Report,
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
    # the layout's note (a folder, not an image, not found): no rule of the image resolver
    report.note("image.missing", where, f"image folder {entry!r} not found (looked for {rel_path(looked, lay.root)})"
                + (f"; the {len(txts)} label file(s) of {rel_path(labels_dir, lay.root)} have no image"
                   if labels_dir is not None else ""))
    for t in txts:
        lay.looked_for[t] = os.path.join(looked, stem(t[len(labels_dir or "") + 1:]) + ".*")
    pending.extend(txts)


def _settle_orphans(pending: list[str], lay: Layout) -> None:
    """Label files walked (in split folders) that no image claimed."""
    for t in dict.fromkeys(pending):
        if t not in lay.claimed:
            lay.orphans.append(t)
            if f"{SEP}labels{SEP}" not in t:
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


def _from_yaml(yaml_file: str, options: ReadOptions, report: Report, lay: Layout) -> Layout:
    doc = _load_yaml(yaml_file)
    lay.yaml_file, lay.yaml_doc = yaml_file, doc
    ydir = os.path.dirname(yaml_file) or "."
    root = ydir
    pth = doc.get("path")
    if isinstance(pth, str) and names_mod.split_parts(pth):
        found = names_mod.locate(pth, [ydir], want_dir=True)
        if found is not None:
            root = norm(found)
        else:
            report.note("file.skipped", f"{yaml_file}#path",
                        f"path {pth!r} not found under {ydir}; using the yaml's folder", severity="info")
    roots = [root, ydir] + ([norm(options.images)] if options.images is not None else [])
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
                _add_images([target], lay, seen, _listed_label)
            else:
                _add_images(_list_file_images(target, roots, report), lay, seen, _listed_label)
    _settle_orphans(pending, lay)
    return lay


def _from_darknet(obj_data: str, options: ReadOptions, report: Report, lay: Layout) -> Layout:
    try:
        keys = names_mod.parse_obj_data(Path(obj_data).read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError) as e:
        raise ReadError(obj_data, f"cannot read: {e}") from None
    ddir = os.path.dirname(obj_data) or "."
    if "names" in keys:
        lay.names, lay.names_src = names_mod.read_names(obj_data), obj_data
    roots = [ddir] + ([norm(options.images)] if options.images is not None else [])
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
        _add_images(_list_file_images(norm(found), roots, report), lay, seen, _listed_label)
    if not found_any:
        images, txts = _walk(ddir, lay)
        _pair_walked(images, txts, lay)
    return lay


def _data_yaml_in(folder: str) -> str | None:
    """The first of ``DATA_YAMLS`` in ``folder`` (None: none is there)."""
    for name in DATA_YAMLS:
        f = os.path.join(folder, name)
        if os.path.isfile(f):
            return f
    return None


def _find_data_yaml(folder: str, report: Report) -> str | None:
    named = _data_yaml_in(folder)
    if named is not None:
        return named
    try:
        yamls = sorted(e.name for e in os.scandir(folder) if e.is_file()
                       and e.name.lower().endswith((".yaml", ".yml")))
    except OSError:
        return None
    fitting = [y for y in yamls if yaml_keys(Path(folder) / y) & {"names", "nc"}]
    if len(fitting) == 1:
        return os.path.join(folder, fitting[0])
    if len(fitting) > 1:
        report.note("file.skipped", folder,
                    f"several dataset YAML files ({', '.join(fitting)}): none used; give one as the source",
                    severity="info")
    return None


def find_layout(p: Path, options: ReadOptions, report: Report) -> Layout:
    """The layout of the source ``p``, its junk skipped with a note."""
    lay = _layout_of(p, options, report)
    lay.skips.flush(report, lay.root)
    return lay


def _layout_of(p: Path, options: ReadOptions, report: Report) -> Layout:
    s = norm(p)
    if p.is_file():
        root = os.path.dirname(s) or "."
        lay = Layout(root=root)
        suffix = p.suffix.lower()
        if suffix in (".yaml", ".yml"):
            return _from_yaml(s, options, report, lay)
        if suffix == ".data":
            return _from_darknet(s, options, report, lay)
        if suffix == ".txt" and looks_like_labels(head_bytes(p)):
            images_root = norm(options.images) if options.images is not None else _sibling_images(root)
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
            _add_images(_list_file_images(s, [root], report), lay, set(), _listed_label)
            return lay
        raise ReadError(s, "not a YOLO source: give a folder, a data.yaml, an obj.data or a .txt label file")
    lay = Layout(root=s)
    yaml_file = _find_data_yaml(s, report)
    if yaml_file is not None:
        return _from_yaml(yaml_file, options, report, lay)
    if os.path.isfile(os.path.join(s, "obj.data")):
        return _from_darknet(os.path.join(s, "obj.data"), options, report, lay)
    return _from_folder(s, options, lay)


@dataclass
class Config:
    """The class names and their source, the task, and the pose settings of data.yaml."""

    names: list[str] | None
    names_src: str
    task: str | None
    kpt_shape: tuple[int, int] | None
    kpt_names: Any
    skeleton: Any
    yaml_file: str | None


def read_config(lay: Layout, options: ReadOptions) -> Config:
    """The config of a layout: names from ``options``, data.yaml, obj.data or a names file; the task;
    ``kpt_shape``, ``kpt_names`` and ``skeleton``."""
    extra = dict(options.extra or {})
    yaml_file: str | None = None
    doc: dict[str, Any] | None = None
    if extra.get("data_yaml"):
        yaml_file = norm(extra["data_yaml"])
        doc = _load_yaml(yaml_file)
    elif lay.yaml_doc is not None:
        yaml_file, doc = lay.yaml_file, lay.yaml_doc
    else:
        for d in dict.fromkeys(lay.config_dirs):
            yaml_file = _data_yaml_in(d)
            if yaml_file is not None:
                doc = _load_yaml(yaml_file)
                break
    names: list[str] | None = None
    names_src = ""
    if options.names is not None:
        names, names_src = [str(n) for n in options.names], "--names"
    elif doc is not None and yaml_file is not None and (
            from_yaml := names_mod.names_from_yaml(doc, yaml_file)) is not None:
        names, names_src = from_yaml, yaml_file
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
    return Config(names=names, names_src=names_src, task=task, kpt_shape=kpt_shape,
                  kpt_names=doc.get("kpt_names") if doc else None,
                  skeleton=doc.get("skeleton") if doc else None, yaml_file=yaml_file)


def rel_path(path: str, root: str) -> str:
    """``path`` relative to ``root``, with forward slashes."""
    prefix = root.rstrip(SEP) + SEP
    if path.startswith(prefix):
        rel = path[len(prefix):]
    else:
        try:
            rel = os.path.relpath(path, root)
        except ValueError:
            rel = path
    return rel.replace(SEP, "/")


def images_root(lay: Layout, options: ReadOptions) -> str:
    """The images root of a layout (``file_name`` is relative to it): ``options.images`` when every image is
    under it, else the first of the layout's ``image_roots`` that holds them all (:func:`images_root_of`)."""
    roots = ([norm(options.images)] if options.images is not None else []) + lay.image_roots
    return images_root_of(lay.images, roots)


def images_root_of(images: list[str], candidates: list[str]) -> str:
    """The first of ``candidates`` that holds every image, else the folder common to all of them."""
    for c in candidates:
        prefix = c.rstrip(SEP) + SEP
        if all(i.startswith(prefix) for i in images):
            return c
    return common_folder(images, default=".")


def common_folder(paths: Iterable[str], *, default: str = "") -> str:
    """The folder every path is under (``default`` when there is none: no path, or absolute and relative paths
    mixed)."""
    dirs = {os.path.dirname(p) for p in paths}
    try:
        return os.path.commonpath(sorted(dirs)) if dirs else default
    except ValueError:
        return default
