"""The Labellerr client against `prelabel serve` over real sockets on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import json
import time
from concurrent.futures import CancelledError
from pathlib import Path
from typing import Any

import pytest
from upload_support import (
    API_KEY,
    API_SECRET,
    CLIENT_ID,
    CREDS,
    coco_doc,
    sample_coco,
    write_json,
)

from prelabel.errors import (
    AuthError,
    JobFailedError,
    NotFoundError,
    UploadCancelledError,
    UploadTimeoutError,
    ValidationError,
)
from prelabel.upload import upload
from prelabel.upload.credentials import Credentials, load_credentials
from prelabel.upload.journal import Journal, default_journal_path
from prelabel.upload.labellerr import LabellerrClient, LabellerrTarget
from prelabel.upload.local import LocalProject
from prelabel.upload.server import FaultPlan, LabellerrServer


def target(srv: LabellerrServer, *, project_id: str | None = None, creds: Credentials = CREDS,
           **kw: Any) -> LabellerrTarget:
    opts: dict[str, Any] = {"poll_interval": 0.02, "backoff": 0.01, "retries": 3, **kw}
    return LabellerrTarget(project_id or srv.project.project_id, credentials=creds, base_url=srv.url, **opts)


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    return write_json(tmp_path / "out.json", sample_coco())


def test_happy_path_applies_and_reports(serve: Any, coco_file: Path, project: LocalProject) -> None:
    srv = serve()
    res = upload(coco_file, target(srv))
    assert res.status == "completed"
    assert res.target == "labellerr:proj-1"
    # a.png: cat applied, zebra ignored (not a question of the template); cat.png matches no asset (Cat.png)
    assert res.annotations_applied == 1
    assert res.files_matched == 1
    assert [(u.name, u.closest, u.why) for u in res.files_not_matched] == [("cat.png", ["Cat.png"], "case")]
    assert res.categories_ignored == ["zebra"]
    assert res.activity_id == res.shards[0].activity_id and res.activity_id
    st = project.status()
    assert st["annotations"] == 1 and st["categories"] == {"cat": 1, "dog": 0}
    assert srv.stats["upload_answers"] == 1 and srv.stats["jobs"] == 1
    assert not default_journal_path(coco_file).exists()   # completed: the journal is gone


def test_requests_follow_the_sdk_contract(serve: Any, coco_file: Path) -> None:
    srv = serve()
    upload(coco_file, target(srv))
    up = [r for r in srv.requests if r["route"] == "upload_answers"][0]
    assert up["method"] == "POST" and up["path"] == "/actions/upload_answers"
    assert up["query"] == ["answer_format", "client_id", "project_id", "uuid"]
    assert {"api_key", "api_secret", "client_id", "source", "origin", "email_id"} <= set(up["headers"])
    assert (up["source"], up["origin"], up["email_id_is_api_key"]) == ("sdk", "https://pro.labellerr.com", True)
    assert up["content_type"] == "multipart/form-data"
    status = [r for r in srv.requests if r["route"] == "status"][-1]
    assert status["query"] == ["client_id", "job_id", "project_id", "uuid"]


def test_documented_metadata_shape_is_read(serve: Any, coco_file: Path) -> None:
    srv = serve(metadata="docs")
    res = upload(coco_file, target(srv))
    # total_annotations / matched_files / unmatched_files (integer counts, issue 14) instead of files_not_updated
    assert (res.status, res.annotations_applied, res.files_matched) == ("completed", 1, 1)
    assert res.applied_source == "service"
    # the docs' reply counts the unmatched files without naming them: the count is reported, no names invented
    assert (res.files_not_matched, res.files_not_matched_count) == ([], 1)


def test_dry_run_uses_files_and_template(serve: Any, coco_file: Path, project: LocalProject) -> None:
    srv = serve()
    t = target(srv)
    assert t.categories() == ["cat", "dog"]
    assert t.assets() == ["Cat.png", "a.png", "b.png"]
    res = upload(coco_file, t, dry_run=True)
    assert (res.dry_run, res.annotations_applied, res.categories_ignored) == (True, 1, ["zebra"])
    assert srv.stats["upload_answers"] == 0 and project.status()["annotations"] == 0


def test_bad_credentials_401(serve: Any, coco_file: Path) -> None:
    srv = serve()
    wrong = Credentials(API_KEY, "SECRET-wrong-000", CLIENT_ID)
    with pytest.raises(AuthError) as ei:
        upload(coco_file, target(srv, creds=wrong))
    assert str(ei.value).startswith("Labellerr rejected the credentials (401)")
    assert "LABELLERR_API_KEY" in ei.value.hint
    for text in (str(ei.value), ei.value.hint, repr(ei.value)):
        assert "SECRET-wrong-000" not in text and API_KEY not in text


def test_unknown_project(serve: Any, coco_file: Path) -> None:
    srv = serve()
    with pytest.raises(NotFoundError, match="project nope not found"):
        upload(coco_file, target(srv, project_id="nope"))
    assert srv.stats["jobs"] == 0


def test_failed_job(serve: Any, coco_file: Path, project: LocalProject) -> None:
    srv = serve("job:fail")
    res = upload(coco_file, target(srv))
    assert res.status == "failed"
    assert "injected failure: the job could not be processed" in res.errors[0]
    assert project.status()["annotations"] == 0
    # the journal keeps the failure, so a re-run sends the file again
    entries = list(Journal(default_journal_path(coco_file)).entries.values())
    assert [e["state"] for e in entries] == ["failed"]
    res2 = upload(coco_file, target(srv))
    assert res2.status == "completed" and srv.stats["upload_answers"] == 2


def test_failed_job_raises_from_the_client(serve: Any, coco_file: Path) -> None:
    srv = serve("job:fail")
    client = LabellerrClient(CREDS, base_url=srv.url, poll_interval=0.02, backoff=0.01)
    job = client.upload_answers("proj-1", coco_file)
    with pytest.raises(JobFailedError, match=f"Labellerr job {job} failed: injected failure"):
        client.wait_job("proj-1", job, deadline=time.monotonic() + 10)
    client.close()


def test_429_and_503_then_success(serve: Any, coco_file: Path, project: LocalProject) -> None:
    # issue 14: only 429 and 503 (and connect errors) re-send the upload; a 500 may come after the job was taken
    srv = serve("upload_answers:429,503;status:503")
    res = upload(coco_file, target(srv))
    assert res.status == "completed"
    assert srv.stats["upload_answers"] == 3 and srv.stats["jobs"] == 1
    assert project.status()["annotations"] == 1


def test_503_then_success_resends_the_whole_file_reopened(serve: Any, coco_file: Path,
                                                          project: LocalProject) -> None:
    # issue 14: a dropped connection is no longer re-sent (it may come after the job was taken); a 503 is
    srv = serve("upload_answers:503,503")
    res = upload(coco_file, target(srv))
    assert res.status == "completed" and res.annotations_applied == 1
    assert srv.stats["upload_answers"] == 3 and srv.stats["jobs"] == 1
    # the third try carried the whole file: the job read valid COCO
    assert project.activities()[0]["counts"]["annotations"] == 3


def test_retries_exhausted_fail_the_shard(serve: Any, coco_file: Path) -> None:
    srv = serve("upload_answers:503*4")   # issue 14: 503 proves the file was not taken (a 500 does not)
    res = upload(coco_file, target(srv, retries=3))
    assert res.status == "failed"
    assert res.errors == ["Labellerr: POST /actions/upload_answers failed after 4 tries: HTTP 503: injected fault"]


def test_poll_timeout_then_rerun_polls_the_same_job(serve: Any, coco_file: Path, project: LocalProject) -> None:
    srv = serve("job:delay=4")
    # under CPU load the deadline may fall inside a status request rather than between polls: both are timeouts
    with pytest.raises(UploadTimeoutError, match="still processing at the timeout|did not finish within the timeout"):
        upload(coco_file, target(srv), timeout=1.0)
    entry = next(iter(Journal(default_journal_path(coco_file)).entries.values()))
    assert entry["state"] == "started" and entry["job_id"]
    res = upload(coco_file, target(srv), timeout=20)
    assert res.status == "completed" and res.activity_id == entry["job_id"]
    assert srv.stats["upload_answers"] == 1 and srv.stats["jobs"] == 1   # polled, not sent again
    assert project.status()["annotations"] == 1


def test_async_returns_at_once_and_completes(serve: Any, coco_file: Path) -> None:
    srv = serve("status:slow=0.3;job:delay=0.3")
    fut = upload(coco_file, target(srv), _async=True)
    assert not fut.done()
    res = fut.result(timeout=20)
    assert res.status == "completed" and res.annotations_applied == 1


def test_async_timeout_is_delivered_through_the_future(serve: Any, coco_file: Path) -> None:
    srv = serve("job:delay=2")
    fut = upload(coco_file, target(srv), _async=True, timeout=0.3)
    with pytest.raises(UploadTimeoutError):
        fut.result(timeout=20)


def test_async_cancel_while_running(serve: Any, coco_file: Path) -> None:
    srv = serve("job:delay=2")
    fut = upload(coco_file, target(srv), _async=True)
    while not srv.stats["status"]:   # the job was sent and is being polled
        time.sleep(0.01)
    assert fut.cancel() is False      # running: not cancellable outright, but told to stop
    with pytest.raises(UploadCancelledError) as ei:
        fut.result(timeout=20)
    assert isinstance(ei.value, CancelledError)
    entry = next(iter(Journal(default_journal_path(coco_file)).entries.values()))
    assert entry["state"] == "started"   # a re-run polls the job the server already has


def test_sharded_upload_applies_each_shard_once(serve: Any, tmp_path: Path, project: LocalProject) -> None:
    doc = coco_doc([(n, [("cat", [1, 1, 2, 2]), ("dog", [3, 3, 4, 4])]) for n in ("a.png", "b.png", "Cat.png")],
                   ["cat", "dog"])
    path = write_json(tmp_path / "big.json", doc)
    srv = serve()
    res = upload(path, target(srv), max_file_size=600, workers=2)
    assert len(res.shards) == 3 and res.status == "completed"
    assert res.annotations_applied == 6 and srv.stats["jobs"] == 3
    assert project.status()["annotations"] == 6


def test_invalid_coco_is_refused_before_sending(serve: Any, tmp_path: Path) -> None:
    doc = sample_coco()
    doc["annotations"][0]["image_id"] = 99
    path = write_json(tmp_path / "bad.json", doc)
    srv = serve()
    with pytest.raises(ValidationError):
        upload(path, target(srv))
    assert srv.stats["upload_answers"] == 0


def test_credentials_from_env_and_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for v in ("LABELLERR_API_KEY", "LABELLERR_API_SECRET", "LABELLERR_CLIENT_ID", "LABELLERR_BASE_URL"):
        monkeypatch.delenv(v, raising=False)
    cfg = tmp_path / "labellerr.json"
    cfg.write_text(json.dumps({"labellerr": {"api_key": "k1", "api_secret": "s1", "client_id": "c1"}}))
    monkeypatch.setenv("PRELABEL_CONFIG", str(cfg))
    monkeypatch.setenv("LABELLERR_API_SECRET", API_SECRET)
    creds, url = load_credentials()
    assert (creds.api_key, creds.api_secret, creds.client_id, url) == ("k1", API_SECRET, "c1",
                                                                       "https://api.labellerr.com")
    assert API_SECRET not in repr(creds)
    monkeypatch.setenv("PRELABEL_CONFIG", str(tmp_path / "absent.json"))
    monkeypatch.delenv("LABELLERR_API_SECRET")
    with pytest.raises(AuthError, match="credentials missing: api_key, api_secret, client_id"):
        load_credentials()


def test_fault_plan_text() -> None:
    plan = FaultPlan.parse("upload_answers:500,500,429;status:slow=3;project_files:drop")
    assert [plan.next("upload_answers").code for _ in range(3)] == [500, 500, 429]  # type: ignore[union-attr]
    assert plan.next("upload_answers") is None
    f = plan.next("status")
    assert f is not None and (f.kind, f.seconds) == ("slow", 3.0)
    assert plan.next("project_files").kind == "drop"  # type: ignore[union-attr]


def test_project_files_are_paged(serve: Any) -> None:
    srv = serve()
    client = LabellerrClient(CREDS, base_url=srv.url)
    files = client.project_files("proj-1", page_size=2)
    client.close()
    assert [f["file_name"] for f in files] == ["Cat.png", "a.png", "b.png"]
    assert srv.stats["project_files"] == 2   # 2 files, then 1 with next_search_after = None


def test_http_log_lines_carry_no_credentials(serve: Any, coco_file: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    srv = serve("upload_answers:503")
    with caplog.at_level(logging.DEBUG):
        res = upload(coco_file, target(srv))
    assert res.status == "completed"
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "/actions/upload_answers?client_id=***&" in text   # httpx's request line, scrubbed
    for s in (API_KEY, API_SECRET, CLIENT_ID):
        assert s not in text
