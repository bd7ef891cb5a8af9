"""Label Studio as an upload target (``labelstudio:PROJECT_ID``): COCO pre-annotations become task predictions.

The server and key come from ``LABEL_STUDIO_URL`` and ``LABEL_STUDIO_API_KEY`` (:meth:`LabelStudioTarget.from_env`).
The key is either a legacy token (sent as ``Authorization: Token ...``) or a personal access token, which is a JWT
refresh token: it is exchanged at ``POST /api/token/refresh`` for a short-lived access token sent as ``Bearer``
(and exchanged again when that expires). The key is told apart by its shape and never appears in a repr, an error
or a log line. Only plain httpx is used (no label-studio-sdk).

What one shard does (:meth:`LabelStudioTarget.upload_shard`):

1. read the project's label config (XML, parsed with defusedxml): the ``Image`` tag and its
   ``RectangleLabels`` / ``PolygonLabels`` / ``BrushLabels`` / ``KeyPointLabels`` controls and their labels;
2. list the project's tasks and turn each task's image URL into a name (``/data/upload/3/1a2b3c4d-car.jpg``,
   ``/data/local-files/?d=images/car.jpg``, ``s3://bucket/car.jpg``, ``https://host/car.jpg``; a task made by
   prelabel carries the original name in ``data.coco_file_name``), then match the COCO file names to them with
   :mod:`prelabel.upload.match`. With ``images=DIR``, images that match no task are uploaded from ``DIR`` and
   tasks are created for them;
3. convert every annotation of a matched image whose category is in the config (:func:`coco_to_results`);
4. in ``replace`` mode (the default), list the predictions of this ``model_version`` on the tasks that will
   receive a new prediction (a task whose annotations were all skipped keeps its predictions); then import the new
   predictions in bulk (``POST /api/projects/{id}/import/predictions``, 200 tasks a request), one prediction per
   task with ``model_version`` and a task ``score`` (the mean of the region scores);
5. read the predictions back and count the regions found; a count that differs from what was sent fails the
   shard;
6. in ``replace`` mode, remove the listed old predictions of every task whose new prediction read back complete.
   Where it is safe (each such task holds exactly one prediction of this model version and the project none
   elsewhere, no staging copies are left over, the project's selected model version would not be cleared), by a
   bulk model-version swap (:meth:`LabelStudioTarget._swap`: steps 4-5 under a staging model version, then
   ``DELETE /api/projects/{id}/model-versions/`` of this version, import and read back again under it, and delete
   the staging version), ~13 ms of Label Studio a prediction; otherwise one ``DELETE /api/predictions/{id}`` each,
   ~90 ms. A task never holds fewer predictions than before, whatever fails: a failure leaves the old set (or a
   staging copy) beside the new one, and a re-run lists both, imports once more and deletes both.

Tasks and their predictions are read through the task listing (``GET /api/tasks?fields=all``, the tasks of a
shard selected 500 a request), never one request per task. Writes go one at a time (SQLite, Label Studio's default
database, lets one writer in); GET and DELETE are retried with backoff on HTTP 500/502/503/504 and connection
errors (SQLite's "database is locked" is transient); an import is never retried. An error shows Label Studio's
JSON ``detail``, or for an HTML or text error page the exception line (``OperationalError: database is locked``).

The shard's ``activity_id`` is ``ls-<project>-<first prediction id>-<number of predictions>``: the predictions
it created are the ids from the first one on, in the project's prediction list.

Conversion (Label Studio units are percent of ``original_width`` / ``original_height``):

- a box becomes a ``rectanglelabels`` region; a box with ``attributes.rotation`` and a 4-point polygon
  (a rotated box) keeps its rotation: Label Studio turns a rectangle clockwise about its top-left corner, so
  ``x, y`` is the rotated position of the unrotated box's top-left corner;
- each polygon part becomes a ``polygonlabels`` region (points in percent); a COCO RLE mask becomes a
  ``brushlabels`` region in Label Studio's own RLE (:func:`prelabel.geometry.ls_rle_encode` of the mask);
- each labelled keypoint (``v > 0``) becomes a ``keypointlabels`` region whose label is the keypoint's name,
  linked to the object's region by ``parentID``;
- when the config has no control of the right kind for a label, a rotated box falls back to a polygon, a
  polygon or mask to its enclosing rectangle (each fallback is reported), and otherwise the annotation is
  skipped with its reason. Label Studio accepts negative widths and garbage RLE silently, so every region is
  checked before it is sent (coordinates within [0, 100], positive sizes, labels in the config, mask size).

Messages about skipped or degraded annotations go to ``ShardResult.errors`` (at most 20, then a count); they
do not fail the shard on their own.

Example:
    >>> cfg = parse_label_config(label_config_for(["cat"], kinds=["rectangle"]))
    >>> coco = {"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 100}],
    ...         "categories": [{"id": 1, "name": "cat"}],
    ...         "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "bbox": [20, 10, 50, 40],
    ...                          "score": 0.9}]}
    >>> conv = coco_to_results(coco, cfg, nonce="n")
    >>> r = conv.results[1][0]
    >>> r["id"], r["from_name"], r["value"]["x"], r["value"]["y"], r["value"]["width"], r["value"]["height"]
    ('n7', 'label', 10.0, 10.0, 25.0, 40.0)
"""

