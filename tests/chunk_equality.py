"""Exact equality of datasets and reports, cell by cell: what the streaming tests compare chunks against read() with;
and the two ways those tests stream a source (the engine's stream of an adapter's parts, and a conversion).

Imported by the tests (``from chunk_equality import ...``); pytest puts ``tests/`` on the path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from prelabel.adapters.base import ReadOptions
from prelabel.engine import PartStream
from prelabel.errors import ReadError
from prelabel.model import Dataset
from prelabel.pipeline import convert
from prelabel.report import Report

__all__ = ["converted", "datasets_equal", "frames_equal", "reports_equal", "same", "same_error", "streamed"]


def streamed(adapter: Any, path: Path, options: ReadOptions, *, parts: int,
             workers: int | None = None) -> tuple[list[Dataset], Report]:
    """``path`` streamed by the engine in ``parts`` parts of ``adapter``'s plan (in a pool of ``workers`` when
    given): each part's tables as a Dataset (sharing one empty report), and the stream's merged report."""
    stream = PartStream(adapter, path, options=options, parts=parts, workers=workers)
    shared = Report()
    chunks = [Dataset(images=i, categories=c, annotations=a, report=shared) for i, c, a in stream]
    return chunks, stream.report


def same_error(whole: Callable[[], Any], streamed: Callable[[], Any]) -> ReadError:
    """Both calls raise a ReadError, the same one (text, file, line, element and hint); the streamed one."""
    errors = []
    for fn in (whole, streamed):
        with pytest.raises(ReadError) as e:
            fn()
        errors.append(e.value)
    w, got = errors
    assert (str(got), got.file, got.line, got.element, got.hint) == (str(w), w.file, w.line, w.element, w.hint)
    return got


def converted(tmp: Path, name: str, src: Path, *, fmt: str, **kw: Any) -> tuple[dict[str, bytes], dict[str, Any]]:
    """One conversion of ``src`` into ``tmp/name``: the bytes of each COCO file written, by name, and the report
    (its output files named without their folder)."""
    out = tmp / name / "out.json"
    rep = tmp / name / "report.json"
    convert(src, out, fmt=fmt, report_path=rep, **kw)
    files = {p.name: p.read_bytes() for p in sorted(out.parent.iterdir()) if p.name != "report.json"}
    doc = json.loads(rep.read_bytes())
    doc["output"]["files"] = [Path(f).name for f in doc["output"]["files"]]
    return files, doc


def same(a: Any, b: Any) -> bool:
    """Deep equality of cell values: arrays by dtype, shape and values; NaN equals NaN; dicts and lists deeply."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True)))
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if a is pd.NA or b is pd.NA:
        return a is b
    return type(a) is type(b) and bool(a == b)


def frames_equal(a: pd.DataFrame, b: pd.DataFrame, what: str) -> None:
    assert list(a.columns) == list(b.columns), what
    assert len(a) == len(b), f"{what}: {len(a)} rows != {len(b)}"
    for col in a.columns:
        assert a[col].dtype == b[col].dtype, f"{what}.{col}: {a[col].dtype} != {b[col].dtype}"
        for i, (x, y) in enumerate(zip(a[col].tolist(), b[col].tolist(), strict=True)):
            assert same(x, y), f"{what}.{col}[{i}]: {x!r} != {y!r}"


def datasets_equal(a: Dataset, b: Dataset, what: str = "") -> None:
    """``what`` prefixes the table names in the messages (e.g. "chunk 3: ")."""
    frames_equal(a.images, b.images, what + "images")
    frames_equal(a.categories, b.categories, what + "categories")
    frames_equal(a.annotations, b.annotations, what + "annotations")


def reports_equal(a: Report, b: Report) -> None:
    assert a.read == b.read
    assert a.diagnostics == b.diagnostics
    frames_equal(a.drops, b.drops, "drops")
    frames_equal(a.changes, b.changes, "changes")
    assert a.to_dict() == b.to_dict()
