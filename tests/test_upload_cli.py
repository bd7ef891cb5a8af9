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
from prelabel.upload.local import LocalProject
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
        "    cat.png: no project image; closest: Cat.png (case differs) -> rerun with --match-case-insensitive",
        "  categories ignored (not in the project's schema; their annotations are not applied): zebra (1 annotation)",
    ]
    r = run("upload", str(coco), "--to", f"local:{proj_dir}", "--json")
    doc = json.loads(r.stdout)
    assert (doc["status"], doc["annotations_applied"], doc["categories_ignored"]) == ("completed", 1, ["zebra"])
    r = run("project", "status", str(proj_dir))
    assert "  pre-annotations: 1\n    cat: 1\n    dog: 0\n  activities: completed 2\n" in r.stdout
    r = run("project", "status", str(proj_dir), doc["activity_id"])
    assert "  annotations applied: 1\n" in r.stdout
    assert "    cat.png: no project image; closest: Cat.png (case differs) -> rerun with --match-case-insensitive\n" \
        in r.stdout
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
                             str(proj.root), "--port", "0", "--faults", "upload_answers:503"],
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
        assert (res["status"], res["annotations_applied"]) == ("completed", 1)   # after one injected 503
        st = run("project", "status", str(proj.root), "--json")
        assert json.loads(st.stdout)["annotations"] == 1
        for s in SECRETS:
            assert s not in r.output and s not in first
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    for s in SECRETS:
        assert s not in out and s not in err


# ------------------------------------------------------------------------------------ file-name mismatches
HINT_PROJECT = ["dog.jpg", "cat.jpeg", "car.png", "train/bus.png", "val/bus.png"]


def _hint_coco() -> dict[str, Any]:
    # one box per image; "images/car.png" matches car.png by the automatic folder-prefix rule
    return coco_doc([("Dog.JPG", [("cat", [0, 0, 1, 1])]), ("cat.png", [("cat", [0, 0, 1, 1])]),
                     ("data/train/bus.png", [("dog", [1, 1, 2, 2])]), ("bus.png", [("dog", [2, 2, 2, 2])]),
                     ("images/car.png", [("dog", [1, 1, 2, 2])]), ("elephant.tif", [("cat", [0, 0, 1, 1])])],
                    ["cat", "dog"])


def test_hint_lines_for_case_extension_prefix(tmp_path: Path) -> None:
    proj = new_project(tmp_path, names=HINT_PROJECT)
    coco = write_json(tmp_path / "h.json", _hint_coco())
    r = run("upload", str(coco), "--to", f"local:{proj.root}")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[1:] == [
        "  annotations applied: 1",
        "  images matched: 1 (1 by dropping a folder prefix)",
        "  images not matched: 5 (their annotations are not applied)",
        "    Dog.JPG: no project image; closest: dog.jpg (case differs) -> rerun with --match-case-insensitive",
        "    cat.png: no project image; closest: cat.jpeg (extension differs) -> rerun with --match-any-extension",
        "    data/train/bus.png: no project image; closest: train/bus.png, val/bus.png (folder prefix differs) "
        "-> rerun with --strip-prefix data/",
        "    bus.png: no project image; closest: train/bus.png, val/bus.png (folder prefix differs) "
        "-> the name is in several folders: map it with --name-map FILE",
        "    elephant.tif: no project image; nothing similar -> add the image to the project first",
    ]
    # the options the hints name: every image but the elephant is matched, each by the rule that says so
    (tmp_path / "map.csv").write_text("coco_name,project_name\nbus.png,val/bus.png\n")
    r = run("upload", str(coco), "--to", f"local:{proj.root}", "--match-case-insensitive", "--match-any-extension",
            "--strip-prefix", "data/", "--name-map", str(tmp_path / "map.csv"))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1:5] == [
        "  annotations applied: 5",
        "  replaced 1 existing pre-annotation on 1 image",   # the first run's box on the prefixed image
        "  images matched: 5 (1 ignoring case, 1 ignoring the extension, 1 by the name map, "
        "1 by dropping a folder prefix, 1 after --strip-prefix)",
        "  images not matched: 1 (their annotations are not applied)",
    ]
    with proj.reader() as c:
        boxes = sorted(c.execute("SELECT s.file_name, a.x, a.y FROM annotations a JOIN assets s "
                                 "ON s.id = a.asset_id").fetchall())
    # bus.png -> val/bus.png by the map (box at 2, 2); data/train/bus.png -> train/bus.png (box at 1, 1)
    assert boxes == [("car.png", 1.0, 1.0), ("cat.jpeg", 0.0, 0.0), ("dog.jpg", 0.0, 0.0),
                     ("train/bus.png", 1.0, 1.0), ("val/bus.png", 2.0, 2.0)]
    # the activity keeps the rules it applied
    act = proj.activities()[-1]
    assert act["metadata"]["match"]["strip_prefixes"] == ["data/"]


