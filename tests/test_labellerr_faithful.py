"""Issue 14: the Labellerr target faithful to the real service, tested against `prelabel serve`'s stand-in over real
sockets on 127.0.0.1 with faults injected (status route down for a while, 500 after taking a job, 413 over
25,000,000 bytes, ...). Each test names the numbered fix it covers; each fails on the code before the issue.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from upload_support import (
    API_KEY,
    API_SECRET,
    CLIENT_ID,
    CREDS,
    SECRETS,
    coco_doc,
    sample_coco,
    write_json,
)

from prelabel.cli import main
from prelabel.errors import NotFoundError, UsageError
from prelabel.upload import upload
from prelabel.upload.journal import Journal, default_journal_path
from prelabel.upload.labellerr import LabellerrTarget
from prelabel.upload.local import LocalProject
from prelabel.upload.server import LabellerrServer

ROOT = Path(__file__).resolve().parents[1]
ENV = {"LABELLERR_API_KEY": API_KEY, "LABELLERR_API_SECRET": API_SECRET, "LABELLERR_CLIENT_ID": CLIENT_ID,
       "PRELABEL_CONFIG": "/nonexistent/prelabel.json"}


def target(srv: LabellerrServer, **kw: Any) -> LabellerrTarget:
    opts: dict[str, Any] = {"poll_interval": 0.02, "backoff": 0.01, "retries": 3, **kw}
    return LabellerrTarget(srv.project.project_id, credentials=CREDS, base_url=srv.url, **opts)


@pytest.fixture
def coco_file(tmp_path: Path) -> Path:
    return write_json(tmp_path / "out.json", sample_coco())


def entries(coco: Path) -> list[dict[str, Any]]:
    return list(Journal(default_journal_path(coco)).entries.values())


def uploads(srv: LabellerrServer) -> list[dict[str, Any]]:
    return [r for r in srv.requests if r["route"] == "upload_answers"]


def cli(*args: str, url: str) -> Any:
    return CliRunner().invoke(main, list(args), env={**ENV, "LABELLERR_BASE_URL": url}, catch_exceptions=False)


# ------------------------------------------------------------------ 1. nothing is applied twice
def test_1_status_outage_keeps_the_job_started_and_the_rerun_polls_it(serve: Any, coco_file: Path,
                                                                      project: LocalProject) -> None:
    srv = serve("status:503*40")   # the status route fails for longer than this run is willing to wait
    res = upload(coco_file, target(srv, retries=1, poll_outage=0.1))
    assert res.status == "failed"
    assert "job " in res.errors[0] and "stays in the journal: run the same upload again to poll it" in res.errors[0]
    [entry] = entries(coco_file)
    assert (entry["state"], entry["job_id"]) == ("started", res.activity_id)
    srv.faults = type(srv.faults)()   # the outage is over
    res2 = upload(coco_file, target(srv))
    assert (res2.status, res2.activity_id, res2.annotations_applied) == ("completed", entry["job_id"], 1)
    assert (srv.stats["upload_answers"], srv.stats["jobs"]) == (1, 1)   # polled, never sent again
    assert project.status()["annotations"] == 1


def test_1_a_status_outage_for_a_while_is_waited_out(serve: Any, coco_file: Path) -> None:
    srv = serve("status:down=1.5")   # 503 to every poll for 1.5 s: longer than 4 tries with backoff 0.01
    res = upload(coco_file, target(srv))
    assert (res.status, res.annotations_applied) == ("completed", 1)
    assert (srv.stats["upload_answers"], srv.stats["jobs"]) == (1, 1)
    assert not default_journal_path(coco_file).exists()


# ------------------------------------------------------------------ 2. the upload POST is not re-sent blindly
@pytest.mark.parametrize("fault", ["took=500", "took=502", "took=504", "took=drop"])
def test_2_a_lost_reply_after_the_job_was_taken_is_not_resent(serve: Any, coco_file: Path, project: LocalProject,
                                                              fault: str) -> None:
    srv = serve(f"upload_answers:{fault}")
    res = upload(coco_file, target(srv))
    srv.wait_jobs()
    assert res.status == "failed"
    [err] = res.errors
    assert "so it may have been applied; it was not sent again" in err
    assert "Check in the Labellerr web app whether project proj-1 shows these pre-annotations (images a.png, " \
           "cat.png); if it does not, run the same upload again with resend_unconfirmed=True" in err  # Python names
    assert (srv.stats["upload_answers"], srv.stats["jobs"]) == (1, 1)   # before issue 14: 4 POSTs, 4 jobs
    assert [e["state"] for e in entries(coco_file)] == ["unconfirmed"]
    # the re-run does not send it blindly either
    res2 = upload(coco_file, target(srv))
    assert res2.status == "failed" and res2.errors[0].startswith("shard 1 was not sent again: Labellerr: ")
    assert srv.stats["upload_answers"] == 1
    # the user checked and asks for it: sent once more
    res3 = upload(coco_file, target(srv), resend_unconfirmed=True)
    assert res3.status == "completed" and srv.stats["upload_answers"] == 2


def test_2_a_read_timeout_on_the_upload_is_not_resent(serve: Any, coco_file: Path) -> None:
    srv = serve("upload_answers:took=slow=3")
    res = upload(coco_file, target(srv, upload_read_timeout=0.5))
    assert res.status == "failed"
    assert res.errors[0].startswith("Labellerr: no reply came within the read timeout after the file out.json "
                                    "was sent (request uuid ")
    assert srv.stats["upload_answers"] == 1


def test_2_connect_429_503_are_retried_under_one_uuid_honouring_retry_after(serve: Any, coco_file: Path) -> None:
    srv = serve("upload_answers:503,429@1")
    t0 = time.monotonic()
    res = upload(coco_file, target(srv, backoff=0.01))
    assert res.status == "completed"
    assert time.monotonic() - t0 >= 1.0        # Retry-After: 1 was honoured (the backoff alone is 0.01 s)
    ups = uploads(srv)
    assert len(ups) == 3 and srv.stats["jobs"] == 1
    assert len({u["uuid"] for u in ups}) == 1   # one logical upload: one uuid across its tries


def test_2_a_connect_error_is_retried(coco_file: Path, project: LocalProject) -> None:
    import socket

    with socket.socket() as s:      # a port nothing listens on: connection refused, nothing was sent
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t = LabellerrTarget("proj-1", credentials=CREDS, base_url=f"http://127.0.0.1:{port}", backoff=0.01, retries=2)
    with pytest.raises(Exception, match=r"failed after 3 tries: cannot connect to http://127\.0\.0\.1:\d+ \(ConnectError\)"):
        t.client.upload_answers("proj-1", coco_file)
    t.close()


def test_2_the_upload_read_timeout_fits_25_mb_on_a_slow_link() -> None:
    t = LabellerrTarget("p", credentials=CREDS, base_url="http://127.0.0.1:9")
    timeout = t.client._timeout(upload=True, remaining=None)
    assert timeout.read == 300.0 and timeout.connect == 60.0
    t.close()


# ------------------------------------------------------------------ 3. the documented reply shape
def test_3_docs_integer_counts_are_reported(serve: Any, tmp_path: Path) -> None:
    doc = coco_doc([("a.png", [("cat", [1, 1, 2, 2])]), ("x1.png", [("cat", [1, 1, 2, 2])]),
                    ("x2.png", [("cat", [1, 1, 2, 2])]), ("x3.png", [("dog", [1, 1, 2, 2])])], ["cat", "dog"])
    coco = write_json(tmp_path / "docs.json", doc)
    srv = serve(metadata="docs")
    r = cli("upload", str(coco), "--to", "labellerr:proj-1", "--json", url=srv.url)
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout)
    # before issue 14 "unmatched_files: 3" was read as nothing unmatched
    assert (res["annotations_applied"], res["applied_source"], res["files_matched"]) == (1, "service", 1)
    assert (res["files_not_matched_count"], res["files_not_matched"]) == (3, [])
    r = cli("upload", str(coco), "--to", "labellerr:proj-1", url=srv.url)
    assert r.stdout.splitlines()[1:] == ["  annotations applied: 1", "  images matched: 1",
                                         "  images not matched: 3 (the service gave the count, not the names)"]


def test_3_the_recorded_shape_gives_an_estimate_labelled_as_such(serve: Any, coco_file: Path) -> None:
    srv = serve()
    r = cli("upload", str(coco_file), "--to", "labellerr:proj-1", url=srv.url)
    assert r.stdout.splitlines()[1] == "  annotations applied: 1 (prelabel's estimate: the service reported no count)"
    res = upload(coco_file, target(srv))
    assert (res.applied_source, res.shards[0].applied_source) == ("estimate", "estimate")


# ------------------------------------------------------------------ 4. names sent as the project holds them
def test_4_names_matched_by_any_rule_are_sent_as_the_project_holds_them(serve: Any, tmp_path: Path,
                                                                        project: LocalProject) -> None:
    doc = coco_doc([("local_upload/1f2e/a.png", [("cat", [1, 1, 2, 2])]), ("images/b.png", [("dog", [1, 1, 2, 2])]),
                    ("cat.png", [("cat", [3, 3, 2, 2])])], ["cat", "dog"])
    coco = write_json(tmp_path / "p.json", doc)
    srv = serve()
    dry = cli("upload", str(coco), "--to", "labellerr:proj-1", "--dry-run", url=srv.url)
    assert dry.stdout.splitlines()[:4] == [
        "dry run against labellerr:proj-1: completed", "  annotations would be applied: 2",
        "  images matched: 2 (2 by dropping a folder prefix)",
        "  images not matched: 1 (their annotations are not applied)"]
    assert "cat.png: no project image; closest: Cat.png (case differs) -> rerun with --match-case-insensitive" \
        in dry.stdout
    res = upload(coco, target(srv))
    assert (res.status, res.annotations_applied, res.files_matched, res.matched_by) == ("completed", 2, 2,
                                                                                         {"prefix": 2})
    assert [u.name for u in res.files_not_matched] == ["cat.png"]
    act = project.activities()[-1]
    sent = json.loads((project.root / "inbox" / f"{act['id']}.json").read_text())
    assert [im["file_name"] for im in sent["images"]] == ["a.png", "b.png", "cat.png"]
    assert act["metadata"]["files_not_updated"] == ["cat.png"]   # the stand-in matched exactly, case-sensitively


# ------------------------------------------------------------------ 5. failures say why
def test_5_a_failure_reason_of_unknown_shape_shows_the_reply(serve: Any, coco_file: Path) -> None:
    srv = serve("job:fail-unknown")
    res = upload(coco_file, target(srv))
    assert res.status == "failed"
    err = res.errors[0]
    assert "no reason given" not in err
    assert "failed: no known field holds the reason; the reply: {" in err
    assert '"details":{"stage":"parse","msg":"injected failure: the job could not be processed"}' in err
    assert res.shards[0].service_reply["response"]["status"] == "failed"  # type: ignore[index]


# ------------------------------------------------------------------ 6. 25 MB is 25,000,000 bytes
def test_6_a_file_between_25_000_000_bytes_and_25_mib_is_cut_under_the_limit(serve: Any, tmp_path: Path,
                                                                             project: LocalProject) -> None:
    doc = coco_doc([(n, [("cat", [1, 1, 2, 2])]) for n in ("a.png", "b.png", "Cat.png")], ["cat"])
    for a in doc["annotations"]:
        a["attributes"] = {"note": "x" * 8_370_000}
    coco = write_json(tmp_path / "big.json", doc)
    assert 25_000_000 < coco.stat().st_size < 25 * 1024 * 1024
    srv = serve()
    res = upload(coco, target(srv))
    assert (res.status, res.annotations_applied, len(res.shards)) == ("completed", 3, 2)
    assert [u["content_length"] < 25_000_000 for u in uploads(srv)] == [True, True]


def test_6_a_413_splits_the_shard_further(serve: Any, tmp_path: Path, project: LocalProject) -> None:
    doc = coco_doc([(n, [("cat", [i, i, 2, 2]) for i in range(8)]) for n in ("a.png", "b.png", "Cat.png")], ["cat"])
    coco = write_json(tmp_path / "s.json", doc)
    srv = serve(max_body=coco.stat().st_size // 2 + 400)   # a stricter server than documented
    res = upload(coco, target(srv))
    assert (res.status, res.annotations_applied, len(res.shards)) == ("completed", 24, 1)
    ups = uploads(srv)
    assert srv.stats["jobs"] == 3 and len(ups) == 4   # refused whole (413), then in parts of whole images
    assert ups[0]["content_length"] > srv.max_body and all(u["content_length"] <= srv.max_body for u in ups[1:])
    assert project.status()["annotations"] == 24


# ------------------------------------------------------------------ 7. errors name the right thing
def test_7_a_404_from_the_status_route_is_not_project_not_found(serve: Any, coco_file: Path) -> None:
    srv = serve()
    jr = Journal(default_journal_path(coco_file))
    jr.mark_started(Journal.key("labellerr:proj-1", coco_file.read_bytes()), "job-unknown", index=1)
    res = upload(coco_file, target(srv))
    assert res.status == "failed"
    assert res.errors[0].startswith("Labellerr does not know this job (404 from the status route: Job job-unknown "
                                    "not found): job job-unknown was sent and may have been applied.")
    assert "project proj-1 not found" not in res.errors[0]
    assert srv.stats["upload_answers"] == 0 and [e["state"] for e in entries(coco_file)] == ["unconfirmed"]


def test_7_the_project_is_checked_once_up_front(serve: Any, tmp_path: Path) -> None:
    doc = coco_doc([(n, [("cat", [i, i, 2, 2]) for i in range(8)]) for n in ("a.png", "b.png", "Cat.png")], ["cat"])
    coco = write_json(tmp_path / "s.json", doc)
    srv = serve()
    res = upload(coco, target(srv), max_file_size=1500)
    assert res.status == "completed" and len(res.shards) == 3
    assert srv.stats["project"] == 1
    with pytest.raises(NotFoundError, match=r"^Labellerr: project nope not found \(404"):
        upload(coco, LabellerrTarget("nope", credentials=CREDS, base_url=srv.url))
    assert srv.stats["upload_answers"] == 3


# ------------------------------------------------------------------ 8. one shard at a time
def test_8_one_shard_at_a_time_by_default(serve: Any, tmp_path: Path) -> None:
    doc = coco_doc([(n, [("cat", [i, i, 2, 2]) for i in range(8)]) for n in ("a.png", "b.png", "Cat.png")], ["cat"])
    coco = write_json(tmp_path / "s.json", doc)
    srv = serve(job_delay=0.3)
    res = upload(coco, target(srv), max_file_size=1500)
    assert res.status == "completed" and len(res.shards) == 3
    assert srv.stats["max_running_jobs"] == 1
    srv2 = serve(job_delay=0.3)
    res = upload(coco, target(srv2), max_file_size=1500, workers=3)   # an option raises it
    assert srv2.stats["max_running_jobs"] >= 2


# ------------------------------------------------------------------ 9. conf_bucket
def test_9_conf_bucket_from_the_cli_and_python(serve: Any, coco_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    srv = serve()
    r = cli("upload", str(coco_file), "--to", "labellerr:proj-1", "--conf-bucket", "high", url=srv.url)
    assert r.exit_code == 0, r.output
    for k, v in {**ENV, "LABELLERR_BASE_URL": srv.url}.items():
        monkeypatch.setenv(k, v)
    assert upload(coco_file, "labellerr:proj-1", conf_bucket="low").status == "completed"
    res = upload(coco_file, target(srv), conf_bucket="medium")
    assert res.status == "completed"
    assert [u["conf_bucket"] for u in uploads(srv)] == ["high", "low", "medium"]
    r = cli("upload", str(coco_file), "--to", "labellerr:proj-1", "--conf-bucket", "extreme", url=srv.url)
    assert r.exit_code == 2 and "'extreme' is not one of 'low', 'medium', 'high'" in r.output
    with pytest.raises(UsageError, match="conf_bucket must be one of low, medium, high, not 'HIGH'"):
        upload(coco_file, target(srv), conf_bucket="HIGH")
    with pytest.raises(UsageError, match="only for labellerr: targets"):
        upload(coco_file, "local:/nowhere", conf_bucket="low")


# ------------------------------------------------------------------ 10. the raw reply is kept
def test_10_each_shards_final_reply_is_in_the_result_and_json(serve: Any, coco_file: Path) -> None:
    srv = serve()
    r = cli("upload", str(coco_file), "--to", "labellerr:proj-1", "--json", url=srv.url)
    res = json.loads(r.stdout)
    reply = res["shards"][0]["service_reply"]
    assert reply["message"] == "200: Success" and reply["error"] is None
    assert reply["response"]["status"] == "completed" and reply["response"]["job_id"] == res["activity_id"]
    assert reply["response"]["metadata"]["files_not_updated"] == ["cat.png"]
    for s in SECRETS:
        assert s not in r.stdout


# ------------------------------------------------------------------ the SDK's calls, from prelabel
SDK_SCRIPT = '''
import sys
from prelabel.labellerr import LabellerrClient, LabellerrProject, LabellerrError

api_key, api_secret, client_id, project_id, path = sys.argv[1:6]
client = LabellerrClient(api_key, api_secret, client_id)
project = LabellerrProject(client, project_id)
result = project.upload_preannotations(annotation_format="coco_json", annotation_file=path)
print("sync", result["response"]["status"], result["response"]["metadata"]["files_not_updated"])
future = project.upload_preannotations(annotation_format="coco_json", annotation_file=path, _async=True)
print("async", future.result()["response"]["status"])
old = LabellerrClient(api_key, api_secret)
reply = old.upload_preannotation_by_project_id(project_id=project_id, client_id=client_id,
                                               annotation_format="coco_json", annotation_file=path)
print("old", reply["response"]["status"])
fut = old.upload_preannotation_by_project_id_async(project_id=project_id, client_id=client_id,
                                                   annotation_format="coco_json", annotation_file=path)
print("old-async", fut.result()["response"]["status"])
print("status", project.preannotation_job_status_async(reply["response"]["job_id"]).result()["response"]["status"])
try:
    project.upload_preannotations(annotation_format="coco_json", annotation_file=path)
except LabellerrError as e:
    print("error", type(e).__name__, "failed: injected failure" in str(e), e.reply["response"]["status"])
'''


def test_sdk_script_runs_with_only_its_import_changed(serve: Any, coco_file: Path, tmp_path: Path) -> None:
    srv = serve("job:ok*4,fail")
    script = tmp_path / "sdk_script.py"
    script.write_text(SDK_SCRIPT)
    env = {**os.environ, "LABELLERR_BASE_URL": srv.url, "PRELABEL_CONFIG": "/nonexistent/prelabel.json"}
    for v in ("LABELLERR_API_KEY", "LABELLERR_API_SECRET", "LABELLERR_CLIENT_ID"):
        env.pop(v, None)
    p = subprocess.run([sys.executable, str(script), API_KEY, API_SECRET, CLIENT_ID, "proj-1", str(coco_file)],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["sync completed ['cat.png']", "async completed", "old completed",
                                     "old-async completed", "status completed", "error LabellerrError True failed"]
    for s in SECRETS:
        assert s not in p.stdout and s not in p.stderr


def test_sdk_async_returns_at_once_and_converts_other_formats(serve: Any, tmp_path: Path) -> None:
    from prelabel.labellerr import LabellerrClient, LabellerrProject

    yolo = tmp_path / "yolo"
    (yolo / "labels").mkdir(parents=True)
    (yolo / "classes.txt").write_text("cat\ndog\n")
    (yolo / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    from upload_support import make_images

    make_images(yolo / "images", ["a.png"])
    srv = serve(job_delay=1.0)
    client = LabellerrClient(API_KEY, API_SECRET, CLIENT_ID, base_url=srv.url)
    t0 = time.monotonic()
    fut = LabellerrProject(client, "proj-1").upload_preannotations("yolo", yolo, _async=True)
    assert time.monotonic() - t0 < 0.5 and not fut.done()
    reply = fut.result(timeout=60)
    assert reply["response"]["status"] == "completed" and reply["response"]["metadata"]["files_not_updated"] == []


# ------------------------------------------------------------------ unit tests (httpx.MockTransport): reply shapes
def _mock_target(handler: Any) -> LabellerrTarget:
    import httpx

    from prelabel.upload.labellerr import LabellerrClient

    client = LabellerrClient(CREDS, base_url="http://labellerr.test", transport=httpx.MockTransport(handler),
                             backoff=0.01, poll_interval=0.01)
    return LabellerrTarget("proj-1", client=client)


def test_7_a_400_not_found_on_the_upload_route_is_not_a_missing_project(coco_file: Path) -> None:
    import httpx

    from prelabel.errors import UploadError

    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path.startswith("/projects/project/"):
            return httpx.Response(200, json={"response": {"project_id": "proj-1"}})
        if req.url.path == "/search/project_files":
            return httpx.Response(200, json={"response": {"files": [], "next_search_after": None}})
        return httpx.Response(400, json={"error": "Annotation format not found for this template"})

    t = _mock_target(handler)
    with pytest.raises(UploadError) as ei:
        t.start_shard(sample_coco(), index=1, path=coco_file, deadline=None, cancel=__import__("threading").Event())
    assert not isinstance(ei.value, NotFoundError)
    assert str(ei.value) == ("Labellerr refused POST /actions/upload_answers (400, the upload route): Annotation "
                             "format not found for this template")
    t.close()


def test_3_questions_ignored_objects_and_the_reply_is_redacted(coco_file: Path) -> None:
    import threading

    import httpx

    # a guess at another shape: questions_ignored as objects; the reply echoing the api key must be redacted
    def handler(req: httpx.Request) -> httpx.Response:
        if req.url.path == "/actions/upload_answers_status":
            return httpx.Response(200, json={"message": "200: Success", "error": None, "response": {
                "status": "completed", "job_id": "j1", "requested_by": API_KEY,
                "metadata": {"files_not_updated": [], "questions_ignored": [{"question_name": "zebra", "id": 7}]}}})
        return httpx.Response(404, json={"error": "no"})

    t = _mock_target(handler)
    r = t.finish_shard("j1", index=1, path=coco_file, coco=sample_coco(), deadline=None, cancel=threading.Event())
    assert r.categories_ignored == ["zebra"]
    assert r.service_reply is not None and r.service_reply["response"]["requested_by"] == "***"
    assert API_KEY not in json.dumps(r.to_dict())
    t.close()
