"""Match COCO file names to a project's asset names, and say why the ones that don't match differ.

Rules, tried in order for each COCO name (the first that gives exactly one asset wins):

1. ``exact`` (after Unicode NFC and forward slashes);
2. ``name-map``: the name is a key of the user's name map (``--name-map FILE``); its value is matched instead,
   by the rules below;
3. ``strip-prefix``: the same path once the user's prefixes (``--strip-prefix PREFIX``) are removed from the
   start of the COCO name and of the asset names;
4. ``prefix``: the same path with a leading folder prefix removed on either side (Labellerr's
   ``local_upload/<uuid>/car.jpg``, Label Studio's ``/data/upload/3/1a2b3c4d-car.jpg``, ``images/car.jpg``);
5. ``sanitized``: Label Studio's upload sanitizing (spaces to ``_``, brackets dropped);
6. ``case``: the same name in another case (only with ``fold_case``: otherwise a hint);
7. ``extension``: ``.jpg`` / ``.jpeg`` / ``.png`` ... swapped (only with ``fold_extension``).

The optional rules are a :class:`MatchRules` (the CLI's ``--match-case-insensitive``, ``--match-any-extension``,
``--strip-prefix`` and ``--name-map``). Names that match nothing are returned as
:class:`~prelabel.upload.base.UnmatchedFile` with their closest asset names, the kind of mismatch (``why``) and
the option that fixes it (``hint``); :func:`unmatched_line` is the sentence the CLI prints.

Example:
    >>> from prelabel.upload.match import match_names
    >>> m = match_names(["car.jpg", "Dog.JPG", "cat.png"], ["local_upload/1f/car.jpg", "dog.jpg", "cat.jpeg"])
    >>> m.matched
    {'car.jpg': 'local_upload/1f/car.jpg'}
    >>> for u in m.unmatched:
    ...     print(unmatched_line(u))
    Dog.JPG: no project image; closest: dog.jpg (case differs) -> call again with match=MatchRules(fold_case=True)
    cat.png: no project image; closest: cat.jpeg (extension differs) -> call again with match=MatchRules(fold_extension=True)
    >>> match_names(["Dog.JPG"], ["dog.jpg"], rules=MatchRules(fold_case=True)).how
    {'Dog.JPG': 'case'}
"""

from __future__ import annotations

import csv
import difflib
import io
import posixpath
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..errors import UsageError, for_face
from .base import UnmatchedFile

__all__ = ["WHY_TEXT", "MatchResult", "MatchRules", "fix_hint", "load_name_map", "match_names",
           "strip_upload_prefix", "unmatched_line"]

_LS_UPLOAD = re.compile(r"^[0-9a-f]{8}-")
_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

#: the kind of mismatch, as the CLI words it in parentheses after the closest names
WHY_TEXT = {
    "case": "case differs",
    "extension": "extension differs",
    "prefix": "folder prefix differs",
    "sanitized": "characters the platform replaces differ",
    "similar name": "similar name",
    "name-map": "the --name-map target",
    "service": "the service did not match it",
}
NAME_MAP_HEADERS = ({"coco_name", "project_name"}, {"coco", "project"}, {"source", "target"})


@dataclass(frozen=True)
class MatchRules:
    """The optional matching rules: ``fold_case`` (``--match-case-insensitive``), ``fold_extension``
    (``--match-any-extension``), ``strip_prefixes`` (``--strip-prefix``, repeatable) and ``name_map``
    (``--name-map FILE``: COCO file name -> project file name).

    >>> MatchRules(fold_case=True, strip_prefixes=("data/",)).to_dict()
    {'fold_case': True, 'fold_extension': False, 'strip_prefixes': ['data/'], 'name_map': {}}
    """

    fold_case: bool = False
    fold_extension: bool = False
    strip_prefixes: tuple[str, ...] = ()
    name_map: Mapping[str, str] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return bool(self.fold_case or self.fold_extension or self.strip_prefixes or self.name_map)

    def to_dict(self) -> dict[str, Any]:
        return {"fold_case": self.fold_case, "fold_extension": self.fold_extension,
                "strip_prefixes": list(self.strip_prefixes), "name_map": dict(self.name_map)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> MatchRules:
        d = d or {}
        return cls(fold_case=bool(d.get("fold_case")), fold_extension=bool(d.get("fold_extension")),
                   strip_prefixes=tuple(str(p) for p in d.get("strip_prefixes") or ()),
                   name_map={str(k): str(v) for k, v in (d.get("name_map") or {}).items()})


def load_name_map(path: str | Path) -> dict[str, str]:
    """A name map from a JSON object (``{"coco name": "project name"}``) or a CSV of two columns
    ``coco_name,project_name`` (a first row of exactly those words, ``coco,project`` or ``source,target`` is a
    header). Raises UsageError naming the file and line of a bad row.
    """
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UsageError(f"--name-map {p}: cannot read it ({e.strerror or e})") from None
    if p.suffix.lower() == ".json" or data.lstrip()[:1] == b"{":
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as e:
            raise UsageError(f"--name-map {p}: not valid JSON ({e})",
                             hint='write {"coco name": "project name", ...}') from None
        if not isinstance(doc, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc.items()):
            raise UsageError(f"--name-map {p}: expected a JSON object of file name -> file name",
                             hint='write {"coco name": "project name", ...}')
        return {_norm(k): _norm(v) for k, v in doc.items()}
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"--name-map {p}: not UTF-8 text") from None
    out: dict[str, str] = {}
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        cells = [c.strip() for c in row]
        if not any(cells):
            continue
        if line_no == 1 and {c.lower() for c in cells} in NAME_MAP_HEADERS:
            continue
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise UsageError(f"--name-map {p}, line {line_no}: expected 2 columns (coco name, project name), "
                             f"got {len(cells)}", hint="one 'coco_name,project_name' pair per line")
        out[_norm(cells[0])] = _norm(cells[1])
    return out


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


