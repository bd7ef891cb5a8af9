"""Pascal VOC XML: a VOC root (``Annotations/`` + ``JPEGImages/``), a folder of XML files, or one ``.xml`` file.

What is read, and how:

- **Fields.** ``filename``, ``size/width,height``, and each ``object``: ``name``, ``bndbox`` (ints or floats,
  its four tags in any order), ``pose``, ``truncated``, ``difficult``, ``occluded`` and any other simple child
  (kept in ``attributes``: integers as ints, other numbers as floats, the rest as text), ``part`` elements
  (``attributes["parts"] = [{"name": ..., "bbox": [x, y, w, h]}]`` in COCO pixels after the origin shift),
  ``actions`` (``attributes["actions"] = {"jumping": 0, ...}``) and CVAT's ``attributes/attribute`` pairs.
- **Origin.** ``options.voc_origin = 1`` (default) reads the VOC spec's 1-based inclusive pixel indices:
  ``x = xmin - 1``, ``w = xmax - xmin + 1``. ``voc_origin = 0`` reads files written by 0-based tools (datumaro,
  CVAT, Roboflow, labelformat): ``x = xmin``, ``w = xmax - xmin``. In 1-based mode a coordinate of 0 (which no
  1-based file has) gets one ``coordinates.suspect`` diagnostic per file suggesting ``--voc-origin 0``.
  Inverted or empty boxes are kept for the clip step to drop and report; an object with no ``<name>``, no
  ``<bndbox>`` or a coordinate that is missing or not a number is dropped (``dropped.invalid``, at the file and
  the ``<object>`` line) and the rest is read.
- **Sizes.** A file without ``<size>`` (or with a width or height of 0) takes the size from the image header
  (``image.size_from_header``). When the image cannot be found the file is a ReadError, unless it has no
  objects: then it is skipped with a ``file.skipped`` note (nothing is lost).
- **Images.** The COCO ``file_name`` is ``<filename>`` (made safe with :mod:`prelabel.paths`). The image file
  is looked for in ``options.images`` when given, else in ``JPEGImages/`` beside ``Annotations/``, else next to
  the XML file. A ``<filename>`` without an image extension (or a missing one, then the XML file's stem) is
  matched by stem against the files in that folder. An unsafe ``<filename>`` (absolute, or with a ``..``
  segment) is reported (``image.unsafe_name``) and replaced by the XML file's own stem plus the image
  extension. Two XML files naming the same image stay two images. Names, sizes and the ``image.*`` notes go
  through :class:`prelabel.images.ImageRoot` (missing images and header sizes: one counted note each).
- **Source locations.** ``src_file`` is the XML path relative to the source root (for a single file: its
  name); ``src_line`` is the line of the ``<object>`` start tag, found by a text search of the bytes (checked
  against the element count; when the two disagree, as with ``<object`` in a comment, an exact expat pass
  gives the lines).
- **Order.** Files (hence images) are sorted by their relative path; categories come in first-seen order.
- **Security.** A DTD or an entity declaration is refused with a ReadError ("XML entities/DTD are not
  allowed"): any file whose bytes could declare one (``<!DOCTYPE`` or ``<!ENTITY`` present, or an encoding
  that is not ASCII-compatible, such as UTF-16) is parsed by :mod:`defusedxml` with DTDs forbidden. A file
  that cannot declare one is parsed by the C ElementTree parser, three times faster: with no DTD there is no
  entity to expand or fetch, and ElementTree never processes XInclude.
- **Speed.** The garbage collector is paused while parsing, values accumulate in flat lists and arrays, and
  the columns are built once. :func:`plan` cuts the sorted files into runs and :func:`read_part` reads one:
  the engine (:mod:`prelabel.engine`) reads a source of more than 2000 files (:func:`auto_workers`) in
  several processes, or as the worker policy says (``workers``, its alias ``voc_workers``,
  ``PRELABEL_WORKERS``), and streams a conversion part by part, so memory follows the part, not the number of
  files; the result is identical to one read.

Example:
    >>> import tempfile, pathlib
    >>> from prelabel.adapters.base import ReadOptions
    >>> from prelabel.report import Report
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "a.xml").write_text(
    ...     "<annotation><filename>a.jpg</filename><size><width>20</width><height>10</height></size>"
    ...     "<object><name>cat</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>3</xmax><ymax>4</ymax>"
    ...     "</bndbox></object></annotation>")
    >>> ds = read(d, options=ReadOptions(), report=Report())
    >>> ds.boxes.tolist()   # 1-based inclusive [1..3] x [2..4] -> continuous x=0, y=1, w=3, h=3
    [[0.0, 1.0, 3.0, 3.0]]
    >>> ds.images["file_name"].tolist(), ds.annotations["src_file"].tolist()
    (['a.jpg'], ['a.xml'])
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import ReadError, UsageError, option
from ..gcpause import gc_paused
from ..images import ImageRoot
from ..junk import Skips, first_file, walk_files
from ..model import Dataset
from ..paths import IMAGE_EXTENSIONS, safe_relative
from ..report import Diagnostic, Report, format_source
from .base import ReadOptions
from .parts import FilesPart
from .voc_xml import Parsed, parse_files

__all__ = ["DESCRIPTION", "NAME", "auto_workers", "detect", "plan", "read", "read_part"]

NAME = "voc"
DESCRIPTION = "Pascal VOC XML (Annotations/ + JPEGImages/, a folder of .xml files, or one .xml file)"

POOL_THRESHOLD = 2000  # more files than this are read by several processes (auto_workers)
_MAX_WORKERS = 8


# ---------------------------------------------------------------------------------------------- detection
def _root_tag_of(path: Path) -> str | None:
    """The name of the root element of an XML file, from its first 64 KiB (None when there is none)."""
    try:
        with open(path, "rb") as f:
            head = f.read(64 * 1024)
    except OSError:
        return None
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        text = head.decode("utf-16", errors="replace")
    else:
        text = head.decode("utf-8", errors="replace")
    text = re.sub(r"<!--.*?-->|<\?.*?\?>", "", text, flags=re.S)
    text = re.sub(r"<!DOCTYPE[^\[>]*(\[.*?\])?\s*>", "", text, flags=re.S)
    m = re.search(r"<([A-Za-z_][\w.\-:]*)", text)
    return m.group(1) if m else None


def detect(path: Path) -> float:
    """How sure this is Pascal VOC: 1.0 for a VOC root, 0.9 for one VOC file, 0.8 for a folder of VOC files.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "a.xml").write_text("<annotations><version>1.1</version></annotations>")  # CVAT
        >>> detect(d), detect(d / "a.xml")
        (0.0, 0.0)
        >>> _ = (d / "a.xml").write_text("<?xml version='1.0'?><annotation><filename>a.jpg</filename></annotation>")
        >>> detect(d), detect(d / "a.xml")
        (0.8, 0.9)
    """
    p = Path(path)
    if p.is_file():
        return 0.9 if p.suffix.lower() == ".xml" and _root_tag_of(p) == "annotation" else 0.0
    if not p.is_dir():
        return 0.0
    ann = p / "Annotations"
    if ann.is_dir():
        first = first_file(ann, ".xml", depth=2)
        if first is not None and _root_tag_of(first) == "annotation":
            return 1.0
    first = first_file(p, ".xml", depth=4)
    if first is not None and _root_tag_of(first) == "annotation":
        return 0.8
    return 0.0


# ---------------------------------------------------------------------------------------------- files
_LISTED: dict[str, tuple[tuple[int, int, int], frozenset[str]]] = {}  # folder -> (its stat when listed, names)
_LISTED_MAX = 16
_QUIET_NS = 2 * 10**9  # a listing is kept only of a folder unchanged this long before it was listed


def _listed(folder: str) -> frozenset[str]:
    """The names in ``folder`` (none when it cannot be listed), listed once a process while the folder is
    unchanged: the parts of a plan that a worker reads look up the same image folder (20,000 names listed
    again for each part cost 0.26 s of CPU on the benchmark). A folder changed in the 2 s before it was listed
    is listed again next time (its modification time may not show a change made in the same clock tick)."""
    try:
        st = os.stat(folder)
    except OSError:
        return frozenset()
    key = (st.st_dev, st.st_ino, st.st_mtime_ns)
    got = _LISTED.get(folder)
    if got is not None and got[0] == key:
        return got[1]
    listed_at = time.time_ns()
    try:
        names = frozenset(os.listdir(folder))
    except OSError:
        return frozenset()
    if listed_at - st.st_mtime_ns > _QUIET_NS:
        if len(_LISTED) >= _LISTED_MAX:
            del _LISTED[next(iter(_LISTED))]
        _LISTED[folder] = (key, names)
    return names


class _Listing:
    """Directory listings (:func:`_listed`): does a file exist, and which image files share a stem."""

    def __init__(self) -> None:
        self._names: dict[str, frozenset[str]] = {}

    def names(self, folder: str) -> frozenset[str]:
        got = self._names.get(folder)
        if got is None:
            got = self._names[folder] = _listed(folder or ".")
        return got

    def find(self, folder: str, rel: str) -> str | None:
        """``rel`` if it exists under ``folder``; else (for a name without an image extension) the first image
        file in sorted order whose stem is ``rel``'s last component; else None."""
        head, _, base = rel.rpartition("/")
        listing = self.names(os.path.join(folder, head) if head else folder)
        if base in listing:
            return rel
        if os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS:
            return None
        cands = sorted(n for n in listing
                       if os.path.splitext(n)[0] == base and os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS)
        if not cands:
            return None
        return f"{head}/{cands[0]}" if head else cands[0]


