"""The upload, push, project and serve commands, and the secrets scan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from upload_support import (
    API_KEY,
    API_SECRET,
    CLIENT_ID,
    CREDS,
    SECRETS,
    coco_doc,
    make_images,
    new_project,
    sample_coco,
    write_json,
)

from prelabel.cli import main
from prelabel.upload.journal import default_journal_path
from prelabel.upload.labellerr import LabellerrTarget
from prelabel.upload.server import LabellerrServer

ROOT = Path(__file__).resolve().parents[1]
ENV = {"LABELLERR_API_KEY": API_KEY, "LABELLERR_API_SECRET": API_SECRET, "LABELLERR_CLIENT_ID": CLIENT_ID,
       "PRELABEL_CONFIG": "/nonexistent/prelabel.json"}


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_project_init_upload_status_export(tmp_path: Path) -> None:
    make_images(tmp_path / "imgs", ["a.png", "b.png", "Cat.png"])
    proj_dir = tmp_path / "proj"
    r = run("project", "init", str(proj_dir), "--images", str(tmp_path / "imgs"), "--categories", "cat,dog",
            "--project-id", "demo")
    assert r.exit_code == 0
    assert r.stdout == f"created project demo in {proj_dir}: 3 image(s) (3 new), categories: cat, dog\n"
    coco = write_json(tmp_path / "out.json", sample_coco())
    r = run("upload", str(coco), "--to", f"local:{proj_dir}")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0].startswith(f"upload to local:{proj_dir}: completed (activity ")
    assert lines[1:] == [
        "  annotations applied: 1",
        "  images matched: 1",
        "  images not matched: 1 (their annotations are not applied)",
        "    cat.png: closest Cat.png: the names differ only in case",
        "  categories ignored (not in the project's schema; their annotations are not applied): zebra",
    ]
    r = run("upload", str(coco), "--to", f"local:{proj_dir}", "--json")
    doc = json.loads(r.stdout)
    assert (doc["status"], doc["annotations_applied"], doc["categories_ignored"]) == ("completed", 1, ["zebra"])
    r = run("project", "status", str(proj_dir))
    assert "  pre-annotations: 1\n    cat: 1\n    dog: 0\n  activities: completed 2\n" in r.stdout
    r = run("project", "status", str(proj_dir), doc["activity_id"])
    assert "  annotations applied: 1\n" in r.stdout and "    cat.png: closest Cat.png" in r.stdout
    out = tmp_path / "exp.json"
    r = run("project", "export", str(proj_dir), "-o", str(out))
    assert r.stdout == f"wrote 3 image(s), 1 annotation(s) to {out}\n"
    assert [a["bbox"] for a in json.loads(out.read_text())["annotations"]] == [[1.0, 2.0, 3.0, 4.0]]


def test_upload_errors_and_exit_codes(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    r = CliRunner().invoke(main, ["upload", str(tmp_path / "missing.json"), "--to", f"local:{proj.root}"])
    assert r.exit_code == 2 and "error: " in r.stderr and "missing.json: no such file" in r.stderr
    r = CliRunner().invoke(main, ["upload", str(write_json(tmp_path / "x.json", sample_coco())), "--to", "ftp:x"])
    assert r.exit_code == 2 and "unknown upload target 'ftp'" in r.stderr
    bad = sample_coco()
    bad["annotations"][0]["category_id"] = 42
    r = CliRunner().invoke(main, ["upload", str(write_json(tmp_path / "bad.json", bad)), "--to", f"local:{proj.root}"])
    assert r.exit_code == 1 and str(tmp_path / "bad.json") in r.stderr


def test_push_converts_reconciles_and_uploads(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    # a COCO source whose category "Cat" is the project's "cat" after normalization
    src = sample_coco()
    src["categories"][0]["name"] = "Cat"
    path = write_json(tmp_path / "src.json", src)
    out = tmp_path / "pushed.json"
    r = CliRunner().invoke(main, ["push", str(path), "--to", f"local:{proj.root}", "-o", str(out),
                                  "--unknown", "drop", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["status"] == "completed" and doc["annotations_applied"] == 1
    assert [c["name"] for c in json.loads(out.read_text())["categories"]] == ["cat", "dog"]
    assert proj.status()["categories"] == {"cat": 1, "dog": 0}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LabellerrServer]:
    proj = new_project(tmp_path)
    srv = LabellerrServer(proj, credentials=CREDS).start()
    yield srv
    srv.stop()


def _scan(texts: list[str], files: list[Path]) -> None:
    for f in files:
        if f.is_file():
            texts.append(f.read_text(errors="replace"))
    for t in texts:
        for s in SECRETS:
            assert s not in t


def test_secrets_never_appear(server: LabellerrServer, tmp_path: Path) -> None:
    env = {**ENV, "LABELLERR_BASE_URL": server.url}
    coco = write_json(tmp_path / "out.json", sample_coco())
    texts: list[str] = []
    journals: list[Path] = []
    pid = server.project.project_id
    # happy path, human and --json
    for extra in ([], ["--json"], ["--dry-run"]):
        r = CliRunner().invoke(main, ["-v", "upload", str(coco), "--to", f"labellerr:{pid}", *extra], env=env)
        assert r.exit_code == 0, r.output
        texts += [r.stdout, r.stderr]
    # a failed job (journal kept), a timeout (journal kept with a job id), --async (journal with job ids)
    server.faults.add("job", "fail")
    r = CliRunner().invoke(main, ["upload", str(coco), "--to", f"labellerr:{pid}", "--json"], env=env)
    assert r.exit_code == 1 and json.loads(r.stdout)["status"] == "failed"
    texts += [r.stdout, r.stderr, default_journal_path(coco).read_text()]
    server.faults.add("job", "delay=1")
    coco2 = write_json(tmp_path / "two.json", sample_coco())
    r = CliRunner().invoke(main, ["upload", str(coco2), "--to", f"labellerr:{pid}", "--async"], env=env)
    assert r.exit_code == 0 and ": processing (activity " in r.stdout
    journals.append(default_journal_path(coco2))
    texts += [r.stdout, r.stderr, journals[-1].read_text()]
    # wrong secret: 401 (the right secret is in the server; the wrong one in the client's env)
    for bad in ({"LABELLERR_API_SECRET": "SECRET-xyz-999"}, {"LABELLERR_API_KEY": "KEY-abc-999"}):
        r = CliRunner().invoke(main, ["upload", str(coco), "--to", f"labellerr:{pid}"], env={**env, **bad})
        assert r.exit_code == 1 and "Labellerr rejected the credentials (401)" in r.stderr
        assert "hint: set LABELLERR_API_KEY, LABELLERR_API_SECRET and LABELLERR_CLIENT_ID" in r.stderr
        texts += [r.stdout, r.stderr]
        assert list(bad.values())[0] not in r.output
    t = LabellerrTarget(pid, credentials=CREDS, base_url=server.url)
    texts += [repr(t), t.describe(), repr(t.client), str(CREDS)]
    _scan(texts, [default_journal_path(coco), *journals])
    # the served project stores the credentials hashed, never in clear
    for f in server.project.root.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert API_SECRET.encode() not in data and API_KEY.encode() not in data


def test_serve_command_over_a_subprocess(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    env = {**os.environ, **ENV}
    proc = subprocess.Popen([sys.executable, "-c", "from prelabel.cli import main; main()", "-q", "serve",
                             str(proj.root), "--port", "0", "--faults", "upload_answers:500"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"serving project proj-1 ({proj.root}) at http://127.0.0.1:")
        url = first.rsplit(" at ", 1)[1].strip()
        coco = write_json(tmp_path / "out.json", sample_coco())
        r = CliRunner().invoke(main, ["upload", str(coco), "--to", "labellerr:proj-1", "--json"],
                               env={**ENV, "LABELLERR_BASE_URL": url})
        assert r.exit_code == 0, r.output
        res: dict[str, Any] = json.loads(r.stdout)
        assert (res["status"], res["annotations_applied"]) == ("completed", 1)   # after one injected 500
        st = run("project", "status", str(proj.root), "--json")
        assert json.loads(st.stdout)["annotations"] == 1
        for s in SECRETS:
            assert s not in r.output and s not in first
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    for s in SECRETS:
        assert s not in out and s not in err


def test_hint_text_for_case_extension_prefix(tmp_path: Path) -> None:
    proj = new_project(tmp_path, names=["dog.jpg", "cat.jpeg", "car.png", "train/bus.png", "val/bus.png"])
    doc = coco_doc([("Dog.JPG", [("cat", [0, 0, 1, 1])]), ("cat.png", [("cat", [0, 0, 1, 1])]),
                    ("bus.png", [("cat", [0, 0, 1, 1])]), ("images/car.png", [("dog", [1, 1, 2, 2])])],
                   ["cat", "dog"])
    r = run("upload", str(write_json(tmp_path / "h.json", doc)), "--to", f"local:{proj.root}")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[1:] == [
        "  annotations applied: 1",
        "  images matched: 1 (1 by dropping a folder prefix)",
        "  images not matched: 3 (their annotations are not applied)",
        "    Dog.JPG: closest dog.jpg: the names differ only in case",
        "    cat.png: closest cat.jpeg: the names differ only in the extension",
        "    bus.png: closest train/bus.png, val/bus.png: the same name under another folder prefix",
    ]
