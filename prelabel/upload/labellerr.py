"""The Labellerr target (``labellerr:PROJECT_ID``): the official SDK's HTTP flow, without its duplicates.

The flow (what the official SDK, Labellerr/SDKPython, sends): ``POST /actions/upload_answers`` (multipart, one
part ``file``, ``answer_format=coco_json``) returns a job id; ``GET /actions/upload_answers_status`` is polled (after
0.25 s, 0.5 s, 1 s, ..., then every ``poll_interval`` seconds) until the job is ``completed`` or ``failed`` or the
deadline passes. Every call carries the headers ``api_key``, ``api_secret``, ``client_id``, ``source: sdk``,
``origin`` (and ``email_id`` = the api key on the upload, as the SDK does) and the query parameters ``client_id``
and a ``uuid``, the same one for every try of a call.

Retries, by what a failure proves:

- the upload POST is re-sent only when the file provably was not taken: a connect error, 429 or 503
  (``Retry-After`` honoured). A read timeout, a dropped connection or a 500 / 502 / 504 may come after the
  service took the job: the shard fails with :class:`~prelabel.errors.UnconfirmedUploadError`, whose message says
  it may have been applied and how to check; the journal keeps it so a re-run does not send it blindly;
- a 413 raises :class:`~prelabel.errors.ShardTooLargeError` (nothing was taken: the driver splits the shard);
- the other calls read and change nothing, and are retried on any 5xx, 429, timeout or connection error; an
  outage of the status route is waited out for up to ``poll_outage`` seconds, then the shard fails with its
  job id kept in the journal, so the re-run polls that job.

The project is checked once up front (``GET /projects/project/{id}``, cached): only that route's 404 means
"project not found". Errors: 401/403 -> :class:`~prelabel.errors.AuthError`, unknown project ->
:class:`~prelabel.errors.NotFoundError`, a failed job -> :class:`~prelabel.errors.JobFailedError` (its reason, or
the reply itself), the deadline -> :class:`~prelabel.errors.UploadTimeoutError`. No credential ever appears in a
message, a repr, a log line or a kept reply.

Example:
    >>> from prelabel.upload.credentials import Credentials
    >>> t = LabellerrTarget("p1", credentials=Credentials("KEY-1", "SECRET-2", "77"), base_url="http://127.0.0.1:9")
    >>> t
    LabellerrTarget('labellerr:p1', base_url='http://127.0.0.1:9')
    >>> t.describe(), t.default_workers, t.max_file_size
    ('labellerr:p1', 1, 24998000)
    >>> LabellerrTarget("p1", credentials=Credentials("KEY-1", "SECRET-2", "77"), conf_bucket="hi")
    Traceback (most recent call last):
    ...
    prelabel.errors.UsageError: conf_bucket must be one of low, medium, high, not 'hi'
"""

from __future__ import annotations

import email.utils
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

from ..converters.reconcile import load_schema
from ..errors import (
    AuthError,
    CategoryError,
    JobFailedError,
    NotFoundError,
    ShardTooLargeError,
    UnconfirmedUploadError,
    UploadCancelledError,
    UploadError,
    UploadTimeoutError,
    UsageError,
    option,
)
from .base import ShardResult
from .credentials import AUTH_HINT, DEFAULT_BASE_URL, Credentials, load_credentials, redact
from .labellerr_reply import failure_reason, inner, read_result, redact_reply
from .match import MatchResult, MatchRules, match_names
from .resolve import resolve_shard

__all__ = ["ANSWER_FORMATS", "CONF_BUCKETS", "MAX_UPLOAD_BYTES", "LabellerrClient", "LabellerrTarget"]

log = logging.getLogger("prelabel.upload.labellerr")

ANSWER_FORMATS = ("json", "coco_json", "csv", "png")
CONF_BUCKETS = ("low", "medium", "high")
ORIGIN = "https://pro.labellerr.com"
MAX_RETRY_AFTER = 300.0
#: the documented 25 MB per annotation file: 25,000,000 bytes, the multipart wrapper included
MAX_UPLOAD_BYTES = 25_000_000
#: room left for the multipart wrapper (boundaries, the part's headers and file name: a few hundred bytes)
MULTIPART_MARGIN = 2_000
#: the read timeout of the upload POST: a 25 MB file may be read and stored before the reply starts
UPLOAD_READ_TIMEOUT = 300.0


