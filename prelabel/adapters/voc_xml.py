"""Pascal VOC XML files parsed, one after another: each file's bytes parsed securely (a DTD or an entity
declaration refused; defusedxml only for bytes that could declare one, else the C ElementTree parser), its
``<filename>``, ``<size>`` and objects (name, box, simple and nested attributes, the ``<object>`` lines)
gathered in flat lists and arrays, a malformed object dropped with its line and the first error of a run of
files returned as data (it crosses process boundaries): what :mod:`.voc` reads a source with."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any
from xml.parsers import expat

from ..gcpause import gc_paused
from ..imagesize import MAX_SIDE

_DTD_MESSAGE = "XML entities/DTD are not allowed"
_DTD_HINT = "remove the <!DOCTYPE ...> and <!ENTITY ...> declarations: VOC files need neither"
_SAFE_ENCODINGS = frozenset({
    "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "iso8859-1", "latin-1", "latin1", "windows-1252",
    "cp1252"})
_DECL_RE = re.compile(rb"^(?:\xef\xbb\xbf)?<\?xml[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._-]+)[\"']")
_OBJECT_TAG = re.compile(rb"<object[\s>/]")
_BOX_TAGS = ("xmin", "ymin", "xmax", "ymax")
_OBJECT_SKIP = frozenset({"name", "bndbox"})
_OBJECT_NESTED = frozenset({"part", "actions", "attributes"})
_OBJECT_COMMON = frozenset({"pose", "truncated", "difficult", "occluded"})  # simple children, checked first


@dataclass
class Parsed:
    """What a run of files gave: per-image lists, per-object flat lists, and the first error (if any)."""

    img_rel: list[str] = field(default_factory=list)        # XML path relative to the source root
    img_filename: list[str | None] = field(default_factory=list)  # <filename> text as written
    img_w: list[int] = field(default_factory=list)          # 0 when missing
    img_h: list[int] = field(default_factory=list)
    img_nobj: list[int] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (rel, why): XML files that are not VOC
    bad: list[tuple[str, int, str | None, str]] = field(default_factory=list)  # malformed objects: rel, line, name, why
    names: list[str] = field(default_factory=list)
    coords: array[float] = field(default_factory=lambda: array("d"))  # xmin, ymin, xmax, ymax per object
    lines: array[int] = field(default_factory=lambda: array("q"))
    attrs: list[dict[str, Any] | None] = field(default_factory=list)
    error: tuple[str, str, int | None, str | None, str] | None = None  # ReadError(file, message, line, element, hint)


class _Fail(Exception):
    """A ReadError in waiting: carried as plain data so it crosses process boundaries."""

    def __init__(self, message: str, *, line: int | None = None, element: str | None = None,
                 hint: str = "") -> None:
        super().__init__(message)
        self.message, self.line, self.element, self.hint = message, line, element, hint


def _may_declare_dtd(data: bytes) -> bool:
    """True unless the bytes certainly hold no DTD: ASCII-compatible encoding and no ``<!DOCTYPE``/``<!ENTITY``."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data or b"\x00" in data:
        return True
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return True
    m = _DECL_RE.match(data[:400])
    return m is not None and m.group(1).decode("ascii").lower() not in _SAFE_ENCODINGS


def _line_of(data: bytes, needle: bytes) -> int | None:
    pos = data.find(needle)
    return data.count(b"\n", 0, pos) + 1 if pos >= 0 else None


def _parse_xml(data: bytes) -> ET.Element:
    """The root element, parsed securely (see the module docstring); raises _Fail with a line."""
    try:
        if _may_declare_dtd(data):
            import defusedxml
            import defusedxml.ElementTree as DET

            try:
                root: ET.Element = DET.fromstring(data, forbid_dtd=True)
            except defusedxml.DefusedXmlException:
                line = _line_of(data, b"<!DOCTYPE") or _line_of(data, b"<!ENTITY")
                raise _Fail(_DTD_MESSAGE, line=line, hint=_DTD_HINT) from None
            return root
        return ET.fromstring(data)
    except ET.ParseError as e:
        line, col = getattr(e, "position", (None, None))
        what = expat.ErrorString(e.code) if isinstance(getattr(e, "code", None), int) else str(e)
        raise _Fail(f"malformed XML: {what} (column {col})" if col is not None else f"malformed XML: {what}",
                    line=line) from None


