"""The one interface every upload target speaks, and the results it returns.

A target receives one COCO shard at a time (a complete COCO document of whole images, at most 25 MB) and runs
the platform's five steps: receive the file, validate it against COCO and the project's schema, resolve image
file names against the project's assets, apply the annotations, return a status. :func:`prelabel.upload.upload`
drives the shards (parallelism, resume journal, async Future) and merges the :class:`ShardResult` s into one
:class:`UploadResult`.

Example:
    >>> from prelabel.upload.base import UploadResult, UnmatchedFile
    >>> r = UploadResult(status="completed", target="local:/tmp/p", annotations_applied=3,
    ...                  files_not_matched=[UnmatchedFile("Cat.JPG", ["cat.jpg"], "case")])
    >>> r.to_dict()["files_not_matched"][0]["why"]
    'case'
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["STATUSES", "JobTarget", "ShardResult", "Target", "UnmatchedFile", "UploadResult"]

STATUSES = ("completed", "processing", "failed")


@dataclass(frozen=True)
class UnmatchedFile:
    """A COCO file_name that matched no project asset: its closest asset names, why they differ, and the option
    that fixes it (see :func:`prelabel.upload.match.unmatched_line` for the sentence the CLI prints)."""

    name: str
    closest: list[str] = field(default_factory=list)
    why: str = "no similar name"   # case | extension | prefix | sanitized | similar name | name-map | no similar name
    hint: str = ""                 # e.g. "rerun with --match-case-insensitive" (empty: the default for ``why``)


@dataclass
class ShardResult:
    """What one shard's upload did."""

    index: int
    path: str
    status: str = "completed"
    activity_id: str | None = None
    annotations_applied: int = 0
    files_matched: int = 0
    files_not_matched: list[UnmatchedFile] = field(default_factory=list)
    categories_ignored: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0
    resumed: bool = False          # taken from the journal: completed by an earlier run, not sent again
    matched_by: dict[str, int] = field(default_factory=dict)   # match rule (exact, prefix, ...) -> images
    annotations_in_file: int = 0   # the annotations the shard held (set by the driver)
    # existing pre-annotations the upload removed (a dry run: would remove) in replace mode, and on how many
    # images; None when the target cannot tell
    annotations_replaced: int | None = None
    images_replaced: int | None = None
    # "service": annotations_applied is the count the target reported; "estimate": prelabel computed it from the
    # file and the names / categories the service reported as not used (Labellerr's recorded reply has no count)
    applied_source: str = "service"
    files_not_matched_count: int | None = None   # when the service gave a count without names; None: len(list)
    service_reply: dict[str, Any] | None = None  # the final status reply of the job, credentials redacted
    annotations_by_category: dict[str, int] = field(default_factory=dict)  # the shard's annotations per category
    image_tags: dict[str, int] = field(default_factory=dict)   # image-level tag / choice -> images (set by the driver)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def not_matched(self) -> int:
        """How many images matched no project file (the service's count when it gave one)."""
        n = self.files_not_matched_count
        return len(self.files_not_matched) if n is None else max(n, len(self.files_not_matched))