def check_conf_bucket(conf_bucket: str | None) -> str | None:
    """``conf_bucket`` if it is None or one of low / medium / high, else a UsageError."""
    if conf_bucket is not None and conf_bucket not in CONF_BUCKETS:
        raise UsageError(f"conf_bucket must be one of {', '.join(CONF_BUCKETS)}, not {conf_bucket!r}",
                         hint=f"{option('conf_bucket', 'high')} (or low, medium)")
    return conf_bucket


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


def _retry_after(resp: httpx.Response) -> float | None:
    """The ``Retry-After`` header in seconds (a number or an HTTP date), capped at MAX_RETRY_AFTER."""
    ra = resp.headers.get("retry-after")
    if ra is None:
        return None
    try:
        secs = float(ra)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(ra)
        except (TypeError, ValueError):
            return None
        secs = when.timestamp() - time.time()
    return min(MAX_RETRY_AFTER, max(0.0, secs))


class _Transient(UploadError):
    """A call that kept failing in a way that may pass (5xx, 429, timeouts, connection errors)."""


class _JobUnknown(UploadError):
    """The status route answered 404: the service does not know the job (not: the project is missing)."""


_ROUTES = {"/actions/upload_answers": "upload", "/actions/upload_answers_status": "status",
           "/search/project_files": "project files", "/annotations/get_template": "template"}


