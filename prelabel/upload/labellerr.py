"""The Labellerr target (``labellerr:PROJECT_ID``): the official SDK's HTTP flow, with retries that work.

The flow (what the official SDK, Labellerr/SDKPython, sends): ``POST /actions/upload_answers`` (multipart, one
part ``file``, ``answer_format=coco_json``) returns a job id; ``GET /actions/upload_answers_status`` is polled (after 0.25 s,
0.5 s, 1 s, ..., then every ``poll_interval`` seconds) until the job is ``completed`` or ``failed`` or the
deadline passes. Every call carries
the headers ``api_key``, ``api_secret``, ``client_id``, ``source: sdk``, ``origin`` (and ``email_id`` = the api
key on the upload, as the SDK does) and the query parameters ``client_id`` and a fresh ``uuid``.

Unlike the SDK: 429, 5xx and connection errors are retried ``retries`` times with a deterministic exponential
backoff (``backoff``, ``2 * backoff``, ...; a ``Retry-After`` header is honoured up to 60 s), the file is
RE-OPENED for every try, every request has a timeout clipped to the overall deadline, and nothing blocks a
caller that asked for a Future. Errors: 401/403 -> :class:`~prelabel.errors.AuthError`, unknown project ->
:class:`~prelabel.errors.NotFoundError`, a failed job -> :class:`~prelabel.errors.JobFailedError`, the deadline
-> :class:`~prelabel.errors.UploadTimeoutError`. No credential ever appears in a message, a repr or a log line.

Example:
    >>> from prelabel.upload.credentials import Credentials
    >>> t = LabellerrTarget("p1", credentials=Credentials("KEY-1", "SECRET-2", "77"), base_url="http://127.0.0.1:9")
    >>> t
    LabellerrTarget('labellerr:p1', base_url='http://127.0.0.1:9')
    >>> t.describe()
    'labellerr:p1'
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import orjson

from ..errors import (
    AuthError,
    JobFailedError,
    NotFoundError,
    UploadCancelledError,
    UploadError,
    UploadTimeoutError,
)
from .base import ShardResult, UnmatchedFile
from .credentials import AUTH_HINT, DEFAULT_BASE_URL, Credentials, load_credentials, redact
from .match import USER_RULES, MatchRules, match_names

__all__ = ["ANSWER_FORMATS", "LabellerrClient", "LabellerrTarget"]

log = logging.getLogger("prelabel.upload.labellerr")

ANSWER_FORMATS = ("json", "coco_json", "csv", "png")
ORIGIN = "https://pro.labellerr.com"
MAX_RETRY_AFTER = 60.0


class _RedactFilter(logging.Filter):
    """Scrubs the credentials of the live clients from httpx's log lines (its request URLs carry client_id)."""

    def __init__(self) -> None:
        super().__init__()
        self.creds: list[Credentials] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if self.creds:
            msg = record.getMessage()
            for c in list(self.creds):
                msg = redact(msg, c)
            record.msg, record.args = msg, None
        return True


_REDACT = _RedactFilter()
for _name in ("httpx", "httpcore"):
    logging.getLogger(_name).addFilter(_REDACT)


def _body_message(resp: httpx.Response) -> str:
    try:
        doc = resp.json()
    except ValueError:
        return resp.text[:300].strip()
    if isinstance(doc, Mapping):
        for key in ("error", "message", "detail"):
            v = doc.get(key)
            if v:
                return str(v)[:300]
    return str(doc)[:300]


