"""The engine (prelabel.engine): a source read part by part (the adapter's plan and read_part), in this process,
in a process pool and on Dask, gives the COCO file ``prelabel.convert`` writes in process, byte for byte; the
one worker policy (prelabel.workers) and its explicit start methods."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SAMPLE, SHARED_FIXTURES

import prelabel
from prelabel import workers as policy
from prelabel.adapters import voc
from prelabel.adapters.base import ReadOptions
from prelabel.adapters.parts import FilesPart
from prelabel.engine import read_parts
from prelabel.engine import run as engine_run
from prelabel.errors import PrelabelError
from prelabel.pipeline import prepare, write_dataset

VOC_FIXTURES = SHARED_FIXTURES / "voc" / "openvinotoolkit__datumaro" / "tests" / "assets"
# every format with a plan, on sample_data/ and on the real files of ../shared/fixtures (SOURCES.md)
SOURCES = [("voc", SAMPLE / "voc"),
           *[("voc", VOC_FIXTURES / rel) for rel in ("voc_dataset/voc_dataset1", "voc_dataset/voc_dataset2",
                                                      "voc_dataset/voc_dataset3", "roboflow_dataset/voc",
                                                      "roboflow_dataset/voc/train")]]


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    pytest.importorskip("distributed")
    from prelabel.distributed import dask_client

    with dask_client(workers=2, processes=False) as c:
        yield c


def _coco(run: Any, out: Path) -> bytes | str:
    """The COCO file's bytes, or the error's text when reading fails."""
    try:
        run(out)
    except PrelabelError as e:
        return f"{type(e).__name__}: {e}"
    return out.read_bytes()


def _through_engine(src: Path, fmt: str, out: Path, **kw: Any) -> None:
    write_dataset(prepare(read_parts(src, fmt=fmt, **kw)), out, max_file_size=10**10)


@pytest.mark.parametrize(("fmt", "src"), SOURCES, ids=[str(s.relative_to(s.parents[1])) for _, s in SOURCES])
def test_engine_output_is_byte_identical(tmp_path: Path, fmt: str, src: Path, client: Any) -> None:
    if not src.exists():
        pytest.skip(f"{src} is absent")
    # (a source that cannot be converted must fail with the same error: voc_dataset2 has a file without <size>)
    want = _coco(lambda out: prelabel.convert(src, out, fmt=fmt, max_file_size=10**10), tmp_path / "want.json")
    for name, kw in (("workers=1", {"workers": 1}), ("workers=2", {"workers": 2}),
                     ("dask", {"workers": 2, "engine": "dask", "client": client})):
        got = _coco(lambda out, kw=kw: _through_engine(src, fmt, out, **kw), tmp_path / f"{name}.json")
        assert got == want, name


def _many_voc(root: Path, n: int) -> Path:
    (root / "Annotations").mkdir(parents=True)
    for i in range(n):
        (root / "Annotations" / f"{i:03d}.xml").write_text(
            f"<annotation><filename>{i:03d}.jpg</filename><size><width>40</width><height>30</height></size>"
            f"<object><name>{'cat' if i % 2 else 'dog'}</name><bndbox><xmin>1</xmin><ymin>2</ymin>"
            f"<xmax>{3 + i % 7}</xmax><ymax>9</ymax></bndbox></object></annotation>")
    return root


def test_plan_cuts_runs_of_files_in_order(tmp_path: Path) -> None:
    root = _many_voc(tmp_path / "ds", 10)
    parts = voc.plan(root, options=ReadOptions(), parts=3)
    assert [p.files for p in parts] == [
        ("Annotations/000.xml", "Annotations/001.xml", "Annotations/002.xml"),
        ("Annotations/003.xml", "Annotations/004.xml", "Annotations/005.xml"),
        ("Annotations/006.xml", "Annotations/007.xml", "Annotations/008.xml", "Annotations/009.xml")]
    assert voc.plan(root / "Annotations" / "000.xml", options=ReadOptions(), parts=3) == [
        FilesPart(source=str(root / "Annotations" / "000.xml"), files=())]


def test_pool_of_many_files_matches_one_process(tmp_path: Path) -> None:
    root = _many_voc(tmp_path / "ds", 60)
    one, two = (_coco(lambda out, w=w: _through_engine(root, "voc", out, workers=w), tmp_path / f"{w}.json")
                for w in (1, 2))
    want = _coco(lambda out: prelabel.convert(root, out, max_file_size=10**10), tmp_path / "want.json")
    assert one == two == want
    assert isinstance(want, bytes) and want.count(b'"file_name"') == 60


# ------------------------------------------------------------------------------------ the worker policy
def test_one_switch_and_its_aliases(monkeypatch: pytest.MonkeyPatch) -> None:
    for env in ("PRELABEL_WORKERS", "PRELABEL_CVAT_WORKERS"):
        monkeypatch.delenv(env, raising=False)
    assert policy.wanted_workers(None) is None
    assert policy.wanted_workers({"voc_workers": 3}, "voc_workers") == 3
    assert policy.wanted_workers({"voc_workers": 3}) is None  # another format's switch is not this one's
    assert policy.wanted_workers({"workers": 1, "voc_workers": 3}, "voc_workers") == 1
    assert policy.wanted_workers({"ls_workers": "x"}, "ls_workers") == 1
    monkeypatch.setenv("PRELABEL_CVAT_WORKERS", "2")
    assert policy.wanted_workers({}, "cvat_workers") == 2
    monkeypatch.setenv("PRELABEL_WORKERS", "4")
    assert policy.wanted_workers({}, "cvat_workers") == 4
    assert policy.wanted_workers({"cvat_workers": 1}, "cvat_workers") == 1


def test_pipeline_workers_reach_the_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pools: list[int] = []

    def no_pool(workers: int) -> None:  # the engine asks for a pool; the parts are then read in this process
        pools.append(workers)

    monkeypatch.setattr(engine_run, "process_pool", no_pool)
    prelabel.convert(SAMPLE / "voc", tmp_path / "a.json", workers=1)
    assert pools == []  # one process: the whole source read here
    monkeypatch.setenv("PRELABEL_WORKERS", "3")
    prelabel.convert(SAMPLE / "voc", tmp_path / "b.json")
    assert pools == [3]  # the engine reads the plan's 3 parts (5 XML files: 1, 2 and 2) in a pool of 3
    prelabel.convert(SAMPLE / "voc", tmp_path / "c.json", options=ReadOptions(extra={"voc_workers": 2}))
    assert pools == [3, 2]  # the format's old switch is the worker policy's alias
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes() == \
        (tmp_path / "c.json").read_bytes()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/task is Linux's")
def test_start_method_forks_only_a_single_threaded_process() -> None:
    assert policy.os_threads() == len(os.listdir("/proc/self/task"))
    stop = threading.Event()
    t = threading.Thread(target=stop.wait)
    t.start()
    try:
        assert policy.may_fork() is False
        assert policy.start_method() == "forkserver"
    finally:
        stop.set()
        t.join()


SCRIPT = """
import os, sys, threading
from pathlib import Path

