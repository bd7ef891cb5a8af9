"""The one image resolver: the names, places and sizes of the images a source names, and the ``image.*`` notes.

Every reader that finds images on disk does it through :class:`ImageRoot`, so each rule lives here once:

- **Names.** A name written in an input is data, not a path to trust: :meth:`ImageRoot.name` makes it a clean
  relative POSIX name (:func:`prelabel.paths.safe_relative`). An unsafe one (absolute, a ``..`` segment) is
  refused (None: the reader leaves the image out or fails, as its format says; with ``refused``, the reader's
  words for what it does, one ``image.unsafe_name`` note saying so), or replaced by the reader's ``fallback``
  with one ``image.unsafe_name`` note where it was written, naming both. With ``urls``, a URL is named by the
  shared rule (:func:`prelabel.paths.image_name`: ``s3://bucket/key`` is ``key``).
  A table names its images by paths too (:meth:`ImageRoot.relate_all`, many distinct names at once): one under
  the root is named relative to it; an absolute one outside it is named relative to the common folder of all
  such paths (never opened), with one ``image.unsafe_name`` note saying so (:meth:`ImageRoot.outside_note`).
- **Places.** :meth:`ImageRoot.place` looks the name up under the images root (never escaping it; a root of
  None finds nothing); a reader that looks files up its own way (a folder listing, several candidate names)
  hands the path it found to :meth:`ImageRoot.settle`; one that needs a file only for an image without a
  recorded size (COCO, tables) hands :meth:`ImageRoot.path_of` (not looked up: no file, no size).
- **Sizes.** The size recorded in the annotation file when there is one, else the image file's header
  (:func:`prelabel.imagesize.image_size`, EXIF orientation applied, never a decode), counted;
  :meth:`ImageRoot.settle_all` reads many headers at once in threads (:func:`~prelabel.imagesize.image_sizes`).
  An image whose size stays unknown is not placed (``size`` None, nothing counted): the reader leaves it out
  and drops its annotations (``dropped.no_image``) with the reason :meth:`ImageRoot.why_unsized` gives, the
  same words in every format (only what the format could have recorded is its own).
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
import posixpath
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import option
from .imagesize import image_size, image_sizes
from .paths import image_name, is_absolute, is_url, safe_join, safe_relative, why_unsafe
from .report import Report

__all__ = ["ImageRoot", "Named", "Placed", "Size", "common_folder", "outside_example", "outside_path", "relative_to"]

Size = tuple[int, int]

MISSING = "{} image(s) not found under {}"
FROM_HEADER = "{} image size(s) read from the image files' headers"
FROM_DATA = "{} image size(s) read from the header of the image data embedded in the annotation file"


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*(?:/[A-Za-z0-9_\-][A-Za-z0-9_.\-]*)*")


def outside_path(name: str) -> str:
    """An absolute name outside the images root as a POSIX path without a drive letter.

    >>> outside_path("C:/data/a.jpg"), outside_path("/data/a.jpg")
    ('/data/a.jpg', '/data/a.jpg')
    """
    p = name.replace("\\", "/")
    return p[2:] if len(p) > 1 and p[1] == ":" else p


def relative_to(name: str, common: str) -> str | None:
    """The absolute ``name`` outside the root, named relative to ``common`` (the common folder of such names).

    >>> relative_to("/data/set/a/x.jpg", "/data/set")
    'a/x.jpg'
    """
    return safe_relative(posixpath.relpath(outside_path(name), common))


def common_folder(names: Iterable[str], start: str | None = None) -> str | None:
    """The common folder of absolute ``names`` outside the root (of their folders), with ``start`` (the common
    folder of the names seen so far, for a plan that sees them a piece at a time); None without any.

    >>> common_folder(["/d/s/a/x.jpg", "/d/s/y.jpg"]), common_folder(["/d/t/z.jpg"], start="/d/s")
    ('/d/s', '/d')
    """
    folders = [posixpath.dirname(outside_path(n)) for n in names] + ([start] if start is not None else [])
    return posixpath.commonpath(folders) if folders else None


def outside_example(raw: str, common: str) -> str:
    """How the note about absolute names outside the root shows one: ``'raw' -> 'name'``.

    >>> print(outside_example("/d/s/a/x.jpg", "/d/s"))
    '/d/s/a/x.jpg' -> 'a/x.jpg'
    """
    return f"{raw!r} -> {relative_to(raw, common)!r}"


@dataclass
class Named:
    """The names :meth:`ImageRoot.relate_all` gave many names from a source: per name, its safe relative
    ``names`` (None: unusable) and ``paths`` under the root (not looked up; None without a root or outside it);
    ``why`` (index -> why a name is unusable, for the reader's drops); ``outside``, the indices of absolute
    names outside the root, named relative to ``common``, the first as ``example`` (``'raw' -> 'name'``)."""

    names: list[str | None]
    paths: list[str | None]
    why: dict[int, str] = field(default_factory=dict)
    outside: list[int] = field(default_factory=list)
    common: str | None = None
    example: str = ""


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
        self._prefixes: list[str] | None = None
        self._root_path = Path(self.root) if self.root is not None else None

    # ------------------------------------------------------------------ names
    def name(self, raw: str, *, at: str, fallback: str | None = None, refused: str = "",
             urls: bool = False) -> str | None:
        """``raw`` as a safe relative name; when it is unsafe, ``fallback`` (made safe) with an
        ``image.unsafe_name`` note at ``at`` naming both, or None without a fallback: with ``refused`` (what the
        reader does with the image) one ``image.unsafe_name`` note saying so, else no note (the reader decides).
        ``urls``: a URL (``s3://bucket/key``, ``https://host/a.jpg?sig=...``) is named by the shared rule,
        :func:`prelabel.paths.image_name`.

        >>> ImageRoot(None, report=Report()).name("dir\\\\.\\\\a.jpg", at="x"), ImageRoot(None, report=Report()).name("/etc/x.png", at="x")
        ('dir/a.jpg', None)
        >>> rep = Report()
        >>> ImageRoot(None, report=rep).name("s3://bkt/a.jpg", at="x", urls=True)
        'a.jpg'
        >>> ImageRoot(None, report=rep).name("../a.jpg", at="f#images[3]", refused="the image is left out")
        >>> [(d.code, d.source, d.message) for d in rep.diagnostics]
        [('image.unsafe_name', 'f#images[3]', "image name '../a.jpg' is unsafe ('..' segment escapes the root); the image is left out")]
        """
        name = image_name(raw)[0] if urls and is_url(raw) else safe_relative(raw)
        if name is not None:
            return name
        why = self.why_refused(raw, urls=urls)
        if fallback is None:
            if refused:
                self.report.note("image.unsafe_name", at, f"image name {raw!r} is unsafe ({why}); {refused}")
            return None
        name = safe_relative(fallback) or "image"
        self.report.note("image.unsafe_name", at, f"image name {raw!r} is unsafe ({why}); using {name!r} instead")
        return name

    @staticmethod
    def why_refused(raw: str, *, urls: bool = False) -> str:
        """Why :meth:`name` refuses ``raw`` (``urls`` as there), for a reader's drops; "" when it does not.

        >>> ImageRoot.why_refused("../a.jpg"), ImageRoot.why_refused("s3://bkt/", urls=True), ImageRoot.why_refused("a.jpg")
        ("'..' segment escapes the root", 's3: URL without a key', '')
        """
        if urls and is_url(raw):
            return image_name(raw)[1]
        return why_unsafe(raw) or ""

    def path_of(self, name: str) -> str | None:
        """Where the safe relative ``name`` would be under the root (None without a root), not looked up: for a
        reader that needs a file only when the annotation file lacks its size (:meth:`settle_all` reads its
        header; a file not there gives no size, and is not counted missing)."""
        return str(self._root_path / name) if self._root_path is not None else None

    def prefixes(self) -> list[str]:
        """The root made absolute and symlink-resolved (whichever a source's absolute paths were written from),
        longest first: an absolute name under one of them is under the root."""
        if self._prefixes is None:
            r = Path(self.root) if self.root is not None else None
            self._prefixes = [] if r is None else sorted({p.as_posix().rstrip("/") for p in (r.absolute(), r.resolve())},
                                                         key=len, reverse=True)
        return self._prefixes

    def relate(self, raw: str) -> tuple[str | None, str | None, str]:
        """(safe relative name, path under the root, kind) of a name from a table: kind is ``ok``, ``outside``
        (an absolute path outside the root: see :meth:`relate_all`; never opened) or ``unsafe``. A name under
        the root is named relative to it; a URL (``s3://bucket/key``, ``https://host/a.jpg?sig=...``) by the
        shared rule, :func:`prelabel.paths.image_name`. The path is not looked up.

        >>> ImageRoot(None, report=Report()).relate("./dir//a.jpg"), ImageRoot(None, report=Report()).relate("/x/a.jpg")
        (('dir/a.jpg', None, 'ok'), (None, None, 'outside'))
        """
        if _PLAIN_NAME.fullmatch(raw):  # plain ASCII segments, none "." or "..": the name safe_relative gives
            return raw, self.path_of(raw), "ok"
        r = image_name(raw)[0] if is_url(raw) else safe_relative(raw)
        if r is not None:
            return r, self.path_of(r), "ok"
        if is_url(raw):
            return None, None, "unsafe"
        norm = raw.replace("\\", "/")
        if is_absolute(raw) and "\x00" not in raw and ".." not in norm.split("/"):
            under = next((rp for rp in self.prefixes() if norm.startswith(rp + "/")), None)
            if under is not None:  # under the images root: its header may be read
                return safe_relative(norm[len(under) + 1:]), raw, "ok"
            return None, None, "outside"
        return None, None, "unsafe"

    def relate_all(self, raws: Sequence[str | None], *, common: str | None = None) -> Named:
        """:meth:`relate` of many distinct names (None: no name), the absolute ones outside the root named
        relative to ``common`` (a plan's, for the whole source), else to the common folder of their folders.
        Writes no note: the reader writes :meth:`outside_note` once for its source.

        >>> n = ImageRoot(None, report=Report()).relate_all(["/d/s/a/x.jpg", "b.jpg", "../c.jpg", "/d/s/y.jpg", None])
        >>> n.names, n.common, n.example, n.why
        (['a/x.jpg', 'b.jpg', None, 'y.jpg', None], '/d/s', "'/d/s/a/x.jpg' -> 'a/x.jpg'", {2: "unsafe image file name '../c.jpg': '..' segment escapes the root", 4: 'no image name'})
        """
        out = Named(names=[None] * len(raws), paths=[None] * len(raws))
        for i, raw in enumerate(raws):
            if raw is None:
                out.why[i] = "no image name"
                continue
            out.names[i], out.paths[i], kind = self.relate(raw)
            if kind == "outside":
                out.outside.append(i)
            elif kind == "unsafe":
                out.why[i] = f"unsafe image file name {raw!r}: {why_unsafe(raw)}"
        if out.outside:
            out.common = common if common is not None else common_folder(str(raws[i]) for i in out.outside)
            for i in out.outside:
                out.names[i] = relative_to(str(raws[i]), str(out.common))
                if out.names[i] is None:
                    out.why[i] = f"unsafe image file name {raws[i]!r}"
            out.example = outside_example(str(raws[out.outside[0]]), str(out.common))
        return out

    def outside_note(self, count: int, common: str, example: str, *, at: str) -> None:
        """The one ``image.unsafe_name`` note (info) about ``count`` absolute names outside the root named
        relative to ``common`` (:meth:`relate_all`), ``example`` the first, written at ``at``."""
        self.report.note("image.unsafe_name", at, f"{count} absolute image path(s) written relative to {common} (e.g. "
                         f"{example}); give the images root ({option('images')}) to choose", severity="info")

    def why_unsized(self, name: str, path: str | None, *, lacks: str = "") -> str:
        """Why the image ``name`` has no size, for the reader's drops of its annotations (``dropped.no_image``):
        ``lacks``, what the annotation file could have recorded and does not (empty for a format that records
        no size), then why no file gave it: no images root, no file at ``path`` (None: not found under the
        root), or a file whose header gives none.

        >>> from prelabel.errors import spell
        >>> spell(ImageRoot(None, report=Report()).why_unsized("a.jpg", None, lacks="no width/height in the file"), cli=True)
        "image 'a.jpg' has no known size: no width/height in the file, and no images root (--images) to read it from"
        >>> ImageRoot("imgs", report=Report()).why_unsized("a.jpg", "imgs/a.jpg")
        "image 'a.jpg' has no known size: no such file under imgs"
        """
        if self.root is None:
            where = f"no images root ({option('images')}) to read it from"
        elif path is None or not os.path.isfile(path):
            where = f"no such file under {self.root}"
        else:
            where = "its file's header gives none (not an image, or a format not known)"
        return f"image {name!r} has no known size: {lacks + ', and ' if lacks else ''}{where}"

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

