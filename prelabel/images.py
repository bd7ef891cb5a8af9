"""The one image resolver: the names, places and sizes of the images a source names, and the ``image.*`` notes.

Every reader that finds images on disk does it through :class:`ImageRoot`, so each rule lives here once:

- **Names.** A name written in an input is data, not a path to trust: :meth:`ImageRoot.name` makes it a clean
  relative POSIX name (:func:`prelabel.paths.safe_relative`). An unsafe one (absolute, a ``..`` segment) is
  refused (None: the reader leaves the image out or fails, as its format says), or replaced by the reader's
  ``fallback`` with one ``image.unsafe_name`` note where it was written, naming both.
- **Places.** :meth:`ImageRoot.place` looks the name up under the images root (never escaping it; a root of
  None finds nothing); a reader that looks files up its own way (a folder listing, several candidate names)
  hands the path it found to :meth:`ImageRoot.settle`.
- **Sizes.** The size recorded in the annotation file when there is one, else the image file's header
  (:func:`prelabel.imagesize.image_size`, EXIF orientation applied, never a decode), counted;
  :meth:`ImageRoot.settle_all` reads many headers at once in threads (:func:`~prelabel.imagesize.image_sizes`).
  An image whose size stays unknown is not placed (``size`` None, nothing counted): the reader leaves it out
  and drops its annotations (``dropped.no_image``) with its own reason.
- **Notes.** What was counted is written by :meth:`ImageRoot.notes` as tallies
  (:meth:`prelabel.report.Report.tally`), one wording a rule, each shown at the first thing it counted
  (``file:line``), so that the notes of a source's parts add up to those of one read
  (:func:`prelabel.adapters.parts.merge`): ``image.missing`` (images placed whose file is not under the root the
  user named), ``image.size_from_header`` (sizes read from the image files' headers, and from embedded image
  data).

Example:
    >>> import tempfile, pathlib
    >>> from PIL import Image
    >>> from prelabel.report import Report
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (40, 30)).save(d / "a.png")
    >>> rep = Report()
    >>> root = ImageRoot(d, report=rep)
    >>> a = root.place("a.png", at="ann.json:3")
    >>> a.name, a.path == str(d / "a.png"), a.size
    ('a.png', True, (40, 30))
    >>> root.place("b.png", at="ann.json:9", size=(8, 6)).path is None
    True
    >>> root.name("../x.png", at="ann.json:12", fallback="x.png")
    'x.png'
    >>> root.notes()
    >>> [(n.code, n.source, n.message) for n in rep.diagnostics][1:]  # doctest: +NORMALIZE_WHITESPACE +ELLIPSIS
    [('image.missing', 'ann.json:9', '1 image(s) not found under ...'),
     ('image.size_from_header', 'ann.json:3', "1 image size(s) read from the image files' headers")]
    >>> rep.diagnostics[0].message
    "image name '../x.png' is unsafe ('..' segment escapes the root); using 'x.png' instead"
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .imagesize import image_size, image_sizes
from .paths import safe_join, safe_relative, why_unsafe
from .report import Report

__all__ = ["ImageRoot", "Placed", "Size"]

Size = tuple[int, int]

MISSING = "{} image(s) not found under {}"
FROM_HEADER = "{} image size(s) read from the image files' headers"
FROM_DATA = "{} image size(s) read from the header of the image data embedded in the annotation file"


@dataclass(frozen=True, slots=True)
class Placed:
    """An image as a reader keeps it: its safe relative ``name``, its local ``path`` (None when the file was
    not found) and its ``size`` (width, height; None when unknown: the image cannot be kept)."""

    name: str
    path: str | None
    size: Size | None


class ImageRoot:
    """The images root of one read (``root``: a folder, or None when none is known) and the counts of the
    ``image.*`` rules over the images placed, written to ``report`` by :meth:`notes`.

    ``given``: whether the user named this root (the default when there is one): only then is an image whose
    file is not there counted missing; a reader looking beside its annotation files passes False.
    """

    def __init__(self, root: str | os.PathLike[str] | None, *, report: Report, given: bool = True) -> None:
        self.root = str(root) if root is not None else None
        self.report = report
        self.given = given and root is not None
        self.missing = 0
        self.from_header = 0
        self.from_data = 0
        self._at: dict[str, str] = {}  # rule -> where the first thing it counted is

    # ------------------------------------------------------------------ names
    def name(self, raw: str, *, at: str, fallback: str | None = None) -> str | None:
        """``raw`` as a safe relative name; when it is unsafe, ``fallback`` (made safe) with an
        ``image.unsafe_name`` note at ``at`` naming both, or None without a fallback (the reader decides: no
        note is written).

        >>> ImageRoot(None, report=Report()).name("dir\\\\.\\\\a.jpg", at="x"), ImageRoot(None, report=Report()).name("/etc/x.png", at="x")
        ('dir/a.jpg', None)
        """
        name = safe_relative(raw)
        if name is not None or fallback is None:
            return name
        name = safe_relative(fallback) or "image"
        self.report.note("image.unsafe_name", at,
                         f"image name {raw!r} is unsafe ({why_unsafe(raw)}); using {name!r} instead")
        return name

    def lookup(self, name: str) -> str | None:
        """The local file of the safe relative ``name`` under the root, or None (no root, not a file, or a name
        that would escape it). Counts nothing.

        >>> ImageRoot(None, report=Report()).lookup("a.png"), ImageRoot(".", report=Report()).lookup("../etc/passwd")
        (None, None)
        """
        if self.root is None:
            return None
        path = safe_join(self.root, name)
        return str(path) if path is not None and path.is_file() else None

    # ------------------------------------------------------------------ places and sizes
    def place(self, name: str, *, at: str, size: Size | None = None,
              embedded: Callable[[], Size | None] | None = None) -> Placed:
        """The image ``name`` looked up under the root (:meth:`lookup`), then :meth:`settle`\\ d."""
        return self.settle(name, self.lookup(name), at=at, size=size, embedded=embedded)

    def settle(self, name: str, path: str | None, *, at: str, size: Size | None = None,
               embedded: Callable[[], Size | None] | None = None, given: bool | None = None) -> Placed:
        """The image ``name`` whose file is ``path`` (None: not found), as the reader found it: its size is
        ``size`` (recorded in the annotation file), else its file's header, else ``embedded()`` (an image
        embedded in the annotation file, read from its first bytes), each way counted; placed with a size, it is
        counted missing when ``path`` is None and the root was named (``given``: this image's root was, or not,
        for a reader whose images lie in several places).

        >>> root = ImageRoot("imgs", report=Report())
        >>> root.settle("a.png", None, at="f:1", embedded=lambda: (4, 3)), root.missing, root.from_data
        (Placed(name='a.png', path=None, size=(4, 3)), 1, 1)
        """
        if size is None and path is not None:
            size = image_size(path)
            self._count("from_header", at, size is not None)
        if size is None and embedded is not None:
            size = embedded()
            self._count("from_data", at, size is not None)
        if size is not None:
            self._count("missing", at, path is None and (self.given if given is None else given))
        return Placed(name, path, size)

    def settle_all(self, names: Sequence[str], paths: Sequence[str | None], *,
                   at: Sequence[str] | Callable[[int], str], sizes: Sequence[Size | None] | None = None,
                   given: Sequence[bool] | None = None) -> list[Placed]:
        """:meth:`settle` of many images, in order, the headers of those without a recorded size read together
        in threads (:func:`prelabel.imagesize.image_sizes`). ``at``: where each image is named (or a function of
        its index, called only for the first image a rule counts: a reader of many images need not spell every
        place); ``sizes`` None: no size recorded for any (a format that records none, e.g. YOLO).

        >>> root = ImageRoot(None, report=Report())
        >>> root.settle_all(["a.png", "b.png"], [None, None], at=lambda i: f"f:{i + 1}", sizes=[(4, 3), None])
        [Placed(name='a.png', path=None, size=(4, 3)), Placed(name='b.png', path=None, size=None)]
        """
        recorded: Sequence[Size | None] = sizes if sizes is not None else [None] * len(names)
        need = [i for i, (s, p) in enumerate(zip(recorded, paths, strict=True)) if s is None and p is not None]
        read = image_sizes([str(paths[i]) for i in need])
        final = list(recorded)
        for i, size in zip(need, read, strict=True):
            final[i] = size
        where = at if callable(at) else at.__getitem__
        # counted in bulk (a reader of 20,000 images pays no Python call an image): the same counts as settle()
        header = [i for i, size in zip(need, read, strict=True) if size is not None]
        self._count_many("from_header", header, where)
        named = (lambda i: given[i]) if given is not None else (lambda i: self.given)
        self._count_many("missing", [i for i, (p, s) in enumerate(zip(paths, final, strict=True))
                                     if p is None and s is not None and named(i)], where)
        return [Placed(n, p, s) for n, p, s in zip(names, paths, final, strict=True)]

    def _count_many(self, rule: str, hits: list[int], where: Callable[[int], str]) -> None:
        if hits:
            setattr(self, rule, getattr(self, rule) + len(hits))
            self._at.setdefault(rule, where(hits[0]))

    def _count(self, rule: str, at: str, yes: bool) -> None:
        if yes:
            setattr(self, rule, getattr(self, rule) + 1)
            self._at.setdefault(rule, at)

    # ------------------------------------------------------------------ notes
    def notes(self, *, source: str = "", end: int = 0, first: bool = False, part: bool = False) -> None:
        """The tallies of what was counted, one a rule, in this order: ``image.missing``,
        ``image.size_from_header`` (files' headers), ``image.size_from_header`` (embedded data); each shown at
        the first image it counted. ``source``: what the counts are over (the source read; else the root),
        for the parts of one source to add up. ``end``: closing notes, ranked ``end``, ``end + 1``, ``end + 2``;
        ``first``: written where the first part writes them; ``part``: a part of a plan, which writes its counts
        of 0 too (for a tally that is not closing, to stand where one read's does). See
        :meth:`prelabel.report.Report.tally`. Called once, when the reading is done."""
        over = source or self.root or ""
        missing = MISSING.format("{}", (self.root or "the images folder").replace("{", "{{").replace("}", "}}"))
        for k, (code, rule, template, severity) in enumerate((
                ("image.missing", "missing", missing, "warning"),
                ("image.size_from_header", "from_header", FROM_HEADER, "info"),
                ("image.size_from_header", "from_data", FROM_DATA, "info"))):
            count = int(getattr(self, rule))
            if count or (part and not end):
                self.report.tally(code, over, template, (count,), severity=severity, first=first,
                                  end=end + k if end else 0, at=self._at.get(rule, ""))

