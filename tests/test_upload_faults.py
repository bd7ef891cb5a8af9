"""Faults of issue 7: the client killed (SIGKILL) between shards and run again, and a storm of 5xx / 429 replies.

The server is ``prelabel serve``'s LabellerrServer on a free port of 127.0.0.1 (real sockets); the killed client
is ``prelabel upload`` in a subprocess. Assertions are on states and counts, never on durations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from upload_support import API_KEY, API_SECRET, CLIENT_ID, CREDS, coco_doc, new_project, write_json

from prelabel.cli import main
from prelabel.upload import upload
from prelabel.upload.journal import default_journal_path
from prelabel.upload.labellerr import LabellerrTarget
from prelabel.upload.server import LabellerrServer

ROOT = Path(__file__).resolve().parents[1]
NAMES = [f"img{i}.png" for i in range(4)]
PER_IMAGE = 12
ENV = {"LABELLERR_API_KEY": API_KEY, "LABELLERR_API_SECRET": API_SECRET, "LABELLERR_CLIENT_ID": CLIENT_ID,
       "PRELABEL_CONFIG": "/nonexistent/prelabel.json"}


def _big_coco() -> dict[str, Any]:
    """4 images x 12 boxes = 48 annotations; one image's part is over 1 KB, so --max-file-size 2KB makes 4 shards."""
    return coco_doc([(n, [("cat" if k % 2 else "dog", [k, k, 4, 3]) for k in range(PER_IMAGE)]) for n in NAMES],
                    ["cat", "dog"])


def _read_journal(path: Path) -> dict[str, Any] | None:
    """The journal as JSON (the test fails if it does not parse), or None when there is none."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    doc: dict[str, Any] = json.loads(data)          # never a torn write: a JSONDecodeError fails the test
    assert doc["version"] == 1 and isinstance(doc["entries"], dict)
    return doc


def test_sigkill_between_shards_then_rerun_applies_each_shard_once(tmp_path: Path) -> None:
    project = new_project(tmp_path, names=NAMES)
    coco = write_json(tmp_path / "big.json", _big_coco())
    journal = default_journal_path(coco)
    # job 1 runs at once; job 2 stays 'processing' for 4 s: the client is polling it when it is killed
    srv = LabellerrServer(project, credentials=CREDS, faults="job:ok,delay=4").start()
    env = {**os.environ, **ENV, "LABELLERR_BASE_URL": srv.url}
    cmd = [sys.executable, "-c", "from prelabel.cli import main; main()", "upload", str(coco),
           "--to", "labellerr:proj-1", "--max-file-size", "2KB", "--workers", "1"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    reads = 0
    try:
        end = time.monotonic() + 120
        states: Counter[str] = Counter()
        while time.monotonic() < end and proc.poll() is None:
            doc = _read_journal(journal)
            if doc is not None:
                reads += 1
                states = Counter(e["state"] for e in doc["entries"].values())
                if states == Counter({"done": 1, "started": 1}):
                    break
            time.sleep(0.01)
        assert proc.poll() is None, f"the client ended before it could be killed: {proc.communicate()}"
        assert states == Counter({"done": 1, "started": 1})
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert err.splitlines()[0] == (f"{coco} is {round(coco.stat().st_size / 1024, 1):g} KB, over the 2 KB limit: "
                                   "uploading it as 4 shards of whole images")
    # after the kill: shard 1 done, shard 2's job id recorded, shards 3 and 4 never sent
    doc = _read_journal(journal)
    assert doc is not None and reads > 0
    by_index = {e["index"]: e for e in doc["entries"].values()}
    assert sorted(by_index) == [1, 2]
    assert (by_index[1]["state"], by_index[2]["state"]) == ("done", "started")
    acts = {a["id"]: a for a in project.activities()}
    assert set(acts) == {by_index[1]["job_id"], by_index[2]["job_id"]}
    assert srv.stats["upload_answers"] == 2

    # run again (in this process): shard 1 skipped, shard 2's job polled (not sent again), shards 3 and 4 sent
    r = CliRunner().invoke(main, ["upload", str(coco), "--to", "labellerr:proj-1", "--max-file-size", "2KB",
                                  "--workers", "1", "--json"], env={**ENV, "LABELLERR_BASE_URL": srv.url},
                           catch_exceptions=False)
    srv.wait_jobs(timeout=30)
    srv.stop()
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    assert (res["status"], res["annotations_applied"], res["files_matched"]) == ("completed", 48, 4)
    assert [(s["index"], s["resumed"], s["annotations_applied"]) for s in res["shards"]] == [
        (1, True, 12), (2, False, 12), (3, False, 12), (4, False, 12)]
    assert res["shards"][1]["activity_id"] == by_index[2]["job_id"]
    assert _read_journal(journal) is None             # every shard completed: the journal is gone
    # each shard applied exactly once: 4 uploads, 4 jobs, 4 completed activities of 4 different files
    assert (srv.stats["upload_answers"], srv.stats["jobs"]) == (4, 4)
    acts_after = project.activities()
    assert [a["status"] for a in acts_after] == ["completed"] * 4
    assert len({a["sha256"] for a in acts_after}) == 4
    assert sum(a["counts"]["annotations_applied"] for a in acts_after) == 48
    st = project.status()
    assert (st["annotations"], st["annotated_assets"], st["categories"]) == (48, 4, {"cat": 24, "dog": 24})


def test_a_storm_of_5xx_and_429_within_the_retry_budget(tmp_path: Path) -> None:
    project = new_project(tmp_path, names=NAMES)
    coco = write_json(tmp_path / "big.json", _big_coco())
    # issue 14: the upload is re-sent only on 429 / 503 (a 500, 502 or a dropped connection may come after the
    # job was taken); the status route, which changes nothing, is retried on any of them
    storm = "upload_answers:503,503,429,503@0.01,429,429,503*2,503,429;status:503,429*2,500,drop,502"
    with LabellerrServer(project, credentials=CREDS, faults=storm) as srv:
        tgt = LabellerrTarget("proj-1", credentials=CREDS, base_url=srv.url, retries=10, backoff=0.01,
                              poll_interval=0.05)
        res = upload(coco, tgt, max_file_size=2048, workers=2, journal=False)
        tgt.close()
        srv.wait_jobs(timeout=30)
        stats = dict(srv.stats)
    assert (res.status, res.annotations_applied, res.files_matched, res.errors) == ("completed", 48, 4, [])
    assert len(res.shards) == 4 and all(s.status == "completed" for s in res.shards)
    # 10 refused uploads (never received) + 4 that went through; each shard's job exactly once
    assert (stats["upload_answers"], stats["jobs"]) == (14, 4)
    assert stats["status"] >= 6 + 4                    # 6 refused polls, then at least one per job
    acts = project.activities()
    assert [a["status"] for a in acts] == ["completed"] * 4 and len({a["sha256"] for a in acts}) == 4
    assert project.status()["annotations"] == 48
