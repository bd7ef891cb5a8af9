"""YOLO label files as rows of numbers: every row of a batch of files parsed into columns at once (a row with a
value that is not a number left out with its message), and what is wrong with a row (a class index that is
not a whole number or has no name, a value count that does not fit its file's task), and the task each file's
rows say (:func:`file_tasks`, judged by :func:`valid_rows`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from ..errors import ReadError, option

_BOM = b"\xef\xbb\xbf"
_WS = np.zeros(256, dtype=bool)
_WS[[9, 10, 11, 12, 13, 32]] = True  # the bytes bytes.split() splits on
# the task a label file is read as (AMBIGUOUS: rows of 9-11 columns only, dropped)
DETECT, SEGMENT, OBB, POSE, AMBIGUOUS = 0, 1, 2, 3, 4


def looks_like_labels(data: bytes) -> bool:
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


@dataclass
class Lines:
    """The non-empty rows of every label file, as columns."""

    entry: np.ndarray   # which label entry the row comes from
    line: np.ndarray    # 1-based line number in its file
    ncol: np.ndarray    # values on the row
    first: np.ndarray   # index of the row's first value in ``vals``
    vals: np.ndarray    # every value of every row, float64
    bad: list[tuple[int, int, str]] = field(default_factory=list)  # rows not parsed: (entry, line, message)

    def keep(self, mask: np.ndarray) -> Lines:
        """The rows where ``mask`` holds (the values stay where they are)."""
        return Lines(entry=self.entry[mask], line=self.line[mask], ncol=self.ncol[mask], first=self.first[mask],
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


def parse_rows(raw: list[bytes], files: list[str]) -> Lines:
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


def _counts(buf: bytes) -> np.ndarray:
    """The number of values (runs of non-blank bytes) on each line of ``buf`` (cleaned files joined: every
    line ends with a newline), without parsing them."""
    arr = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(arr == 10)
    ws = _WS[arr]
    prev = np.empty_like(ws)
    prev[0] = True
    prev[1:] = ws[:-1]
    np.logical_and(np.logical_not(ws, out=ws), prev, out=ws)  # in place: a value starts here
    starts = np.flatnonzero(ws)
    # (the byte-sized masks go when this returns, before any value is parsed: peak memory)
    return np.bincount(np.searchsorted(ends, starts), minlength=len(ends))


def column_counts(raw: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The value count of every non-empty row of the label files ``raw`` and the file (entry) it is in, the rows
    :func:`parse_rows` gives (a row with a value that is not a number counted too), none of them parsed: what a
    first look at many files needs (:func:`file_tasks` judges the files worth parsing).

    >>> column_counts([b"0 .5 .5 .2 .2\\n\\n1 2 3\\r\\n", b"", b"x 1"])
    (array([0, 0, 2]), array([5, 3, 2]))
    """
    joined = _joined([_clean(d) for d in raw])
    if joined is None:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    _, nlines, counts = joined
    nonempty, entry, _ = _row_index(nlines, counts)
    return entry.astype(np.int64), counts[nonempty].astype(np.int64)


def _joined(datas: list[bytes]) -> tuple[bytes, np.ndarray, np.ndarray] | None:
    """The cleaned files ``datas`` joined, the line count of each, and the value count of each line of the
    joined buffer (:func:`_counts`); None when there is no value at all."""
    buf = b"".join(datas)
    if not buf.strip():
        return None
    nlines = np.fromiter((d.count(b"\n") for d in datas), dtype=np.int64, count=len(datas))
    return buf, nlines, _counts(buf)


