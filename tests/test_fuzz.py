"""Fuzzing every adapter with hypothesis: random bytes, and mutations of real files (sample_data/ and the
third-party fixtures in ../shared/fixtures).

Mutations: bytes flipped, deleted, duplicated, inserted or cut off; a number replaced by NaN, an infinity, a
huge, negative or non-numeric value; for JSON, a key removed, a value's type swapped, a list item duplicated;
for XML, an attribute or an element's text replaced or removed. Whatever comes in, only prelabel's own errors
(PrelabelError) may leave ``pipeline.read`` + ``prepare`` + ``to_coco``, and when it reads, the ledger balances
(read == written + dropped) and the COCO validates.

Every input is also streamed one image per chunk (the same document), and a share of them is converted
map-only on the Dask engine (3 partitions on an in-process cluster) against the local conversion: the same
bytes and the same report, or the same error.

Budget: ``PRELABEL_FUZZ_EXAMPLES`` examples per test (default: 40 random-bytes and 60 mutation examples per
adapter, derandomized so CI is stable; every ``DASK_EVERY``-th of them on Dask too). ``make fuzz`` sets it to
2000, lets hypothesis pick new inputs, and runs every example on Dask.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hostile import WRONG_TYPES, run_pipeline, run_stream
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prelabel import pipeline
from prelabel.adapters.base import ReadOptions
from prelabel.errors import PrelabelError

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
SHARED = ROOT.parent / "shared" / "fixtures"

_ENV = os.environ.get("PRELABEL_FUZZ_EXAMPLES")
RANDOM_EXAMPLES = int(_ENV) if _ENV else 40
MUTATION_EXAMPLES = int(_ENV) if _ENV else 60
DASK_EVERY = 1 if _ENV else 4  # a Dask conversion costs about 0.2 s an example


def fuzz_settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=not _ENV, database=None,
                    print_blob=bool(_ENV), suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.filter_too_much])


FORBIDDEN = (Path("/etc/passwd"), Path("/etc/shadow"))


# ============================================================================================ targets
class Target:
    """One adapter's playground: a folder holding a copy of a real input, the file to mutate inside it (the
    victim), what is read, and how (a plain class: hypothesis prints dataclasses field by field)."""

    def __init__(self, fmt: str, folder: Path, victim: Path, src: Path, options: ReadOptions,
                 original: bytes) -> None:
        self.fmt, self.folder, self.victim, self.src = fmt, folder, victim, src
        self.options, self.original = options, original

    def __repr__(self) -> str:
        return f"Target({self.fmt}, {self.victim.name})"

    def restore(self) -> None:
        self.victim.write_bytes(self.original)


def _shared(pattern: str) -> list[Path]:
    return sorted(SHARED.glob(pattern)) if SHARED.is_dir() else []


def _copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _bases() -> dict[str, list[Callable[[Path], Target]]]:
    """Per adapter, builders of targets (a real file copied into a work folder)."""

    def single(fmt: str, file: Path, *, images: Path | None = None, extra: dict[str, Any] | None = None,
               name: str | None = None) -> Callable[[Path], Target]:
        def build(work: Path) -> Target:
            work.mkdir(parents=True, exist_ok=True)
            victim = work / (name or file.name)
            data = file.read_bytes()
            victim.write_bytes(data)
            opts = ReadOptions(images=images, extra=extra or {})
            return Target(fmt, work, victim, victim, opts, data)
        return build

    def yolo(folder: Path, label: str) -> Callable[[Path], Target]:
        def build(work: Path) -> Target:
            d = _copy_tree(folder, work / "ds")
            victim = d / label
            return Target("yolo", d, victim, d, ReadOptions(), victim.read_bytes())
        return build

    def voc(folder: Path, xml: str) -> Callable[[Path], Target]:
        def build(work: Path) -> Target:
            d = _copy_tree(folder, work / "ds")
            victim = d / xml
            return Target("voc", d, victim, d, ReadOptions(), victim.read_bytes())
        return build

    images = SAMPLE / "images"
    out: dict[str, list[Callable[[Path], Target]]] = {
        "coco": [single("coco", SAMPLE / "coco" / "instances.json", images=images)],
        "labelstudio": [single("labelstudio", SAMPLE / "labelstudio" / "export.json", images=images,
                               extra={"label_config": str(SAMPLE / "labelstudio" / "label_config.xml")})],
        "cvat": [single("cvat", SAMPLE / "cvat" / "annotations.xml", images=images)],
        "voc": [voc(SAMPLE / "voc", "Annotations/street.xml"), voc(SAMPLE / "voc", "Annotations/park.xml")],
        "yolo": [yolo(SAMPLE / "yolo", "labels/street.txt"), yolo(SAMPLE / "yolo", "labels/park.txt"),
                 yolo(SAMPLE / "yolo", "data.yaml")],
        "predictions": [single("predictions", SAMPLE / "predictions" / "predictions.csv", images=images)],
    }
    for f in _shared("coco/**/*.json"):
        out["coco"].append(single("coco", f))
    for f in _shared("label_studio/**/data*.json"):
        out["labelstudio"].append(single("labelstudio", f))
    for f in _shared("cvat/**/*.xml"):
        out["cvat"].append(single("cvat", f, name="annotations.xml"))
    for f in _shared("voc/**/Annotations/*.xml") + _shared("voc/**/roboflow_dataset/**/*.xml"):
        out["voc"].append(single("voc", f, name="a.xml"))
    for f in _shared("yolo/**/labels/train/1.txt")[:2]:
        out["yolo"].append(yolo(f.parents[2], "labels/train/1.txt"))
    return out


BASES = _bases()
ADAPTERS = sorted(BASES)


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    pytest.importorskip("distributed")
    from prelabel.distributed import dask_client

    with dask_client(workers=2, processes=False) as c:
        yield c


@pytest.fixture(scope="module")
def targets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Target]]:
    work = tmp_path_factory.mktemp("fuzz")
    return {fmt: [b(work / f"{fmt}{i}") for i, b in enumerate(builders)] for fmt, builders in BASES.items()}


def _as_written(coco: Any) -> Any:
    """The document as the writer writes it (orjson: NaN and infinity become null)."""
    return orjson.loads(orjson.dumps(coco, option=orjson.OPT_SERIALIZE_NUMPY))


_examples = [0]


def _conversion(t: Target, out: Path, **how: Any) -> tuple[bytes, str] | str:
    """The COCO bytes and the report's JSON (without its output paths) of converting ``t``, or the error."""
    try:
        res = pipeline.convert(t.src, out / "out.json", fmt=t.fmt, options=t.options, **how)
    except PrelabelError as e:
        return f"{type(e).__name__}: {e}"
    doc = res.report.to_dict()
    doc.pop("output")
    return b"".join(p.read_bytes() for p in res.paths), json.dumps(doc, sort_keys=True, default=str)


