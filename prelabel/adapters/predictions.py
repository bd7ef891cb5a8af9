"""Prediction tables: CSV / TSV / Parquet files and pandas DataFrames; :func:`from_columns` builds the Dataset
of model objects (:mod:`prelabel.adapters.objects`: supervision, Ultralytics, torchvision, Hugging Face).

One row per object. Columns are found by *role*, case-insensitively, from the names below (the first that
exists wins); ``columns={"role": "column"}`` (``--column role=column`` on the command line) overrides any role.

========== ==========================================================================================
role       recognised column names (case-insensitive, first match wins)
========== ==========================================================================================
image      ``image``, ``filename``, ``file_name``, ``image_path``, ``img_filename``, ``path``,
           ``img_path``, ``image_name``, ``image_file`` (a file name relative to the images root)
image_id   ``image_id``, ``img_id`` (used when there is no file-name column; an ``image_sizes`` table
           with ``id``/``image_id`` and ``file_name`` columns gives the names, else the id is the name)
category   ``class``, ``category``, ``label``, ``class_name``, ``cat_name``, ``name``, ``category_name``,
           ``label_name`` (a category name)
class_id   ``class_id``, ``category_id``, ``cls``, ``cat_id``, ``label_id``, ``class_index`` (an index into
           ``names``; without ``names`` the index itself is the name). A numeric ``category`` column is
           read as an index too.
box        ``xyxy``: ``xmin, ymin, xmax, ymax`` / ``x1, y1, x2, y2`` / ``x_min, ...`` / ``left, top,
           right, bottom`` / ``ann_bbox_xmin, ...`` (pylabel); ``cxcywh``: ``cx, cy`` / ``x_center,
           y_center`` / ``xc, yc`` / ``center_x, center_y`` with ``w, h`` / ``width, height``; ``xywh``:
           ``x, y`` with ``w, h`` / ``width, height``. Tried in that order unless ``box_format`` says
           which. Roles for overrides: ``x1 y1 x2 y2``, ``cx cy``, ``x y``, ``w h``.
score      ``score``, ``confidence``, ``conf``, ``probability``, ``prob``
width      ``width``, ``img_width``, ``image_width``, ``img_w``, ``image_w`` (image size, pixels; a column
height     ``height``, ``img_height``, ``image_height``, ``img_h``, ``image_h``  the box already uses is skipped)
polygon    ``polygon``, ``segmentation``, ``points``, ``poly`` (flat ``[x1, y1, ...]``, a list of such
           lists, or ``[[x, y], ...]``; a list or a JSON string)
rle        ``rle``, ``mask`` (a COCO RLE dict ``{"size": [h, w], "counts": ...}`` or its JSON string)
keypoints  ``keypoints``, ``kpts`` (flat ``[x, y, v, ...]``, ``(K, 3)`` or ``(K, 2)``; a list or JSON)
iscrowd    ``iscrowd``
========== ==========================================================================================

So the TensorFlow Object Detection CSV (``filename,width,height,class,xmin,ymin,xmax,ymax`` plus an optional
``score``) needs no options at all.

Decisions (documented, tested):

- **Image sizes** come from the width/height columns, else ``image_sizes`` (a ``{file_name: (w, h)}``
  mapping or a DataFrame with a name or id column and width/height), else the image file's header under the
  images root (``images=`` / ``--images``; never decoded), else a supervision mask's shape. A row whose image
  has no size, no name, or an unsafe name (``../x.jpg``) is dropped as ``dropped.no_image`` with its row.
  Absolute image paths are made relative to the images root when under it, else to their common folder;
  only files under the images root are ever opened (an absolute path elsewhere needs a size column).
  The images table holds the images the rows name, in first-seen order.
- **Normalized or pixels**: ``normalized=True/False`` (``--normalized/--absolute``) decides. Left unset,
  boxes whose values are *all* within [0, 1] while every known image is larger than 2 px are read as
  normalized, and a ``coordinates.suspect`` warning says so (``--strict`` then fails: be explicit).
- **NaN / infinite boxes** are dropped here as ``dropped.nonfinite`` (with their row), not passed on.
- **Non-numeric box values** raise :class:`~prelabel.errors.ReadError` naming the file and line.
- Source locations: CSV ``file:line`` with the header on line 1 (first data row = line 2), Parquet
  ``file:row`` (1-based), DataFrames ``dataframe:row`` with the 1-based row position (``dataframe:1`` is the
  first row; a 0-based index would read as "no line"). Model objects: ``source[image]:k``, the k-th object.
- Rows with a polygon or mask take their box from the geometry (``recomputed`` when it differed).
- **Parts** (:func:`plan` / :func:`read_part`: the engine's process pool, Dask, and the streamed conversion,
  ``prelabel.engine.PartStream``, parts of about 6 MB of a huge file): the table cut into row ranges between
  images, each part's dataset and report merged in order being :func:`read`'s. The plan decides once what
  the whole table decides (the common folder of absolute names, normalized or pixels, the largest value of
  boxes said to be normalized, indices or names in a class column) and each part reads its rows with that.
  When an image's rows are not together (one model output per image keeps them together), or a part finds it
  cannot read as :func:`read` would (a column of true / false values, a box the plan relied on dropped), it
  raises ``NeedsWholeRead`` and the caller reads the table whole.

Everything is done on whole columns (numpy and pandas), never row by row; only polygon, mask and keypoint
cells are parsed one by one.

Example:
    >>> import pandas as pd
    >>> from prelabel.adapters.predictions import from_dataframe
    >>> df = pd.DataFrame({"filename": ["a.jpg", "a.jpg"], "width": [100, 100], "height": [50, 50],
    ...                    "class": ["cat", "dog"], "xmin": [10, 0], "ymin": [5, 0], "xmax": [30, 8],
    ...                    "ymax": [25, 8], "score": [0.9, 0.2]})
    >>> ds = from_dataframe(df, min_score=0.5)
    >>> ds.annotations[["category", "x", "y", "w", "h", "score"]].values.tolist()
    [['cat', 10.0, 5.0, 20.0, 20.0, 0.9]]
    >>> ds.report.dropped_counts()
    {'dropped.min_score': 1}
"""