def _row_index(nlines: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows (the non-empty lines, as indexes into ``counts``), the file (entry) each is in, and the index of
    each file's first line: from the line count of each file and the value count of each line (:func:`_joined`)."""
    nonempty = np.flatnonzero(counts)
    cum = np.cumsum(nlines)
    entry = np.searchsorted(cum, nonempty, side="right")
    return nonempty, entry, cum - nlines


def _columns(datas: list[bytes], *, fast: bool) -> Lines | None:
    """The rows of ``datas`` as columns; None when ``fast`` (numpy's parser) and a value is not a number."""
    joined = _joined(datas)
    if joined is None:
        empty = np.zeros(0, dtype=np.int64)
        return Lines(empty, empty, empty, empty, np.zeros(0, dtype=np.float64))
    buf, nlines, counts = joined
    n_values = int(counts.sum())
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
    # the rows indexed once the values are parsed (peak memory)
    nonempty, entry, file_start = _row_index(nlines, counts)
    line = nonempty - file_start[entry] + 1
    first = (np.cumsum(counts) - counts)[nonempty]
    return Lines(entry=entry.astype(np.int64), line=line.astype(np.int64),
                 ncol=counts[nonempty].astype(np.int64), first=first.astype(np.int64), vals=vals)


_D, _S, _O = 1, 2, 4                  # candidate task bits: detect, segment, obb
# the tasks a row of N values may be, by N (12: 12 or more): 8 and 12+ segment (fewer than 5 is refused before)
_CANDIDATES = np.full(13, _S, dtype=np.int64)
_CANDIDATES[[5, 6]] = _D
_CANDIDATES[7] = _D | _S
_CANDIDATES[[9, 10, 11]] = _O | _S


def _whole(cls: np.ndarray) -> np.ndarray:
    """Which class indices are whole numbers >= 0 (below 2**31): the one rule of a row's class index."""
    ok: np.ndarray = (cls >= 0) & (cls == np.floor(cls)) & (cls < 2**31)
    return ok


def valid_rows(lines: Lines, names: list[str] | None) -> np.ndarray:
    """The rows neither :func:`unnamed_classes` nor :func:`row_problems` finds a problem in (whole class index
    >= 0, named when there are names; at least 5 values): the rows :func:`file_tasks` judges a file by."""
    cls = lines.vals[lines.first]
    ok: np.ndarray = _whole(cls) & (lines.ncol >= 5)
    if names is not None:
        ok &= cls < len(names)
    return ok


def file_tasks(lines: Lines, n_entries: int) -> np.ndarray:
    """The task the rows of each label file say, judged by all of its rows together (the rows of a batch of
    ``n_entries`` files, invalid rows left out): ``DETECT`` (5-6 columns; 7 when every 7-column row is a box, a
    score in [0, 1] and a whole track id), ``SEGMENT`` (any other count, or boxes and polygons mixed),
    ``AMBIGUOUS`` (rows of 9-11 columns only: 4-point polygons or oriented boxes, which the rest of the source
    decides), -1 (no row).

    >>> rows = parse_rows([b"0 .5 .5 .2 .2\\n", b"0 .1 .1 .2 .1 .2 .2 .1 .2\\n", b"0 .1 .1 .2 .1 .2 .2\\n", b""],
    ...                   ["a", "b", "c", "d"])
    >>> file_tasks(rows, 4).tolist() == [DETECT, AMBIGUOUS, SEGMENT, -1]
    True
    """
    kinds = np.full(n_entries, -1, dtype=np.int64)
    if not len(lines.ncol):
        return kinds
    mask = np.full(n_entries, _D | _S | _O, dtype=np.int64)  # the tasks every row of the file may be
    np.bitwise_and.at(mask, lines.entry, _CANDIDATES[np.minimum(lines.ncol, 12)])
    has_rows = np.bincount(lines.entry, minlength=n_entries) > 0
    # all rows 7 columns: box + score + track id when the 6th value is a score and the 7th a whole number
    sev = lines.ncol == 7
    if sev.any():
        f6 = lines.vals[lines.first[sev] + 5]
        f7 = lines.vals[lines.first[sev] + 6]
        not_track = ~((f6 >= 0) & (f6 <= 1) & np.isfinite(f7) & (f7 == np.floor(f7)))
        bad = per_entry_any(lines.entry[sev], not_track, n_entries)
        both = mask == (_D | _S)
        mask[both & bad] = _S
        mask[both & ~bad] = _D
    kinds[has_rows & (mask == _D)] = DETECT
    kinds[has_rows & ((mask == _S) | (mask == 0))] = SEGMENT  # 0: boxes and polygons mixed -> segment
    kinds[has_rows & (mask == (_O | _S))] = AMBIGUOUS
    return kinds


def per_entry_any(entry: np.ndarray, flag: np.ndarray, n: int) -> np.ndarray:
    """For each entry, whether ``flag`` is True on any of its rows."""
    return np.bincount(entry, weights=flag.astype(np.float64), minlength=n) > 0


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


def unnamed_classes(lines: Lines, names: list[str] | None, names_src: str) -> np.ndarray | None:
    """Rows whose class index (a whole number) the names file does not name: a message each, else None."""
    if names is None or not len(lines.ncol):
        return None
    cls = lines.vals[lines.first]
    bad = (cls >= len(names)) & _whole(cls)
    return _first_of([_messages(bad, "class index ", np.where(bad, cls, 0).astype(np.int64),
                                f" has no name ({names_src} lists {len(names)} classes; add it there or give "
                                f"{option('names')})")], len(cls))


def row_problems(lines: Lines) -> np.ndarray | None:
    """What is wrong with each row whatever its task (None: nothing): a class index that is not a whole number
    >= 0, or fewer than 5 values."""
    n = len(lines.ncol)
    if not n:
        return None
    cls = lines.vals[lines.first]
    not_whole = ~_whole(cls)
    return _first_of([_messages(not_whole, "class index must be a whole number >= 0, got ", cls),
                      _messages(lines.ncol < 5, "expected at least 5 numbers (class cx cy w h), got ", lines.ncol)], n)


def column_problems(lines: Lines, kind: np.ndarray, kpt_shape: tuple[int, int] | None) -> np.ndarray | None:
    """Rows whose value count does not fit their file's task (a message each, else None)."""
    n = lines.ncol
    checks: list[tuple[np.ndarray, str, str]] = []
    det = kind == DETECT
    checks.append((det & ((n < 5) | (n > 7)),
                   "expected 5 numbers (class cx cy w h), 6 with a score or 7 with a score and a track id",
                   f" (rows of polygons? pass {option('task', 'segment')}, or {option('task', 'obb')} for 4 corners)"))
    checks.append(((kind == OBB) & ((n < 9) | (n > 11)),
                   "expected 9 numbers (class x1 y1 ... x4 y4), 10 with a score or 11 with a score and a track id",
                   ""))
    checks.append(((kind == SEGMENT) & (n < 7) & (n != 5) & (n != 6),
                   "expected a class and at least 3 points (7 numbers), or a box (5 numbers)", ""))
    if kpt_shape is not None:
        k, d = kpt_shape
        base = 5 + k * d
        checks.append(((kind == POSE) & ((n < base) | (n > base + 2)),
                       f"expected {base} numbers (class cx cy w h and {k} keypoints of {d} values), {base + 1} with "
                       f"a score or {base + 2} with a score and a track id",
                       " (check kpt_shape in data.yaml)"))
    return _first_of([_messages(bad, f"{msg}; got ", n, hint) for bad, msg, hint in checks], len(n))
