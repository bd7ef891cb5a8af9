"""Category reconciliation: rename, merge and drop source categories, and match them to a target schema.

Three inputs decide what happens to each source category name:

``mapping``
    a dict or a YAML / JSON file of ``source name: target name``. Several sources may share a target (a
    merge); ``null`` drops the category (its annotations are reported as ``dropped.mapped_to_null``).
    Keys match source names exactly, else after normalization (below).
``schema``
    the target's categories: a COCO file or its ``categories`` list, a names list (YAML / JSON list, a
    data.yaml ``names``, or a ``.txt`` file with one name per line), a Labellerr template JSON, a Label Studio
    labeling config XML, or in memory a list of names, a list of ``{"id", "name"}`` dicts, a parsed document
    or a DataFrame (see :func:`load_schema`). The output categories are the schema's, in its order and with its
    ids (a names list is numbered 1..K).
``unknown``
    what to do with a category the schema does not have: ``"error"`` (raise CategoryError naming it and the
    closest schema names), ``"drop"`` (its annotations are reported as ``dropped.unknown_category``) or
    ``"keep"`` (appended after the schema with the next free ids).

Normalization: names match when equal after ignoring case, surrounding spaces, and treating ``_``, ``-`` and
spaces (runs of them) as one separator. An exact match always wins; every normalized match is reported
(``category.matched``). A name that normalizes to several schema names is an error (map it explicitly).

Without a schema, the mapping (if any) is applied, categories keep their first-seen order and their ids are
left unassigned (the writer numbers them 1..K): to keep a COCO source's ids, pass that file as the schema.

The final mapping goes into ``ds.report.mapping``: one ``{"source", "target", "id", "annotations", "how"}``
per source category, ``how`` one of ``exact``, ``normalized``, ``mapped``, ``dropped`` (mapped to null),
``unknown-dropped``, ``unknown-kept``, ``unused`` (a source category with no annotations that the schema
lacks, left out).

Example:
    >>> from prelabel.model import Dataset
    >>> from prelabel.converters.reconcile import reconcile
    >>> ds = Dataset.build(images={"file_name": ["a.jpg"], "width": [10], "height": [10]},
    ...     annotations={"image": [0, 0, 0], "category": ["Cat", "kitty", "dog"],
    ...                  "x": [0.0] * 3, "y": [0.0] * 3, "w": [1.0] * 3, "h": [1.0] * 3})
    >>> out = reconcile(ds, mapping={"kitty": "cat", "dog": None}, schema=["dog", "cat"])
    >>> list(out.annotations["category"]), list(out.categories["name"]), out.categories["id"].tolist()
    (['cat', 'cat'], ['dog', 'cat'], [1, 2])
    >>> [(m["source"], m["target"], m["id"], m["how"]) for m in out.report.mapping]
    [('Cat', 'cat', 2, 'normalized'), ('kitty', 'cat', 2, 'mapped'), ('dog', None, None, 'dropped')]
    >>> out.report.dropped_counts()
    {'dropped.mapped_to_null': 1}
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import labelconfig
from ..errors import CategoryError, ReadError, UsageError, option
from ..model import CATEGORY_COLUMNS, Dataset
from ..report import Report, step_phase
from .coco import category_ids

__all__ = ["Reconciler", "Seen", "load_mapping", "load_schema", "match_rule", "normalize_name", "reconcile"]

_SEP = re.compile(r"[\s_\-]+")
UNKNOWN_MODES = ("error", "drop", "keep")
# Labellerr question types that classify an image or an object rather than draw one: not categories
_CLASSIFICATION_TYPES = {"input", "radio", "boolean", "select", "dropdown", "checkbox", "stt", "imc", "text",
                         "textarea", "number", "date", "rating"}


# ------------------------------------------------------------------------------------------- normalization
def normalize_name(name: str) -> str:
    """The key names are compared by: case folded, surrounding spaces removed, ``_ - space`` runs as one space.

    >>> normalize_name("  Traffic_Light ") == normalize_name("traffic-light")
    True
    """
    return _SEP.sub(" ", str(name)).strip().casefold()


def match_rule(source: str, target: str) -> str:
    """Which normalizations made ``source`` match ``target``: ``case``, ``surrounding spaces``, ``separators``.

    >>> match_rule("Butterfly", "butterfly"), match_rule(" traffic_light", "Traffic light")
    ('case', 'case, surrounding spaces, separators')
    """
    a1, b1 = source.strip(), target.strip()
    rules = []
    if _SEP.sub(" ", a1).strip() != _SEP.sub(" ", b1).strip():
        rules.append("case")
    if a1 != source or b1 != target:
        rules.append("surrounding spaces")
    if a1.casefold() != b1.casefold():
        rules.append("separators")
    return ", ".join(rules) or "exact"


def _q(name: Any) -> str:
    return repr(str(name))


# ------------------------------------------------------------------------------------------- file reading
def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ReadError(str(path), f"cannot read: {e}") from None


def _parse_structured(path: Path, text: str) -> Any:
    """JSON (by extension, or by content when it starts like JSON) else YAML."""
    suffix = path.suffix.lower()
    stripped = text.lstrip()
    if suffix == ".json" or (suffix not in (".yaml", ".yml") and stripped[:1] in ("{", "[")):
        import orjson

        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as e:
            if suffix == ".json":
                line = text[: e.pos].count("\n") + 1 if e.pos is not None else None
                raise ReadError(str(path), f"not valid JSON: {e.msg}", line=line) from None
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        yline: int | None = mark.line + 1 if mark is not None else None
        raise ReadError(str(path), f"not valid YAML: {getattr(e, 'problem', None) or e}", line=yline) from None


# ------------------------------------------------------------------------------------------- mapping
def _name_value(value: Any, what: str) -> str:
    if isinstance(value, bool):
        raise CategoryError(f"{what} is the boolean {str(value).lower()}",
                            hint="quote names such as 'yes', 'no', 'on', 'off' in YAML")
    if isinstance(value, (int, np.integer)) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    if not isinstance(value, str) or not value.strip():
        raise CategoryError(f"{what} must be a non-empty name, got {value!r}",
                            hint="use null to drop a category")
    return value


def load_mapping(mapping: Mapping[str, str | None] | str | Path | None) -> dict[str, str | None]:
    """The mapping as a ``{source: target or None}`` dict, from a dict or a YAML / JSON file.

    A file may hold the dict at its top level or under a ``mapping`` key.

    >>> load_mapping({"kitty": "cat", "bg": None})
    {'kitty': 'cat', 'bg': None}
    """
    if mapping is None:
        return {}
    where = "mapping"
    doc: Any = mapping
    if isinstance(mapping, (str, Path)):
        p = Path(mapping)
        where = f"mapping file {p}"
        doc = _parse_structured(p, _read_text(p))
        if doc is None:
            return {}
    if isinstance(doc, Mapping) and set(doc) == {"mapping"} and isinstance(doc["mapping"], Mapping):
        doc = doc["mapping"]
    if not isinstance(doc, Mapping):
        raise CategoryError(f"{where}: expected a mapping of source name to target name (or null), "
                            f"got {type(doc).__name__}", hint="for example  kitty: cat  or  background: null")
    out: dict[str, str | None] = {}
    for k, v in doc.items():
        key = _name_value(k, f"{where}: key {k!r}")
        out[key] = None if v is None else _name_value(v, f"{where}: target of {key!r}")
    return out


# ------------------------------------------------------------------------------------------- schema
def _as_id(value: Any, where: str) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return None
    if isinstance(value, bool):
        raise CategoryError(f"{where}: category id must be an integer >= 1, got {value!r}")
    if isinstance(value, (int, np.integer)):
        iv = int(value)
    elif isinstance(value, (float, np.floating)) and float(value).is_integer():
        iv = int(value)
    else:
        raise CategoryError(f"{where}: category id must be an integer >= 1, got {value!r}")
    if iv < 1:
        raise CategoryError(f"{where}: category id must be an integer >= 1, got {iv}",
                            hint="COCO ids start at 1 (id 0 is background for many tools)")
    return iv


def _schema_frame(rows: list[dict[str, Any]], where: str) -> pd.DataFrame:
    if not rows:
        raise CategoryError(f"{where}: the schema has no categories")
    names: list[str] = []
    ids: list[int | None] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(rows):
        name = _name_value(r.get("name"), f"{where}: category {i + 1} name")
        if name in seen:
            raise CategoryError(f"{where}: category {name!r} is listed twice")
        seen[name] = i
        names.append(name)
        ids.append(_as_id(r.get("id"), f"{where}: category {name!r}"))
    given = [v for v in ids if v is not None]
    if not given:
        final = list(range(1, len(rows) + 1))
    elif len(given) != len(ids):
        missing = [n for n, v in zip(names, ids, strict=True) if v is None]
        raise CategoryError(f"{where}: some categories have ids and some do not ({_q(missing[0])} has none)")
    else:
        final = [int(v) for v in given]
        dup = sorted({v for v in final if final.count(v) > 1})
        if dup:
            raise CategoryError(f"{where}: category id {dup[0]} is used twice")
    return pd.DataFrame({
        "name": pd.Series(names, dtype=object),
        "supercategory": pd.Series([str(r.get("supercategory") or "") for r in rows], dtype=object),
        "keypoints": pd.Series([list(r["keypoints"]) if r.get("keypoints") else None for r in rows],
                               dtype=object),
        "skeleton": pd.Series([list(r["skeleton"]) if r.get("keypoints") and r.get("skeleton") else None
                               for r in rows], dtype=object),
        "id": pd.array(final, dtype="Int64"),
    })


def _labellerr_questions(doc: Mapping[str, Any]) -> list[Any] | None:
    for cand in (doc, doc.get("response"), doc.get("data"),
                 (doc.get("response") or {}).get("data") if isinstance(doc.get("response"), Mapping) else None):
        if isinstance(cand, Mapping) and isinstance(cand.get("questions"), list):
            return list(cand["questions"])
    return None


def _question_rows(questions: list[Any], where: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i, q in enumerate(questions):
        if not isinstance(q, Mapping):
            raise CategoryError(f"{where}: questions[{i}] is not an object")
        name = q.get("question", q.get("question_name", q.get("name")))
        kind = q.get("option_type", q.get("question_type", q.get("type")))
        if isinstance(kind, str) and kind.strip().casefold() in _CLASSIFICATION_TYPES:
            continue
        rows.append({"name": name})
    return rows


def _rows_from_doc(doc: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(doc, Mapping):
        if isinstance(doc.get("categories"), list):
            return _rows_from_doc(doc["categories"], where)
        questions = _labellerr_questions(doc)
        if questions is not None:
            return _question_rows(questions, where)
        names = doc.get("names")
        if isinstance(names, list):
            return [{"name": n} for n in names]
        if isinstance(names, Mapping):
            try:
                keyed = sorted((int(k), v) for k, v in names.items())
            except (TypeError, ValueError):
                raise CategoryError(f"{where}: names keys must be class indices (0, 1, ...)") from None
            return [{"name": v} for _, v in keyed]
        raise CategoryError(f"{where}: found no categories (expected a COCO 'categories' list, Labellerr "
                            f"'questions', a 'names' list, or a list of names)")
    if isinstance(doc, list):
        if doc and all(isinstance(d, Mapping) for d in doc):
            if all("question" in d or "question_name" in d for d in doc):
                return _question_rows(doc, where)
            return [dict(d) for d in doc]
        if any(isinstance(d, Mapping) for d in doc):
            raise CategoryError(f"{where}: a schema list must hold only names or only category objects")
        return [{"name": d} for d in doc]
    raise CategoryError(f"{where}: unsupported schema of type {type(doc).__name__}")


def _label_studio_rows(text: str, path: Path) -> list[dict[str, Any]]:
    # KeyPointLabels values name keypoints (head, left_hand, ...), not object categories: only the labels of
    # object controls are categories (a value listed under both is one, through its object control)
    names = labelconfig.parse(text, where=str(path)).category_names(alias=False)
    if not names:
        raise CategoryError(f"schema file {path}: no <Label value=...> inside RectangleLabels, PolygonLabels, "
                            f"BrushLabels, EllipseLabels or Labels (KeyPointLabels values are keypoint names, "
                            f"not categories)")
    return [{"name": n} for n in names]


def load_schema(schema: Any) -> pd.DataFrame | None:
    """The target schema as a categories table (``name``, ``supercategory``, ``keypoints``, ``skeleton``, ``id``).

    Accepted, as a file (by extension, else by content) or in memory:

    - COCO: a file or dict with ``categories``, or a list of ``{"id", "name", ...}`` dicts: ids kept;
      ``keypoints`` / ``skeleton`` kept.
    - names: a list of strings, a YAML / JSON list, a data.yaml ``names`` list or ``{index: name}`` dict, or a
      ``.txt`` file with one name per line (blank lines skipped): ids 1..K in list order.
    - Labellerr template: ``{"questions": [...]}`` or ``{"response": {"questions": [...]}}`` (also under
      ``data``); each question's ``question`` (or ``question_name`` / ``name``) is a category, in order, ids
      1..K; questions whose ``option_type`` (or ``question_type``) is a classification kind (radio, input,
      boolean, select, dropdown, checkbox, ...) are skipped.
    - Label Studio labeling config XML (read by :func:`prelabel.labelconfig.parse`: a DTD or entity is refused,
      tag names in any case): every ``<Label value=...>`` inside RectangleLabels, PolygonLabels, BrushLabels,
      EllipseLabels or Labels, in document order, duplicates once, ids 1..K. KeyPointLabels values are keypoint
      names, not categories, and are left out (unless an object control lists them too).
    - a DataFrame with a ``name`` column (``id``, ``supercategory``, ``keypoints``, ``skeleton`` optional).

    >>> load_schema(["cat", "dog"])[["name", "id"]].values.tolist()
    [['cat', 1], ['dog', 2]]
    """
    if schema is None:
        return None
    if isinstance(schema, pd.DataFrame):
        if "name" not in schema.columns:
            raise CategoryError("schema table: needs a 'name' column")
        rows = [{k: (None if _is_missing(v) else v) for k, v in r.items()}
                for r in schema.to_dict(orient="records")]
        return _schema_frame(rows, "schema table")
    if isinstance(schema, (str, Path)):
        p = Path(schema)
        where = f"schema file {p}"
        text = _read_text(p)
        suffix = p.suffix.lower()
        if suffix == ".xml" or (suffix not in (".json", ".yaml", ".yml", ".txt") and text.lstrip().startswith("<")):
            return _schema_frame(_label_studio_rows(text, p), where)
        if suffix in (".txt", ".names"):
            return _schema_frame([{"name": line.strip()} for line in text.splitlines() if line.strip()], where)
        doc = _parse_structured(p, text)
        return _schema_frame(_rows_from_doc(doc, where), where)
    if isinstance(schema, (Mapping, list, tuple)):
        return _schema_frame(_rows_from_doc(list(schema) if isinstance(schema, tuple) else schema, "schema"),
                             "schema")
    raise CategoryError(f"schema: unsupported type {type(schema).__name__}",
                        hint="give a file, a list of names, a list of {'id', 'name'} dicts or a DataFrame")


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NA:
        return True
    return isinstance(v, float) and math.isnan(v)


# ------------------------------------------------------------------------------------------- reconcile
@dataclass
class _Decision:
    source: str
    target: str | None  # None: dropped
    how: str
    lookup: str  # the name looked up in the schema (the mapping's target, else the source)
    annotations: int = 0


class _Matcher:
    """Exact, then normalized lookup of a name among ``names``."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.exact = set(self.names)
        self.by_key: dict[str, list[str]] = {}
        for n in self.names:
            self.by_key.setdefault(normalize_name(n), []).append(n)

    def find(self, name: str) -> list[str]:
        if name in self.exact:
            return [name]
        return list(self.by_key.get(normalize_name(name), []))

    def closest(self, name: str, n: int = 3) -> list[str]:
        keys = list(self.by_key)
        hits = difflib.get_close_matches(normalize_name(name), keys, n=n, cutoff=0.6)
        return [self.by_key[k][0] for k in hits]


