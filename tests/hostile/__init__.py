"""Hostile and broken inputs for every adapter, written into a temporary folder at test time.

Each case is a builder ``(root) -> Case``: it writes a small dataset under ``root/ds`` (and, for the file-name
cases, a sentinel image and a secret text file under ``root/outside``, which must never be opened) and says
what prelabel must do with it:

``refused``  a :class:`prelabel.errors.PrelabelError` (usually a ReadError naming file and line or element)
             whose text matches ``Case.match``;
``read``     read without error, and the ledger balances (``read == written + dropped``);
``either``   one or the other, never an unhandled exception, a hang or a silent loss.

:func:`run_pipeline` is the harness shared by ``test_hostile.py`` and ``test_fuzz.py``: it runs
``pipeline.read`` + ``prepare`` + ``to_coco`` under a time limit while an audit hook records every file the
process opens or lists, and returns the outcome (the COCO document or the PrelabelError).

Example:
    >>> import tempfile, pathlib
    >>> case = CASES["xml.xxe_file:voc"](pathlib.Path(tempfile.mkdtemp()))
    >>> out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    >>> out.error is not None and "entities/DTD" in str(out.error), out.touched(case.forbidden)
    (True, [])
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sys
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prelabel import pipeline
from prelabel.adapters.base import ReadOptions
from prelabel.converters.coco import to_coco, validate
from prelabel.errors import PrelabelError
from prelabel.model import Dataset

__all__ = ["CASES", "KINDS", "Case", "Outcome", "run_pipeline", "time_limit", "write_png"]

SENTINEL_SIZE = (777, 333)  # the size of the image outside the root: seeing it in an output means it was read
SECRET = "SENTINEL-SECRET-do-not-read"
DTD_RE = r"(?i)(dtd|doctype|entit)"


# ============================================================================================ harness
class HostileTimeout(BaseException):
    """Raised by :func:`time_limit` (a BaseException, so no ``except Exception`` in an adapter swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Fail with HostileTimeout when the body runs longer than ``seconds`` (main thread, POSIX)."""

    def on_alarm(_signum: int, _frame: Any) -> None:
        raise HostileTimeout(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


_RECORDERS: list[list[str]] = []
_HOOKED = False
_EVENTS = {"open", "os.listdir", "os.scandir", "os.chdir", "shutil.copyfile", "urllib.Request",
           "socket.connect", "socket.getaddrinfo"}


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _RECORDERS and event in _EVENTS:
        target = args[0] if args else ""
        if isinstance(target, bytes):
            target = os.fsdecode(target)
        if event.startswith("socket") or event.startswith("urllib"):
            target = f"<{event}> {target!r}"
        elif not isinstance(target, str):
            target = os.fspath(target) if isinstance(target, os.PathLike) else str(target)
        for rec in _RECORDERS:
            rec.append(str(target))


@contextlib.contextmanager
def record_access() -> Iterator[list[str]]:
    """Every path opened or listed (and every socket connect) while the body runs."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    seen: list[str] = []
    _RECORDERS.append(seen)
    try:
        yield seen
    finally:
        _RECORDERS.remove(seen)


@dataclass
class Outcome:
    """What one run of read + prepare + to_coco gave."""

    error: PrelabelError | None = None
    dataset: Dataset | None = None
    coco: dict[str, Any] | None = None
    accessed: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        """read == written + dropped (written = the annotations of the COCO document)."""
        if self.dataset is None or self.coco is None:
            return False
        rep = self.dataset.report
        return rep.read == len(self.coco["annotations"]) + rep.dropped

    def ledger(self) -> str:
        if self.dataset is None or self.coco is None:
            return "no dataset"
        rep = self.dataset.report
        return f"read {rep.read}, written {len(self.coco['annotations'])}, dropped {rep.dropped}"

    def touched(self, forbidden: tuple[Path, ...]) -> list[str]:
        """The accessed paths (and sockets) that fall inside one of ``forbidden`` (files or folders)."""
        bad: list[str] = []
        roots = [os.path.realpath(f) for f in forbidden]
        for a in self.accessed:
            if a.startswith("<socket") or a.startswith("<urllib"):
                bad.append(a)
                continue
            if "\x00" in a:
                bad.append(a)
                continue
            real = os.path.realpath(a)
            if any(real == r or real.startswith(r + os.sep) for r in roots):
                bad.append(a)
        return bad

    def sentinel_seen(self) -> bool:
        """True when an output image has the sentinel's size (it was read from outside the root)."""
        if self.coco is None:
            return False
        return any((im.get("width"), im.get("height")) == SENTINEL_SIZE for im in self.coco["images"])


def run_pipeline(src: Path, *, fmt: str | None, options: ReadOptions | None = None,
                 seconds: float = 30.0) -> Outcome:
    """read + prepare + to_coco (+ validate) under a time limit; PrelabelError is an outcome, anything else
    propagates (a bug)."""
    out = Outcome()
    with record_access() as seen, time_limit(seconds):
        try:
            ds = pipeline.read(src, fmt=fmt, options=options)
            ds = pipeline.prepare(ds)
            out.dataset = ds
            out.coco = to_coco(ds)
            res = validate(out.coco)
            if not res.ok:
                raise AssertionError(f"the COCO written from {src} does not validate: {res.errors[:3]}")
        except PrelabelError as e:
            out.error = e
    out.accessed = list(seen)
    return out


# ============================================================================================ cases
@dataclass(frozen=True)
class Case:
    """One hostile input: where it is, how to read it, and what must happen."""

    id: str
    kind: str
    fmt: str
    src: Path
    options: ReadOptions = field(default_factory=ReadOptions)
    expect: str = "either"          # refused | read | either
    match: str | None = None        # regex the error text must match when refused
    forbidden: tuple[Path, ...] = ()
    note: str = ""


Builder = Callable[[Path], Case]
CASES: dict[str, Builder] = {}


def case(case_id: str) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        if case_id in CASES:
            raise ValueError(f"duplicate case {case_id}")
        CASES[case_id] = fn
        return fn
    return deco


def kind_of(case_id: str) -> str:
    return case_id.split(":", 1)[0]


def write_png(path: Path, size: tuple[int, int]) -> Path:
    """A small valid PNG of ``size`` (width, height)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size).save(path, "PNG")
    return path


def _outside(root: Path) -> tuple[Path, Path, Path]:
    """root/outside with the sentinel image and the secret file; returns (folder, image, secret)."""
    out = root / "outside"
    img = write_png(out / "secret.png", SENTINEL_SIZE)
    secret = out / "secret.txt"
    secret.write_text(SECRET + "\n")
    (out / "evil.dtd").write_text(f'<!ENTITY leak "{SECRET}">\n')
    return out, img, secret


def _ds(root: Path) -> Path:
    d = root / "ds"
    d.mkdir(parents=True, exist_ok=True)
    write_png(d / "images" / "a.png", (64, 48))
    return d


def _forbidden(root: Path) -> tuple[Path, ...]:
    return (root / "outside", Path("/etc/passwd"), Path("/etc/shadow"))


# ----------------------------------------------------------------------------------------- templates
def voc_xml(*, filename: str = "a.png", name: str = "cat", box: tuple[str, str, str, str] = ("11", "21", "40", "40"),
            prolog: str = "", size: bool = True, extra: str = "") -> str:
    sz = "<size><width>64</width><height>48</height><depth>1</depth></size>" if size else ""
    xmin, ymin, xmax, ymax = box
    return (f'<?xml version="1.0" encoding="utf-8"?>\n{prolog}<annotation>\n<folder>JPEGImages</folder>\n'
            f"<filename>{filename}</filename>\n{sz}\n{extra}<object>\n<name>{name}</name>\n"
            f"<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox>\n"
            "</object>\n</annotation>\n")


def cvat_xml(*, name: str = "a.png", label: str = "cat", box: tuple[str, str, str, str] = ("10", "20", "40", "40"),
             prolog: str = "", extra: str = "", width: str = "64", height: str = "48") -> str:
    xtl, ytl, xbr, ybr = box
    return (f'<?xml version="1.0" encoding="utf-8"?>\n{prolog}<annotations>\n<version>1.1</version>\n'
            f"<meta><task><labels><label><name>cat</name><type>any</type></label></labels></task></meta>\n"
            f'<image id="0" name="{name}" width="{width}" height="{height}">\n{extra}'
            f'<box label="{label}" occluded="0" xtl="{xtl}" ytl="{ytl}" xbr="{xbr}" ybr="{ybr}" z_order="0"/>\n'
            "</image>\n</annotations>\n")


LS_CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
             '<Label value="cat"/></RectangleLabels></View>')


def ls_tasks(*, image: str = "a.png", x: Any = 10.0, width: Any = 50.0, original: Any = 64,
             label: Any = "cat") -> list[dict[str, Any]]:
    return [{"id": 1, "data": {"image": image}, "annotations": [{"id": 11, "completed_by": 1, "result": [
        {"id": "r1", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
         "original_width": original, "original_height": 48,
         "value": {"x": x, "y": 20.0, "width": width, "height": 50.0, "rotation": 0, "rectanglelabels": [label]}},
    ]}]}]


def coco_doc(*, file_name: Any = "a.png", bbox: Any = None, width: Any = 64) -> dict[str, Any]:
    return {"images": [{"id": 1, "file_name": file_name, "width": width, "height": 48}],
            "categories": [{"id": 1, "name": "cat", "supercategory": ""}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1,
                             "bbox": [10, 20, 30, 20] if bbox is None else bbox, "iscrowd": 0, "area": 600}]}


PRED_HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax,score\n"
PRED_ROW = "a.png,64,48,cat,10,20,40,40,0.9\n"
YOLO_ROW = "0 0.5 0.5 0.25 0.5\n"


# ------------------------------------------------------------------------------------- writers per format
def _voc(root: Path, text: str | bytes, **kw: Any) -> Case:
    d = _ds(root)
    (d / "JPEGImages").mkdir(exist_ok=True)
    write_png(d / "JPEGImages" / "a.png", (64, 48))
    f = d / "Annotations" / "a.xml"
    f.parent.mkdir(exist_ok=True)
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    return Case(id="", kind="", fmt="voc", src=f, forbidden=_forbidden(root), **kw)


def _cvat(root: Path, text: str | bytes, **kw: Any) -> Case:
    d = _ds(root)
    f = d / "annotations.xml"
    f.write_bytes(text.encode() if isinstance(text, str) else text)
    return Case(id="", kind="", fmt="cvat", src=f, forbidden=_forbidden(root),
                options=kw.pop("options", ReadOptions(images=d / "images")), **kw)


def _ls(root: Path, doc: Any, *, config: str | None = None, raw: bytes | None = None, **kw: Any) -> Case:
    d = _ds(root)
    f = d / "export.json"
    f.write_bytes(raw if raw is not None else json.dumps(doc, allow_nan=True).encode())
    extra: dict[str, Any] = {}
    if config is not None:
        cfg = d / "label_config.xml"
        cfg.write_text(config, encoding="utf-8")
        extra["label_config"] = str(cfg)
    return Case(id="", kind="", fmt="labelstudio", src=f, forbidden=_forbidden(root),
                options=ReadOptions(images=d / "images", extra=extra), **kw)


def _coco(root: Path, doc: Any, *, raw: bytes | None = None, **kw: Any) -> Case:
    d = _ds(root)
    f = d / "instances.json"
    f.write_bytes(raw if raw is not None else json.dumps(doc, allow_nan=True).encode())
    return Case(id="", kind="", fmt="coco", src=f, forbidden=_forbidden(root),
                options=ReadOptions(images=d / "images"), **kw)


def _pred(root: Path, data: str | bytes, **kw: Any) -> Case:
    d = _ds(root)
    f = d / "predictions.csv"
    f.write_bytes(data.encode() if isinstance(data, str) else data)
    return Case(id="", kind="", fmt="predictions", src=f, forbidden=_forbidden(root),
                options=kw.pop("options", ReadOptions(images=d / "images")), **kw)


def _yolo(root: Path, label: str | bytes, *, yaml: str | None = None, **kw: Any) -> Case:
    d = _ds(root)
    lab = d / "labels" / "a.txt"
    lab.parent.mkdir(exist_ok=True)
    lab.write_bytes(label.encode() if isinstance(label, str) else label)
    (d / "data.yaml").write_text(yaml if yaml is not None else "path: .\ntrain: images\nnames:\n  0: cat\n  1: dog\n")
    return Case(id="", kind="", fmt="yolo", src=d, forbidden=_forbidden(root), **kw)


def _named(fn: Builder, case_id: str) -> Builder:
    def build(root: Path) -> Case:
        c = fn(root)
        return Case(id=case_id, kind=kind_of(case_id), fmt=c.fmt, src=c.src, options=c.options,
                    expect=c.expect, match=c.match, forbidden=c.forbidden, note=c.note)
    return build


def register(case_id: str, fn: Builder) -> None:
    if case_id in CASES:
        raise ValueError(f"duplicate case {case_id}")
    CASES[case_id] = _named(fn, case_id)


# ============================================================================================ XML
def _xml_payloads(root: Path) -> dict[str, tuple[str, str, str, str]]:
    """kind -> (prolog, text to put where a name goes, expect, match)."""
    _, _, secret = _outside(root)
    lol = "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10))
    quad = "A" * 100_000
    return {
        "xml.xxe_file": (f'<!DOCTYPE r [<!ENTITY xxe SYSTEM "file://{secret}">]>\n', "&xxe;", "refused", DTD_RE),
        "xml.xxe_passwd": ('<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n', "&xxe;", "refused",
                           DTD_RE),
        "xml.xxe_network": ('<!DOCTYPE r [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>\n', "&xxe;", "refused",
                            DTD_RE),
        "xml.external_dtd": (f'<!DOCTYPE r SYSTEM "file://{root / "outside" / "evil.dtd"}">\n', "&leak;",
                             "refused", DTD_RE),
        "xml.parameter_entity": (f'<!DOCTYPE r [<!ENTITY % p SYSTEM "file://{root / "outside" / "evil.dtd"}"> %p;]>\n',
                                 "&leak;", "refused", DTD_RE),
        "xml.billion_laughs": (f'<!DOCTYPE r [<!ENTITY lol0 "lol">{lol}]>\n', "&lol9;", "refused", DTD_RE),
        "xml.quadratic": (f'<!DOCTYPE r [<!ENTITY a "{quad}">]>\n', "&a;" * 20_000, "refused", DTD_RE),
        "xml.plain_dtd": ("<!DOCTYPE r>\n", "cat", "refused", DTD_RE),
        "xml.internal_entity": ('<!DOCTYPE r [<!ENTITY n "cat">]>\n', "&n;", "refused", DTD_RE),
    }


_XML_SECURITY = ["xml.xxe_file", "xml.xxe_passwd", "xml.xxe_network", "xml.external_dtd", "xml.parameter_entity",
                 "xml.billion_laughs", "xml.quadratic", "xml.plain_dtd", "xml.internal_entity"]


def _xml_security_voc(kind: str) -> Builder:
    def build(root: Path) -> Case:
        prolog, ref, expect, match = _xml_payloads(root)[kind]
        return _voc(root, voc_xml(name=ref, prolog=prolog), expect=expect, match=match)
    return build


def _xml_security_cvat(kind: str) -> Builder:
    def build(root: Path) -> Case:
        prolog, ref, expect, match = _xml_payloads(root)[kind]
        return _cvat(root, cvat_xml(prolog=prolog, extra=f'<tag label="{ref}"/>\n'), expect=expect, match=match)
    return build


def _xml_security_lsconfig(kind: str) -> Builder:
    def build(root: Path) -> Case:
        prolog, ref, expect, match = _xml_payloads(root)[kind]
        config = f'<?xml version="1.0"?>\n{prolog}' + LS_CONFIG.replace('value="cat"', f'value="{ref}"')
        return _ls(root, ls_tasks(), config=config, expect=expect, match=match)
    return build


for _k in _XML_SECURITY:
    register(f"{_k}:voc", _xml_security_voc(_k))
    register(f"{_k}:cvat", _xml_security_cvat(_k))
    register(f"{_k}:labelstudio-config", _xml_security_lsconfig(_k))


def _utf16(text: str) -> bytes:
    return text.replace('encoding="utf-8"', 'encoding="utf-16"').encode("utf-16")


def _xinclude(root: Path) -> str:
    _, _, secret = _outside(root)
    return (f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file://{secret}" parse="text"/>')


def _deep(n: int) -> str:
    return "<a>" * n + "</a>" * n


def _binary(n: int = 4096, seed: int = 7) -> bytes:
    rnd = random.Random(seed)
    return bytes(rnd.getrandbits(8) for _ in range(n))


_MALFORMED_XML: dict[str, tuple[Callable[[Path], str | bytes], Callable[[Path], str | bytes], str, str | None]] = {
    # kind: (voc text, cvat text, expect, match)
    "xml.utf16_dtd": (
        lambda r: _utf16(voc_xml(name="&n;", prolog='<!DOCTYPE r [<!ENTITY n "cat">]>\n')),
        lambda r: _utf16(cvat_xml(prolog='<!DOCTYPE r [<!ENTITY n "cat">]>\n')), "refused", DTD_RE),
    "xml.utf16_plain": (lambda r: _utf16(voc_xml()), lambda r: _utf16(cvat_xml()), "either", None),
    "xml.xinclude": (lambda r: voc_xml(extra=_xinclude(r)), lambda r: cvat_xml(extra=_xinclude(r)), "either", None),
    "xml.truncated": (lambda r: voc_xml()[:200], lambda r: cvat_xml()[:300], "refused", r"(?i)xml|element|token"),
    "xml.empty": (lambda r: b"", lambda r: b"", "refused", None),
    "xml.whitespace_only": (lambda r: b"  \n\n ", lambda r: b"  \n\n ", "refused", None),
    "xml.binary": (lambda r: _binary(), lambda r: _binary(), "refused", None),
    "xml.nul_bytes": (lambda r: voc_xml().replace("cat", "c\x00t"), lambda r: cvat_xml().replace('"cat"', '"c\x00t"'),
                      "refused", None),
    "xml.not_utf8": (lambda r: voc_xml().encode().replace(b"cat", b"c\xff\xfet"),
                     lambda r: cvat_xml().encode().replace(b'label="cat"', b'label="c\xff\xfet"'), "refused", None),
    "xml.deep_nesting": (lambda r: voc_xml(extra=_deep(50_000)), lambda r: cvat_xml(extra=_deep(50_000)),
                         "either", None),
    "xml.nan_coordinate": (lambda r: voc_xml(box=("nan", "21", "40", "40")),
                           lambda r: cvat_xml(box=("nan", "20", "40", "40")), "either", None),
    "xml.inf_coordinate": (lambda r: voc_xml(box=("11", "21", "inf", "40")),
                           lambda r: cvat_xml(box=("10", "20", "inf", "40")), "either", None),
    "xml.huge_coordinate": (lambda r: voc_xml(box=("11", "21", "1e400", "40")),
                            lambda r: cvat_xml(box=("10", "20", "1e400", "40")), "either", None),
    "xml.huge_int_coordinate": (lambda r: voc_xml(box=("11", "21", "9" * 400, "40")),
                                lambda r: cvat_xml(box=("10", "20", "9" * 400, "40")), "either", None),
    "xml.negative_coordinate": (lambda r: voc_xml(box=("-50", "-50", "-10", "-10")),
                                lambda r: cvat_xml(box=("-50", "-50", "-10", "-10")), "either", None),
    "xml.inverted_box": (lambda r: voc_xml(box=("40", "40", "11", "21")),
                         lambda r: cvat_xml(box=("40", "40", "10", "20")), "either", None),
    "xml.non_numeric": (lambda r: voc_xml(box=("eleven", "21", "40", "40")),
                        lambda r: cvat_xml(box=("ten", "20", "40", "40")), "refused", r":\d+"),
    "xml.empty_coordinate": (lambda r: voc_xml(box=("", "21", "40", "40")),
                             lambda r: cvat_xml(box=("", "20", "40", "40")), "refused", r":\d+"),
    "xml.huge_size": (lambda r: voc_xml().replace("<width>64</width>", f"<width>{'9' * 40}</width>"),
                      lambda r: cvat_xml(width="9" * 40), "either", None),
    "xml.negative_size": (lambda r: voc_xml().replace("<width>64</width>", "<width>-64</width>"),
                          lambda r: cvat_xml(width="-64"), "either", None),
    "xml.nan_size": (lambda r: voc_xml().replace("<width>64</width>", "<width>nan</width>"),
                     lambda r: cvat_xml(width="nan"), "either", None),
    "xml.wrong_root": (lambda r: "<?xml version='1.0'?><html><body/></html>",
                       lambda r: "<?xml version='1.0'?><html><body/></html>", "either", None),
    "xml.unknown_encoding": (lambda r: voc_xml().replace('encoding="utf-8"', 'encoding="utf-nan"'),
                             lambda r: cvat_xml().replace('encoding="utf-8"', 'encoding="utf-nan"'), "refused",
                             r"(?i)encoding"),
    "xml.multibyte_encoding": (lambda r: voc_xml().replace('encoding="utf-8"', 'encoding="shift_jis"'),
                               lambda r: cvat_xml().replace('encoding="utf-8"', 'encoding="shift_jis"'), "either",
                               None),
    "xml.utf7_encoding": (lambda r: voc_xml().replace('encoding="utf-8"', 'encoding="utf-7"'),
                          lambda r: cvat_xml().replace('encoding="utf-8"', 'encoding="utf-7"'), "either", None),
    "xml.latin1_encoding": (lambda r: voc_xml(name="caf\u00e9").replace('encoding="utf-8"', 'encoding="latin-1"')
                            .encode("latin-1"),
                            lambda r: cvat_xml(label="caf\u00e9").replace('encoding="utf-8"', 'encoding="latin-1"')
                            .encode("latin-1"), "read", None),
    "xml.ebcdic_dtd": (lambda r: b'<?xml version="1.0" encoding="cp500"?>' + voc_xml(
                           name="&n;", prolog='<!DOCTYPE r [<!ENTITY n "cat">]>').split("?>", 1)[1].encode("cp500"),
                       lambda r: b'<?xml version="1.0" encoding="cp500"?>' + cvat_xml(
                           prolog='<!DOCTYPE r [<!ENTITY n "cat">]>').split("?>", 1)[1].encode("cp500"),
                       "refused", None),
    "xml.crlf_bom": (lambda r: b"\xef\xbb\xbf" + voc_xml().replace("\n", "\r\n").encode(),
                     lambda r: b"\xef\xbb\xbf" + cvat_xml().replace("\n", "\r\n").encode(), "read", None),
    "xml.empty_name": (lambda r: voc_xml(name=""), lambda r: cvat_xml(label=""), "either", None),
    "xml.unknown_label": (lambda r: voc_xml(name="zebra"), lambda r: cvat_xml(label="zebra"), "either", None),
}

# a malformed VOC <object> or CVAT shape is dropped (dropped.invalid at its line) and the rest is read (issue 15
# item 12)
_VOC_OBJECT_DROPPED = frozenset({"xml.non_numeric", "xml.empty_coordinate"})

for _k, (_v, _c, _e, _m) in _MALFORMED_XML.items():
    def _mk_voc(v: Callable[[Path], str | bytes] = _v, e: str = "read" if _k in _VOC_OBJECT_DROPPED else _e,
                m: str | None = None if _k in _VOC_OBJECT_DROPPED else _m) -> Builder:
        return lambda root: _voc(root, v(root), expect=e, match=m)

    def _mk_cvat(c: Callable[[Path], str | bytes] = _c, e: str = "read" if _k in _VOC_OBJECT_DROPPED else _e,
                 m: str | None = None if _k in _VOC_OBJECT_DROPPED else _m) -> Builder:
        return lambda root: _cvat(root, c(root), expect=e, match=m)

    register(f"{_k}:voc", _mk_voc())
    register(f"{_k}:cvat", _mk_cvat())

# CVAT-specific structure
register("xml.missing_attribute:cvat", lambda r: _cvat(
    r, cvat_xml().replace('xtl="10" ', ""), expect="read"))  # the shape dropped at its line
register("xml.bad_points:cvat", lambda r: _cvat(
    r, cvat_xml(extra='<polygon label="cat" points="1,2;3;x,y;;" occluded="0"/>\n'), expect="either"))
register("xml.short_polygon:cvat", lambda r: _cvat(
    r, cvat_xml(extra='<polygon label="cat" points="1,2" occluded="0"/>\n'), expect="either"))
register("xml.bad_rle:cvat", lambda r: _cvat(
    r, cvat_xml(extra='<mask label="cat" rle="5, x, -3" left="0" top="0" width="9999999" height="9999999" '
                      'occluded="0"/>\n'), expect="either"))
register("xml.huge_mask:cvat", lambda r: _cvat(
    r, cvat_xml(extra='<mask label="cat" rle="1" left="0" top="0" width="100000" height="100000" '
                      'occluded="0"/>\n'), expect="either"))
register("xml.bad_rotation:cvat", lambda r: _cvat(
    r, cvat_xml().replace('z_order="0"', 'z_order="0" rotation="nan"'), expect="either"))
register("xml.video_huge_range:cvat", lambda r: _cvat(r, (
    '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task><mode>interpolation'
    '</mode><start_frame>0</start_frame><stop_frame>999999999999</stop_frame><original_size><width>64</width>'
    '<height>48</height></original_size><labels><label><name>cat</name><type>any</type></label></labels></task>'
    '</meta><track id="0" label="cat"><box frame="0" outside="0" occluded="0" keyframe="1" xtl="1" ytl="1" '
    'xbr="5" ybr="5" z_order="0"/></track></annotations>\n'), expect="either"))
register("xml.video_negative_step:cvat", lambda r: _cvat(r, (
    '<?xml version="1.0" encoding="utf-8"?>\n<annotations><version>1.1</version><meta><task><mode>interpolation'
    '</mode><start_frame>5</start_frame><stop_frame>0</stop_frame><frame_filter>step=-1</frame_filter>'
    '<original_size><width>64</width><height>48</height></original_size><labels><label><name>cat</name>'
    '<type>any</type></label></labels></task></meta><track id="0" label="cat"><box frame="0" outside="0" '
    'occluded="0" keyframe="1" xtl="1" ytl="1" xbr="5" ybr="5" z_order="0"/></track></annotations>\n'),
    expect="either"))

# VOC-specific structure
register("xml.no_bndbox:voc", lambda r: _voc(
    r, voc_xml().replace("<bndbox>", "<nobox>").replace("</bndbox>", "</nobox>"), expect="read"))
register("xml.many_objects_no_size_no_image:voc", lambda r: _voc(
    r, voc_xml(size=False, filename="missing.png"), expect="either"))

# Label Studio config: malformed XML
register("xml.truncated:labelstudio-config", lambda r: _ls(r, ls_tasks(), config=LS_CONFIG[:40], expect="refused"))
register("xml.binary:labelstudio-config", lambda r: _ls(r, ls_tasks(), config=_binary().decode("latin-1"),
                                                        expect="refused"))


# ============================================================================================ JSON
def _nest(n: int) -> bytes:
    return b"[" * n + b"]" * n


_JSON_RAW: dict[str, tuple[bytes | Callable[[Path], bytes], str]] = {
    "json.deep_nesting": (_nest(100_000), "refused"),
    "json.deep_nesting_object": (b'{"a":' * 50_000 + b"1" + b"}" * 50_000, "refused"),
    "json.empty": (b"", "refused"),
    "json.whitespace_only": (b" \n\t ", "refused"),
    "json.binary": (_binary(), "refused"),
    "json.top_null": (b"null", "either"),
    "json.top_number": (b"12", "either"),
    "json.top_string": (b'"images"', "either"),
    "json.top_empty_list": (b"[]", "either"),
    "json.top_empty_object": (b"{}", "either"),
    "json.top_list_of_numbers": (b"[1, 2, 3]", "either"),
    "json.top_list_of_lists": (b"[[1], [2]]", "either"),
    "json.nul_in_text": (b'{"images": [\x00]}', "refused"),
}

for _k, (_raw, _e) in _JSON_RAW.items():
    def _mk_ls(raw: Any = _raw, e: str = _e) -> Builder:
        return lambda r: _ls(r, None, raw=raw, expect=e)

    def _mk_coco(raw: Any = _raw, e: str = _e) -> Builder:
        return lambda r: _coco(r, None, raw=raw, expect=e)

    register(f"{_k}:labelstudio", _mk_ls())
    register(f"{_k}:coco", _mk_coco())


def _json_text_variants() -> dict[str, tuple[Callable[[bytes], bytes], str]]:
    return {
        "json.truncated_1": (lambda b: b[: len(b) // 3], "refused"),
        "json.truncated_2": (lambda b: b[: len(b) - 2], "refused"),
        "json.truncated_3": (lambda b: b[:1], "refused"),
        "json.bom": (lambda b: b"\xef\xbb\xbf" + b, "read"),
        "json.crlf": (lambda b: b.replace(b", ", b",\r\n"), "read"),
        "json.not_utf8": (lambda b: b.replace(b'"cat"', b'"c\xff\xfet"'), "either"),
        "json.utf16": (lambda b: b.decode().encode("utf-16"), "either"),
        "json.trailing_garbage": (lambda b: b + b" }}} garbage", "refused"),
        "json.duplicate_keys": (lambda b: b.replace(b'"id": 1,', b'"id": 1, "id": "x",', 1), "either"),
    }


for _k, (_f, _e) in _json_text_variants().items():
    def _mk_ls2(f: Callable[[bytes], bytes] = _f, e: str = _e) -> Builder:
        return lambda r: _ls(r, None, raw=f(json.dumps(ls_tasks()).encode()), expect=e)

    def _mk_coco2(f: Callable[[bytes], bytes] = _f, e: str = _e) -> Builder:
        return lambda r: _coco(r, None, raw=f(json.dumps(coco_doc()).encode()), expect=e)

    register(f"{_k}:labelstudio", _mk_ls2())
    register(f"{_k}:coco", _mk_coco2())

_BIG_INT = int("9" * 400)
_NUMBER_VALUES: dict[str, Any] = {
    "nan": float("nan"), "inf": float("inf"), "neg_inf": float("-inf"), "huge_float": 1e308,
    "huge_int": _BIG_INT, "negative": -50, "zero": 0, "tiny": 5e-324, "neg_zero": -0.0,
}
for _name, _val in _NUMBER_VALUES.items():
    def _mk_ls3(v: Any = _val) -> Builder:
        return lambda r: _ls(r, ls_tasks(x=v), expect="either")

    def _mk_ls4(v: Any = _val) -> Builder:
        return lambda r: _ls(r, ls_tasks(original=v), expect="either")

    def _mk_coco3(v: Any = _val) -> Builder:
        return lambda r: _coco(r, coco_doc(bbox=[v, 20, 30, 20]), expect="either")

    def _mk_coco4(v: Any = _val) -> Builder:
        return lambda r: _coco(r, coco_doc(width=v), expect="either")

    register(f"json.number_{_name}:labelstudio", _mk_ls3())
    register(f"json.size_{_name}:labelstudio", _mk_ls4())
    register(f"json.number_{_name}:coco", _mk_coco3())
    register(f"json.size_{_name}:coco", _mk_coco4())

register("json.exponent_overflow:coco", lambda r: _coco(
    r, None, raw=json.dumps(coco_doc()).encode().replace(b"[10, 20, 30, 20]", b"[1e400, 20, 30, 20]"),
    expect="either"))
register("json.exponent_overflow:labelstudio", lambda r: _ls(
    r, None, raw=json.dumps(ls_tasks()).encode().replace(b'"x": 10.0', b'"x": 1e400'), expect="either"))
register("json.deep_field:coco", lambda r: _coco(
    r, None, raw=json.dumps(coco_doc()).encode().replace(b"[10, 20, 30, 20]", _nest(1000)), expect="either"))
register("json.deep_field:labelstudio", lambda r: _ls(
    r, None, raw=json.dumps(ls_tasks()).encode().replace(b'"x": 10.0', b'"x": ' + _nest(1000)), expect="either"))
register("json.segmentation_deep:coco", lambda r: _coco(
    r, None, raw=json.dumps(coco_doc()).encode().replace(b'"iscrowd": 0', b'"segmentation": ' + _nest(900)
                                                          + b', "iscrowd": 0'), expect="either"))
register("json.rle_hostile:coco", lambda r: _coco(
    r, {**coco_doc(), "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 1,
                                       "segmentation": {"size": [48, 64], "counts": [10**12, -5, "x"]}}]},
    expect="either"))
register("json.rle_huge_size:coco", lambda r: _coco(
    r, {**coco_doc(), "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 1,
                                       "segmentation": {"size": [10**9, 10**9], "counts": "abc"}}]},
    expect="either"))
register("json.keypoints_odd:coco", lambda r: _coco(
    r, {**coco_doc(), "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5],
                                       "keypoints": [1, 2, 2, 3]}]}, expect="either"))
register("json.brush_hostile:labelstudio", lambda r: _ls(r, [{"id": 1, "data": {"image": "a.png"}, "annotations": [
    {"id": 2, "result": [{"id": "b", "from_name": "brush", "to_name": "image", "type": "brushlabels",
                          "original_width": 64, "original_height": 48,
                          "value": {"format": "rle", "rle": [255, 255, 255, 1, 2, 3], "brushlabels": ["cat"]}}]}]}],
    expect="either"))
register("json.brush_huge:labelstudio", lambda r: _ls(r, [{"id": 1, "data": {"image": "a.png"}, "annotations": [
    {"id": 2, "result": [{"id": "b", "from_name": "brush", "to_name": "image", "type": "brushlabels",
                          "original_width": 100000, "original_height": 100000,
                          "value": {"format": "rle", "rle": [0, 0, 0, 0], "brushlabels": ["cat"]}}]}]}],
    expect="either"))
register("json.polygon_hostile:labelstudio", lambda r: _ls(r, [{"id": 1, "data": {"image": "a.png"}, "annotations": [
    {"id": 2, "result": [{"id": "p", "from_name": "poly", "to_name": "image", "type": "polygonlabels",
                          "original_width": 64, "original_height": 48,
                          "value": {"points": [[1, 2], [3], "x", None, [1, 2, 3]], "polygonlabels": ["cat"]}}]}]}],
    expect="either"))
register("json.keypoint_cycle:labelstudio", lambda r: _ls(r, [{"id": 1, "data": {"image": "a.png"}, "annotations": [
    {"id": 2, "result": [
        {"id": "k1", "parentID": "k2", "from_name": "kp", "to_name": "image", "type": "keypointlabels",
         "original_width": 64, "original_height": 48, "value": {"x": 1, "y": 1, "keypointlabels": ["a"]}},
        {"id": "k2", "parentID": "k1", "from_name": "kp", "to_name": "image", "type": "keypointlabels",
         "original_width": 64, "original_height": 48, "value": {"x": 2, "y": 2, "keypointlabels": ["b"]}}]}]}],
    expect="either"))
register("json.empty_label:labelstudio", lambda r: _ls(r, ls_tasks(label=""), expect="either"))
register("json.blank_label:labelstudio", lambda r: _ls(r, ls_tasks(label="   "), expect="either"))
register("json.empty_category_name:coco", lambda r: _coco(
    r, {**coco_doc(), "categories": [{"id": 1, "name": ""}]}, expect="either"))
register("json.skeleton_huge:coco", lambda r: _coco(
    r, {**coco_doc(), "categories": [{"id": 1, "name": "cat", "skeleton": [[1, 10**11]]}]}, expect="either"))
register("json.huge_int_with_nan:labelstudio", lambda r: _ls(
    r, None, raw=json.dumps([*ls_tasks(x=_BIG_INT), *ls_tasks(x=float("nan"))]).encode(), expect="either"))
register("json.minimal_json_min:labelstudio", lambda r: _ls(
    r, [{"image": "a.png", "id": 1, "label": [{"x": "nan", "y": None, "width": [], "height": {},
                                               "rectanglelabels": 5}]}], expect="either"))


def _walk_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key/index path of a JSON document, parents before children."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*prefix, k)
            yield from _walk_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*prefix, i)
            yield from _walk_paths(v, (*prefix, i))


def _set_path(doc: Any, path: tuple[Any, ...], value: Any, *, delete: bool = False) -> Any:
    doc = json.loads(json.dumps(doc))
    node = doc
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return doc


WRONG_TYPES: dict[str, Any] = {"null": None, "str": "x", "numstr": "12", "int": -1, "float": 1.5, "bool": True,
                               "list": [], "list1": [1], "dict": {}, "nan": float("nan")}


def wrong_type_documents(doc: Any) -> Iterator[tuple[str, Any]]:
    """Every field of ``doc`` replaced by every wrong type, and removed: (label, mutated document)."""
    for path in _walk_paths(doc):
        label = "/".join(map(str, path))
        yield f"{label}=<deleted>", _set_path(doc, path, None, delete=True)
        for tname, val in WRONG_TYPES.items():
            yield f"{label}={tname}", _set_path(doc, path, val)


def base_ls() -> Any:
    return ls_tasks()


def base_coco() -> Any:
    return coco_doc()


# ============================================================================================ text
_YOLO_TEXT: dict[str, tuple[bytes, str]] = {
    "text.nan": (b"0 nan 0.5 0.25 0.5\n", "either"),
    "text.inf": (b"0 0.5 inf 0.25 0.5\n", "either"),
    "text.neg_inf": (b"0 0.5 0.5 -inf 0.5\n", "either"),
    "text.huge": (b"0 0.5 0.5 1e400 0.5\n", "either"),
    "text.negative": (b"0 -0.5 -0.5 0.25 0.5\n", "either"),
    "text.too_many_columns": (b"0 0.5 0.5 0.25 0.5 0.1 0.2 0.3 0.4 0.5 0.6 0.7 0.8 0.9 1 1 1 1 1 1 1\n", "either"),
    "text.too_few_columns": (b"0 0.5 0.5\n", "either"),
    "text.one_column": (b"0\n", "either"),
    "text.ragged": (b"0 0.5 0.5 0.25 0.5\n1 0.5 0.5\n0 0.1 0.1 0.1 0.1 0.1 0.1 0.1 0.1\n", "either"),
    "text.non_numeric": (b"0 0.5 abc 0.25 0.5\n", "read"),          # the row dropped at its line (issue 15 item 12)
    "text.non_numeric_class": (b"cat 0.5 0.5 0.25 0.5\n", "read"),
    "text.float_class": (b"1.5 0.5 0.5 0.25 0.5\n", "either"),
    "text.negative_class": (b"-1 0.5 0.5 0.25 0.5\n", "either"),
    "text.huge_class": (b"99999999999999999999 0.5 0.5 0.25 0.5\n", "either"),
    "text.unnamed_class": (b"7 0.5 0.5 0.25 0.5\n", "either"),
    "text.crlf": (YOLO_ROW.replace("\n", "\r\n").encode() * 2, "read"),
    "text.cr_only": (YOLO_ROW.replace("\n", "\r").encode() * 2, "either"),
    "text.bom": (b"\xef\xbb\xbf" + YOLO_ROW.encode(), "read"),
    "text.utf16": (YOLO_ROW.encode("utf-16"), "either"),
    "text.non_utf8": (b"0 0.5 0.5 0.25 0.5\n\xff\xfe 0.1\n", "either"),
    "text.empty": (b"", "read"),
    "text.whitespace_only": (b"  \n\t\n\n", "read"),
    "text.binary": (_binary(), "either"),
    "text.nul": (b"0 0.5\x00 0.5 0.25 0.5\n", "either"),
    "text.tabs_and_commas": (b"0\t0.5,0.5 0.25 0.5\n", "either"),
    "text.hex_float": (b"0 0x1p-1 0.5 0.25 0.5\n", "either"),
    "text.no_trailing_newline": (YOLO_ROW.strip().encode(), "read"),
    "text.many_blank_lines": (b"\n" * 1000 + YOLO_ROW.encode(), "read"),
    "text.long_line": (b"0 " + b"0.5 " * 100_000 + b"\n", "either"),
}
for _k, (_b, _e) in _YOLO_TEXT.items():
    def _mk_yolo(b: bytes = _b, e: str = _e) -> Builder:
        return lambda r: _yolo(r, b, expect=e)

    register(f"{_k}:yolo", _mk_yolo())

_PRED_TEXT: dict[str, tuple[bytes, str]] = {
    "text.nan": ((PRED_HEADER + "a.png,64,48,cat,nan,20,40,40,0.9\n").encode(), "either"),
    "text.inf": ((PRED_HEADER + "a.png,64,48,cat,10,inf,40,40,0.9\n").encode(), "either"),
    "text.neg_inf": ((PRED_HEADER + "a.png,64,48,cat,10,20,-inf,40,0.9\n").encode(), "either"),
    "text.huge": ((PRED_HEADER + "a.png,64,48,cat,10,20,1e400,40,0.9\n").encode(), "either"),
    "text.huge_int": ((PRED_HEADER + f"a.png,64,48,cat,10,20,{'9' * 40},40,0.9\n").encode(), "either"),
    "text.negative": ((PRED_HEADER + "a.png,64,48,cat,-10,-20,-1,-2,0.9\n").encode(), "either"),
    "text.nan_score": ((PRED_HEADER + "a.png,64,48,cat,10,20,40,40,nan\n").encode(), "either"),
    "text.nan_size": ((PRED_HEADER + "a.png,nan,48,cat,10,20,40,40,0.9\n").encode(), "either"),
    "text.negative_size": ((PRED_HEADER + "a.png,-64,48,cat,10,20,40,40,0.9\n").encode(), "either"),
    "text.huge_size": ((PRED_HEADER + f"a.png,{'9' * 30},48,cat,10,20,40,40,0.9\n").encode(), "either"),
    "text.too_many_columns": ((PRED_HEADER + "a.png,64,48,cat,10,20,40,40,0.9,1,2,3\n").encode(), "either"),
    "text.too_few_columns": ((PRED_HEADER + "a.png,64,48,cat,10\n").encode(), "either"),
    "text.non_numeric": ((PRED_HEADER + "a.png,64,48,cat,ten,20,40,40,0.9\n").encode(), "either"),
    "text.non_numeric_size": ((PRED_HEADER + "a.png,wide,48,cat,10,20,40,40,0.9\n").encode(), "either"),
    "text.empty_category": ((PRED_HEADER + "a.png,64,48,,10,20,40,40,0.9\n").encode(), "either"),
    "text.empty_image": ((PRED_HEADER + ",64,48,cat,10,20,40,40,0.9\n").encode(), "either"),
    "text.crlf": ((PRED_HEADER + PRED_ROW).replace("\n", "\r\n").encode(), "read"),
    "text.bom": (b"\xef\xbb\xbf" + (PRED_HEADER + PRED_ROW).encode(), "read"),
    "text.non_utf8": ((PRED_HEADER + PRED_ROW).encode().replace(b"cat", b"c\xff\xfet"), "either"),
    "text.utf16": ((PRED_HEADER + PRED_ROW).encode("utf-16"), "either"),
    "text.empty": (b"", "either"),
    "text.header_only": (PRED_HEADER.encode(), "either"),
    "text.whitespace_only": (b"\n\n  \n", "either"),
    "text.binary": (_binary(), "either"),
    "text.nul": ((PRED_HEADER + "a.png,64,48,c\x00t,10,20,40,40,0.9\n").encode(), "either"),
    "text.no_box_columns": (b"filename,class,score\na.png,cat,0.9\n", "refused"),
    "text.duplicate_columns": (b"filename,xmin,xmin,ymin,xmax,ymax,class\na.png,1,2,3,4,5,cat\n", "either"),
    "text.unclosed_quote": ((PRED_HEADER + '"a.png,64,48,cat,10,20,40,40,0.9\n').encode(), "either"),
    "text.quoted_newline": ((PRED_HEADER + '"a\n.png",64,48,cat,10,20,40,40,0.9\n').encode(), "either"),
    "text.polygon_garbage": (b"filename,width,height,class,xmin,ymin,xmax,ymax,polygon\n"
                             b'a.png,64,48,cat,1,2,3,4,"[[1, 2], [x]]"\n', "either"),
    "text.rle_garbage": (b"filename,width,height,class,xmin,ymin,xmax,ymax,rle\n"
                         b'a.png,64,48,cat,1,2,3,4,"{""size"": [1e9, 5], ""counts"": 7}"\n', "either"),
    "text.keypoints_garbage": (b"filename,width,height,class,xmin,ymin,xmax,ymax,keypoints\n"
                               b'a.png,64,48,cat,1,2,3,4,"[1, 2, ""x"", null]"\n', "either"),
    "text.json_deep": (b"filename,width,height,class,xmin,ymin,xmax,ymax,polygon\n"
                       b'a.png,64,48,cat,1,2,3,4,"' + _nest(5000) + b'"\n', "either"),
}
for _k, (_b, _e) in _PRED_TEXT.items():
    def _mk_pred(b: bytes = _b, e: str = _e) -> Builder:
        return lambda r: _pred(r, b, expect=e)

    register(f"{_k}:predictions", _mk_pred())


# ============================================================================================ YAML (YOLO)
def _yaml_case(yaml: str, expect: str = "either", match: str | None = None) -> Builder:
    return lambda r: (_outside(r), _yolo(r, YOLO_ROW, yaml=yaml.replace("OUTSIDE", str(r / "outside")),
                                          expect=expect, match=match))[1]


register("yaml.alias_bomb:yolo", _yaml_case(
    "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
    "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
    "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\nnames: *g\ntrain: images\n"))
register("yaml.python_tag:yolo", _yaml_case(
    "names: !!python/object/apply:os.system ['echo pwned']\ntrain: images\n", "refused"))
register("yaml.not_mapping:yolo", _yaml_case("- a\n- b\n", "refused"))
register("yaml.binary:yolo", lambda r: _yolo(r, YOLO_ROW, yaml=_binary().decode("latin-1"), expect="either"))
register("yaml.names_wrong_type:yolo", _yaml_case("names: 5\ntrain: images\n", "either"))
register("yaml.names_gap:yolo", _yaml_case("names: {0: cat, 5: dog}\ntrain: images\n", "either"))
register("yaml.names_nested:yolo", _yaml_case("names: [[a, b], {c: d}, null]\ntrain: images\n", "either"))
register("yaml.empty_name:yolo", _yaml_case("names: ['', dog]\ntrain: images\n", "either"))
register("yaml.null_name:yolo", _yaml_case("names: [null, dog]\ntrain: images\n", "either"))
register("yaml.nc_huge:yolo", _yaml_case(f"nc: {10**12}\ntrain: images\n", "either"))
register("yaml.train_wrong_type:yolo", _yaml_case("names: [cat]\ntrain: {a: 1}\n", "either"))
register("yaml.kpt_shape_hostile:yolo", _yaml_case("names: [cat]\ntrain: images\nkpt_shape: [-1, 99]\n", "either"))
register("path.dotdot:yolo-yaml", _yaml_case("path: ../outside\nnames: [cat]\ntrain: ../outside\n"))
register("path.absolute:yolo-yaml", _yaml_case("path: OUTSIDE\nnames: [cat]\ntrain: OUTSIDE\n"))
register("path.absolute_image:yolo-yaml", _yaml_case("names: [cat]\ntrain: [OUTSIDE/secret.png]\n"))


def _yolo_list(root: Path) -> Case:
    out, img, _ = _outside(root)
    c = _yolo(root, YOLO_ROW, yaml="names: [cat]\ntrain: train.txt\n")
    (c.src / "train.txt").write_text(f"{img}\n../outside/secret.png\nimages/../../outside/secret.png\n"
                                     "images/a.png\n")
    return c


register("path.list_file:yolo", _yolo_list)


# ============================================================================================ file names
def _hostile_names(root: Path) -> dict[str, str]:
    _, img, _ = _outside(root)
    return {
        "path.dotdot": "../outside/secret.png",
        "path.dotdot_deep": "images/../../outside/secret.png",
        "path.dotdot_many": "../" * 30 + str(img).lstrip("/"),
        "path.absolute": str(img),
        "path.backslash": "..\\outside\\secret.png",
        "path.drive": "C:\\outside\\secret.png",
        "path.file_url": f"file://{img}",
        "path.home": "~/secret.png",
        "path.nul": "a.png\x00/../../outside/secret.png",
        "path.etc_passwd": "/etc/passwd",
        "path.proc": "/proc/self/environ",
    }


_NAME_KINDS = ["path.dotdot", "path.dotdot_deep", "path.dotdot_many", "path.absolute", "path.backslash",
               "path.drive", "path.file_url", "path.home", "path.nul", "path.etc_passwd", "path.proc"]


def _name_case(kind: str, fmt: str) -> Builder:
    def build(root: Path) -> Case:
        name = _hostile_names(root)[kind]
        if fmt == "coco":
            return _coco(root, coco_doc(file_name=name))
        if fmt == "coco-nosize":
            doc = coco_doc(file_name=name)
            del doc["images"][0]["width"], doc["images"][0]["height"]
            return _coco(root, doc)
        if fmt == "labelstudio":
            return _ls(root, ls_tasks(image=name))
        if fmt == "labelstudio-nosize":
            tasks = ls_tasks(image=name)
            for res in tasks[0]["annotations"][0]["result"]:
                del res["original_width"], res["original_height"]
            return _ls(root, tasks)
        if fmt == "predictions":
            return _pred(root, PRED_HEADER + f'"{name}",64,48,cat,10,20,40,40,0.9\n')
        if fmt == "predictions-nosize":
            return _pred(root, f'filename,class,xmin,ymin,xmax,ymax\n"{name}",cat,10,20,40,40\n')
        xml_name = name.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")
        if fmt == "voc":
            return _voc(root, voc_xml(filename=xml_name))
        if fmt == "voc-nosize":
            return _voc(root, voc_xml(filename=xml_name, size=False))
        if fmt == "cvat":
            return _cvat(root, cvat_xml(name=xml_name))
        raise ValueError(fmt)
    return build


for _k in _NAME_KINDS:
    for _fmt in ("coco", "coco-nosize", "labelstudio", "labelstudio-nosize", "predictions", "predictions-nosize",
                 "voc", "voc-nosize", "cvat"):
        if _k == "path.nul" and _fmt.startswith(("voc", "cvat")):
            continue  # XML cannot hold a NUL character (xml.nul_bytes covers the raw byte)
        register(f"{_k}:{_fmt}", _name_case(_k, _fmt))


def _ls_url(url: str) -> Builder:
    def build(root: Path) -> Case:
        _, img, _ = _outside(root)
        tasks = ls_tasks(image=url.replace("IMG", str(img)))
        for res in tasks[0]["annotations"][0]["result"]:
            del res["original_width"], res["original_height"]
        return _ls(root, tasks)
    return build


register("path.local_files_dotdot:labelstudio", _ls_url("/data/local-files/?d=..%2Foutside%2Fsecret.png"))
register("path.local_files_abs:labelstudio", _ls_url("/data/local-files/?d=IMG"))
register("path.local_files_encoded_nul:labelstudio", _ls_url("/data/local-files/?d=a.png%00..%2F..%2Foutside"))
register("path.upload_dotdot:labelstudio", _ls_url("/data/upload/1/abcdef12-..%2F..%2Foutside%2Fsecret.png"))
register("path.s3_dotdot:labelstudio", _ls_url("s3://bucket/../../outside/secret.png"))
register("path.http_dotdot:labelstudio", _ls_url("http://example.com/../../outside/secret.png"))


def _unicode_case(fmt: str, variant: str) -> Builder:
    """A file on disk named in NFC ("café.png", "Photo.png"); the input names it in NFD or another case."""
    def build(root: Path) -> Case:
        d = _ds(root)
        nfc = unicodedata.normalize("NFC", "caf\u00e9.png")
        write_png(d / "images" / nfc, (40, 30))
        write_png(d / "JPEGImages" / nfc, (40, 30))
        name = unicodedata.normalize("NFD", nfc) if variant == "nfd" else "CAF\u00c9.PNG"
        if fmt == "coco":
            doc = coco_doc(file_name=name)
            del doc["images"][0]["width"], doc["images"][0]["height"]
            return _coco(root, doc)
        if fmt == "labelstudio":
            tasks = ls_tasks(image=name)
            for res in tasks[0]["annotations"][0]["result"]:
                del res["original_width"], res["original_height"]
            return _ls(root, tasks)
        if fmt == "predictions":
            return _pred(root, f"filename,class,xmin,ymin,xmax,ymax\n{name},cat,10,20,30,25\n")
        if fmt == "voc":
            return _voc(root, voc_xml(filename=name, size=False, box=("1", "1", "20", "20")))
        if fmt == "cvat":
            return _cvat(root, cvat_xml(name=name, width="40", height="30", box=("1", "1", "20", "20")))
        raise ValueError(fmt)
    return build


for _fmt in ("coco", "labelstudio", "predictions", "voc", "cvat"):
    register(f"path.nfd:{_fmt}", _unicode_case(_fmt, "nfd"))
    register(f"path.case:{_fmt}", _unicode_case(_fmt, "case"))


def _yolo_unicode(variant: str) -> Builder:
    def build(root: Path) -> Case:
        d = _ds(root)
        nfc = unicodedata.normalize("NFC", "caf\u00e9.png")
        write_png(d / "images" / nfc, (40, 30))
        stem = unicodedata.normalize("NFD", "caf\u00e9") if variant == "nfd" else "CAF\u00c9"
        (d / "labels").mkdir(exist_ok=True)
        (d / "labels" / f"{stem}.txt").write_text(YOLO_ROW)
        (d / "data.yaml").write_text("path: .\ntrain: images\nnames: [cat]\n")
        return Case(id="", kind="", fmt="yolo", src=d, forbidden=_forbidden(root))
    return build


register("path.nfd:yolo", _yolo_unicode("nfd"))
register("path.case:yolo", _yolo_unicode("case"))


def _symlink_escape(fmt: str) -> Builder:
    """A symlink inside the dataset pointing at a file outside: the user's own links are followed, so this
    must READ (the sentinel size is then legitimately seen): documents the policy."""
    def build(root: Path) -> Case:
        _, img, _ = _outside(root)
        d = _ds(root)
        (d / "images" / "link.png").symlink_to(img)
        doc = coco_doc(file_name="link.png")
        del doc["images"][0]["width"], doc["images"][0]["height"]
        return Case(id="", kind="", fmt="coco", src=_coco(root, doc).src, options=ReadOptions(images=d / "images"),
                    expect="read", forbidden=(Path("/etc/passwd"),))
    return build


register("path.symlink_in_root:coco", _symlink_escape("coco"))

KINDS = sorted({kind_of(k) for k in CASES})


@dataclass
class Streamed:
    """What one streamed conversion (``convert(stream=True)``, one image per chunk) gave."""

    error: PrelabelError | None = None
    coco: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    accessed: list[str] = field(default_factory=list)


def run_stream(src: Path, out_dir: Path, *, fmt: str | None, options: ReadOptions | None = None,
               seconds: float = 30.0) -> Streamed | None:
    """The streaming pipeline on ``src`` in this process (so that file access is recorded), at its smallest
    chunks (an adapter's plan cut into parts of about a hundred bytes of a file, or single files), whatever the
    size of the source (the adapter's ``STREAM_MIN_BYTES`` lifted); None when the format does not stream (no
    ``plan``)."""
    from prelabel import adapters

    adapter = adapters.get(fmt) if fmt is not None else None
    if adapter is None or not hasattr(adapter, "plan"):
        return None
    out = Streamed()
    old = os.environ.get("PRELABEL_READ_IN_CHILD")
    os.environ["PRELABEL_READ_IN_CHILD"] = "0"
    floor = getattr(adapter, "STREAM_MIN_BYTES", None)
    if floor is not None:
        adapter.STREAM_MIN_BYTES = 0
    try:
        with record_access() as seen, time_limit(seconds):
            try:
                res = pipeline.convert(src, out_dir / "stream.json", fmt=fmt, options=options, stream=True,
                                       chunk_rows=1, max_file_size=2**40)
                out.coco = json.loads((out_dir / "stream.json").read_bytes())
                out.report = res.report.to_dict()
            except PrelabelError as e:
                out.error = e
        out.accessed = list(seen)
    finally:
        if floor is not None:
            adapter.STREAM_MIN_BYTES = floor
        if old is None:
            os.environ.pop("PRELABEL_READ_IN_CHILD", None)
        else:
            os.environ["PRELABEL_READ_IN_CHILD"] = old
    return out