def _object_lines(data: bytes, n: int) -> list[int] | None:
    """Lines of the ``<object`` start tags by text search; None when their count is not ``n``."""
    starts = [m.start() for m in _OBJECT_TAG.finditer(data)]
    if len(starts) != n:
        return None
    count = data.count
    steps = [count(b"\n", a, b) for a, b in zip([0, *starts[:-1]], starts, strict=True)]
    return list(accumulate(steps, initial=1))[1:]


def _object_lines_exact(data: bytes) -> list[int]:
    """Lines of the ``<object>`` children of the root by an expat pass (slower, exact)."""
    parser = expat.ParserCreate()
    lines: list[int] = []
    depth = 0

    def start(name: str, _attrs: Any) -> None:
        nonlocal depth
        depth += 1
        if depth == 2 and name == "object":
            lines.append(parser.CurrentLineNumber)

    def end(_name: str) -> None:
        nonlocal depth
        depth -= 1

    def refuse(*_args: Any) -> None:
        raise _Fail(_DTD_MESSAGE, hint=_DTD_HINT)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.Parse(data, True)
    return lines


def _value(text: str | None) -> Any:
    """An attribute value: int when integral, float when a finite number, else the stripped text."""
    if text is None:
        return ""
    t = text.strip()
    if t.isascii() and (t.isdecimal() or (t[:1] in ("-", "+") and t[1:].isdecimal())):
        return int(t)
    if t and t[0] in "0123456789-+.":
        try:
            v = float(t)
        except ValueError:
            return t
        return v if v == v and v not in (float("inf"), float("-inf")) else t
    return t


def _box_values(box: ET.Element | None, what: str) -> tuple[float, float, float, float]:
    if box is None:
        raise _Fail(f"{what} has no <bndbox>")
    vals: list[float] = []
    for tag in _BOX_TAGS:
        text = box.findtext(tag)
        if text is None:
            raise _Fail(f"{what}: <bndbox> has no <{tag}>", element=f"bndbox/{tag}")
        try:
            vals.append(float(text))
        except ValueError:
            raise _Fail(f"{what}: <{tag}> is not a number: {text.strip()!r}", element=f"bndbox/{tag}") from None
    return vals[0], vals[1], vals[2], vals[3]


def _size_value(size: ET.Element | None, tag: str) -> int:
    if size is None:
        return 0
    text = size.findtext(tag)
    if text is None or not text.strip():
        return 0
    try:
        v = float(text)
    except ValueError:
        raise _Fail(f"<size>: <{tag}> is not a number: {text.strip()!r}", element=f"size/{tag}") from None
    if not v == v or v in (float("inf"), float("-inf")):
        raise _Fail(f"<size>: <{tag}> is not a finite number: {text.strip()!r}", element=f"size/{tag}")
    if v > MAX_SIDE:
        raise _Fail(f"<size>: <{tag}> is larger than {MAX_SIDE} pixels: {text.strip()!r}", element=f"size/{tag}")
    return max(int(round(v)), 0)


def _nested_attribute(attrs: dict[str, Any], c: ET.Element, origin: int, what: str) -> None:
    """Add a ``<part>``, ``<actions>`` or CVAT ``<attributes>`` child of an object to its attributes."""
    tag = c.tag
    if tag == "part":
        pname = (c.findtext("name") or "").strip()
        part: dict[str, Any] = {"name": pname}
        pbox = c.find("bndbox")
        if pbox is not None:
            x0, y0, x1, y1 = _box_values(pbox, f"{what} <part> {pname!r}")
            part["bbox"] = ([x0 - 1.0, y0 - 1.0, x1 - x0 + 1.0, y1 - y0 + 1.0] if origin == 1
                            else [x0, y0, x1 - x0, y1 - y0])
        attrs.setdefault("parts", []).append(part)
    elif tag == "actions":
        attrs["actions"] = {a.tag: _value(a.text) for a in c}
    elif tag == "attributes":  # CVAT's VOC export: <attributes><attribute><name/><value/></attribute>
        for a in c.iterfind("attribute"):
            key = (a.findtext("name") or "").strip()
            if key:
                attrs[key] = _value(a.findtext("value"))