def _run(t: Target, what: str, client: Any) -> None:
    _examples[0] += 1
    if _examples[0] % DASK_EVERY == 0:  # map-only on Dask, each partition on a worker: the local conversion
        work = t.folder.parent / f"{t.folder.name}-converted"
        local = _conversion(t, work / "local")
        dask = _conversion(t, work / "dask", engine="dask", client=client, partitions=3)
        shutil.rmtree(work)
        assert dask == local, f"{what}: the Dask engine's conversion differs from the local one"
    out = run_pipeline(t.src, fmt=t.fmt, options=t.options, seconds=60)
    assert out.touched(FORBIDDEN) == [], f"{what}: accessed {out.touched(FORBIDDEN)}"
    if out.error is None:
        assert out.balanced, f"{what}: the ledger does not balance: {out.ledger()}"
    # the streaming pipeline (the command line's), one image per chunk: the same outcome
    streamed = run_stream(t.src, t.folder.parent / f"{t.folder.name}-streamed", fmt=t.fmt, options=t.options,
                          seconds=60)
    if streamed is None:
        return
    if out.error is not None:
        assert streamed.error is not None, f"{what}: streaming read what the whole read refused ({out.error})"
        assert str(streamed.error) == str(out.error), f"{what}: {streamed.error} != {out.error}"
    else:
        assert streamed.error is None, f"{what}: streaming refused ({streamed.error}) what the whole read read"
        assert streamed.coco == _as_written(out.coco), f"{what}: another document"


