"""The COCO writer: a dataset arriving in chunks of whole images (every conversion), written atomically and
in shards of whole images when over the size limit.

Each chunk is turned into bytes as it arrives (:class:`~prelabel.converters.coco.CocoTables` with id bases) and
appended to two temporary files beside the output: the images and the annotations, each row followed by a
comma. Only a few numbers per image stay in memory (the byte length of its image entry and of its
annotations), so memory does not grow with the annotations. :meth:`CocoStreamWriter.finish` writes the
categories (known only at the end) and assembles the document, or its shards of whole images, from the
temporary files. The bytes equal ``coco_bytes`` of the whole dataset.

Example:
    >>> import tempfile, pathlib
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.coco_tables import coco_bytes
    >>> parts = [Dataset.build(images={"file_name": [f"{i}.jpg"], "width": [8], "height": [8]},
    ...     categories={"name": ["cat"]}, annotations={"image": [0], "category": ["cat"], "x": [1.0],
    ...     "y": [1.0], "w": [2.0], "h": [2.0]}) for i in range(2)]
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.json"
    >>> w = CocoStreamWriter(out)
    >>> for part in parts:
    ...     w.add(part)
    >>> [p.name for p in w.finish(parts[0].categories)]
    ['out.json']
    >>> out.read_bytes() == coco_bytes(Dataset.concat(parts))
    True
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pandas as pd

from ..gcpause import gc_paused
from ..model import Dataset
from .coco_tables import DEFAULT_MAX_FILE_SIZE, JSON_OPT, CocoTables, category_dicts, category_ids, dumps
from .coco_validate import ValidationResult, adder, check_category_table, validate_dataset

__all__ = ["ADD_ROWS", "CocoStreamWriter", "Piece", "greedy_shards", "image_slices", "serialize", "serialize_slices",
           "shard_paths", "split_shards", "write", "write_json_atomic"]

_COPY = 1 << 20


def _file_mode() -> int:
    """The mode a new file gets from ``open`` (0o666 less the umask): a temporary file from mkstemp is 0o600,
    which would make the outputs private to their owner. The umask is read without changing it (threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def write_json_atomic(path: str | Path, data: bytes | Iterable[bytes]) -> None:
    """Write bytes (or a sequence of byte pieces, written in order) to ``path`` atomically: a temporary file
    in the same folder, fsync, then rename. The file gets the mode ``open`` would give it (0o666 less the
    umask)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                f.writelines(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def shard_paths(path: str | Path, count: int) -> list[Path]:
    p = Path(path)
    return [p.with_name(f"{p.stem}-{i:03d}{p.suffix}") for i in range(1, count + 1)]


def greedy_shards(costs: Sequence[int], overhead: int, max_file_size: int) -> list[tuple[int, int]]:
    """[start, stop) image ranges: whole images added while the shard stays under the limit."""
    out: list[tuple[int, int]] = []
    start, size = 0, overhead
    for i, cost in enumerate(costs):
        if i > start and size + cost > max_file_size:
            out.append((start, i))
            start, size = i, overhead
        size += cost
    if len(costs) > start or not out:
        out.append((start, len(costs)))
    return out


def split_shards(coco: Mapping[str, Any], *, max_file_size: int) -> list[dict[str, Any]]:
    """Split a COCO document into complete documents of whole images, each under ``max_file_size`` bytes
    where one image allows it (an image larger than the limit on its own gets a shard of its own)."""
    base = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    overhead = len(dumps({**base, "images": [], "annotations": []}))
    by_image: dict[int, list[dict[str, Any]]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    images = list(coco["images"])
    costs = [len(dumps(im)) + 1 + sum(len(dumps(a)) + 1 for a in by_image.get(im["id"], [])) for im in images]
    shards: list[dict[str, Any]] = []
    for s, e in greedy_shards(costs, overhead, max_file_size):
        anns = [a for im in images[s:e] for a in by_image.get(im["id"], [])]
        shards.append({**base, "images": images[s:e], "annotations": anns})
    return shards


# annotation rows serialized at a time by CocoStreamWriter.add (a larger chunk is cut between images)
ADD_ROWS = 100_000


def image_slices(ds: Dataset, rows: int) -> Iterator[Dataset]:
    """``ds`` cut into runs of whole images of about ``rows`` annotation rows (``ds`` itself when it is small
    or its rows are not in image order)."""
    at = ds.annotations["image"].to_numpy(dtype=np.int64)
    n_img = len(ds.images)
    if len(at) <= rows or n_img < 2 or not bool((at[1:] >= at[:-1]).all()):
        yield ds
        return
    ends = np.cumsum(np.bincount(at, minlength=n_img))   # rows up to and including each image
    cuts = np.unique(np.searchsorted(ends, np.arange(rows, int(ends[-1]), rows), side="left") + 1)
    bounds = [0, *[int(c) for c in cuts if 0 < c < n_img], n_img]
    row_at = np.concatenate([[0], ends])
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        r0, r1 = int(row_at[lo]), int(row_at[hi])
        ann = ds.annotations.iloc[r0:r1].reset_index(drop=True)
        ann["image"] = ann["image"].to_numpy(dtype=np.int64) - lo
        yield Dataset(images=ds.images.iloc[lo:hi].reset_index(drop=True), categories=ds.categories,
                      annotations=ann, report=ds.report)


@dataclass(frozen=True)
class Piece:
    """A chunk as COCO bytes (:func:`serialize`): its image entries and annotation rows, each followed by a
    comma, the byte length of each image entry and of each image's rows, the rows per category name, and what
    validating it found. Small enough to send from a Dask worker to the client that writes the file."""

    image_base: int
    annotation_base: int
    head: bytes
    images: bytes
    annotations: bytes
    image_len: np.ndarray       # bytes of each image entry (without its comma)
    image_ann_len: np.ndarray   # bytes of each image's annotation rows (commas included)
    n_annotations: int
    by_category: dict[str, int]
    errors: list[str]
    warnings: list[str]


def serialize(ds: Dataset, *, image_base: int, annotation_base: int, rle: str = "compressed",
              info: Mapping[str, Any] | None = None, allow_outside: bool = False,
              seen_names: dict[str, tuple[int, Any]] | None = None, annotations_to: IO[bytes] | None = None) -> Piece:
    """``ds`` as the bytes :class:`CocoStreamWriter` appends after ``image_base`` images and
    ``annotation_base`` annotations (its ids follow them), validated as written (positions and ids counted over
    the whole document; ``seen_names``: the file names written before, updated). ``annotations_to``: the
    writer's own file of annotation rows, written as they are made (the piece then carries none: its rows are
    never all in memory at once)."""
    t = CocoTables(ds, rle=rle, info=info, image_base=image_base, annotation_base=annotation_base)
    res = validate_dataset(t, allow_outside=allow_outside, check_categories=False, seen_names=seen_names)
    n_img = len(t.images)
    images = b""
    image_len = np.zeros(0, dtype=np.int64)
    if n_img:
        with gc_paused():
            pieces = [orjson.dumps(im, option=JSON_OPT) for im in t.images]
        images = b",".join(pieces) + b","
        image_len = np.fromiter(map(len, pieces), dtype=np.int64, count=n_img)
    row_len = np.zeros(0, dtype=np.int64)
    annotations = b""
    if t.n:
        lengths: list[np.ndarray] = []
        if annotations_to is not None:
            annotations_to.writelines(t.annotation_chunks(lengths, trailing_comma=True))
        else:
            annotations = b"".join(t.annotation_chunks(lengths, trailing_comma=True))
        row_len = np.concatenate(lengths)
    per_image = np.bincount(t.image_id - 1 - image_base, weights=row_len, minlength=n_img).astype(np.int64)
    return Piece(image_base=image_base, annotation_base=annotation_base, head=t.head(), images=images,
                 annotations=annotations, image_len=image_len, image_ann_len=per_image, n_annotations=t.n,
                 by_category=dict(t.by_category), errors=list(res.errors), warnings=list(res.warnings))


def serialize_slices(ds: Dataset, *, image_base: int, annotation_base: int, rle: str = "compressed",
                     info: Mapping[str, Any] | None = None, allow_outside: bool = False,
                     seen_names: dict[str, tuple[int, Any]] | None = None,
                     annotations_to: IO[bytes] | None = None) -> Iterator[Piece]:
    """The pieces of ``ds`` appended after ``image_base`` images and ``annotation_base`` annotations: ``ds``
    cut into runs of whole images of about :data:`ADD_ROWS` rows (:func:`image_slices`), each run made into a
    piece by :func:`serialize` (its arguments) after the runs before it. A run is serialized when the piece
    before it has been taken."""
    for part in image_slices(ds, ADD_ROWS):
        piece = serialize(part, image_base=image_base, annotation_base=annotation_base, rle=rle, info=info,
                          allow_outside=allow_outside, seen_names=seen_names, annotations_to=annotations_to)
        image_base += len(part.images)
        annotation_base += piece.n_annotations
        yield piece
        del piece  # not held while the next run is serialized


class CocoStreamWriter:
    """Write a COCO document chunk by chunk: :meth:`add` each chunk (images in output order, their rows),
    then :meth:`finish` with the final category table; :meth:`abort` removes the temporary files.

    Every chunk is validated as it is written (:func:`validate_dataset`, positions and ids counted over the
    whole document); :attr:`validation` holds the problems, capped as :func:`validate` caps them.
    """

    def __init__(self, path: str | Path, *, max_file_size: int = DEFAULT_MAX_FILE_SIZE, rle: str = "compressed",
                 info: Mapping[str, Any] | None = None, allow_outside: bool = False) -> None:
        self.path = Path(path)
        self.max_file_size = int(max_file_size)
        self.rle = rle
        self.info = info
        self.allow_outside = allow_outside
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._files: list[str] = []
        self._images = self._temp("images")
        self._anns = self._temp("annotations")
        self.n_images = 0
        self.n_annotations = 0
        self.by_category: dict[str, int] = {}
        self._image_len: list[np.ndarray] = []       # bytes of each image entry (without its comma)
        self._image_ann_len: list[np.ndarray] = []   # bytes of each image's annotation rows (commas included)
        self.validation = ValidationResult()
        self._add_error = adder(self.validation.errors)
        self._head = b""
        self._names: dict[str, tuple[int, Any]] = {}   # every file_name written so far: duplicates are refused

    def _temp(self, what: str) -> IO[bytes]:
        fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.{what}.", suffix=".tmp", dir=self.path.parent)
        self._files.append(name)
        return os.fdopen(fd, "w+b")

    # ------------------------------------------------------------------ chunks
    def add(self, ds: Dataset) -> None:
        """Append one chunk: its images after those already written, its annotation rows after theirs.

        A large chunk (a whole read) is written in slices of whole images of about :data:`ADD_ROWS` rows, with
        the same bytes: its COCO entries are never all in memory at once."""
        for piece in serialize_slices(ds, image_base=self.n_images, annotation_base=self.n_annotations,
                                      rle=self.rle, info=self.info, allow_outside=self.allow_outside,
                                      seen_names=self._names, annotations_to=self._anns):
            self.add_piece(piece)
            del piece  # written: not held while the next run is serialized

    def add_piece(self, piece: Piece) -> None:
        """Append a chunk already turned into bytes by :func:`serialize` with this writer's bases (the number
        of images and annotations written before it), here or on another machine."""
        if piece.image_base != self.n_images or piece.annotation_base != self.n_annotations:
            raise ValueError(f"a piece made for images from {piece.image_base} and annotations from "
                             f"{piece.annotation_base} comes after {self.n_images} and {self.n_annotations}")
        if not self._head:
            self._head = piece.head
        for e in piece.errors:
            if not e.startswith("..."):
                self._add_error(e)
        self.validation.warnings.extend(piece.warnings)
        self._images.write(piece.images)
        self._anns.write(piece.annotations)
        self._image_len.append(piece.image_len)
        self._image_ann_len.append(piece.image_ann_len)
        for name, c in piece.by_category.items():
            self.by_category[name] = self.by_category.get(name, 0) + c
        self.n_images += len(piece.image_len)
        self.n_annotations += piece.n_annotations

    # ------------------------------------------------------------------ the end
    def check(self, categories: pd.DataFrame) -> ValidationResult:
        """The validation of the whole document, the final category table included."""
        res = ValidationResult(errors=[], warnings=list(self.validation.warnings))
        add = adder(res.errors)
        check_category_table(category_dicts(categories), add)
        for e in self.validation.errors:
            add(e)
        res.counts = {"images": self.n_images, "annotations": self.n_annotations, "categories": len(categories)}
        return res

    def finish(self, categories: pd.DataFrame) -> list[Path]:
        """Write the document (or its shards) with ``categories`` (the final table); returns the paths."""
        try:
            return self._assemble(categories)
        finally:
            self.abort()

    def abort(self) -> None:
        """Close and remove the temporary files (nothing is written at the output path)."""
        for f in (self._images, self._anns):
            if not f.closed:
                f.close()
        for name in self._files:
            if os.path.exists(name):
                os.unlink(name)
        self._files = []

    def _assemble(self, categories: pd.DataFrame) -> list[Path]:
        cats = category_dicts(categories, category_ids(categories))
        head = self._head or CocoTables(Dataset.build(), info=self.info).head()
        tail = b',"categories":' + dumps(cats) + b"}"
        img_size = self._images.tell()
        ann_size = self._anns.tell()
        self._images.flush()
        self._anns.flush()
        img_body = max(img_size - 1, 0)  # without the last comma
        ann_body = max(ann_size - 1, 0)
        total = len(head) + 2 + img_body + len(b',"annotations":[') + ann_body + 1 + len(tail)
        if total <= self.max_file_size:
            write_json_atomic(self.path, self._pieces([
                head + b"[", (self._images, 0, img_body), b'],"annotations":[', (self._anns, 0, ann_body),
                b"]" + tail]))
            return [self.path]
        return self._shards(cats)

    def _shards(self, cats: list[dict[str, Any]]) -> list[Path]:
        info = self._head[len(b'{"info":'):-len(b',"licenses":[],"images":')]
        head = b'{"info":' + info + b',"licenses":[],"categories":' + dumps(cats) + b',"images":['
        overhead = len(head) + len(b'],"annotations":[]}')
        img_len = np.concatenate(self._image_len) if self._image_len else np.zeros(0, dtype=np.int64)
        ann_len = np.concatenate(self._image_ann_len) if self._image_ann_len else np.zeros(0, dtype=np.int64)
        costs = (img_len + 1 + ann_len).tolist()
        img_off = np.concatenate([[0], np.cumsum(img_len + 1)])
        ann_off = np.concatenate([[0], np.cumsum(ann_len)])
        ranges = greedy_shards(costs, overhead, self.max_file_size)
        paths = shard_paths(self.path, len(ranges))
        for sp, (s, e) in zip(paths, ranges, strict=True):
            ilo, ihi = int(img_off[s]), int(img_off[e])
            alo, ahi = int(ann_off[s]), int(ann_off[e])
            write_json_atomic(sp, self._pieces([
                head, (self._images, ilo, max(ihi - ilo - 1, 0)), b'],"annotations":[',
                (self._anns, alo, max(ahi - alo - 1, 0)), b"]}"]))
        return paths

    @staticmethod
    def _pieces(parts: list[bytes | tuple[IO[bytes], int, int]]) -> Any:
        """Bytes, and (file, offset, length) ranges read in 1 MiB blocks, in order."""
        for part in parts:
            if isinstance(part, bytes):
                yield part
                continue
            f, off, n = part
            f.seek(off)
            while n > 0:
                block = f.read(min(_COPY, n))
                if not block:
                    break
                n -= len(block)
                yield block


def write(ds_or_coco: Dataset | Mapping[str, Any], path: str | Path, *, max_file_size: int = DEFAULT_MAX_FILE_SIZE,
          rle: str = "compressed", info: Mapping[str, Any] | None = None) -> list[Path]:
    """Write COCO to ``path`` (or to shards beside it when over ``max_file_size``); returns the paths written.

    A Dataset goes through :class:`CocoStreamWriter` (the writer of every conversion, as one chunk); a COCO
    document (a dict) is written as it is, or split with :func:`split_shards`.

    Example:
        >>> import tempfile, pathlib
        >>> from prelabel.model import Dataset
        >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [8], "height": [8]})
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "out.json"
        >>> [p.name for p in write(ds, out)]
        ['out.json']
    """
    if isinstance(ds_or_coco, Dataset):
        writer = CocoStreamWriter(path, max_file_size=max_file_size, rle=rle, info=info, allow_outside=True)
        try:
            writer.add(ds_or_coco)
            return writer.finish(ds_or_coco.categories)
        finally:
            writer.abort()
    coco = ds_or_coco
    data = dumps(coco)
    if len(data) <= max_file_size:
        write_json_atomic(path, data)
        return [Path(path)]
    shards = split_shards(coco, max_file_size=max_file_size)
    paths = shard_paths(path, len(shards))
    for p, doc in zip(paths, shards, strict=True):
        write_json_atomic(p, dumps(doc))
    return paths