class LabellerrClient:
    """The HTTP calls of the Labellerr API that the upload needs (httpx, one connection pool)."""

    def __init__(self, credentials: Credentials, *, base_url: str, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0, poll_interval: float = 2.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._creds = credentials
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.poll_interval = poll_interval
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout, transport=transport,
                                  follow_redirects=False)
        _REDACT.creds.append(credentials)

    def __repr__(self) -> str:
        return f"LabellerrClient(base_url={self.base_url!r})"

    def close(self) -> None:
        self._http.close()
        if self._creds in _REDACT.creds:
            _REDACT.creds.remove(self._creds)

    def _headers(self, *, email: bool = False) -> dict[str, str]:
        h = {"api_key": self._creds.api_key, "api_secret": self._creds.api_secret,
             "client_id": self._creds.client_id, "source": "sdk", "origin": ORIGIN}
        if email:
            h["email_id"] = self._creds.api_key
        return h

    def _msg(self, text: str) -> str:
        return redact(text, self._creds)

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                json: Any = None, file: Path | None = None, email: bool = False, project_id: str | None = None,
                deadline: float | None = None, cancel: threading.Event | None = None) -> dict[str, Any]:
        """One API call with retries; returns the reply's ``response`` object (or the whole body)."""
        what = f"{method} {path}"
        last = ""
        for attempt in range(self.retries + 1):
            if cancel is not None and cancel.is_set():
                raise UploadCancelledError(f"Labellerr: {what} cancelled")
            timeout = self.timeout
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UploadTimeoutError(f"Labellerr: {what} did not finish within the timeout"
                                             + (f" (last error: {last})" if last else ""))
                timeout = max(0.05, min(timeout, remaining))
            q = {"client_id": self._creds.client_id, "uuid": str(uuid.uuid4()), **(params or {})}
            retry_after: float | None = None
            try:
                if file is not None:
                    with open(file, "rb") as fh:   # re-opened for every try: the stream of a failed try is spent
                        resp = self._http.request(method, path, params=q, headers=self._headers(email=email),
                                                  files={"file": (file.name, fh, "application/octet-stream")},
                                                  timeout=timeout)
                else:
                    resp = self._http.request(method, path, params=q, headers=self._headers(email=email),
                                              json=json, timeout=timeout)
            except httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
            except httpx.TransportError as e:
                last = f"connection error ({type(e).__name__})"
            except OSError as e:
                raise UploadError(f"cannot read {file}: {e.strerror or e}") from None
            else:
                status = resp.status_code
                if status == 429 or status >= 500:
                    last = f"HTTP {status}: {self._msg(_body_message(resp))}"
                    ra = resp.headers.get("retry-after")
                    if ra is not None:
                        try:
                            retry_after = min(MAX_RETRY_AFTER, max(0.0, float(ra)))
                        except ValueError:
                            retry_after = None
                elif status in (401, 403):
                    msg = self._msg(_body_message(resp))
                    extra = f" or they give no access to project {project_id}" if project_id and status == 403 else ""
                    raise AuthError(f"Labellerr rejected the credentials ({status}){extra}: {msg}", hint=AUTH_HINT)
                elif status == 404 or (status == 400 and "not found" in _body_message(resp).lower()):
                    msg = self._msg(_body_message(resp))
                    what_nf = f"project {project_id}" if project_id else path
                    raise NotFoundError(f"Labellerr: {what_nf} not found ({status}: {msg})",
                                        hint="check the project id in the Labellerr web app (Projects page)")
                elif status >= 400:
                    raise UploadError(f"Labellerr refused {what} ({status}): {self._msg(_body_message(resp))}")
                else:
                    try:
                        doc = resp.json()
                    except ValueError:
                        raise UploadError(f"Labellerr: {what} answered {status} with a body that is not JSON") from None
                    if not isinstance(doc, Mapping):
                        raise UploadError(f"Labellerr: {what} answered an unexpected body")
                    inner = doc.get("response")
                    if isinstance(inner, Mapping):
                        return dict(inner)
                    if doc.get("error"):
                        raise UploadError(f"Labellerr: {what} failed: {self._msg(str(doc['error']))[:300]}")
                    return dict(doc)
            if attempt == self.retries:
                break
            delay = retry_after if retry_after is not None else self.backoff * (2 ** attempt)
            if deadline is not None:
                delay = min(delay, max(0.0, deadline - time.monotonic()))
            log.info("Labellerr %s: %s; retry %d/%d in %.2fs", what, last, attempt + 1, self.retries, delay)
            if cancel is not None:
                if cancel.wait(delay):
                    raise UploadCancelledError(f"Labellerr: {what} cancelled")
            else:
                time.sleep(delay)
        raise UploadError(f"Labellerr: {what} failed after {self.retries + 1} tries: {last}",
                          hint="the service may be down or rate-limiting; re-run the same command later "
                               "(the journal resumes where it stopped)")

    # ------------------------------------------------------------------ calls
    def get_project(self, project_id: str, **kw: Any) -> dict[str, Any]:
        return self.request("GET", f"/projects/project/{project_id}", project_id=project_id, **kw)

    def get_template(self, template_id: str, **kw: Any) -> dict[str, Any]:
        return self.request("GET", "/annotations/get_template", params={"template_id": template_id}, **kw)

    def project_files(self, project_id: str, *, page_size: int = 500, **kw: Any) -> list[dict[str, Any]]:
        """Every file of the project (``POST /search/project_files``, following ``next_search_after``)."""
        out: list[dict[str, Any]] = []
        after: Any = None
        seen: set[str] = set()
        for _ in range(100_000):
            resp = self.request("POST", "/search/project_files", params={"project_id": project_id},
                                json={"search_queries": {}, "size": page_size, "next_search_after": after},
                                project_id=project_id, **kw)
            raw = resp.get("files", resp.get("data"))
            files: list[Any] = raw if isinstance(raw, list) else []
            out.extend(dict(f) for f in files if isinstance(f, Mapping))
            after = resp.get("next_search_after")
            if not files or after is None or str(after) in seen:
                break
            seen.add(str(after))
        return out

    def upload_answers(self, project_id: str, file: Path, *, answer_format: str = "coco_json",
                       conf_bucket: str | None = None, **kw: Any) -> str:
        """``POST /actions/upload_answers`` (multipart); returns the job id."""
        if answer_format not in ANSWER_FORMATS:
            raise UploadError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, not {answer_format!r}")
        params = {"project_id": project_id, "answer_format": answer_format}
        if conf_bucket:
            params["conf_bucket"] = conf_bucket
        resp = self.request("POST", "/actions/upload_answers", params=params, file=Path(file), email=True,
                            project_id=project_id, **kw)
        job = resp.get("job_id")
        if not job:
            raise UploadError("Labellerr accepted the file but returned no job id")
        return str(job)

    def upload_status(self, project_id: str, job_id: str, **kw: Any) -> dict[str, Any]:
        return self.request("GET", "/actions/upload_answers_status",
                            params={"project_id": project_id, "job_id": job_id}, project_id=project_id, **kw)

    def wait_job(self, project_id: str, job_id: str, *, deadline: float | None = None,
                 cancel: threading.Event | None = None) -> dict[str, Any]:
        """Poll the job until it is completed (returned) or failed (JobFailedError), or the deadline passes."""
        polls = 0
        while True:
            resp = self.upload_status(project_id, job_id, deadline=deadline, cancel=cancel)
            polls += 1
            status = str(resp.get("status", "")).lower()
            if status == "completed":
                return resp
            if status == "failed":
                raw_meta = resp.get("metadata")
                meta: Mapping[str, Any] = raw_meta if isinstance(raw_meta, Mapping) else {}
                reason = (meta.get("error") or meta.get("message") or resp.get("error") or resp.get("message")
                          or "no reason given")
                raise JobFailedError(f"Labellerr job {job_id} failed: {self._msg(str(reason))[:500]}",
                                     hint="fix the file (prelabel validate) and upload again")
            # small jobs finish in a moment: poll after 0.25 s, 0.5 s, 1 s, ... up to poll_interval
            delay = min(self.poll_interval, 0.125 * 2 ** polls)
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise UploadTimeoutError(
                        f"Labellerr job {job_id} still {status or 'running'} at the timeout",
                        hint="it may still complete: run the same upload again to poll it (the journal keeps its id)")
                delay = min(delay, remaining)
            if cancel is not None:
                if cancel.wait(delay):
                    raise UploadCancelledError(f"Labellerr job {job_id}: stopped waiting (cancelled); the job "
                                               "may still complete on the server")
            else:
                time.sleep(delay)


