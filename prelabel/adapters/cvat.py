"""CVAT for images 1.1 and CVAT for video 1.1 (XML): task, job and project exports.

What becomes what:

- Categories are the labels of ``<meta>`` in their order (labels of type ``tag`` hold no objects and are left
  out). A skeleton label's sub-labels (``<parent>``) are its keypoint names, in ``<meta>`` order; its edges
  come from the label's ``<svg>`` (``<line data-node-from data-node-to>``, turned into 1-based COCO pairs).
- ``box`` is a box; with ``rotation`` (degrees about the box centre, clockwise on screen) it becomes the
  rotated rectangle as a polygon, its enclosing box as the bbox, and ``rotation`` in the attributes.
  ``polygon`` is a polygon; ``ellipse`` a 64-vertex polygon (:func:`prelabel.geometry.ellipse_polygon`);
  ``mask`` (row-major run lengths inside ``left top width height``) a COCO RLE of the whole image with
  ``iscrowd`` 0; ``skeleton`` COCO keypoints (outside node: ``v=0, x=y=0``; occluded: ``v=1``; else ``v=2``;
  bbox = extent of the labelled points).
- ``polyline``, ``cuboid`` and (by default) ``points`` are not areas: each is counted and dropped with
  ``dropped.unsupported``. ``options.cvat_points == "keypoints"`` keeps ``points`` as keypoints of their
  category (named ``"1".."K"``, K the largest count seen; shorter shapes are padded with ``v=0``).
- ``tag`` is image-level: kept in the image attributes as ``tags: [label, ...]`` (one ``image.attribute``
  info note per file); tags are not object annotations and are not counted.
- ``occluded``, ``z_order``, ``group_id``, ``source``, ``track_id``, ``keyframe`` and ``<attribute>`` children go
  to the annotation's attributes (checkbox attributes as booleans, number attributes as numbers, per
  ``<meta>``); a shape inside ``<image>`` marked ``outside="1"`` (datumaro) is dropped as
  ``dropped.outside_frame``.
- Project exports: images are known by their ``subset`` and ``name``; the subset (and ``task_id``) are image
  attributes. When the export holds several subsets (the same name may then be a different picture in each),
  ``file_name`` is ``<subset>/<name>``, as CVAT lays out the exported images (``images/<subset>/``), with an info
  note ``image.by_subset``; with one subset it is the name. A shape with an empty ``label`` is dropped as
  ``dropped.unknown_category``.

Video (tracks): the task's frames are ``start_frame, start_frame + step, ... <= stop_frame`` (``frame_filter``
``step=N``; absolute task frame numbers). Each becomes an image named ``options.frame_pattern`` formatted
with ``frame=<number>`` (default ``frame_000010.png``) of the ``original_size``. A track's shape at a frame is
the listed shape there, else a linear interpolation between the listed shapes around it (boxes, ellipses,
rotation along the shorter arc, polygons and points with the same number of points; other pairs repeat the
earlier shape), else, after its last listed shape, that shape repeated to the end of the task, as CVAT does.
Nothing is written while a track is ``outside``; a track may reappear. The track id and keyframe flag go to
the attributes. The ledger counts per-frame annotations: each frame a track writes counts as one annotation
read (an ``outside`` marker is not an annotation); a listed shape at a frame the task does not have is
dropped with ``dropped.no_image``. A project export with tracks takes its frames from the first task that
describes them.

The file is parsed as a stream with expat (elements are never kept; numbers go straight to flat arrays, labels
are kept once), so a large export needs memory for its annotations, not for its XML tree. :func:`plan` cuts a
file into byte ranges at ``<image>`` boundaries (``<meta>`` read once and carried to every part) and
:func:`read_part` reads one: the engine (:mod:`prelabel.engine`) reads a file of 16-96 MB on two processes
(:func:`auto_workers`) and streams a conversion part by part, so memory follows the part, not the file. A
video export (tracks, frame tags), an image listed in two parts, or a category whose keypoints a later part
changes (a skeleton label missing from ``<meta>``, ``cvat_points="keypoints"`` counts that grow) is read
whole. A DOCTYPE, entity
declaration or external entity is refused with a ReadError naming the file, before anything is expanded. Source
locations are ``file:line`` of each element (of the track for interpolated frames); drops are reported in file
order.

Parts (:func:`plan`, :func:`read_part`; the engine runs them, :func:`prelabel.engine.read_parts`): a CVAT for
images file is cut into byte ranges of about equal size, each starting at an ``<image>`` that follows a
``</image>``; ``<meta>`` is read once by the plan and handed to every part, so a part parses only its own bytes.
Anything that makes a part depend on the rest of the file gives one part (video exports: ``<track>``, an
``interpolation`` task; an image name found in two parts; an XML encoding other than UTF-8) or makes the part
raise ``NeedsWholeRead`` (frame tags, a skeleton label missing from ``<meta>``, points kept as keypoints), and
the engine then reads the file whole. :func:`auto_workers`: two processes for a file of 16 MB to 96 MB (the
worker policy's ``workers``, and its aliases ``cvat_workers`` and ``PRELABEL_CVAT_WORKERS``, decide when given).

Example:
    >>> import tempfile, pathlib
    >>> from prelabel.report import Report
    >>> from prelabel.adapters.base import ReadOptions
    >>> xml = ('<annotations><version>1.1</version><meta><task><labels><label><name>car</name></label>'
    ...        '</labels></task></meta><image id="0" name="a.jpg" width="64" height="48">'
    ...        '<box label="car" occluded="0" xtl="1" ytl="2" xbr="11" ybr="22"/></image></annotations>')
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "annotations.xml"
    >>> _ = p.write_text(xml)
    >>> detect(p)
    0.95
    >>> ds = read(p, options=ReadOptions(), report=Report())
    >>> ds.boxes.tolist(), ds.annotations.loc[0, "attributes"]
    ([[1.0, 2.0, 10.0, 20.0]], {'occluded': False})
"""