def test_name_map_json_and_bad_csv(tmp_path: Path) -> None:
    proj = new_project(tmp_path, names=HINT_PROJECT)
    doc = coco_doc([("bus.png", [("dog", [2, 2, 2, 2])]), ("x.png", [("dog", [1, 1, 1, 1])])], ["cat", "dog"])
    coco = write_json(tmp_path / "m.json", doc)
    write_json(tmp_path / "map.json", {"bus.png": "train/bus.png", "x.png": "nowhere.png"})
    r = run("upload", str(coco), "--to", f"local:{proj.root}", "--name-map", str(tmp_path / "map.json"))
    assert r.exit_code == 0
    assert r.stdout.splitlines()[1:] == [
        "  annotations applied: 1",
        "  images matched: 1 (1 by the name map)",
        "  images not matched: 1 (their annotations are not applied)",
        "    x.png: no project image; nothing similar -> its --name-map entry names nowhere.png, which is not in "
        "the project: fix the entry",
    ]
    bad = tmp_path / "bad.csv"
    bad.write_text("bus.png,train/bus.png\nx.png,a.png,b.png\n")
    r = CliRunner().invoke(main, ["upload", str(coco), "--to", f"local:{proj.root}", "--name-map", str(bad)])
    assert r.exit_code == 2
    assert r.stderr == (f"error: --name-map {bad}, line 2: expected 2 columns (coco name, project name), got 3\n"
                        "hint: one 'coco_name,project_name' pair per line\n")


def test_match_options_reach_labellerr_and_the_served_project(server: LabellerrServer, tmp_path: Path) -> None:
    # the served project has a.png, b.png, Cat.png; the COCO says A.PNG and cat.png
    env = {**ENV, "LABELLERR_BASE_URL": server.url}
    doc = coco_doc([("A.PNG", [("cat", [1, 2, 3, 4])]), ("cat.png", [("dog", [5, 6, 7, 8])])], ["cat", "dog"])
    coco = write_json(tmp_path / "l.json", doc)
    r = run("upload", str(coco), "--to", "labellerr:proj-1", env=env)
    assert r.exit_code == 1   # the file holds 2 annotations and none was applied
    assert r.stdout.splitlines()[1:] == [
        "  annotations applied: 0 (prelabel's estimate: the service reported no count)",   # issue 14, item 3
        "  images matched: 0",
        "  images not matched: 2 (their annotations are not applied)",
        "    A.PNG: no project image; closest: a.png (case differs) -> rerun with --match-case-insensitive",
        "    cat.png: no project image; closest: Cat.png (case differs) -> rerun with --match-case-insensitive",
        "  error: none of the 2 annotations in the file were applied (no image matched a project file); no "
        "pre-annotation of the project was replaced. If that is intended, pass --allow-empty",
    ]
    r = run("upload", str(coco), "--to", "labellerr:proj-1", "--match-case-insensitive", "--dry-run", env=env)
    assert r.stdout.splitlines() == ["dry run against labellerr:proj-1: completed",
                                     "  annotations would be applied: 2", "  images matched: 2 (2 ignoring case)"]
    assert server.project.status()["annotations"] == 0
    r = run("upload", str(coco), "--to", "labellerr:proj-1", "--match-case-insensitive", env=env)
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1:] == ["  annotations applied: 2 (prelabel's estimate: the service reported no "
                                         "count)", "  images matched: 2 (2 ignoring case)"]
    # the server matched the project's own names: the client sent them in place of A.PNG and cat.png
    with server.project.reader() as c:
        rows = sorted(c.execute("SELECT s.file_name, a.x FROM annotations a JOIN assets s ON s.id = a.asset_id"))
    assert rows == [("Cat.png", 5.0), ("a.png", 1.0)]
    act = server.project.activities()[-1]
    assert (act["source"], act["metadata"]["files_not_updated"]) == ("l.json", [])
    assert not list(tmp_path.glob("*.renamed*"))