def _strip(name: str, prefixes: Iterable[str]) -> str:
    for p in prefixes:
        p = _norm(p)
        if p and name.startswith(p):
            return name[len(p):].lstrip("/")
    return name


def _common_tail(a: str, b: str) -> int:
    """The number of trailing path parts ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(reversed(a.split("/")), reversed(b.split("/")), strict=False):
        if x != y:
            break
        n += 1
    return n


def _prefix_fix(name: str, assets: list[str]) -> tuple[list[str], str]:
    """Order the assets by how much of ``name``'s path they share; the --strip-prefix that would match the best
    one, when one is clearly best and one path ends the other."""
    n = _norm(name)
    ranked = sorted(assets, key=lambda a: -_common_tail(n, _norm(a)))
    best = _norm(ranked[0])
    tails = [_common_tail(n, _norm(a)) for a in ranked]
    if len(ranked) > 1 and tails[0] == tails[1]:
        return ranked, for_face("the name is in several folders: map it with --name-map FILE")
    if n.endswith("/" + best):
        return ranked, for_face(f"rerun with --strip-prefix {n[:len(n) - len(best)]}")
    if best.endswith("/" + n):
        return ranked, for_face(f"rerun with --strip-prefix {best[:len(best) - len(n)]}")
    return ranked, for_face("map it with --name-map FILE")


def fix_hint(why: str) -> str:
    """The default fix for a kind of mismatch (when the matcher gave none)."""
    return for_face({"case": "rerun with --match-case-insensitive", "extension": "rerun with --match-any-extension",
            "prefix": "rerun with --strip-prefix PREFIX or map it with --name-map FILE",
            "sanitized": "map it with --name-map FILE",
            "similar name": "if it is that image, map it with --name-map FILE",
            "name-map": "fix its entry in the --name-map file",
            "service": "rename the image in the project, or check the project's file list"}.get(
        why, "add the image to the project first"))


def unmatched_line(u: UnmatchedFile) -> str:
    """One line for an unmatched file: what is closest, how it differs, and the option that fixes it.

    >>> print(unmatched_line(UnmatchedFile("x.png", [], "no similar name")))
    x.png: no project image; nothing similar -> add the image to the project first
    """
    hint = getattr(u, "hint", "") or fix_hint(u.why)
    if not u.closest:
        return f"{u.name}: no project image; nothing similar -> {hint}"
    why = WHY_TEXT.get(u.why, u.why)
    return f"{u.name}: no project image; closest: {', '.join(u.closest)} ({why}) -> {hint}"


@dataclass
class MatchResult:
    """``matched``: COCO name -> asset name; ``how``: COCO name -> rule; ``unmatched``: with hints."""

    matched: dict[str, str] = field(default_factory=dict)
    how: dict[str, str] = field(default_factory=dict)
    unmatched: list[UnmatchedFile] = field(default_factory=list)

    def renamed(self) -> dict[str, tuple[str, str]]:
        """COCO name -> (asset name, rule), for every name matched to an asset that is not the very same string."""
        return {n: (a, self.how[n]) for n, a in self.matched.items() if a != n}


def _index(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for k, asset in keys:
        lst = out.setdefault(k, [])
        if asset not in lst:
            lst.append(asset)
    return out


class _Matcher:
    def __init__(self, assets: Iterable[str], rules: MatchRules) -> None:
        self.rules = rules
        asset_list = list(dict.fromkeys(assets))
        self.exact = _index((_norm(a), a) for a in asset_list)
        self.stripped = _index((_strip(_norm(a), rules.strip_prefixes), a) for a in asset_list) \
            if rules.strip_prefixes else {}
        self.by_base = _index((strip_upload_prefix(a), a) for a in asset_list)
        self.by_sanitized = _index((_sanitize(strip_upload_prefix(a)), a) for a in asset_list)
        self.by_lower = _index((strip_upload_prefix(a).lower(), a) for a in asset_list)
        self.by_stem = _index((_stem_ext(strip_upload_prefix(a).lower())[0], a) for a in asset_list)

    def tries(self, n: str) -> tuple[list[tuple[str, list[str]]], list[str], list[str]]:
        base = strip_upload_prefix(n)
        tries: list[tuple[str, list[str]]] = [("exact", self.exact.get(n, []))]
        if self.rules.strip_prefixes:
            tries.append(("strip-prefix", self.stripped.get(_strip(n, self.rules.strip_prefixes), [])))
        tries += [("prefix", self.by_base.get(base, [])),
                  ("sanitized", self.by_sanitized.get(_sanitize(base), []))]
        case_hits = self.by_lower.get(base.lower(), [])
        stem, ext = _stem_ext(base.lower())
        ext_hits = list(self.by_stem.get(stem, [])) if ext else []
        if self.rules.fold_case:
            tries.append(("case", case_hits))
        if self.rules.fold_extension:
            tries.append(("extension", ext_hits))
        return tries, case_hits, ext_hits

    def match(self, name: str) -> tuple[str | None, str]:
        n = _norm(name)
        mapped = self.rules.name_map.get(n) if self.rules.name_map else None
        for how, hits in self.tries(mapped if mapped is not None else n)[0]:
            if len(hits) == 1:
                return hits[0], ("name-map" if mapped is not None else how)
        return None, ""

    def unmatched(self, name: str) -> UnmatchedFile:
        n = _norm(name)
        mapped = self.rules.name_map.get(n) if self.rules.name_map else None
        if mapped is not None:
            close = difflib.get_close_matches(strip_upload_prefix(mapped), list(self.by_base), n=3, cutoff=0.6)
            return UnmatchedFile(name, [self.by_base[c][0] for c in close], "name-map",
                                 f"its --name-map entry names {mapped}, which is not in the project: fix the entry")
        tries, case_hits, ext_hits = self.tries(n)
        base = strip_upload_prefix(n)
        prefix_hits = self.by_base.get(base, [])
        sanitized_hits = self.by_sanitized.get(_sanitize(base), [])
        if len(prefix_hits) > 1:   # the same name under several folders: ambiguous
            ranked, hint = _prefix_fix(n, prefix_hits)
            return UnmatchedFile(name, ranked[:3], "prefix", hint)
        if len(sanitized_hits) > 1:
            return UnmatchedFile(name, sanitized_hits[:3], "sanitized",
                                 for_face("several project names differ only there: map it with --name-map FILE"))
        if case_hits:
            hint = (for_face("several project names differ only in case: map it with --name-map FILE")
                    if self.rules.fold_case else fix_hint("case"))
            return UnmatchedFile(name, case_hits[:3], "case", hint)
        if ext_hits:
            hint = (for_face("several project names differ only in the extension: map it with --name-map FILE")
                    if self.rules.fold_extension else fix_hint("extension"))
            return UnmatchedFile(name, ext_hits[:3], "extension", hint)
        close = difflib.get_close_matches(base, list(self.by_base), n=3, cutoff=0.6)
        closest = [self.by_base[c][0] for c in close]
        why = "similar name" if closest else "no similar name"
        return UnmatchedFile(name, closest, why, fix_hint(why))


def match_names(names: Iterable[str], assets: Iterable[str], *, fold_case: bool = False,
                fold_extension: bool = False, rules: MatchRules | None = None) -> MatchResult:
    """Match every COCO ``names`` entry to one of ``assets`` (see the module docstring for the rules).

    ``fold_case`` / ``fold_extension`` are shortcuts for the same fields of ``rules``.
    """
    r = rules or MatchRules()
    if fold_case or fold_extension:
        r = MatchRules(fold_case=r.fold_case or fold_case, fold_extension=r.fold_extension or fold_extension,
                       strip_prefixes=r.strip_prefixes, name_map=r.name_map)
    matcher = _Matcher(assets, r)
    res = MatchResult()
    for name in names:
        asset, how = matcher.match(name)
        if asset is not None:
            res.matched[name] = asset
            res.how[name] = how
        else:
            res.unmatched.append(matcher.unmatched(name))
    return res