from __future__ import annotations

import mmap
import re
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

from ..errors import ReadError
from ..junk import junk_reason
from ..memory import let_go
from ..model import Dataset
from ..paths import safe_relative
from ..report import Report
from .base import ReadOptions
from .cvat_reader import CvatReader, Meta
from .cvat_shapes import BadValue
from .parts import ByteRange

__all__ = ["DESCRIPTION", "NAME", "auto_workers", "detect", "plan", "read", "read_part"]

NAME = "cvat"
DESCRIPTION = "CVAT for images 1.1 / CVAT for video 1.1 XML (task, job and project exports)"

_CHUNK = 1 << 20
_HEAD = 64 * 1024
_FIRST_TAG_RE = re.compile(rb"<([A-Za-z_][\w.:-]*)")
_SPLIT_MIN = 16 * 2**20   # a file at least this large is read by two processes (auto_workers) ...
_SPLIT_MAX = 96 * 2**20   # ... and at most this large: a part's rows are held until they are merged
_CUT_RE = re.compile(rb"</image\s*>\s*(<image[\s/>])")
_ENCODING_RE = re.compile(rb"""<\?xml[^>]*?encoding\s*=\s*["']([^"']*)["']""")
# an <image> start tag and its attributes (group 1; None when they cannot be read from the bytes), or a <track>
_ELEMENT_RE = re.compile(rb"""<(?:image(?=[\s/>])((?:\s+[^\s=/>]+\s*=\s*(?:"[^"]*"|'[^']*'))*\s*/?>)?|track[\s/>])""")
_ATTR_RE = re.compile(rb"""([^\s=/>]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")
_NAME_RE = re.compile(rb'\sname\s*=\s*"([^"]*)"')
_SUBSET_RE = re.compile(rb'\ssubset\s*=\s*"([^"]*)"')
_UNCLEAN_RE = re.compile(rb"\\|//|/\.|(?:^|\0)[/.]|/(?:\0|$)")


# ------------------------------------------------------------------------------------------------ detect
def _xml_root(head: bytes) -> bytes | None:
    """The root element name of an XML file from its first bytes (declaration and comments skipped)."""
    text = re.sub(rb"<\?.*?\?>|<!--.*?-->", b"", head, flags=re.DOTALL)
    m = _FIRST_TAG_RE.search(text)
    return m.group(1) if m else None


def _detect_file(path: Path) -> float:
    if path.suffix.lower() != ".xml" or not path.is_file():
        return 0.0
    with open(path, "rb") as f:
        head = f.read(_HEAD)
    if _xml_root(head) != b"annotations":
        return 0.0
    return 0.95 if (b"<version>" in head or b"<meta>" in head) else 0.3


def _xml_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".xml" and junk_reason(p.name) is None
                  and p.is_file())


def detect(path: Path) -> float:
    """0.95 for an XML whose root is ``<annotations>`` with ``<version>`` or ``<meta>`` (0.9 for a folder
    holding one at its top level); 0.3 for a bare ``<annotations>`` root; else 0."""
    p = Path(path)
    if p.is_dir():
        scores = [_detect_file(f) for f in _xml_files(p)[:20]]
        return 0.9 if scores and max(scores) >= 0.95 else 0.0
    return _detect_file(p)


# ------------------------------------------------------------------------------------------------ read
def _inputs(p: Path, options: ReadOptions) -> tuple[list[Path], Path | None]:
    """The CVAT XML files that ``path`` names (one file, or those at the top of a folder) and the images root."""
    if p.is_dir():
        files = [f for f in _xml_files(p) if _detect_file(f) >= 0.95]
        if not files:
            raise ReadError(str(p), "no CVAT XML file (root <annotations> with <meta>) in this folder")
        return files, options.images or (p / "images" if (p / "images").is_dir() else None)
    if not p.is_file():
        raise ReadError(str(p), "no such file")
    return [p], options.images or (p.parent / "images" if (p.parent / "images").is_dir() else None)


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a CVAT XML file (or every CVAT XML at the top of a folder) into a Dataset (see the module doc)."""
    files, root = _inputs(Path(path), options)
    parts = [_Reader(f, options=options, report=report, images_root=root).run() for f in files]
    return parts[0] if len(parts) == 1 else Dataset.concat(parts, report=report)


# ------------------------------------------------------------------------------------------------ parts
@dataclass(frozen=True)
class _Span:
    """A part's context: the bytes it reads are those of its ByteRange; ``meta`` None: the whole file."""

    images_root: str | None
    meta: Meta | None = None
    line0: int = 0       # the lines before ``start``
    first: bool = True   # the part that reports what reading <meta> noted
    last: bool = True    # the part that ends with the file's own </annotations>


def auto_workers(path: Path, *, options: ReadOptions) -> int:
    """Processes for ``path`` when no worker count was asked for (``workers``, its aliases ``cvat_workers`` and
    ``PRELABEL_CVAT_WORKERS`` are read by the engine): 2 for a CVAT file of 16 MB to 96 MB (a folder: its
    largest), else 1.

    >>> auto_workers(Path("sample_data/cvat/annotations.xml"), options=ReadOptions())
    1
    """
    try:
        files, _ = _inputs(Path(path), options)
        size = max(f.stat().st_size for f in files)
    except (ReadError, OSError):
        return 1
    return 2 if _SPLIT_MIN <= size <= _SPLIT_MAX else 1


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[ByteRange]:
    """Up to ``parts`` byte ranges of the source's files, cut at ``<image>`` elements (see the module doc), each
    read by :func:`read_part`; merged in this order (:func:`prelabel.adapters.parts.merge`) they give
    :func:`read`'s dataset and report. One part (the whole source) when it cannot be cut.

    >>> [(p.start > 0, p.stop > p.start) for p in plan(Path("sample_data/cvat"), options=ReadOptions(), parts=2)]
    [(True, True), (True, True)]
    """
    src = Path(path)
    whole = [ByteRange(source=str(src), start=0, stop=0)]
    if parts < 2:
        return whole
    try:
        files, root = _inputs(src, options)
        sizes = [f.stat().st_size for f in files]
    except (ReadError, OSError):
        return whole  # read_part raises read()'s error
    if len(files) > parts:
        return whole
    total = max(sum(sizes), 1)
    images_root = None if root is None else str(root)
    out: list[ByteRange] = []
    for f, size in zip(files, sizes, strict=True):  # a part a file, the others shared by size
        out.extend(_plan_file(f, size, images_root, options, 1 + (parts - len(files)) * size // total))
    return out


def read_part(part: ByteRange, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`, read as :func:`read` reads those bytes (a part without the plan's context: the
    whole source ``part.source``)."""
    report = Report()
    span = part.context
    if not isinstance(span, _Span):
        return read(Path(part.source), options=options, report=report)
    root = None if span.images_root is None else Path(span.images_root)
    if span.meta is None:
        return _Reader(Path(part.source), options=options, report=report, images_root=root).run()
    if span.first:
        report.diagnostics.extend(span.meta.notes)
    reader = _Reader(Path(part.source), options=options, report=report, images_root=root, part=True,
                     line0=span.line0, meta=span.meta)
    reader.span = (part.start, part.stop, span.last)
    return reader.run()


def _line_breaks(text: bytes) -> int:
    """The line breaks in ``text`` as expat counts them (``\\n``, ``\\r\\n`` and ``\\r``)."""
    breaks = text.count(b"\n")
    return breaks + text.count(b"\r") - text.count(b"\r\n") if b"\r" in text else breaks


def _plan_file(f: Path, size: int, images_root: str | None, options: ReadOptions, n: int) -> list[ByteRange]:
    """One file's parts: ``n`` byte ranges after its ``<meta>``, or the whole file as one."""
    whole = [ByteRange(source=str(f), start=0, stop=size, context=_Span(images_root))]
    if n < 2 or size == 0:
        return whole
    with open(f, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        enc = _ENCODING_RE.match(mm, 3 if mm[:3] == b"\xef\xbb\xbf" else 0)
        if enc is not None and enc.group(1).lower().replace(b"-", b"").replace(b"_", b"") != b"utf8":
            return whole  # a part is parsed without the XML declaration, as UTF-8
        meta_end = mm.find(b"</meta>")
        meta = _header(f, mm, meta_end + len(b"</meta>"), images_root, options) if meta_end > 0 else None
        if meta is None or meta.mode == "interpolation":
            return whole  # (a video task: its frames become images at the end of the file)
        cuts = [meta_end + len(b"</meta>")]
        body = size - cuts[0]
        for k in range(1, n):
            m = _CUT_RE.search(mm, cuts[0] + body * k // n)
            if m is None:
                break
            if m.start(1) > cuts[-1]:
                cuts.append(m.start(1))
        if len(cuts) < 2:
            return whole
        bounds = [*cuts, size]
        lines = [_line_breaks(mm[:cuts[0]])]
        if not _names_apart(mm, bounds, lines):
            return whole
        return [ByteRange(source=str(f), start=start, stop=stop, context=_Span(
                    images_root, meta, line0=lines[k], first=k == 0, last=stop == size))
                for k, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))]


def _header(f: Path, mm: mmap.mmap, end: int, images_root: str | None, options: ReadOptions) -> Meta | None:
    """``<meta>`` read from the file's first ``end`` bytes; None when they hold anything else that counts (an
    image, a track, a drop, an error) or the XML is not that simple: the file is then read whole."""
    reader = CvatReader(f, options=options, report=Report(),
                        images_root=None if images_root is None else Path(images_root))
    p = reader.new_parser()
    try:
        p.Parse(mm[:end], False)
    except (ReadError, expat.ExpatError, BadValue, LookupError, ValueError, KeyError, TypeError, IndexError):
        return None
    if (not reader.meta_done or reader.in_meta or reader.stack != ["annotations"] or reader.img_name
            or reader.d_reason or reader.has_tracks or reader.frame_tags or reader.tag_count):
        return None
    return reader.meta()


def _image_keys(tags: list[bytes]) -> list[tuple[str, str]] | None:
    """(subset, name) of each ``<image>`` from its attributes' bytes, as the reader keys it; None when the bytes
    cannot tell (a name missing or written twice, '-quoted values, entities and whitespace that expat turns,
    bytes that are not UTF-8)."""
    joined = b"\0".join(tags)
    names = _NAME_RE.findall(joined)
    if b"'" in joined or len(names) != len(tags):  # (a tag without a name, or with two, fails in read_part)
        return None
    subsets = ([m.group(1) if m else b"" for m in map(_SUBSET_RE.search, tags)] if b"subset" in joined
               else [b""] * len(tags))
    values = b"\0".join([*names, *subsets])
    if any(c in values for c in (b"&", b"\t", b"\n", b"\r")):
        return None
    try:
        text = values.decode("utf-8").split("\0")
    except UnicodeDecodeError:
        return None
    n = len(tags)
    plain = b"\0".join(names)
    if not plain.isascii() or _UNCLEAN_RE.search(plain):  # names safe_relative would change
        text[:n] = [safe_relative(t) or t for t in text[:n]]
    return list(zip(text[n:], text[:n], strict=True))


def _names_apart(mm: mmap.mmap, cuts: list[int], lines: list[int]) -> bool:
    """Whether no image can be listed in two parts (``cuts``: the parts' bounds): the name (and subset) of every
    ``<image>`` read from the bytes, compared as the reader keys them; False also for a ``<track>``, or an
    ``<image>`` whose name cannot be read here (the file is then read whole). ``lines`` (the line breaks before
    the first part) takes the line breaks before each next part. Each part's pages are let go once read, so
    that the file is never resident whole in this process."""
    seen: set[tuple[str, str]] = set()
    total = 0
    for k in range(len(cuts) - 1):
        tags = [m.group(1) for m in _ELEMENT_RE.finditer(mm, cuts[k], cuts[k + 1])]
        keys = _image_keys(tags) if None not in tags else None
        if keys is None:
            return False
        part = set(keys)
        seen |= part
        total += len(part)
        if k < len(cuts) - 2:
            lines.append(lines[-1] + _line_breaks(mm[cuts[k]:cuts[k + 1]]))
        let_go(mm, cuts[k], cuts[k + 1])
    return len(seen) == total


class _Reader(CvatReader):
    """:class:`CvatReader` fed from the file: the whole of it, or a part's bytes (``span``)."""

    span: tuple[int, int, bool] | None = None  # start, stop, and whether the part ends the file

    def _parse(self) -> None:
        """Feed the file (or the part's bytes) to expat piece by piece."""
        p = self.new_parser()
        start, stop, last = self.span or (0, -1, True)
        try:
            with open(self.path, "rb") as f:
                if self.span is not None:
                    p.Parse(b"<annotations>", False)
                    f.seek(start)
                left = stop - start if self.span is not None else -1
                while left:
                    chunk = f.read(_CHUNK if left < 0 else min(_CHUNK, left))
                    if not chunk:
                        break
                    left -= len(chunk) if left > 0 else 0
                    p.Parse(chunk, False)
                if not last:
                    p.Parse(b"</annotations>", False)
                p.Parse(b"", True)
        except ReadError:
            raise
        except expat.ExpatError as e:
            raise ReadError(self.file, f"not well-formed XML: {expat.ErrorString(e.code)}",
                            line=e.lineno + self.line0) from None
        except BadValue as e:
            raise ReadError(self.file, str(e), line=self._line(), element=self._where()) from None
        except KeyError as e:
            raise ReadError(self.file, f"missing attribute {e.args[0]!r}", line=self._line(),
                            element=self._where()) from None
        except (ValueError, TypeError, IndexError, OverflowError) as e:
            raise ReadError(self.file, f"bad value: {e}", line=self._line(), element=self._where()) from None
        except OSError as e:
            raise ReadError(self.file, f"cannot read: {e}") from None
        except LookupError as e:  # an unknown encoding in the XML declaration
            raise ReadError(self.file, f"unsupported XML encoding: {e}", line=1) from None

    def run(self) -> Dataset:
        """The whole file (or part) as one Dataset."""
        self._parse()
        return self._build()