def _unknown_error(unknown: list[_Decision], matcher: _Matcher) -> CategoryError:
    parts = []
    for d in unknown:
        via = f"mapped from {_q(d.source)}; " if d.lookup != d.source else ""
        n = d.annotations
        close = matcher.closest(d.lookup)
        near = f"closest: {', '.join(_q(c) for c in close)}" if close else "no close match"
        parts.append(f"{_q(d.lookup)} ({via}{n} annotation{'s' if n != 1 else ''}; {near})")
    k = len(unknown)
    msg = f"{k} categor{'ies are' if k != 1 else 'y is'} not in the schema: {', '.join(parts)}"
    return CategoryError(msg, hint=f"map them with {option('mapping', 'FILE')} (source: target, or null to drop), "
                                   f"or pass {option('unknown', 'drop')} to drop their annotations "
                                   f"({option('unknown', 'keep')} to keep them)")


def reconcile(ds: Dataset, *, mapping: Mapping[str, str | None] | str | Path | None = None,
              schema: Any = None, unknown: str = "error") -> Dataset:
    """Rename, merge, drop and renumber categories to match a target schema (see the module docstring)."""
    rec = Reconciler(mapping=mapping, schema=schema, unknown=unknown)
    out = rec.apply(ds)
    rec.finish(ds.report)
    return out.replace(categories=rec.categories())


