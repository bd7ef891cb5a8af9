"""The Labellerr SDK's own pre-annotation calls, from prelabel: migrating a script is one changed import.

A script written for the official SDK (``from labellerr.client import LabellerrClient`` ...) runs unchanged with::

    from prelabel.labellerr import LabellerrClient, LabellerrProject, LabellerrError

- ``LabellerrClient(api_key, api_secret, client_id=None, *, base_url=None)``: missing credentials and the base URL
  come from the environment or the config file, as everywhere in prelabel (``LABELLERR_API_KEY``,
  ``LABELLERR_API_SECRET``, ``LABELLERR_CLIENT_ID``, ``LABELLERR_BASE_URL``).
- ``LabellerrProject(client, project_id).upload_preannotations(annotation_format, annotation_file,
  conf_bucket=None, _async=False)`` returns the job's final status reply (the whole JSON body, credentials
  redacted) or, with ``_async=True``, a ``concurrent.futures.Future`` of it, returned at once (the SDK's own
  Future only comes back after the job ended). ``preannotation_job_status_async(job_id)`` waits for an
  existing job, as a Future.
- the older ``LabellerrClient.upload_preannotation_by_project_id(project_id, client_id, annotation_format,
  annotation_file)`` and ``upload_preannotation_by_project_id_async(...)``.

A failed job, or any failed upload, raises :class:`LabellerrError` (an :class:`~prelabel.errors.UploadError`;
``reply`` holds the final status reply when there is one, ``__cause__`` the precise prelabel error).

Beyond the SDK: ``coco_json`` files go through :func:`prelabel.upload.upload`: validated first, cut into shards
under 25,000,000 bytes (each shard's job is waited for; the reply of several shards is
``{"message": "200: Success", "response": {"status": "completed", "job_ids": [...], "shards": [reply, ...]},
"error": None}``), resumable through the journal beside the file, and never re-sent when the service may already
have taken it. ``annotation_format`` may also name a source format prelabel reads (``yolo``, ``voc``, ``cvat``,
``labelstudio``, ``predictions``, ``coco``): the file or folder is converted to COCO first. The SDK's ``json``,
``csv`` and ``png`` files are sent as they are.

Example (against ``prelabel serve``'s stand-in server, on a free port of 127.0.0.1):
    >>> import json, tempfile, pathlib
    >>> from prelabel.upload.credentials import Credentials
    >>> from prelabel.upload.local import LocalProject
    >>> from prelabel.upload.server import LabellerrServer
    >>> tmp = pathlib.Path(tempfile.mkdtemp())
    >>> (tmp / "imgs").mkdir()
    >>> _ = (tmp / "imgs" / "a.png").write_bytes(b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00\\x00\\rIHDR\\x00\\x00\\x00\\x08\\x00\\x00\\x00\\x08" + bytes(5))
    >>> project, _ = LocalProject.init(tmp / "p", images=tmp / "imgs", categories=["cat"], project_id="p1")
    >>> coco = {"images": [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
    ...         "categories": [{"id": 1, "name": "cat"}],
    ...         "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 2, 2], "area": 4, "iscrowd": 0}]}
    >>> _ = (tmp / "pre.json").write_text(json.dumps(coco))
    >>> with LabellerrServer(project, credentials=Credentials("my-key", "my-secret", "my-client")) as srv:
    ...     client = LabellerrClient("my-key", "my-secret", "my-client", base_url=srv.url)
    ...     reply = LabellerrProject(client, "p1").upload_preannotations("coco_json", str(tmp / "pre.json"))
    ...     future = LabellerrProject(client, "p1").upload_preannotations("coco_json", str(tmp / "pre.json"),
    ...                                                                  _async=True)
    ...     again = future.result(timeout=60)
    >>> reply["response"]["status"], reply["response"]["metadata"]["files_not_updated"], again["response"]["status"]
    ('completed', [], 'completed')
"""

from __future__ import annotations

import concurrent.futures as cf
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from .adapters import FORMATS
from .errors import JobFailedError, PrelabelError, UploadError, UsageError
from .pipeline import convert
from .upload.credentials import Credentials, load_credentials
from .upload.driver import run_in_thread, upload
from .upload.labellerr import ANSWER_FORMATS, LabellerrTarget, check_conf_bucket
from .upload.labellerr import LabellerrClient as _Http

__all__ = ["LabellerrClient", "LabellerrError", "LabellerrProject"]

T = TypeVar("T")
_COCO = ("coco_json", "coco")