from __future__ import annotations

import mimetypes
import os
import secrets
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import httpx

from ..errors import AuthError, UploadError, UsageError
from ..labelconfig import label_config_for
from ..paths import safe_join
from .base import ShardResult, UnmatchedFile
from .labelstudio_client import AUTH_HINT, ENV_KEY, ENV_URL, RETRY_DELAYS
from .labelstudio_replace import PredictionWriter
from .labelstudio_results import (
    Conversion,
    LabelConfig,
    build_predictions,
    coco_to_results,
    parse_label_config,
)
from .labelstudio_results import rotated_box_from_polygon as rotated_box_from_polygon
from .match import MatchRules, match_names

__all__ = [
    "DEFAULT_MODEL_VERSION",
    "ENV_KEY",
    "ENV_URL",
    "Conversion",
    "LabelConfig",
    "LabelStudioTarget",
    "coco_to_results",
    "label_config_for",
    "parse_label_config",
    "task_image_name",
]


DEFAULT_MODEL_VERSION = "prelabel"
UPLOAD_BATCH = 100             # files per multipart request (Label Studio's limit)
UPLOAD_BATCH_BYTES = 64 << 20  # bytes per multipart request


# ------------------------------------------------------------------------------------------ image names
def task_image_name(url: Any) -> str:
    """The file name a task's image URL stands for (percent-decoded), to match against COCO file names.

    >>> task_image_name("/data/upload/3/1a2b3c4d-my%20cat.jpg")
    'upload/3/1a2b3c4d-my cat.jpg'
    >>> task_image_name("/data/local-files/?d=images%2Fcar.jpg"), task_image_name("s3://bucket/dir/car.jpg")
    ('images/car.jpg', 'dir/car.jpg')
    """
    s = str(url)
    parts = urllib.parse.urlsplit(s)
    if "local-files" in parts.path and parts.query:
        d = urllib.parse.parse_qs(parts.query).get("d")
        if d:
            return d[0].lstrip("/")
    path = urllib.parse.unquote(parts.path)
    if parts.scheme in ("s3", "gs", "azure-blob", "gcs"):
        return path.lstrip("/")
    if path.startswith("/data/"):
        return path[len("/data/"):]
    return path.lstrip("/")