@dataclass
class UploadResult:
    """The outcome of an upload: status, activity id, per-shard results, and what was (not) applied."""

    status: str
    target: str                    # a display form of the target: never holds credentials
    activity_id: str | None = None
    dry_run: bool = False
    shards: list[ShardResult] = field(default_factory=list)
    annotations_applied: int = 0
    files_matched: int = 0
    files_not_matched: list[UnmatchedFile] = field(default_factory=list)
    categories_ignored: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    duration: float = 0.0
    matched_by: dict[str, int] = field(default_factory=dict)   # match rule (exact, prefix, ...) -> images
    annotations_in_file: int = 0   # the annotations the uploaded file(s) held
    annotations_replaced: int | None = None   # see ShardResult
    images_replaced: int | None = None
    applied_source: str = "service"            # "estimate" when any shard's count is prelabel's estimate
    files_not_matched_count: int | None = None  # the images not matched (a count may come without names)
    # annotations per ignored category (a category of the file that holds none is ignored without loss)
    categories_ignored_annotations: dict[str, int] = field(default_factory=dict)
    # ignored category -> the project's category whose name differs from it only in case, spaces or separators
    category_hints: dict[str, str] = field(default_factory=dict)
    # image-level tags (CVAT <tag>, Label Studio choices) that reached the COCO file and that the target does not
    # keep (it takes object annotations only): tag -> images
    image_tags_not_kept: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain data; a dry run says ``would_apply`` where an upload says ``annotations_applied``.

        >>> UploadResult(status="completed", target="local:p", dry_run=True, annotations_applied=3).to_dict()["would_apply"]
        3
        """
        d = asdict(self)
        if self.dry_run:
            d = {("would_apply" if k == "annotations_applied" else k): v for k, v in d.items()}
            d["shards"] = [{("would_apply" if k == "annotations_applied" else k): v for k, v in s.items()}
                           for s in d["shards"]]
        return d

    @classmethod
    def merge(cls, target: str, shards: list[ShardResult], *, dry_run: bool, duration: float) -> UploadResult:
        """Combine shard results: failed if any failed, processing if any still runs, else completed."""
        statuses = {s.status for s in shards}
        status = "failed" if "failed" in statuses else ("processing" if "processing" in statuses else "completed")
        ids = [s.activity_id for s in shards if s.activity_id]
        seen_unmatched: dict[str, UnmatchedFile] = {}
        for s in shards:
            for u in s.files_not_matched:
                seen_unmatched.setdefault(u.name, u)
        ignored = sorted({c for s in shards for c in s.categories_ignored})
        ignored_n = {c: sum(s.annotations_by_category.get(c, 0) for s in shards) for c in ignored}
        tags: Counter[str] = Counter()
        matched_by: Counter[str] = Counter()
        for s in shards:   # update, not +: a count of 0 is kept
            tags.update(s.image_tags)
            matched_by.update(s.matched_by)
        def total(name: str) -> int | None:
            vals = [getattr(s, name) for s in shards if getattr(s, name) is not None]
            return sum(vals) if vals else None

        return cls(status=status, target=target, activity_id=ids[0] if len(ids) == 1 else (",".join(ids) or None),
                   dry_run=dry_run, shards=shards,
                   annotations_applied=sum(s.annotations_applied for s in shards),
                   files_matched=sum(s.files_matched for s in shards),
                   files_not_matched=list(seen_unmatched.values()), categories_ignored=ignored,
                   errors=[e for s in shards for e in s.errors], duration=duration, matched_by=dict(matched_by),
                   annotations_in_file=sum(s.annotations_in_file for s in shards),
                   annotations_replaced=total("annotations_replaced"), images_replaced=total("images_replaced"),
                   applied_source="estimate" if any(s.applied_source == "estimate" for s in shards) else "service",
                   files_not_matched_count=sum(s.not_matched for s in shards),
                   categories_ignored_annotations={c: n for c, n in ignored_n.items() if n},
                   image_tags_not_kept=dict(tags))


class Target(Protocol):
    """An upload target: the local project, Labellerr, or Label Studio."""

    def describe(self) -> str:
        """A display form (``local:DIR``, ``labellerr:PROJECT``): never credentials."""
        ...

    def categories(self) -> list[str] | None:
        """The project's category names (its schema), or None when it has none yet."""
        ...

    def assets(self) -> list[str]:
        """The file names of the project's images, as the project knows them."""
        ...

    def upload_shard(self, coco: dict[str, Any], *, index: int, path: Path, dry_run: bool,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        """Send one shard (``coco`` is its parsed content, ``path`` the file on disk) and wait for its job.

        ``deadline`` is a ``time.monotonic()`` value after which the target gives up (UploadTimeoutError);
        ``cancel`` is set when the caller cancels: stop as soon as it is safe.
        """
        ...

    def close(self) -> None: ...


class JobTarget(Target, Protocol):
    """A target whose upload is a job on the server: sending and waiting are two steps, so the driver can record
    the job id in the resume journal in between (a re-run then polls the job instead of sending the file again).
    Optional: the driver uses these when a target has them, else :meth:`Target.upload_shard`."""

    def start_shard(self, coco: dict[str, Any], *, index: int, path: Path, deadline: float | None,
                    cancel: threading.Event) -> str:
        """Send the shard; return the server's job (activity) id without waiting for the job."""
        ...

    def finish_shard(self, job_id: str, *, index: int, path: Path, coco: dict[str, Any] | None,
                     deadline: float | None, cancel: threading.Event) -> ShardResult:
        """Wait for the job ``job_id`` (started by this or an earlier run) and return its result."""
        ...