from __future__ import annotations

import contextlib
import importlib
import io
import re
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..converters.score import filter_min_score
from ..errors import ReadError, UsageError
from ..images import ImageRoot, common_folder, outside_example, relative_to
from ..model import Dataset
from ..report import Report
from .base import DEFAULT_CHUNK_ROWS, NeedsWholeRead, ReadOptions
from .parts import RowRange
from .table_build import (
    PartContext,
    SizeTable,
    from_columns,
    from_frame,
    raw_image_name,
)
from .table_columns import (
    BOX_FORMATS,
    ROLE_COLUMNS,
    Roles,
    numeric_column,
    resolve_roles,
    split_bbox,
)

__all__ = ["BOX_FORMATS", "DESCRIPTION", "NAME", "ROLE_COLUMNS", "auto_workers", "detect", "from_columns",
           "from_dataframe", "plan", "read", "read_part"]

NAME = "predictions"
DESCRIPTION = "prediction tables: CSV / TSV / Parquet (TF Object Detection CSV, pylabel, ...) and DataFrames"

_SUFFIXES_CSV = (".csv", ".tsv", ".tab")
_SUFFIXES_PARQUET = (".parquet", ".pq")


# ---------------------------------------------------------------------------------------------- public API
def from_dataframe(df: pd.DataFrame, *, images: str | Path | None = None, image_sizes: Any = None,
                   columns: Mapping[str, str] | None = None, box_format: str | None = None,
                   normalized: bool | None = None, names: Sequence[str] | Mapping[int, str] | None = None,
                   min_score: float | None = None, source: str = "dataframe",
                   report: Report | None = None) -> Dataset:
    """A Dataset from a table of predictions, one row per object (see the module docstring for the columns).

    ``images`` is the images root (sizes from headers), ``image_sizes`` a ``{file_name: (w, h)}`` mapping or a
    DataFrame, ``columns`` role -> column overrides, ``names`` class index -> name, ``min_score`` drops
    lower scores (``dropped.min_score``), ``source`` names the table in the report (``source:row``).

    Example:
        >>> import pandas as pd
        >>> df = pd.DataFrame({"image": ["a.jpg"], "cls": [1], "cx": [0.5], "cy": [0.5], "w": [0.2],
        ...                    "h": [0.4], "conf": [0.8]})
        >>> ds = from_dataframe(df, image_sizes={"a.jpg": (200, 100)}, names=["cat", "dog"], normalized=True)
        >>> ds.annotations[["category", "x", "y", "w", "h"]].values.tolist()
        [['dog', 80.0, 30.0, 40.0, 40.0]]
    """
    if not isinstance(df, pd.DataFrame):
        raise UsageError(f"from_dataframe needs a pandas DataFrame, got {type(df).__name__}")
    rep = report if report is not None else Report()
    if not rep.input:
        rep.input = {"format": NAME, "source": source}
    roles = resolve_roles(list(df.columns), overrides=columns or {}, box_format=box_format, file=source)
    lines = np.arange(1, len(df) + 1, dtype=np.int64)
    ds = from_frame(df.reset_index(drop=True), roles=roles, names=names, normalized=normalized,
                     image_sizes=image_sizes, images=Path(images) if images is not None else None, file=source,
                     src_line=lines, report=rep)
    return filter_min_score(ds, min_score)