class LabelStudioTarget(PredictionWriter):
    """``labelstudio:PROJECT_ID``: predictions into an existing Label Studio project (or a new one).

    ``images``: a folder holding the images by their COCO file names; images that match no task are uploaded
    and get a task. ``create_project=True`` (with ``project_id=None``): a project titled ``title`` is created on
    first use, with a label config generated from the first shard's categories and shapes.
    ``model_version`` is written on every prediction. ``mode="replace"`` (the default): the predictions with the
    same ``model_version`` on every task that receives a new prediction are deleted once the new one has been
    imported and read back (``DELETE /api/predictions/{id}``), so uploading the same file again leaves one
    prediction per task; tasks whose annotations were all skipped, predictions of other model versions and human
    annotations are left alone. ``mode="append"`` keeps them. ``match`` relaxes file-name matching
    (:class:`~prelabel.upload.match.MatchRules`). ``retry_delays``: the pauses (seconds) before each retry of a GET
    or DELETE that met HTTP 500/502/503/504 or a connection error. ``swap=False`` turns off the bulk model-version
    swap of a replace (every old prediction is then deleted by its id).
    """

    synchronous = True   # Label Studio imports predictions inside the request: nothing runs on afterwards

    def __init__(self, url: str, token: str, project_id: int | str | None, *, images: str | Path | None = None,
                 create_project: bool = False, title: str | None = None,
                 model_version: str = DEFAULT_MODEL_VERSION, mode: str = "replace", match: MatchRules | None = None,
                 timeout: float = 60.0, retry_delays: Sequence[float] = RETRY_DELAYS, swap: bool = True,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not url:
            raise UsageError(f"no Label Studio URL: set {ENV_URL} (for example http://localhost:8080)")
        if mode not in ("replace", "append"):
            raise UsageError(f"mode must be 'replace' or 'append', not {mode!r}")
        if not model_version:
            raise UsageError("the model version of the predictions cannot be empty")
        if not token:
            raise AuthError(f"no Label Studio API key: set {ENV_KEY}", hint=AUTH_HINT)
        pid = None if project_id in (None, "", "new") else project_id
        if pid is not None:
            try:
                pid = int(pid)
            except (TypeError, ValueError):
                raise UsageError(f"a Label Studio project id is a number, not {project_id!r}") from None
        if pid is None and not create_project:
            raise UsageError("no Label Studio project id", hint="use labelstudio:PROJECT_ID, or create_project=True")
        if pid is not None and create_project:
            raise UsageError("create_project=True makes a new project: give no project id")
        super().__init__(url, token, timeout=timeout, retry_delays=retry_delays, transport=transport)
        self.project_id: int | None = pid
        self.images = Path(images) if images is not None else None
        self.create_project = create_project
        self.title = title or "prelabel"
        self.model_version = model_version
        self.mode = mode
        self.match = match or MatchRules()
        self.resumable = pid is not None    # a project created by this run has no id to resume against
        self.swap = swap                    # replace by a bulk model-version swap where that is safe
        self._replace_lock = threading.Lock()   # one shard's replace at a time (the swap checks project-wide counts)
        self._project_model_version: str | None = None
        self._config: LabelConfig | None = None
        self._tasks: list[tuple[int, str]] | None = None

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def from_env(cls, project_id: int | str | None, **options: Any) -> LabelStudioTarget:
        """A target for ``project_id`` at ``$LABEL_STUDIO_URL`` with ``$LABEL_STUDIO_API_KEY``."""
        url = os.environ.get(ENV_URL, "").strip()
        token = os.environ.get(ENV_KEY, "").strip()
        if not url and not token:
            raise UsageError(f"{ENV_URL} and {ENV_KEY} are not set: prelabel needs the Label Studio server's "
                             "address and an API key", hint=f"export {ENV_URL}=http://localhost:8080 "
                             f"{ENV_KEY}=<your token (Label Studio: Account & Settings)>")
        if not url:
            raise UsageError(f"{ENV_URL} is not set: prelabel needs the Label Studio server's address",
                             hint=f"export {ENV_URL}=http://localhost:8080 (the address you open in the browser)")
        if not token:
            raise AuthError(f"{ENV_KEY} is not set: Label Studio needs an API key", hint=AUTH_HINT)
        return cls(url, token, project_id, **options)

    @classmethod
    def create(cls, url: str, token: str, title: str, categories: Sequence[str | Mapping[str, Any]], *,
               kinds: Iterable[str] = ("rectangle",), **options: Any) -> LabelStudioTarget:
        """Create a project whose label config holds ``categories`` for each of ``kinds`` and target it."""
        t = cls(url, token, None, create_project=True, title=title, **options)
        try:
            t._create_project(label_config_for(categories, kinds=list(kinds)))
        except BaseException:
            t.close()
            raise
        return t

    def __repr__(self) -> str:
        return f"LabelStudioTarget({self.describe()!r}, url={self.url!r})"

    def describe(self) -> str:
        return f"labelstudio:{self.project_id if self.project_id is not None else 'new'}"

    def __enter__(self) -> LabelStudioTarget:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- project -----------------------------------------------------------------------------------------

    def _create_project(self, label_config: str) -> int:
        title = self.title if len(self.title) >= 3 else f"{self.title} (prelabel)"
        r = self._request("POST", "/api/projects", what="creating a project",
                          json={"title": title[:50], "label_config": label_config})
        self.project_id = int(self._json(r, "project creation")["id"])
        self._config = parse_label_config(label_config)
        self._project_model_version = ""
        self._tasks = None
        return self.project_id

    def label_config(self) -> LabelConfig | None:
        """The project's parsed label config (None before a ``create_project`` target made its project)."""
        with self._lock:
            if self._config is None and self.project_id is not None:
                r = self._request("GET", f"/api/projects/{self.project_id}", what="reading the project",
                                  not_found=self._not_found())
                body = self._json(r, "the project")
                self._config = parse_label_config(str(body["label_config"]))
                self._project_model_version = str(body.get("model_version") or "")
            return self._config

    def categories(self) -> list[str] | None:
        cfg = self.label_config()
        return cfg.categories() if cfg is not None else None

    def _task_list(self, *, refresh: bool = False) -> list[tuple[int, str]]:
        """``[(task id, image name)]`` of every task of the project, in id order."""
        with self._lock:
            if self.project_id is None:
                return []
            if self._tasks is not None and not refresh:
                return self._tasks
            cfg = self.label_config()
            key = cfg.image_key if cfg is not None else "image"
            out: list[tuple[int, str]] = []
            page, total = 1, None
            while total is None or len(out) < total:
                r = self._request("GET", "/api/tasks", what="listing tasks", ok=(200, 404),
                                  not_found=None if page > 1 else self._not_found(),
                                  params={"project": self.project_id, "fields": "task_only", "page": page,
                                          "page_size": 500})
                if r.status_code == 404:
                    break
                body = self._json(r, "the task list")
                tasks = body.get("tasks", []) if isinstance(body, Mapping) else body
                total = int(body.get("total", len(tasks))) if isinstance(body, Mapping) else len(tasks)
                if not tasks:
                    break
                for t in tasks:
                    data = t.get("data") or {}
                    name = data.get("coco_file_name") or task_image_name(data.get(key, ""))
                    out.append((int(t["id"]), str(name)))
                page += 1
            out.sort()
            self._tasks = out
            return out

    def assets(self) -> list[str]:
        return list(dict.fromkeys(name for _, name in self._task_list()))

    # -- images --------------------------------------------------------------------------------------------
    def _upload_images(self, files: list[tuple[str, Path]], *, deadline: float | None) -> None:
        """Upload ``[(COCO file name, path)]`` and create one task per image (``data.coco_file_name`` kept)."""
        cfg = self.label_config()
        key = cfg.image_key if cfg is not None else "image"
        batches: list[list[tuple[str, Path]]] = [[]]
        size = 0
        for name, p in files:
            n = p.stat().st_size
            if batches[-1] and (len(batches[-1]) >= UPLOAD_BATCH or size + n > UPLOAD_BATCH_BYTES):
                batches.append([])
                size = 0
            batches[-1].append((name, p))
            size += n
        for batch in batches:
            form = {f"file{i}": (p.name, p.read_bytes(), mimetypes.guess_type(p.name)[0] or "application/octet-stream")
                    for i, (_, p) in enumerate(batch)}
            r = self._request("POST", f"/api/projects/{self.project_id}/import", what="uploading images",
                              deadline=deadline, params={"commit_to_project": "false"}, files=form,
                              not_found=self._not_found())
            ids = [int(i) for i in self._json(r, "the image upload").get("file_upload_ids", [])]
            if len(ids) != len(batch):
                raise UploadError(f"Label Studio stored {len(ids)} of {len(batch)} uploaded images")
            r = self._request("GET", f"/api/projects/{self.project_id}/file-uploads", what="reading uploads",
                              deadline=deadline, params={"ids": "[" + ",".join(map(str, ids)) + "]"})
            stored = {int(f["id"]): str(f["file"]) for f in self._json(r, "the upload list")}
            if set(stored) != set(ids):
                raise UploadError("Label Studio did not list every uploaded image")
            tasks = [{"data": {key: "/data/" + stored[i].lstrip("/"), "coco_file_name": name}}
                     for i, (name, _) in zip(ids, batch, strict=True)]
            r = self._request("POST", f"/api/projects/{self.project_id}/import", what="creating tasks",
                              deadline=deadline, json=tasks)
            made = int(self._json(r, "the task import").get("task_count", -1))
            if made != len(tasks):
                raise UploadError(f"Label Studio created {made} of {len(tasks)} tasks")

    # -- shards --------------------------------------------------------------------------------------------
    def _ensure_project(self, coco: Mapping[str, Any]) -> None:
        with self._lock:
            if self.project_id is not None:
                return
            anns = coco.get("annotations") or []
            kinds = ["rectangle"]
            if any(isinstance(a.get("segmentation"), list) and a.get("segmentation") for a in anns):
                kinds.append("polygon")
            if any(isinstance(a.get("segmentation"), Mapping) for a in anns):
                kinds.append("brush")
            self._create_project(label_config_for(list(coco.get("categories") or []), kinds=kinds))

    def upload_shard(self, coco: dict[str, Any], *, index: int, path: Path, dry_run: bool,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        t0 = time.monotonic()
        res = ShardResult(index=index, path=str(path))
        if self.project_id is None and not dry_run:
            self._ensure_project(coco)
        cfg = self.label_config() or parse_label_config(
            label_config_for(list(coco.get("categories") or []), kinds=["rectangle", "polygon", "brush"]))
        images = [im for im in coco.get("images") or [] if isinstance(im, Mapping)]
        names = [str(im.get("file_name", "")) for im in images]
        tasks = self._task_list()
        m = match_names(names, [n for _, n in tasks], rules=self.match)
        # images that match no task: upload them from the images folder when one was given
        uploaded: set[str] = set()
        if m.unmatched and self.images is not None:
            todo = [(u.name, f) for u in m.unmatched
                    if (f := safe_join(self.images, u.name)) is not None and f.is_file()]
            uploaded = {n for n, _ in todo}
            if todo and dry_run:
                m.unmatched = [u for u in m.unmatched if u.name not in uploaded]
                for n in uploaded:
                    m.matched[n] = n
            elif todo:
                self._upload_images(todo, deadline=deadline)
                tasks = self._task_list(refresh=True)
                m = match_names(names, [n for _, n in tasks], rules=self.match)
        for name in names:
            if name in m.matched:
                how = "uploaded" if name in uploaded else m.how.get(name, "exact")
                res.matched_by[how] = res.matched_by.get(how, 0) + 1
        task_of_asset: dict[str, int] = {}
        for tid, n in tasks:
            task_of_asset.setdefault(n, tid)
        image_task: dict[int, int] = {}
        for im, name in zip(images, names, strict=True):
            asset = m.matched.get(name)
            if asset is not None:
                image_task[int(im["id"])] = task_of_asset.get(asset, -1)
        res.files_matched = len(image_task)
        res.files_not_matched = [UnmatchedFile(u.name, list(u.closest), u.why, self._hint(u)) for u in m.unmatched]
        nonce = secrets.token_hex(4) + "_"
        conv = coco_to_results(coco, cfg, nonce=nonce, image_ids=image_task)
        res.categories_ignored = conv.categories_ignored
        res.errors.extend(conv.messages)
        receiving = {image_task[i] for i in conv.results} - {-1}   # tasks that get a new prediction
        fresh = {task_of_asset.get(m.matched.get(n, ""), -1) for n in uploaded}   # made just now: nothing to list
        old: dict[int, list[int]] = {}
        if self.mode == "replace" and receiving - fresh:   # listed before the import: removed after it
            old = self._own_predictions(sorted(receiving - fresh), deadline=deadline)
        res.annotations_replaced = res.images_replaced = 0
        if dry_run:
            res.annotations_applied = conv.applied
            res.annotations_replaced = sum(len(ids) for ids in old.values())
            res.images_replaced = len(old)
            res.duration = time.monotonic() - t0
            return res
        preds = build_predictions(conv, image_task, self.model_version)
        with self._replace_lock if self.mode == "replace" else nullcontext():
            if old and self._can_swap(old, deadline=deadline):
                self._swap(res, preds, old, redo=lambda: coco_to_results(
                    coco, cfg, nonce=secrets.token_hex(4) + "_", image_ids=image_task),
                           image_task=image_task, deadline=deadline, cancel=cancel)
            else:
                sent = self._import(res, preds, deadline=deadline, cancel=cancel)
                confirmed = self._confirm(res, preds[:sent], conv, deadline=deadline)
                if old:
                    self._remove_replaced(res, {t: ids for t, ids in old.items() if t in confirmed}, kept=len(old),
                                          deadline=deadline, cancel=cancel)
        res.duration = time.monotonic() - t0
        return res

    def _hint(self, u: UnmatchedFile) -> str:
        """The matcher's hint, or for an image with no task at all: how to upload it."""
        if u.why != "no similar name":
            return u.hint
        if self.images is None:
            return "rerun with --images DIR to upload it and create its task"
        return f"not in {self.images} either: add it there (or to the project)"
