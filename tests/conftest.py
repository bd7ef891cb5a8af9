"""Shared test helpers: the fixtures folder beside the project, and a COCOeval self-check."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import single_thread  # noqa: F401 (before anything imports numpy or pyarrow)
from upload_support import CREDS, new_project

from prelabel.upload.local import LocalProject
from prelabel.upload.server import LabellerrServer

ROOT = Path(__file__).resolve().parents[1]
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"
SAMPLE = ROOT / "sample_data"


@pytest.fixture
def fixtures_dir() -> Path:
    """../shared/fixtures; tests that use it skip when it is absent (never copy fixtures into the project)."""
    if not SHARED_FIXTURES.is_dir():
        pytest.skip("../shared/fixtures is absent")
    return SHARED_FIXTURES


def coco_self_ap(coco: dict[str, Any] | str | Path, iou_type: str = "bbox") -> float:
    """Load a COCO document in pycocotools and evaluate it against itself; returns AP (1.0 when sound)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    doc = json.loads(Path(coco).read_text()) if isinstance(coco, (str, Path)) else coco
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = json.loads(json.dumps(doc))
        gt.createIndex()
        dets = []
        for a in doc["annotations"]:
            d = {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0}
            if iou_type == "bbox":
                d["bbox"] = a["bbox"]
            elif iou_type == "segm":
                d["segmentation"] = gt.annToRLE(gt.anns[a["id"]])
            else:
                d["keypoints"] = a["keypoints"]
            dets.append(d)
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


@pytest.fixture
def self_ap():
    return coco_self_ap


# ---------------------------------------------------------------------------------------------- Label Studio
@pytest.fixture(scope="session")
def label_studio():
    """A real Label Studio on 127.0.0.1, started once per session (once per pytest worker) from the .ls/ template
    (tests/ls_server.py).

    Installs it first when .ls/venv is missing (``scripts/labelstudio.sh``). When it cannot start, the tests
    that use it FAIL with the server's log tail: never skipped, so CI notices.
    """
    import subprocess

    import ls_server

    if not ls_server.installed() or not (ls_server.TEMPLATE / "ready").is_file():
        # two workers may get here at once: the script's install and ls_server's template take a lock each
        done = subprocess.run(["bash", str(ROOT / "scripts" / "labelstudio.sh"), "all"], capture_output=True,
                              text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"installing Label Studio failed (exit {done.returncode}):\n"
                        f"{(done.stdout + done.stderr)[-3000:]}", pytrace=False)
    try:
        server = ls_server.start()
    except ls_server.ServerError as e:
        pytest.fail(f"Label Studio did not start: {e}", pytrace=False)
    yield server
    server.stop()


# ---------------------------------------------------------------------------------------------- S3 (moto)
@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto's server mode) on 127.0.0.1, started once per session (tests/s3_server.py).

    Its ``storage_options`` point fsspec at it; ``requests`` logs what it served (ranged reads, bytes sent).
    """
    import s3_server  # s3fs and moto[server] are in the test extra: a missing one is an error, not a skip

    server = s3_server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _no_progress_lines(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Progress lines appear after ~2 s on a slow run; tests that compare stderr exactly must not see them.
    Tests of progress itself (named *progress*) keep the user's default."""
    if "progress" not in request.node.nodeid:
        monkeypatch.setenv("PRELABEL_PROGRESS", "off")


# ------------------------------------------------------------------ a local project, and Labellerr stand-ins over it
@pytest.fixture
def project(tmp_path: Path) -> LocalProject:
    """A local project holding a.png, b.png and Cat.png (upload_support.new_project)."""
    return new_project(tmp_path)


@pytest.fixture
def serve(project: LocalProject) -> Iterator[Any]:
    """``serve(faults=None, **kw)`` starts a Labellerr stand-in (``prelabel serve``) over ``project`` on 127.0.0.1;
    every server started is stopped after the test."""
    servers: list[LabellerrServer] = []

    def start(faults: str | None = None, **kw: Any) -> LabellerrServer:
        srv = LabellerrServer(project, credentials=CREDS, faults=faults, **kw).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()