# ---------------------------------------------------------------------------------------------- files
def _header(path: Path) -> list[str] | None:
    """Column names of a CSV / TSV / Parquet file, or None when they cannot be read."""
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES_PARQUET:
        try:
            pq = importlib.import_module("pyarrow.parquet")
        except ImportError:
            return None
        try:
            return [str(c) for c in pq.read_schema(path).names]
        except Exception:  # noqa: BLE001 - any pyarrow failure means "not a readable parquet file"
            return []
    import csv

    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            first = fh.readline(65536)
    except (OSError, UnicodeDecodeError):
        return []
    try:
        row = next(csv.reader([first], delimiter=_separator(suffix, first)), [])
    except csv.Error:
        return []
    return [c.strip() for c in row]


def detect(path: Path) -> float:
    """0.9 for a .csv / .tsv / .parquet file whose header has box-like columns (0.5 for a Parquet file when
    pyarrow is missing, so that reading says what to install), else 0."""
    p = Path(path)
    if not p.is_file() or p.suffix.lower() not in _SUFFIXES_CSV + _SUFFIXES_PARQUET:
        return 0.0
    cols = _header(p)
    if cols is None:
        return 0.5
    lower = {c.lower() for c in cols}
    for rs in (*BOX_FORMATS.values(), ("x1", "y1", "w", "h"), ("bbox",)):
        if all(any(c in lower for c in ROLE_COLUMNS[r]) for r in rs):
            return 0.9
    return 0.0


_LINE_RE = re.compile(r"line (\d+)")


@contextlib.contextmanager
def _table_errors(file: str) -> Iterator[None]:
    """pandas' CSV failures as a ReadError naming the file (and line); rows with more fields than the header
    names are an error, not a warning."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            yield
    except pd.errors.ParserWarning:
        raise ReadError(file, "rows have more fields than the header names",
                        hint="check the delimiter and quoting (a comma inside a value needs quotes)") from None
    except pd.errors.EmptyDataError:
        raise ReadError(file, "the file is empty (no header line)") from None
    except pd.errors.ParserError as e:
        m = _LINE_RE.search(str(e))
        raise ReadError(file, f"not a valid table: {str(e).strip()}", line=int(m.group(1)) if m else None) from None
    except UnicodeDecodeError as e:
        raise ReadError(file, f"not UTF-8 text: {e.reason} at byte {e.start}") from None
    except OSError as e:
        raise ReadError(file, f"cannot read: {e.strerror or e}") from None


def _roles(cols: list[Any], options: ReadOptions, file: str) -> Roles:
    """The roles of a table's columns, with the options' overrides and box format."""
    return resolve_roles(cols, overrides=options.columns, box_format=options.box_format, file=file)


def _parquet_columns(pf: Any) -> list[Any]:
    """The columns of a ``pyarrow.parquet.ParquetFile`` as pandas names them."""
    return list(pf.schema_arrow.empty_table().to_pandas(use_threads=False).columns)  # no pool: see _column_pieces


def _csv_layout(path: Path, options: ReadOptions) -> tuple[str, Roles, dict[str, Any]]:
    """(separator, roles, ``read_csv`` dtypes) of a CSV / TSV file, from its header."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        sep = _separator(path.suffix.lower(), fh.readline(65536))
    head = pd.read_csv(path, sep=sep, nrows=0, encoding="utf-8-sig")
    roles = _roles(list(head.columns), options, str(path))
    text_roles = ["image", "image_id", "polygon", "rle", "keypoints", "bbox"]
    if options.names is None:  # without names a numeric class column is a name ("01" stays "01")
        text_roles.append("category")
    return sep, roles, {roles.found[r]: str for r in text_roles if r in roles.found}


