"""Diagnostic codes and the Report ledger.

Every annotation that enters prelabel is either written or accounted for here, with a reason code and its
source location. The ledger balances: ``read == written + dropped``.

Messages naming an option (:func:`prelabel.errors.option`) are spelled for their reader as they are recorded:
Python keywords, or the command line's flags.

Annotations are counted in bulk (no Python object per annotation): adapters call :meth:`Report.add_read`
with how many they read, and every step that removes rows hands the removed rows to :meth:`Report.drop`,
which keeps their reason, category and source location as columns.

Example:
    >>> import pandas as pd
    >>> from prelabel.report import Report
    >>> r = Report()
    >>> r.add_read(3)
    >>> rows = pd.DataFrame({"category": ["cat"], "src_file": ["a.txt"], "src_line": [2]})
    >>> r.drop("dropped.degenerate", rows, "zero width")
    >>> r.set_written(2)
    >>> r.balanced, r.dropped_counts()
    (True, {'dropped.degenerate': 1})
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from .errors import spell

__all__ = ["CODES", "Diagnostic", "Report", "format_source"]

# code -> what it means (docs/report.md documents the same table)
CODES: dict[str, str] = {
    "clipped": "geometry was clipped to the image rectangle",
    "repaired": "an invalid polygon was repaired (make_valid)",
    "recomputed": "a stored bbox or area disagreed with the geometry and was recomputed",
    "category.matched": "a source category matched a schema category after normalization",
    "category.mapped": "a source category was renamed by the mapping file",
    "category.unused": "a source category with no annotations that the schema does not have was left out",
    "dropped.degenerate": "zero or negative size after conversion or clipping",
    "dropped.outside": "entirely outside the image",
    "dropped.nonfinite": "NaN or infinite coordinates",
    "dropped.min_area": "area under --min-area",
    "dropped.min_size": "a side (width or height of the box) under --min-size",
    "ledger.unbalanced": "read is not written + dropped: rows were removed without a record "
                         "(Dataset.filter without reason=)",
    "score.missing": "annotations without a score kept by --min-score: ground truth, or scores that were not read",
    "dropped.min_score": "score under --min-score",
    "dropped.unknown_category": "no usable category: not in the schema (--unknown drop), an empty or missing "
                                "label (e.g. pylabel rows of images without annotations), or a category id or "
                                "class index the source does not define",
    "dropped.mapped_to_null": "the mapping file sends this category to null",
    "dropped.no_image": "annotation for an image that does not exist or has no known size",
    "dropped.unsupported": "a shape kind that COCO object annotations cannot hold (polyline, points, ...)",
    "dropped.cancelled": "a cancelled Label Studio annotation",
    "dropped.ambiguous": "rows whose meaning cannot be decided (9 YOLO columns without a task)",
    "dropped.invalid": "a row that could not be parsed",
    "dropped.outside_frame": "a video track frame, or a shape in an image, marked outside",
    "image.missing": "a label file or record names an image that is not there",
    "image.size_from_header": "the image size came from the image file, not the annotation file",
    "image.unlabeled": "an image with no label file (kept with no annotations)",
    "image.attribute": "an image-level label (tag, choices) kept as an image attribute",
    "image.size_mismatch": "the size an annotation file records for an image differs from the image file's header",
    "image.by_subset": "a CVAT project export of several subsets: images are named <subset>/<name>",
    "image.merged": "several tasks or records name the same image file; their annotations share one image",
    "shape.grouped": "shapes sharing a group_id and label (LabelMe) were joined into one annotation; the ledger "
                     "counts the annotation once",
    "image.unsafe_name": "an image file name that would escape its root (absolute, '..'); a safe one was used",
    "coordinates.suspect": "coordinates that suggest another convention (a hint names the option)",
    "value.coerced": "a value written in another type was converted (iscrowd \"false\" -> 0, a string number)",
    "skeleton.shifted": "a 0-based keypoint skeleton was shifted to COCO's 1-based indices",
    "file.skipped": "an input file that was skipped",
    "task.inferred": "the YOLO task (or kpt_shape) was inferred from the label files' column counts",
    "category.unnamed": "no class names were found: categories are named by their class index",
    "stream.whole": "an input the command line would stream was read whole (the note says why); same output",
    "results.ignored": "model results that hold no object (classification probabilities): not read",
}


def format_source(file: str, line: int | None = None) -> str:
    """``file:line`` when a line (or element index) is known, else ``file``."""
    return f"{file}:{line}" if line else str(file)


@dataclass(frozen=True)
class Diagnostic:
    """One message about the input: ``code`` from :data:`CODES`, where it came from, and what happened."""

    code: str
    source: str
    message: str
    severity: str = "warning"  # "info" | "warning" | "error"
    # a note that counts things (Report.tally): its template and counts, so that the notes of a source's parts
    # add up to the note of one read (prelabel.adapters.parts.merge); not part of the note's identity
    tally: tuple[str, tuple[int, ...]] | None = field(default=None, compare=False, repr=False)
    tally_first: bool = field(default=False, compare=False, repr=False)  # the sum stands where the first part's did
    tally_end: int = field(default=0, compare=False, repr=False)  # a closing note: its rank among them (Report.tally)
    tally_source: str | None = field(default=None, compare=False, repr=False)  # what it counts over, shown ``at``

    def __post_init__(self) -> None:
        if "{option:" in self.message:  # an option named in the message, spelled for its reader
            object.__setattr__(self, "message", spell(self.message))

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "source": self.source, "message": self.message, "severity": self.severity}


@dataclass
class Report:
    """The ledger of one run: what was read, written, dropped and changed, and why."""

    input: dict[str, Any] = field(default_factory=dict)
    output: dict[str, Any] = field(default_factory=dict)
    read: int = 0
    written: int | None = None
    written_by_category: dict[str, int] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    mapping: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    _drops: list[pd.DataFrame] = field(default_factory=list, repr=False)
    _changes: list[pd.DataFrame] = field(default_factory=list, repr=False)

    # ----------------------------------------------------------------- counting
    def add_read(self, n: int) -> None:
        """Count ``n`` annotations read from the source (those in the table and those dropped while reading)."""
        self.read += int(n)

    def set_written(self, n: int, *, by_category: dict[str, int] | None = None) -> None:
        """Record how many annotations were written (and, optionally, how many per category name)."""
        self.written = int(n)
        if by_category is not None:
            self.written_by_category = {str(k): int(v) for k, v in sorted(by_category.items())}

    def note(self, code: str, source: str, message: str, *, severity: str = "warning") -> None:
        """Record a diagnostic that is not about one annotation row (a file, an image, a category)."""
        self.diagnostics.append(Diagnostic(code, str(source), spell(message), severity))

    def tally(self, code: str, source: str, template: str, counts: tuple[int, ...], *,
              severity: str = "warning", first: bool = False, end: int = 0, at: str = "") -> None:
        """A note that counts things: ``template.format(*counts)``. The tallies of a source's parts with the same
        code, source (its ``:line`` aside) and template add up to one note (:func:`prelabel.adapters.parts.merge`),
        standing where the last part's stood (``first``: where the first part's stood, for a reader that writes
        it before the notes every part repeats). ``end`` (1, 2, ...): one of the notes a reader writes last,
        about what it counted over the whole source (a part writes those it has counts for); merged, they
        stand after every part's other notes, by ``end``, then in the order the parts first wrote them (a
        template names what was counted, e.g. one note per control name). ``at``: where the first thing counted
        is (``file:line``), shown as the note's source; the tallies of parts with different ``at`` still add up
        (over ``source``), the merged note shown at the first part's that counted any.

        >>> r = Report()
        >>> r.tally("image.size_from_header", "ds", "{} size(s) read", (3,), severity="info")
        >>> r.diagnostics[0].message, r.diagnostics[0].tally
        ('3 size(s) read', ('{} size(s) read', (3,)))
        """
        self.diagnostics.append(Diagnostic(code, at or str(source), template.format(*counts), severity,
                                           tally=(template, tuple(int(c) for c in counts)), tally_first=first,
                                           tally_end=int(end), tally_source=str(source) if at else None))

    def drop(self, reason: str | None, rows: pd.DataFrame, message: str = "", *, phase: int = 0,
             first: int | None = None) -> None:
        """Record annotation rows removed for ``reason`` (None: each row's own, from a ``reason`` column).

        ``rows`` needs the columns ``category``, ``src_file`` and ``src_line`` (the annotation table's own);
        a ``message`` column, when present, gives a per-row message. ``phase``: the step of a reader that drops
        them, for a reader that records its drops step by step over the whole source: the drops of its parts,
        merged, are put back in step order (:meth:`order_phases`). ``first``: where the first of these rows
        stands in the source (a record's number), for a reader that lists its drops reason by reason, the
        reasons in the order of their first row (COCO): the drops of its parts, merged, are gathered so again.
        """
        if len(rows) == 0:
            return
        frame = _phased(_ledger_frame(reason, rows, spell(message)), phase)
        if first is not None and reason is not None:
            frame.attrs["first"] = (reason, int(first))
        self._drops.append(frame)

    def drop_one(self, reason: str, *, category: str | None, source_file: str, source_line: int = 0,
                 message: str = "") -> None:
        """Record one annotation dropped while reading (it never reached the table). Counts it as read too."""
        self.read += 1
        self._drops.append(pd.DataFrame({
            "reason": [reason], "category": [category], "source": [format_source(source_file, source_line)],
            "message": [spell(message)]}))

    def change(self, code: str, rows: pd.DataFrame, message: str = "", *, phase: int = 0) -> None:
        """Record annotation rows that were kept but changed (clipped, repaired, recomputed); ``phase`` as for
        :meth:`drop`."""
        if len(rows) == 0:
            return
        self._changes.append(_phased(_ledger_frame(code, rows, spell(message)), phase))

    def order_phases(self) -> None:
        """The drops and changes in phase order, each phase's in the order recorded (a stable sort): the
        entries of a source's parts merged in plan order then stand as one read of the source records them."""
        for frames in (self._drops, self._changes):
            lead: dict[tuple[int, str], int] = {}  # (phase, reason) -> its first row (drops given ``first``)
            for f in frames:
                if "first" in f.attrs:
                    reason, at = f.attrs["first"]
                    key = (int(f.attrs.get("phase", 0)), reason)
                    lead[key] = min(lead.get(key, at), at)
            frames.sort(key=lambda f: (int(f.attrs.get("phase", 0)),
                                       lead.get((int(f.attrs.get("phase", 0)), f.attrs["first"][0]), 0)
                                       if "first" in f.attrs else 0))

    # ----------------------------------------------------------------- views
    @property
    def drops(self) -> pd.DataFrame:
        """Every dropped annotation: reason, category, source, message."""
        return _concat(self._drops)

    @property
    def changes(self) -> pd.DataFrame:
        """Every changed annotation: reason (the change code), category, source, message."""
        return _concat(self._changes)

    @property
    def dropped(self) -> int:
        return int(sum(len(d) for d in self._drops))

    def dropped_counts(self) -> dict[str, int]:
        """How many annotations were dropped, by reason (sorted)."""
        return _by_reason(self.drops)

    def changed_counts(self) -> dict[str, int]:
        """How many annotations were changed, by change code (sorted), as :meth:`dropped_counts` counts drops."""
        return _by_reason(self.changes)

    def dropped_by_category(self) -> dict[str, dict[str, int]]:
        d = self.drops
        out: dict[str, dict[str, int]] = {}
        if d.empty:
            return out
        g = d.assign(category=d["category"].fillna("")).groupby(["category", "reason"], sort=True).size()
        for (cat, reason), n in g.items():
            out.setdefault(str(cat), {})[str(reason)] = int(n)
        return out

    @property
    def balanced(self) -> bool:
        """True when every annotation read was written or dropped (only meaningful after writing)."""
        return self.written is not None and self.read == self.written + self.dropped

    def problems(self) -> list[Diagnostic]:
        """Diagnostics of severity warning or error, plus one per drop reason: what ``--strict`` fails on."""
        out = [d for d in self.diagnostics if d.severity != "info"]
        for reason, n in self.dropped_counts().items():
            out.append(Diagnostic(reason, "", f"{n} annotation(s) dropped: {CODES.get(reason, reason)}"))
        for code, n in self.changed_counts().items():
            out.append(Diagnostic(code, "", f"{n} annotation(s) changed: {CODES.get(code, code)}"))
        return out

    def merge(self, other: Report) -> None:
        """Add another report's counts and entries to this one (several sources merged into one dataset)."""
        self.read += other.read
        self.diagnostics.extend(other.diagnostics)
        self._drops.extend(other._drops)
        self._changes.extend(other._changes)
        self.mapping.extend(other.mapping)
        for k, v in other.input.items():
            self.input.setdefault(k, v)

    # ----------------------------------------------------------------- output
    def to_dict(self) -> dict[str, Any]:
        """The REPORT.json document (schema in docs/report.md)."""
        drops = self.drops
        changes = self.changes
        diags = [d.to_dict() for d in self.diagnostics]
        for frame in (drops, changes):
            if not frame.empty:
                diags.extend(
                    {"code": str(c), "source": str(s), "message": str(m), "severity": "warning"}
                    for c, s, m in zip(frame["reason"], frame["source"], frame["message"], strict=True))
        return {
            "input": dict(self.input, annotations=self.read),
            "output": dict(self.output),
            "ledger": {"read": self.read, "written": self.written, "dropped": self.dropped,
                       "balanced": self.balanced},
            "dropped": self.dropped_counts(),
            "dropped_by_category": self.dropped_by_category(),
            "written_by_category": dict(self.written_by_category),
            "changed": self.changed_counts(),
            "mapping": list(self.mapping),
            "diagnostics": diags,
            **({"extra": self.extra} if self.extra else {}),
        }

    def summary_lines(self, *, every: bool = False) -> list[str]:
        """A short human summary (the CLI prints it on stderr): the counts by reason, and the first diagnostic of
        each code. ``every`` (``-v``): under each reason, every dropped or changed annotation (its source and
        why), and every diagnostic.

        >>> rep = Report()
        >>> rep.drop_one("dropped.invalid", category="cat", source_file="a.txt:3", message="5 values, not 4")
        >>> for line in rep.summary_lines(every=True):
        ...     print(line)
        read 1 annotation(s); written -; dropped 1
          dropped  dropped.invalid                     1  a row that could not be parsed
                     a.txt:3: 5 values, not 4
        """
        lines = [f"read {self.read} annotation(s); written {self.written if self.written is not None else '-'}; "
                 f"dropped {self.dropped}"]
        for kind, frame, counts in (("dropped", self.drops, self.dropped_counts()),
                                    ("changed", self.changes, self.changed_counts())):
            for reason, n in counts.items():
                lines.append(f"  {kind}  {reason:<28} {n:>8}  {CODES.get(reason, '')}")
                if every:
                    rows = frame[frame["reason"] == reason]
                    src, msg = rows["source"].astype(str), rows["message"].astype(str)
                    lines += ("             " + src.where(msg == "", src + ": " + msg)).tolist()
        kinds = Counter((d.code, d.severity) for d in self.diagnostics)
        for (code, sev), n in sorted(kinds.items()):
            same = [d for d in self.diagnostics if d.code == code and d.severity == sev]
            more = f" (+{n - 1} more)" if n > 1 and not every else ""
            lines += [f"  {sev:<8} {code:<28} {d.source}: {d.message}{more}" for d in (same if every else same[:1])]
        return lines


STEP_PHASE = 1_000_000  # Report.drop/change phases of the conversion steps: STEP_PHASE * step + rank


def step_phase(step: int, rank: int) -> int:
    """The phase of what a conversion step (1 score filter, 2 reconciliation, 3 clipping) records, ``rank`` its
    place among that step's entries (a reason's, a category's): sorted by phase (:meth:`Report.order_phases`),
    the entries of a streamed conversion, recorded part by part, stand as a whole conversion records them.

    >>> step_phase(3, 4)
    3000004
    """
    return STEP_PHASE * step + rank


def _ledger_frame(reason: str | None, rows: pd.DataFrame, message: str) -> pd.DataFrame:
    files = rows["src_file"].astype(str).reset_index(drop=True)
    if "src_line" in rows:
        lines = rows["src_line"].astype("int64").reset_index(drop=True)
        sources = files.where(lines <= 0, files + ":" + lines.astype(str))
    else:
        sources = files
    n = len(rows)
    msg = (rows["message"].astype(str).reset_index(drop=True) if "message" in rows
           else pd.Series([message] * n, dtype=object))
    if "message" in rows and msg.str.contains("{option:", regex=False).any():
        msg = msg.map(spell)
    cats = (rows["category"].astype(object).reset_index(drop=True) if "category" in rows
            else pd.Series([None] * n, dtype=object))
    reasons = rows["reason"].astype(object).reset_index(drop=True) if reason is None else reason
    return pd.DataFrame({"reason": reasons, "category": cats, "source": sources, "message": msg})


def _by_reason(frame: pd.DataFrame) -> dict[str, int]:
    """The rows of a ledger frame (drops or changes) counted by their ``reason``, sorted by it."""
    if frame.empty:
        return {}
    return {str(k): int(v) for k, v in sorted(Counter(frame["reason"]).items())}


def _phased(frame: pd.DataFrame, phase: int) -> pd.DataFrame:
    if phase:
        frame.attrs["phase"] = phase
    return frame


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame({"reason": [], "category": [], "source": [], "message": []})
    return pd.concat(frames, ignore_index=True)
