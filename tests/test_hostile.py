"""Hostile and broken input, every adapter: refused with a clear error, or read with every annotation accounted
for; never an unhandled exception, a hang, a file opened outside the roots, or a silent loss.

The inputs are generated into ``tmp_path`` by :mod:`hostile` (tests/hostile/__init__.py); each case says what
must happen. A few cases also run through the real command line (``prelabel convert`` in a subprocess) to check
the exit code, the one-line message without a traceback, and the peak memory of the XML bombs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path
from typing import Any

import orjson
import pytest
from hostile import (
    CASES,
    SECRET,
    SENTINEL_SIZE,
    Case,
    base_coco,
    base_ls,
    run_pipeline,
    run_stream,
    write_png,
    wrong_type_documents,
)

from prelabel.adapters.base import ReadOptions
from prelabel.errors import ReadError

PRELABEL = Path(sys.executable).with_name("prelabel")


def _check(case: Case, tmp_path: Path) -> Any:
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options, seconds=30)
    _check_streamed(case, out, tmp_path)
    # never open or list anything outside the roots, never connect anywhere
    assert out.touched(case.forbidden) == [], f"{case.id}: accessed {out.touched(case.forbidden)}"
    if "symlink" not in case.id:
        assert not out.sentinel_seen(), f"{case.id}: an image outside the root was read"
    if out.error is not None:
        text = str(out.error)
        assert case.expect != "read", f"{case.id}: expected a successful read, got: {text}"
        assert SECRET not in text
        # the message names the file at fault (the source, the label config, the data.yaml or a label file)
        named = {case.src.name, "label_config.xml", "data.yaml", "a.txt", "train.txt"}
        assert any(n in text for n in named), f"{case.id}: the message names no file: {text}"
        assert "\n" not in text, f"{case.id}: the message spans several lines: {text!r}"
        if case.match:
            assert re.search(case.match, text), f"{case.id}: {text!r} does not match {case.match!r}"
        return out
    assert case.expect != "refused", f"{case.id}: expected a refusal, read {out.ledger()}"
    # nothing lost: every annotation read is written or reported as dropped, with a source location
    assert out.balanced, f"{case.id}: ledger does not balance: {out.ledger()}"
    drops = out.dataset.report.drops
    assert all(s for s in drops["source"]), f"{case.id}: a drop without its source location"
    assert SECRET not in json.dumps(out.coco, default=str)
    return out


def _as_written(coco: Any) -> Any:
    """The document as the writer writes it (orjson: NaN and infinity become null)."""
    return orjson.loads(orjson.dumps(coco, option=orjson.OPT_SERIALIZE_NUMPY))


def _check_streamed(case: Case, whole: Any, tmp_path: Path) -> None:
    """The streaming pipeline (what the command line runs), one image per chunk, on the same input: the same
    refusal, or the same COCO document with a balanced ledger; it never touches what the whole read may not."""
    streamed = run_stream(case.src, tmp_path / "streamed", fmt=case.fmt, options=case.options, seconds=30)
    if streamed is None:
        return
    assert [a for a in streamed.accessed if a.startswith("<socket") or a.startswith("<urllib")] == []
    roots = [os.path.realpath(f) for f in case.forbidden]
    assert [a for a in streamed.accessed if any(os.path.realpath(a) == r or os.path.realpath(a).startswith(r + os.sep)
                                                for r in roots)] == [], f"{case.id}: streaming accessed a forbidden path"
    if whole.error is not None:
        assert streamed.error is not None, f"{case.id}: the whole read failed ({whole.error}), streaming did not"
        assert type(streamed.error) is type(whole.error)
        assert str(streamed.error) == str(whole.error), f"{case.id}: {streamed.error} != {whole.error}"
        return
    assert streamed.error is None, f"{case.id}: streaming failed: {streamed.error}"
    assert streamed.coco == _as_written(whole.coco), f"{case.id}: another document"
    assert streamed.report is not None and streamed.report["ledger"]["balanced"]


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_hostile_case(case_id: str, tmp_path: Path) -> None:
    _check(CASES[case_id](tmp_path), tmp_path)


# ------------------------------------------------------------------------------------- exact outcomes
def test_entities_are_refused_with_file_and_line(tmp_path: Path) -> None:
    case = CASES["xml.xxe_passwd:voc"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    assert isinstance(out.error, ReadError)
    # the DOCTYPE is on line 2 (line 1 is the XML declaration)
    # a single VOC file is named by its file name
    assert str(out.error) == "a.xml:2: XML entities/DTD are not allowed"
    case = CASES["xml.billion_laughs:cvat"](tmp_path / "cvat")
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    assert str(out.error) == (f"{case.src}:2: DOCTYPE / DTD refused (entities and DTDs are not allowed in "
                              "CVAT XML)")
    case = CASES["xml.plain_dtd:labelstudio-config"](tmp_path / "ls")
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    assert str(out.error) == (f"{case.src.parent / 'label_config.xml'}: not a valid label config: "
                              "XML entities/DTD are not allowed")


def test_nonfinite_coordinates_are_dropped_with_their_line(tmp_path: Path) -> None:
    case = CASES["text.nan:predictions"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    rep = out.dataset.report
    # one data row (line 2, the header is line 1), its xmin is NaN: read 1, written 0, dropped 1
    assert (rep.read, len(out.coco["annotations"]), rep.dropped) == (1, 0, 1)
    assert rep.dropped_counts() == {"dropped.nonfinite": 1}
    assert list(rep.drops["source"]) == [f"{case.src}:2"]


def test_yolo_nan_row_is_dropped_not_lost(tmp_path: Path) -> None:
    case = CASES["text.nan:yolo"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    rep = out.dataset.report
    assert (rep.read, len(out.coco["annotations"]), rep.dropped) == (1, 0, 1)
    assert list(rep.drops["source"]) == ["labels/a.txt:1"]


def test_unsafe_coco_file_name_is_reported_and_not_opened(tmp_path: Path) -> None:
    case = CASES["path.absolute:coco-nosize"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    rep = out.dataset.report
    assert out.touched(case.forbidden) == []
    assert (rep.read, len(out.coco["annotations"]), rep.dropped) == (1, 0, 1)
    assert rep.dropped_counts() == {"dropped.no_image": 1}
    assert [d.code for d in rep.diagnostics] == ["image.unsafe_name"]


def test_predictions_absolute_path_outside_the_root_is_never_opened(tmp_path: Path) -> None:
    case = CASES["path.absolute:predictions-nosize"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    assert out.touched(case.forbidden) == []
    rep = out.dataset.report
    # no size column and the file is outside --images: its one row is dropped, not sized from the sentinel
    assert (rep.read, len(out.coco["annotations"]), rep.dropped) == (1, 0, 1)
    assert rep.dropped_counts() == {"dropped.no_image": 1}


def test_cvat_unsafe_image_name_is_a_read_error(tmp_path: Path) -> None:
    case = CASES["path.dotdot:cvat"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    # <image> is on line 5 of the generated file
    assert str(out.error) == (f"{case.src}:5#image: image name '../outside/secret.png' is unsafe: "
                              "'..' segment escapes the root")


def test_nfd_name_matches_the_nfc_file(tmp_path: Path) -> None:
    case = CASES["path.nfd:coco"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    # written NFD in the file, NFC on disk: the same image, its 40x30 size read from the header
    assert [(i["file_name"], i["width"], i["height"]) for i in out.coco["images"]] == [
        (unicodedata.normalize("NFC", "caf\u00e9.png"), 40, 30)]
    assert len(out.coco["annotations"]) == 1


def test_oversized_image_dimensions_are_refused(tmp_path: Path) -> None:
    for cid, expected in [
        ("xml.huge_size:voc", "<size>: <width> is larger than 2147483647 pixels"),
        ("xml.huge_size:cvat", "has size 9999999999999999999999999999999999999999x48"),
        ("json.size_huge_float:coco", "width and height must be integers from 1 to 2147483647"),
    ]:
        case = CASES[cid](tmp_path / cid.replace(":", "_"))
        out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
        assert out.error is not None and expected in str(out.error), (cid, out.error)
    # a Label Studio region's original_width is one region's value: that region is dropped (issue 15 item 12);
    # the image keeps the size its header gives
    case = CASES["json.size_huge_float:labelstudio"](tmp_path / "ls")
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    assert out.error is None and [(i["width"], i["height"]) for i in out.coco["images"]] == [(64, 48)]
    assert out.dataset.report.drops.values.tolist() == [
        ["dropped.invalid", "cat", f"{case.src}:1",
         "'cat' region: original_width/height must be > 0 and at most 2147483647, got 1e+308 x 48"]]


def test_cvat_video_with_absurd_frame_range_is_refused(tmp_path: Path) -> None:
    case = CASES["xml.video_huge_range:cvat"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    assert str(out.error).startswith(f"{case.src}#meta: the task has 1000000000000 frames")


def test_yaml_errors_are_one_line_with_their_line(tmp_path: Path) -> None:
    case = CASES["yaml.python_tag:yolo"](tmp_path)
    out = run_pipeline(case.src, fmt=case.fmt, options=case.options)
    assert isinstance(out.error, ReadError)
    assert str(out.error).startswith(f"{case.src / 'data.yaml'}:1: not valid YAML: could not determine a "
                                     "constructor for the tag")


def test_wrong_types_in_every_json_field(tmp_path: Path) -> None:
    """Every field of a COCO file and of a Label Studio export replaced by null, a string, a number, a bool,
    a list, an object, NaN, or removed: a ReadError naming the file, or a balanced read."""
    counts = {"refused": 0, "read": 0}
    for fmt, base, fname in (("coco", base_coco(), "instances.json"), ("labelstudio", base_ls(), "export.json")):
        d = tmp_path / fmt
        write_png(d / "images" / "a.png", (64, 48))
        src = d / fname
        for label, doc in wrong_type_documents(base):
            src.write_text(json.dumps(doc))
            out = run_pipeline(src, fmt=fmt, options=ReadOptions(images=d / "images"), seconds=10)
            if out.error is not None:
                assert fname in str(out.error), (label, str(out.error))
                counts["refused"] += 1
            else:
                assert out.balanced, (fmt, label, out.ledger())
                counts["read"] += 1
    assert sum(counts.values()) > 400 and counts["refused"] and counts["read"]


# ------------------------------------------------------------------------------------- symlinked images
def _linked_images(tmp_path: Path) -> tuple[Path, Path]:
    """The real images live in tmp/store; the dataset's images folder is a symbolic link to it."""
    store = tmp_path / "store"
    write_png(store / "a.png", (64, 48))
    ds = tmp_path / "ds"
    ds.mkdir()
    (ds / "images").symlink_to(store, target_is_directory=True)
    return ds, ds / "images"