def _read_csv(path: Path, *, sep: str, dtype: Mapping[str, Any], data: Any = None, **kw: Any) -> Any:
    """``pd.read_csv`` with the table reader's options: only empty cells are missing values. ``data``: a
    buffer holding some of ``path``'s rows under its header (the decimal mark is still ``path``'s)."""
    return pd.read_csv(path if data is None else data, sep=sep, dtype=dict(dtype), keep_default_na=False,
                       na_values=[""], index_col=False, encoding="utf-8-sig", decimal=_decimal(path, sep), **kw)


def _separator(suffix: str, header: str) -> str:
    """Tab for .tsv / .tab; for .csv a comma, or a semicolon when the header has more of them (Excel in the
    locales that write decimal commas)."""
    if suffix in (".tsv", ".tab"):
        return "\t"
    return ";" if header.count(";") > header.count(",") else ","


_DECIMAL_COMMA = re.compile(r"(?:^|;)\s*-?[0-9]+,[0-9]+\s*(?:;|$)")


def _decimal(path: Path, sep: str) -> str:
    """``","`` for a semicolon-separated file whose first rows write numbers with a decimal comma, else ``"."``."""
    if sep != ";":
        return "."
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        rows = [fh.readline(65536) for _ in range(21)][1:]
    return "," if any(_DECIMAL_COMMA.search(r.strip()) for r in rows) else "."


def _parquet_error(file: str, e: Exception) -> ReadError:
    return ReadError(file, f"cannot read Parquet: {e}")


def _read_table(path: Path, options: ReadOptions) -> tuple[pd.DataFrame, Roles, int]:
    """(table, roles, line of the first row) of a CSV / TSV / Parquet file."""
    file = str(path)
    suffix = path.suffix.lower()
    if suffix in _SUFFIXES_PARQUET:
        try:
            importlib.import_module("pyarrow")
        except ImportError:
            raise ReadError(file, "reading Parquet files needs pyarrow, which is not installed",
                            hint="pip install prelabel[parquet]") from None
        try:
            df = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001 - OSError, ValueError, pyarrow's own ArrowInvalid etc.
            raise _parquet_error(file, e) from None
        return df, _roles(list(df.columns), options, file), 1
    with _table_errors(file):
        sep, roles, dtype = _csv_layout(path, options)
        df = _read_csv(path, sep=sep, dtype=dtype)
    return df, roles, 2


def _table_path(path: Path) -> Path:
    """``path`` when it is a table prelabel reads (CSV, TSV, Parquet), else the ReadError saying what to give."""
    p = Path(path)
    if not p.is_file():
        raise ReadError(str(p), "not a file: give a .csv, .tsv or .parquet predictions table")
    if p.suffix.lower() not in _SUFFIXES_CSV + _SUFFIXES_PARQUET:
        raise ReadError(str(p), f"unsupported table type {p.suffix or '(none)'!r}: give a .csv, .tsv or .parquet "
                                "file")
    return p


def read(path: Path, *, options: ReadOptions, report: Report) -> Dataset:
    """Read a predictions CSV / TSV / Parquet file (``--from predictions``)."""
    p = _table_path(path)
    df, roles, first_line = _read_table(p, options)
    df = df.reset_index(drop=True)
    lines = np.arange(first_line, first_line + len(df), dtype=np.int64)
    return from_frame(df, roles=roles, names=options.names, normalized=options.normalized,
                       image_sizes=None, images=options.images, file=str(p), src_line=lines, report=report)


# ---------------------------------------------------------------------------------------------- parts
_RECORD_BLOCK = 1 << 22