def _factorized(ann: pd.DataFrame) -> tuple[np.ndarray, list[Any], list[str], list[int]]:
    """The category column's codes (-1: no category), its values in order of first use (as they are, and as
    names), and the rows of each."""
    codes, uniques = pd.factorize(ann["category"].to_numpy(dtype=object), use_na_sentinel=True)
    values = uniques.tolist()
    names = [str(u) for u in values]
    return codes, values, names, np.bincount(codes[codes >= 0], minlength=len(names)).tolist()


@dataclass(frozen=True)
class Seen:
    """A chunk's categories as :meth:`Reconciler.learn` takes them: the declared table (one row a name), the
    names its rows use in order of first use, and the rows of each."""

    categories: pd.DataFrame
    names: list[str]
    counts: list[int]


class Reconciler:
    """:func:`reconcile` one chunk of a dataset at a time (the streaming pipeline), with the same result.

    :meth:`apply` maps and drops each chunk's annotation rows (categories are decided as their names first
    appear: declared ones first, in the order of the chunk's categories table, then the names the rows use);
    the output category table only grows, so the ids of the categories already written never change.
    :meth:`finish` records the notes and the mapping in the report and raises the ``unknown="error"``
    CategoryError (with the counts of the whole input: rows of unknown categories are counted, not written,
    until the end). :meth:`categories` is the final table.

    Example:
        >>> from prelabel.model import Dataset
        >>> rec = Reconciler(schema=["dog", "cat"], unknown="drop")
        >>> parts = [Dataset.build(images={"file_name": ["a.jpg"], "width": [9], "height": [9]},
        ...     annotations={"image": [0], "category": [c], "x": [0.0], "y": [0.0], "w": [1.0], "h": [1.0]})
        ...     for c in ("cat", "bird")]
        >>> [list(rec.apply(p).annotations["category"]) for p in parts]
        [['cat'], []]
        >>> rec.finish(parts[0].report)
        >>> rec.categories()["id"].tolist(), [(m["source"], m["how"]) for m in parts[0].report.mapping]
        ([1, 2], [('cat', 'exact'), ('bird', 'unknown-dropped')])
    """

    def __init__(self, *, mapping: Mapping[str, str | None] | str | Path | None = None, schema: Any = None,
                 unknown: str = "error") -> None:
        if unknown not in UNKNOWN_MODES:
            raise UsageError(f"unknown={unknown!r}: expected one of {', '.join(UNKNOWN_MODES)}")
        self.unknown = unknown
        self.maps = load_mapping(mapping)
        self.schema = load_schema(schema)
        self.map_src = str(mapping) if isinstance(mapping, (str, Path)) else "mapping"
        self.schema_src = str(schema) if isinstance(schema, (str, Path)) else "schema"
        self.map_matcher = _Matcher(list(self.maps))
        self.matcher = _Matcher([str(n) for n in self.schema["name"]]) if self.schema is not None else None
        self.used_keys: set[str] = set()
        self.decisions: dict[str, _Decision] = {}
        self.rank: dict[str, int] = {}  # a source category's place in self.decisions (the order of its drops)
        self.notes: list[tuple[str, str, str, str]] = []  # (code, source, message, severity) in decision order
        self.src_rows: dict[str, dict[str, Any]] = {}  # declared source categories by name
        self.extra_columns: list[str] = []
        self.unknown_seen = False  # unknown="error" and rows of an unknown category were met
        self._table: pd.DataFrame | None = None

    # ------------------------------------------------------------------ deciding
    def _decide(self, s: str) -> _Decision:
        """The decision for a new source name (notes kept in order; schema matching included)."""
        keys = self.map_matcher.find(s)
        targets = {self.maps[k] for k in keys}
        if len(targets) > 1:
            raise CategoryError(f"category {_q(s)} matches several mapping entries with different targets: "
                                f"{', '.join(_q(k) for k in keys)}", hint="write one entry with the exact name")
        if keys:
            self.used_keys.update(keys)
            t = self.maps[keys[0]]
            rule = "" if keys[0] == s else f" (key {_q(keys[0])}, {match_rule(s, keys[0])})"
            if t is None:
                self.notes.append(("category.mapped", self.map_src, f"{_q(s)} mapped to null: dropped{rule}",
                                   "info"))
                return _Decision(s, None, "dropped", s)
            self.notes.append(("category.mapped", self.map_src, f"{_q(s)} renamed to {_q(t)} by the mapping{rule}",
                               "info"))
            d = _Decision(s, t, "mapped", t)
        else:
            d = _Decision(s, s, "exact", s)
        if self.matcher is not None:
            hits = self.matcher.find(d.lookup)
            if len(hits) > 1:
                raise CategoryError(f"category {_q(d.lookup)} matches several schema categories: "
                                    f"{', '.join(_q(h) for h in hits)}",
                                    hint=f"map {_q(d.source)} to one of them with {option('mapping')}")
            if hits:
                if hits[0] != d.lookup:
                    self.notes.append(("category.matched", self.schema_src,
                                       f"{_q(d.lookup)} matched schema category {_q(hits[0])} "
                                       f"({match_rule(d.lookup, hits[0])})", "warning"))
                    if d.how == "exact":
                        d.how = "normalized"
                d.target = hits[0]
            elif self.unknown == "keep":
                d.how = "unknown-kept"
            else:  # decided at the end: "unused" when it never has a row, else unknown-dropped / the error
                d.how, d.target = "unknown-" + ("dropped" if self.unknown == "drop" else "error"), None
        return d

    def _register(self, names: Sequence[str]) -> None:
        for s in names:
            if s not in self.decisions:
                self.rank[s] = len(self.decisions)
                self.decisions[s] = self._decide(s)
                self._table = None

    # ------------------------------------------------------------------ applying
    @staticmethod
    def seen(ds: Dataset) -> Seen:
        """What :meth:`learn` needs of a chunk: its declared categories, the names its rows use (in order of
        first use) and how many rows use each: a chunk on another machine is decided without its rows."""
        _, _, names, counts = _factorized(ds.annotations)
        return Seen(ds.categories.drop_duplicates(subset="name", keep="first"), names, counts)

    def learn(self, seen: Seen) -> None:
        """Decide the categories a chunk declares and uses, in the order :meth:`apply` meets them, and count
        its rows: the decisions of chunks learnt one after the other in their order are those of
        :meth:`apply` over the same chunks (the Dask engine decides on the client, then maps on the workers)."""
        cats = seen.categories
        for c in cats.columns:
            if c not in CATEGORY_COLUMNS and c not in self.extra_columns:
                self.extra_columns.append(c)
        declared: list[str] = []
        for r in cats.to_dict(orient="records"):
            if _is_missing(r["name"]):
                continue
            name = str(r["name"])
            self.src_rows.setdefault(name, r)
            declared.append(name)
        self._register(declared)
        self._register(seen.names)
        for n, c in zip(seen.names, seen.counts, strict=True):
            d = self.decisions[n]
            d.annotations += int(c)
            if c and d.target is None and d.how not in ("dropped", "unknown-dropped"):
                self.unknown_seen = True  # counted; finish() raises

    def apply(self, ds: Dataset, *, learnt: bool = False) -> Dataset:
        """``ds`` with its rows mapped to the target categories (dropped rows go to its report) and the
        category table as decided so far. ``learnt``: the chunk was already given to :meth:`learn` (its
        categories decided and its rows counted): only its rows are mapped."""
        rep = ds.report
        ann = ds.annotations
        # one factorize of the category column: the rest works on its codes (no per-row Python)
        codes, values, names, counts = _factorized(ann)
        no_cat = codes < 0
        if not learnt:
            self.learn(Seen(ds.categories.drop_duplicates(subset="name", keep="first"), names, counts))
        if no_cat.any():
            rep.drop("dropped.invalid", ann[no_cat].assign(category=None), "annotation has no category",
                     phase=step_phase(2, 0))
        decisions = [self.decisions[n] for n in names]
        targets = [d.target for d in decisions]
        lost = np.array([t is None for t in targets] + [True], dtype=bool)  # the last: rows without a category
        gone = lost[codes]
        for k, d in enumerate(decisions):
            if d.target is not None or not counts[k]:
                continue
            rows = ann[codes == k]
            phase = step_phase(2, 1 + self.rank[names[k]])  # by category, as decided (not as this chunk met them)
            if d.how == "dropped":
                rep.drop("dropped.mapped_to_null", rows, f"{_q(d.source)} is mapped to null", phase=phase)
            elif d.how == "unknown-dropped":
                rep.drop("dropped.unknown_category", rows, f"{_q(d.lookup)} is not in the schema", phase=phase)
        if any(t != u for t, u in zip(targets, values, strict=True)):
            lut = np.empty(len(targets) + 1, dtype=object)
            lut[:-1] = targets
            ann = ann.assign(category=lut[codes])
        if gone.any():
            ann = ann[~gone]
        return ds.replace(categories=self.categories(), annotations=ann)

    # ------------------------------------------------------------------ the end
    def finish(self, rep: Report) -> None:
        """Record the notes and the mapping in ``rep``; raise the unknown-category error when there is one."""
        for code, src, msg, sev in self.notes:
            rep.note(code, src, msg, severity=sev)
        for k in self.maps:
            if k not in self.used_keys:
                rep.note("category.mapped", self.map_src, f"mapping entry {_q(k)} matches no source category",
                         severity="info")
        errors: list[_Decision] = []
        for d in self.decisions.values():
            if d.how.startswith("unknown-") and d.how != "unknown-kept" and d.annotations == 0:
                d.how = "unused"
                rep.note("category.unused", self.schema_src,
                         f"source category {_q(d.lookup)} has no annotations and is not in the schema: left out",
                         severity="info")
            elif d.how == "unknown-error":
                errors.append(d)
        if errors and self.matcher is not None:
            raise _unknown_error(errors, self.matcher)
        table = self.categories()
        ids = dict(zip(table["name"].tolist(), category_ids(table).tolist(), strict=True))
        rep.mapping = [{"source": d.source, "target": d.target,
                        "id": int(ids[d.target]) if d.target is not None else None,
                        "annotations": d.annotations, "how": d.how} for d in self.decisions.values()]

    def _source_attrs(self, target: str) -> dict[str, Any]:
        """supercategory / keypoints / skeleton of the first source mapped to ``target`` (keypoints first)."""
        rows: list[dict[str, Any]] = [self.src_rows[d.source] for d in self.decisions.values()
                                      if d.target == target and d.source in self.src_rows]
        with_kp = [r for r in rows if r.get("keypoints") is not None]
        first: dict[str, Any] = (with_kp or rows or [{}])[0]
        return first

    def categories(self) -> pd.DataFrame:
        """The output category table decided so far (it only grows; ids never change)."""
        if self._table is not None:
            return self._table
        out_rows: list[dict[str, Any]] = []
        have: set[str] = set()  # the names in the table
        next_id: int | None = None  # the id of the next category added (None: ids come later, without a schema)
        if self.schema is not None:
            for r in self.schema.to_dict(orient="records"):
                src = self._source_attrs(str(r["name"]))
                kp = src.get("keypoints") if src.get("keypoints") is not None else r["keypoints"]
                sk = src.get("skeleton") if src.get("keypoints") is not None else r["skeleton"]
                out_rows.append({"name": r["name"], "supercategory": r["supercategory"] or src.get("supercategory")
                                 or "", "keypoints": kp, "skeleton": sk, "id": int(r["id"])})
            next_id = int(self.schema["id"].max()) + 1
            have = {str(n) for n in self.schema["name"]}
        for d in self.decisions.values():  # the targets not in the schema: those --unknown keep added (all without one)
            if d.target is None or d.target in have or (self.schema is not None and d.how != "unknown-kept"):
                continue
            have.add(d.target)
            src = self._source_attrs(d.target)
            out_rows.append({"name": d.target, "supercategory": src.get("supercategory") or "",
                             "keypoints": src.get("keypoints"), "skeleton": src.get("skeleton"), "id": next_id})
            if next_id is not None:
                next_id += 1
        table = pd.DataFrame({
            "name": pd.Series([r["name"] for r in out_rows], dtype=object),
            "supercategory": pd.Series([r["supercategory"] for r in out_rows], dtype=object),
            "keypoints": pd.Series([r["keypoints"] for r in out_rows], dtype=object),
            "skeleton": pd.Series([r["skeleton"] for r in out_rows], dtype=object),
            "id": pd.array([r["id"] for r in out_rows], dtype="Int64"),
        })
        for c in self.extra_columns:  # columns adapters added: carried from the first source row of each target
            table[c] = pd.Series([self._source_attrs(str(r["name"])).get(c) for r in out_rows], dtype=object)
        self._table = table
        return table