class LabellerrClient:
    """The HTTP calls of the Labellerr API that the upload needs (httpx, one connection pool)."""

    def __init__(self, credentials: Credentials, *, base_url: str, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0, poll_interval: float = 2.0, poll_outage: float = 120.0,
                 upload_read_timeout: float = UPLOAD_READ_TIMEOUT,
                 transport: httpx.BaseTransport | None = None) -> None:
        self._creds = credentials
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.poll_interval = poll_interval
        self.poll_outage = poll_outage
        self.upload_read_timeout = upload_read_timeout
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

    def redact_reply(self, doc: Mapping[str, Any]) -> dict[str, Any]:
        """A reply with every credential value replaced by ``***`` (to keep it in a result)."""
        return redact_reply(doc, self._creds)

    def _timeout(self, *, upload: bool, remaining: float | None) -> httpx.Timeout:
        read = self.upload_read_timeout if upload else self.timeout
        t = httpx.Timeout(self.timeout, read=read)
        if remaining is None:
            return t
        clip = max(0.05, remaining)
        return httpx.Timeout(min(self.timeout, clip), read=min(read, clip))

    def _refusal(self, resp: httpx.Response, *, what: str, path: str, project_id: str | None) -> UploadError:
        """The error for a 4xx reply, worded by route: only the project route's 404 means no such project."""
        status, msg = resp.status_code, self._msg(_body_message(resp))
        route = "project" if path.startswith("/projects/project/") else _ROUTES.get(path, path)
        if status in (401, 403):
            extra = f" or they give no access to project {project_id}" if project_id and status == 403 else ""
            return AuthError(f"Labellerr rejected the credentials ({status}){extra}: {msg}", hint=AUTH_HINT)
        if status == 413:
            return ShardTooLargeError(f"Labellerr refused the file as too large (413): {msg}")
        if route == "project" and (status == 404 or (status == 400 and "not found" in msg.lower())):
            return NotFoundError(f"Labellerr: project {project_id} not found ({status}: {msg})",
                                 hint="check the project id in the Labellerr web app (Projects page)")
        if route == "status" and status == 404:
            return _JobUnknown(f"Labellerr does not know this job (404 from the status route: {msg})")
        return UploadError(f"Labellerr refused {what} ({status}, the {route} route): {msg}")

    def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None,
                json: Any = None, file: Path | None = None, email: bool = False, project_id: str | None = None,
                deadline: float | None = None, cancel: threading.Event | None = None,
                whole: bool = False) -> dict[str, Any]:
        """One API call with retries; returns the reply's ``response`` object (``whole``: the whole body).

        A call with a ``file`` (the upload) is retried only on a connect error, 429 or 503; any other failure
        after the file was sent raises UnconfirmedUploadError. One ``uuid`` for every try of the call.
        """
        what = f"{method} {path}"
        last = ""
        connect_failed = False
        q = {"client_id": self._creds.client_id, "uuid": str(uuid.uuid4()), **(params or {})}
        for attempt in range(self.retries + 1):
            if cancel is not None and cancel.is_set():
                raise UploadCancelledError(f"Labellerr: {what} cancelled")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise UploadTimeoutError(f"Labellerr: {what} did not finish within the timeout"
                                         + (f" (last error: {last})" if last else ""),
                                         hint="run the same upload again: the journal resumes where it stopped "
                                              "(started jobs are polled, not sent again)")
            timeout = self._timeout(upload=file is not None, remaining=remaining)
            retry_after: float | None = None
            unconfirmed = ""
            try:
                if file is not None:
                    with open(file, "rb") as fh:   # re-opened for every try: the stream of a failed try is spent
                        resp = self._http.request(method, path, params=q, headers=self._headers(email=email),
                                                  files={"file": (file.name, fh, "application/octet-stream")},
                                                  timeout=timeout)
                else:
                    resp = self._http.request(method, path, params=q, headers=self._headers(email=email),
                                              json=json, timeout=timeout)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as e:
                last = f"cannot connect to {self.base_url} ({type(e).__name__})"   # nothing was sent
                connect_failed = True
            except httpx.TimeoutException as e:
                last = f"timed out ({type(e).__name__})"
                unconfirmed = "no reply came within the read timeout"
            except httpx.TransportError as e:
                last = f"connection error ({type(e).__name__})"
                unconfirmed = f"the connection broke before the reply ({type(e).__name__})"
            except OSError as e:
                raise UploadError(f"cannot read {file}: {e.strerror or e}") from None
            else:
                status = resp.status_code
                if status in (429, 503) or (status >= 500 and file is None):
                    last = f"HTTP {status}: {self._msg(_body_message(resp))}"
                    retry_after = _retry_after(resp)
                elif status >= 500:
                    last = f"HTTP {status}: {self._msg(_body_message(resp))}"
                    unconfirmed = f"the service answered {last}"
                elif status >= 400:
                    raise self._refusal(resp, what=what, path=path, project_id=project_id)
                else:
                    try:
                        doc = resp.json()
                    except ValueError:
                        raise UploadError(f"Labellerr: {what} answered {status} with a body that is not JSON") from None
                    if not isinstance(doc, Mapping):
                        raise UploadError(f"Labellerr: {what} answered an unexpected body")
                    if not isinstance(doc.get("response"), Mapping) and doc.get("error"):
                        raise UploadError(f"Labellerr: {what} failed: {self._msg(str(doc['error']))[:300]}")
                    return dict(doc) if whole else inner(doc)
            if unconfirmed and file is not None:
                raise UnconfirmedUploadError(
                    f"Labellerr: {unconfirmed} after the file {file.name} was sent (request uuid {q['uuid']}), "
                    "so it may have been applied; it was not sent again")
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
        hint = ("the service may be down or rate-limiting; re-run the same command later "
                "(the journal resumes where it stopped)")
        if connect_failed:
            env = os.environ.get("LABELLERR_BASE_URL", "").rstrip("/")
            where = (f"the address comes from LABELLERR_BASE_URL={env}" if env == self.base_url
                     else "set LABELLERR_BASE_URL to the service's address" if env == ""
                     else "the address was given as base_url")
            hint = f"nothing answers at {self.base_url}: {where} (is 'prelabel serve' running there?)"
        raise _Transient(f"Labellerr: {what} failed after {self.retries + 1} tries: {last}", hint=hint)

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
        """``POST /actions/upload_answers`` (multipart); returns the job id.

        A file over 25,000,000 bytes with its multipart wrapper is refused here (ShardTooLargeError), unsent."""
        if answer_format not in ANSWER_FORMATS:
            raise UploadError(f"answer_format must be one of {', '.join(ANSWER_FORMATS)}, not {answer_format!r}")
        params = {"project_id": project_id, "answer_format": answer_format}
        if check_conf_bucket(conf_bucket):
            params["conf_bucket"] = str(conf_bucket)
        file = Path(file)
        try:
            size = file.stat().st_size
        except OSError as e:
            raise UploadError(f"cannot read {file}: {e.strerror or e}") from None
        if size + MULTIPART_MARGIN > MAX_UPLOAD_BYTES:
            raise ShardTooLargeError(f"{file.name} is {size:,} bytes: with its multipart wrapper it is over "
                                     f"Labellerr's {MAX_UPLOAD_BYTES:,}-byte limit (not sent)")
        resp = self.request("POST", "/actions/upload_answers", params=params, file=file, email=True,
                            project_id=project_id, **kw)
        job = resp.get("job_id")
        if not job:
            raise UnconfirmedUploadError("Labellerr answered the upload without a job id, so it may have been "
                                         "applied; it was not sent again")
        return str(job)

    def upload_status(self, project_id: str, job_id: str, **kw: Any) -> dict[str, Any]:
        """``GET /actions/upload_answers_status``: the whole reply (``{"message", "response", "error"}``)."""
        return self.request("GET", "/actions/upload_answers_status", whole=True,
                            params={"project_id": project_id, "job_id": job_id}, project_id=project_id, **kw)

    def wait_job(self, project_id: str, job_id: str, *, deadline: float | None = None,
                 cancel: threading.Event | None = None) -> dict[str, Any]:
        """Poll the job until it is completed (its whole final reply is returned) or failed (JobFailedError, the
        reply redacted in ``.reply``), or the deadline passes. A status route that keeps failing (5xx, 429,
        timeouts) is polled again for up to ``poll_outage`` seconds before the error is raised."""
        polls = 0
        down_since: float | None = None
        while True:
            try:
                doc = self.upload_status(project_id, job_id, deadline=deadline, cancel=cancel)
            except _Transient as e:
                now = time.monotonic()
                down_since = now if down_since is None else down_since
                if now - down_since >= self.poll_outage:
                    raise UploadError(f"Labellerr: cannot read the status of job {job_id}: {e}") from None
                log.info("Labellerr job %s: the status route fails (%s); polling again", job_id, e)
                status = "unknown"
            else:
                down_since = None
                resp = inner(doc)
                status = str(resp.get("status", "")).lower()
                if status == "completed":
                    return doc
                if status == "failed":
                    reply = self.redact_reply(doc)
                    raise JobFailedError(f"Labellerr job {job_id} failed: {failure_reason(reply)}",
                                         hint="fix the file (prelabel validate) and upload again", reply=reply)
            polls += 1
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


