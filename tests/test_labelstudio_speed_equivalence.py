"""The Label Studio reader's speed-ups give what its plain read gives, value for value and error for error.

The speed-ups (issue 6) are: the regex reading of upload URLs in ``image_name``, the reading of a large export
in pieces, and the export read in parts (its plan's runs of tasks, merged in this process or read by the engine
in a pool of 2). The reference each is checked against is the plain read: the upload regex that matches
nothing, no pieces and no parts. (Plain rectangles had a one-pass read of their own beside the region by region
one until issue 13; the reader now has one path, so there is nothing left to compare for them.) The exports are
made at random (seeded) with every kind of task the reader handles next to the plain ones, so that they
interleave.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from prelabel import paths
from prelabel.adapters import labelstudio as ls
from prelabel.adapters.base import NeedsWholeRead, ReadOptions
from prelabel.adapters.parts import merge, names_shared
from prelabel.engine import read_parts
from prelabel.errors import ReadError
from prelabel.model import Dataset
from prelabel.report import Report

LABELS = ["cat", "dog", "car", "bird", "tree"]


# ------------------------------------------------------------------------------------------------ exports
def _rect(rng: random.Random, rid: str, *, pred: bool = False, size: tuple[Any, Any] = (640, 480)) -> dict[str, Any]:
    ints = rng.random() < 0.2
    val: dict[str, Any] = {"x": rng.randint(0, 50) if ints else rng.uniform(0, 60),
                           "y": rng.randint(0, 50) if ints else rng.uniform(0, 60),
                           "width": rng.randint(1, 40) if ints else rng.uniform(0.5, 40),
                           "height": rng.randint(1, 40) if ints else rng.uniform(0.5, 40),
                           "rectanglelabels": [rng.choice(LABELS)]}
    if rng.random() < 0.8:
        val["rotation"] = rng.choice([0, 0, 0, 0.0, 30, 45.5, 360, -90])
    r: dict[str, Any] = {"id": rid, "type": "rectanglelabels", "from_name": "label", "to_name": "image",
                         "original_width": size[0], "original_height": size[1], "value": val}
    if rng.random() < 0.3:
        r["image_rotation"] = rng.choice([0, 0, 90])
    if pred and rng.random() < 0.7:
        r["score"] = rng.choice([rng.random(), 1, None])
    if rng.random() < 0.05:  # a region with its own original size
        r["original_width"], r["original_height"] = 800, 600
    if rng.random() < 0.03:
        del r["original_width"], r["original_height"]
    return r


def _odd(rng: random.Random, rid: str, regions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A result other than a plain rectangle: another kind, or a rectangle with an odd label, type or value."""
    kind = rng.randrange(14)
    base = _rect(rng, rid)
    v = base["value"]
    if kind == 0:
        return [{"id": rid, "type": "polygonlabels", "from_name": "poly", "to_name": "image",
                 "original_width": 640, "original_height": 480,
                 "value": {"points": [[10, 10], [40, 12], [30, 35]], "polygonlabels": ["tree"]}}]
    if kind == 1 and regions:
        parent = regions[0]["id"]
        return [{"id": rid, "type": "keypointlabels", "from_name": "kp", "to_name": "image", "parentID": parent,
                 "original_width": 640, "original_height": 480,
                 "value": {"x": 20, "y": 30, "width": 1, "keypointlabels": ["nose"]}}]
    if kind == 2 and regions:
        return [{"id": regions[-1]["id"], "type": "choices", "from_name": "quality", "to_name": "image",
                 "value": {"choices": ["good"]}}]
    if kind == 3:
        return [{"id": rid, "type": "choices", "from_name": "scene", "to_name": "image",
                 "value": {"choices": [rng.choice(["day", "night"])]}}]
    if kind == 4 and len(regions) >= 2:
        return [{"type": "relation", "from_id": regions[0]["id"], "to_id": regions[1]["id"]}]
    if kind == 5:
        v["rectanglelabels"] = ["cat", "dog"]
    elif kind == 6:
        v["rectanglelabels"] = ["  "]
    elif kind == 7:
        base["type"] = "labels"
        v["labels"] = v.pop("rectanglelabels")
    elif kind == 8:
        base["to_name"] = "image2"  # a second image of the task when its data has one, else the same
    elif kind == 9:
        base["original_width"] = 640.0
    elif kind == 10:
        v["rectanglelabels"] = []
    elif kind == 11:
        base["score"] = "high"  # in an annotation the score is not read
    elif kind == 12:
        base["type"] = "rectangle"
    else:
        base["value"]["x"] = True  # a bool where a number belongs: read as 1 by numpy, as by the general path
    return [base]