# ============================================================================================ mutations
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
NUMBER_SWAPS = [b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"-Infinity", b"1e400", b"-1e400", b"-1", b"-0",
                b"0", b"1e-320", b"99999999999999999999999", b"9" * 400, b"abc", b"", b"0x10", b"1,5", b"null",
                b'"12"', b"[]", b"true"]


def byte_ops(data: bytes, draw: Any) -> bytes:
    """Flip, delete, duplicate, insert and truncate bytes (a few of them)."""
    for _ in range(draw(st.integers(1, 4))):
        n = len(data)
        op = draw(st.sampled_from(["flip", "delete", "duplicate", "insert", "truncate"]))
        if n == 0:
            op = "insert"
        pos = draw(st.integers(0, max(n - 1, 0)))
        if op == "flip":
            bit = draw(st.integers(0, 7))
            data = data[:pos] + bytes([data[pos] ^ (1 << bit)]) + data[pos + 1:]
        elif op == "delete":
            size = draw(st.integers(1, 64))
            data = data[:pos] + data[pos + size:]
        elif op == "duplicate":
            size = draw(st.integers(1, 256))
            data = data[:pos] + data[pos:pos + size] * draw(st.integers(2, 4)) + data[pos:]
        elif op == "insert":
            data = data[:pos] + draw(st.binary(min_size=1, max_size=16)) + data[pos:]
        else:
            data = data[:pos]
    return data


def number_ops(data: bytes, draw: Any) -> bytes:
    """Replace one to three numbers by NaN, infinities, huge, negative or non-numeric values."""
    for _ in range(draw(st.integers(1, 3))):
        spans = [m.span() for m in _NUMBER.finditer(data)]
        if not spans:
            return data
        a, b = spans[draw(st.integers(0, len(spans) - 1))]
        data = data[:a] + draw(st.sampled_from(NUMBER_SWAPS)) + data[b:]
    return data


def _json_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else []
    for k, v in items:
        out.append((*prefix, k))
        out.extend(_json_paths(v, (*prefix, k)))
    return out


_JSON_VALUES = [*WRONG_TYPES.values(), math.inf, -math.inf, 1e308, -1e308, 10**30, -5, 0, "", "../../etc/passwd",
                "/etc/passwd", "a\x00b", [[[[[]]]]], {"size": [1, 1], "counts": "0"}]


def json_ops(data: bytes, draw: Any) -> bytes:
    """Structured JSON mutations: remove a key, swap a value's type, duplicate a list item."""
    try:
        doc = json.loads(data.decode("utf-8-sig"))
    except ValueError:
        return number_ops(data, draw)
    for _ in range(draw(st.integers(1, 3))):
        paths = _json_paths(doc)
        if not paths:
            break
        path = paths[draw(st.integers(0, len(paths) - 1))]
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        op = draw(st.sampled_from(["delete", "swap", "swap", "duplicate"]))
        if op == "delete":
            del parent[key]
        elif op == "swap":
            parent[key] = draw(st.sampled_from(_JSON_VALUES))
        elif isinstance(parent, list):
            parent.insert(key, json.loads(json.dumps(parent[key])))
        else:
            parent[key] = [parent[key], parent[key]]
    return json.dumps(doc, allow_nan=True).encode()


_XML_ATTR = re.compile(rb'\s[\w:-]+="[^"]*"')
_XML_TEXT = re.compile(rb">([^<>]+)<")
_XML_VALUES = [b"", b"nan", b"inf", b"-1", b"1e400", b"x", b"../../etc/passwd", b"/etc/passwd", b"&amp;",
               b"9" * 40, b"0", b"1;2;3", b"1,2;", b"-0"]


def xml_ops(data: bytes, draw: Any) -> bytes:
    """Structured XML mutations: an attribute removed or its value replaced, an element's text replaced."""
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["attr_delete", "attr_value", "text"]))
        rx = _XML_TEXT if op == "text" else _XML_ATTR
        spans = [m.span(1) if op == "text" else m.span() for m in rx.finditer(data)]
        if not spans:
            continue
        a, b = spans[draw(st.integers(0, len(spans) - 1))]
        if op == "attr_delete":
            data = data[:a] + data[b:]
        elif op == "attr_value":
            name = data[a:b].split(b"=", 1)[0]
            data = data[:a] + name + b'="' + draw(st.sampled_from(_XML_VALUES)) + b'"' + data[b:]
        else:
            data = data[:a] + draw(st.sampled_from(_XML_VALUES)) + data[b:]
    return data