def _parse_one(data: bytes, origin: int, out: Parsed, rel: str, single: bool,
               name_cache: dict[str | None, str], value_cache: dict[str | None, Any]) -> None:
    root = _parse_xml(data)
    if root.tag != "annotation":
        msg = f"not a Pascal VOC file: the root element is <{root.tag}>, expected <annotation>"
        if single:
            raise _Fail(msg, line=1)
        out.skipped.append((rel, msg))
        return
    size = root.find("size")
    width, height = _size_value(size, "width"), _size_value(size, "height")
    objects = root.findall("object")
    lines = _object_lines(data, len(objects)) if objects else []
    if lines is None:
        lines = _object_lines_exact(data)
    names_append, coords_extend, attrs_append = out.names.append, out.coords.extend, out.attrs.append
    skip, nested, common = _OBJECT_SKIP, _OBJECT_NESTED, _OBJECT_COMMON
    kept_lines: list[int] | None = None  # the lines of the objects kept, once one is dropped
    # the hot loop: one pass per object, errors explained (slowly) only when they happen. A malformed object
    # (no <name>, no <bndbox>, a coordinate that is not a number) is dropped with its line; the rest is read
    for k, obj in enumerate(objects):
        name: str | None = None
        try:
            raw = obj.findtext("name")
            name = name_cache.get(raw)
            if name is None:
                name = (raw or "").strip() or None
                if name is None:
                    raise _Fail(f"object {k + 1} has no <name>", element="name")
                name_cache[raw] = name
            b = obj.find("bndbox")
            try:
                box = (float(b.findtext("xmin")), float(b.findtext("ymin")),  # type: ignore[union-attr,arg-type]
                       float(b.findtext("xmax")), float(b.findtext("ymax")))  # type: ignore[union-attr,arg-type]
            except (AttributeError, TypeError, ValueError):
                _box_values(b, f"object {k + 1}")
                raise
            attrs: dict[str, Any] = {}
            for c in obj:
                tag = c.tag
                if tag not in common:
                    if tag in skip:
                        continue
                    if tag in nested or len(c):
                        _nested_attribute(attrs, c, origin, f"object {k + 1}")
                        continue
                text = c.text
                v = value_cache.get(text, value_cache)  # the cache itself marks "absent"
                if v is value_cache:
                    v = value_cache[text] = _value(text)
                attrs[tag] = v
        except _Fail as e:
            if kept_lines is None:
                kept_lines = list(lines[:k])
            where = f" (<{e.element}>)" if e.element else ""
            out.bad.append((rel, lines[k], name, f"{e.message}{where}"))
            continue
        coords_extend(box)
        attrs_append(attrs or None)
        names_append(name)
        if kept_lines is not None:
            kept_lines.append(lines[k])
    if kept_lines is not None:
        lines = kept_lines
    out.lines.extend(lines)
    out.img_rel.append(rel)
    fn = root.findtext("filename")
    out.img_filename.append(fn.strip() if fn is not None else None)
    out.img_w.append(width)
    out.img_h.append(height)
    out.img_nobj.append(len(lines))


PROGRESS_RUN = 500  # with a progress hook, the files parsed are counted in runs of this many


def parse_files(jobs: Sequence[tuple[str, str]], origin: int, single: bool = False, *,
                progress: Callable[[int, int], None] | None = None) -> Parsed:
    """Parse ``(path, rel)`` files in order; stops at the first error, which is returned as data.
    ``progress(done, total)`` is called first with 0, then after each :data:`PROGRESS_RUN` files parsed (and
    after the last), not after an error."""
    out = Parsed()
    name_cache: dict[str | None, str] = {}
    value_cache: dict[str | None, Any] = {}
    total = len(jobs)
    if progress is not None:
        progress(0, total)
    with gc_paused():
        for done, (path, rel) in enumerate(jobs, 1):
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                out.error = (rel, f"cannot read the file: {e.strerror or e}", None, None, "")
                return out
            try:
                _parse_one(data, origin, out, rel, single, name_cache, value_cache)
            except _Fail as e:
                out.error = (rel, e.message, e.line, e.element, e.hint)
                return out
            except (ValueError, TypeError, KeyError, IndexError, AttributeError, LookupError, RecursionError,
                    expat.ExpatError) as e:  # LookupError: an unknown encoding in the XML declaration
                out.error = (rel, f"cannot read the file: {e}", None, None, "")
                return out
            if progress is not None and (done % PROGRESS_RUN == 0 or done == total):
                progress(done, total)
    return out