def _url(rng: random.Random, i: int) -> str:
    k = rng.randrange(20)
    name = f"img_{rng.randrange(max(4, i)):05d}.jpg"  # repeats: tasks that share an image
    if k == 0:
        return f"s3://bucket/dir/{name}"
    if k == 1:
        return f"/data/local-files/?d=ds%2F{name}"
    if k == 2:
        return f"http://host/x/{name}"
    if k == 3:
        return f"/data/upload/7/ABCDEF12-{name}"  # upper-case hex: not a prefix
    if k == 4:
        return f"/data/upload/7/0123abcd-a%20b{name}"
    if k == 5:
        return "/data/upload/7/0123abcd-.."
    return f"/data/upload/{rng.randrange(3)}/{rng.getrandbits(32):08x}-{name}"


def _export(seed: int, n: int = 400) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    tasks = []
    for i in range(n):
        task: dict[str, Any] = {"id": i + 1, "data": {"image": _url(rng, i)}}
        if rng.random() < 0.5:
            task["data"]["image2"] = f"/data/upload/1/0000abcd-second_{i}.jpg"
        anns = []
        for a in range(rng.choice([0, 1, 1, 1, 2, 3])):
            regions = [_rect(rng, f"{i}-{a}-{k}") for k in range(rng.randrange(0, 12))]
            if rng.random() < 0.15:
                regions += _odd(rng, f"{i}-{a}-x", regions)
                rng.shuffle(regions)
            ann: dict[str, Any] = {"id": 1000 * i + a, "completed_by": rng.choice([1, 2, {"email": "a@b.c"}]),
                                   "result": regions, "updated_at": f"2024-01-{rng.randint(1, 28):02d}"}
            if rng.random() < 0.05:
                ann["was_cancelled"] = True
            anns.append(ann)
        task["annotations"] = anns
        if rng.random() < 0.4:
            task["predictions"] = [{"id": 5000 + i, "model_version": "m1", "score": rng.choice([0.5, None, 1]),
                                    "result": [_rect(rng, f"{i}-p{k}", pred=True) for k in range(rng.randrange(6))]}]
        if rng.random() < 0.02:
            task["data"] = {"text": "no image here"}
        tasks.append(task)
    return tasks


# ------------------------------------------------------------------------------------------------ reading
def _canon(ds: Dataset) -> dict[str, Any]:
    """Every value of the dataset and its report, in a form that compares exactly (NaN included)."""
    opt = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS
    out: dict[str, Any] = {"report": orjson.dumps(ds.report.to_dict(), option=opt, default=repr)}
    for name in ("images", "categories", "annotations"):
        table = getattr(ds, name)
        out[name + ".dtypes"] = [str(t) for t in table.dtypes]
        out[name] = {c: orjson.dumps([repr(v) if isinstance(v, float) else v for v in table[c].tolist()],
                                     option=opt, default=repr) for c in table.columns}
    return out