class LabellerrError(UploadError):
    """The SDK's error: a failed job or upload. ``reply``: the final status reply (redacted), when there is one."""

    def __init__(self, message: str, *, hint: str = "", reply: dict[str, Any] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reply = reply


def _in_background(fn: Callable[[], T]) -> cf.Future[T]:
    """A Future of ``fn()``, returned at once; ``fn`` runs on a thread of its own."""
    fut: cf.Future[T] = cf.Future()
    return run_in_thread(fut, fn, name="prelabel-labellerr-sdk")


def _sdk_errors(fn: Callable[[], T]) -> T:
    """Run ``fn``, raising every prelabel error as a LabellerrError (what SDK scripts catch)."""
    try:
        return fn()
    except LabellerrError:
        raise
    except JobFailedError as e:
        raise LabellerrError(str(e), hint=e.hint, reply=e.reply) from e
    except PrelabelError as e:
        raise LabellerrError(str(e), hint=e.hint) from e


class LabellerrClient:
    """The SDK's client: the credentials (never shown) and the service's base URL."""

    def __init__(self, api_key: str | None = None, api_secret: str | None = None, client_id: str | None = None,
                 *, base_url: str | None = None) -> None:
        self._api_key, self._api_secret, self._client_id = api_key, api_secret, client_id
        self._base_url = base_url

    def __repr__(self) -> str:
        return "LabellerrClient()" if self._base_url is None else f"LabellerrClient(base_url={self._base_url!r})"

    def _credentials(self, client_id: str | None = None) -> tuple[Credentials, str]:
        # the older SDK calls give the client id with each upload
        return load_credentials(api_key=self._api_key, api_secret=self._api_secret,
                                client_id=client_id or self._client_id, base_url=self._base_url)

    def _upload(self, project_id: str, annotation_format: str, annotation_file: str | Path, *,
                conf_bucket: str | None = None, client_id: str | None = None) -> dict[str, Any]:
        return _sdk_errors(lambda: _upload(self._credentials(client_id), str(project_id), annotation_format,
                                           Path(annotation_file), conf_bucket=conf_bucket))

    def upload_preannotation_by_project_id(self, project_id: str, client_id: str | None, annotation_format: str,
                                           annotation_file: str | Path) -> dict[str, Any]:
        """The older SDK call: upload and wait; the final status reply."""
        return self._upload(project_id, annotation_format, annotation_file, client_id=client_id)

    def upload_preannotation_by_project_id_async(self, project_id: str, client_id: str | None,
                                                 annotation_format: str,
                                                 annotation_file: str | Path) -> cf.Future[dict[str, Any]]:
        """The older SDK call, as a Future returned at once."""
        return _in_background(lambda: self._upload(project_id, annotation_format, annotation_file,
                                                   client_id=client_id))


class LabellerrProject:
    """The SDK's project: ``upload_preannotations`` and ``preannotation_job_status_async``."""

    def __init__(self, client: LabellerrClient, project_id: str) -> None:
        self.client = client
        self.project_id = str(project_id)

    def __repr__(self) -> str:
        return f"LabellerrProject(project_id={self.project_id!r})"

    def upload_preannotations(self, annotation_format: str, annotation_file: str | Path,
                              conf_bucket: str | None = None,
                              _async: bool = False) -> dict[str, Any] | cf.Future[dict[str, Any]]:
        """Upload pre-annotations and wait for the job: its final status reply (``_async``: a Future of it)."""
        def run() -> dict[str, Any]:
            return self.client._upload(self.project_id, annotation_format, annotation_file,
                                       conf_bucket=conf_bucket)

        return _in_background(run) if _async else run()

    def preannotation_job_status_async(self, job_id: str) -> cf.Future[dict[str, Any]]:
        """A Future of the final status reply of an existing job (a failed job: LabellerrError)."""
        def run() -> dict[str, Any]:
            creds, url = self.client._credentials()
            http = _Http(creds, base_url=url)
            try:
                return _sdk_errors(lambda: http.redact_reply(http.wait_job(self.project_id, str(job_id))))
            finally:
                http.close()

        return _in_background(run)


def _upload(creds_url: tuple[Credentials, str], project_id: str, annotation_format: str, path: Path, *,
            conf_bucket: str | None) -> dict[str, Any]:
    creds, url = creds_url
    check_conf_bucket(conf_bucket)
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    fmt = annotation_format.lower()
    if fmt in ANSWER_FORMATS and fmt not in _COCO:   # json, csv, png: sent as they are, one job
        http = _Http(creds, base_url=url)
        try:
            job = http.upload_answers(project_id, path, answer_format=fmt, conf_bucket=conf_bucket)
            return http.redact_reply(http.wait_job(project_id, job))
        finally:
            http.close()
    tmp: Path | None = None
    try:
        if fmt not in _COCO:
            if fmt not in FORMATS:
                raise UsageError(f"annotation_format {annotation_format!r}: not one of "
                                 f"{', '.join(ANSWER_FORMATS)} nor a format prelabel reads ({', '.join(sorted(FORMATS))})")
            tmp = Path(tempfile.mkdtemp(prefix="prelabel-sdk-"))
            coco = tmp / f"{path.stem}.coco.json"
            convert(path, coco, fmt=fmt, max_file_size=2**62)
            path = coco
        target = LabellerrTarget(project_id, credentials=creds, base_url=url, conf_bucket=conf_bucket)
        try:
            res = upload(path, target, allow_empty=True)   # the SDK returns the reply, whatever it applied
        finally:
            target.close()
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    replies = [s.service_reply or {} for s in res.shards]
    if res.status != "completed":
        raise LabellerrError("; ".join(res.errors) or f"the upload ended {res.status}",
                             reply=replies[0] if len(replies) == 1 else None)
    if len(replies) == 1:
        return replies[0]
    return {"message": "200: Success", "error": None,
            "response": {"status": "completed", "job_ids": [s.activity_id for s in res.shards], "shards": replies}}
