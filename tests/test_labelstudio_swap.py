"""Replace by a bulk model-version swap against the real Label Studio (``LabelStudioTarget._swap``): the new
predictions go in under a staging model version and are read back, this model version is deleted in bulk, the new
predictions go in again under it and are read back, and the staging version is deleted in bulk. Before every write
the proxy reads the server's state: no task ever holds fewer predictions than before the upload. A failure at any
step leaves no task emptier, and a re-run converges to one prediction of the model version per task."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from ls_proxy import FaultProxy, django_error_page
from test_labelstudio_replace import _auth, _coco, _project, _send, _shape, _state

VERSIONS = "/api/projects/{pid}/model-versions/"


def _watch(server: Any, pid: int, seen: list[dict[str, int]]) -> Any:
    """A proxy fault hook that records, before every write, the number of predictions of each task."""
    def hook(method: str, path: str, n: int) -> None:
        if method != "GET":
            seen.append({k: len(v) for k, v in _state(server, pid).items()})
        return None
    return hook


def _regions(server: Any, pid: int) -> dict[str, list[tuple[float, float, float, float, list[str]]]]:
    r = httpx.get(f"{server.url}/api/tasks", headers=_auth(server),
                  params={"project": pid, "fields": "all", "page_size": 500})
    return {t["data"]["coco_file_name"]: [(it["value"]["x"], it["value"]["y"], it["value"]["width"],
                                           it["value"]["height"], it["value"]["rectanglelabels"])
                                          for p in t["predictions"] for it in p["result"]] for t in r.json()["tasks"]}


@pytest.mark.labelstudio
def test_swap_replaces_in_bulk_and_reads_back_every_region(label_studio: Any) -> None:
    pid, names = _project(label_studio, "swap order")
    _send(label_studio.url, label_studio.token, pid, _coco(names))
    before = _state(label_studio, pid)
    old_ids = {i for v in before.values() for _, _, i in v}
    seen: list[dict[str, int]] = []
    watch = _watch(label_studio, pid, seen)
    lock = django_error_page()

    def fault(method: str, path: str, n: int) -> tuple[int, str, bytes] | None:
        watch(method, path, n)
        if method == "DELETE" and n == 1:          # SQLite's lock on the first bulk deletion: retried
            return 500, "text/html; charset=utf-8", lock
        return None

    with FaultProxy(label_studio.url, fault=fault) as px:
        res = _send(px.url, label_studio.token, pid, _coco(names, boxes=4))
    assert (res.status, res.errors) == ("completed", [])
    assert (res.annotations_applied, res.annotations_replaced, res.images_replaced) == (48, 12, 12)
    after = _state(label_studio, pid)
    assert _shape(after) == {n: [("m", 4)] for n in names}
    assert not {i for v in after.values() for _, _, i in v} & old_ids
    # the regions read back from the server: boxes [1 + 10k, 2, 8, 6] on 100 x 80, in percent
    assert _regions(label_studio, pid) == {n: [(1.0 + 10 * k, 2.5, 8.0, 7.5, ["cat"]) for k in range(4)]
                                           for n in names}
    writes = [(s.method, s.path.split("?")[0], s.status) for s in px.seen if s.method != "GET"]
    url = VERSIONS.format(pid=pid)
    assert writes == [("POST", f"/api/projects/{pid}/import/predictions", 201), ("DELETE", url, 500),
                      ("DELETE", url, 200), ("POST", f"/api/projects/{pid}/import/predictions", 201),
                      ("DELETE", url, 200)]
    assert px.requests("DELETE", "/api/predictions/") == [] and px.max_writes_in_flight == 1
    assert all(min(counts.values()) >= 1 for counts in seen)   # before every write: no task emptier
    versions = httpx.get(f"{label_studio.url}{url}", headers=_auth(label_studio)).json()
    assert versions == {"m": 12}                                # the staging version is gone


@pytest.mark.labelstudio
@pytest.mark.parametrize("step", ["version delete", "second import", "staging delete"])
def test_a_failure_at_any_step_of_the_swap_loses_nothing_and_a_rerun_converges(label_studio: Any, step: str) -> None:
    pid, names = _project(label_studio, f"swap fails {step}")
    _send(label_studio.url, label_studio.token, pid, _coco(names))
    seen: list[dict[str, int]] = []
    watch = _watch(label_studio, pid, seen)
    first_failing = {"version delete": 1, "staging delete": 2}.get(step, 0)

    def fault(method: str, path: str, n: int) -> tuple[int, str, bytes] | None:
        watch(method, path, n)
        if method == "DELETE" and first_failing and n >= first_failing:
            return 503, "text/plain", b"Service Unavailable"     # and every retry
        if step == "second import" and method == "POST" and n == 2:
            return 500, "text/html", django_error_page()        # an import is never retried
        return None

    with FaultProxy(label_studio.url, fault=fault) as px:
        res = _send(px.url, label_studio.token, pid, _coco(names, boxes=2))
    assert res.status == "failed" and res.errors[-1].endswith("run the same upload again to finish the replace")
    assert px.requests("DELETE", "/api/predictions/") == []
    assert seen and all(min(counts.values()) >= 1 for counts in seen)
    mid = _state(label_studio, pid)
    assert len(mid) == len(names)
    left = {"version delete": [(3, "m"), (2, "m~staging-")],       # old beside staging
            "second import": [(2, "m~staging-")],                  # staging alone: one, as before
            "staging delete": [(2, "m"), (2, "m~staging-")]}[step]  # new beside staging
    assert all(sorted((n, mv[:len(want)]) for (mv, n, _), (_, want) in zip(sorted(v, key=lambda p: p[0]), left,
                                                                            strict=True)) == sorted(left)
               for v in mid.values())
    again = _send(label_studio.url, label_studio.token, pid, _coco(names, boxes=5))
    assert (again.status, again.errors, again.annotations_applied) == ("completed", [], 60)
    assert _shape(_state(label_studio, pid)) == {n: [("m", 5)] for n in names}
    versions = httpx.get(f"{label_studio.url}{VERSIONS.format(pid=pid)}", headers=_auth(label_studio)).json()
    assert versions == {"m": 12}
    # and the next replace takes the swap again
    with FaultProxy(label_studio.url) as px:
        third = _send(px.url, label_studio.token, pid, _coco(names, boxes=1))
    assert (third.status, third.annotations_replaced) == ("completed", 12)
    assert px.requests("DELETE", "/api/predictions/") == [] and len(px.requests("DELETE")) == 2
    assert _shape(_state(label_studio, pid)) == {n: [("m", 1)] for n in names}


@pytest.mark.labelstudio
def test_no_swap_where_it_would_touch_other_tasks_or_the_project_setting(label_studio: Any) -> None:
    """The swap deletes the model version project-wide: with a prediction of it on a task outside the upload, or
    with the project's selected model version being it, the replace goes one prediction at a time."""
    pid, names = _project(label_studio, "no swap")
    _send(label_studio.url, label_studio.token, pid, _coco(names))
    with FaultProxy(label_studio.url) as px:
        res = _send(px.url, label_studio.token, pid, _coco(names[:4], boxes=2))
    assert res.status == "completed" and len(px.requests("DELETE", "/api/predictions/")) == 4
    assert px.requests("DELETE", VERSIONS.format(pid=pid)) == []
    assert _shape(_state(label_studio, pid)) == {n: [("m", 2 if n in names[:4] else 3)] for n in names}
    httpx.patch(f"{label_studio.url}/api/projects/{pid}", headers=_auth(label_studio),
                json={"model_version": "m"}).raise_for_status()
    with FaultProxy(label_studio.url) as px:
        res = _send(px.url, label_studio.token, pid, _coco(names, boxes=1))
    assert res.status == "completed" and len(px.requests("DELETE", "/api/predictions/")) == 12
    assert _shape(_state(label_studio, pid)) == {n: [("m", 1)] for n in names}
    project = httpx.get(f"{label_studio.url}/api/projects/{pid}", headers=_auth(label_studio)).json()
    assert project["model_version"] == "m"