def test_symlinked_images_folder_coco(tmp_path: Path) -> None:
    ds, images = _linked_images(tmp_path)
    (ds / "c.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]}]}))
    out = run_pipeline(ds / "c.json", fmt="coco", options=ReadOptions(images=images))
    assert [(i["file_name"], i["width"], i["height"]) for i in out.coco["images"]] == [("a.png", 64, 48)]
    assert out.coco["annotations"][0]["bbox"] == [1.0, 2.0, 3.0, 4.0]


def test_symlinked_images_folder_yolo(tmp_path: Path) -> None:
    ds, _ = _linked_images(tmp_path)
    (ds / "labels").mkdir()
    (ds / "labels" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (ds / "data.yaml").write_text("path: .\ntrain: images\nnames: [cat]\n")
    out = run_pipeline(ds, fmt="yolo")
    # 64x48: x = 0.5*64 - 0.25*64/2 = 24, y = 0.5*48 - 0.5*48/2 = 12, w = 16, h = 24
    assert [(i["file_name"], i["width"], i["height"]) for i in out.coco["images"]] == [("a.png", 64, 48)]
    assert out.coco["annotations"][0]["bbox"] == [24.0, 12.0, 16.0, 24.0]


def test_symlinked_images_folder_voc(tmp_path: Path) -> None:
    ds, _ = _linked_images(tmp_path)
    (ds / "JPEGImages").symlink_to(tmp_path / "store", target_is_directory=True)
    (ds / "Annotations").mkdir()
    (ds / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.png</filename><object><name>cat</name><bndbox><xmin>11</xmin><ymin>21</ymin>"
        "<xmax>40</xmax><ymax>40</ymax></bndbox></object></annotation>")
    out = run_pipeline(ds, fmt="voc")
    # no <size>: 64x48 from the linked image; 1-based: x = 11-1 = 10, w = 40-11+1 = 30, y = 20, h = 20
    assert [(i["file_name"], i["width"], i["height"]) for i in out.coco["images"]] == [("a.png", 64, 48)]
    assert out.coco["annotations"][0]["bbox"] == [10.0, 20.0, 30.0, 20.0]


def test_symlinked_images_folder_labelstudio(tmp_path: Path) -> None:
    ds, images = _linked_images(tmp_path)
    tasks = base_ls()
    for r in tasks[0]["annotations"][0]["result"]:
        del r["original_width"], r["original_height"]
    (ds / "export.json").write_text(json.dumps(tasks))
    out = run_pipeline(ds / "export.json", fmt="labelstudio", options=ReadOptions(images=images))
    # percent of 64x48: x = 10% -> 6.4, y = 20% -> 9.6, w = 50% -> 32, h = 50% -> 24
    assert [(i["file_name"], i["width"], i["height"]) for i in out.coco["images"]] == [("a.png", 64, 48)]
    assert out.coco["annotations"][0]["bbox"] == pytest.approx([6.4, 9.6, 32.0, 24.0])


def test_symlinked_images_folder_predictions(tmp_path: Path) -> None:
    ds, images = _linked_images(tmp_path)
    (ds / "p.csv").write_text("filename,class,xmin,ymin,xmax,ymax\na.png,cat,10,20,40,40\n")
    out = run_pipeline(ds / "p.csv", fmt="predictions", options=ReadOptions(images=images))
    assert [(i["file_name"], i["width"], i["height"]) for i in out.coco["images"]] == [("a.png", 64, 48)]
    assert out.coco["annotations"][0]["bbox"] == [10.0, 20.0, 30.0, 20.0]


def test_symlinked_images_folder_cvat(tmp_path: Path) -> None:
    ds, images = _linked_images(tmp_path)
    (ds / "annotations.xml").write_text(
        '<annotations><version>1.1</version><meta><task><labels><label><name>cat</name></label></labels>'
        '</task></meta><image id="0" name="a.png" width="64" height="48"><box label="cat" xtl="10" ytl="20" '
        'xbr="40" ybr="40" occluded="0"/></image></annotations>')
    out = run_pipeline(ds / "annotations.xml", fmt="cvat", options=ReadOptions(images=images))
    assert [(i["file_name"], i["width"], i["height"]) for i in out.coco["images"]] == [("a.png", 64, 48)]
    assert out.coco["annotations"][0]["bbox"] == [10.0, 20.0, 30.0, 20.0]
    assert all(d.code != "image.missing" for d in out.dataset.report.diagnostics)


# ------------------------------------------------------------------------------------- the command line
CLI_CASES = ["xml.xxe_passwd:voc", "xml.billion_laughs:cvat", "xml.quadratic:voc", "json.truncated_1:coco",
             "json.number_nan:labelstudio", "text.non_numeric:yolo", "text.binary:predictions",
             "yaml.python_tag:yolo", "path.dotdot:cvat", "path.dotdot:coco"]
_CLI_TIMEOUT = 120


# The CLI is started by a small launcher that reports its peak RSS: a process started straight from the test
# process would count the test process's own peak (Linux carries the peak of the memory it replaces at exec
# into ru_maxrss, and a vfork'd child's is the test process's), whatever the CLI used.
_LAUNCHER = """
import os, signal, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
with open(sys.argv[1], "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def _launch(case: Case, out_dir: Path) -> tuple[subprocess.Popen[bytes], Path, Path, Path]:
    cmd = [sys.executable, "-c", _LAUNCHER, str(out_dir / "maxrss_kb"),
           str(PRELABEL), "convert", str(case.src), "--from", case.fmt, "-o", str(out_dir / "out.json"),
           "--report", str(out_dir / "report.json")]
    if case.options.images is not None:
        cmd += ["--images", str(case.options.images)]
    stdout, stderr = out_dir / "stdout", out_dir / "stderr"
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    with open(stdout, "wb") as so, open(stderr, "wb") as se:
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # the timer kills the launcher and the CLI together
    return proc, stdout, stderr, out_dir


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Every CLI case run as a subprocess, two at a time: exit code, stderr, peak RSS (os.wait4)."""
    results: dict[str, dict[str, Any]] = {}
    pending = list(CLI_CASES)
    # each child is waited for by its own pid (never wait4(-1): other children of the test process, such as
    # multiprocessing's resource tracker, never exit), and its Popen is kept so subprocess never reaps it first
    running: dict[int, tuple[str, Path, Path, Path, threading.Timer, subprocess.Popen[bytes]]] = {}
    while pending or running:
        while pending and len(running) < 2:
            cid = pending.pop(0)
            root = tmp_path_factory.mktemp(cid.replace(":", "_").replace(".", "_"))
            case = CASES[cid](root)
            out_dir = root / "run"
            out_dir.mkdir()
            proc, so, se, od = _launch(case, out_dir)
            timer = threading.Timer(_CLI_TIMEOUT, os.killpg, (proc.pid, signal.SIGKILL))
            timer.start()
            running[proc.pid] = (cid, so, se, od, timer, proc)
        finished = []
        for pid in list(running):
            wpid, status, usage = os.wait4(pid, os.WNOHANG)
            if wpid == pid:
                finished.append((pid, status, usage))
        if not finished:
            time.sleep(0.02)
            continue
        for pid, status, usage in finished:
            cid, so, se, od, timer, proc = running.pop(pid)
            proc.returncode = os.waitstatus_to_exitcode(status)
            timer.cancel()
            results[cid] = {"rc": os.waitstatus_to_exitcode(status), "stderr": se.read_text(errors="replace"),
                            "stdout": so.read_text(errors="replace"), "maxrss_mb": _maxrss_kb(od, usage) / 1024,
                            "dir": od}
    return results


def _maxrss_kb(out_dir: Path, usage: Any) -> int:
    """The CLI's own peak RSS as its launcher saw it (the launcher's when it was killed before writing it)."""
    got = out_dir / "maxrss_kb"
    return int(got.read_text()) if got.exists() else int(usage.ru_maxrss)


@pytest.mark.parametrize("case_id", CLI_CASES)
def test_cli_hostile(case_id: str, cli_runs: dict[str, dict[str, Any]]) -> None:
    run = cli_runs[case_id]
    err = run["stderr"]
    assert "Traceback" not in err and "Traceback" not in run["stdout"]
    # the XML bombs are refused before anything is expanded: the process stays near its resting size
    assert run["maxrss_mb"] < 600, f"{case_id}: peak RSS {run['maxrss_mb']:.0f} MB"
    dropped = {"path.dotdot:coco": "dropped.no_image",     # the unsafe image left out, its annotation reported
               "text.non_numeric:yolo": "dropped.invalid",  # the row dropped at its line (issue 15 item 12)
               "json.number_nan:labelstudio": "dropped.nonfinite"}
    if case_id in dropped:
        assert run["rc"] == 1, err   # read 1, wrote none: exit 1 (issue 17, item 2); the report is written
        rep = json.loads((run["dir"] / "report.json").read_text())
        assert rep["ledger"] == {"read": 1, "written": 0, "dropped": 1, "balanced": True}
        assert rep["dropped"] == {dropped[case_id]: 1}
        if case_id == "text.non_numeric:yolo":  # the drop names the file, the line and the value
            assert {"code": "dropped.invalid", "source": "labels/a.txt:1", "message": "not a number: 'abc'",
                    "severity": "warning"} in rep["diagnostics"]
        if case_id == "json.number_nan:labelstudio":
            assert [(d["source"].endswith("/ds/export.json:1"), d["message"]) for d in rep["diagnostics"]
                    if d["code"] == "dropped.nonfinite"] == [
                (True, "'cat' region: coordinates must be finite numbers (NaN or Infinity found)")]
        return
    assert run["rc"] == 1, f"{case_id}: exit {run['rc']}\n{err}"
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines and lines[0].startswith("error: "), err
    assert all(ln.startswith(("error: ", "hint: ")) for ln in lines), err
    assert len([ln for ln in lines if ln.startswith("error: ")]) == 1
    assert not (run["dir"] / "out.json").exists()


def test_cli_messages_name_file_and_location(cli_runs: dict[str, dict[str, Any]]) -> None:
    first = {cid: r["stderr"].splitlines()[0] for cid, r in cli_runs.items() if r["rc"] == 1}
    assert first["xml.xxe_passwd:voc"] == "error: a.xml:2: XML entities/DTD are not allowed"
    assert re.search(r"/ds/annotations\.xml:2: DOCTYPE / DTD refused", first["xml.billion_laughs:cvat"])
    assert re.search(r"/ds/instances\.json:1: not valid JSON: unexpected end of data$",
                     first["json.truncated_1:coco"])
    assert re.search(r"/ds/annotations\.xml:5#image: image name '\.\./outside/secret\.png' is unsafe",
                     first["path.dotdot:cvat"])


def test_sentinel_is_what_it_claims(tmp_path: Path) -> None:
    """The sentinel image really has the size the tests look for (so 'not seen' means 'not read')."""
    from prelabel.imagesize import image_size

    img = write_png(tmp_path / "s.png", SENTINEL_SIZE)
    assert image_size(img) == SENTINEL_SIZE