def _image_dir(xml_dir: str, images: Path | None, voc_jpeg: str | None) -> tuple[str, bool]:
    """Where the images of the XML files in ``xml_dir`` are, and whether that place was named or is standard
    (then a missing image is reported): ``images``, else ``JPEGImages/`` beside ``Annotations/``, else
    ``xml_dir`` itself."""
    if images is not None:
        return str(images), True
    if voc_jpeg is not None:
        return (voc_jpeg, True) if os.path.isdir(voc_jpeg) else (xml_dir, False)
    if os.path.basename(xml_dir) == "Annotations":
        jpeg = os.path.join(os.path.dirname(xml_dir), "JPEGImages")
        if os.path.isdir(jpeg):
            return jpeg, True
    return xml_dir, False


class _ImageFinder:
    """Finds the image file of each XML file (``_Listing`` and the per-folder image place, cached across calls,
    so that the chunks of a stream share them)."""

    def __init__(self, *, voc_jpeg: str | None, images: Path | None) -> None:
        self.voc_jpeg = voc_jpeg
        self.images = images
        self.listing = _Listing()
        self.dirs: dict[str, tuple[str, bool]] = {}

    def resolve(self, parsed: Parsed, abs_of: dict[str, str],
                images: ImageRoot) -> tuple[list[str], list[str | None], list[bool]]:
        """The COCO file name, the local path (or None) of every image of ``parsed``, and whether its place was
        named or is standard (then a missing image is counted); ``abs_of`` maps each relative XML path to its
        path on disk; unsafe names are replaced through ``images``."""
        listing, dirs = self.listing, self.dirs
        file_names: list[str] = []
        paths: list[str | None] = []
        named: list[bool] = []
        for rel, raw in zip(parsed.img_rel, parsed.img_filename, strict=True):
            xml_path = abs_of[rel]
            xml_dir = os.path.dirname(xml_path)
            got = dirs.get(xml_dir)
            if got is None:
                got = dirs[xml_dir] = _image_dir(xml_dir, self.images, self.voc_jpeg)
            img_dir, explicit = got
            name = safe_relative(raw) if raw else None
            if name is None:
                stem = os.path.splitext(os.path.basename(xml_path))[0]
                if raw:
                    ext = os.path.splitext(raw.replace("\\", "/"))[1]
                    fallback = stem + ext if ext.lower() in IMAGE_EXTENSIONS else stem
                    name = images.name(raw, at=rel, fallback=fallback) or fallback
                else:
                    name = stem
            found = listing.find(img_dir, name)
            if found is not None:
                name = found
            paths.append(os.path.join(img_dir, found) if found is not None else None)
            file_names.append(name)
            named.append(explicit)
        return file_names, paths, named