def test_over_the_size_limit_says_how_many_shards(tmp_path: Path) -> None:
    names = ["a.png", "b.png", "c.png"]
    proj = new_project(tmp_path, names=names)
    # 15 boxes per image: one image's annotations alone are over 1 KB, two are over the 2 KB limit
    doc = coco_doc([(n, [("cat", [i, i, 5, 5]) for i in range(15)]) for n in names], ["cat", "dog"])
    coco = write_json(tmp_path / "big.json", doc)
    size = coco.stat().st_size
    assert 4096 < size < 10 * 1024
    r = run("upload", str(coco), "--to", f"local:{proj.root}", "--max-file-size", "2KB")
    assert r.exit_code == 0, r.output
    assert r.stderr == (f"{coco} is {round(size / 1024, 1):g} KB, over the 2 KB limit: uploading it as 3 shards "
                        "of whole images\n")
    assert r.stdout.splitlines()[1:] == ["  annotations applied: 45 in 3 shards", "  images matched: 3"]
    r = run("-q", "upload", str(coco), "--to", f"local:{proj.root}", "--max-file-size", "2KB")
    assert r.stderr == ""


def test_label_studio_options_and_env_errors(tmp_path: Path) -> None:
    proj = new_project(tmp_path)
    coco = str(write_json(tmp_path / "x.json", sample_coco()))
    no_ls = {"LABEL_STUDIO_URL": None, "LABEL_STUDIO_API_KEY": None}
    cases = [
        (["--to", "labelstudio:3"], no_ls, 2,
         "error: LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY are not set: prelabel needs the Label Studio server's "
         "address and an API key\n"
         "hint: export LABEL_STUDIO_URL=http://localhost:8080 LABEL_STUDIO_API_KEY=<your token (Label Studio: "
         "Account & Settings)>\n"),
        (["--to", "labelstudio:3"], {"LABEL_STUDIO_URL": "http://127.0.0.1:1", "LABEL_STUDIO_API_KEY": None}, 1,
         "error: LABEL_STUDIO_API_KEY is not set: Label Studio needs an API key\n"
         "hint: set LABEL_STUDIO_API_KEY to a legacy token or a personal access token (Label Studio: Account & "
         "Settings)\n"),
        (["--to", "labelstudio:3"], {"LABEL_STUDIO_URL": None, "LABEL_STUDIO_API_KEY": "k" * 40}, 2,
         "error: LABEL_STUDIO_URL is not set: prelabel needs the Label Studio server's address\n"
         "hint: export LABEL_STUDIO_URL=http://localhost:8080 (the address you open in the browser)\n"),
        (["--to", "labelstudio:new"], no_ls, 2,
         "error: labelstudio:new makes a new Label Studio project: give its title\n"
         "hint: add --create-project TITLE\n"),
        (["--to", "labelstudio:3", "--create-project", "T"], no_ls, 2,
         "error: --create-project makes a new project, but labelstudio:3 names project 3\n"
         "hint: use --to labelstudio:new --create-project TITLE, or drop --create-project\n"),
        (["--to", f"local:{proj.root}", "--images", str(tmp_path / "imgs"), "--model-version", "m"], no_ls, 2,
         "error: --images, --model-version: only for labelstudio: targets, not local:\n"
         "hint: drop the option, or upload to labelstudio:PROJECT_ID\n"),
        (["--to", "labellerr:p", "--mode", "append"], no_ls, 2,
         "error: --mode append is not supported by labellerr: targets\n"
         "hint: Labellerr applies its own rules to re-uploaded pre-annotations\n"),
    ]
    for args, env, code, err in cases:
        r = CliRunner().invoke(main, ["upload", coco, *args], env=env)
        assert (r.exit_code, r.stdout, r.stderr) == (code, "", err), args