def _as_names(v: Any) -> list[str]:
    return [str(x) for x in v] if isinstance(v, list) else []


class LabellerrTarget:
    """``labellerr:PROJECT_ID``: uploads each shard with the SDK's flow and waits for its job.

    ``match``: optional file-name rules (:class:`~prelabel.upload.match.MatchRules`). Labellerr matches file
    names on its side, by its own rules, so a COCO name that only these rules match (a name map, a stripped
    prefix, another case or extension) is sent renamed to the project's file name; the result reports it under
    its own name, counted in ``matched_by`` under the rule.
    """

    synchronous = False

    def __init__(self, project_id: str, *, credentials: Credentials | None = None, base_url: str | None = None,
                 client: LabellerrClient | None = None, poll_interval: float = 2.0, retries: int = 3,
                 backoff: float = 1.0, timeout: float = 60.0, conf_bucket: str | None = None,
                 match: MatchRules | None = None) -> None:
        if not project_id:
            raise UploadError("labellerr: a project id is required (labellerr:PROJECT_ID)")
        self.project_id = project_id
        if client is None:
            if credentials is None:
                creds, url = load_credentials(base_url=base_url)
            else:
                creds = credentials
                url = (base_url or os.environ.get("LABELLERR_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
            client = LabellerrClient(creds, base_url=url, timeout=timeout, retries=retries, backoff=backoff,
                                     poll_interval=poll_interval)
        self.client = client
        self.conf_bucket = conf_bucket
        self.match = match or MatchRules()
        self._assets: list[str] | None = None
        self._categories: tuple[list[str] | None] | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, project_id: str, **kw: Any) -> LabellerrTarget:
        """Credentials from LABELLERR_API_KEY / _SECRET / _CLIENT_ID or the config file; URL from LABELLERR_BASE_URL."""
        return cls(project_id, **kw)

    def __repr__(self) -> str:
        return f"LabellerrTarget({self.describe()!r}, base_url={self.client.base_url!r})"

    def describe(self) -> str:
        return f"labellerr:{self.project_id}"

    def project(self) -> dict[str, Any]:
        return self.client.get_project(self.project_id)

    def categories(self) -> list[str] | None:
        with self._lock:
            if self._categories is None:
                self._categories = (self._read_categories(),)
            return self._categories[0]

    def _read_categories(self) -> list[str] | None:
        tid = self.project().get("annotation_template_id")
        if not tid:
            return None
        tmpl = self.client.get_template(str(tid))
        from ..converters.reconcile import load_schema
        from ..errors import CategoryError

        try:   # drawing questions only: classification questions (radio, text, ...) are not categories
            schema = load_schema(tmpl)
        except CategoryError:
            return None
        return [str(n) for n in schema["name"]] if schema is not None and len(schema) else None

    def assets(self) -> list[str]:
        with self._lock:
            if self._assets is None:
                files = self.client.project_files(self.project_id)
                self._assets = [str(f.get("file_name") or f.get("name") or "") for f in files
                                if f.get("file_name") or f.get("name")]
            return list(self._assets)

    def renames(self, coco: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
        """COCO file name -> (the project's file name, rule) for the names only the ``match`` rules match."""
        if not self.match.active:
            return {}
        names = [str(im.get("file_name", "")) for im in coco.get("images") or []]
        m = match_names(names, self.assets(), rules=self.match)
        return {n: (a, m.how[n]) for n, a in m.matched.items() if m.how.get(n) in USER_RULES and a != n}

    def start_shard(self, coco: dict[str, Any], *, index: int, path: Path, deadline: float | None,
                    cancel: threading.Event) -> str:
        renames = self.renames(coco)
        if not renames:
            return self.client.upload_answers(self.project_id, Path(path), conf_bucket=self.conf_bucket,
                                              deadline=deadline, cancel=cancel)
        doc = dict(coco)
        doc["images"] = [{**im, "file_name": renames[str(im.get("file_name", ""))][0]}
                         if str(im.get("file_name", "")) in renames else im for im in coco.get("images") or []]
        tmp = Path(tempfile.mkdtemp(prefix="prelabel-renamed-"))
        try:
            sent = tmp / Path(path).name
            sent.write_bytes(orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY))
            return self.client.upload_answers(self.project_id, sent, conf_bucket=self.conf_bucket,
                                              deadline=deadline, cancel=cancel)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def finish_shard(self, job_id: str, *, index: int, path: Path, coco: dict[str, Any] | None,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        try:
            resp = self.client.wait_job(self.project_id, job_id, deadline=deadline, cancel=cancel)
        except JobFailedError as e:
            return ShardResult(index=index, path=str(path), status="failed", activity_id=job_id, errors=[str(e)])
        return self._result(resp, job_id=job_id, index=index, path=path, coco=coco)

    def upload_shard(self, coco: dict[str, Any], *, index: int, path: Path, dry_run: bool,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        if dry_run:
            from .resolve import resolve_shard

            return resolve_shard(coco, assets=self.assets(), categories=self.categories(),
                                 match=self.match).shard_result(index=index, path=str(path))
        job = self.start_shard(coco, index=index, path=path, deadline=deadline, cancel=cancel)
        return self.finish_shard(job, index=index, path=path, coco=coco, deadline=deadline, cancel=cancel)

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ reading the job's metadata
    def _result(self, resp: Mapping[str, Any], *, job_id: str, index: int, path: Path,
                coco: Mapping[str, Any] | None) -> ShardResult:
        raw = resp.get("metadata")
        meta_: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        not_updated = _as_names(meta_.get("files_not_updated")) or _as_names(meta_.get("unmatched_files"))
        ignored = sorted(set(_as_names(meta_.get("questions_ignored"))))
        activity = str(resp.get("activity_id") or meta_.get("activity_id") or job_id)
        images = list((coco or {}).get("images") or [])
        names = [str(im.get("file_name", "")) for im in images]
        renames = self.renames(coco) if coco is not None and names else {}
        sent = [renames[n][0] if n in renames else n for n in names]
        # which of our names the server did not match (it may report them with its own prefix)
        unmatched_names: list[str] = []
        if not_updated:
            m = match_names(sent, not_updated)
            bad = {x for x in sent if x in m.matched or x in not_updated}
            unmatched_names = [n for n, x in zip(names, sent, strict=True) if x in bad]
        matched_by: dict[str, int] = {}
        for n in set(renames) - set(unmatched_names):
            rule = renames[n][1]
            matched_by[rule] = matched_by.get(rule, 0) + names.count(n)
        unmatched = self._hints(unmatched_names) if unmatched_names else []
        if not unmatched and not_updated and not names:
            unmatched = [UnmatchedFile(n) for n in not_updated]
        matched_files = meta_.get("matched_files")
        if isinstance(matched_files, list):
            files_matched = len(matched_files)
        elif isinstance(matched_files, int):
            files_matched = matched_files
        else:
            files_matched = len(names) - len(unmatched_names)
        total = meta_.get("total_annotations")
        if isinstance(total, int) and not isinstance(total, bool):
            applied = total
        else:
            bad_imgs = {int(im["id"]) for im, n in zip(images, names, strict=True) if n in set(unmatched_names)}
            cats = {int(c["id"]): str(c.get("name")) for c in (coco or {}).get("categories") or []}
            applied = sum(1 for a in (coco or {}).get("annotations") or []
                          if int(a["image_id"]) not in bad_imgs and cats.get(int(a["category_id"])) not in ignored)
        return ShardResult(index=index, path=str(path), status="completed", activity_id=activity,
                           annotations_applied=applied, files_matched=files_matched, files_not_matched=unmatched,
                           categories_ignored=ignored, matched_by=matched_by)

    def _hints(self, names: list[str]) -> list[UnmatchedFile]:
        """Closest project file names for the names Labellerr did not match (and which rule would match them)."""
        try:
            assets = self.assets()
        except UploadError:
            return [UnmatchedFile(n) for n in names]
        m = match_names(names, assets, rules=self.match)
        hints = {u.name: u for u in m.unmatched}
        out = []
        for n in names:
            if n in hints:
                out.append(hints[n])
            else:  # our rules match it but the service did not: the user must rename it
                out.append(UnmatchedFile(n, [m.matched[n]], "service",
                                         f"the service did not match it ({m.how.get(n, 'exact')} match here): "
                                         "rename the image in the project or in the COCO file"))
        return out