def _general(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(paths, "_UPLOAD_URL", re.compile(r"(?!)(x)"))  # image_name's fast path off


def _read(path: Path, **opts: Any) -> Dataset | str:
    """The dataset, or the message of the ReadError reading it."""
    try:
        return ls.read(path, options=ReadOptions(**opts), report=Report())
    except ReadError as e:
        return f"ReadError: {e}"


def _as_reference(monkeypatch: pytest.MonkeyPatch, path: Path, **opts: Any) -> Any:
    with monkeypatch.context() as m:
        _general(m)
        m.setattr(ls, "_PIECE", 1 << 40)  # never in pieces
        got = _read(path, **opts)
    return got


def _pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read files in pieces of 4 KiB."""
    monkeypatch.setattr(ls, "_PIECE", 4096)


def _in_parts(path: Path, **opts: Any) -> list[Dataset | str]:
    """The export read by the engine in parts: plan(parts=3) merged in this process, and a pool of 2."""
    options = ReadOptions(**opts)
    out: list[Dataset | str] = []
    for workers in (1, 2):
        try:
            if workers == 1:  # as the engine does: a part's ReadError makes the whole file be read (read()'s error)
                try:
                    got = [ls.read_part(p, options=options) for p in ls.plan(path, options=options, parts=3)]
                except ReadError:
                    out.append(_read(path, **opts))
                    continue
                if names_shared(ls, got):  # an image named by tasks of two parts: read whole, as the engine does
                    raise NeedsWholeRead("an image is named in two parts")
                out.append(merge(got, report=Report()))
            else:
                ds = read_parts(path, fmt="labelstudio", options=options, workers=workers)
                ds.report.input = {}  # (the engine names the format and source; ls.read here is given a bare report)
                out.append(ds)
        except ReadError as e:
            out.append(f"ReadError: {e}")
        except NeedsWholeRead:  # the engine then reads the whole file: read()'s result
            out.append(_read(path, **opts))
    return out


def _same(a: Any, b: Any) -> None:
    if isinstance(a, str) or isinstance(b, str):
        assert a == b
    else:
        assert _canon(a) == _canon(b)


OPTIONS = [{}, {"ls_select": "both"}, {"ls_select": "predictions", "ls_annotator": "latest"},
           {"ls_select": "annotations", "ls_annotator": "first"}]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_speed_ups_read_what_the_plain_read_reads(tmp_path, monkeypatch, seed):
    path = tmp_path / "export.json"
    path.write_bytes(orjson.dumps(_export(seed)))
    for opts in OPTIONS:
        ref = _as_reference(monkeypatch, path, **opts)
        assert not isinstance(ref, str), ref
        assert len(ref.annotations) > 300  # the export is not trivial
        _same(_read(path, **opts), ref)  # the upload regex, whole file
        with monkeypatch.context() as m:
            _pieces(m)
            _same(_read(path, **opts), ref)
            for got in _in_parts(path, **opts):
                _same(got, ref)


def test_a_rotated_rectangle_and_its_attributes_come_out_the_same(tmp_path, monkeypatch):
    # one hand-made task: the rotation 90 turns the 20x10 px box about its top-left corner (10, 20):
    # (x 5% of 200 px, y 20% of 100 px, 10% x 10%): corners (10, 20), (10, 40), (0, 40), (0, 20) -> box [0, 20, 10, 20]
    task = {"id": 1, "data": {"image": "/data/upload/1/0123abcd-a.jpg"}, "annotations": [{"id": 9, "result": [
        {"id": "r", "type": "rectanglelabels", "to_name": "image", "original_width": 200, "original_height": 100,
         "value": {"x": 5, "y": 20, "width": 10, "height": 10, "rotation": 90, "rectanglelabels": ["cat"]}}]}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps([task]))
    fast = _read(path)
    assert not isinstance(fast, str)
    assert fast.boxes[0].tolist() == pytest.approx([0.0, 20.0, 10.0, 20.0])
    assert fast.annotations.loc[0, "attributes"] == {"annotation_id": 9, "rotation": 90.0}
    _same(fast, _as_reference(monkeypatch, path))


# ------------------------------------------------------------------------------------------------ errors
def _plain(i: int, x: Any = 10.0, ow: Any = 640) -> dict[str, Any]:
    return {"id": i, "data": {"image": f"/data/upload/1/0000abcd-i{i}.jpg"}, "annotations": [{"id": i, "result": [
        {"id": f"r{i}", "type": "rectanglelabels", "to_name": "image", "original_width": 640, "original_height": 480,
         "value": {"x": 1.5, "y": 2.5, "width": 3.5, "height": 4.5, "rectanglelabels": ["cat"]}},
        {"id": f"s{i}", "type": "rectanglelabels", "to_name": "image", "original_width": ow, "original_height": 480,
         "value": {"x": x, "y": 2.0, "width": 3.0, "height": 4.0, "rectanglelabels": ["dog"]}}]}]}


def _with(n: int, changes: dict[int, dict[str, Any]]) -> bytes:
    return json.dumps([_plain(i + 1, **changes.get(i, {})) for i in range(n)], separators=(",", ":")).encode()


ERRORS = {
    "a string coordinate late": _with(300, {250: {"x": "abc"}}),
    "a bool early, a string late": _with(300, {20: {"x": True}, 250: {"x": "abc"}}),
    "a nested list late": _with(300, {260: {"x": [1, 2]}}),
    "an int past uint64": _with(300, {200: {"x": 2**64}}),
    "an int past int64, and negative ints": _with(300, {10: {"x": -5}, 200: {"x": 2**63}}),
    "an int past int64, alone": _with(300, {200: {"x": 2**63 + 5}}),
    "a zero width late": _with(300, {240: {"ow": 0}}),
    "a null coordinate late": _with(300, {240: {"x": None}}),
    "a syntax error late, a task without data early": _with(300, {})
    .replace(b'{"id":21,"data":{"image":"/data/upload/1/0000abcd-i21.jpg"},', b'{"id":21,', 1)
    .replace(b'-i250.jpg"}', b'-i250.jpg"', 1),
    "a task without data late": _with(300, {})
    .replace(b'{"id":260,"data":{"image":"/data/upload/1/0000abcd-i260.jpg"},', b'{"id":260,', 1),
    "a task that is no object late": _with(300, {}).replace(b'{"id":260,', b'[1],{"id":260,', 1),
    "NaN late": _with(300, {250: {"x": 12345.5}}).replace(b"12345.5", b"NaN"),
    "an int past floats, and NaN": _with(300, {200: {"x": 10**400}, 250: {"x": 12345.5}}).replace(b"12345.5",
                                                                                                   b"NaN"),
    "Infinity early": _with(300, {3: {"x": 12345.5}}).replace(b"12345.5", b"Infinity"),
}


# what the general path says (by hand: task n is line n; tasks 1-300, two regions each, "dog" the second):
# a task that cannot be read stops the read ...
EXPECTED = {
    "a syntax error late, a task without data early": ": not valid JSON: unexpected character",
    "a task without data late": ":260#task=260: 'data' must be an object",
    "a task that is no object late": ":260: task must be an object, got list",
}
# ... one malformed region is dropped at its task's line, and the other 599 are read (issue 15 item 12)
_NOT_A_NUMBER = "'dog' region: coordinates and original_width/height must be numbers, got "
_NOT_FINITE = ("dropped.nonfinite", "'dog' region: coordinates must be finite numbers (NaN or Infinity found)")
DROPPED = {
    "a string coordinate late": [(251, "dropped.invalid", _NOT_A_NUMBER + "'abc'")],
    "a bool early, a string late": [(21, "dropped.invalid", _NOT_A_NUMBER + "True"),
                                    (251, "dropped.invalid", _NOT_A_NUMBER + "'abc'")],
    "a nested list late": [(261, "dropped.invalid", _NOT_A_NUMBER + "[1, 2]")],
    "a zero width late": [(241, "dropped.invalid", "'dog' region: original_width/height must be > 0 and at most "
                                                   "2147483647, got 0 x 480")],
    "a null coordinate late": [(241, "dropped.invalid", _NOT_A_NUMBER + "None")],
    "NaN late": [(251, *_NOT_FINITE)],
    "Infinity early": [(4, *_NOT_FINITE)],
    # (json reads the NaN file, and the int past floats exactly: no float holds it)
    "an int past floats, and NaN": [(201, "dropped.invalid", "'dog' region: a coordinate or original_width/height "
                                                            "is too large for a number"), (251, *_NOT_FINITE)],
}


@pytest.mark.parametrize("name", sorted(ERRORS))
def test_errors_and_odd_numbers_come_out_the_same(tmp_path, monkeypatch, name):
    path = tmp_path / "export.json"
    path.write_bytes(ERRORS[name])
    ref = _as_reference(monkeypatch, path)
    if name in EXPECTED:
        assert isinstance(ref, str) and f"{path}{EXPECTED[name]}" in ref
    else:  # ints past int64 are numbers: read (as floats); a malformed region is dropped at its line
        drops = DROPPED.get(name, [])
        assert not isinstance(ref, str) and len(ref.annotations) == 600 - len(drops)
        assert ref.report.read == 600
        assert ref.report.drops[["reason", "source", "message"]].values.tolist() == [
            [reason, f"{path}:{line}", message] for line, reason, message in drops]
    _same(_read(path), ref)
    with monkeypatch.context() as m:
        _pieces(m)
        _same(_read(path), ref)
        for got in _in_parts(path):
            _same(got, ref)


def test_a_bool_is_not_a_number(tmp_path, monkeypatch):
    # a bool where a coordinate belongs drops its region, on every path (it was read as 1 once)
    path = tmp_path / "export.json"
    path.write_bytes(_with(300, {20: {"x": True}}))
    ds = _read(path)
    assert not isinstance(ds, str) and len(ds.annotations) == 599
    assert ds.report.drops[["source", "message"]].values.tolist() == [[f"{path}:21", _NOT_A_NUMBER + "True"]]
    _same(ds, _as_reference(monkeypatch, path))


def test_a_piece_of_odd_values_only_reads_as_in_the_whole_file(tmp_path, monkeypatch):
    # task 150 is a piece of its own (it and the task before it are longer than a piece): its one row is all
    # bools, which are not numbers: the row is dropped the same way on every path
    tasks = [_plain(i) for i in range(1, 301)]
    tasks[148]["data"]["pad"] = tasks[149]["data"]["pad"] = "x" * 5000
    odd = {"id": "o", "type": "rectanglelabels", "to_name": "image", "original_width": True, "original_height": True,
           "value": {k: True for k in ("x", "y", "width", "height", "rotation")} | {"rectanglelabels": ["cow"]}}
    size = {"id": "c", "type": "choices", "from_name": "scene", "to_name": "image", "original_width": 640,
            "original_height": 480, "value": {"choices": ["day"]}}
    tasks[149]["annotations"][0]["result"] = [size, odd]
    path = tmp_path / "export.json"
    path.write_bytes(orjson.dumps(tasks))
    ref = _as_reference(monkeypatch, path)
    assert not isinstance(ref, str)
    assert "cow" not in set(ref.annotations["category"]) and len(ref.annotations) == 598
    assert ref.report.drops[["reason", "category", "source", "message"]].values.tolist() == [
        ["dropped.invalid", "cow", f"{path}:150",
         "'cow' region: coordinates and original_width/height must be numbers, got True"]]
    with monkeypatch.context() as m:
        _pieces(m)
        _same(_read(path), ref)
        for got in _in_parts(path):
            _same(got, ref)


def test_a_false_boundary_where_a_part_would_start(tmp_path, monkeypatch):
    # the middle of the file is inside task 150's data, a list of objects with integer ids: the first
    # "}, {"id": 1" there is no task boundary (the plan checks each cut by counting brackets outside strings)
    tasks = [_plain(i) for i in range(1, 301)]
    tasks[149]["data"]["meta"] = [{"id": k, "pad": "x" * 1000} for k in range(300)]
    path = tmp_path / "export.json"
    path.write_bytes(orjson.dumps(tasks))
    middle = path.stat().st_size // 2
    assert path.read_bytes().index(b'"meta"') < middle < path.read_bytes().index(b'{"id":151,')
    ref = _as_reference(monkeypatch, path)
    assert not isinstance(ref, str) and len(ref.annotations) == 600
    with monkeypatch.context() as m:
        _pieces(m)
        for got in _in_parts(path):
            _same(got, ref)


def test_a_json_min_export_in_pieces_and_parts(tmp_path, monkeypatch):
    records = [{"image": f"/data/upload/1/0000abcd-i{i}.jpg", "id": i, "annotator": 1, "annotation_id": i,
                "label": [{"x": 1.5, "y": 2, "width": 3, "height": 4, "rotation": 0, "rectanglelabels": ["cat"],
                           "original_width": 640, "original_height": 480}]} for i in range(1, 400)]
    path = tmp_path / "min.json"
    path.write_bytes(orjson.dumps(records))
    ref = _as_reference(monkeypatch, path)
    assert not isinstance(ref, str) and len(ref.annotations) == 399
    with monkeypatch.context() as m:
        _pieces(m)
        for got in _in_parts(path):
            _same(got, ref)


# ------------------------------------------------------------------------------------------------ names
URLS = ["/data/upload/1/0123abcd-img_1.png", "/data/upload/12/ffffffff-a.b-c_d.JPG", "/data/upload/1/0123abcd-.",
        "/data/upload/1/0123abcd-..", "/data/upload/1/0123abcd-...", "/data/upload/1/0123ABCD-x.png",
        "/data/upload/1/0123abcd-", "/data/upload/x/0123abcd-a.png", "/data/upload/1/0123abcd-a%20b.png",
        " /data/upload/1/0123abcd-a.png", "/data/upload/1/0123abcd-a.png\n", "/data/upload/1/0123abcd-a.png?x=1",
        "/data/upload/1/0123abcd-a:b.png", "/data/upload/1/0123abcd-dir/a.png", "/data/upload//0123abcd-a.png",
        "/x/data/upload/1/0123abcd-a.png", "/data/upload/1/0123abcd-\u00e9.png", "/data/upload/1/0123abcd-a b.png"]


@pytest.mark.parametrize("url", URLS)
def test_image_name_of_upload_urls_is_the_general_answer(monkeypatch, url):
    fast = ls.image_name(url)
    monkeypatch.setattr(paths, "_UPLOAD_URL", re.compile(r"(?!)(x)"))  # image_name's fast path off
    assert fast == ls.image_name(url)


def test_image_name_of_upload_urls_by_hand():
    assert ls.image_name("/data/upload/3/0123abcd-img_1.png") == ("img_1.png", "")
    assert ls.image_name("/data/upload/3/0123abcd-..") == (None, "'..' segment escapes the root")