def _objects(values: Any) -> pd.Series:
    return pd.Series(list(values), dtype=object)


@dataclass
class _Source:
    """What a source is, before any file is parsed: the sorted XML files and where their images are."""

    origin: int
    single: bool
    jobs: list[tuple[str, str]]   # (path on disk, path relative to the source root), sorted by the latter
    skips: Skips                  # junk skipped (hidden, __MACOSX, ._*), names that are not UTF-8
    voc_jpeg: str | None          # JPEGImages/ of a VOC root


def _origin(options: ReadOptions) -> int:
    origin = int(options.voc_origin)
    if origin not in (0, 1):
        raise UsageError(f"voc_origin must be 0 or 1, got {options.voc_origin!r}",
                         hint=f"{option('voc_origin', 1)} for the VOC spec's 1-based pixels, "
                              f"{option('voc_origin', 0)} for files from 0-based tools")
    return origin


def _source(src: Path, options: ReadOptions, files: Sequence[str] | None = None) -> _Source:
    """The files of ``src`` (see :func:`read` for ``files``); a ReadError when there are none."""
    origin = _origin(options)
    single = src.is_file()
    voc_root = False
    if single:
        root = src.parent
        jobs = [(str(src), src.name)]
        skips = Skips()
    elif src.is_dir():
        root = src
        voc_root = (src / "Annotations").is_dir()
        skips = Skips()
        jobs = sorted(walk_files(src / "Annotations" if voc_root else src, ".xml", skips), key=lambda t: t[1])
        if voc_root:
            jobs = [(p, "Annotations/" + r) for p, r in jobs]
        if files is not None:  # one partition: the hidden-files note goes with the first
            first_job, wanted = jobs[:1], set(files)
            jobs = [j for j in jobs if j[1] in wanted]
            skips = skips if jobs[:1] == first_job else Skips()
        skips.refuse_bad_names(str(src))
        if not jobs:
            raise ReadError(str(src), "no Pascal VOC .xml files found here",
                            hint="give a VOC root (with Annotations/), a folder of .xml files, or one .xml file")
    else:
        raise ReadError(str(src), "no such file or folder")
    return _Source(origin=origin, single=single, jobs=jobs, skips=skips,
                   voc_jpeg=str(root / "JPEGImages") if voc_root else None)