def no_fork():  # Python < 3.12 does not warn: any fork of this (threaded) process fails the test
    raise AssertionError("a threaded process forked")

os.fork = no_fork
stop = threading.Event()
threading.Thread(target=stop.wait, daemon=True).start()
from prelabel import workers
from prelabel.adapters import voc
from prelabel.adapters.base import ReadOptions
from prelabel.report import Report
root = Path(sys.argv[1])
print(workers.start_method())
two = voc.read(root, options=ReadOptions(extra={"workers": 2}), report=Report())
one = voc.read(root, options=ReadOptions(extra={"workers": 1}), report=Report())
print(len(two.images), len(two.annotations), two.images.equals(one.images), two.annotations.equals(one.annotations))
stop.set()
"""


def test_a_threaded_process_never_forks(tmp_path: Path) -> None:
    """A thread running, VOC read by two processes: a fork server starts them (no fork of this process: no
    DeprecationWarning, turned into an error here, and ``os.fork`` itself refuses), and the dataset is the one
    process's."""
    root = _many_voc(tmp_path / "ds", 40)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PRELABEL_")}
    r = subprocess.run([sys.executable, "-W", "error::DeprecationWarning", "-c", SCRIPT, str(root)],
                       capture_output=True, text=True, env=env, timeout=300, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n") == ["forkserver", "40 40 True True", ""]
