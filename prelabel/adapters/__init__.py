"""Source adapters: one module per format, each with ``detect()`` and ``read()``.

The registry is a plain dict from format name to module path; modules are imported only when used, so the
command line starts fast. Adding a format is one module and one line here.

Example:
    >>> from prelabel.adapters import FORMATS
    >>> sorted(FORMATS)
    ['coco', 'cvat', 'labelme', 'labelstudio', 'predictions', 'voc', 'yolo']
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import cast

from ..errors import FormatDetectionError, UsageError, option
from ..junk import junk_reason
from .base import Adapter, ReadOptions

__all__ = ["ALIASES", "FORMATS", "Adapter", "ReadOptions", "detect", "get", "locate"]

FORMATS: dict[str, str] = {
    "yolo": "prelabel.adapters.yolo",
    "voc": "prelabel.adapters.voc",
    "cvat": "prelabel.adapters.cvat",
    "labelstudio": "prelabel.adapters.labelstudio",
    "coco": "prelabel.adapters.coco",
    "predictions": "prelabel.adapters.predictions",
    "labelme": "prelabel.adapters.labelme",
}
ALIASES: dict[str, str] = {
    "ultralytics": "yolo", "darknet": "yolo", "pascal_voc": "voc", "pascalvoc": "voc", "label_studio": "labelstudio",
    "label-studio": "labelstudio", "ls": "labelstudio", "csv": "predictions", "parquet": "predictions",
    "dataframe": "predictions",
}


def get(name: str) -> Adapter:
    """The adapter module for a format name (or alias)."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in FORMATS:
        raise UsageError(f"unknown format {name!r}", hint=f"use one of: {', '.join(sorted(FORMATS))}")
    return cast(Adapter, importlib.import_module(FORMATS[key]))


def detect(path: str | Path) -> str:
    """The format of ``path``: the adapter most sure of it. Ties and no match raise FormatDetectionError."""
    p = Path(path)
    if not p.exists():
        raise FormatDetectionError(str(p), "no such file or folder",
                                   hint="check the path: SRC is a dataset folder or an annotation file")
    scores = _scores(p)
    best = max(scores.values())
    if best <= 0:
        inside = _detect_inside(p) if p.is_dir() else []
        hint = f"give the format with {option('fmt')} (see 'prelabel formats')"
        if inside:
            hint = "these look like sources: " + ", ".join(f"{s} ({f})" for s, f in inside[:6]) + "; point at one"
        raise FormatDetectionError(str(p), "no known annotation format found here", hint=hint)
    top = sorted(n for n, s in scores.items() if s == best)
    if len(top) > 1:
        raise FormatDetectionError(str(p), f"ambiguous source: could be {' or '.join(top)}", candidates=top,
                                   hint=f"give the format with {option('fmt', top[0])} (or {option('fmt', top[1])})")
    return top[0]


def locate(path: str | Path, fmt: str | None = None) -> Path:
    """The source to read for ``path``: ``path`` itself, or, for a folder that no adapter (or not ``fmt``)
    recognises but that holds exactly one export file an adapter is sure of (a Label Studio export in its
    folder, Roboflow's ``train/_annotations.coco.json`` beside the images), that file.

    Example:
        >>> import tempfile, pathlib, json
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> _ = (d / "export").mkdir(), (d / "export" / "result.json").write_text(json.dumps(
        ...     [{"id": 1, "data": {"image": "/data/upload/1/abcd1234-a.jpg"}, "annotations": []}]))
        >>> locate(d / "export").name
        'result.json'
    """
    p = Path(path)
    if not p.is_dir():
        return p
    if fmt is not None and fmt in FORMATS:
        try:
            if float(get(fmt).detect(p)) > 0:
                return p
        except (OSError, ValueError):
            pass
    elif max(_scores(p).values()) > 0:
        return p
    files = [Path(f) for f, name in _detect_inside(p, files_only=True) if fmt is None or name == fmt]
    return files[0] if len(files) == 1 else p


def _scores(p: Path) -> dict[str, float]:
    """How sure each adapter is that ``p`` is its format (an adapter that fails to look counts as 0)."""
    scores: dict[str, float] = {}
    for name in FORMATS:
        try:
            scores[name] = float(get(name).detect(p))
        except (OSError, ValueError):
            scores[name] = 0.0
    return scores


# the files that may be an export (images and the rest beside them are not looked at)
_EXPORT_SUFFIXES = frozenset({".json", ".xml", ".csv", ".tsv", ".parquet", ".yaml", ".yml", ".data"})


def _detect_inside(folder: Path, *, files_only: bool = False) -> list[tuple[str, str]]:
    """(path, format) of the entries directly inside ``folder`` (or, for a subfolder, the first file in it) that
    one adapter is sure of; ``files_only``: annotation files only, not dataset folders."""
    found: list[tuple[str, str]] = []
    try:
        entries = sorted(e for e in folder.iterdir() if e.is_dir() or e.suffix.lower() in _EXPORT_SUFFIXES)[:50]
    except OSError:
        return found
    for entry in entries:
        if junk_reason(entry.name) is not None:
            continue
        candidates = [entry] if entry.is_dir() and not files_only else [] if entry.is_dir() else [entry]
        if entry.is_dir():
            candidates += sorted(c for c in entry.iterdir() if c.is_file() and junk_reason(c.name) is None)[:5]
        for cand in candidates:
            scores = _scores(cand)
            best = max(scores.values())
            top = [n for n, v in scores.items() if v == best]
            if best >= 0.5 and len(top) == 1:
                found.append((str(cand), top[0]))
                break
    return found