def _structured(fmt: str) -> Callable[[bytes, Any], bytes]:
    if fmt in ("coco", "labelstudio"):
        return json_ops
    if fmt in ("cvat", "voc"):
        return xml_ops
    return number_ops


def _columns_ops(data: bytes, draw: Any) -> bytes:
    """Text tables: drop or add a column on one line, swap the separator, CRLF, BOM, blank lines."""
    lines = data.split(b"\n")
    k = draw(st.integers(0, max(len(lines) - 1, 0)))
    op = draw(st.sampled_from(["drop_field", "add_field", "crlf", "bom", "blank", "tabs"]))
    sep = b"," if b"," in data else b" "
    if op == "drop_field" and lines[k]:
        fields = lines[k].split(sep)
        del fields[draw(st.integers(0, len(fields) - 1))]
        lines[k] = sep.join(fields)
    elif op == "add_field":
        lines[k] = lines[k] + sep + draw(st.sampled_from(NUMBER_SWAPS))
    elif op == "crlf":
        return data.replace(b"\n", b"\r\n")
    elif op == "bom":
        return b"\xef\xbb\xbf" + data
    elif op == "blank":
        lines.insert(k, b"   ")
    else:
        lines[k] = lines[k].replace(sep, b"\t")
    return b"\n".join(lines)


# ============================================================================================ tests
_SUFFIX_FILE = {"coco": "x.json", "labelstudio": "x.json", "cvat": "x.xml", "voc": "x.xml",
                "predictions": "x.csv"}


@pytest.mark.parametrize("fmt", ADAPTERS)
@fuzz_settings(RANDOM_EXAMPLES)
@given(data=st.one_of(st.binary(max_size=2048), st.text(max_size=512).map(lambda t: t.encode("utf-8", "replace"))))
def test_random_bytes(fmt: str, data: bytes, targets: dict[str, list[Target]], client: Any) -> None:
    """Random bytes in the adapter's file (a label file inside a real dataset for YOLO)."""
    t = targets[fmt][0]
    try:
        if fmt in ("yolo", "voc"):
            t.victim.write_bytes(data)
            _run(t, f"{fmt} random bytes {data[:60]!r}", client)
        else:
            f = t.folder / _SUFFIX_FILE[fmt]
            f.write_bytes(data)
            _run(Target(fmt, t.folder, f, f, t.options, b""), f"{fmt} random bytes {data[:60]!r}", client)
    finally:
        t.restore()


@pytest.mark.parametrize("fmt", ADAPTERS)
@fuzz_settings(MUTATION_EXAMPLES)
@given(data=st.data())
def test_mutations(fmt: str, data: st.DataObject, targets: dict[str, list[Target]], client: Any) -> None:
    """A real input with byte, number, column or structure mutations."""
    pool = targets[fmt]
    t = pool[data.draw(st.integers(0, len(pool) - 1), label="base")]
    kinds: list[tuple[str, Callable[[bytes, Any], bytes]]] = [
        ("bytes", byte_ops), ("numbers", number_ops), ("structure", _structured(fmt))]
    if fmt in ("yolo", "predictions"):
        kinds.append(("columns", _columns_ops))
    name, op = kinds[data.draw(st.integers(0, len(kinds) - 1), label="kind")]
    mutated = op(t.original, data.draw)
    try:
        t.victim.write_bytes(mutated)
        _run(t, f"{fmt} {name} mutation of {t.victim.name}: {mutated[:200]!r}", client)
    finally:
        t.restore()


def test_fuzz_bases_read_cleanly(targets: dict[str, list[Target]]) -> None:
    """Every unmutated base input reads and balances (so a mutation failure is the mutation's doing)."""
    for fmt, pool in targets.items():
        for t in pool:
            out = run_pipeline(t.src, fmt=t.fmt, options=t.options)
            assert out.error is None or fmt == "voc" and t.victim.name == "a.xml", (t.victim, out.error)
            if out.error is None:
                assert out.balanced, (t.victim, out.ledger())
    assert len(targets["coco"]) >= 1 and all(targets.values())
