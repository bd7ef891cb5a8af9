"""Replace mode against the real Label Studio (issue 18, and issue 17 item 1 for Label Studio), one prediction at a
time (``swap=False``, the path a replace takes when the bulk model-version swap is not safe; the swap is tested in
test_labelstudio_swap.py): the new predictions are imported and read back before the old ones are deleted, writes go one at a time, GET and DELETE are retried
on a 500, a failure between import and delete leaves no task emptier and a re-run converges, tasks whose
annotations were all skipped keep their predictions, and an HTML 500 shows its exception line.

A fault-injecting proxy (``tests/ls_proxy.py``) sits between the target and the server where a test needs it."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from ls_proxy import FaultProxy, django_error_page

from prelabel.errors import UploadError
from prelabel.upload.labelstudio import LabelStudioTarget

N_TASKS = 12
FAST = (0.05, 0.1, 0.2)        # retry pauses for the tests


def _coco(names: list[str], *, boxes: int = 3, category: str = "cat", skip: set[str] | None = None) -> dict[str, Any]:
    """``boxes`` boxes on each image of ``names``; the images in ``skip`` get a box of category ``zebra``."""
    cats = [{"id": 1, "name": category}, {"id": 2, "name": "zebra"}]
    images, anns = [], []
    for i, n in enumerate(names, 1):
        images.append({"id": i, "file_name": n, "width": 100, "height": 80})
        for k in range(boxes):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 2 if n in (skip or ()) else 1,
                         "bbox": [1 + 10 * k, 2, 8, 6], "area": 48, "iscrowd": 0, "segmentation": []})
    return {"info": {}, "licenses": [], "images": images, "categories": cats, "annotations": anns}


def _project(server: Any, title: str, n: int = N_TASKS) -> tuple[int, list[str]]:
    """A project (labels ``cat``) with ``n`` tasks named ``img00.png``...; returns its id and the names."""
    t = LabelStudioTarget.create(server.url, server.token, title, ["cat"])
    names = [f"img{i:02d}.png" for i in range(n)]
    r = httpx.post(f"{server.url}/api/projects/{t.project_id}/import", headers=_auth(server),
                   json=[{"data": {"image": f"/data/upload/{t.project_id}/0badf00d-{x}", "coco_file_name": x}}
                         for x in names])
    r.raise_for_status()
    t.close()
    return int(t.project_id or 0), names


def _auth(server: Any) -> dict[str, str]:
    return {"Authorization": f"Token {server.token}"}


def _state(server: Any, project: int) -> dict[str, list[tuple[str, int, int]]]:
    """name -> sorted [(model_version, regions, prediction id)] of the task, read straight from the server."""
    out: dict[str, list[tuple[str, int, int]]] = {}
    r = httpx.get(f"{server.url}/api/tasks", headers=_auth(server),
                  params={"project": project, "fields": "all", "page_size": 500})
    for t in r.json()["tasks"]:
        out[t["data"]["coco_file_name"]] = sorted((p["model_version"], len(p["result"]), p["id"])
                                                  for p in t["predictions"])
    return out


def _shape(state: dict[str, list[tuple[str, int, int]]]) -> dict[str, list[tuple[str, int]]]:
    return {k: [(mv, n) for mv, n, _ in v] for k, v in state.items()}


def _send(url: str, token: str, project: int, coco: dict[str, Any], *, dry_run: bool = False,
          **options: Any) -> Any:
    with LabelStudioTarget(url, token, project, model_version="m", retry_delays=FAST, **options) as t:
        return t.upload_shard(coco, index=0, path=Path("s.json"), dry_run=dry_run, deadline=None,
                              cancel=threading.Event())


@pytest.mark.labelstudio
def test_replace_imports_first_deletes_one_at_a_time_and_retries_500s(label_studio: Any) -> None:
    """Fails on the code before issue 18: it deleted the old predictions before the import, four DELETEs at a
    time, and gave up on the first HTTP 500 ("database is locked")."""
    pid, names = _project(label_studio, "replace order")
    first = _send(label_studio.url, label_studio.token, pid, _coco(names))
    assert (first.status, first.annotations_applied) == ("completed", 36)
    before = _state(label_studio, pid)
    old_ids = {i for v in before.values() for _, _, i in v}
    lock_page = django_error_page()

    def fault(method: str, path: str, n: int) -> tuple[int, str, bytes] | None:
        if (method == "DELETE" and n == 1) or (method == "GET" and path.startswith("/api/tasks?") and n == 2):
            return 500, "text/html; charset=utf-8", lock_page    # SQLite's lock, as Django pages it
        return None

    with FaultProxy(label_studio.url, fault=fault) as px:
        res = _send(px.url, label_studio.token, pid, _coco(names), swap=False)
    assert (res.status, res.errors) == ("completed", [])
    assert (res.annotations_applied, res.annotations_replaced, res.images_replaced) == (36, 12, 12)
    assert _shape(_state(label_studio, pid)) == {n: [("m", 3)] for n in names}
    assert not {i for v in _state(label_studio, pid).values() for _, _, i in v} & old_ids
    # the order: list, import, read back, then the deletes, one write at a time, nothing per task
    imports = px.requests("POST", f"/api/projects/{pid}/import/predictions")
    deletes = px.requests("DELETE", "/api/predictions/")
    assert len(imports) == 1 and imports[0].status == 201
    assert min(d.start for d in deletes) > imports[0].end
    assert px.max_writes_in_flight == 1
    assert sorted(int(d.path.rsplit("/", 1)[1]) for d in deletes if not d.injected) == sorted(old_ids)
    assert [(d.path, d.status) for d in deletes[:2]] == [(deletes[0].path, 500), (deletes[0].path, 204)]
    assert [s.status for s in px.requests("GET", "/api/tasks")] == [200, 500, 200, 200]
    assert px.requests("GET", "/api/predictions") == []


@pytest.mark.labelstudio
def test_a_failure_between_import_and_delete_loses_nothing_and_a_rerun_converges(label_studio: Any) -> None:
    pid, names = _project(label_studio, "fail before delete")
    _send(label_studio.url, label_studio.token, pid, _coco(names))
    with FaultProxy(label_studio.url,
                    fault=lambda m, p, n: (503, "text/plain", b"Service Unavailable") if m == "DELETE" else None) as px:
        res = _send(px.url, label_studio.token, pid, _coco(names), swap=False)
    assert res.status == "failed" and res.annotations_applied == 36
    assert (res.annotations_replaced, res.images_replaced) == (0, 0)
    assert res.errors == ["Label Studio answered HTTP 503 while deleting a replaced prediction: Service Unavailable; "
                          "12 replaced prediction(s) on 12 task(s) are still there beside the new ones: run the "
                          "same upload again to remove them"]
    assert len(px.requests("DELETE")) == 1 + len(FAST)     # one prediction tried, with its retries, then stop
    assert _shape(_state(label_studio, pid)) == {n: [("m", 3), ("m", 3)] for n in names}   # old + new
    again = _send(label_studio.url, label_studio.token, pid, _coco(names, boxes=4))
    assert (again.status, again.annotations_applied) == ("completed", 48)
    assert (again.annotations_replaced, again.images_replaced) == (24, 12)  # both earlier sets of every task
    assert _shape(_state(label_studio, pid)) == {n: [("m", 4)] for n in names}


@pytest.mark.labelstudio
def test_a_failed_import_leaves_the_old_predictions(label_studio: Any) -> None:
    pid, names = _project(label_studio, "failed import", n=3)
    _send(label_studio.url, label_studio.token, pid, _coco(names))
    before = _state(label_studio, pid)
    with FaultProxy(label_studio.url, fault=lambda m, p, n: (500, "text/html", django_error_page(
            "/api/projects/1/import/predictions")) if m == "POST" else None) as px, pytest.raises(UploadError) as e:
        _send(px.url, label_studio.token, pid, _coco(names, boxes=2))
    assert str(e.value) == ("Label Studio answered HTTP 500 while importing predictions: "
                            "OperationalError: database is locked")
    assert len(px.requests("POST")) == 1                   # an import is never retried
    assert _state(label_studio, pid) == before


@pytest.mark.labelstudio
def test_tasks_whose_annotations_were_all_skipped_keep_their_predictions(label_studio: Any, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from prelabel.cli import main

    pid, names = _project(label_studio, "skipped keep", n=3)            # img00, img01, img02
    _send(label_studio.url, label_studio.token, pid, _coco(names))
    before = _state(label_studio, pid)
    # img00 gets a cat box; img01's boxes are all zebra (not in the config); img02 is not in the file
    doc = _coco(names[:2], boxes=2, skip={"img01.png"})
    dry = _send(label_studio.url, label_studio.token, pid, doc, dry_run=True)
    assert (dry.annotations_applied, dry.annotations_replaced, dry.images_replaced) == (2, 1, 1)
    assert _state(label_studio, pid) == before                          # the dry run deleted nothing
    path = tmp_path / "skip.json"
    path.write_text(json.dumps(doc))
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}
    r = CliRunner().invoke(main, ["upload", str(path), "--to", f"labelstudio:{pid}", "--model-version", "m",
                                  "--dry-run"], env=env, catch_exceptions=False)
    assert r.stdout.splitlines()[1:3] == ["  annotations would be applied: 2",
                                          "  would replace 1 existing pre-annotation on 1 image"]
    res = _send(label_studio.url, label_studio.token, pid, doc)
    assert (res.status, res.annotations_applied, res.annotations_replaced, res.images_replaced) == (
        "completed", 2, 1, 1)
    assert res.categories_ignored == ["zebra"]
    after = _state(label_studio, pid)
    assert _shape(after) == {"img00.png": [("m", 2)], "img01.png": [("m", 3)], "img02.png": [("m", 3)]}
    assert after["img01.png"] == before["img01.png"] and after["img02.png"] == before["img02.png"]


@pytest.mark.labelstudio
def test_an_html_500_shows_the_exception_line(label_studio: Any) -> None:
    pid, _ = _project(label_studio, "html 500", n=1)
    page = django_error_page(f"/api/projects/{pid}")
    assert b'<pre class="exception_value">database is locked</pre>' in page    # what Django really sends
    with FaultProxy(label_studio.url, fault=lambda m, p, n: (500, "text/html; charset=utf-8", page)) as px:
        t = LabelStudioTarget(px.url, label_studio.token, pid, retry_delays=FAST)
        with pytest.raises(UploadError) as e:
            t.categories()
        t.close()
    assert str(e.value) == "Label Studio answered HTTP 500 while reading the project: OperationalError: database is locked"
    assert len(px.requests("GET")) == 1 + len(FAST)
    text = django_error_page(f"/api/projects/{pid}", "application/json")   # Django's text form of the page
    with FaultProxy(label_studio.url, fault=lambda m, p, n: (500, "text/plain; charset=utf-8", text)) as px:
        t = LabelStudioTarget(px.url, label_studio.token, pid, retry_delays=())
        with pytest.raises(UploadError) as e:
            t.categories()
        t.close()
    assert str(e.value) == "Label Studio answered HTTP 500 while reading the project: OperationalError: database is locked"