class LabellerrTarget:
    """``labellerr:PROJECT_ID``: uploads each shard with the SDK's flow and waits for its job.

    Labellerr matches file names exactly and case-sensitively. So every image that matches a project file
    other than exactly, by whichever rule (a folder prefix, Label Studio's renaming, and the optional ``match``
    rules: a name map, ``--strip-prefix``, case, extension), is sent renamed to the project's exact file name
    (in a temporary copy of the shard); the result names it by its COCO name and counts it in ``matched_by``
    under its rule. ``conf_bucket``: ``low``, ``medium`` or ``high`` (sent as the SDK does).

    ``default_workers`` (1: one shard at a time, as the SDK) and ``max_file_size`` (under the 25,000,000-byte
    limit) are the driver's defaults for this target.
    """

    synchronous = False
    default_workers = 1
    max_file_size = MAX_UPLOAD_BYTES - MULTIPART_MARGIN

    def __init__(self, project_id: str, *, credentials: Credentials | None = None, base_url: str | None = None,
                 client: LabellerrClient | None = None, poll_interval: float = 2.0, retries: int = 3,
                 backoff: float = 1.0, timeout: float = 60.0, conf_bucket: str | None = None,
                 match: MatchRules | None = None, poll_outage: float = 120.0,
                 upload_read_timeout: float = UPLOAD_READ_TIMEOUT) -> None:
        if not project_id:
            raise UploadError("labellerr: a project id is required (labellerr:PROJECT_ID)")
        self.project_id = project_id
        self.conf_bucket = check_conf_bucket(conf_bucket)
        if client is None:
            if credentials is None:
                creds, url = load_credentials(base_url=base_url)
            else:
                creds = credentials
                url = (base_url or os.environ.get("LABELLERR_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
            client = LabellerrClient(creds, base_url=url, timeout=timeout, retries=retries, backoff=backoff,
                                     poll_interval=poll_interval, poll_outage=poll_outage,
                                     upload_read_timeout=upload_read_timeout)
        self.client = client
        self.match = match or MatchRules()
        self._project: dict[str, Any] | None = None
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
        """The project (``GET /projects/project/{id}``), read once: its 404 is "project not found"."""
        with self._lock:
            if self._project is None:
                self._project = self.client.get_project(self.project_id)
            return dict(self._project)

    def categories(self) -> list[str] | None:
        project = self.project()
        with self._lock:
            if self._categories is None:
                self._categories = (self._read_categories(project),)
            return self._categories[0]

    def _read_categories(self, project: Mapping[str, Any]) -> list[str] | None:
        tid = project.get("annotation_template_id")
        if not tid:
            return None
        tmpl = self.client.get_template(str(tid))
        try:   # drawing questions only: classification questions (radio, text, ...) are not categories
            schema = load_schema(tmpl)
        except CategoryError:
            return None
        return [str(n) for n in schema["name"]] if schema is not None and len(schema) else None

    def assets(self) -> list[str]:
        self.project()
        with self._lock:
            if self._assets is None:
                files = self.client.project_files(self.project_id)
                self._assets = [str(f.get("file_name") or f.get("name") or "") for f in files
                                if f.get("file_name") or f.get("name")]
            return list(self._assets)

    def renames(self, coco: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
        """COCO file name -> (the project's exact file name, rule), for every name that some rule matches to a
        project file that is not the very same string (the service would not match it)."""
        return self._matches(coco).renamed()

    def _matches(self, coco: Mapping[str, Any]) -> MatchResult:
        """The shard's image names matched to the project's file names (read only when there are names)."""
        names = [str(im.get("file_name", "")) for im in coco.get("images") or []]
        return match_names(names, self.assets(), rules=self.match) if names else MatchResult()

    def start_shard(self, coco: dict[str, Any], *, index: int, path: Path, deadline: float | None,
                    cancel: threading.Event) -> str:
        self.project()   # once, up front: a wrong project id is "project not found" before anything is sent
        renames = self.renames(coco)
        try:
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
        except UnconfirmedUploadError as e:
            sample = [renames.get(n, (n, ""))[0] for n in
                      (str(im.get("file_name", "")) for im in (coco.get("images") or [])[:3])]
            raise UnconfirmedUploadError(
                f"{e}. Check in the Labellerr web app whether project {self.project_id} shows these "
                f"pre-annotations (images {', '.join(sample)}{', ...' if len(coco.get('images') or []) > 3 else ''})"
                f"; if it does not, run the same upload again with {option('resend_unconfirmed', True)}") from None

    def finish_shard(self, job_id: str, *, index: int, path: Path, coco: dict[str, Any] | None,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        try:
            doc = self.client.wait_job(self.project_id, job_id, deadline=deadline, cancel=cancel)
        except _JobUnknown as e:   # the job was sent (its id came back): whether it was applied is unknown
            raise UnconfirmedUploadError(
                f"{e}: job {job_id} was sent and may have been applied. Check in the Labellerr web app whether "
                f"project {self.project_id} shows these pre-annotations; if it does not, run the same upload "
                f"again with {option('resend_unconfirmed', True)}") from None
        except JobFailedError as e:
            return ShardResult(index=index, path=str(path), status="failed", activity_id=job_id, errors=[str(e)],
                               service_reply=e.reply, applied_source="service")
        matches: MatchResult | None
        try:   # the names this shard was sent under (the project's file list is read once, cached)
            matches = self._matches(coco) if coco is not None else MatchResult()
        except AuthError:
            raise
        except UploadError as e:   # the result then names renamed images as they were sent, without hints
            log.warning("Labellerr: cannot read the project's file names (%s)", e)
            matches = None
        return read_result(self.client.redact_reply(doc), job_id=job_id, index=index, path=path, coco=coco,
                           renames=matches.renamed() if matches is not None else {}, matches=matches)

    def upload_shard(self, coco: dict[str, Any], *, index: int, path: Path, dry_run: bool,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        if dry_run:   # what the service will do: exact names, and the names prelabel's rules rename
            r = resolve_shard(coco, assets=self.assets(), categories=self.categories(),
                              match=self.match).shard_result(index=index, path=str(path))
            r.applied_source = "estimate"
            return r
        job = self.start_shard(coco, index=index, path=path, deadline=deadline, cancel=cancel)
        return self.finish_shard(job, index=index, path=path, coco=coco, deadline=deadline, cancel=cancel)

    def close(self) -> None:
        self.client.close()