def _records(path: Path) -> np.ndarray | None:
    """Byte offsets of a CSV file's records: where each line that is not blank starts (quoted line breaks kept
    inside their record), then the file's size; the header line is the first. None when the file has line
    ends other than LF / CRLF or starts with a blank line (then it is read as one part). The file is read a
    block of a few MB at a time, keeping 9 bytes a record."""
    starts: list[np.ndarray] = [np.zeros(1, dtype=np.int64)]
    firsts: list[np.ndarray] = []   # the first byte of each line after the first
    parity = 0
    pos = 0
    carry = False                   # a line starts at the next block's first byte
    cr_end = False                  # the block ended with a CR: the next must start with LF
    with open(path, "rb") as fh:
        while data := fh.read(_RECORD_BLOCK):
            a = np.frombuffer(data, dtype=np.uint8)
            if pos == 0:
                firsts.append(a[:1])
            if carry:
                firsts.append(a[:1])
            cr = np.flatnonzero(a[:-1] == 13)
            if (cr_end and a[0] != 10) or (len(cr) and (a[cr + 1] != 10).any()):
                return None
            cr_end = bool(a[-1] == 13)
            nl = np.flatnonzero(a == 10)
            quotes = np.flatnonzero(a == 34)
            if len(quotes) or parity:  # a line end inside quotes is not a record's end
                nl = nl[(np.searchsorted(quotes, nl) + parity) % 2 == 0]
                parity = (parity + len(quotes)) % 2
            carry = bool(len(nl)) and int(nl[-1]) + 1 == len(a)
            firsts.append(a[nl[:len(nl) - carry] + 1])
            starts.append(pos + nl + 1)
            pos += len(data)
    if pos == 0 or cr_end:
        return None
    st = np.concatenate(starts)
    st = np.append(st, pos) if st[-1] < pos else st   # the last line without its line end
    # a line of blanks holds no row: only lines that start with a blank are looked at, one by one
    first = np.concatenate(firsts)
    maybe = np.flatnonzero(np.isin(first, (9, 10, 13, 32))).tolist()
    with open(path, "rb") as fh:
        blank = [i for i in maybe if not _read_at(fh, int(st[i]), int(st[i + 1])).strip()]
    return None if blank and blank[0] == 0 else np.append(np.delete(st[:-1], blank), pos)


def _read_at(fh: Any, start: int, stop: int) -> bytes:
    fh.seek(start)
    got: bytes = fh.read(stop - start)
    return got


def _part_rows(path: Path, part: RowRange, ctx: PartContext,
               options: ReadOptions) -> tuple[pd.DataFrame, Roles, int]:
    """(rows, roles, line of the table's first row) of a part."""
    file = str(path)
    if path.suffix.lower() in _SUFFIXES_PARQUET:
        try:
            pf = importlib.import_module("pyarrow.parquet").ParquetFile(path)
            columns = _parquet_columns(pf)
            groups: list[int] = []
            first, at = 0, 0  # at: the first row of the first group read
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                if first < part.stop and first + n > part.start:
                    if not groups:
                        at = first
                    groups.append(g)
                first += n
            kept = []  # the part's rows, a batch at a time (a row group can hold the whole table)
            for batch in pf.iter_batches(batch_size=_PARQUET_BATCH, row_groups=groups) if groups else ():
                lo, hi = max(part.start - at, 0), min(part.stop - at, batch.num_rows)
                if lo < hi:
                    kept.append(batch.slice(lo, hi - lo))
                at += batch.num_rows
                if at >= part.stop:
                    break
            pa = importlib.import_module("pyarrow")
            table = pa.Table.from_batches(kept, schema=pf.schema_arrow) if kept else pf.schema_arrow.empty_table()
            df = table.to_pandas()
        except Exception as e:  # noqa: BLE001 - OSError, ValueError, pyarrow's own ArrowInvalid etc.
            raise _parquet_error(file, e) from None
        return df.reset_index(drop=True), _roles(columns, options, file), 1
    with _table_errors(file):
        sep, roles, dtype = _csv_layout(path, options)
        if ctx.class_text:
            dtype = {**dtype, roles.found["category"]: str}
        a, b = ctx.byte_range or (0, 0)
        with open(path, "rb") as fh:
            head = fh.read(ctx.header)
            fh.seek(a)
            body = fh.read(b - a)
        df = _read_csv(path, sep=sep, dtype=dtype, data=io.BytesIO(head + body))
    if len(df) != part.stop - part.start:
        raise NeedsWholeRead(f"rows {part.start}..{part.stop} of the table were not found where the plan cut it")
    return df, roles, 2