# ------------------------------------------------------------------------------------ push: categories
SAMPLE = ROOT / "sample_data"


def test_push_reconciles_sample_categories_with_the_project(tmp_path: Path) -> None:
    # sample_data/yolo: cat x3, dog x2, car x1, person x1 (7 boxes on 5 images); the project knows Cat, dog, person
    proj_dir = tmp_path / "proj"
    r = run("project", "init", str(proj_dir), "--images", str(SAMPLE / "images"), "--categories", "Cat,dog,person")
    assert r.exit_code == 0
    r = CliRunner().invoke(main, ["push", str(SAMPLE / "yolo"), "--to", f"local:{proj_dir}"])
    assert r.exit_code == 1
    assert r.stderr == (
        f"categories: reconciling with the schema of local:{proj_dir}: Cat, dog, person\n"
        "error: 1 category is not in the schema: 'car' (1 annotation; closest: 'Cat')\n"
        "hint: map them with --map FILE (source: target, or null to drop), or pass --unknown drop to drop their "
        "annotations (--unknown keep to keep them)\n")
    assert r.stdout == ""
    r = CliRunner().invoke(main, ["push", str(SAMPLE / "yolo"), "--to", f"local:{proj_dir}", "--unknown", "drop"])
    assert r.exit_code == 0, r.output
    err = r.stderr.splitlines()
    i = err.index("category mapping (source -> project):")
    assert err[i + 1:] == ["  cat -> Cat (id 1, case): 3 annotations",
                           "  dog -> dog (id 2, exact): 2 annotations",
                           "  car: not in the schema: dropped (--unknown drop): 1 annotation",
                           "  person -> person (id 3, exact): 1 annotation"]
    assert r.stdout.splitlines()[1:] == ["  annotations applied: 6", "  images matched: 5"]
    st = LocalProject(proj_dir).status()
    assert (st["annotations"], st["categories"]) == (6, {"Cat": 3, "dog": 2, "person": 1})


def test_push_reads_a_url_source(tmp_path: Path) -> None:
    # the source URL is kept whole (not mangled to memory:/...) and read through prelabel.storage
    import fsspec

    fs = fsspec.filesystem("memory")
    for p in (SAMPLE / "yolo").rglob("*"):
        if p.is_file():
            fs.pipe(f"/push-url/yolo/{p.relative_to(SAMPLE / 'yolo').as_posix()}", p.read_bytes())
    proj_dir = tmp_path / "proj"
    assert run("project", "init", str(proj_dir), "--images", str(SAMPLE / "images"),
               "--categories", "cat,dog,car,person").exit_code == 0
    r = CliRunner().invoke(main, ["push", "memory://push-url/yolo", "--to", f"local:{proj_dir}"])
    assert r.exit_code == 0, r.output
    # sample_data/yolo: 7 boxes on 5 images
    assert r.stdout.splitlines()[1:] == ["  annotations applied: 7", "  images matched: 5"]
    assert LocalProject(proj_dir).status()["categories"] == {"cat": 3, "dog": 2, "car": 1, "person": 1}
    fs.rm("/push-url", recursive=True)
