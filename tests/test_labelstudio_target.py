"""The Label Studio target: COCO -> Label Studio conversion (unit), HTTP behaviour (httpx.MockTransport), and a
real Label Studio on 127.0.0.1 (``@pytest.mark.labelstudio``, the session fixture ``label_studio``)."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from prelabel import geometry
from prelabel.errors import AuthError, NotFoundError, UploadError, UsageError
from prelabel.upload.labelstudio import (
    LabelStudioTarget,
    coco_to_results,
    label_config_for,
    parse_label_config,
    rotated_box_from_polygon,
    task_image_name,
)

COS30, SIN30 = math.cos(math.radians(30)), 0.5

# A rotated box: unrotated top-left (100, 20), 40 x 20 px, turned 30 degrees clockwise about that corner.
# Corners by hand: TL (100, 20); TR = TL + 40*(cos30, sin30) = (134.6410162, 40);
# BL = TL + 20*(-sin30, cos30) = (90, 37.3205081); BR = TR + (BL - TL) = (124.6410162, 57.3205081).
TL, TR = (100.0, 20.0), (100.0 + 40 * COS30, 40.0)
BL = (90.0, 20.0 + 20 * COS30)
BR = (TR[0] - 10.0, TR[1] + 20 * COS30)
ROTATED_POLY = [*BR, *BL, *TL, *TR]   # starts at BR on purpose: the corner order must not matter

CATEGORIES = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"},
              {"id": 3, "name": "person", "keypoints": ["nose", "eye", "tail"], "skeleton": [[1, 3]]},
              {"id": 4, "name": "zebra"}]


def _mask() -> np.ndarray:
    m = np.zeros((48, 64), dtype=np.uint8)
    m[10:20, 20:36] = 1          # 10 rows x 16 columns = 160 px
    return m


def _coco() -> dict[str, Any]:
    """Three images with files, two without; boxes, a rotated box, a polygon, a mask, keypoints."""
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [20.0, 10.0, 50.0, 40.0], "score": 0.9},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [90.0, 20.0, 44.6410162, 37.3205081],
         "segmentation": [ROTATED_POLY], "attributes": {"rotation": 30.0}, "score": 0.8},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [8.0, 6.0, 32.0, 24.0],
         "segmentation": [[8.0, 6.0, 40.0, 6.0, 24.0, 30.0]], "score": 0.7},
        {"id": 4, "image_id": 2, "category_id": 2, "bbox": [20.0, 10.0, 16.0, 10.0],
         "segmentation": geometry.rle_encode(_mask()), "score": 0.6, "iscrowd": 1},
        {"id": 5, "image_id": 3, "category_id": 3, "bbox": [10.0, 20.0, 40.0, 80.0], "score": 0.5,
         "keypoints": [30.0, 30.0, 2, 0.0, 0.0, 0, 40.0, 90.0, 1], "num_keypoints": 2},
        {"id": 6, "image_id": 1, "category_id": 4, "bbox": [0.0, 0.0, 10.0, 10.0], "score": 0.4},
        {"id": 7, "image_id": 4, "category_id": 1, "bbox": [1.0, 1.0, 2.0, 2.0]},
        {"id": 8, "image_id": 2, "category_id": 1, "bbox": [60.0, 40.0, 10.0, 5.0]},
        {"id": 9, "image_id": 5, "category_id": 1, "bbox": [1.0, 1.0, 2.0, 2.0]},
    ]
    for a in anns:
        a.setdefault("segmentation", [])
        a.setdefault("iscrowd", 0)
        a["area"] = a["bbox"][2] * a["bbox"][3]
    return {"info": {"description": "test"}, "licenses": [],
            "images": [{"id": 1, "file_name": "cat one.png", "width": 200, "height": 100},
                       {"id": 2, "file_name": "dog.png", "width": 64, "height": 48},
                       {"id": 3, "file_name": "person.png", "width": 80, "height": 120},
                       {"id": 4, "file_name": "Dog.png", "width": 64, "height": 48},
                       {"id": 5, "file_name": "nowhere/elephant.png", "width": 10, "height": 10}],
            "categories": CATEGORIES, "annotations": anns}


FULL_CONFIG = parse_label_config(label_config_for(CATEGORIES[:3], kinds=["rectangle", "polygon", "brush"]))


# ------------------------------------------------------------------------------------------------- unit
def test_label_config_parsed_and_generated() -> None:
    cfg = FULL_CONFIG
    assert cfg.image_name == "image" and cfg.image_key == "image"
    assert cfg.controls == {"rectanglelabels": [("label", ["cat", "dog", "person"])],
                            "polygonlabels": [("polygon", ["cat", "dog", "person"])],
                            "brushlabels": [("brush", ["cat", "dog", "person"])],
                            "keypointlabels": [("kp", ["nose", "eye", "tail"])]}
    assert cfg.categories() == ["cat", "dog", "person"]
    odd = ['a "b" & <c>', "it's"]                 # quoted and escaped in the XML, read back unchanged
    assert parse_label_config(label_config_for(odd, kinds=["rectangle"])).categories() == odd
    with pytest.raises(UsageError, match="unknown label config kind"):
        label_config_for(["a"], kinds=["ellipse"])


def test_label_config_refuses_entities_and_missing_image() -> None:
    bomb = '<!DOCTYPE v [<!ENTITY a "aaaa">]><View><Image name="i" value="$i"/><Text value="&a;"/></View>'
    with pytest.raises(UploadError, match="not valid XML"):
        parse_label_config(bomb)
    with pytest.raises(UploadError, match="no <Image> tag"):
        parse_label_config('<View><Text name="t" value="$t"/></View>')


def test_task_image_names() -> None:
    assert task_image_name("/data/upload/3/1a2b3c4d-a_b.png") == "upload/3/1a2b3c4d-a_b.png"
    assert task_image_name("/data/local-files/?d=sub%2Fdir%2Fc%20d.png") == "sub/dir/c d.png"
    assert task_image_name("http://h:8080/data/upload/3/1a2b3c4d-%C3%A9.png") == "upload/3/1a2b3c4d-é.png"
    assert task_image_name("https://cdn.example.com/imgs/x.jpg?sig=1") == "imgs/x.jpg"
    assert task_image_name("gs://bucket/a/b.jpg") == "a/b.jpg"


@pytest.mark.parametrize(("tl", "w", "h", "deg", "expected"), [
    # the module's rotated box, hand-computed above: x = 100/200, y = 20/100, w = 40/200, h = 20/100 (percent)
    ((100.0, 20.0), 40.0, 20.0, 30.0, (50.0, 20.0, 20.0, 20.0)),
    # 120 degrees about TL (60, 50), 30 x 10: TR = (60 - 15, 50 + 25.98) so TL is neither min x nor min y
    ((60.0, 50.0), 30.0, 10.0, 120.0, (30.0, 50.0, 15.0, 10.0)),
    ((60.0, 50.0), 30.0, 10.0, 0.0, (30.0, 50.0, 15.0, 10.0)),
])
def test_rotated_box_round_trip(tl: tuple[float, float], w: float, h: float, deg: float,
                                expected: tuple[float, float, float, float]) -> None:
    poly = geometry.rotated_box_topleft(tl[0], tl[1], w, h, deg)
    for shift in range(4):                       # whatever corner the polygon starts at
        p = np.roll(poly, 2 * shift)
        x, y, bw, bh = rotated_box_from_polygon(p, deg)
        assert (x / 200 * 100, y / 100 * 100, bw / 200 * 100, bh / 100 * 100) == pytest.approx(expected, abs=1e-9)
    # a clipped (non-rectangular) quadrilateral is not a rotated box
    assert rotated_box_from_polygon([0, 0, 10, 0, 12, 5, 0, 5], 0.0) is None


def test_conversion_values_by_hand() -> None:
    conv = coco_to_results(_coco(), FULL_CONFIG, nonce="t", image_ids=[1, 2, 3])
    assert conv.categories_ignored == ["zebra"]
    assert conv.ignored == 1 and conv.skipped == 1 and conv.applied == 5
    assert conv.messages == ["skipped annotation 8 (dog.png): box [60, 40, 10, 5] px reaches outside the "
                             "64x48 image"]
    r1 = {r["id"]: r for r in conv.results[1]}
    # box [20, 10, 50, 40] in 200x100: x 10 %, y 10 %, w 25 %, h 40 %
    assert r1["t1"]["value"] == {"x": 10.0, "y": 10.0, "width": 25.0, "height": 40.0, "rotation": 0.0,
                                 "rectanglelabels": ["cat"]}
    assert r1["t1"]["score"] == 0.9 and r1["t1"]["from_name"] == "label" and r1["t1"]["to_name"] == "image"
    v = r1["t2"]["value"]                         # the rotated box: TL (100, 20) -> 50 %, 20 %; 40x20 -> 20 %, 20 %
    assert (v["x"], v["y"], v["width"], v["height"], v["rotation"]) == pytest.approx((50, 20, 20, 20, 30), abs=1e-6)
    r2 = {r["id"]: r for r in conv.results[2]}
    # triangle (8, 6) (40, 6) (24, 30) in 64x48 -> (12.5, 12.5) (62.5, 12.5) (37.5, 62.5) %
    assert r2["t3"]["value"] == {"points": [[12.5, 12.5], [62.5, 12.5], [37.5, 62.5]], "closed": True,
                                 "polygonlabels": ["cat"]}
    assert r2["t4"]["type"] == "brushlabels" and r2["t4"]["value"]["format"] == "rle"
    assert np.array_equal(geometry.ls_rle_decode(r2["t4"]["value"]["rle"], 48, 64) > 0, _mask() > 0)
    r3 = {r["id"]: r for r in conv.results[3]}
    # person box [10, 20, 40, 80] in 80x120; nose (30, 30) -> 37.5 %, 25 %; eye v=0 not sent; tail (40, 90) v=1
    assert sorted(r3) == ["t5", "t5_k0", "t5_k2"]
    assert r3["t5_k0"]["value"]["x"] == 37.5 and r3["t5_k0"]["value"]["y"] == 25.0
    assert r3["t5_k0"]["value"]["keypointlabels"] == ["nose"] and r3["t5_k0"]["parentID"] == "t5"
    assert (r3["t5_k2"]["value"]["x"], r3["t5_k2"]["value"]["y"]) == (50.0, 75.0)
    assert conv.scores == {1: [0.9, 0.8], 2: [0.7, 0.6], 3: [0.5]}


def test_conversion_validates_and_falls_back() -> None:
    cfg = parse_label_config(label_config_for(["cat"], kinds=["rectangle"]))
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 0, 3]},
                {"id": 2, "image_id": 1, "category_id": 1, "bbox": [-1, 2, 3, 3]},
                {"id": 3, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4],
                 "segmentation": [[1, 1, 5, 1, 5, 5]]},
                {"id": 4, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            ]}
    conv = coco_to_results(coco, cfg, nonce="")
    assert conv.messages == [
        "skipped annotation 1 (a.png): width and height must be > 0 (got 0 x 3 px)",
        "skipped annotation 2 (a.png): top-left corner (-1, 2) px is outside the 10x10 image",
        "annotation 3 (a.png): no PolygonLabels control has 'cat': sent as its enclosing rectangle",
    ]
    assert conv.applied == 2 and conv.skipped == 2
    assert [r["value"]["width"] for r in conv.results[1]] == [40.0, 100.0]
    # polygon outside the image, mask of the wrong size: skipped with their reasons
    cfg2 = parse_label_config(label_config_for(["cat"], kinds=["polygon", "brush"]))
    coco["annotations"] = [
        {"id": 5, "image_id": 1, "category_id": 1, "bbox": [1, 1, 4, 4], "segmentation": [[1, 1, 11, 1, 5, 5]]},
        {"id": 6, "image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1],
         "segmentation": geometry.rle_encode(np.ones((4, 4), dtype=np.uint8))},
    ]
    conv = coco_to_results(coco, cfg2)
    assert conv.messages == ["skipped annotation 5 (a.png): polygon part 0 has a point outside the 10x10 image",
                             "skipped annotation 6 (a.png): RLE size [4, 4] is not the image's [10, 10]"]
    assert conv.applied == 0


# --------------------------------------------------------------------------------------------- HTTP mocks
PAT = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoicmVmcmVzaCJ9.c2lnbmF0dXJl"
CONFIG_XML = label_config_for(["cat"], kinds=["rectangle"])


def _mock(handler: Any, token: str = PAT, project: int | None = 5) -> LabelStudioTarget:
    return LabelStudioTarget("http://ls.test", token, project, transport=httpx.MockTransport(handler))


def test_pat_is_exchanged_and_renewed() -> None:
    seen: list[tuple[str, str]] = []
    access = iter(["ACC1", "ACC2"])
    state = {"valid": ""}

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.url.path, req.headers.get("authorization", "")))
        if req.url.path == "/api/token/refresh":
            assert json.loads(req.content) == {"refresh": PAT}
            state["valid"] = next(access)
            return httpx.Response(200, json={"access": state["valid"]})
        if req.headers.get("authorization") != f"Bearer {state['valid']}" or len(seen) == 3:
            return httpx.Response(401, json={"detail": "Token is invalid"})    # 3rd call: the access expired
        return httpx.Response(200, json={"id": 5, "label_config": CONFIG_XML})

    t = _mock(handler)
    assert t.categories() == ["cat"]
    t._config = None
    assert t.categories() == ["cat"]
    assert seen == [("/api/token/refresh", ""), ("/api/projects/5", "Bearer ACC1"), ("/api/projects/5", "Bearer ACC1"),
                    ("/api/token/refresh", ""), ("/api/projects/5", "Bearer ACC2")]


def test_legacy_token_bad_token_unknown_project_and_no_secret_in_text() -> None:
    token = "0123456789abcdef0123456789abcdef01234567"

    def handler(req: httpx.Request) -> httpx.Response:
        if req.headers["authorization"] != f"Token {token}":
            return httpx.Response(401, json={"detail": "Invalid token."})
        if req.url.path == "/api/projects/5":
            return httpx.Response(404, json={"detail": "No Project matches the given query."})
        return httpx.Response(400, json={"detail": f"you sent {token}"})

    t = _mock(handler, token=token)
    with pytest.raises(NotFoundError) as e:
        t.categories()
    assert str(e.value) == "Label Studio project 5 not found at http://ls.test"
    with pytest.raises(UploadError) as e2:
        t._request("GET", "/api/other", what="testing")
    assert str(e2.value) == "Label Studio answered HTTP 400 while testing: you sent ***"
    assert token not in repr(t) and repr(t) == "LabelStudioTarget('labelstudio:5', url='http://ls.test')"
    bad = _mock(handler, token="f" * 40)
    with pytest.raises(AuthError) as e3:
        bad.assets()
    assert str(e3.value) == "Label Studio at http://ls.test refused the API key (401) while reading the project"
    assert "f" * 40 not in str(e3.value) + e3.value.hint


def test_only_get_and_delete_are_retried_and_json_detail_is_plain_text() -> None:
    calls: list[str] = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req.method)
        if req.method == "GET" and calls.count("GET") < 3:
            raise httpx.ConnectError("connection refused")
        if req.method == "GET":
            return httpx.Response(200, json={"id": 5, "label_config": CONFIG_XML})
        if req.method == "DELETE" and calls.count("DELETE") == 1:
            return httpx.Response(502, text="Bad Gateway")
        if req.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(500, json={"detail": "Sqlite <a href='https://docs'>doesn't operate well</a> on "
                                                   "multiple transactions."})

    t = LabelStudioTarget("http://ls.test", "t" * 40, 5, transport=httpx.MockTransport(handler), retry_delays=(0, 0))
    assert t.categories() == ["cat"] and calls == ["GET", "GET", "GET"]
    assert t._request("DELETE", "/api/predictions/3", what="deleting", ok=(204,)).status_code == 204
    with pytest.raises(UploadError) as e:
        t._request("POST", "/api/projects/5/import/predictions", what="importing predictions", json=[])
    assert str(e.value) == ("Label Studio answered HTTP 500 while importing predictions: Sqlite doesn't operate "
                            "well on multiple transactions.")
    assert calls[3:] == ["DELETE", "DELETE", "POST"]            # the import was not sent twice
    t._config = None
    t.retry_delays = (0,)
    calls.clear()
    with pytest.raises(UploadError) as e2:                        # retries exhausted
        t.categories()
    assert str(e2.value) == ("cannot reach Label Studio at http://ls.test (reading the project): ConnectError")
    assert calls == ["GET", "GET"]


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:1/")
    with pytest.raises(AuthError, match="LABEL_STUDIO_API_KEY is not set"):
        LabelStudioTarget.from_env("3")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", "k" * 40)
    t = LabelStudioTarget.from_env("3", model_version="m1")
    assert (t.describe(), t.url, t.model_version) == ("labelstudio:3", "http://127.0.0.1:1", "m1")
    with pytest.raises(UsageError, match="a Label Studio project id is a number"):
        LabelStudioTarget.from_env("three")


def _fake_ls(*, drop_region: bool = False) -> tuple[LabelStudioTarget, list[dict[str, Any]]]:
    """A target on a fake Label Studio with one task; ``drop_region`` loses one region of each prediction."""
    stored: list[dict[str, Any]] = []

    def handler(req: httpx.Request) -> httpx.Response:
        path = req.url.path
        if path == "/api/projects/5":
            return httpx.Response(200, json={"id": 5, "label_config": CONFIG_XML})
        if path == "/api/tasks":       # fields=all: the task with its predictions (the read-back listing)
            task: dict[str, Any] = {"id": 11, "data": {"image": "/data/upload/5/abcdef12-a.png"}}
            if req.url.params.get("fields") == "all":
                task["predictions"] = [p for p in stored if p["task"] == 11]
            return httpx.Response(200, json={"total": 1, "tasks": [task]})
        if path == "/api/projects/5/import/predictions":
            batch = json.loads(req.content)
            for i, p in enumerate(batch):
                stored.append({"id": 100 + len(stored) + i, **p,
                               "result": p["result"][1:] if drop_region else p["result"]})
            return httpx.Response(201, json={"created": len(batch)})
        if path == "/api/predictions":
            return httpx.Response(200, json=[p for p in stored if str(p["task"]) == req.url.params["task"]])
        return httpx.Response(500, json={"detail": f"unexpected {path}"})

    return _mock(handler, token="t" * 40), stored


COCO_A = {"images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
          "categories": [{"id": 1, "name": "cat"}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "score": 0.5},
                          {"id": 2, "image_id": 1, "category_id": 1, "bbox": [3, 3, 2, 2], "score": 1.0}]}


def test_upload_flow_on_a_fake_server() -> None:
    t, stored = _fake_ls()
    res = t.upload_shard(COCO_A, index=0, path=Path("s.json"), dry_run=False, deadline=None,
                         cancel=threading.Event())
    assert (res.status, res.annotations_applied, res.files_matched, res.errors) == ("completed", 2, 1, [])
    assert res.activity_id == "ls-5-100-1"
    assert len(stored) == 1 and stored[0]["task"] == 11 and stored[0]["model_version"] == "prelabel"
    assert stored[0]["score"] == 0.75                # mean of the region scores 0.5 and 1.0


def test_read_back_mismatch_fails_the_shard() -> None:
    t, _ = _fake_ls(drop_region=True)
    res = t.upload_shard(COCO_A, index=0, path=Path("s.json"), dry_run=False, deadline=None,
                         cancel=threading.Event())
    assert res.status == "failed" and res.annotations_applied == 1
    assert res.errors == ["read back 1 of 2 annotations (1 of 2 regions missing)"]


def test_cancel_sends_nothing() -> None:
    t, stored = _fake_ls()
    cancel = threading.Event()
    cancel.set()
    res = t.upload_shard(COCO_A, index=0, path=Path("s.json"), dry_run=False, deadline=None, cancel=cancel)
    assert (res.status, res.errors, stored) == ("failed", ["cancelled after 0 of 1 predictions were sent"], [])


# ------------------------------------------------------------------------------------------ real server
def _png(path: Path, w: int, h: int, color: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), color).save(path, "PNG")


def _get(server: Any, path: str, **params: Any) -> Any:
    r = httpx.get(server.url + path, params=params, headers={"Authorization": f"Token {server.token}"})
    r.raise_for_status()
    return r.json()


def _predictions(server: Any, project: int) -> dict[str, dict[str, Any]]:
    """coco_file_name -> the one prediction of that task (all tasks of the project)."""
    out = {}
    for t in _get(server, "/api/tasks", project=project, fields="task_only", page_size=100)["tasks"]:
        preds = _get(server, "/api/predictions", task=t["id"])
        assert len(preds) == 1
        out[t["data"].get("coco_file_name", t["data"]["image"])] = preds[0]
    return out


@pytest.fixture(scope="module")
def uploaded(label_studio: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    images = tmp_path_factory.mktemp("ls_images")
    _png(images / "cat one.png", 200, 100, (200, 10, 10))
    _png(images / "dog.png", 64, 48, (10, 200, 10))
    _png(images / "person.png", 80, 120, (10, 10, 200))
    coco = _coco()
    target = LabelStudioTarget.create(label_studio.url, label_studio.token, "prelabel test", CATEGORIES[:3],
                                      kinds=["rectangle", "polygon", "brush"], images=images, model_version="t-1")
    dry = target.upload_shard(coco, index=0, path=Path("s0.json"), dry_run=True, deadline=None,
                              cancel=threading.Event())
    tasks_after_dry = len(target.assets())
    result = target.upload_shard(coco, index=0, path=Path("s0.json"), dry_run=False, deadline=None,
                                 cancel=threading.Event())
    yield {"target": target, "result": result, "dry": dry, "tasks_after_dry": tasks_after_dry, "coco": coco,
           "server": label_studio}
    target.close()


@pytest.mark.labelstudio
def test_real_upload_result(uploaded: dict[str, Any], self_ap: Any) -> None:
    assert self_ap(uploaded["coco"]) == 1.0
    dry, res, t = uploaded["dry"], uploaded["result"], uploaded["target"]
    assert uploaded["tasks_after_dry"] == 0            # a dry run creates nothing
    assert (dry.annotations_applied, dry.files_matched, dry.matched_by) == (5, 3, {"uploaded": 3})
    assert res.matched_by == {"uploaded": 3}
    assert res.status == "completed"
    assert res.annotations_applied == 5 and res.files_matched == 3
    assert [(u.name, u.closest, u.why) for u in res.files_not_matched] == [
        ("Dog.png", ["dog.png"], "case"), ("nowhere/elephant.png", [], "no similar name")]
    assert res.files_not_matched[1].hint == f"not in {t.images} either: add it there (or to the project)"
    assert res.categories_ignored == ["zebra"]
    assert res.errors == ["skipped annotation 8 (dog.png): box [60, 40, 10, 5] px reaches outside the 64x48 image"]
    first = min(p["id"] for p in _predictions(uploaded["server"], t.project_id).values())
    assert res.activity_id == f"ls-{t.project_id}-{first}-3"
    assert sorted(t.assets()) == ["cat one.png", "dog.png", "person.png"]
    assert t.categories() == ["cat", "dog", "person"]


@pytest.mark.labelstudio
def test_real_predictions_read_back_in_pixels(uploaded: dict[str, Any]) -> None:
    t, coco = uploaded["target"], uploaded["coco"]
    preds = _predictions(uploaded["server"], t.project_id)
    assert sorted(preds) == ["cat one.png", "dog.png", "person.png"]
    assert {k: (p["model_version"], round(p["score"], 9)) for k, p in preds.items()} == {
        "cat one.png": ("t-1", 0.85), "dog.png": ("t-1", 0.65), "person.png": ("t-1", 0.5)}
    by_ann: dict[int, list[dict[str, Any]]] = {}
    for p in preds.values():
        ids = [r["id"] for r in p["result"]]
        assert len(ids) == len(set(ids))
        for r in p["result"]:
            by_ann.setdefault(int(r["id"].split("_")[1]), []).append(r)
    assert sorted(by_ann) == [1, 2, 3, 4, 5]
    anns = {a["id"]: a for a in coco["annotations"]}

    def px(r: dict[str, Any], key_x: str = "x", key_y: str = "y") -> tuple[float, float]:
        return r["value"][key_x] / 100 * r["original_width"], r["value"][key_y] / 100 * r["original_height"]

    (box,) = by_ann[1]
    x, y = px(box)
    w, h = px(box, "width", "height")
    assert (x, y, w, h) == pytest.approx(anns[1]["bbox"], abs=1e-6) and box["value"]["rotation"] == 0
    assert (box["type"], box["value"]["rectanglelabels"], box["score"]) == ("rectanglelabels", ["cat"], 0.9)
    (rot,) = by_ann[2]
    x, y = px(rot)
    w, h = px(rot, "width", "height")
    corners = geometry.rotated_box_topleft(x, y, w, h, rot["value"]["rotation"])
    assert corners.tolist() == pytest.approx([*TL, *TR, *BR, *BL], abs=1e-6)
    (poly,) = by_ann[3]
    pts = [(u / 100 * 64, v / 100 * 48) for u, v in poly["value"]["points"]]
    assert np.ravel(pts).tolist() == pytest.approx(anns[3]["segmentation"][0], abs=1e-6)
    (brush,) = by_ann[4]
    assert brush["value"]["brushlabels"] == ["dog"]
    assert np.array_equal(geometry.ls_rle_decode(brush["value"]["rle"], 48, 64) > 0, _mask() > 0)
    nonce = by_ann[5][0]["id"].split("_")[0]
    assert sorted(r["id"] for r in by_ann[5]) == [f"{nonce}_5", f"{nonce}_5_k0", f"{nonce}_5_k2"]
    main = next(r for r in by_ann[5] if r["type"] == "rectanglelabels")
    got = sorted((r["value"]["keypointlabels"][0], *px(r), r["parentID"]) for r in by_ann[5]
                 if r["type"] == "keypointlabels")
    assert got == [("nose", pytest.approx(30.0), pytest.approx(30.0), main["id"]),
                   ("tail", pytest.approx(40.0), pytest.approx(90.0), main["id"])]


@pytest.mark.labelstudio
def test_real_existing_tasks_matched_by_upload_prefix_and_local_files(label_studio: Any) -> None:
    t = LabelStudioTarget.create(label_studio.url, label_studio.token, "existing tasks", ["cat"])
    r = httpx.post(f"{label_studio.url}/api/projects/{t.project_id}/import",
                   headers={"Authorization": f"Token {label_studio.token}"},
                   json=[{"data": {"image": f"/data/upload/{t.project_id}/1a2b3c4d-a_b.png"}},
                         {"data": {"image": "/data/local-files/?d=sub/c.png"}}])
    assert r.status_code == 201
    assert sorted(t.assets()) == ["sub/c.png", f"upload/{t.project_id}/1a2b3c4d-a_b.png"]
    coco = {"images": [{"id": 1, "file_name": "a b.png", "width": 10, "height": 20},
                       {"id": 2, "file_name": "sub/c.png", "width": 30, "height": 40}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4]},
                            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [3, 4, 6, 8]}]}
    res = t.upload_shard(coco, index=1, path=Path("s1.json"), dry_run=False, deadline=None,
                         cancel=threading.Event())
    assert (res.status, res.annotations_applied, res.files_matched, res.files_not_matched) == ("completed", 2, 2, [])
    assert res.matched_by == {"sanitized": 1, "exact": 1}
    preds = _predictions(label_studio, t.project_id)
    # [1, 2, 3, 4] in 10x20 -> 10 %, 10 %, 30 %, 20 %; [3, 4, 6, 8] in 30x40 -> 10 %, 10 %, 20 %, 20 %
    values = sorted((p["result"][0]["value"]["width"], p["result"][0]["value"]["height"]) for p in preds.values())
    assert values == [(20.0, 20.0), (30.0, 20.0)]
    assert all("score" not in p["result"][0] and p["score"] is None for p in preds.values())
    t.close()


@pytest.mark.labelstudio
def test_real_auth_errors_pat_and_lazy_project(label_studio: Any, tmp_path: Path) -> None:
    url, token = label_studio.url, label_studio.token
    with pytest.raises(NotFoundError) as e:
        LabelStudioTarget(url, token, 99999).categories()
    assert str(e.value) == f"Label Studio project 99999 not found at {url}"
    with pytest.raises(AuthError) as e2:
        LabelStudioTarget(url, "0" * 40, 1).categories()
    assert str(e2.value) == f"Label Studio at {url} refused the API key (401) while reading the project"
    with pytest.raises(AuthError, match="refused the personal access token"):
        LabelStudioTarget(url, PAT, 1).categories()
    pat = httpx.post(f"{url}/api/token/", headers={"Authorization": f"Token {token}"}).json()["token"]
    _png(tmp_path / "im" / "p.png", 30, 20, (0, 0, 0))
    lazy = LabelStudioTarget(url, pat, None, create_project=True, title="lazy", images=tmp_path / "im")
    assert lazy.categories() is None and lazy.assets() == []
    coco = {"images": [{"id": 1, "file_name": "p.png", "width": 30, "height": 20}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 2, "bbox": [3, 2, 6, 4],
                             "segmentation": [[3, 2, 9, 2, 9, 6]]}]}
    res = lazy.upload_shard(coco, index=0, path=Path("s.json"), dry_run=False, deadline=None,
                            cancel=threading.Event())
    assert (res.status, res.annotations_applied, res.files_matched) == ("completed", 1, 1)
    cfg = lazy.label_config()
    assert cfg is not None and sorted(cfg.controls) == ["polygonlabels", "rectanglelabels"]
    assert lazy.categories() == ["cat", "dog"] and lazy.describe() == f"labelstudio:{lazy.project_id}"
    lazy.close()


def test_server_start_failure_reports_the_log_tail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    import ls_server

    template = tmp_path / "template"
    template.mkdir()
    db = sqlite3.connect(template / "label_studio.sqlite3")
    db.execute("CREATE TABLE authtoken_token (key TEXT)")
    db.commit()
    db.close()
    fake = tmp_path / "label-studio"
    fake.write_text("#!/bin/sh\necho 'Error: port handling broke'\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(ls_server, "ensure_template", lambda **_: template)
    monkeypatch.setattr(ls_server, "LS_BIN", fake)
    monkeypatch.setattr(ls_server, "ROOT", tmp_path)
    with pytest.raises(ls_server.ServerError) as e:
        ls_server.start(timeout=20)
    assert str(e.value).startswith("Label Studio exited with code 3 before it was ready; log ")
    assert str(e.value).endswith("\nError: port handling broke")


@pytest.mark.labelstudio
def test_real_upload_through_the_driver(label_studio: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from prelabel.upload import upload

    t = LabelStudioTarget.create(label_studio.url, label_studio.token, "driver", ["cat"])
    httpx.post(f"{label_studio.url}/api/projects/{t.project_id}/import",
               headers={"Authorization": f"Token {label_studio.token}"},
               json=[{"data": {"image": f"/data/upload/{t.project_id}/0badf00d-a.png"}}]).raise_for_status()
    monkeypatch.setenv("LABEL_STUDIO_URL", label_studio.url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    coco = {"info": {}, "licenses": [], "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10}],
            "categories": [{"id": 1, "name": "cat"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4,
                             "iscrowd": 0, "segmentation": []}]}
    res = upload(coco, f"labelstudio:{t.project_id}", journal=False)
    assert (res.status, res.target, res.annotations_applied, res.files_matched) == (
        "completed", f"labelstudio:{t.project_id}", 1, 1)
    (pred,) = _predictions(label_studio, t.project_id).values()
    assert res.activity_id == f"ls-{t.project_id}-{pred['id']}-1"
    assert label_studio.token not in json.dumps(res.to_dict())
    t.close()


# ------------------------------------------------------------------------------- re-upload and the CLI
def _auth(server: Any) -> dict[str, str]:
    return {"Authorization": f"Token {server.token}"}


def _preds_by_task(server: Any, project: int) -> dict[str, list[tuple[str, int]]]:
    """coco name / image -> sorted [(model_version, number of regions)] of every prediction of the task."""
    out = {}
    for t in _get(server, "/api/tasks", project=project, fields="task_only", page_size=100)["tasks"]:
        name = t["data"].get("coco_file_name") or t["data"]["image"].rsplit("-", 1)[-1]
        out[name] = sorted((p["model_version"], len(p["result"])) for p in _get(server, "/api/predictions",
                                                                              task=t["id"]))
    return out


@pytest.mark.labelstudio
def test_real_reupload_replaces_same_model_version_and_append_adds(label_studio: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from prelabel.upload import upload

    url = label_studio.url
    t = LabelStudioTarget.create(url, label_studio.token, "re-upload", ["cat"])
    pid = t.project_id
    httpx.post(f"{url}/api/projects/{pid}/import", headers=_auth(label_studio),
               json=[{"data": {"image": f"/data/upload/{pid}/0badf00d-a.png"}},
                     {"data": {"image": f"/data/upload/{pid}/0badf00e-b.png"}}]).raise_for_status()
    task_a = min(tid for tid, _ in t._task_list(refresh=True))
    other = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "original_width": 10,
             "original_height": 10, "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rotation": 0,
                                              "rectanglelabels": ["cat"]}}
    r = httpx.post(f"{url}/api/projects/{pid}/import/predictions", headers=_auth(label_studio),
                   json=[{"task": task_a, "result": [other], "model_version": "other-model"}])
    assert r.json()["created"] == 1
    monkeypatch.setenv("LABEL_STUDIO_URL", url)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", label_studio.token)
    coco = {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "cat"}],
            "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 10},
                       {"id": 2, "file_name": "b.png", "width": 10, "height": 10}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0},
                            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [5, 5, 2, 2], "area": 4, "iscrowd": 0},
                            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [1, 1, 3, 3], "area": 9, "iscrowd": 0}]}
    first = upload(coco, f"labelstudio:{pid}", journal=False)
    second = upload(coco, f"labelstudio:{pid}", journal=False)      # the same upload again: replaced, not added
    assert [(x.status, x.annotations_applied) for x in (first, second)] == [("completed", 3), ("completed", 3)]
    assert _preds_by_task(label_studio, pid) == {"a.png": [("other-model", 1), ("prelabel", 2)],
                                                 "b.png": [("prelabel", 1)]}
    first_pred = int(str(first.activity_id).split("-")[2])          # ls-<project>-<first prediction>-<count>
    gone = httpx.get(f"{url}/api/predictions/{first_pred}", headers=_auth(label_studio))
    assert gone.status_code == 404
    upload(coco, f"labelstudio:{pid}", journal=False, mode="append")
    assert _preds_by_task(label_studio, pid) == {"a.png": [("other-model", 1), ("prelabel", 2), ("prelabel", 2)],
                                                 "b.png": [("prelabel", 1), ("prelabel", 1)]}
    upload(coco, f"labelstudio:{pid}", journal=False, model_version="v2")   # another version: both kept
    upload(coco, f"labelstudio:{pid}", journal=False)                       # replaces both 'prelabel' sets
    assert _preds_by_task(label_studio, pid) == {"a.png": [("other-model", 1), ("prelabel", 2), ("v2", 2)],
                                                 "b.png": [("prelabel", 1), ("v2", 1)]}
    t.close()


@pytest.mark.labelstudio
def test_real_cli_create_project_upload_images_and_hints(label_studio: Any, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from prelabel.cli import main

    images = tmp_path / "imgs"
    _png(images / "a.png", 40, 20, (255, 0, 0))
    _png(images / "b.png", 30, 30, (0, 255, 0))
    doc = {"info": {}, "licenses": [], "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
           "images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 20},
                      {"id": 2, "file_name": "b.png", "width": 30, "height": 30}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [4, 2, 8, 4], "area": 32, "iscrowd": 0},
                           {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 10, 10, 5], "area": 50,
                            "iscrowd": 0},
                           {"id": 3, "image_id": 2, "category_id": 2, "bbox": [3, 3, 6, 6], "area": 36, "iscrowd": 0}]}
    coco = tmp_path / "out.json"
    coco.write_text(json.dumps(doc))
    env = {"LABEL_STUDIO_URL": label_studio.url, "LABEL_STUDIO_API_KEY": label_studio.token}

    def run(*args: str) -> Any:
        return CliRunner().invoke(main, ["upload", str(coco), *args], env=env, catch_exceptions=False)

    r = run("--to", "labelstudio:new", "--create-project", "cli project", "--images", str(images),
            "--model-version", "m-2", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    pid = int(res["target"].split(":")[1])
    assert (res["status"], res["annotations_applied"], res["files_matched"], res["matched_by"]) == (
        "completed", 3, 2, {"uploaded": 2})
    assert _get(label_studio, f"/api/projects/{pid}")["title"] == "cli project"
    assert _preds_by_task(label_studio, pid) == {"a.png": [("m-2", 2)], "b.png": [("m-2", 1)]}
    # the same file again, to that project: the tasks are found (no image uploaded twice), predictions replaced
    r = run("--to", f"labelstudio:{pid}", "--images", str(images), "--model-version", "m-2")
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[1:] == ["  annotations applied: 3", "  replaced 2 existing pre-annotations on 2 images",
                                         "  images matched: 2"]
    assert _preds_by_task(label_studio, pid) == {"a.png": [("m-2", 2)], "b.png": [("m-2", 1)]}
    # names in another case and extension: the hint, then the options it names
    doc["images"][0]["file_name"], doc["images"][1]["file_name"] = "A.PNG", "b.jpg"
    doc["images"].append({"id": 3, "file_name": "zebra-crossing.tif", "width": 8, "height": 8})
    coco.write_text(json.dumps(doc))
    r = run("--to", f"labelstudio:{pid}", "--dry-run")
    no_task = ("    zebra-crossing.tif: no project image; nothing similar -> rerun with --images DIR to upload it and "
               "create its task")
    assert r.stdout.splitlines()[1:] == [
        "  annotations would be applied: 0", "  would replace 0 existing pre-annotations on 0 images",
        "  images matched: 0",
        "  images not matched: 3 (their annotations are not applied)",
        "    A.PNG: no project image; closest: a.png (case differs) -> rerun with --match-case-insensitive",
        "    b.jpg: no project image; closest: b.png (extension differs) -> rerun with --match-any-extension",
        no_task,
        "  error: none of the 3 annotations in the file would be applied (no image matched a project file): the "
        "upload would fail and replace nothing. If that is intended, pass --allow-empty"]
    assert r.exit_code == 1   # the dry run says what the upload would do: fail
    r = run("--to", f"labelstudio:{pid}", "--model-version", "m-2", "--match-case-insensitive",
            "--match-any-extension")
    assert r.stdout.splitlines()[1:] == ["  annotations applied: 3", "  replaced 2 existing pre-annotations on 2 images",
                                         "  images matched: 2 (1 ignoring case, 1 ignoring the extension)",
                                         "  images not matched: 1 (their annotations are not applied)", no_task]
    assert _preds_by_task(label_studio, pid) == {"a.png": [("m-2", 2)], "b.png": [("m-2", 1)]}
