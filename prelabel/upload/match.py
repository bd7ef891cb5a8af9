"""Match COCO file names to a project's asset names, and say why the ones that don't match differ.

Rules, tried in order for each COCO name (the first that gives exactly one asset wins):

1. exact (after Unicode NFC and forward slashes);
2. ``prefix``: the same path with a leading folder prefix removed on either side (Labellerr's
   ``local_upload/<uuid>/car.jpg``, Label Studio's ``/data/upload/3/1a2b3c4d-car.jpg``, ``images/car.jpg``);
3. ``sanitized``: Label Studio's upload sanitizing (spaces to ``_``, brackets dropped);
4. ``case``: the same name in another case (only with ``fold_case=True``: otherwise a hint);
5. ``extension``: ``.jpg`` / ``.jpeg`` / ``.png`` ... swapped (only with ``fold_extension=True``).

Names that match nothing are returned with their closest asset names (difflib) and the kind of mismatch, so the
message can say which option fixes it.

Example:
    >>> from prelabel.upload.match import match_names
    >>> m = match_names(["car.jpg", "Dog.JPG", "cat.png"], ["local_upload/1f/car.jpg", "dog.jpg", "cat.jpeg"])
    >>> m.matched
    {'car.jpg': 'local_upload/1f/car.jpg'}
    >>> [(u.name, u.closest, u.why) for u in m.unmatched]
    [('Dog.JPG', ['dog.jpg'], 'case'), ('cat.png', ['cat.jpeg'], 'extension')]
"""

from __future__ import annotations

import difflib
import posixpath
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from .base import UnmatchedFile

__all__ = ["MatchResult", "match_names", "strip_upload_prefix"]

_LS_UPLOAD = re.compile(r"^[0-9a-f]{8}-")
_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def _norm(name: str) -> str:
    return unicodedata.normalize("NFC", name.replace("\\", "/")).lstrip("/")


def strip_upload_prefix(name: str) -> str:
    """The base name without Label Studio's ``<8 hex>-`` upload prefix."""
    base = posixpath.basename(_norm(name))
    return _LS_UPLOAD.sub("", base)


def _sanitize(name: str) -> str:
    return re.sub(r"[\[\]()]", "", name.replace(" ", "_"))


def _stem_ext(name: str) -> tuple[str, str]:
    stem, ext = posixpath.splitext(name)
    return (stem, ext.lower()) if ext.lower() in _EXTS else (name, "")


@dataclass
class MatchResult:
    """``matched``: COCO name -> asset name; ``how``: COCO name -> rule; ``unmatched``: with hints."""

    matched: dict[str, str] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    unmatched: list[UnmatchedFile] = field(default_factory=list)


def _index(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, asset in keys:
        lst = out.setdefault(k, [])
        if asset not in lst:
            lst.append(asset)
    return out


def match_names(names: Iterable[str], assets: Iterable[str], *, fold_case: bool = False,
                fold_extension: bool = False) -> MatchResult:
    """Match every COCO ``names`` entry to one of ``assets`` (see the module docstring for the rules)."""
    asset_list = list(dict.fromkeys(assets))
    exact = _index((_norm(a), a) for a in asset_list)
    by_base = _index((strip_upload_prefix(a), a) for a in asset_list)
    by_sanitized = _index((_sanitize(strip_upload_prefix(a)), a) for a in asset_list)
    by_lower = _index((strip_upload_prefix(a).lower(), a) for a in asset_list)
    by_stem = _index((_stem_ext(strip_upload_prefix(a).lower())[0], a) for a in asset_list)
    res = MatchResult()
    for name in names:
        n = _norm(name)
        base = strip_upload_prefix(n)
        tries: list[tuple[str, list[str]]] = [
            ("exact", exact.get(n, [])),
            ("prefix", by_base.get(base, [])),
            ("sanitized", by_sanitized.get(_sanitize(base), [])),
        ]
        case_hits = by_lower.get(base.lower(), [])
        stem, ext = _stem_ext(base.lower())
        ext_hits = [a for a in by_stem.get(stem, []) if ext] if ext else []
        if fold_case:
            tries.append(("case", case_hits))
        if fold_extension:
            tries.append(("extension", ext_hits))
        for how, hits in tries:
            if len(hits) == 1:
                res.matched[name] = hits[0]
                res.how[name] = how
                break
        else:
            prefix_hits = by_base.get(base, [])
            if len(prefix_hits) > 1:   # the same name under several folders: ambiguous
                why, closest = "prefix", prefix_hits
            elif case_hits:
                why, closest = "case", case_hits
            elif ext_hits:
                why, closest = "extension", ext_hits
            else:
                pool = list(by_base)
                close = difflib.get_close_matches(base, pool, n=3, cutoff=0.6)
                closest = [by_base[c][0] for c in close]
                why = "no similar name" if not closest else "similar name"
            res.unmatched.append(UnmatchedFile(name=name, closest=closest[:3], why=why))
    return res