def _runs(names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the image code, the first row) of each run of rows of one image (``names``: each row's final image name
    code, -1 for none, which neither starts nor breaks a run)."""
    has = np.flatnonzero(names >= 0)
    codes = names[has]
    run_start = np.ones(len(codes), dtype=bool)
    run_start[1:] = codes[1:] != codes[:-1]
    return codes[run_start], has[run_start]


def _cuts(names: np.ndarray, parts: int) -> list[int] | None:
    """Up to ``parts`` + 1 row positions cutting the table between images (``names``: each row's final image
    name code, -1 for none), about as many rows in each; None when an image's rows are not together."""
    n = len(names)
    runs, firsts = _runs(names)
    if len(np.unique(runs)) != len(runs):
        return None
    starts = firsts[1:]           # a cut may go where an image's first row is
    if parts <= 1 or not len(starts):
        return [0, n]
    want = [n * k // parts for k in range(1, parts)]
    at = np.searchsorted(starts, want)
    picks = sorted({int(starts[min(i, len(starts) - 1)]) for i in at.tolist()})
    return [0, *[c for c in picks if 0 < c < n], n]


_SCAN_ROWS = 100_000  # the plan reads a table's columns this many rows at a time (memory: a few MB)
_PARQUET_BATCH = 10_000  # a part of a Parquet file is read this many rows at a time (not its whole row group)


def _column_pieces(path: Path, cols: list[str], options: ReadOptions) -> Iterator[pd.DataFrame]:
    """Some columns of the whole table, read as :func:`read` reads them, ``_SCAN_ROWS`` rows at a time."""
    if path.suffix.lower() in _SUFFIXES_PARQUET:
        # on this thread only: pyarrow's thread pools would keep threads in this process, which then could not
        # fork the engine's workers (a fork server costs about a second more)
        pf = importlib.import_module("pyarrow.parquet").ParquetFile(path, pre_buffer=False)
        for batch in pf.iter_batches(batch_size=_SCAN_ROWS, columns=cols, use_threads=False):
            yield batch.to_pandas(use_threads=False)
        return
    with _table_errors(str(path)):
        sep, _, dtype = _csv_layout(path, options)
        reader = _read_csv(path, sep=sep, dtype={c: t for c, t in dtype.items() if c in cols}, usecols=cols,
                           chunksize=_SCAN_ROWS)
    with reader:
        while True:
            with _table_errors(str(path)):
                df = next(reader, None)
            if df is None:
                return
            yield df


class _Scan:
    """What the plan finds in a table read a piece at a time: each row's image (named as read() names it, once
    the common folder of the absolute names outside the root is known), where the boxes say pixels or
    normalized, their largest value, and whether the class column holds numbers."""

    def __init__(self, *, is_id: bool, root: Path | None, normalized: bool | None) -> None:
        self.is_id, self.normalized = is_id, normalized
        self.resolver = ImageRoot(root, report=Report())   # names as read() makes them (it writes no note)
        self.rows = 0
        self.keys: dict[tuple[str, str], int] = {}   # ("rel", name) or ("abs", absolute name) -> provisional code
        self.codes: list[np.ndarray] = []             # each piece's rows: their provisional codes (-1: no image)
        self.outside: dict[Any, str] = {}             # the distinct cells naming an image outside the root
        self.common: str | None = None
        self.first_out: int | None = None             # the first row with a finite box outside [0, 1]
        self.first_fin: int | None = None             # the first row with a finite box
        self.largest: tuple[float, int] = (-1.0, 0)   # the largest value of a finite box, and its row
        self.class_text = False

    def class_kind(self, col: pd.Series) -> bool:
        """Note whether this piece of the class column is text; False when it is true / false (read whole)."""
        if pd.api.types.is_bool_dtype(col.dtype):
            return False
        self.class_text |= not pd.api.types.is_numeric_dtype(col.dtype)
        return True

    def add(self, keys: pd.Series, vals: list[np.ndarray]) -> None:
        raw_codes, uniques = pd.factorize(keys, sort=False, use_na_sentinel=True)
        cells = uniques.tolist()
        prov = np.full(len(cells) + 1, -1, dtype=np.int64)
        for i, cell in enumerate(cells):
            nm = raw_image_name(cell, is_id=self.is_id, sizes=SizeTable())
            if nm is None:
                continue
            rel, _, kind = self.resolver.relate(nm)
            if kind == "outside":
                if cell not in self.outside:
                    self.outside[cell] = nm
                    self.common = common_folder([nm], start=self.common)
                k = ("abs", nm)
            elif rel is None:
                continue
            else:
                k = ("rel", rel)
            prov[i] = self.keys.setdefault(k, len(self.keys))
        self.codes.append(prov[np.where(raw_codes >= 0, raw_codes, len(cells))])
        if vals:
            fin = np.logical_and.reduce([np.isfinite(v) for v in vals])
            if self.normalized is None:
                with np.errstate(invalid="ignore"):
                    out = fin & np.logical_or.reduce([(v < 0.0) | (v > 1.0) for v in vals])
                if self.first_out is None and out.any():
                    self.first_out = self.rows + int(np.argmax(out))
                if self.first_fin is None and fin.any():
                    self.first_fin = self.rows + int(np.argmax(fin))
            elif fin.any():
                big = np.where(fin, np.maximum.reduce([np.abs(v) for v in vals]), -1.0)
                at = int(np.argmax(big))
                if big[at] > self.largest[0]:
                    self.largest = (float(big[at]), self.rows + at)
        self.rows += len(keys)

    def names(self) -> tuple[np.ndarray, Any, str | None, tuple[int, str, str] | None]:
        """(each row's final image code, -1 for none; the final names; the common folder; the note about the
        absolute names: count, common folder, example)."""
        common = self.common
        final = [nm if kind == "rel" else relative_to(nm, str(common)) for kind, nm in self.keys]
        codes, final_names = pd.factorize(pd.Series(final, dtype=object), sort=False, use_na_sentinel=True)
        prov = np.concatenate(self.codes) if self.codes else np.zeros(0, dtype=np.int64)
        names = np.append(np.asarray(codes, dtype=np.int64), -1)[np.where(prov >= 0, prov, len(codes))]
        absolute = None
        if self.outside:
            absolute = (len(self.outside), str(common), outside_example(next(iter(self.outside.values())), str(common)))
        return names, final_names, common, absolute


def _comes_back(names: np.ndarray) -> int:
    """The first row of an image whose rows are not together that comes back after another image's (``names``
    as for :func:`_cuts`, which found one)."""
    runs, starts = _runs(names)
    _, first = np.unique(runs, return_index=True)
    again = np.ones(len(runs), dtype=bool)
    again[first] = False
    return int(starts[int(np.argmax(again))])


def _many_rows(p: Path) -> bool:
    """Whether a Parquet file says it holds more than DEFAULT_CHUNK_ROWS rows (its metadata; a CSV file's rows
    are not known before the plan's scan, but its bytes tell: the stream asks for parts by bytes)."""
    if p.suffix.lower() not in _SUFFIXES_PARQUET:
        return False
    try:
        return int(importlib.import_module("pyarrow.parquet").ParquetFile(p).metadata.num_rows) > DEFAULT_CHUNK_ROWS
    except Exception:  # noqa: BLE001 - not a Parquet file, pyarrow missing: read() says what is wrong
        return False


def plan(path: Path, *, options: ReadOptions, parts: int = 1) -> list[RowRange]:
    """The table cut into ``parts`` row ranges between images (more when a part would hold over
    DEFAULT_CHUNK_ROWS rows; fewer when it has fewer images), each read by :func:`read_part`; their
    datasets merged in this order give :func:`read`'s (:func:`prelabel.adapters.parts.merge`). The plan reads
    the image column once, and the box and class columns when the whole table decides how they read: whether
    the boxes are normalized (or, said to be, the largest value, which their note names: the part holding it
    checks it) and whether the class column holds indices or names. One part when the table is small; when
    the rows of an image are not together, one part that asks for the whole read (``NeedsWholeRead``, whose
    reason the streamed conversion notes).

    >>> [(p.start, p.stop) for p in plan(Path("sample_data/predictions/predictions.csv"), options=ReadOptions(),
    ...                                  parts=2)]
    [(0, 4), (4, 7)]
    """
    p = Path(path)
    whole = [RowRange(source=str(p), start=0, stop=0)]
    if not p.is_file() or p.suffix.lower() not in _SUFFIXES_CSV + _SUFFIXES_PARQUET:
        return whole
    if parts <= 1 and not _many_rows(p):
        return whole
    file = str(p)
    try:
        if p.suffix.lower() in _SUFFIXES_PARQUET:
            pq = importlib.import_module("pyarrow.parquet")
            roles = _roles(_parquet_columns(pq.ParquetFile(p)), options, file)
            records = None
        else:
            with _table_errors(file):
                _, roles, _ = _csv_layout(p, options)
            records = _records(p)
            if records is None:
                return whole
    except Exception:  # noqa: BLE001 - ReadError, UsageError, pyarrow's ArrowInvalid...: read() raises the error
        return whole
    found = roles.found
    is_id = "image" not in found
    key = found["image_id" if is_id else "image"]
    box: list[str] = []   # the box columns, when the whole table decides how to read them
    if roles.box_format is not None and options.normalized is not False:
        box = [found["bbox"]] if "bbox" in found else [found[r] for r in BOX_FORMATS[roles.box_format]]
    class_col = found["category"] if "category" in found and options.names is not None else None
    cols = list(dict.fromkeys([key, *box, *([class_col] if class_col else [])]))
    scan = _Scan(is_id=is_id, root=options.images, normalized=options.normalized)
    try:
        for df in _column_pieces(p, cols, options):
            if class_col is not None and not scan.class_kind(df[class_col]):
                return whole
            bx = box
            if "bbox" in found and box:  # one [x, y, w, h] column: its four numbers, cell by cell as a part reads
                df, split = split_bbox(df, roles)
                bx = [split.found[r] for r in BOX_FORMATS[str(split.box_format)]]
            scan.add(df[key], [numeric_column(df[c], role="box", file=file, lines=np.zeros(len(df), dtype=np.int64),
                                              invalid={}) for c in bx])
        names, final_names, common, absolute = scan.names()
        if records is None:  # the batches Arrow decoded for the scan go back to the system before the parts come
            importlib.import_module("pyarrow").default_memory_pool().release_unused()
    except Exception:  # noqa: BLE001 - a table read() cannot read either: it raises the error
        return whole
    n = scan.rows
    if n < 2 or (records is not None and len(records) - 2 != n):
        return whole
    # parts of at most about DEFAULT_CHUNK_ROWS rows whatever was asked: a part's rows are what a conversion holds
    # at once, and a few MB of a table (a Parquet file most of all) can hold hundreds of thousands
    cuts = _cuts(names, max(parts, -(-n // DEFAULT_CHUNK_ROWS)))
    first_line = 1 if records is None else 2
    if cuts is None:  # read() makes one image of its rows wherever they are: the part is the whole table, and
        row = _comes_back(names)  # the stream says why it read it whole
        why = f"rows of image {final_names[names[row]]!r} are not grouped together (line {first_line + row})"
        return [RowRange(source=file, start=0, stop=0, context=PartContext(unsplit=why))]
    if len(cuts) < 3:
        return whole
    normalized, candidate, witness, top = bool(options.normalized), False, None, None
    if box and options.normalized is None:  # read() calls them normalized when every finite box is in [0, 1]
        candidate = True
        if scan.first_out is not None:
            witness = first_line + scan.first_out
        elif scan.first_fin is not None:
            normalized, witness = True, first_line + scan.first_fin
    elif box and scan.largest[0] > 1.5:  # normalized=True: read()'s note names the largest value over 1.5
        top = (scan.largest[0], first_line + scan.largest[1])
    class_text = scan.class_text
    ctx = PartContext(common=common, absolute=absolute, normalized=normalized, candidate=candidate, witness=witness,
                      top=top, class_text=class_text, header=int(records[1]) if records is not None else 0)
    out_parts = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        br = (int(records[a + 1]), int(records[b + 1])) if records is not None else None
        out_parts.append(RowRange(source=file, start=a, stop=b,
                                  context=replace(ctx, last=b == n, byte_range=br)))
    return out_parts


def read_part(part: RowRange, *, options: ReadOptions) -> Dataset:
    """One part of :func:`plan`: its rows read as :func:`read` reads them, with what the plan decided for the
    whole table (a part without ``context`` is the whole table).

    >>> src = Path("sample_data/predictions/predictions.csv")
    >>> [len(read_part(p, options=ReadOptions()).annotations) for p in plan(src, options=ReadOptions(), parts=2)]
    [4, 3]
    """
    p = Path(part.source)
    ctx = part.context
    if not isinstance(ctx, PartContext):
        return read(p, options=options, report=Report())
    if ctx.unsplit:
        raise NeedsWholeRead(ctx.unsplit)
    file = str(p)
    df, roles, first_line = _part_rows(p, part, ctx, options)
    text = {roles.found[r] for r in ("image", "image_id", "polygon", "rle", "keypoints", "category")
            if r in roles.found}
    for col in df.columns:
        # pandas reads a column whose values here are all true / false as bool: what read() sees depends on
        # the rest of the column
        if col not in text and pd.api.types.is_bool_dtype(df[col].dtype):
            raise NeedsWholeRead(f"column {col!r} holds true/false values")
    lines = np.arange(first_line + part.start, first_line + part.stop, dtype=np.int64)
    return from_frame(df, roles=roles, names=options.names, normalized=ctx.normalized, image_sizes=None,
                       images=options.images, file=file, src_line=lines, report=Report(), whole=ctx)


def auto_workers(path: Path, *, options: ReadOptions) -> int:
    """1: a table reads faster in one process than its parts in several (a 300,000-row CSV: 0.5 s whole, 1.9 s
    in two processes, their start included).

    >>> auto_workers(Path("sample_data/predictions/predictions.csv"), options=ReadOptions())
    1
    """
    return 1
