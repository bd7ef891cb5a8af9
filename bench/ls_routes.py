"""What each Label Studio write route costs a prediction (the candidates for a replace), on a real Label Studio 1.23.2.

    .venv/bin/python bench/ls_routes.py            # 200 tasks x 1 prediction of 15 boxes

One project of N tasks, each with one prediction of 15 boxes (imported with the tasks); then, timed per
prediction: ``PATCH /api/predictions/ID`` with a new result, score and model version (half the tasks) and
``DELETE /api/predictions/ID`` (the other half); the Data Manager action ``delete_tasks_predictions`` on N/2 tasks;
``POST /api/projects/ID/import/predictions`` of N/2 predictions; ``DELETE /api/projects/ID/model-versions/`` of them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG = ('<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
          '<Label value="a"/><Label value="b"/></RectangleLabels></View>')


def _result(k: int) -> list[dict[str, Any]]:
    return [{"id": f"r{k}_{j}", "from_name": "label", "to_name": "image", "type": "rectanglelabels",
             "original_width": 100, "original_height": 100,
             "value": {"x": 1 + j, "y": 2, "width": 3, "height": 4, "rotation": 0, "rectanglelabels": ["a"]}}
            for j in range(15)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=200, help="tasks (even)")
    n = ap.parse_args().n
    half = n // 2
    sys.path.insert(0, str(HERE.parent / "tests"))
    import httpx
    import ls_server

    server = ls_server.start()
    try:
        c = httpx.Client(base_url=server.url, headers={"Authorization": f"Token {server.token}"}, timeout=600)
        pid = c.post("/api/projects", json={"title": "routes", "label_config": CONFIG}).json()["id"]
        c.post(f"/api/projects/{pid}/import", json=[
            {"data": {"image": f"/data/upload/x{i}.png"},
             "predictions": [{"model_version": "v", "score": 0.5, "result": _result(0)}]} for i in range(n)],
        ).raise_for_status()
        listed = c.get("/api/tasks", params={"project": pid, "fields": "all", "page_size": n}).json()["tasks"]
        preds = [(int(t["id"]), int(t["predictions"][0]["id"])) for t in listed]
        costs: dict[str, float] = {}
        t0 = time.perf_counter()
        for tid, p in preds[:half]:
            c.patch(f"/api/predictions/{p}", json={"task": tid, "result": _result(1), "score": 0.6,
                                                   "model_version": "v"}).raise_for_status()
        costs["PATCH /api/predictions/ID"] = (time.perf_counter() - t0) / half
        t0 = time.perf_counter()
        for _, p in preds[half:]:
            c.delete(f"/api/predictions/{p}").raise_for_status()
        costs["DELETE /api/predictions/ID"] = (time.perf_counter() - t0) / half
        tasks = [t for t, _ in preds]
        t0 = time.perf_counter()
        c.post("/api/dm/actions", params={"id": "delete_tasks_predictions", "project": pid},
               json={"selectedItems": {"all": False, "included": tasks[:half]}}).raise_for_status()
        costs["Data Manager delete_tasks_predictions (a prediction)"] = (time.perf_counter() - t0) / half
        t0 = time.perf_counter()
        c.post(f"/api/projects/{pid}/import/predictions", json=[
            {"task": t, "model_version": "w", "result": _result(2)} for t in tasks[half:]]).raise_for_status()
        costs["POST /api/projects/ID/import/predictions (a prediction)"] = (time.perf_counter() - t0) / half
        t0 = time.perf_counter()
        c.request("DELETE", f"/api/projects/{pid}/model-versions/", json={"model_version": "w"}).raise_for_status()
        costs["DELETE /api/projects/ID/model-versions/ (a prediction)"] = (time.perf_counter() - t0) / half
    finally:
        server.stop()
    for route, s in costs.items():
        print(f"{route:<60} {s * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