def read(path: Path, *, options: ReadOptions, report: Report, files: Sequence[str] | None = None) -> Dataset:
    """Read Pascal VOC XML into a Dataset (see the module docstring for the conventions).

    ``files`` (relative XML paths as in ``src_file``, e.g. ``Annotations/a.xml``) reads only those files of a
    folder source, in the usual sorted order: one partition of a distributed read.
    """
    src = Path(path)
    with gc_paused():
        return _read_listed(src, options, report, _source(src, options, files))


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[FilesPart]:
    """The source cut into ``parts`` runs of its sorted XML files (one part for a single file): each read by
    :func:`read_part`, their datasets concatenated in this order give :func:`read`'s.

    >>> [len(p.files) for p in plan(Path("sample_data/voc"), options=ReadOptions(), parts=2)]
    [2, 3]
    """
    src = Path(path)
    if not src.is_dir():
        return [FilesPart(source=str(src), files=())]
    source = _source(src, options)
    rels = [r for _, r in source.jobs]
    n = max(1, min(parts, len(rels)))
    cuts = [len(rels) * k // n for k in range(n + 1)]
    voc_root = source.voc_jpeg is not None
    return [FilesPart(source=str(src), files=tuple(rels[a:b]),
                      context=_Listed(voc_root=voc_root, skips=source.skips if not a else None))
            for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


@dataclass(frozen=True)
class _Listed:
    """A part's context: what the plan's one walk of the folder found (a part does not walk it again)."""

    voc_root: bool
    skips: Skips | None  # the junk the walk skipped: noted by the first part only


def read_part(part: FilesPart, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`: its files read as :func:`read` reads them (``files=()``: the whole source)."""
    listed = part.context
    if not isinstance(listed, _Listed) or not part.files:
        return read(Path(part.source), options=options, report=Report(), files=part.files or None)
    src = Path(part.source)
    # each file's path as the plan's walk made it (os.path.join: a pathlib join per file cost 0.45 s of CPU
    # on the benchmark's 20,000 files)
    join, top = os.path.join, str(src)
    if listed.voc_root:
        ann = join(top, "Annotations")
        jobs = [(join(ann, rel.removeprefix("Annotations/")), rel) for rel in part.files]
    else:
        jobs = [(join(top, rel), rel) for rel in part.files]
    source = _Source(origin=_origin(options), single=False, jobs=jobs, skips=listed.skips or Skips(),
                     voc_jpeg=str(src / "JPEGImages") if listed.voc_root else None)
    report = Report()
    with gc_paused():
        return _read_listed(src, options, report, source)


def _by_file(notes: Sequence[Diagnostic], jobs: Sequence[tuple[str, str]]) -> list[Diagnostic]:
    """The notes about the files (``rel`` or ``rel:line``) in file order, each file's in the order made (a
    stable sort): so the notes of runs of files read one by one (a plan's parts) add up to those of one read."""
    pos = {rel: i for i, (_, rel) in enumerate(jobs)}

    def key(d: Diagnostic) -> int:
        got = pos.get(d.source)
        if got is None:
            head, _, line = d.source.rpartition(":")
            got = pos.get(head, len(pos)) if line.isdigit() else len(pos)
        return got

    return sorted(notes, key=key)


def _read_listed(src: Path, options: ReadOptions, report: Report, source: _Source) -> Dataset:
    source.skips.flush(report, str(src))
    first_note = len(report.diagnostics)
    jobs = source.jobs
    # options.extra["progress"]: the pipeline's per-file count
    parsed = parse_files(jobs, source.origin, source.single,
                         progress=options.extra.get("progress") if options.extra else None)
    if parsed.error is not None:
        file, message, line, element, hint = parsed.error
        raise ReadError(file, message, line=line, element=element, hint=hint)
    for rel, why in parsed.skipped:
        report.note("file.skipped", rel, why)
    _drop_bad(parsed.bad, report)
    finder = _ImageFinder(voc_jpeg=source.voc_jpeg, images=options.images)
    abs_of = {rel: p for p, rel in jobs}
    root = ImageRoot(options.images or source.voc_jpeg, report=report)
    # one pass over the whole set: its notes go to the report phase after phase, then in file order (_by_file)
    images, annotations = _assemble(parsed, source.origin, finder, abs_of, root=root, report=report)
    report.diagnostics[first_note:] = _by_file(report.diagnostics[first_note:], jobs)
    root.notes(end=1)  # the image.* tallies: closing notes, which the parts' add up to
    report.add_read(len(parsed.names))
    # categories come in first-seen (sorted file) order
    categories = {"name": _objects(dict.fromkeys(parsed.names))}
    return Dataset.build(images=images, categories=categories, annotations=annotations, report=report)


def _drop_bad(bad: Sequence[tuple[str, int, str | None, str]], report: Report) -> None:
    """Malformed objects: each read and dropped as ``dropped.invalid`` with its file:line."""
    for rel, line, name, why in bad:
        report.drop_one("dropped.invalid", category=name, source_file=rel, source_line=line, message=why)


def _assemble(parsed: Parsed, origin: int, finder: _ImageFinder, abs_of: dict[str, str], *, root: ImageRoot,
              report: Report) -> tuple[dict[str, Any], dict[str, Any]]:
    """The images and annotations columns of the parsed files, with their notes: the image names, places and
    sizes (through ``root``: a size is read from the image header when the file has none) and 0-based-looking
    files. A file whose size is unknown and that has objects is a ReadError."""
    # ------------------------------------------------------------------ images
    n_img = len(parsed.img_rel)
    names, paths, named = finder.resolve(parsed, abs_of, root)
    recorded = [(w, h) if w > 0 and h > 0 else None for w, h in zip(parsed.img_w, parsed.img_h, strict=True)]
    placed = root.settle_all(names, paths, at=parsed.img_rel, sizes=recorded, given=named)
    file_names = [p.name for p in placed]
    keep = np.ones(n_img, dtype=bool)
    widths = np.zeros(n_img, dtype=np.int64)
    heights = np.zeros(n_img, dtype=np.int64)
    for i, p in enumerate(placed):
        if p.size is not None:
            widths[i], heights[i] = p.size
            continue
        rel = parsed.img_rel[i]
        why = (f"image {file_names[i]!r} could not be read" if paths[i] is not None
               else f"no image {file_names[i]!r} found to read it from")
        if parsed.img_nobj[i]:
            raise ReadError(rel, f"no <size> (or a zero width/height) in the file, and {why}",
                            element="size", hint=f"give the images folder with {option('images')}")
        keep[i] = False
        report.note("file.skipped", rel, f"no <size> and {why}; the file has no objects, so it is skipped")

    # ------------------------------------------------------------------ annotations
    nobj = np.asarray(parsed.img_nobj, dtype=np.int64)
    img_index = np.repeat(np.arange(n_img, dtype=np.int64), nobj)
    n = len(parsed.names)
    c = np.frombuffer(parsed.coords, dtype=np.float64).reshape(n, 4) if n else np.zeros((0, 4))
    lines = np.frombuffer(parsed.lines, dtype=np.int64).copy() if n else np.zeros(0, dtype=np.int64)
    if origin == 1:
        x, y = c[:, 0] - 1.0, c[:, 1] - 1.0
        w, h = c[:, 2] - c[:, 0] + 1.0, c[:, 3] - c[:, 1] + 1.0
        zero = np.flatnonzero((c == 0.0).any(axis=1))
        if len(zero):
            _, first = np.unique(img_index[zero], return_index=True)
            for r in zero[first].tolist():
                report.note("coordinates.suspect", format_source(parsed.img_rel[img_index[r]], int(lines[r])),
                             "a coordinate is 0, which 1-based VOC files never have: this file looks 0-based "
                             f"(datumaro, CVAT, Roboflow); read it with {option('voc_origin', 0)}")
    else:
        x, y = c[:, 0].copy(), c[:, 1].copy()
        w, h = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]

    rels_all = parsed.img_rel
    src_files = [rels_all[i] for i in img_index.tolist()]
    # images dropped above have no objects, so the annotation image indices only need renumbering
    if not keep.all():
        img_index = (np.cumsum(keep) - 1)[img_index]
    kept = np.flatnonzero(keep).tolist()
    # object Series: pandas would otherwise infer a str dtype and turn None into NaN
    images = {
        "file_name": _objects([file_names[i] for i in kept]),
        "width": widths[keep], "height": heights[keep],
        "path": _objects([paths[i] for i in kept]),
        "src_file": _objects([rels_all[i] for i in kept]),
    }
    annotations = {
        "image": img_index, "category": _objects(parsed.names), "x": x, "y": y, "w": w, "h": h,
        "attributes": _objects(parsed.attrs), "src_file": _objects(src_files), "src_line": lines,
    }
    return images, annotations


# ---------------------------------------------------------------------------------------------- streaming
def auto_workers(path: Path, *, options: ReadOptions) -> int:
    """Processes worth reading ``path`` with when none are asked for: one per 1,000 XML files above
    POOL_THRESHOLD (at most 8; the engine caps it by the cores), else 1.

    >>> auto_workers(Path("sample_data/voc"), options=ReadOptions())
    1
    """
    src = Path(path)
    if not src.is_dir():
        return 1
    _origin(options)  # a bad voc_origin raises here, as the whole read's listing would
    xml_dir = src / "Annotations" if (src / "Annotations").is_dir() else src
    # counted only as far as the answer needs (the plan lists and sorts them all once, after this): 0.1 s less
    # wall time on 20,000 files; the large benchmark's process tree is 10-15 MiB higher than with the whole
    # listing here (allocator effects, measured twice), still below fafc6fc's (212 against 220 MiB)
    n = sum(1 for _ in islice(walk_files(xml_dir, ".xml", Skips()), (_MAX_WORKERS + 1) * 1000))
    return 1 if n <= POOL_THRESHOLD else max(1, min(_MAX_WORKERS, n // 1000))
